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

const SLOT: usize = 2048;
const CMSG_SPACE: usize = 64;

/// Batched `sendmmsg`/`recvmmsg` with a source (send) or destination
/// (receive) address per datagram through `IP_PKTINFO`. Buffers are
/// allocated once.
pub struct PktBatch {
    bufs: Vec<u8>,
    lens: Vec<usize>,
    peers: Vec<libc::sockaddr_in>,
    locals: Vec<Ipv4Addr>,
    cmsgs: Vec<[u64; CMSG_SPACE / 8]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    len: usize,
}

// SAFETY: the raw pointers in the headers are set right before each system
// call from buffers the batch owns; nothing is shared between threads.
unsafe impl Send for PktBatch {}

impl PktBatch {
    pub fn new(capacity: usize) -> PktBatch {
        let capacity = capacity.max(1);
        PktBatch {
            bufs: vec![0; capacity * SLOT],
            lens: vec![0; capacity],
            // SAFETY: all-zero is valid for these C structs.
            peers: vec![unsafe { zeroed() }; capacity],
            locals: vec![Ipv4Addr::UNSPECIFIED; capacity],
            cmsgs: vec![[0; CMSG_SPACE / 8]; capacity],
            iovs: vec![unsafe { zeroed() }; capacity],
            hdrs: vec![unsafe { zeroed() }; capacity],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.hdrs.len()
    }

    /// Queues a datagram from `from` to `to`; returns false when full or too big.
    pub fn push(&mut self, data: &[u8], from: Ipv4Addr, to: SocketAddrV4) -> bool {
        if self.is_full() || data.len() > SLOT {
            return false;
        }
        let i = self.len;
        self.bufs[i * SLOT..i * SLOT + data.len()].copy_from_slice(data);
        self.lens[i] = data.len();
        let p = &mut self.peers[i];
        p.sin_family = libc::AF_INET as libc::sa_family_t;
        p.sin_port = to.port().to_be();
        p.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        self.locals[i] = from;
        self.len += 1;
        true
    }

    /// Points every header at its buffers (pointers are only valid until the
    /// vectors move, so this runs right before each system call).
    fn wire(&mut self, count: usize, sending: bool) {
        for i in 0..count {
            self.iovs[i].iov_base = self.bufs[i * SLOT..].as_mut_ptr().cast();
            self.iovs[i].iov_len = if sending { self.lens[i] } else { SLOT };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.peers[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[i].as_mut_ptr().cast();
            h.msg_flags = 0;
            if sending {
                // SAFETY: `cmsgs[i]` has room for one in_pktinfo control message.
                unsafe {
                    h.msg_controllen =
                        libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
                    let c = libc::CMSG_FIRSTHDR(h);
                    (*c).cmsg_level = libc::IPPROTO_IP;
                    (*c).cmsg_type = libc::IP_PKTINFO;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                    let info: *mut libc::in_pktinfo = libc::CMSG_DATA(c).cast();
                    (*info).ipi_ifindex = 0;
                    (*info).ipi_spec_dst.s_addr = u32::from(self.locals[i]).to_be();
                    (*info).ipi_addr.s_addr = 0;
                }
            } else {
                h.msg_controllen = CMSG_SPACE;
            }
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Queues a datagram, first sending the batch on `sock` if it is full.
    pub fn send_soon(
        &mut self,
        sock: &PktSocket,
        data: &[u8],
        from: Ipv4Addr,
        to: SocketAddrV4,
    ) -> bool {
        if self.is_full() {
            self.flush(sock);
        }
        self.push(data, from, to)
    }

    /// Sends what is queued; returns how many went out (the rest are dropped).
    pub fn flush(&mut self, sock: &PktSocket) -> usize {
        let n = self.len;
        self.len = 0;
        if n == 0 {
            return 0;
        }
        self.wire(n, true);
        let mut sent = 0;
        while sent < n {
            // SAFETY: headers [sent, n) were just wired to live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    sock.fd(),
                    self.hdrs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                break;
            }
            sent += r as usize;
        }
        sent
    }

    /// Receives up to the capacity; then `get(i)` for i in 0..returned.
    pub fn recv(&mut self, sock: &PktSocket) -> usize {
        let cap = self.hdrs.len();
        self.wire(cap, false);
        // SAFETY: all headers were just wired to live buffers of the declared sizes.
        let r = unsafe {
            libc::recvmmsg(
                sock.fd(),
                self.hdrs.as_mut_ptr(),
                cap as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return 0;
        }
        let r = r as usize;
        for i in 0..r {
            let mut local = Ipv4Addr::UNSPECIFIED;
            // SAFETY: the kernel filled msg_control up to msg_controllen.
            unsafe {
                let h = &self.hdrs[i].msg_hdr;
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                        let info: *const libc::in_pktinfo = libc::CMSG_DATA(c).cast();
                        local = Ipv4Addr::from(u32::from_be((*info).ipi_addr.s_addr));
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
            self.locals[i] = local;
            self.lens[i] = (self.hdrs[i].msg_len as usize).min(SLOT);
        }
        r
    }

    /// Datagram `i` of the last `recv`: (bytes, source, local address it was sent to).
    pub fn get(&self, i: usize) -> (&[u8], SocketAddrV4, Ipv4Addr) {
        let p = &self.peers[i];
        let from = SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(p.sin_addr.s_addr)),
            u16::from_be(p.sin_port),
        );
        (
            &self.bufs[i * SLOT..i * SLOT + self.lens[i]],
            from,
            self.locals[i],
        )
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn batched_sources_and_destinations() {
        let a = PktSocket::bind(0, 1 << 20).unwrap();
        let b = PktSocket::bind(0, 1 << 20).unwrap();
        let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, b.port());
        let mut out = PktBatch::new(8);
        for k in 0..5u8 {
            assert!(out.push(&[k; 10], Ipv4Addr::new(127, 20, 0, k + 1), to));
        }
        assert_eq!(out.flush(&a), 5);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut inb = PktBatch::new(8);
        let n = inb.recv(&b);
        assert_eq!(n, 5);
        for i in 0..n {
            let (d, from, local) = inb.get(i);
            assert_eq!(d.len(), 10);
            assert_eq!(*from.ip(), Ipv4Addr::new(127, 20, 0, d[0] + 1));
            assert_eq!(local, Ipv4Addr::LOCALHOST);
        }
    }
}
