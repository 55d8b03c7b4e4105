//! The only module that touches sockets, threads and clocks.
//!
//! One worker thread per core, each with its own UDP socket in one
//! `SO_REUSEPORT` group per listen address, so the kernel hashes each source
//! address to one worker and a NAT path always lands on the same core.

mod socket;
mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Config;

pub use socket::bind_reuseport;

/// A running set of workers.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    wakers: Vec<Arc<mio::Waker>>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    /// The addresses actually bound (useful when the config asked for port 0).
    pub local_addrs: Vec<std::net::SocketAddr>,
}

/// How many workers a configuration asks for.
pub fn worker_count(cfg: &Config) -> usize {
    match cfg.runtime.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

impl Runtime {
    /// Binds every socket, then starts the workers. Binding errors are
    /// returned before any thread starts.
    pub fn start(cfg: &Config) -> std::io::Result<Runtime> {
        let n = worker_count(cfg);
        let mut per_worker: Vec<Vec<std::net::UdpSocket>> = (0..n).map(|_| Vec::new()).collect();
        let mut local_addrs = Vec::new();
        for &addr in &cfg.sip.listen {
            // With port 0 the first socket picks the port and the rest join it.
            let mut bound = addr;
            for sockets in per_worker.iter_mut() {
                let s = bind_reuseport(bound, cfg.runtime.socket_buffer)?;
                bound = s.local_addr()?;
                sockets.push(s);
            }
            local_addrs.push(bound);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut wakers = Vec::new();
        let mut threads = Vec::new();
        for (i, sockets) in per_worker.into_iter().enumerate() {
            let w = worker::Worker::new(i, sockets, cfg, stop.clone())?;
            wakers.push(w.waker());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("tether-w{i}"))
                    .spawn(move || w.run())?,
            );
        }
        tracing::info!(workers = n, addrs = ?local_addrs, "tether listening");
        Ok(Runtime {
            stop,
            wakers,
            threads,
            local_addrs,
        })
    }

    /// Asks every worker to stop after what it is handling now, and waits.
    pub fn shutdown(self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.wake()?;
        }
        for t in self.threads {
            t.join()
                .map_err(|_| std::io::Error::other("worker panicked"))??;
        }
        Ok(())
    }
}
