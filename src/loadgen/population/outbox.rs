//! The population's datagrams waiting for the driver, written back to back
//! into one buffer that is reused once they have all been taken.

use std::net::{Ipv4Addr, SocketAddrV4};

/// A datagram to send: from `src` on socket `socket`, to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transmit<'a> {
    pub socket: usize,
    pub src: Ipv4Addr,
    pub dst: SocketAddrV4,
    pub bytes: &'a [u8],
}

/// Datagrams waiting for `poll_transmit`, written back to back into one
/// reused buffer.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    bytes: Vec<u8>,
    /// (socket, source, destination, end offset in `bytes`).
    items: Vec<(u16, Ipv4Addr, SocketAddrV4, u32)>,
    next: usize,
}

impl Outbox {
    /// The buffer to append the next datagram to (reclaimed once drained).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.next == self.items.len() && self.next > 0 {
            self.clear();
        }
        &mut self.bytes
    }

    /// Ends the datagram appended since the last one.
    pub fn commit(&mut self, socket: usize, src: Ipv4Addr, dst: SocketAddrV4) {
        let end = self.bytes.len() as u32;
        self.items.push((socket as u16, src, dst, end));
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
        self.next = 0;
    }

    pub fn pop(&mut self) -> Option<Transmit<'_>> {
        let &(socket, src, dst, end) = self.items.get(self.next)?;
        let start = match self.next {
            0 => 0,
            k => self.items[k - 1].3,
        };
        self.next += 1;
        Some(Transmit {
            socket: usize::from(socket),
            src,
            dst,
            bytes: &self.bytes[start as usize..end as usize],
        })
    }
}
