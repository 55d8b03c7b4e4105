//! One worker: a mio loop over its sockets, feeding batches of datagrams to
//! the sans-IO dispatcher and sending what it returns in batches; plus an
//! inbox for messages from other threads.

use std::io::ErrorKind;
use std::net::UdpSocket as StdUdp;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use super::Command;
use crate::dispatch::Dispatcher;
use crate::io::{RecvBatch, SendBatch};

const WAKER: Token = Token(usize::MAX);

pub struct Worker {
    pub id: usize,
    poll: Poll,
    sockets: Vec<UdpSocket>,
    waker: Arc<Waker>,
    inbox: Receiver<Command>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    dispatcher: Dispatcher,
    recv: RecvBatch,
    send: SendBatch,
    pin: Option<core_affinity::CoreId>,
    peers: Vec<super::Inbox>,
    stats_every: Option<Duration>,
    last_stats: std::time::Instant,
    metrics: Arc<crate::metrics::CoreSnapshot>,
    last_publish: std::time::Instant,
    parts_published: u64,
    finished: crossbeam_channel::Sender<Arc<crate::notify::Job>>,
}

/// What a worker needs besides its sockets.
pub struct WorkerParts {
    pub id: usize,
    pub sockets: Vec<StdUdp>,
    pub dispatcher: Dispatcher,
    pub inbox: Receiver<Command>,
    pub stop: Arc<AtomicBool>,
    pub epoch: Instant,
    pub batch: usize,
    pub max_datagram: usize,
    pub pin: Option<core_affinity::CoreId>,
    /// Seconds between stats log lines; 0 = none.
    pub stats_interval_s: u64,
    /// Where this worker publishes its counters for the metrics endpoint.
    pub metrics: Arc<crate::metrics::CoreSnapshot>,
    /// Where finished jobs go (webhooks).
    pub finished: crossbeam_channel::Sender<Arc<crate::notify::Job>>,
}

impl Worker {
    pub fn new(p: WorkerParts) -> std::io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut sockets = Vec::with_capacity(p.sockets.len());
        for (i, s) in p.sockets.into_iter().enumerate() {
            let mut s = UdpSocket::from_std(s);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)?;
            sockets.push(s);
        }
        Ok(Worker {
            id: p.id,
            poll,
            sockets,
            waker,
            inbox: p.inbox,
            stop: p.stop,
            epoch: p.epoch,
            dispatcher: p.dispatcher,
            // One byte over the limit so that oversize datagrams are seen as such.
            recv: RecvBatch::new(p.batch, p.max_datagram + 1),
            send: SendBatch::new(p.batch, p.max_datagram),
            pin: p.pin,
            peers: Vec::new(),
            stats_every: (p.stats_interval_s > 0).then(|| Duration::from_secs(p.stats_interval_s)),
            last_stats: std::time::Instant::now(),
            metrics: p.metrics,
            last_publish: std::time::Instant::now(),
            parts_published: 0,
            finished: p.finished,
        })
    }

    /// Every worker's inbox (including this one's), indexed by worker id.
    pub fn set_peers(&mut self, peers: Vec<super::Inbox>) {
        self.peers = peers;
    }

    /// Tells other cores about bindings this core took over from them.
    fn route_outbox(&mut self) {
        for b in self.dispatcher.registrar.outbox.drain(..) {
            // A full inbox only delays the slot's release until its expiry.
            if let Some(peer) = self.peers.get(usize::from(b.core)) {
                peer.send(Command::Forget(b));
            }
        }
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn run(mut self) -> std::io::Result<()> {
        if let Some(core) = self.pin {
            if !core_affinity::set_for_current(core) {
                tracing::warn!(worker = self.id, "could not pin to core {}", core.id);
            }
        }
        let mut events = Events::with_capacity(64);
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self.poll_timeout();
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() != WAKER {
                    self.drain(ev.token().0);
                }
            }
            self.drain_inbox();
            self.tick();
            self.report_finished();
            // Counters reach the metrics endpoint once a second (the path
            // gauges are a scan of this core's path table), and as soon as a
            // job part ends, so a finished job and its counters agree.
            let parts = self.dispatcher.notify.stats.parts_finished;
            if self.last_publish.elapsed() >= Duration::from_secs(1)
                || parts != self.parts_published
            {
                self.parts_published = parts;
                self.last_publish = std::time::Instant::now();
                self.metrics.publish(&self.dispatcher.metric_values());
            }
            if self
                .stats_every
                .is_some_and(|every| self.last_stats.elapsed() >= every)
            {
                self.last_stats = std::time::Instant::now();
                self.log_stats("stats");
            }
        }
        self.metrics.publish(&self.dispatcher.metric_values());
        self.log_stats("worker stopped");
        Ok(())
    }

    /// Hands jobs that finished on this core to the webhook thread.
    fn report_finished(&mut self) {
        for job in self.dispatcher.notify.finished.drain(..) {
            tracing::info!(
                job = job.id,
                devices = job.devices.len(),
                "notify job finished"
            );
            // Nobody listening (no API) or a full queue: the job record still has it all.
            let _ = self.finished.try_send(job);
        }
    }

    /// One log line with this worker's counters (until the metrics endpoint exists).
    fn log_stats(&self, what: &str) {
        let d = &self.dispatcher;
        let (c, r, k, n) = (
            &d.counters,
            &d.registrar.stats,
            &d.keepalive.stats,
            &d.notify.stats,
        );
        let [reg_only, dialog_reg, dialog_only] = d.keepalive.paths_by_state();
        tracing::info!(
            worker = self.id,
            received = c.received,
            malformed_answered = c.malformed_answered,
            malformed_dropped = c.malformed_dropped,
            oversize_dropped = c.oversize_dropped,
            stun = c.stun_requests,
            bindings = d.registrar.local_bindings(),
            registered = r.registered,
            refreshed = r.refreshed,
            unregistered = r.unregistered,
            expired = r.expired,
            challenged = r.challenged,
            forbidden = r.forbidden,
            paths_registration_only = reg_only,
            paths_dialog_and_registration = dialog_reg,
            paths_dialog_only = dialog_only,
            paths_dead = d.keepalive.dead_paths(),
            prompts = k.prompts,
            prompts_retransmitted = k.retransmissions,
            prompts_answered = k.answered,
            prompts_missed = k.missed,
            paths_declared_dead = k.dead,
            notify_sent = n.requests_sent,
            notify_retransmitted = n.retransmissions,
            notify_delivered = n.delivered,
            notify_rejected = n.rejected,
            notify_timed_out = n.timed_out,
            notify_in_flight = d.notify.in_flight(),
            subscriptions = d.notify.subscriptions.len(),
            "{what}"
        );
    }

    /// Sleeps until the next timer is due, and at least once a second.
    fn poll_timeout(&self) -> Duration {
        let now = self.now_ms();
        match self.dispatcher.next_deadline_ms(now) {
            Some(at) => Duration::from_millis(at.saturating_sub(now).min(1000)),
            None => Duration::from_secs(1),
        }
    }

    /// Expiries and keepalive prompts; prompts leave on their path's socket,
    /// batched into `sendmmsg` calls.
    fn tick(&mut self) {
        let now = self.now_ms();
        let sockets = &self.sockets;
        let send = &mut self.send;
        let mut batch_local: Option<u8> = None;
        self.dispatcher.tick(now, &mut |bytes, to, local| {
            push_batched(sockets, send, &mut batch_local, bytes, to, local);
        });
        flush_batch(sockets, send, batch_local);
    }

    /// Reads until the socket would block (edge-triggered readiness).
    fn drain(&mut self, idx: usize) {
        let Some(sock) = self.sockets.get(idx) else {
            return;
        };
        let fd = sock.as_raw_fd();
        let local = u8::try_from(idx).unwrap_or(u8::MAX);
        loop {
            let n = match self.recv.recv(fd) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors (ECONNREFUSED …) surface here on Linux; they concern
                // an earlier send and are consumed by this call, so try again once
                // more; anything else ends this round instead of spinning.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => continue,
                Err(_) => return,
            };
            let now = self.now_ms();
            for i in 0..n {
                let (data, src) = self.recv.get(i);
                let Some(src) = src else { continue };
                if let Some(out) = self.dispatcher.handle(data, src, local, now) {
                    if self.send.is_full() {
                        self.send.flush(fd);
                    }
                    self.send.push(out, src);
                }
            }
            self.send.flush(fd);
            if self.dispatcher.notify.has_outbound() {
                self.send_requests();
            }
            self.route_outbox();
            if n < self.recv.capacity() {
                return;
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(cmd) = self.inbox.try_recv() {
            let now = self.now_ms();
            match cmd {
                Command::Forget(b) => self.dispatcher.forget(b, now),
                Command::Job(part, rate) => self.dispatcher.notify.start(part, rate, now),
            }
        }
    }

    /// Sends what the fan-out engine queued while handling responses.
    fn send_requests(&mut self) {
        let sockets = &self.sockets;
        let send = &mut self.send;
        let mut batch_local: Option<u8> = None;
        self.dispatcher
            .notify
            .drain_outbound(&mut |bytes, to, local| {
                push_batched(sockets, send, &mut batch_local, bytes, to, local);
            });
        flush_batch(sockets, send, batch_local);
    }
}

/// Adds a datagram to the send batch. One batch holds datagrams for one
/// socket: it is flushed when the socket changes or it is full. A datagram
/// the kernel refuses is lost like any UDP datagram (retransmission or a
/// keepalive miss covers it).
fn push_batched(
    sockets: &[UdpSocket],
    send: &mut SendBatch,
    batch_local: &mut Option<u8>,
    bytes: &[u8],
    to: std::net::SocketAddr,
    local: u8,
) {
    if sockets.get(usize::from(local)).is_none() {
        return;
    }
    if batch_local.is_some_and(|prev| prev != local) || send.is_full() {
        flush_batch(sockets, send, *batch_local);
    }
    *batch_local = Some(local);
    send.push(bytes, to);
}

fn flush_batch(sockets: &[UdpSocket], send: &mut SendBatch, local: Option<u8>) {
    if let Some(s) = local.and_then(|l| sockets.get(usize::from(l))) {
        send.flush(s.as_raw_fd());
    }
}
