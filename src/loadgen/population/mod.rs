//! The simulated endpoints as one sans-IO state machine: datagrams and
//! `now` in ([`Population::handle_datagram`], [`Population::handle_timeout`]),
//! datagrams out ([`Population::poll_transmit`]), plus when to be called
//! again ([`Population::poll_timeout`]) and what the driver must act on
//! ([`Population::poll_event`]). No sockets and no clocks: time is
//! microseconds since the run started, on the caller's clock, so every rule
//! here runs in a unit test on a fake one (see `tests.rs`).
//!
//! Each endpoint registers (a non-INVITE client transaction from
//! [`crate::transaction`], which schedules the retransmissions and the
//! timeout), answers a registrar's challenge, refreshes, restarts (soak
//! churn), unregisters, and answers whatever the server sends it
//! (keepalive OPTIONS, NOTIFY, INVITE) statelessly, with a digest challenge
//! of its own when asked to (`device_auth`). In the call scenario, once
//! registered, callers and callees make calls through the server (`call`).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::message::{self, RegisterTemplate};
use super::tally::{Measured, Tally, Totals};
use super::{LoadConfig, Scenario, Summary};
use crate::sip::{self, StartLine};
use crate::timer::TimerWheel;
use crate::transaction::{ClientTransaction, Kind, Timers};

mod answer;
mod call;
mod hold;
mod nodes;
mod outbox;
#[cfg(test)]
mod tests;

use outbox::Outbox;
pub(crate) use outbox::Transmit;

/// Endpoint `i`'s socket and source address: consecutive addresses from
/// `base`, one endpoint per socket on each.
fn addr_of(base: Ipv4Addr, sockets: usize, i: u32) -> (usize, Ipv4Addr) {
    let ports = sockets as u32;
    let ip = u32::from(base).wrapping_add(i / ports);
    ((i % ports) as usize, Ipv4Addr::from(ip))
}

/// The endpoint a datagram reached: the reverse of [`addr_of`].
fn endpoint_at(base: Ipv4Addr, sockets: usize, socket: usize, local: Ipv4Addr) -> u32 {
    (u32::from(local).wrapping_sub(u32::from(base)))
        .wrapping_mul(sockets as u32)
        .wrapping_add(socket as u32)
}

/// Largest datagram the generator sends (and the driver reads whole).
pub(crate) const MAX_DATAGRAM: usize = 2048;

/// The REGISTER schedule: T1 = 500 ms doubling without a cap that matters
/// (retransmissions at 0.5, 1.5, 3.5 and 7.5 s), given up at 15.5 s, one
/// interval after the fourth.
const REGISTER_TIMERS: Timers = Timers {
    t1_ms: 500,
    t2_ms: 8_000,
    t4_ms: 0,
    timeout_ms: 15_500,
    timer_d_ms: 0,
};

/// Challenges answered within one REGISTER transaction (a loop guard).
const MAX_AUTH_ROUNDS: u8 = 4;

/// No transaction slot.
const NO_TX: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    /// Not started in this phase.
    Idle,
    /// A REGISTER in flight (the endpoint holds a transaction).
    Pending,
    /// Answered, or given up on.
    Done,
}

/// Soak churn: where a restarting device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Churn {
    No,
    /// Its un-REGISTER is in flight.
    Leaving,
    /// Its REGISTER back is in flight.
    Returning,
}

/// One simulated endpoint: 16 bytes, so millions fit.
#[derive(Debug, Clone, Copy)]
struct Endpoint {
    /// Microseconds since the start when the REGISTER was first sent.
    sent_at_us: u32,
    /// Its transaction's slot while `Pending`, else `NO_TX`.
    tx: u32,
    /// CSeq of the REGISTER in flight (one more per new request).
    cseq: u16,
    state: Reg,
    churn: Churn,
    /// Challenges answered for the REGISTER in flight.
    auth_rounds: u8,
    /// Bumped with every new request so that timers of an older one are ignored.
    epoch: u8,
    /// Registered at least once (a later 200 is a refresh).
    registered: bool,
}

/// What the driver must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Every REGISTER of the current phase has its final answer or was given
    /// up on: the registration rate is measured up to here, the hold starts,
    /// and the application server's side may start its jobs.
    Settled,
    /// The hold after settling is over (keepalive, soak): the soak's
    /// periodic jobs must start no new job; the soak ends once the job in
    /// flight, if any, has finished (see [`Population::job_finished`]).
    HoldOver,
    /// Call scenario: the calls begin (the registrations are over), and
    /// they are over; the CPU per call is measured in between.
    CallsBegin,
    CallsOver,
}

/// Every simulated endpoint of a run, and the run's phases: register at the
/// asked rate within the window, hold (answering, refreshing, churning),
/// unregister if asked, finish.
pub(crate) struct Population {
    cfg: LoadConfig,
    register: RegisterTemplate,
    /// Local port of each socket (endpoint `i` uses socket `i % ports`).
    ports: Vec<u16>,
    dead_below: u32,
    eps: Vec<Endpoint>,
    /// One bit per endpoint: received at least one request from the
    /// server. Apart from `eps` (16 MB at a million) so that answering a
    /// request touches 128 KB that stay cached, not a cold endpoint.
    prompted: Vec<u64>,
    /// REGISTER transactions in flight, by slot.
    txs: Vec<ClientTransaction>,
    free_txs: Vec<u32>,
    /// Transaction deadlines, (endpoint, epoch), in ms.
    retransmits: TimerWheel<(u32, u8)>,
    /// Refresh times, (endpoint, epoch of the registration refreshed), in ms.
    refreshes: TimerWheel<(u32, u8)>,
    unregistering: bool,
    phase_expires: u32,
    phase_start_us: u64,
    /// Endpoints started in this phase (they start in order).
    next_ep: u32,
    /// REGISTER transactions in flight.
    inflight: u32,
    /// When the current phase settled (µs).
    settled_at: Option<u64>,
    /// Notify, soak: the application server's jobs are over.
    job_done: bool,
    /// `Event::HoldOver` was sent.
    hold_over: bool,
    churn_started: u64,
    churn_cursor: u32,
    finished: bool,
    events: VecDeque<Event>,
    out: Outbox,
    /// For responses, which the SIP writer writes into a buffer of its own.
    scratch: Vec<u8>,
    tally: Tally,
    /// Call scenario: the calls, once registered.
    calls: Option<call::Calls>,
    /// The nodes the endpoints are spread over (one without a cluster).
    nodes: nodes::Nodes,
}

impl Population {
    /// `ports`: the local port of each of the driver's sockets.
    pub fn new(cfg: &LoadConfig, ports: Vec<u16>) -> Population {
        assert!(!ports.is_empty(), "at least one socket");
        let plan = cfg.call.as_ref().filter(|_| cfg.scenario == Scenario::Call);
        let n = match plan {
            Some(p) => call::Calls::endpoints(p, cfg.endpoints),
            None => cfg.endpoints,
        };
        let idle = Endpoint {
            sent_at_us: 0,
            tx: NO_TX,
            cseq: 1,
            state: Reg::Idle,
            churn: Churn::No,
            auth_rounds: 0,
            epoch: 0,
            registered: false,
        };
        Population {
            register: RegisterTemplate {
                domain: cfg.domain.clone(),
                instance: cfg.instance,
                contact_params: cfg.contact_params.clone(),
            },
            ports,
            dead_below: (cfg.dead_share.clamp(0.0, 1.0) * f64::from(n)) as u32,
            eps: vec![idle; n as usize],
            prompted: vec![0; (n as usize).div_ceil(64)],
            txs: Vec::new(),
            free_txs: Vec::new(),
            retransmits: TimerWheel::new(0),
            refreshes: TimerWheel::new(0),
            unregistering: false,
            phase_expires: cfg.expires,
            phase_start_us: 0,
            next_ep: 0,
            inflight: 0,
            settled_at: None,
            job_done: false,
            hold_over: false,
            churn_started: 0,
            churn_cursor: 0,
            finished: false,
            events: VecDeque::new(),
            out: Outbox::default(),
            scratch: Vec::with_capacity(1024),
            tally: Tally::new(),
            calls: plan.map(|p| call::Calls::new(p, cfg.endpoints)),
            nodes: nodes::Nodes::new(cfg, n),
            cfg: cfg.clone(),
        }
    }

    /// Endpoints registering (callees and callers in the call scenario).
    fn n(&self) -> u32 {
        self.eps.len() as u32
    }

    fn addr_of(&self, i: u32) -> (usize, Ipv4Addr) {
        addr_of(self.cfg.source_base, self.ports.len(), i)
    }

    /// The run is over: the driver stops calling and asks for the summary.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// (registered, failed) so far, for a progress line.
    pub fn progress(&self) -> (u64, u64) {
        (self.tally.registered, self.tally.failed)
    }

    /// The application server's jobs are over: the Notify scenario's job,
    /// or the soak's last one (their reports are the driver's).
    pub fn job_finished(&mut self) {
        self.job_done = true;
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next datagram to send, until `None`.
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.out.pop()
    }

    /// When to call [`Population::handle_timeout`] next (µs): soon while
    /// REGISTERs wait for their time or the window, else within 20 ms (the
    /// timers' resolution the generator needs).
    pub fn poll_timeout(&self, now: u64) -> u64 {
        let placing = self.calls.as_ref().is_some_and(|c| c.placing(now));
        if placing || (self.next_ep < self.n() && self.inflight < self.cfg.window) {
            now + 1_000
        } else {
            now + 20_000
        }
    }

    /// Writes endpoint `i`'s REGISTER (its current CSeq) into the outbox.
    fn send_register(&mut self, i: u32, auth: &[u8], expires: u32) {
        let (j, ip) = self.addr_of(i);
        let cseq = self.eps[i as usize].cseq;
        let buf = self.out.buffer();
        self.register
            .write(buf, i, ip, self.ports[j], cseq, auth, expires);
        let to = self.target_of(i);
        self.out.commit(j, ip, to);
    }

    /// Starts a client transaction for endpoint `i`'s REGISTER just sent,
    /// and arms its first deadline.
    fn start_transaction(&mut self, i: u32, now: u64) {
        let (tx, out) = ClientTransaction::start(Kind::NonInvite, now / 1000, &REGISTER_TIMERS);
        let e = &mut self.eps[i as usize];
        if e.tx == NO_TX {
            e.tx = match self.free_txs.pop() {
                Some(slot) => slot,
                None => {
                    self.txs.push(tx);
                    (self.txs.len() - 1) as u32
                }
            };
        }
        self.txs[e.tx as usize] = tx;
        if let Some(at) = out.next_deadline {
            self.retransmits.insert(at, (i, e.epoch));
        }
    }

    fn end_transaction(&mut self, i: u32) {
        let e = &mut self.eps[i as usize];
        if e.tx != NO_TX {
            self.free_txs.push(e.tx);
            e.tx = NO_TX;
        }
    }

    /// A new REGISTER transaction for endpoint `i` (refresh, restart): next
    /// CSeq, a new epoch so the old one's timers are ignored.
    fn next_transaction(&mut self, i: u32, now: u64) {
        let e = &mut self.eps[i as usize];
        e.state = Reg::Pending;
        e.auth_rounds = 0;
        e.cseq = e.cseq.wrapping_add(1);
        e.epoch = e.epoch.wrapping_add(1);
        e.sent_at_us = now as u32;
        self.inflight += 1;
    }

    /// Expires of endpoint `i`'s REGISTERs now: 0 while it leaves.
    fn expires_of(&self, i: u32) -> u32 {
        if self.eps[i as usize].churn == Churn::Leaving {
            0
        } else {
            self.phase_expires
        }
    }

    /// Time has come to `now` (µs): phases, new REGISTERs, refreshes,
    /// restarts, retransmissions and timeouts.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.finished {
            return;
        }
        self.tally.close_second((now / 1_000_000) as u32);
        if now >= self.cfg.duration.as_micros() as u64 {
            self.finished = true;
            return;
        }
        if self.settled_at.is_some() {
            let held = self.held(now);
            if held && !self.hold_over && !self.unregistering {
                self.hold_over = true;
                self.events.push_back(Event::HoldOver);
            }
            let jobs_over = self.job_done || self.cfg.job.is_none();
            let phase_over = self.unregistering
                || match self.cfg.scenario {
                    Scenario::Register => true,
                    Scenario::Notify => jobs_over,
                    Scenario::Keepalive => held,
                    // A soak ends with nothing in flight: no job, and no
                    // device caught mid-restart.
                    Scenario::Soak => held && jobs_over && self.inflight == 0,
                    Scenario::Call => self.calls_step(now),
                };
            if phase_over && self.cfg.unregister && !self.unregistering {
                self.start_unregistering(now);
            } else if phase_over {
                self.finished = true;
                return;
            }
        }
        self.nodes_due(now);
        self.start_due(now);
        self.refresh_due(now);
        self.churn_due(now);
        self.retransmit_due(now);
        if self.next_ep == self.n() && self.inflight == 0 && self.settled_at.is_none() {
            self.settled_at = Some(now);
            self.tally.requests_at_settled = self.tally.requests_total;
            self.events.push_back(Event::Settled);
        }
    }

    /// Second phase: the same endpoints, REGISTER with Expires: 0, at the
    /// same rate. A refresh still in flight is abandoned (its answer is
    /// ignored) so that the phase can settle.
    fn start_unregistering(&mut self, now: u64) {
        self.unregistering = true;
        self.phase_expires = 0;
        self.phase_start_us = now;
        self.next_ep = 0;
        self.settled_at = None;
        for i in 0..self.n() {
            if self.eps[i as usize].state == Reg::Pending {
                self.end_transaction(i);
                self.inflight -= 1;
            }
            let e = &mut self.eps[i as usize];
            e.state = Reg::Idle;
            e.churn = Churn::No;
            e.cseq = e.cseq.wrapping_add(1);
            e.epoch = e.epoch.wrapping_add(1);
        }
    }

    /// Starts the phase's REGISTERs that are due by now, within the window.
    fn start_due(&mut self, now: u64) {
        let n = self.n();
        let due = if self.cfg.rate == 0 {
            n
        } else {
            ((now.saturating_sub(self.phase_start_us) * u64::from(self.cfg.rate)) / 1_000_000)
                .min(u64::from(n)) as u32
        };
        while self.next_ep < due && self.inflight < self.cfg.window {
            let i = self.next_ep;
            // A datagram the kernel drops is retransmitted on the T1 timer.
            self.send_register(i, b"", self.phase_expires);
            let e = &mut self.eps[i as usize];
            e.state = Reg::Pending;
            e.auth_rounds = 0;
            e.sent_at_us = now as u32;
            self.start_transaction(i, now);
            self.inflight += 1;
            self.next_ep += 1;
            self.tally.cur.sent += 1;
        }
    }

    /// Retransmits or gives up on unanswered REGISTERs, as their
    /// transactions say.
    fn retransmit_due(&mut self, now: u64) {
        let now_ms = now / 1000;
        while let Some((_, (i, epoch))) = self.retransmits.poll(now_ms) {
            let e = self.eps[i as usize];
            if e.state != Reg::Pending || e.epoch != epoch {
                continue;
            }
            let out = self.txs[e.tx as usize].on_timer(now_ms, &REGISTER_TIMERS);
            if out.timed_out {
                let node = self.nodes.node_of(i);
                self.nodes.report[node].failed += 1;
                self.eps[i as usize].state = Reg::Done;
                self.end_transaction(i);
                self.inflight -= 1;
                let t = &mut self.tally;
                t.timeouts += 1;
                t.failed += 1;
                t.cur.failed += 1;
                continue;
            }
            if out.retransmit {
                self.tally.retransmissions += 1;
                // A retransmission after a challenge carries no credentials:
                // the server challenges again and the next answer has a
                // fresh nonce.
                self.send_register(i, b"", self.expires_of(i));
            }
            if let Some(at) = out.next_deadline {
                self.retransmits.insert(at, (i, epoch));
            }
        }
    }

    /// A datagram arrived at `now` (µs) on socket `socket`, sent by `from`
    /// to the local address `local`.
    pub fn handle_datagram(
        &mut self,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        data: &[u8],
    ) {
        if self.nodes.on_stun(data, now / 1000) {
            return;
        }
        let Ok(m) = sip::parse(data) else {
            return;
        };
        if call::wire::is_call(&m) {
            if let Some((calls, mut ctx)) = self.call_parts() {
                calls.handle(now, socket, local, from, &m, data, &mut ctx);
            }
            return;
        }
        match m.start {
            StartLine::Response { code, .. } => self.on_response(now, &m, code),
            StartLine::Request { method, .. } => {
                self.on_request(now, socket, local, from, &m, method);
            }
        }
    }

    fn on_response(&mut self, now: u64, m: &sip::Message<'_>, code: u16) {
        let Some(i) = message::endpoint_of(m).filter(|&i| i < self.n()) else {
            return;
        };
        let e = self.eps[i as usize];
        // An answer to an earlier REGISTER of this endpoint is stale.
        if e.state != Reg::Pending || message::cseq_of(m) != Some(u32::from(e.cseq)) {
            return;
        }
        let out = self.txs[e.tx as usize].on_response(code, now / 1000, &REGISTER_TIMERS);
        // A provisional response only slows the retransmissions.
        let Some(code) = out.deliver.filter(|&c| c >= 200) else {
            return;
        };
        if code == 401 && e.auth_rounds < MAX_AUTH_ROUNDS {
            if let Some(auth) = self
                .cfg
                .password
                .as_deref()
                .and_then(|pw| message::answer_challenge(m, i, pw, &self.cfg.domain))
            {
                let e = &mut self.eps[i as usize];
                e.auth_rounds += 1;
                e.cseq = e.cseq.wrapping_add(1);
                e.epoch = e.epoch.wrapping_add(1);
                self.tally.challenges += 1;
                self.send_register(i, auth.as_bytes(), self.expires_of(i));
                self.start_transaction(i, now);
                return;
            }
        }
        self.eps[i as usize].state = Reg::Done;
        self.end_transaction(i);
        self.inflight -= 1;
        let node = self.nodes.node_of(i);
        if code == 200 {
            self.nodes.report[node].ok += 1;
        } else {
            self.nodes.report[node].failed += 1;
        }
        match (e.churn, code) {
            (Churn::No, _) => {}
            // A restarting device: gone, then back at once.
            (_, c) if c != 200 => {
                self.eps[i as usize].churn = Churn::No;
                self.tally.churn_failed += 1;
            }
            (Churn::Leaving, _) => {
                self.eps[i as usize].churn = Churn::Returning;
                self.next_transaction(i, now);
                self.send_register(i, b"", self.cfg.expires);
                self.start_transaction(i, now);
                return;
            }
            (Churn::Returning, _) => {
                self.eps[i as usize].churn = Churn::No;
                self.tally.churned += 1;
            }
        }
        let t = &mut self.tally;
        t.record_final(code, now.saturating_sub(u64::from(e.sent_at_us)));
        if code != 200 {
            t.failed += 1;
            t.cur.failed += 1;
            return;
        }
        t.cur.ok += 1;
        if self.unregistering {
            t.unregistered += 1;
        } else if e.registered {
            t.refreshed += 1;
        } else {
            self.eps[i as usize].registered = true;
            t.registered += 1;
        }
        if (self.cfg.refresh || self.cfg.scenario == Scenario::Soak)
            && !self.unregistering
            && matches!(self.cfg.scenario, Scenario::Keepalive | Scenario::Soak)
        {
            // Refresh at 80% of what the server granted.
            let granted = message::granted_expires(m).unwrap_or(self.cfg.expires);
            let at = now / 1000 + u64::from(granted) * 800;
            self.refreshes.insert(at, (i, e.epoch));
        }
    }

    /// The run's summary, with what the driver measured.
    /// Fan-out outcomes the application server's side saw (delivered,
    /// rejected, timed out), for the timeline.
    pub fn fan_out_outcomes(&mut self, o: [u64; 3]) {
        self.tally.outcomes(o);
    }

    pub fn summary(self, m: Measured) -> Summary {
        let totals = Totals {
            endpoints: self.n(),
            rate_asked: self.cfg.rate,
            scenario: self.cfg.scenario,
            registers_started: u64::from(self.next_ep),
            endpoints_prompted: self
                .prompted
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum(),
        };
        let (server, generator, elapsed) = (m.server_cpu, m.generator_cpu, m.elapsed_s);
        let mut s = self.tally.summary(totals, m);
        s.duplicate_prompts = self.nodes.duplicates;
        if self.nodes.addrs.len() > 1 {
            s.nodes = self.nodes.report;
        }
        if let (Some(calls), Some(plan)) = (self.calls, &self.cfg.call) {
            s.calls =
                Some(
                    calls
                        .tally
                        .report(plan, self.cfg.endpoints, elapsed, server, generator),
                );
        }
        s
    }
}
