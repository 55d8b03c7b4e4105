//! The proxy's deadlines: server transaction Timers G/H/I/J/L, each
//! branch's retransmissions and Timer B/F, its CANCEL's, Timer C (a branch
//! ringing too long is CANCELled), and `proxy.max_call_s` per dialog.

use super::branch::{CANCEL, CLIENT, TIMER_C};
use super::{Ctx, Proxy};

impl Proxy {
    pub(super) fn on_call_timer(&mut self, slot: u32, what: u8, nonce: u32, cx: &mut Ctx<'_>) {
        let t = self.cfg.timers;
        // Timer values carry 24 bits of the nonce.
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        match what {
            0 => {
                call.server_timer = None;
                let out = call.server.on_timer(cx.now, &t);
                if out.resend && !call.last_response.is_empty() {
                    Self::send(cx.out, &call.last_response, call.src);
                }
                self.arm_server(
                    slot,
                    nonce,
                    out.next_deadline.filter(|_| !out.terminated),
                    cx,
                );
            }
            super::hold::WAIT => self.on_wait_timer(slot, nonce, cx),
            w if (CLIENT..CANCEL).contains(&w) => {
                let i = usize::from(w - CLIENT);
                let Some(b) = call.branches.get_mut(i) else {
                    return;
                };
                b.timer = None;
                let out = b.tx.on_timer(cx.now, &t);
                if out.retransmit {
                    Self::send(cx.out, &b.bytes, b.target.to);
                }
                b.timer = out
                    .next_deadline
                    .map(|at| super::arm(cx.timers, at, slot, w, nonce));
                if out.timed_out && !b.done {
                    self.branch_timed_out(slot, nonce, i, cx);
                }
                self.maybe_remove(slot, nonce, cx);
            }
            w if (CANCEL..TIMER_C).contains(&w) => {
                let i = usize::from(w - CANCEL);
                let Some(c) = call.branches.get_mut(i).and_then(|b| b.cancel.as_mut()) else {
                    return;
                };
                c.timer = None;
                let out = c.tx.on_timer(cx.now, &t);
                if out.retransmit {
                    let to = call.branches[i].target.to;
                    let bytes = &call.branches[i]
                        .cancel
                        .as_ref()
                        .map_or(&[][..], |c| &c.bytes);
                    Self::send(cx.out, bytes, to);
                }
                if let Some(c) = call.branches[i].cancel.as_mut() {
                    c.timer = out
                        .next_deadline
                        .map(|at| super::arm(cx.timers, at, slot, w, nonce));
                }
                self.maybe_remove(slot, nonce, cx);
            }
            w => {
                // Timer C: a branch that rang too long is CANCELled; one
                // that never answered at all is given up.
                let i = usize::from(w - TIMER_C);
                let Some(b) = call.branches.get_mut(i) else {
                    return;
                };
                b.timer_c = None;
                if b.cancel.is_some() {
                    // CANCELled 64·T1 ago and still no final: give up.
                    b.tx.terminate();
                    if let Some(h) = b.timer.take() {
                        cx.timers.cancel(h);
                    }
                    if b.done {
                        self.maybe_remove(slot, nonce, cx);
                    } else {
                        self.branch_timed_out(slot, nonce, i, cx);
                        self.maybe_remove(slot, nonce, cx);
                    }
                } else if b.done {
                    // Given up on already; its own timers end it.
                } else if b.provisional {
                    self.send_cancel(slot, nonce, i, cx);
                } else {
                    self.branch_timed_out(slot, nonce, i, cx);
                }
            }
        }
    }

    /// A branch got no final response in time: the upstream fallback, or
    /// nothing to offer (with no other final, `maybe_finish` answers 408).
    fn branch_timed_out(&mut self, slot: u32, nonce: u32, i: usize, cx: &mut Ctx<'_>) {
        self.branch_done(slot, nonce, i, cx);
        if let Some(to) = self.fallback_for(slot, nonce, i, 408) {
            self.restart_upstream(slot, nonce, to, cx);
        }
        self.maybe_finish(slot, nonce, cx);
    }

    /// `proxy.max_call_s` passed: a BYE to both parties, and the dialog ends.
    pub(super) fn on_dialog_timer(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(d) = self.dialogs.get_mut(slot, nonce) else {
            return;
        };
        d.timer = None;
        self.stats.dialogs_expired += 1;
        self.bye_both(slot, nonce, "call time limit", cx);
    }

    /// Ends a dialog ourselves: a BYE to each party, then the dialog.
    pub(super) fn bye_both(&mut self, slot: u32, nonce: u32, why: &str, cx: &mut Ctx<'_>) {
        let Some(d) = self.dialogs.get(slot, nonce).cloned() else {
            return;
        };
        for (from, to) in [(&d.caller, &d.callee), (&d.callee, &d.caller)] {
            let sent_by = self.sent_by(to.path.local()).to_owned();
            self.write_bye(&d.call_id, from, to, &sent_by, why);
            Self::send(cx.out, &self.buf, to.path);
        }
        tracing::info!(call_id = &*d.call_id, why, "call ended by tether");
        self.end_dialog(slot, nonce, cx);
    }
}
