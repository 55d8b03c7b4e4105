//! Batched datagram I/O: `recvmmsg` and `sendmmsg` over buffers allocated
//! once per worker. The only unsafe code in tether lives here.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// Receives up to `batch` datagrams per system call into reused buffers.
pub struct RecvBatch {
    slot_len: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into the struct's own heap buffers,
// which move with it between threads and are never shared.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `slot_len` is the largest datagram kept whole; longer ones arrive
    /// truncated to `slot_len` bytes (callers size it one past their limit).
    pub fn new(batch: usize, slot_len: usize) -> RecvBatch {
        let batch = batch.max(1);
        let mut b = RecvBatch {
            slot_len,
            bufs: vec![0; batch * slot_len],
            // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
            addrs: vec![unsafe { zeroed() }; batch],
            iovs: vec![unsafe { zeroed() }; batch],
            hdrs: vec![unsafe { zeroed() }; batch],
        };
        for i in 0..batch {
            b.iovs[i].iov_base = b.bufs[i * slot_len..].as_mut_ptr().cast();
            b.iovs[i].iov_len = slot_len;
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        b
    }

    /// Receives what is queued, without blocking. `Ok(0)` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by `self`, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
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

    /// Datagram `i` of the last `recv` and its source (`None` for a source
    /// address family tether does not handle).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let len = (self.hdrs[i].msg_len as usize).min(self.slot_len);
        let data = &self.bufs[i * self.slot_len..i * self.slot_len + len];
        (data, to_socket_addr(&self.addrs[i]))
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }
}

/// Reads an IPv4 or IPv6 address the kernel wrote into a sockaddr_storage.
fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
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

/// Collects outgoing datagrams and sends them with one `sendmmsg`.
pub struct SendBatch {
    slot_len: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    queued: usize,
    /// Datagrams dropped because the socket buffer was full or the message too big.
    pub dropped: u64,
}

// SAFETY: as for RecvBatch.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(batch: usize, slot_len: usize) -> SendBatch {
        let batch = batch.max(1);
        let mut b = SendBatch {
            slot_len,
            bufs: vec![0; batch * slot_len],
            // SAFETY: all-zero is valid for these C structs.
            addrs: vec![unsafe { zeroed() }; batch],
            iovs: vec![unsafe { zeroed() }; batch],
            hdrs: vec![unsafe { zeroed() }; batch],
            queued: 0,
            dropped: 0,
        };
        for i in 0..batch {
            b.iovs[i].iov_base = b.bufs[i * slot_len..].as_mut_ptr().cast();
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_iov = &mut b.iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut b.addrs[i] as *mut libc::sockaddr_storage).cast();
        }
        b
    }

    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    /// Queues a copy of `data` for `to`. The caller flushes when full.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        if data.len() > self.slot_len || self.is_full() {
            self.dropped += 1;
            return;
        }
        let i = self.queued;
        self.bufs[i * self.slot_len..i * self.slot_len + data.len()].copy_from_slice(data);
        self.iovs[i].iov_len = data.len();
        let sa = SockAddr::from(to);
        // SAFETY: `sa` holds `sa.len()` valid bytes and sockaddr_storage is larger.
        unsafe {
            std::ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                sa.len() as usize,
            );
        }
        self.hdrs[i].msg_hdr.msg_namelen = sa.len();
        self.queued += 1;
    }

    /// Sends everything queued. Datagrams the kernel will not take now are dropped and counted:
    /// UDP senders retransmit, and blocking a worker would stall every path it owns.
    pub fn flush(&mut self, fd: RawFd) {
        let mut sent = 0;
        while sent < self.queued {
            // SAFETY: headers [sent, queued) point at live buffers owned by `self`.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[sent..].as_mut_ptr(),
                    (self.queued - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if n < 0 && e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Skip the datagram at the head (e.g. an unreachable destination) and go on.
                self.dropped += 1;
                sent += 1;
                continue;
            }
            sent += n as usize;
        }
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut send = SendBatch::new(8, 64);
        for i in 0..5u8 {
            send.push(&[i; 10], b.local_addr().unwrap());
        }
        send.push(&[0; 100], b.local_addr().unwrap());
        assert_eq!(send.dropped, 1, "oversize is dropped, not truncated");
        send.flush(a.as_raw_fd());
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut recv = RecvBatch::new(4, 16);
        let mut got = Vec::new();
        loop {
            let n = recv.recv(b.as_raw_fd()).unwrap();
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (d, from) = recv.get(i);
                assert_eq!(from, Some(a.local_addr().unwrap()));
                got.push(d.to_vec());
            }
        }
        assert_eq!(got.len(), 5);
        assert_eq!(got[3], vec![3u8; 10]);
    }
}
