//! The callee's side: answer an INVITE as the caller asked (180 then 200;
//! 486; 180 and wait for the CANCEL, then 487), answer a retransmitted
//! INVITE with the last response, resend the final on T1 doubling (capped
//! at T2) until the ACK or 64·T1, and answer CANCEL and BYE 200.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::wire;
use super::{Calls, Ctx, Due, Uas, What, TIMERS};
use crate::sip::{Message, Method};

impl Calls {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_request(
        &mut self,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        m: &Message<'_>,
        method: Method<'_>,
        data: &[u8],
        ctx: &mut Ctx<'_>,
    ) {
        ctx.tally.record_request(method.as_str());
        let live = self.live_slot(m);
        if live.is_none() {
            self.tally.stale += 1;
        }
        match (method, live) {
            (Method::Invite, Some(slot)) => {
                self.on_invite(slot, now, socket, local, from, m, data, ctx)
            }
            (Method::Ack, Some(slot)) => {
                let c = &mut self.slots[slot as usize];
                if let Uas::Answered { ok } = c.uas {
                    c.uas = if ok { Uas::Confirmed } else { Uas::Done };
                    self.try_free(slot);
                }
            }
            (Method::Invite | Method::Ack, None) => {}
            _ => {
                // CANCEL, BYE and anything else in a call: 200, statelessly.
                let tag = wire::callee_tag(wire::call_of(m).map_or(0, |(_, q)| q));
                wire::write_ok(&mut self.scratch, m, &tag);
                ctx.send(&self.scratch, socket, local, from);
                ctx.tally.answered += 1;
                if let Some(slot) = live {
                    match method {
                        Method::Cancel => self.on_cancel(slot, now, ctx),
                        Method::Bye => {
                            // A BYE also ends a wait for the ACK that was lost.
                            self.slots[slot as usize].uas = Uas::Done;
                            self.try_free(slot);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_invite(
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
        let c = &mut self.slots[slot as usize];
        match c.uas {
            Uas::Idle => {}
            Uas::Done => return,
            _ => {
                ctx.send(&c.uas_last, socket, local, from);
                self.tally.invites_absorbed += 1;
                return;
            }
        }
        let me = super::super::endpoint_at(ctx.base, ctx.ports.len(), socket, local);
        if me != c.callee {
            self.tally.misrouted += 1;
        }
        c.uas_invite.clear();
        c.uas_invite.extend_from_slice(data);
        c.uas_to = (socket, local, from);
        let tag = wire::callee_tag(c.q);
        let contact = format!("sip:u{me}@{local}:{}", ctx.ports[socket]);
        let ask = wire::answer_asked(m);
        if ask != Some("busy") {
            wire::write_answer(&mut c.uas_last, m, 180, &tag, &contact, None);
            ctx.send(&c.uas_last, socket, local, from);
        }
        let now_ms = now / 1000;
        c.uas_end = now_ms + TIMERS.timeout_ms;
        if ask == Some("ring") {
            ctx.tally.answered += 1;
            c.uas = Uas::Ringing;
            let at = c.uas_end;
            self.arm(slot, What::Callee, at);
            return;
        }
        ctx.tally.answered += 1;
        let ok = ask != Some("busy");
        let (code, sdp) = if ok {
            (200, Some((c.q, local)))
        } else {
            (486, None)
        };
        wire::write_answer(&mut c.uas_last, m, code, &tag, &contact, sdp);
        self.send_final(slot, ok, now_ms, ctx);
    }

    /// Sends the callee's final (already in `uas_last`) and starts
    /// resending it until the ACK.
    fn send_final(&mut self, slot: u32, ok: bool, now_ms: u64, ctx: &mut Ctx<'_>) {
        let c = &mut self.slots[slot as usize];
        let (socket, local, to) = c.uas_to;
        ctx.send(&c.uas_last, socket, local, to);
        c.uas = Uas::Answered { ok };
        c.uas_interval = TIMERS.t1_ms;
        c.uas_next = now_ms + TIMERS.t1_ms;
        c.uas_end = now_ms + TIMERS.timeout_ms;
        let at = c.uas_next;
        self.arm(slot, What::Callee, at);
    }

    /// A CANCEL for a ringing call: 487 to its INVITE.
    fn on_cancel(&mut self, slot: u32, now: u64, ctx: &mut Ctx<'_>) {
        let c = &mut self.slots[slot as usize];
        if c.uas != Uas::Ringing {
            return;
        }
        let Ok(invite) = crate::sip::parse(&c.uas_invite) else {
            return;
        };
        let tag = wire::callee_tag(c.q);
        wire::write_answer(&mut c.uas_last, &invite, 487, &tag, "", None);
        self.send_final(slot, false, now / 1000, ctx);
    }

    /// The callee's timer: resend the final, or stop waiting for the ACK
    /// (or, ringing, for the CANCEL).
    pub(super) fn callee_timer(&mut self, d: Due, now: u64, ctx: &mut Ctx<'_>) {
        let now_ms = now / 1000;
        let c = &mut self.slots[d.slot as usize];
        match c.uas {
            Uas::Ringing if d.at == c.uas_end => {}
            Uas::Answered { .. } if d.at == c.uas_next => {
                if now_ms < c.uas_end {
                    let (socket, local, to) = c.uas_to;
                    ctx.send(&c.uas_last, socket, local, to);
                    self.tally.callee_retransmissions += 1;
                    c.uas_interval = (c.uas_interval * 2).min(TIMERS.t2_ms);
                    c.uas_next = now_ms + c.uas_interval;
                    let at = c.uas_next;
                    self.arm(d.slot, What::Callee, at);
                    return;
                }
                self.tally.ack_timeouts += 1;
            }
            _ => return,
        }
        self.slots[d.slot as usize].uas = Uas::Done;
        self.try_free(d.slot);
    }
}
