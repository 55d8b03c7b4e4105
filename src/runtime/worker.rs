//! One worker: a mio loop over its sockets that feeds a [`Core`] (the
//! sans-IO endpoint of this core) with datagrams, inbox commands and the
//! clock, and sends what it polls out in `sendmmsg` batches.

use std::io::ErrorKind;
use std::net::UdpSocket as StdUdp;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::endpoint::{Command, Core, Event};
use crate::io::{RecvBatch, RelayBatch, SendBatch};
use crate::media::Verdict;

const WAKER: Token = Token(usize::MAX);
/// Tokens of media sockets start here (listen sockets are below).
const MEDIA: usize = 1 << 20;
/// Packets one media socket gets relayed per turn: a flooded port waits
/// for the others (and for signalling) after this many.
const MEDIA_TURN: usize = 32;
/// Rounds that relayed fewer packets than this are followed by
/// `media.batch_wait_us` of gathering.
const GATHER_BELOW: usize = 256;

pub struct Worker<C> {
    pub id: usize,
    poll: Poll,
    sockets: Vec<UdpSocket>,
    waker: Arc<Waker>,
    inbox: Receiver<Command>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    core: C,
    recv: RecvBatch,
    send: SendBatch,
    pin: Option<core_affinity::CoreId>,
    peers: Vec<super::Inbox>,
    stats_every: Option<Duration>,
    last_stats: std::time::Instant,
    metrics: Arc<crate::metrics::CoreSnapshot>,
    values: Vec<u64>,
    last_publish: std::time::Instant,
    /// A job part ended since the last publish.
    publish_now: bool,
    http: crossbeam_channel::Sender<crate::hooks::Request>,
    hook_stats: Arc<crate::hooks::Stats>,
    media: Media,
}

/// The relay's sockets of one worker, indexed as the core's media table
/// numbers them (RTP at 2k, RTCP at 2k+1).
struct Media {
    sockets: Vec<UdpSocket>,
    /// RTP ports of this core's share not tried yet.
    ports: std::vec::IntoIter<u16>,
    ip: std::net::IpAddr,
    batch: RelayBatch,
    /// Sockets with a turn due next round (they still had packets).
    hot: Vec<u32>,
    next_hot: Vec<u32>,
    /// Per socket: already in the round's list.
    marked: Vec<bool>,
    /// No more ports to open (warned once).
    exhausted: bool,
    /// `media.batch_wait_us`.
    wait: Duration,
    /// Packets received on relay sockets this round.
    relayed: usize,
}

impl Media {
    fn mark(&mut self, round: &mut Vec<u32>, s: u32) {
        if let Some(m) = self.marked.get_mut(s as usize) {
            if !*m {
                *m = true;
                round.push(s);
            }
        }
    }
}

/// What a worker needs besides its sockets.
pub struct WorkerParts<C> {
    pub id: usize,
    pub sockets: Vec<StdUdp>,
    pub core: C,
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
    /// The HTTP side threads' queue (webhooks and callouts).
    pub http: crossbeam_channel::Sender<crate::hooks::Request>,
    /// Their counters (a full queue is counted by whoever finds it full).
    pub hook_stats: Arc<crate::hooks::Stats>,
    /// This core's share of `media.ports` (RTP ports of the pairs).
    pub media_ports: Vec<u16>,
    /// The address relay sockets bind to.
    pub media_ip: std::net::IpAddr,
    /// `media.batch_wait_us`.
    pub media_batch_wait_us: u64,
}

impl<C: Core> Worker<C> {
    pub fn new(p: WorkerParts<C>) -> std::io::Result<Worker<C>> {
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
            core: p.core,
            // One byte over the limit so that oversize datagrams are seen as such.
            recv: RecvBatch::new(p.batch, p.max_datagram + 1),
            send: SendBatch::new(p.batch, p.max_datagram),
            pin: p.pin,
            peers: Vec::new(),
            stats_every: (p.stats_interval_s > 0).then(|| Duration::from_secs(p.stats_interval_s)),
            last_stats: std::time::Instant::now(),
            metrics: p.metrics,
            values: vec![0; crate::metrics::CORE.len()],
            last_publish: std::time::Instant::now(),
            publish_now: false,
            http: p.http,
            hook_stats: p.hook_stats,
            media: Media {
                sockets: Vec::new(),
                ports: p.media_ports.into_iter(),
                ip: p.media_ip,
                batch: RelayBatch::new(MEDIA_TURN, 2048),
                hot: Vec::new(),
                next_hot: Vec::new(),
                marked: Vec::new(),
                exhausted: false,
                wait: Duration::from_micros(p.media_batch_wait_us),
                relayed: 0,
            },
        })
    }

    /// Every worker's inbox (including this one's), indexed by worker id.
    pub fn set_peers(&mut self, peers: Vec<super::Inbox>) {
        self.peers = peers;
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
        let mut events = Events::with_capacity(256);
        let now = self.now_ms();
        let restored = self.core.start(now);
        if restored > 0 {
            tracing::info!(
                worker = self.id,
                bindings = restored,
                ms = self.now_ms() - now,
                "persist: core took back its bindings"
            );
        }
        self.open_media();
        while !self.stop.load(Ordering::Relaxed) {
            // Media sockets with packets left: look again at once. While
            // media flows lightly, let packets gather for
            // `media.batch_wait_us` first: one wake-up then serves many
            // streams. Under heavy load rounds are large anyway, and a
            // sleep would only cap throughput.
            let light = (1..GATHER_BELOW).contains(&self.media.relayed);
            let timeout = if !self.media.hot.is_empty() {
                Duration::ZERO
            } else if light && !self.media.wait.is_zero() {
                std::thread::sleep(self.media.wait);
                Duration::ZERO
            } else {
                self.poll_timeout()
            };
            self.media.relayed = 0;
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut round = std::mem::take(&mut self.media.hot);
            for ev in events.iter() {
                match ev.token().0 {
                    t if t == WAKER.0 => {}
                    t if t >= MEDIA => self.media.mark(&mut round, (t - MEDIA) as u32),
                    t => self.drain(t),
                }
            }
            // Every ready media socket gets one turn per round, the flooded
            // ones included, so that no stream starves another.
            for &s in &round {
                self.media.marked[s as usize] = false;
                self.relay_turn(s);
            }
            // Those with packets left get the next round's first turns; the
            // round's buffer is reused for them.
            round.clear();
            let Media {
                next_hot, marked, ..
            } = &mut self.media;
            for s in next_hot.drain(..) {
                if !std::mem::replace(&mut marked[s as usize], true) {
                    round.push(s);
                }
            }
            self.media.hot = round;
            self.open_media();
            self.drain_inbox();
            let now = self.now_ms();
            if self.core.poll_timeout().is_some_and(|at| at <= now) {
                self.core.handle_timeout(now);
                self.transmit();
            }
            self.route_events();
            // Counters reach the metrics endpoint once a second, and as soon
            // as a job part ends, so a finished job and its counters agree.
            if self.publish_now || self.last_publish.elapsed() >= Duration::from_secs(1) {
                self.publish_now = false;
                self.last_publish = std::time::Instant::now();
                self.publish();
                // Follows a stepped wall clock (NTP at boot) within a second.
                self.core.set_unix_epoch(super::unix_ms_at(self.epoch));
            }
            if self
                .stats_every
                .is_some_and(|every| self.last_stats.elapsed() >= every)
            {
                self.last_stats = std::time::Instant::now();
                self.log_stats("stats");
            }
        }
        self.publish();
        self.log_stats("worker stopped");
        Ok(())
    }

    fn publish(&mut self) {
        self.core.metrics(&mut self.values);
        self.metrics.publish(&self.values);
    }

    /// Routes what the core has for other cores and for the runtime.
    fn route_events(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                Event::Forget(b) => {
                    // A full inbox only delays the slot's release until its expiry.
                    if let Some(peer) = self.peers.get(usize::from(b.core)) {
                        peer.send(Command::Forget(b));
                    }
                }
                Event::Handoff(h) => {
                    // A full inbox loses the datagram; its sender retransmits.
                    if let Some(peer) = self.peers.get(usize::from(h.core)) {
                        peer.send(Command::Datagram(h));
                    }
                }
                Event::PathNote(n) => {
                    if let Some(peer) = self.peers.get(usize::from(n.core)) {
                        peer.send(Command::PathNote(n));
                    }
                }
                Event::Calls(reply, list) => {
                    // The API thread may have given up waiting: nothing to do then.
                    let _ = reply.try_send(list);
                }
                Event::Blocks(reply, list) => {
                    let _ = reply.try_send(list);
                }
                Event::Http(req) => self.submit_http(req),
                Event::Job(core, part) => {
                    if let Some(peer) = self.peers.get(usize::from(core)) {
                        if !peer.send(Command::Job(part, None)) {
                            tracing::warn!("inbox full: a held call's contact-me was not sent");
                        }
                    }
                }
                Event::Registered(aor) => {
                    for peer in &self.peers {
                        peer.send(Command::Registered(aor.clone()));
                    }
                }
                Event::JobPartFinished => self.publish_now = true,
                Event::JobFinished(job) => {
                    tracing::info!(
                        job = job.id,
                        devices = job.devices.len(),
                        "notify job finished"
                    );
                    // A full queue: the job record still has it all.
                    if let Some(req) = crate::api::job_webhook(&job) {
                        self.submit_http(req);
                    }
                }
            }
        }
    }

    /// Queues an HTTP request for the side threads. A callout that cannot
    /// be queued is answered "no answer" at once, so its waiter falls back
    /// now instead of at its deadline; a webhook is dropped. Both are
    /// counted.
    fn submit_http(&mut self, req: crate::hooks::Request) {
        if let Err(req) = crate::hooks::enqueue(&self.http, &self.hook_stats, req) {
            if let crate::hooks::Kind::Callout { purpose, id, .. } = req.kind {
                if let Some(me) = self.peers.get(self.id) {
                    me.send(Command::HttpAnswer(crate::hooks::Answer::none(purpose, id)));
                }
            }
        }
    }

    /// One log line with this worker's counters.
    fn log_stats(&mut self, what: &str) {
        self.core.metrics(&mut self.values);
        let counters = crate::metrics::log_line(&self.values);
        tracing::info!(worker = self.id, "{what}: {counters}");
    }

    /// Sleeps until the next timer is due, and at least once a second.
    fn poll_timeout(&self) -> Duration {
        let now = self.now_ms();
        match self.core.poll_timeout() {
            Some(at) => Duration::from_millis(at.saturating_sub(now).min(1000)),
            None => Duration::from_secs(1),
        }
    }

    /// Opens the media port pairs the core asks for, from this core's
    /// share; ports another process holds are skipped.
    fn open_media(&mut self) {
        let want = self.core.media_wants();
        if want == 0 || self.media.exhausted {
            return;
        }
        let mut opened = Vec::with_capacity(want);
        while opened.len() < want {
            let Some(port) = self.media.ports.next() else {
                break;
            };
            let rtp = crate::io::bind_plain((self.media.ip, port).into(), 1 << 20);
            let rtcp = crate::io::bind_plain((self.media.ip, port + 1).into(), 1 << 18);
            let (Ok(rtp), Ok(rtcp)) = (rtp, rtcp) else {
                continue;
            };
            let mut ok = true;
            for s in [rtp, rtcp] {
                let idx = self.media.sockets.len();
                let mut s = UdpSocket::from_std(s);
                ok &= self
                    .poll
                    .registry()
                    .register(&mut s, Token(MEDIA + idx), Interest::READABLE)
                    .is_ok();
                self.media.sockets.push(s);
                self.media.marked.push(false);
            }
            if !ok {
                tracing::warn!(worker = self.id, port, "cannot watch media socket");
            }
            opened.push(port);
        }
        if opened.len() < want && !self.media.exhausted {
            // Once: the core keeps asking while it runs low.
            self.media.exhausted = true;
            tracing::warn!(
                worker = self.id,
                opened = self.media.sockets.len() / 2,
                "this worker's share of media.ports is used up (or its ports are held by other \
                 processes, or the open-file limit is reached): new anchored calls get 503 when \
                 no pair is free"
            );
        }
        if !opened.is_empty() {
            self.core.media_opened(&opened);
        }
    }

    /// One turn of media socket `idx`: up to [`MEDIA_TURN`] packets
    /// relayed; the socket stays hot while it has more.
    fn relay_turn(&mut self, idx: u32) {
        let Some(sock) = self.media.sockets.get(idx as usize) else {
            return;
        };
        let n = match self.media.batch.recv(sock.as_raw_fd()) {
            Ok(n) => n,
            // An ICMP error of an earlier send: the socket may still hold packets.
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                self.media.next_hot.push(idx);
                return;
            }
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        self.media.relayed += n;
        let now_us = self.epoch.elapsed().as_micros() as u64;
        let mut out_sock = None;
        for i in 0..n {
            let (data, src, truncated) = self.media.batch.get(i);
            let Some(src) = src.filter(|_| !truncated) else {
                continue;
            };
            if let Verdict::Forward { sock, to } = self.core.relay(now_us, idx, src, data) {
                // All of one socket's packets leave by its peer's socket;
                // a change (re-INVITE moved the leg) flushes first.
                if out_sock.is_some_and(|o| o != sock) {
                    self.flush_media(out_sock);
                }
                out_sock = Some(sock);
                self.media.batch.queue(i, to);
            }
        }
        self.flush_media(out_sock);
        if n == self.media.batch.capacity() {
            self.media.next_hot.push(idx);
        }
    }

    fn flush_media(&mut self, sock: Option<u32>) {
        if let Some(s) = sock.and_then(|s| self.media.sockets.get(s as usize)) {
            self.media.batch.flush(s.as_raw_fd());
        }
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
                self.core.handle_datagram(now, local, src, data);
                // A burst of new calls in one batch must not find the relay
                // pool empty while the range still has room.
                if self.core.media_wants() > 0 {
                    self.open_media();
                }
            }
            self.transmit();
            self.route_events();
            if n < self.recv.capacity() {
                return;
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(cmd) = self.inbox.try_recv() {
            let now = self.now_ms();
            self.core.handle_command(now, cmd);
            if self.core.media_wants() > 0 {
                self.open_media();
            }
        }
        self.transmit();
    }

    /// Sends everything the core queued, batched into `sendmmsg` calls per
    /// socket. A datagram the kernel refuses is lost like any UDP datagram
    /// (retransmission or a keepalive miss covers it).
    fn transmit(&mut self) {
        let mut batch_local: Option<u8> = None;
        while let Some(t) = self.core.poll_transmit() {
            if self.sockets.get(usize::from(t.local)).is_none() {
                continue;
            }
            if batch_local.is_some_and(|prev| prev != t.local) || self.send.is_full() {
                flush_batch(&self.sockets, &mut self.send, batch_local);
            }
            batch_local = Some(t.local);
            self.send.push(t.bytes, t.to);
        }
        flush_batch(&self.sockets, &mut self.send, batch_local);
    }
}

fn flush_batch(sockets: &[UdpSocket], send: &mut SendBatch, local: Option<u8>) {
    if let Some(s) = local.and_then(|l| sockets.get(usize::from(l))) {
        send.flush(s.as_raw_fd());
    }
}
