//! The one route for bytes out of a core: datagrams queued in one arena,
//! handed to the runtime in order by [`Transmits::pop`].

use std::net::SocketAddr;

/// A datagram for the runtime to send: `bytes` to `to`, from the socket of
/// local address number `local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub to: SocketAddr,
    pub local: u8,
    pub bytes: &'a [u8],
}

/// Queued datagrams: their bytes back to back in one buffer, so queueing a
/// datagram allocates nothing once the buffers have grown. The queue behind
/// [`super::Core::poll_transmit`], for any `Core`.
#[derive(Debug)]
pub struct Transmits {
    /// The largest datagram the runtime's send buffers hold
    /// (`sip.max_datagram`): larger ones are dropped here, and counted,
    /// rather than vanishing in the runtime.
    max: usize,
    /// Datagrams dropped for being over `max`.
    pub(crate) oversize_dropped: u64,
    buf: Vec<u8>,
    meta: Vec<(u32, u32, SocketAddr, u8)>,
    /// The next entry of `meta` to hand out.
    next: usize,
}

impl Transmits {
    /// A queue for datagrams of at most `max` bytes (`sip.max_datagram`).
    pub fn new(max: usize) -> Transmits {
        Transmits {
            max,
            oversize_dropped: 0,
            buf: Vec::new(),
            meta: Vec::new(),
            next: 0,
        }
    }

    /// Queues `bytes` for `to` from local socket `local`; over `max`, counts it instead.
    pub fn push(&mut self, bytes: &[u8], to: SocketAddr, local: u8) {
        if bytes.len() > self.max {
            self.oversize_dropped += 1;
            tracing::debug!(%to, len = bytes.len(), "datagram over sip.max_datagram not sent");
            return;
        }
        let a = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        self.meta.push((a, self.buf.len() as u32, to, local));
    }

    /// Datagrams queued and not yet handed out.
    pub fn len(&self) -> usize {
        self.meta.len() - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest datagram not yet handed out. Once all are, the buffers are
    /// reset (no borrow can be outstanding then).
    pub fn pop(&mut self) -> Option<Transmit<'_>> {
        let Some(&(a, b, to, local)) = self.meta.get(self.next) else {
            self.meta.clear();
            self.buf.clear();
            self.next = 0;
            return None;
        };
        self.next += 1;
        Some(Transmit {
            to,
            local,
            bytes: &self.buf[a as usize..b as usize],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order_and_reuses_the_buffer() {
        let mut t = Transmits::new(5);
        let to: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        t.push(b"one", to, 0);
        t.push(b"two!", to, 1);
        assert_eq!(
            t.pop().map(|t| (t.bytes.to_vec(), t.local)),
            Some((b"one".to_vec(), 0))
        );
        t.push(b"three", to, 0);
        assert_eq!(t.pop().unwrap().bytes, b"two!");
        assert_eq!(t.pop().unwrap().bytes, b"three");
        assert!(t.pop().is_none());
        let cap = t.buf.capacity();
        t.push(b"four", to, 0);
        assert_eq!(t.buf.capacity(), cap, "the arena was reset, not regrown");
        assert_eq!(t.pop().unwrap().bytes, b"four");
        t.push(b"sixsix", to, 0);
        assert!(t.pop().is_none());
        assert_eq!(t.oversize_dropped, 1);
    }
}
