//! One worker: a mio loop over its sockets, feeding datagrams to the
//! sans-IO dispatcher and sending what it returns.

use std::io::ErrorKind;
use std::net::UdpSocket as StdUdp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::config::Config;
use crate::dispatch::Dispatcher;

const WAKER: Token = Token(usize::MAX);

pub struct Worker {
    id: usize,
    poll: Poll,
    sockets: Vec<UdpSocket>,
    waker: Arc<Waker>,
    stop: Arc<AtomicBool>,
    dispatcher: Dispatcher,
    buf: Vec<u8>,
}

impl Worker {
    pub fn new(
        id: usize,
        sockets: Vec<StdUdp>,
        cfg: &Config,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut mio_sockets = Vec::with_capacity(sockets.len());
        for (i, s) in sockets.into_iter().enumerate() {
            let mut s = UdpSocket::from_std(s);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)?;
            mio_sockets.push(s);
        }
        let seed = seed_for(id);
        Ok(Worker {
            id,
            poll,
            sockets: mio_sockets,
            waker,
            stop,
            dispatcher: Dispatcher::new(cfg.limits(), seed),
            // One byte over the limit so that oversize datagrams are seen as such, not truncated.
            buf: vec![0; cfg.sip.max_datagram + 1],
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    pub fn run(mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !self.stop.load(Ordering::Relaxed) {
            match self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.drain(ev.token().0);
                }
            }
        }
        tracing::debug!(worker = self.id, counters = ?self.dispatcher.counters, "worker stopped");
        Ok(())
    }

    /// Reads until the socket would block (edge-triggered readiness).
    fn drain(&mut self, idx: usize) {
        let Some(sock) = self.sockets.get(idx) else {
            return;
        };
        loop {
            let (len, src) = match sock.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors surface here on Linux; they are about an earlier send.
                Err(_) => continue,
            };
            if let Some(out) = self.dispatcher.handle(&self.buf[..len], src) {
                let _ = sock.send_to(out, src);
            }
        }
    }
}

/// A per-worker seed for tags and branches: unique per process start and worker.
fn seed_for(id: usize) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32) ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
