//! The caller's side: place the INVITE, follow its responses (ACK every
//! final, the 2xx along the dialog's route set), CANCEL a call that is to
//! ring only, hang up an answered one after the hold, and give up on what
//! gets no answer.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::wire::{self, Leg};
use super::{Calls, Ctx, Due, Plan, Uac, What, TIMERS};
use crate::sip::{Message, Method};
use crate::transaction::{ClientTransaction, Kind};

impl Calls {
    /// Places the next call: caller and callee in turn.
    pub(super) fn place(&mut self, now: u64, ctx: &mut Ctx<'_>) {
        let q = self.next_q;
        self.next_q += 1;
        let plan = self.plan_of(q);
        let callee = q % self.callees;
        let caller = self.callees + q % self.plan.callers.max(1);
        let (socket, ip) = ctx.addr_of(caller);
        let slot = self.alloc(q);
        let c = &mut self.slots[slot as usize];
        c.caller = caller;
        c.callee = callee;
        c.plan = plan;
        c.uac = Uac::Inviting;
        c.invite_at = now;
        let leg = Leg {
            domain: ctx.domain,
            slot,
            q,
            caller,
            callee,
            ip,
            port: ctx.ports[socket],
        };
        let answer = match plan {
            Plan::Answer => None,
            Plan::Cancel => Some("ring"),
            Plan::Busy => Some("busy"),
        };
        wire::write_invite_or_cancel(&mut c.invite, &leg, Method::Invite, answer);
        ctx.send(&c.invite, socket, ip, ctx.target(caller));
        let (tx, out) = ClientTransaction::start(Kind::Invite, now / 1000, &TIMERS);
        c.invite_tx = Some(tx);
        if let Some(at) = out.next_deadline {
            self.arm(slot, What::Invite, at);
        }
        self.arm(slot, What::GiveUp, now / 1000 + TIMERS.timeout_ms);
        let t = &mut self.tally;
        t.attempted += 1;
        t.first_invite_us.get_or_insert(now);
        ctx.tally.cur.calls_placed += 1;
    }

    /// ACKs a final response to an INVITE from the endpoint it reached: a
    /// 2xx along the dialog's route set, any other to the server hop by hop
    /// (`hop`: the node the response came from).
    #[allow(clippy::too_many_arguments)]
    fn ack(
        &mut self,
        m: &Message<'_>,
        code: u16,
        socket: usize,
        local: Ipv4Addr,
        hop: SocketAddrV4,
        ctx: &mut Ctx<'_>,
    ) {
        let buf = &mut self.scratch;
        let to = if code < 300 {
            wire::write_in_dialog(buf, m, Method::Ack, seq(m), "a", hop)
        } else {
            wire::write_ack_non_2xx(buf, m).map(|()| hop)
        };
        if let Some(to) = to {
            ctx.send(&self.scratch, socket, local, to);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_response(
        &mut self,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        m: &Message<'_>,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) {
        let (Some(code), Some(method)) = (m.status(), wire::cseq_method(m)) else {
            return;
        };
        let Some(slot) = self.live_slot(m) else {
            // The call is over: a final to its INVITE came again.
            if method == Method::Invite && code >= 200 {
                self.tally.stale += 1;
                self.ack(m, code, socket, local, from, ctx);
            }
            return;
        };
        match method {
            Method::Invite => self.invite_response(slot, now, socket, local, from, m, data, ctx),
            Method::Cancel => {
                let c = &mut self.slots[slot as usize];
                let Some(tx) = c.cancel_tx.as_mut() else {
                    return;
                };
                let out = tx.on_response(code, now / 1000, &TIMERS);
                if out.deliver == Some(200) {
                    self.tally.cancel_ok += 1;
                }
            }
            Method::Bye => {
                let c = &mut self.slots[slot as usize];
                let (Uac::Hanging, Some(tx)) = (c.uac, c.bye_tx.as_mut()) else {
                    return;
                };
                let out = tx.on_response(code, now / 1000, &TIMERS);
                let Some(code) = out.deliver.filter(|&c| c >= 200) else {
                    return;
                };
                c.uac = Uac::Done;
                let rtt = now.saturating_sub(c.bye_at);
                let t = &mut self.tally;
                t.record_bye(rtt);
                if code == 200 {
                    t.bye_ok += 1;
                } else {
                    t.bye_failed += 1;
                }
                self.try_free(slot);
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn invite_response(
        &mut self,
        slot: u32,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        m: &Message<'_>,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) {
        let Some(code) = m.status() else {
            return;
        };
        let c = &mut self.slots[slot as usize];
        let Some(tx) = c.invite_tx.as_mut() else {
            return;
        };
        let out = tx.on_response(code, now / 1000, &TIMERS);
        if out.ack || (out.deliver.is_some_and(|c| (200..300).contains(&c))) {
            self.ack(m, code, socket, local, from, ctx);
        }
        let Some(code) = out.deliver.filter(|_| !out.repeated) else {
            return;
        };
        let c = &mut self.slots[slot as usize];
        let setting_up = matches!(c.uac, Uac::Inviting | Uac::Ringing | Uac::Cancelling);
        if code < 200 {
            // Ringing from the first 18x (a 100 is the server's own).
            if code > 100 && c.uac == Uac::Inviting {
                c.uac = Uac::Ringing;
                if c.plan == Plan::Cancel {
                    let at = now / 1000 + self.plan.ring.as_millis() as u64;
                    self.arm(slot, What::Ring, at);
                }
            }
            return;
        }
        if !setting_up {
            // A final after the caller gave up: ACKed above, nothing more.
            return;
        }
        self.tally.record_final(code, now);
        if code < 300 {
            let cancelled = c.uac == Uac::Cancelling;
            c.uac = Uac::Talking;
            c.ok.clear();
            c.ok.extend_from_slice(data);
            let setup = now.saturating_sub(c.invite_at);
            self.tally.answered += 1;
            self.tally.record_setup(setup);
            ctx.tally.record_setup(setup);
            // A CANCEL that crossed the 200 hangs up at once.
            let hold = if cancelled {
                0
            } else {
                self.plan.hold.as_millis() as u64
            };
            self.arm(slot, What::Hangup, now / 1000 + hold);
            return;
        }
        c.uac = Uac::Done;
        match (c.plan, code) {
            (Plan::Cancel, 487) => self.tally.cancelled += 1,
            (Plan::Busy, 486) => self.tally.busy += 1,
            _ => {
                self.tally.failed += 1;
                ctx.tally.cur.calls_failed += 1;
            }
        }
        self.try_free(slot);
    }

    /// A transaction deadline: retransmit, or give up on the request.
    pub(super) fn transaction_timer(&mut self, d: Due, now: u64, ctx: &mut Ctx<'_>) {
        let now_ms = now / 1000;
        let c = &mut self.slots[d.slot as usize];
        let (tx, active) = match d.what {
            What::Invite => (
                &mut c.invite_tx,
                matches!(c.uac, Uac::Inviting | Uac::Ringing | Uac::Cancelling),
            ),
            What::Cancel => (&mut c.cancel_tx, c.uac == Uac::Cancelling),
            _ => (&mut c.bye_tx, c.uac == Uac::Hanging),
        };
        let Some(tx) = tx.as_mut().filter(|t| active && t.deadline() == Some(d.at)) else {
            return;
        };
        let out = tx.on_timer(now_ms, &TIMERS);
        let (socket, ip) = ctx.addr_of(c.caller);
        if out.retransmit {
            let (bytes, to) = match d.what {
                What::Invite => (&c.invite, ctx.target(c.caller)),
                What::Cancel => (&c.cancel, ctx.target(c.caller)),
                _ => (&c.bye, c.bye_to),
            };
            ctx.send(bytes, socket, ip, to);
            let t = &mut self.tally;
            match d.what {
                What::Invite => t.invite_retransmissions += 1,
                What::Cancel => t.cancel_retransmissions += 1,
                _ => t.bye_retransmissions += 1,
            }
        }
        if out.timed_out {
            match d.what {
                What::Invite => self.give_up(d.slot, now, ctx),
                What::Bye => {
                    self.slots[d.slot as usize].uac = Uac::Done;
                    self.tally.bye_timeouts += 1;
                    self.try_free(d.slot);
                }
                // The INVITE's final, or its give-up, ends the call.
                _ => {}
            }
            return;
        }
        if let Some(at) = out.next_deadline {
            self.arm(d.slot, d.what, at);
        }
    }

    /// No final response in time: the call failed (counted as 408).
    pub(super) fn give_up(&mut self, slot: u32, now: u64, ctx: &mut Ctx<'_>) {
        let c = &mut self.slots[slot as usize];
        if !matches!(c.uac, Uac::Inviting | Uac::Ringing | Uac::Cancelling) {
            return;
        }
        c.uac = Uac::Done;
        let t = &mut self.tally;
        t.timeouts += 1;
        t.failed += 1;
        t.record_final(408, now);
        ctx.tally.cur.calls_failed += 1;
        self.try_free(slot);
    }

    /// A call to be cancelled has rung long enough: CANCEL it.
    pub(super) fn ring_over(&mut self, slot: u32, now: u64, ctx: &mut Ctx<'_>) {
        let c = &mut self.slots[slot as usize];
        if c.uac != Uac::Ringing {
            return;
        }
        c.uac = Uac::Cancelling;
        let (socket, ip) = ctx.addr_of(c.caller);
        let leg = Leg {
            domain: ctx.domain,
            slot,
            q: c.q,
            caller: c.caller,
            callee: c.callee,
            ip,
            port: ctx.ports[socket],
        };
        wire::write_invite_or_cancel(&mut c.cancel, &leg, Method::Cancel, None);
        ctx.send(&c.cancel, socket, ip, ctx.target(c.caller));
        let (tx, out) = ClientTransaction::start(Kind::NonInvite, now / 1000, &TIMERS);
        c.cancel_tx = Some(tx);
        if let Some(at) = out.next_deadline {
            self.arm(slot, What::Cancel, at);
        }
    }

    /// The hold is over: BYE along the dialog's route set.
    pub(super) fn hang_up(&mut self, slot: u32, now: u64, ctx: &mut Ctx<'_>) {
        let c = &mut self.slots[slot as usize];
        if c.uac != Uac::Talking {
            return;
        }
        let (socket, ip) = ctx.addr_of(c.caller);
        let to = crate::sip::parse(&c.ok).ok().and_then(|ok| {
            wire::write_in_dialog(
                &mut c.bye,
                &ok,
                Method::Bye,
                seq(&ok) + 1,
                "b",
                ctx.target(c.caller),
            )
        });
        let Some(to) = to else {
            // A 200 the BYE cannot be built from (parsed once already).
            c.uac = Uac::Done;
            self.tally.bye_failed += 1;
            self.try_free(slot);
            return;
        };
        c.uac = Uac::Hanging;
        c.bye_to = to;
        c.bye_at = now;
        ctx.send(&c.bye, socket, ip, to);
        let (tx, out) = ClientTransaction::start(Kind::NonInvite, now / 1000, &TIMERS);
        c.bye_tx = Some(tx);
        if let Some(at) = out.next_deadline {
            self.arm(slot, What::Bye, at);
        }
    }
}

/// The CSeq number of a response (1 when it has none: the INVITE's).
fn seq(m: &Message<'_>) -> u32 {
    m.cseq().map_or(1, |c| c.seq)
}
