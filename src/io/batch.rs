//! Batched datagram I/O: `recvmmsg` and `sendmmsg` over buffers allocated
//! once. Each datagram carries its peer address and, on sockets with
//! `IP_PKTINFO` on, the local address it was sent to (receive) or is to be
//! sent from (send), so one wildcard socket can speak for many addresses.
//!
//! The message headers hold raw pointers into the batch's own buffers.
//! They are written afresh from `&mut self` right before each system call
//! (`wire`), so every pointer the kernel sees was derived from a borrow
//! that lasts for the call, whatever happened to the batch in between.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;

use super::sys::{self, Control};

/// Receives up to `batch` datagrams per system call into reused buffers.
pub struct RecvBatch {
    slot_len: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: the only thing that keeps the batch from being `Send` is the raw
// pointers in its headers; they point into the batch's own heap buffers
// (which move with it), are rewritten before each system call and are
// never dereferenced by Rust code, so moving the batch to another thread
// shares nothing.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `slot_len` is the largest datagram kept whole; longer ones arrive
    /// truncated to `slot_len` bytes (callers size it one past their limit).
    pub fn new(batch: usize, slot_len: usize) -> RecvBatch {
        let batch = batch.max(1);
        RecvBatch {
            slot_len,
            bufs: vec![0; batch * slot_len],
            addrs: sys::zeroed_vec(batch),
            controls: vec![[0; 8]; batch],
            iovs: sys::zeroed_vec(batch),
            hdrs: sys::zeroed_vec(batch),
        }
    }

    /// Points every header at its slot, address and control buffer, with
    /// their full sizes, for the kernel to fill.
    fn wire(&mut self) {
        let slot = self.slot_len;
        let bufs = self.bufs.chunks_exact_mut(slot.max(1));
        let parts = self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(self.addrs.iter_mut().zip(self.controls.iter_mut()));
        for (((h, iov), (addr, control)), buf) in parts.zip(bufs) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = slot;
            let m = &mut h.msg_hdr;
            m.msg_iov = iov;
            m.msg_iovlen = 1;
            m.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_control = control.as_mut_ptr().cast();
            m.msg_controllen = size_of::<Control>() as _;
            m.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Receives what is queued, without blocking. `Ok(0)` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        if self.slot_len == 0 {
            return Ok(0);
        }
        self.wire();
        // SAFETY: `wire` just pointed every header at buffers owned by
        // `self` (borrowed mutably for this call) with their true sizes:
        // `slot_len` bytes of data, a sockaddr_storage, a control buffer.
        unsafe { sys::recv_mmsg(fd, &mut self.hdrs) }
    }

    /// Datagram `i` of the last `recv` and its source (`None` for a source
    /// address family tether does not handle).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let len = (self.hdrs[i].msg_len as usize).min(self.slot_len);
        let data = &self.bufs[i * self.slot_len..i * self.slot_len + len];
        (data, sys::read_sockaddr(&self.addrs[i]))
    }

    /// The local address datagram `i` of the last `recv` was sent to, when
    /// the socket has `IP_PKTINFO` on (see `io::bind_pktinfo`).
    pub fn local_ip(&self, i: usize) -> Option<IpAddr> {
        // `as _`: the field is usize on glibc, u32 on musl.
        let len: usize = self.hdrs[i].msg_hdr.msg_controllen as _;
        sys::read_pktinfo(&self.controls[i], len).map(IpAddr::V4)
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }
}

/// Collects outgoing datagrams and sends them with one `sendmmsg`.
pub struct SendBatch {
    slot_len: usize,
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
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
        SendBatch {
            slot_len,
            bufs: vec![0; batch * slot_len],
            addrs: sys::zeroed_vec(batch),
            controls: vec![[0; 8]; batch],
            iovs: sys::zeroed_vec(batch),
            hdrs: sys::zeroed_vec(batch),
            queued: 0,
            dropped: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.queued == self.hdrs.len()
    }

    /// Queues a copy of `data` for `to`, from the socket's own address. The
    /// caller flushes when full.
    pub fn push(&mut self, data: &[u8], to: SocketAddr) {
        if let Some(i) = self.queue(data, to) {
            self.hdrs[i].msg_hdr.msg_controllen = 0;
        }
    }

    /// Queues a copy of `data` for `to`, sent from `src` (any local address:
    /// the socket must have `IP_PKTINFO` on and be bound to the wildcard).
    pub fn push_from(&mut self, data: &[u8], src: Ipv4Addr, to: SocketAddr) {
        if let Some(i) = self.queue(data, to) {
            let len = sys::write_pktinfo(&mut self.controls[i], src);
            self.hdrs[i].msg_hdr.msg_controllen = len as _;
        }
    }

    /// Copies a datagram into the next slot; its index, or `None` (counted
    /// as dropped) when it does not fit.
    fn queue(&mut self, data: &[u8], to: SocketAddr) -> Option<usize> {
        if data.len() > self.slot_len || self.is_full() {
            self.dropped += 1;
            return None;
        }
        let i = self.queued;
        self.bufs[i * self.slot_len..i * self.slot_len + data.len()].copy_from_slice(data);
        self.iovs[i].iov_len = data.len();
        self.hdrs[i].msg_hdr.msg_namelen = sys::write_sockaddr(&mut self.addrs[i], to);
        self.queued += 1;
        Some(i)
    }

    /// Points the queued headers at their slots, addresses and control
    /// buffers; the lengths were set when each was queued.
    fn wire(&mut self) {
        let slot = self.slot_len;
        let n = self.queued;
        for i in 0..n {
            self.iovs[i].iov_base = self.bufs[i * slot..].as_mut_ptr().cast();
            let m = &mut self.hdrs[i].msg_hdr;
            m.msg_iov = &mut self.iovs[i];
            m.msg_iovlen = 1;
            m.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            m.msg_control = if m.msg_controllen == 0 {
                std::ptr::null_mut()
            } else {
                self.controls[i].as_mut_ptr().cast()
            };
            m.msg_flags = 0;
        }
    }

    /// Sends everything queued. Datagrams the kernel will not take now are dropped and counted:
    /// UDP senders retransmit, and blocking a worker would stall every path it owns.
    pub fn flush(&mut self, fd: RawFd) {
        self.wire();
        // SAFETY: `wire` just pointed headers [0, queued) at buffers owned
        // by `self` (borrowed mutably for this call), with the lengths set
        // by `queue`: the data, the address and the control message.
        self.dropped += unsafe { sys::send_mmsg(fd, &mut self.hdrs[..self.queued]) };
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddrV4, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use crate::io::bind_pktinfo;

    /// Receives at least `want` datagrams (waiting up to a second).
    fn recv_all(
        b: &UdpSocket,
        batch: &mut RecvBatch,
        want: usize,
    ) -> Vec<(Vec<u8>, SocketAddr, Option<IpAddr>)> {
        let mut got = Vec::new();
        for _ in 0..200 {
            let n = batch.recv(b.as_raw_fd()).unwrap();
            for i in 0..n {
                let (d, from) = batch.get(i);
                got.push((d.to_vec(), from.unwrap(), batch.local_ip(i)));
            }
            if got.len() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        got
    }

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
                assert_eq!(recv.local_ip(i), None, "IP_PKTINFO is off");
                got.push(d.to_vec());
            }
        }
        assert_eq!(got.len(), 5);
        assert_eq!(got[3], vec![3u8; 10]);
    }

    #[test]
    fn source_address_is_chosen_per_datagram_and_reported_back() {
        let a = bind_pktinfo(0, 1 << 20).unwrap();
        let b = bind_pktinfo(0, 1 << 20).unwrap();
        let port = |s: &UdpSocket| s.local_addr().unwrap().port();
        let to = SocketAddr::from(([127, 0, 0, 1], port(&b)));
        let mut send = SendBatch::new(8, 64);
        send.push_from(b"hi", Ipv4Addr::new(127, 9, 8, 7), to);
        send.flush(a.as_raw_fd());
        let mut recv = RecvBatch::new(8, 64);
        let got = recv_all(&b, &mut recv, 1);
        let (data, from, local) = got.first().expect("datagram arrives").clone();
        assert_eq!(data, b"hi");
        assert_eq!(from, SocketAddr::from(([127, 9, 8, 7], port(&a))));
        assert_eq!(local, Some(IpAddr::from([127, 0, 0, 1])));
        // The answer to that source comes back to `a`, addressed to 127.9.8.7.
        send.push_from(b"yo", Ipv4Addr::LOCALHOST, from);
        send.flush(b.as_raw_fd());
        let got = recv_all(&a, &mut recv, 1);
        let (data, _, local) = got.first().expect("answer arrives").clone();
        assert_eq!(data, b"yo");
        assert_eq!(local, Some(IpAddr::from([127, 9, 8, 7])));
    }

    #[test]
    fn batched_sources_and_destinations() {
        let a = bind_pktinfo(0, 1 << 20).unwrap();
        let b = bind_pktinfo(0, 1 << 20).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, b.local_addr().unwrap().port());
        let mut out = SendBatch::new(8, 2048);
        for k in 0..5u8 {
            out.push_from(&[k; 10], Ipv4Addr::new(127, 20, 0, k + 1), to.into());
        }
        // One without a chosen source in the same batch: the socket's own.
        out.push(&[9; 10], to.into());
        out.flush(a.as_raw_fd());
        assert_eq!(out.dropped, 0);
        let mut inb = RecvBatch::new(8, 2048);
        let got = recv_all(&b, &mut inb, 6);
        assert_eq!(got.len(), 6);
        for (d, from, local) in got {
            assert_eq!(d.len(), 10);
            let want = if d[0] == 9 {
                Ipv4Addr::LOCALHOST
            } else {
                Ipv4Addr::new(127, 20, 0, d[0] + 1)
            };
            assert_eq!(from.ip(), IpAddr::V4(want));
            assert_eq!(local, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        }
    }
}
