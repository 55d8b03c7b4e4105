//! The C structures the batch system calls take, behind safe functions:
//! zero-initialised buffers, socket addresses in and out of
//! `sockaddr_storage`, and `IP_PKTINFO` control messages (the local address
//! a datagram was sent to, or is to be sent from).

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use socket2::SockAddr;

/// C structures for which all-zero bytes are a valid value.
///
/// # Safety
///
/// Implement only for types made of integers, raw pointers and arrays of
/// them: no references, no enums, nothing with a niche.
pub(super) unsafe trait Zeroable: Copy {}

// SAFETY: integers only (family, port, address bytes, padding).
unsafe impl Zeroable for libc::sockaddr_storage {}
// SAFETY: a raw pointer and a length; null and 0 are valid values.
unsafe impl Zeroable for libc::iovec {}
// SAFETY: a msghdr (raw pointers, lengths, flags) and a length.
unsafe impl Zeroable for libc::mmsghdr {}
// SAFETY: raw pointers, lengths and flags.
unsafe impl Zeroable for libc::msghdr {}

/// `n` all-zero values.
pub(super) fn zeroed_vec<T: Zeroable>(n: usize) -> Vec<T> {
    // SAFETY: `T: Zeroable` promises that all-zero bytes are a valid `T`.
    vec![unsafe { std::mem::zeroed::<T>() }; n]
}

fn zeroed<T: Zeroable>() -> T {
    // SAFETY: as in `zeroed_vec`.
    unsafe { std::mem::zeroed::<T>() }
}

/// Room for the control messages of one datagram, aligned for `cmsghdr`.
/// 64 bytes: one `in_pktinfo` message takes 32 on 64-bit Linux.
pub(super) type Control = [u64; 8];

/// Length of the control data that carries one `in_pktinfo` (`CMSG_SPACE`).
fn pktinfo_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
    unsafe { libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize }
}

/// Writes into `control` one `IP_PKTINFO` message asking the kernel to send
/// from `src`; returns the length to put in `msg_controllen`.
pub(super) fn write_pktinfo(control: &mut Control, src: Ipv4Addr) -> usize {
    let space = pktinfo_space();
    assert!(space <= size_of::<Control>(), "control buffer too small");
    let mut msg: libc::msghdr = zeroed();
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` describes `control`, which is borrowed mutably here,
    // aligned for cmsghdr and `space` ≥ CMSG_SPACE(in_pktinfo) bytes long
    // (checked above), so the first header and its data lie inside it.
    // `write_unaligned` because the data area has no alignment guarantee
    // beyond the header's.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(src).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>(), info);
    }
    space
}

/// The local address in an `IP_PKTINFO` message among the first `len`
/// bytes of `control` (as the kernel wrote them after a receive), if any.
pub(super) fn read_pktinfo(control: &Control, len: usize) -> Option<Ipv4Addr> {
    let len = len.min(size_of::<Control>());
    let base = control.as_ptr() as usize;
    let mut msg: libc::msghdr = zeroed();
    msg.msg_control = control.as_ptr().cast_mut().cast();
    msg.msg_controllen = len as _;
    let want = {
        // SAFETY: arithmetic only.
        unsafe { libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize }
    };
    let mut found = None;
    // SAFETY: `msg` describes the first `len` bytes (at most the buffer's
    // size) of `control`, which is borrowed for this call. CMSG_FIRSTHDR and
    // CMSG_NXTHDR only return headers that lie wholly inside those bytes
    // (or null), and a header's data is read only when the message (header
    // offset + `cmsg_len`) covers an `in_pktinfo` and ends inside them, so
    // every read stays in the buffer; nothing is written through the pointers.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let msg_len = (*c).cmsg_len as usize;
            if (*c).cmsg_level == libc::IPPROTO_IP
                && (*c).cmsg_type == libc::IP_PKTINFO
                && msg_len >= want
                && c as usize - base + msg_len <= len
            {
                let info = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::in_pktinfo>());
                found = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    found
}

/// Writes `to` into `storage`; returns the length for `msg_namelen`.
pub(super) fn write_sockaddr(storage: &mut libc::sockaddr_storage, to: SocketAddr) -> u32 {
    let sa = SockAddr::from(to);
    let len = sa.len() as usize;
    assert!(len <= size_of::<libc::sockaddr_storage>());
    // SAFETY: `sa` holds `len` initialised bytes, `storage` is larger
    // (checked above), and the two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    sa.len()
}

/// Reads an IPv4 or IPv6 address the kernel wrote into a sockaddr_storage
/// (`None` for other families).
pub(super) fn read_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; the
            // storage is larger and at least as aligned.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `recvmmsg` into `hdrs` without blocking: how many arrived, `Ok(0)`
/// when nothing was queued.
///
/// # Safety
///
/// Every header must point at live buffers (data, address, control) of
/// the sizes it states, which nothing else uses during the call.
pub(super) unsafe fn recv_mmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> io::Result<usize> {
    // SAFETY: the caller's promise: the headers and what they point at are
    // valid for the kernel to write within their stated sizes.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

/// `sendmmsg` of every header without blocking; returns how many were
/// dropped. A datagram the kernel will not take (full buffer, unreachable
/// destination) is skipped: UDP senders recover, and blocking a worker
/// would stall everything it serves.
///
/// # Safety
///
/// Every header must point at live buffers (data, address, control) of the
/// lengths it states.
pub(super) unsafe fn send_mmsg(fd: RawFd, hdrs: &mut [libc::mmsghdr]) -> u64 {
    let (mut sent, mut dropped) = (0, 0);
    while sent < hdrs.len() {
        // SAFETY: the caller's promise: the headers from `sent` on and what
        // they point at are valid; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs[sent..].as_mut_ptr(),
                (hdrs.len() - sent) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            dropped += 1;
            sent += 1;
            continue;
        }
        sent += n as usize;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pktinfo_written_is_read_back() {
        let mut c: Control = [0; 8];
        let len = write_pktinfo(&mut c, Ipv4Addr::new(127, 3, 2, 1));
        assert!(len > 0 && len <= size_of::<Control>());
        // On send the kernel reads `ipi_spec_dst`; on receive it fills
        // `ipi_addr`, which this message leaves 0.
        assert_eq!(read_pktinfo(&c, len), Some(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn no_or_truncated_control_data_yields_nothing() {
        let c: Control = [0; 8];
        assert_eq!(read_pktinfo(&c, 0), None);
        assert_eq!(read_pktinfo(&c, size_of::<Control>()), None, "zeroed");
        let mut c: Control = [0; 8];
        let len = write_pktinfo(&mut c, Ipv4Addr::LOCALHOST);
        assert_eq!(read_pktinfo(&c, len - 8), None, "data cut short");
    }

    #[test]
    fn socket_addresses_round_trip() {
        let mut ss: libc::sockaddr_storage = zeroed();
        for a in ["127.0.0.1:5060", "[::1]:5061"] {
            let a: SocketAddr = a.parse().unwrap();
            assert!(write_sockaddr(&mut ss, a) > 0);
            assert_eq!(read_sockaddr(&ss), Some(a));
        }
    }
}
