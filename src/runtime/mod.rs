//! The only module that runs sockets, threads and clocks (its syscalls
//! are the crate's `io` module, shared with the load generator).
//!
//! One worker thread per core, each with its own UDP socket in one
//! `SO_REUSEPORT` group per listen address, so the kernel hashes each source
//! address to one worker and a NAT path always lands on the same core.

mod worker;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Sender};

use crate::config::Config;
use crate::endpoint::{Core, Setup};
use crate::registrar::Directory;

pub use crate::io::{bind_reuseport, RecvBatch, SendBatch};

pub use crate::endpoint::Command;

/// A worker's inbox, as seen from other threads.
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl Inbox {
    /// An inbox from its parts (the runtime makes these; tests too).
    pub fn new(tx: Sender<Command>, waker: Arc<mio::Waker>) -> Inbox {
        Inbox { tx, waker }
    }

    /// Delivers without blocking; gives the command back when the inbox is full.
    pub fn try_send(&self, cmd: Command) -> Result<(), Command> {
        let r = self.tx.try_send(cmd).map_err(|e| e.into_inner());
        let _ = self.waker.wake();
        r
    }

    /// Delivers without blocking; `false` when the inbox is full.
    pub fn send(&self, cmd: Command) -> bool {
        let ok = self.tx.try_send(cmd).is_ok();
        let _ = self.waker.wake();
        ok
    }
}

/// A running set of workers.
pub struct Runtime {
    stop: Arc<AtomicBool>,
    inboxes: Vec<Inbox>,
    threads: Vec<JoinHandle<std::io::Result<()>>>,
    directory: Arc<Directory>,
    metrics: Vec<Arc<crate::metrics::CoreSnapshot>>,
    /// The queue of the HTTP side threads (webhooks, callouts).
    http: (
        crossbeam_channel::Sender<crate::hooks::Request>,
        crossbeam_channel::Receiver<crate::hooks::Request>,
    ),
    /// The HTTP side threads and their counters.
    hooks: crate::hooks::dispatch::Dispatcher,
    hook_stats: Arc<crate::hooks::Stats>,
    /// `[cluster]` on: the ownership publisher, the owner lookup thread,
    /// and their counters.
    cluster: Option<(
        Option<crate::cluster::Publisher>,
        crate::cluster::lookup::Resolver,
    )>,
    cluster_stats: Option<Arc<crate::cluster::Stats>>,
    epoch: Instant,
    /// The journal writer, with `[persist]` on.
    persist: Option<crate::persist::writer::Writer>,
    /// The addresses actually bound (useful when the config asked for port 0).
    pub local_addrs: Vec<std::net::SocketAddr>,
}

/// What the control thread needs from a running set of workers.
#[derive(Clone)]
pub struct Control {
    pub directory: Arc<Directory>,
    pub inboxes: Vec<Inbox>,
    pub metrics: Vec<Arc<crate::metrics::CoreSnapshot>>,
    /// The runtime clock's zero: binding expiries are seconds since it.
    pub epoch: Instant,
    /// The HTTP side threads' queue: the cores send, the threads receive.
    /// Enqueue with [`crate::hooks::enqueue`], which counts what is dropped.
    pub http_tx: crossbeam_channel::Sender<crate::hooks::Request>,
    pub http_rx: crossbeam_channel::Receiver<crate::hooks::Request>,
    /// The HTTP side threads' counters (for `/metrics`).
    pub hooks: Arc<crate::hooks::Stats>,
    /// `[cluster]` on: the publisher's counters (for `/metrics`).
    pub cluster: Option<Arc<crate::cluster::Stats>>,
    /// The journal writer's counters, with `[persist]` on.
    pub persist: Option<Arc<crate::persist::Stats>>,
}

/// How many workers a configuration asks for.
pub fn worker_count(cfg: &Config) -> usize {
    match cfg.runtime.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// The wall time (Unix ms) at `epoch`, the runtime clock's zero: the cores
/// add their `now` to it where they need wall time.
pub(crate) fn unix_ms_at(epoch: Instant) -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    unix.saturating_sub(epoch.elapsed().as_millis() as u64)
}

/// 32 random bytes from the OS, for the nonce secret and id seeds.
fn os_random() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    let mut f = std::fs::File::open("/dev/urandom")?;
    std::io::Read::read_exact(&mut f, &mut b)?;
    Ok(b)
}

impl Runtime {
    /// Binds every socket and loads credentials, then starts the workers,
    /// each running the [`crate::endpoint::Endpoint`] of its core. Errors
    /// are returned before any thread starts.
    ///
    /// With `[persist]` on, the registrations on disk are restored first:
    /// the directory before any socket is bound, each core's bindings,
    /// expiry timers and NAT paths by its worker (all in parallel) before
    /// it serves anything.
    pub fn start(cfg: &Config) -> std::io::Result<Runtime> {
        // The publisher first: the cores' registrars hold its handle.
        let stats = Arc::new(crate::cluster::Stats::default());
        let cluster = if cfg.cluster.enabled {
            // The node record carries the API address peers post job parts to.
            let mut section = cfg.cluster.clone();
            section.api_advertise = cfg.cluster_api_addr().unwrap_or_default();
            Some(crate::cluster::Publisher::start(&section, stats.clone())?)
        } else {
            None
        };
        // A bounded channel allocates its slots up front: none while off.
        let lookup_cap = if cluster.is_some() {
            cfg.cluster.queue
        } else {
            1
        };
        let (lookup_tx, lookup_rx) = bounded(lookup_cap.max(1));
        let n = worker_count(cfg);
        let setup = Setup::new(cfg, n, os_random()?)?.with_cluster(
            cluster.as_ref().map(|p| p.handle()),
            cluster.is_some().then_some(lookup_tx),
        );
        let directory = setup.directory().clone();
        let epoch = Instant::now();
        let epoch_ms = unix_ms_at(epoch);
        let mut recovered = None;
        let mut writer = None;
        if cfg.persist.enabled {
            let r = crate::persist::restore(&cfg.persist, &directory, epoch_ms, n)?;
            writer = Some(crate::persist::writer::Writer::start(
                &cfg.persist,
                directory.clone(),
                r.next_seq,
                epoch_ms,
            )?);
            recovered = Some(r);
        }
        // Restored paths are first prompted within the interval less its
        // jitter: before any path learnt in this run, and spread.
        let ka = cfg.keepalive();
        let spread = ka.interval_ms.saturating_sub(ka.jitter_ms).max(1);
        let mut rt = Runtime::start_at(cfg, directory, epoch, |core, addrs| {
            let mut ep = setup.endpoint(core, addrs);
            if let Some(list) = recovered.as_mut().and_then(|r| r.per_core.get_mut(core)) {
                ep.restore_at_start(std::mem::take(list), spread);
            }
            ep
        })?;
        rt.persist = writer;
        if let Some(p) = &cluster {
            p.set_inboxes(rt.inboxes.clone());
            let inboxes = rt.inboxes.clone();
            let r = crate::cluster::lookup::Resolver::start(
                &cfg.cluster,
                lookup_rx,
                inboxes,
                stats.clone(),
            )?;
            rt.cluster = Some((cluster, r));
            rt.cluster_stats = Some(stats);
        }
        Ok(rt)
    }

    /// Binds every socket, then starts one worker per core running the
    /// [`Core`] that `make(core, local_addrs)` returns. `directory` is what
    /// the control API reads (an empty one for an endpoint that keeps none).
    pub fn start_with<C: Core>(
        cfg: &Config,
        directory: Arc<Directory>,
        make: impl FnMut(usize, &[std::net::SocketAddr]) -> C,
    ) -> std::io::Result<Runtime> {
        Runtime::start_at(cfg, directory, Instant::now(), make)
    }

    /// [`Runtime::start_with`] on a clock whose zero is `epoch`.
    fn start_at<C: Core>(
        cfg: &Config,
        directory: Arc<Directory>,
        epoch: Instant,
        mut make: impl FnMut(usize, &[std::net::SocketAddr]) -> C,
    ) -> std::io::Result<Runtime> {
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
        // The ng control socket: one more local socket per worker, after
        // the listen sockets (the endpoint knows it by that number).
        if let Some(ng) = cfg.media.ng_addr().ok().flatten() {
            let mut bound = ng;
            for sockets in per_worker.iter_mut() {
                let s = bind_reuseport(bound, cfg.runtime.socket_buffer)?;
                bound = s.local_addr()?;
                sockets.push(s);
            }
            tracing::info!(addr = %bound, "rtpengine ng control listening");
        }
        // Two sockets per relay port pair, plus the listen sockets and slack.
        let media_used = cfg
            .media
            .mode()
            .is_ok_and(|m| m != crate::media::Mode::Never)
            || !cfg.media.ng_listen.is_empty();
        if media_used {
            let ports = cfg
                .media
                .port_range()
                .map_or(0, |(a, b)| u64::from(b - a) + 1);
            let want = ports + 1024;
            match crate::io::raise_fd_limit(want) {
                Ok(got) if got < want => tracing::warn!(
                    open_files = got,
                    wanted = want,
                    "the open-file limit caps the relay below media.ports; raise the hard \
                     limit (LimitNOFILE=, see tuning/) or narrow media.ports"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
            }
        }
        let media_ip = cfg
            .sip
            .listen
            .first()
            .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let stop = Arc::new(AtomicBool::new(false));
        let cores = if cfg.runtime.pin_cpus {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };

        let mut workers = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        let mut metrics = Vec::with_capacity(n);
        let (http_tx, http_rx) = bounded(cfg.webhooks.queue.max(1));
        let hook_stats = Arc::new(crate::hooks::Stats::default());
        for (i, sockets) in per_worker.into_iter().enumerate() {
            let (tx, rx) = bounded(cfg.runtime.inbox_capacity);
            let snapshot = Arc::new(crate::metrics::CoreSnapshot::default());
            metrics.push(snapshot.clone());
            let mut core = make(i, &local_addrs);
            core.set_unix_epoch(unix_ms_at(epoch));
            let w = worker::Worker::new(worker::WorkerParts {
                id: i,
                sockets,
                core,
                metrics: snapshot,
                http: http_tx.clone(),
                hook_stats: hook_stats.clone(),
                inbox: rx,
                stop: stop.clone(),
                epoch,
                batch: cfg.runtime.batch,
                max_datagram: cfg.sip.max_datagram,
                pin: cores.get(i % cores.len().max(1)).copied(),
                stats_interval_s: cfg.runtime.stats_interval_s,
                media_ports: cfg.media.core_pairs(i, n),
                media_ip,
                media_batch_wait_us: cfg.media.batch_wait_us,
            })?;
            inboxes.push(Inbox {
                tx,
                waker: w.waker(),
            });
            workers.push(w);
        }
        // Before the workers, so that their first callout finds a thread
        // (and callouts work with the API off).
        let hooks = crate::hooks::dispatch::Dispatcher::start(
            &cfg.webhooks,
            http_rx.clone(),
            inboxes.clone(),
            hook_stats.clone(),
        )?;
        let mut threads = Vec::with_capacity(n);
        for mut w in workers {
            w.set_peers(inboxes.clone());
            let name = format!("tether-w{}", w.id);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || w.run())?,
            );
        }
        tracing::info!(workers = n, addrs = ?local_addrs, "tether listening");
        Ok(Runtime {
            stop,
            inboxes,
            threads,
            directory,
            metrics,
            http: (http_tx, http_rx),
            hooks,
            hook_stats,
            cluster: None,
            cluster_stats: None,
            epoch,
            persist: None,
            local_addrs,
        })
    }

    /// Handles for the control API.
    pub fn control(&self) -> Control {
        Control {
            directory: self.directory.clone(),
            inboxes: self.inboxes.clone(),
            metrics: self.metrics.clone(),
            epoch: self.epoch,
            http_tx: self.http.0.clone(),
            http_rx: self.http.1.clone(),
            hooks: self.hook_stats.clone(),
            cluster: self.cluster_stats.clone(),
            persist: self.persist.as_ref().map(|w| w.stats.clone()),
        }
    }

    /// The shared location directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Asks every worker to stop after what it is handling now, and waits;
    /// then the HTTP side threads (each finishes the request in hand).
    pub fn shutdown(self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        for inbox in &self.inboxes {
            inbox.waker.wake()?;
        }
        let mut result = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .map_err(|_| std::io::Error::other("worker panicked"))
                .and_then(|r| r);
            if result.is_ok() {
                result = r;
            }
        }
        self.hooks.shutdown();
        if let Some((p, r)) = self.cluster {
            r.shutdown();
            if let Some(p) = p {
                p.shutdown();
            }
        }
        // The cores are stopped: a last commit and a whole snapshot, so the
        // next start reads one file instead of replaying journals.
        if let Some(w) = self.persist {
            w.shutdown(true);
        }
        result
    }
}
