//! The call scenario's two ends, sans-IO like the rest of the population:
//! callers place calls through the server at the asked rate (the INVITE,
//! CANCEL and BYE each a [`crate::transaction`] client transaction), hold
//! them and hang up; callees answer as a UA does (180 then 200 with the
//! Record-Route copied, 486 or a ring left for a CANCEL when asked, the
//! final resent on T1 doubling until the ACK, retransmitted INVITEs
//! answered with the last response).
//!
//! Both ends of a call share one slot, found by the Call-ID
//! `lc<slot>.<q>@…` (a proxy keeps it end to end); each end acts only on
//! what reaches it. A slot is freed once both ends are quiet, so a final
//! or a BYE that comes again later is answered statelessly (`uac`, `uas`).

use std::net::{Ipv4Addr, SocketAddrV4};

use super::outbox::Outbox;
use super::{Event, Population};
use crate::loadgen::call_tally::CallTally;
use crate::loadgen::tally::Tally;
use crate::loadgen::CallPlan;
use crate::sip::Message;
use crate::timer::TimerWheel;
use crate::transaction::{ClientTransaction, Timers};

#[cfg(test)]
mod tests;
mod uac;
mod uas;
pub(crate) mod wire;

/// RFC 3261's defaults: T1 500 ms, T2 4 s, Timers B, F and H 64·T1.
const TIMERS: Timers = Timers {
    t1_ms: 500,
    t2_ms: 4_000,
    t4_ms: 5_000,
    timeout_ms: 32_000,
    timer_d_ms: 32_000,
};

/// What the caller has in mind for a call (the callee learns it from
/// [`wire::ANSWER_HEADER`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// 180, 200, hold, BYE.
    Answer,
    /// 180, then the caller CANCELs: 487.
    Cancel,
    /// The callee answers 486.
    Busy,
}

/// The caller's side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uac {
    /// INVITE sent, no provisional response yet.
    Inviting,
    /// A 18x arrived.
    Ringing,
    /// CANCEL sent; the INVITE's final is due.
    Cancelling,
    /// 200 received and ACKed; held until the BYE.
    Talking,
    /// BYE sent.
    Hanging,
    Done,
}

/// The callee's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uas {
    /// No INVITE seen.
    Idle,
    /// 180 sent; waiting for the CANCEL.
    Ringing,
    /// A final sent (200 when `ok`, else 486 or 487), resent until the ACK.
    Answered {
        ok: bool,
    },
    /// The 200 was ACKed; the BYE is due.
    Confirmed,
    Done,
}

/// Both ends of one call. The buffers stay with the slot when it is reused.
#[derive(Debug)]
struct Call {
    /// The call's number; a message naming another is stale.
    q: u32,
    live: bool,
    caller: u32,
    callee: u32,
    plan: Plan,
    uac: Uac,
    invite_tx: Option<ClientTransaction>,
    cancel_tx: Option<ClientTransaction>,
    bye_tx: Option<ClientTransaction>,
    /// When the INVITE and the BYE were first sent (µs).
    invite_at: u64,
    bye_at: u64,
    invite: Vec<u8>,
    cancel: Vec<u8>,
    bye: Vec<u8>,
    bye_to: SocketAddrV4,
    /// The 200 the caller received: the dialog's route set and remote
    /// target, read again for the BYE.
    ok: Vec<u8>,
    uas: Uas,
    uas_invite: Vec<u8>,
    /// The callee's last response, for retransmitted INVITEs and its timer.
    uas_last: Vec<u8>,
    /// Where the callee's responses go: its socket and address, the server.
    uas_to: (usize, Ipv4Addr, SocketAddrV4),
    /// Resend interval and next resend of the final; when to stop (ms).
    uas_interval: u64,
    uas_next: u64,
    uas_end: u64,
}

impl Call {
    fn new() -> Call {
        let nowhere = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        Call {
            q: 0,
            live: false,
            caller: 0,
            callee: 0,
            plan: Plan::Answer,
            uac: Uac::Done,
            invite_tx: None,
            cancel_tx: None,
            bye_tx: None,
            invite_at: 0,
            bye_at: 0,
            invite: Vec::new(),
            cancel: Vec::new(),
            bye: Vec::new(),
            bye_to: nowhere,
            ok: Vec::new(),
            uas: Uas::Idle,
            uas_invite: Vec::new(),
            uas_last: Vec::new(),
            uas_to: (0, Ipv4Addr::UNSPECIFIED, nowhere),
            uas_interval: 0,
            uas_next: 0,
            uas_end: 0,
        }
    }
}

/// A call's timer: which one, and the deadline it was armed for (ms), so
/// that one superseded by a later arming is ignored.
#[derive(Debug, Clone, Copy)]
struct Due {
    slot: u32,
    q: u32,
    what: What,
    at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum What {
    /// The transactions' deadlines.
    Invite,
    Cancel,
    Bye,
    /// A call to be cancelled has rung long enough.
    Ring,
    /// An answered call has been held long enough.
    Hangup,
    /// No final response within 64·T1 of the INVITE, even after a
    /// provisional (the INVITE transaction has no timer then).
    GiveUp,
    /// The callee resends its final, or stops waiting.
    Callee,
}

/// What the calls borrow from the population.
pub(super) struct Ctx<'a> {
    pub out: &'a mut Outbox,
    pub ports: &'a [u16],
    pub base: Ipv4Addr,
    /// Each endpoint's node (several `--target`): a caller's INVITE,
    /// CANCEL and BYE go to the node it registered at.
    pub nodes: &'a super::nodes::Nodes,
    pub domain: &'a str,
    /// Most calls in flight.
    pub window: u32,
    /// The run's tally (per-second figures, requests received).
    pub tally: &'a mut Tally,
}

impl Ctx<'_> {
    fn send(&mut self, bytes: &[u8], socket: usize, src: Ipv4Addr, dst: SocketAddrV4) {
        self.out.buffer().extend_from_slice(bytes);
        self.out.commit(socket, src, dst);
    }

    /// Endpoint `i`'s node.
    fn target(&self, i: u32) -> SocketAddrV4 {
        self.nodes.addr_of(i)
    }

    /// Endpoint `i`'s socket and address.
    fn addr_of(&self, i: u32) -> (usize, Ipv4Addr) {
        super::addr_of(self.base, self.ports.len(), i)
    }
}

/// Every call of a run.
pub(crate) struct Calls {
    plan: CallPlan,
    callees: u32,
    slots: Vec<Call>,
    free: Vec<u32>,
    /// Slots in use.
    active: u32,
    next_q: u32,
    /// Calls to place in all when paced (rate × duration).
    total: u64,
    /// When the call phase began (µs).
    start: Option<u64>,
    timers: TimerWheel<Due>,
    scratch: Vec<u8>,
    pub tally: CallTally,
}

impl Calls {
    /// Calls from `plan.callers` endpoints (numbered after the `callees`).
    pub fn new(plan: &CallPlan, callees: u32) -> Calls {
        Calls {
            total: u64::from(plan.rate) * plan.duration.as_micros() as u64 / 1_000_000,
            plan: plan.clone(),
            callees: callees.max(1),
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            next_q: 0,
            start: None,
            timers: TimerWheel::new(0),
            scratch: Vec::with_capacity(1024),
            tally: CallTally::new(),
        }
    }

    /// Endpoints taking part: callees then callers.
    pub fn endpoints(plan: &CallPlan, callees: u32) -> u32 {
        callees.max(1) + plan.callers.max(1)
    }

    /// The call phase has begun.
    pub fn started(&self) -> bool {
        self.start.is_some()
    }

    /// Calls are still being placed at `now` (the driver then polls often).
    pub fn placing(&self, now: u64) -> bool {
        let Some(start) = self.start else {
            return false;
        };
        let end = start + self.plan.duration.as_micros() as u64;
        match self.plan.rate {
            0 => now < end,
            // Paced: every call, unless the window held them back over a
            // second past the end.
            _ => u64::from(self.next_q) < self.total && now < end + 1_000_000,
        }
    }

    /// Time has come to `now` (µs), the registrations being over: places
    /// the calls due and runs the calls' timers. True once the phase is
    /// over: every call placed and ended, or the drain time spent.
    pub fn step(&mut self, now: u64, ctx: &mut Ctx<'_>) -> bool {
        let start = *self.start.get_or_insert(now);
        self.place_due(now, ctx);
        self.run_timers(now, ctx);
        let p = &self.plan;
        let placed_until = start + p.duration.as_micros() as u64;
        if now >= placed_until + (p.hold + p.drain).as_micros() as u64 {
            self.tally.unfinished = u64::from(self.active);
            self.tally.over_us = Some(now);
            return true;
        }
        let over = !self.placing(now) && self.active == 0;
        if over {
            self.tally.over_us = Some(now);
        }
        over
    }

    /// What call `q` is for: the shares spread over the calls evenly (a
    /// golden-ratio sequence), busy first.
    fn plan_of(&self, q: u32) -> Plan {
        let r = (f64::from(q) * 0.618_033_988_749_895).fract() * 100.0;
        if r < self.plan.busy_share {
            Plan::Busy
        } else if r < self.plan.busy_share + self.plan.cancel_share {
            Plan::Cancel
        } else {
            Plan::Answer
        }
    }

    fn place_due(&mut self, now: u64, ctx: &mut Ctx<'_>) {
        let Some(start) = self.start else {
            return;
        };
        // Call k is due k/rate after the start.
        let due = if self.plan.rate == 0 {
            u64::MAX
        } else {
            (now - start) * u64::from(self.plan.rate) / 1_000_000 + 1
        };
        while self.placing(now) && u64::from(self.next_q) < due && self.active < ctx.window {
            self.place(now, ctx);
        }
    }

    /// A free slot, live for call `q`.
    fn alloc(&mut self, q: u32) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Call::new());
                (self.slots.len() - 1) as u32
            }
        };
        self.active += 1;
        let c = &mut self.slots[slot as usize];
        c.q = q;
        c.live = true;
        c.uas = Uas::Idle;
        c.invite_tx = None;
        c.cancel_tx = None;
        c.bye_tx = None;
        slot
    }

    /// Frees the slot once both ends are quiet.
    fn try_free(&mut self, slot: u32) {
        let c = &mut self.slots[slot as usize];
        let callee_busy = matches!(c.uas, Uas::Ringing | Uas::Answered { .. });
        if c.live && c.uac == Uac::Done && !callee_busy {
            c.live = false;
            self.active -= 1;
            self.free.push(slot);
        }
    }

    fn arm(&mut self, slot: u32, what: What, at: u64) {
        let q = self.slots[slot as usize].q;
        self.timers.insert(at, Due { slot, q, what, at });
    }

    /// The live slot a message names, if any.
    fn live_slot(&self, m: &Message<'_>) -> Option<u32> {
        let (slot, q) = wire::call_of(m)?;
        let c = self.slots.get(slot as usize)?;
        (c.live && c.q == q).then_some(slot)
    }

    fn run_timers(&mut self, now: u64, ctx: &mut Ctx<'_>) {
        while let Some((_, d)) = self.timers.poll(now / 1000) {
            let Some(c) = self.slots.get(d.slot as usize) else {
                continue;
            };
            if !c.live || c.q != d.q {
                continue;
            }
            match d.what {
                What::Invite | What::Cancel | What::Bye => self.transaction_timer(d, now, ctx),
                What::Ring => self.ring_over(d.slot, now, ctx),
                What::Hangup => self.hang_up(d.slot, now, ctx),
                What::GiveUp => self.give_up(d.slot, now, ctx),
                What::Callee => self.callee_timer(d, now, ctx),
            }
        }
    }

    /// A message of a call arrived at endpoint socket `socket`, address
    /// `local`, from `from`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle(
        &mut self,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        m: &Message<'_>,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) {
        match m.method() {
            None => self.on_response(now, socket, local, from, m, data, ctx),
            Some(method) => self.on_request(now, socket, local, from, m, method, data, ctx),
        }
    }
}

/// The population's side of the calls.
impl Population {
    /// The calls and what they borrow from the rest.
    pub(super) fn call_parts(&mut self) -> Option<(&mut Calls, Ctx<'_>)> {
        let calls = self.calls.as_mut()?;
        let ctx = Ctx {
            out: &mut self.out,
            ports: &self.ports,
            base: self.cfg.source_base,
            nodes: &self.nodes,
            domain: &self.cfg.domain,
            window: self.cfg.window,
            tally: &mut self.tally,
        };
        Some((calls, ctx))
    }

    /// The call phase at `now`; true once it is over.
    pub(super) fn calls_step(&mut self, now: u64) -> bool {
        let Some((calls, mut ctx)) = self.call_parts() else {
            return true;
        };
        let first = !calls.started();
        let over = calls.step(now, &mut ctx);
        if first {
            self.events.push_back(Event::CallsBegin);
        }
        if over {
            self.events.push_back(Event::CallsOver);
        }
        over
    }
}
