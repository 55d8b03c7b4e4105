//! One core's protocol state behind one sans-IO type.
//!
//! An [`Endpoint`] holds every state machine of a core (the registrar's
//! share of the bindings, the NAT path table and its keepalives, the fan-out
//! engine) in private fields. The runtime drives it through [`Core`], which
//! is the whole boundary:
//!
//! ```text
//!   in:  handle_datagram(now, local, remote, bytes)   a datagram from a socket
//!        handle_command(now, cmd)                     from the API or another core
//!        handle_timeout(now)                          poll_timeout() has passed
//!   out: poll_transmit() -> Transmit                  the one route for bytes out
//!        poll_event()    -> Event                     for the runtime / another core
//!        poll_timeout()  -> ms                        when to call handle_timeout
//! ```
//!
//! Time is milliseconds on the runtime's clock, passed in as `now`; nothing
//! here reads a clock or touches a socket, so every rule is testable with a
//! fake clock (see `tests/faults.rs`). ARCHITECTURE.md shows how a REGISTER,
//! a keepalive prompt and a fan-out job flow through it.

/// The proxy's context for one input: the endpoint's fields it borrows.
/// A macro, not a method, so that `self.proxy` stays free to be borrowed
/// beside it.
macro_rules! proxy_ctx {
    ($ep:ident, $now:expr) => {
        crate::proxy::Ctx {
            now: $now,
            timers: &mut $ep.timers,
            out: &mut $ep.transmits,
            keepalive: &mut $ep.keepalive,
            auth: $ep.registrar.authenticator(),
            media: &mut $ep.media,
            owners: &mut $ep.owners,
        }
    };
}

mod authorize;
mod guard;
mod inbound;
mod metrics;
mod paths;
mod setup;
mod transmit;

#[cfg(test)]
mod authorize_tests;
#[cfg(test)]
mod guard_tests;
#[cfg(test)]
mod tests;

// The tests read metrics by name through `super::*`.
#[cfg(test)]
use crate::metrics::CoreMetric;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

pub use transmit::{Transmit, Transmits};

use crate::media::Verdict;
use crate::nat::{Action, Keepalive};
use crate::notify::{Job, JobPart};
use crate::proxy::{Handoff, PathNote, Proxy};
use crate::registrar::{BindingRef, Registrar};
use crate::sip::{self, Limits};
use crate::timer::{Timer, Timers};

pub use inbound::ALLOW;
pub use setup::Setup;

/// Datagrams a [`Core::handle_timeout`] call queues at most (one
/// `sendmmsg` worth of keepalive prompts): the runtime reads answers
/// between slices instead of bursting a million prompts at once.
pub const PROMPTS_PER_TICK: usize = 64;

/// Timers one [`Core::handle_timeout`] call fires at most (most re-arm
/// without sending anything).
const TIMERS_PER_TICK: usize = 1024;
/// How far down the due list a keepalive timer's path record is prefetched.
const PREFETCH_AHEAD: usize = 8;

/// What a core runs: the runtime's worker loop is generic over it, so that
/// the runtime's own cost can be measured with an endpoint that does no
/// protocol work (`benches/runtime_floor.rs`).
pub trait Core: Send + 'static {
    /// A datagram `bytes` from `remote`, received on local address number `local`.
    fn handle_datagram(&mut self, now: u64, local: u8, remote: SocketAddr, bytes: &[u8]);
    /// A message from the control thread or another core.
    fn handle_command(&mut self, now: u64, cmd: Command);
    /// Runs what is due at `now`.
    fn handle_timeout(&mut self, now: u64);
    /// The next datagram to send, oldest first.
    fn poll_transmit(&mut self) -> Option<Transmit<'_>>;
    /// The next event for the runtime or another core.
    fn poll_event(&mut self) -> Option<Event>;
    /// When [`Core::handle_timeout`] next has work (ms); `Some(t <= now)`
    /// when some is due already.
    fn poll_timeout(&self) -> Option<u64>;
    /// This core's values of [`crate::metrics::CORE`], in its order.
    fn metrics(&self, out: &mut [u64]);
    /// Where an RTP/RTCP packet that arrived on media socket `sock` goes
    /// (`now_us`: µs on the runtime's clock). The relay's fast path: no
    /// allocation, nothing queued.
    fn relay(&mut self, _now_us: u64, _sock: u32, _src: SocketAddr, _pkt: &[u8]) -> Verdict {
        Verdict::Drop
    }
    /// Media port pairs the runtime should open for this core now.
    fn media_wants(&self) -> usize {
        0
    }
    /// The runtime opened these pairs (RTP ports; RTCP is the next port),
    /// as media sockets numbered on from the last ones, two per pair.
    fn media_opened(&mut self, _rtp_ports: &[u16]) {}
    /// Wall time at the runtime clock's zero (Unix ms): the runtime reads
    /// the wall clock, the core adds it to `now` where it needs wall time
    /// (capability tokens' `exp`). Told at start and again now and then, so
    /// a stepped wall clock is followed.
    fn set_unix_epoch(&mut self, _unix_ms: u64) {}
    /// Called once on the worker's thread before it serves anything: work
    /// that each core does for itself at start, in parallel. Returns the
    /// bindings it restored (for the log).
    fn start(&mut self, _now: u64) -> usize {
        0
    }
}

/// A message to a core from another thread.
#[derive(Debug, Clone)]
pub enum Command {
    /// A binding this core owns was replaced elsewhere: free its slot.
    Forget(BindingRef),
    /// Run this share of a fan-out job, at most `rate` requests/s if given.
    Job(JobPart, Option<u32>),
    /// A datagram another core received for a transaction or dialog of this one.
    Datagram(Handoff),
    /// A dialog started or ended on a NAT path this core keeps.
    PathNote(PathNote),
    /// List this core's dialogs (`GET /v1/calls`); the answer goes back
    /// as [`Event::Calls`].
    Calls(crossbeam_channel::Sender<Vec<crate::proxy::CallInfo>>),
    /// The answer to a callout this core made ([`Event::Http`]).
    HttpAnswer(crate::hooks::Answer),
    /// A device of this AOR (canonical) registered on some core: calls
    /// held for it here may go now.
    Registered(Arc<str>),
    /// The answer to an owner lookup this core asked the cluster for.
    ClusterOwners(crate::cluster::lookup::OwnerAnswer),
    /// The cluster's node list changed (peers' SIP addresses, liveness).
    ClusterNodes(crate::cluster::lookup::Nodes),
    /// Another node took this binding's ownership record over (the device
    /// registered there since): drop it as an unregister would.
    ClusterEvict(BindingRef),
    /// List this core's blocked sources (`GET /v1/blocks`), or lift the
    /// block of one address and list it (`DELETE /v1/blocks/<address>`);
    /// the answer goes back as [`Event::Blocks`].
    Blocks {
        lift: Option<std::net::IpAddr>,
        reply: crossbeam_channel::Sender<Vec<crate::limits::BlockInfo>>,
    },
    /// `[limits]` changed (a reload): see [`crate::limits::Guard::reconfigure`].
    Limits(Arc<crate::limits::Settings>),
}

/// Something a core tells the runtime.
#[derive(Debug, Clone)]
pub enum Event {
    /// Core `binding.core` owns a binding this core replaced: send it
    /// [`Command::Forget`].
    Forget(BindingRef),
    /// A share of a fan-out job ended on this core (publish the counters,
    /// so that a finished job and the metrics agree).
    JobPartFinished,
    /// A job's last part ended on this core: the job is complete.
    JobFinished(Arc<Job>),
    /// Send core `handoff.core` this datagram ([`Command::Datagram`]).
    Handoff(Handoff),
    /// Tell core `note.core` about a dialog on its path ([`Command::PathNote`]).
    PathNote(PathNote),
    /// This core's dialogs, for whoever asked with [`Command::Calls`].
    Calls(
        crossbeam_channel::Sender<Vec<crate::proxy::CallInfo>>,
        Vec<crate::proxy::CallInfo>,
    ),
    /// POST this (a webhook, or a callout whose answer comes back as
    /// [`Command::HttpAnswer`]) from the side threads.
    Http(crate::hooks::Request),
    /// Send core `.0` this job share ([`Command::Job`]): a contact-me for a
    /// held call, to the core owning the binding's path.
    Job(u16, JobPart),
    /// A device of this AOR registered and a call may be held for it:
    /// tell every core ([`Command::Registered`]).
    Registered(Arc<str>),
    /// This core's blocks, for whoever asked with [`Command::Blocks`].
    Blocks(
        crossbeam_channel::Sender<Vec<crate::limits::BlockInfo>>,
        Vec<crate::limits::BlockInfo>,
    ),
}

/// Counters of the datagram front door (the subsystems keep their own).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub received: u64,
    pub oversize_dropped: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub keepalive_pings: u64,
    pub stun_requests: u64,
    pub responses_received: u64,
}

/// One core's protocol state. Fields are private: the runtime goes
/// through [`Core`], tests and benches through the same calls.
pub struct Endpoint {
    limits: Limits,
    /// Where one response is written before it is queued.
    out: Vec<u8>,
    tags: sip::ids::IdGen,
    registrar: Registrar,
    keepalive: Keepalive,
    notify: crate::notify::Engine,
    proxy: Proxy,
    media: crate::media::Table,
    /// The local socket of `media.ng_listen`, when on.
    ng_local: Option<u8>,
    ng: Option<crate::media::ng_server::NgServer>,
    /// Every deadline of this core's state machines.
    timers: Timers,
    /// Our address per listen socket, for the Via and From of prompts.
    local_addrs: Vec<SocketAddr>,
    actions: Vec<Action>,
    scratch: String,
    counters: Counters,
    transmits: Transmits,
    events: VecDeque<Event>,
    /// Job parts already reported as [`Event::JobPartFinished`].
    parts_reported: u64,
    /// HTTP requests the subsystems queued, moved to `events` by `collect`.
    pub(crate) http: Vec<crate::hooks::Request>,
    /// REGISTERs waiting on the authorization service (`auth.mode = "http"`).
    waiting: Option<authorize::Waiting>,
    /// Unix ms at the runtime clock's zero ([`Core::set_unix_epoch`]).
    unix_epoch_ms: u64,
    /// `[cluster]`: owner lookups this core asked for and their answers.
    owners: crate::cluster::lookup::OwnerCache,
    /// Per-source rate limits, blocks and the bindings-per-source cap.
    guard: crate::limits::Guard,
    /// Bindings restored from disk, taken on at [`Core::start`] (with the
    /// spread of their first prompts, ms).
    pending_restore: Option<(Vec<crate::persist::Restored>, u64)>,
}

impl Endpoint {
    /// A core from its state machines. `local_addrs` are the bound listen
    /// addresses, indexed by the `local` numbers datagrams arrive with.
    pub fn new(
        limits: Limits,
        seed: u64,
        registrar: Registrar,
        keepalive: Keepalive,
        notify: crate::notify::Engine,
        local_addrs: Vec<SocketAddr>,
    ) -> Endpoint {
        // A proxy on the defaults; `Setup` puts the configured one in.
        let proxy = Proxy::new(
            registrar.core(),
            Default::default(),
            registrar.directory().clone(),
            [0x5a; 32],
            &local_addrs,
            seed.rotate_left(7),
        );
        // Transaction keys hash a device's random branch: nobody can aim a
        // REGISTER at another's waiting one, so the id seed is enough here.
        let registrar_core = registrar.core();
        let waiting = registrar
            .http_auth()
            .map(|h| authorize::Waiting::new(h.clone(), seed.rotate_left(53)));
        Endpoint {
            limits,
            out: Vec::with_capacity(limits.max_datagram),
            tags: sip::ids::IdGen::new(seed),
            registrar,
            keepalive,
            notify,
            proxy,
            // No ports until `Setup` gives the configured table.
            media: crate::media::Table::new(crate::media::table::TableConfig {
                max_pairs: 0,
                ..Default::default()
            }),
            ng_local: None,
            ng: None,
            timers: Timers::new(0),
            local_addrs,
            actions: Vec::new(),
            scratch: String::with_capacity(128),
            counters: Counters::default(),
            transmits: Transmits::new(limits.max_datagram),
            events: VecDeque::new(),
            parts_reported: 0,
            http: Vec::new(),
            waiting,
            unix_epoch_ms: 0,
            owners: crate::cluster::lookup::OwnerCache::new(registrar_core, None, 0, 0),
            guard: crate::limits::Guard::off(),
            pending_restore: None,
        }
    }

    /// `[cluster]` on: this core looks owners up through `cache`.
    pub fn with_owner_cache(mut self, cache: crate::cluster::lookup::OwnerCache) -> Endpoint {
        self.owners = cache;
        self
    }

    /// This core's owner lookups (for the proxy's routing to the owner).
    pub fn owners(&mut self) -> &mut crate::cluster::lookup::OwnerCache {
        &mut self.owners
    }

    /// Replaces the (switched off) limits with the configured ones.
    pub fn with_limits(mut self, guard: crate::limits::Guard) -> Endpoint {
        self.guard = guard;
        self
    }

    /// Sets the wall time at the runtime clock's zero (Unix ms), as
    /// [`Core::set_unix_epoch`] does (for tests and benches that make an
    /// endpoint without a runtime).
    pub fn with_unix_epoch(mut self, unix_ms: u64) -> Endpoint {
        self.unix_epoch_ms = unix_ms;
        self
    }

    #[cfg(test)]
    pub(crate) fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    #[cfg(test)]
    pub(crate) fn proxy_mut(&mut self) -> &mut Proxy {
        &mut self.proxy
    }

    /// Replaces the proxy (with the configured one).
    pub fn with_proxy(mut self, proxy: Proxy) -> Endpoint {
        self.proxy = proxy;
        self
    }

    /// Datagrams on local socket `local` are `ng` control commands, for
    /// `server`.
    pub fn with_ng(mut self, ng: Option<(u8, crate::media::ng_server::NgServer)>) -> Endpoint {
        if let Some((local, server)) = ng {
            self.ng_local = Some(local);
            self.ng = Some(server);
        }
        self
    }

    /// A datagram on the `ng` socket (`handed`: from another core).
    fn on_ng(&mut self, now: u64, local: u8, remote: SocketAddr, bytes: &[u8], handed: bool) {
        let Some(ng) = self.ng.as_mut() else {
            return;
        };
        use crate::media::ng_server::NgOutcome;
        match ng.handle(now, bytes, &mut self.media, handed, &mut self.out) {
            NgOutcome::Reply => self.transmits.push(&self.out, remote, local),
            NgOutcome::Handoff(core) => self.events.push_back(Event::Handoff(Handoff {
                core,
                local,
                remote,
                bytes: bytes.into(),
            })),
            NgOutcome::Drop => {}
        }
    }

    /// Replaces the media table (with the configured one).
    pub fn with_media(mut self, media: crate::media::Table) -> Endpoint {
        self.media = media;
        self
    }

    /// This core's media table.
    pub fn media(&self) -> &crate::media::Table {
        &self.media
    }

    /// Seed 004's state of a NAT path (for tests and the API).
    pub fn path_state(&self, path: &crate::addr::PathKey) -> crate::nat::PathState {
        self.keepalive.state(path)
    }

    /// NAT paths this core keeps (for benches and tests).
    pub fn paths(&self) -> usize {
        self.keepalive.paths()
    }

    /// Heap bytes of this core's per-endpoint structures, by capacity, for
    /// the memory benches: (name, bytes). The directory is shared and not in it.
    pub fn heap_breakdown(&self) -> [(&'static str, usize); 5] {
        let (records, index) = self.keepalive.heap_bytes();
        let (timer_records, timer_table) = self.timers.heap_bytes();
        [
            ("binding slab", self.registrar.slab_heap_bytes()),
            ("NAT path records", records),
            ("NAT path index", index),
            ("timer records (expiry + keepalive)", timer_records),
            ("timer generations + free list", timer_table),
        ]
    }

    /// Bindings this core owns.
    pub fn local_bindings(&self) -> usize {
        self.registrar.local_bindings()
    }

    /// Moves what the subsystems produced while handling an input onto the
    /// endpoint's two queues.
    fn collect(&mut self) {
        if self.notify.has_outbound() {
            let t = &mut self.transmits;
            self.notify
                .drain_outbound(&mut |bytes, to, local| t.push(bytes, to, local));
        }
        for b in self.registrar.outbox.drain(..) {
            self.events.push_back(Event::Forget(b));
        }
        while self.parts_reported < self.notify.stats.parts_finished {
            self.parts_reported += 1;
            self.events.push_back(Event::JobPartFinished);
        }
        for job in self.notify.finished.drain(..) {
            self.events.push_back(Event::JobFinished(job));
        }
        for h in self.proxy.handoffs.drain(..) {
            self.events.push_back(Event::Handoff(h));
        }
        for n in self.proxy.path_notes.drain(..) {
            self.events.push_back(Event::PathNote(n));
        }
        let http = self.registrar.http.drain(..).chain(self.http.drain(..));
        for r in http.chain(self.proxy.http.drain(..)) {
            self.events.push_back(Event::Http(r));
        }
        for (core, part) in self.proxy.jobs.drain(..) {
            self.events.push_back(Event::Job(core, part));
        }
    }
}

impl Core for Endpoint {
    fn handle_datagram(&mut self, now: u64, local: u8, remote: SocketAddr, bytes: &[u8]) {
        if self.ng_local == Some(local) {
            self.on_ng(now, local, remote, bytes, false);
            return self.collect();
        }
        if !self.admit(bytes, remote, local, now) {
            return;
        }
        let failures = self.auth_failures();
        if self.handle(bytes, remote, local, now) {
            self.transmits.push(&self.out, remote, local);
        }
        if self.auth_failures() != failures {
            self.guard.auth_failed(remote.ip(), now);
        }
        self.collect();
    }

    fn handle_command(&mut self, now: u64, cmd: Command) {
        match cmd {
            Command::Forget(b) => {
                self.registrar.forget(b);
                self.sync_paths(now);
            }
            Command::Job(part, rate) => self.notify.start(part, rate, now, &mut self.timers),
            Command::Datagram(h) if self.ng_local == Some(h.local) => {
                self.on_ng(now, h.local, h.remote, &h.bytes, true);
            }
            Command::Datagram(h) => {
                if self.handle(&h.bytes, h.remote, h.local, now) {
                    self.transmits.push(&self.out, h.remote, h.local);
                }
            }
            Command::Calls(reply) => {
                let list = self.proxy.dialog_list(now, &self.media);
                self.events.push_back(Event::Calls(reply, list));
            }
            Command::HttpAnswer(a) => self.on_http_answer(now, a),
            Command::ClusterOwners(a) => {
                // The calls waiting for it take the answer itself: with
                // `lookup_cache_ms = 0` the cache forgets it at once.
                let owners = a.owners.clone();
                let aor = self.owners.answer(a, now);
                let mut cx = proxy_ctx!(self, now);
                self.proxy.on_owners(aor, owners.as_deref(), &mut cx);
            }
            Command::ClusterNodes(nodes) => self.proxy.set_cluster_nodes(nodes),
            Command::ClusterEvict(b) => {
                if self.registrar.evict(b) {
                    tracing::debug!(
                        slot = b.slot,
                        "cluster: binding taken over by another node, dropped"
                    );
                }
                self.sync_paths(now);
            }
            Command::Registered(aor) => {
                let mut cx = proxy_ctx!(self, now);
                self.proxy.on_registered(&aor, &mut cx);
            }
            Command::Blocks { lift, reply } => {
                let list = self.guard.answer(now, self.registrar.core(), lift);
                self.events.push_back(Event::Blocks(reply, list));
            }
            Command::Limits(cfg) => self.guard.reconfigure(cfg, self.tags.next_u64()),
            Command::PathNote(n) => {
                if n.started {
                    self.keepalive.dialog_started(n.path, now, &mut self.timers);
                } else {
                    self.keepalive.dialog_ended(n.path, now, &mut self.timers);
                }
            }
        }
        self.collect();
    }

    fn handle_timeout(&mut self, now: u64) {
        let queued = self.transmits.len();
        for _ in 0..TIMERS_PER_TICK {
            if self.transmits.len() - queued >= PROMPTS_PER_TICK {
                break;
            }
            let Some(t) = self.timers.poll(now) else {
                break;
            };
            // A round of prompts reads a million-path table at random: ask
            // for the record of the prompt a few places ahead while this
            // one is handled, so its cache miss overlaps.
            if let Some(Timer::Keepalive { path, .. }) = self.timers.peek_due(PREFETCH_AHEAD) {
                self.keepalive.prefetch(path);
            }
            match t {
                Timer::Keepalive { path, step, nonce } => {
                    self.on_keepalive_timer(path, step, nonce, now)
                }
                Timer::Transaction { slot, nonce } => {
                    self.notify.on_timer(slot, nonce, now, &mut self.timers)
                }
                Timer::Pace => self.notify.on_pace(now, &mut self.timers),
                Timer::Subscriptions => self.notify.on_sweep(now, &mut self.timers),
                Timer::Expiry { slot, gen } => {
                    self.registrar.on_expiry(slot, gen, (now / 1000) as u32);
                }
                t @ (Timer::Proxy { .. } | Timer::Dialog { .. }) => {
                    let mut cx = proxy_ctx!(self, now);
                    self.proxy.on_timer(t, &mut cx);
                }
                Timer::Authorize { slot, nonce } => self.on_authorize_timer(slot, nonce, now),
            }
        }
        self.media.sweep(now);
        while let Some((id, owner)) = self.media.poll_timed_out() {
            self.on_media_timeout(now, id, owner);
        }
        self.sync_paths(now);
        self.collect();
    }

    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.transmits.pop()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<u64> {
        match (self.timers.next_deadline(), self.media.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn metrics(&self, out: &mut [u64]) {
        self.metric_values(out);
    }

    fn relay(&mut self, now_us: u64, sock: u32, src: SocketAddr, pkt: &[u8]) -> Verdict {
        self.media.relay(now_us, sock, src, pkt)
    }

    fn media_wants(&self) -> usize {
        self.media.wants_pairs()
    }

    fn media_opened(&mut self, rtp_ports: &[u16]) {
        self.media.add_pairs(rtp_ports);
    }

    fn start(&mut self, now: u64) -> usize {
        match self.pending_restore.take() {
            Some((list, spread)) => {
                self.restore(&list, spread, now);
                list.len()
            }
            None => 0,
        }
    }

    fn set_unix_epoch(&mut self, unix_ms: u64) {
        self.unix_epoch_ms = unix_ms;
        self.proxy.set_unix_epoch(unix_ms);
    }
}

impl Endpoint {
    /// A REGISTER of `checked`'s AOR succeeded: if some core may hold a
    /// call for it, every core is told (the held call's core forwards it).
    fn wake_held(&mut self, checked: &sip::Checked<'_>) {
        let Some(index) = self.proxy.hold_index().filter(|i| i.any()) else {
            return;
        };
        let uri = &checked.to.uri;
        let (Some(user), Some(host)) = (uri.user, uri.host) else {
            return;
        };
        let aor = crate::registrar::canonical_aor(user, host);
        if index.maybe_held(&aor) {
            self.events.push_back(Event::Registered(aor.into()));
        }
    }

    /// A callout answered (or failed): to the subsystem that asked.
    fn on_http_answer(&mut self, now: u64, a: crate::hooks::Answer) {
        use crate::hooks::Purpose;
        match a.purpose {
            Purpose::Authorize => self.on_authorize_answer(now, &a),
            Purpose::Route => {
                let mut cx = proxy_ctx!(self, now);
                self.proxy.on_route_answer(&a, &mut cx);
            }
            Purpose::Push => {
                let mut cx = proxy_ctx!(self, now);
                self.proxy.on_push_answer(&a, &mut cx);
            }
        }
    }

    /// A media session without packets for `media.timeout_s`: the proxy
    /// BYEs its call; an `ng` session is deleted (its proxy sees no BYE).
    fn on_media_timeout(&mut self, now: u64, id: crate::media::table::SessionId, owner: u64) {
        if owner & crate::media::ng_server::NG_OWNER_BIT != 0 {
            tracing::info!(
                slot = id.slot,
                "ng media session ended: no media for media.timeout_s"
            );
            if let Some(ng) = self.ng.as_mut() {
                ng.forget(id);
            }
            self.media.end(now, id);
            return;
        }
        let mut cx = proxy_ctx!(self, now);
        self.proxy.on_media_timeout(owner, &mut cx);
        // A dialog already gone (its BYE crossed the timeout) leaves the session.
        if self.media.exists(id) && !self.proxy.owns_media(owner) {
            self.media.end(now, id);
        }
    }
}
