//! Relaying without copies: `recvmmsg` into reused slots, then `sendmmsg`
//! of chosen slots, unchanged, to new destinations from another socket.
//! The media relay's only I/O path (RTP is forwarded byte for byte).
//!
//! As in `batch`, the message headers are rewired from `&mut self` right
//! before each system call, so every pointer the kernel sees comes from a
//! borrow that lasts for the call.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use super::sys;

pub struct RelayBatch {
    slot_len: usize,
    bufs: Vec<u8>,
    /// Received: source addresses, iovecs, headers.
    addrs: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Queued for sending: which slot, to where.
    out_slot: Vec<usize>,
    out_addrs: Vec<libc::sockaddr_storage>,
    out_iovs: Vec<libc::iovec>,
    out_hdrs: Vec<libc::mmsghdr>,
    queued: usize,
    /// Datagrams the kernel would not take (full buffer, unreachable).
    pub dropped: u64,
}

// SAFETY: as for `RecvBatch`: the raw pointers point into the batch's own
// heap buffers, are rewritten before each call and never dereferenced in Rust.
unsafe impl Send for RelayBatch {}

impl RelayBatch {
    pub fn new(batch: usize, slot_len: usize) -> RelayBatch {
        let batch = batch.max(1);
        RelayBatch {
            slot_len: slot_len.max(1),
            bufs: vec![0; batch * slot_len.max(1)],
            addrs: sys::zeroed_vec(batch),
            iovs: sys::zeroed_vec(batch),
            hdrs: sys::zeroed_vec(batch),
            out_slot: vec![0; batch],
            out_addrs: sys::zeroed_vec(batch),
            out_iovs: sys::zeroed_vec(batch),
            out_hdrs: sys::zeroed_vec(batch),
            queued: 0,
            dropped: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receives what is queued on `fd` without blocking (`Ok(0)`: nothing).
    /// Anything still queued for sending is forgotten.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.queued = 0;
        let slot = self.slot_len;
        for ((h, iov), (addr, buf)) in self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(self.addrs.iter_mut().zip(self.bufs.chunks_exact_mut(slot)))
        {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = slot;
            let m = &mut h.msg_hdr;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            m.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header was just pointed at a slot of `slot` bytes
        // and a sockaddr_storage owned by `self`, borrowed mutably for the
        // call, and no control buffer.
        unsafe { sys::recv_mmsg(fd, &mut self.hdrs) }
    }

    /// Datagram `i` of the last `recv` (truncated ones are reported whole
    /// up to the slot; `truncated` says so) and its source.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, bool) {
        let h = &self.hdrs[i];
        let len = (h.msg_len as usize).min(self.slot_len);
        let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let data = &self.bufs[i * self.slot_len..i * self.slot_len + len];
        (data, sys::read_sockaddr(&self.addrs[i]), truncated)
    }

    /// Queues datagram `i` of the last `recv`, unchanged, for `to`.
    pub fn queue(&mut self, i: usize, to: SocketAddr) {
        if self.queued == self.out_hdrs.len() || i >= self.hdrs.len() {
            self.dropped += 1;
            return;
        }
        let k = self.queued;
        self.out_slot[k] = i;
        self.out_iovs[k].iov_len = (self.hdrs[i].msg_len as usize).min(self.slot_len);
        self.out_hdrs[k].msg_hdr.msg_namelen = sys::write_sockaddr(&mut self.out_addrs[k], to);
        self.queued += 1;
    }

    /// Sends what was queued from socket `fd`, then empties the queue.
    pub fn flush(&mut self, fd: RawFd) {
        let slot = self.slot_len;
        for k in 0..self.queued {
            let i = self.out_slot[k];
            self.out_iovs[k].iov_base = self.bufs[i * slot..].as_mut_ptr().cast();
            let m = &mut self.out_hdrs[k].msg_hdr;
            m.msg_iov = &mut self.out_iovs[k];
            m.msg_iovlen = 1;
            m.msg_name = (&mut self.out_addrs[k] as *mut libc::sockaddr_storage).cast();
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
        }
        // SAFETY: headers [0, queued) were just pointed at slots and
        // addresses owned by `self` (borrowed mutably for the call), with
        // the lengths set by `queue`.
        self.dropped += unsafe { sys::send_mmsg(fd, &mut self.out_hdrs[..self.queued]) };
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    #[test]
    fn relays_unchanged_to_new_destinations() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_in = UdpSocket::bind("127.0.0.1:0").unwrap();
        let relay_out = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        relay_in.set_nonblocking(true).unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 20], relay_in.local_addr().unwrap()).unwrap();
        }
        let mut batch = RelayBatch::new(8, 64);
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = 0;
        while got < 5 && Instant::now() < deadline {
            let n = batch.recv(relay_in.as_raw_fd()).unwrap();
            for i in 0..n {
                let (data, src, trunc) = batch.get(i);
                assert_eq!(src, Some(a.local_addr().unwrap()));
                assert!(!trunc);
                assert_eq!(data.len(), 20);
                if data[0] % 2 == 0 {
                    batch.queue(i, b.local_addr().unwrap());
                }
            }
            batch.flush(relay_out.as_raw_fd());
            got += n;
        }
        b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (n, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!(from, relay_out.local_addr().unwrap());
            assert_eq!(&buf[..n], &[buf[0]; 20]);
            seen.push(buf[0]);
        }
        seen.sort();
        assert_eq!(seen, vec![0, 2, 4]);
    }
}
