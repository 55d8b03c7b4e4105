//! Socket setup: non-blocking UDP sockets with large buffers, either in an
//! `SO_REUSEPORT` group (the runtime: one socket per worker on one address)
//! or bound to the IPv4 wildcard with `IP_PKTINFO` on (the load generator:
//! one socket speaks for any source address in 127.0.0.0/8).

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// How to set a socket up before binding it.
struct Options {
    reuse_port: bool,
    /// Receive and send buffer size asked for (the kernel may grant less).
    buffer: usize,
    /// Report each datagram's local address, and let sends choose theirs.
    pktinfo: bool,
}

fn bind(addr: SocketAddr, o: &Options) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if o.reuse_port {
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(o.buffer);
    let _ = s.set_send_buffer_size(o.buffer);
    if o.pktinfo {
        set_pktinfo(&s)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

/// Turns `IP_PKTINFO` on (socket2 has no setter for it).
fn set_pktinfo(s: &Socket) -> io::Result<()> {
    set_ip_option(s, libc::IP_PKTINFO, 1)
}

/// Sets Don't Fragment on an IPv4 socket's datagrams (`IP_PMTUDISC_DO`):
/// with it the kernel writes IP ID 0 instead of drawing one per datagram
/// from its shared table (`__ip_select_ident`), which costs a sender to a
/// million destinations several percent of its CPU. For senders whose
/// datagrams are well under any path's MTU (the load generator's).
pub fn set_dont_fragment(s: &impl AsRawFd) -> io::Result<()> {
    set_ip_option(s, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DO)
}

/// An `IPPROTO_IP` option with an int value.
fn set_ip_option(s: &impl AsRawFd, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `s` is an open socket for the call's duration, and the option
    // value is a live c_int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Binds a non-blocking UDP socket with `SO_REUSEPORT` and the requested
/// buffer sizes, warning when the kernel grants less than asked.
pub fn bind_reuseport(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let s = bind(
        addr,
        &Options {
            reuse_port: true,
            buffer,
            pktinfo: false,
        },
    )?;
    // Linux reports double the usable size; compare against half of it.
    let got = s.recv_buffer_size().unwrap_or(0) / 2;
    if got < buffer {
        tracing::warn!(
            requested = buffer,
            granted = got,
            "receive buffer capped by the kernel; raise net.core.rmem_max (see tuning/)"
        );
    }
    Ok(s.into())
}

/// Binds a plain non-blocking UDP socket to `addr` (no port sharing, so a
/// port another process holds is refused; no `IP_PKTINFO`), buffers as
/// asked and silently capped by the kernel: a relay port of the media
/// relay, or one party's media port in the load generator.
pub fn bind_plain(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let s = bind(
        addr,
        &Options {
            reuse_port: false,
            buffer,
            pktinfo: false,
        },
    )?;
    Ok(s.into())
}

/// Binds a non-blocking UDP socket to `0.0.0.0:port` with `IP_PKTINFO` on,
/// so that [`super::SendBatch::push_from`] picks each datagram's source
/// address and [`super::RecvBatch::local_ip`] tells which address a
/// datagram was sent to. Buffers as asked, silently capped by the kernel.
pub fn bind_pktinfo(port: u16, buffer: usize) -> io::Result<UdpSocket> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let s = bind(
        addr,
        &Options {
            reuse_port: false,
            buffer,
            pktinfo: true,
        },
    )?;
    Ok(s.into())
}

/// Raises this process's open-file limit towards `want` (at most the hard
/// limit) and returns the soft limit now in force. The relay holds two
/// sockets per port pair; distributions start processes at 1024.
pub fn raise_fd_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a live rlimit the call writes into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = (want as libc::rlim_t).min(lim.rlim_max);
    if target > lim.rlim_cur {
        let new = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a live rlimit the call only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
            return Err(io::Error::last_os_error());
        }
        lim.rlim_cur = target;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on glibc, not everywhere
    Ok(lim.rlim_cur as u64)
}
