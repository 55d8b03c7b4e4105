//! Sockets for the load generator: a few UDP sockets bound to the wildcard
//! address, each carrying many simulated endpoints. `IP_PKTINFO` picks the
//! source address per datagram (any of 127.0.0.0/8 on loopback) and reports
//! which address a reply was sent to, so one socket per port serves every
//! source address: endpoints look like distinct NAT paths to the server.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// A wildcard-bound UDP socket with `IP_PKTINFO` on.
pub struct PktSocket {
    sock: UdpSocket,
}

impl PktSocket {
    pub fn bind(port: u16, buffer: usize) -> io::Result<PktSocket> {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let _ = s.set_recv_buffer_size(buffer);
        let _ = s.set_send_buffer_size(buffer);
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a valid fd and a c_int option value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PktSocket { sock: s.into() })
    }

    pub fn port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends `data` to `to` from source address `from`.
    pub fn send_from(&self, data: &[u8], from: Ipv4Addr, to: SocketAddrV4) -> io::Result<()> {
        // SAFETY: all structures are zeroed plain C data, live for the call,
        // and sized as declared in the msghdr.
        unsafe {
            let mut dst: libc::sockaddr_in = zeroed();
            dst.sin_family = libc::AF_INET as libc::sa_family_t;
            dst.sin_port = to.port().to_be();
            dst.sin_addr.s_addr = u32::from(*to.ip()).to_be();
            let mut iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let mut cbuf = [0u64; 8];
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::IPPROTO_IP;
            (*cmsg).cmsg_type = libc::IP_PKTINFO;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
            let info: *mut libc::in_pktinfo = libc::CMSG_DATA(cmsg).cast();
            (*info).ipi_ifindex = 0;
            (*info).ipi_spec_dst.s_addr = u32::from(from).to_be();
            (*info).ipi_addr.s_addr = 0;
            if libc::sendmsg(self.fd(), &msg, libc::MSG_DONTWAIT) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Receives one datagram: (length, source, the local address it was sent to).
    pub fn recv_to(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddrV4, Ipv4Addr)> {
        // SAFETY: as in send_from; the kernel writes at most the sizes given.
        unsafe {
            let mut src: libc::sockaddr_in = zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut cbuf = [0u64; 16];
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut src as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            let n = libc::recvmsg(self.fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut local = Ipv4Addr::UNSPECIFIED;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::IPPROTO_IP && (*cmsg).cmsg_type == libc::IP_PKTINFO {
                    let info: *const libc::in_pktinfo = libc::CMSG_DATA(cmsg).cast();
                    local = Ipv4Addr::from(u32::from_be((*info).ipi_addr.s_addr));
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            let from = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(src.sin_addr.s_addr)),
                u16::from_be(src.sin_port),
            );
            Ok((n as usize, from, local))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address_is_chosen_per_datagram_and_reported_back() {
        let a = PktSocket::bind(0, 1 << 20).unwrap();
        let b = PktSocket::bind(0, 1 << 20).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), b.port());
        a.send_from(b"hi", Ipv4Addr::new(127, 9, 8, 7), to).unwrap();
        let mut buf = [0u8; 64];
        let mut got = None;
        for _ in 0..100 {
            if let Ok(r) = b.recv_to(&mut buf) {
                got = Some(r);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (n, from, local) = got.expect("datagram arrives");
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(*from.ip(), Ipv4Addr::new(127, 9, 8, 7));
        assert_eq!(from.port(), a.port());
        assert_eq!(local, Ipv4Addr::new(127, 0, 0, 1));
        // The answer to that source comes back to `a`, addressed to 127.9.8.7.
        b.send_from(b"yo", Ipv4Addr::new(127, 0, 0, 1), from)
            .unwrap();
        for _ in 0..100 {
            if let Ok((n, _, local)) = a.recv_to(&mut buf) {
                assert_eq!(&buf[..n], b"yo");
                assert_eq!(local, Ipv4Addr::new(127, 9, 8, 7));
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("no answer");
    }
}
