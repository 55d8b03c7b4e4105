//! The engine's deadlines on the core's one wheel: a `Timer::Transaction`
//! per transaction slot, `Timer::Pace` while first sends wait, and
//! `Timer::Subscriptions` while subscriptions live.

use super::*;

/// Pacing and the subscription sweep.
impl Engine {
    /// `Timer::Pace` fired: first sends the pacer allows now.
    pub(crate) fn on_pace(&mut self, now: u64, wheel: &mut Timers) {
        self.pace = None;
        self.send_paced(now, wheel);
        // The bucket is spent for this millisecond: look again at the next.
        if self.wants_pace() {
            self.pace = Some(wheel.arm(now + 1, Timer::Pace));
        }
        self.schedule(now, wheel);
    }

    /// `Timer::Subscriptions` fired: drop expired subscriptions.
    pub(crate) fn on_sweep(&mut self, now: u64, wheel: &mut Timers) {
        self.sweep = None;
        self.subscriptions.expire(now, &self.dir);
        self.schedule(now, wheel);
    }

    /// First sends wait and there is room for them.
    pub(super) fn wants_pace(&self) -> bool {
        self.has_room() && self.runs.has_unsent()
    }

    /// Arms the pacer at once while first sends wait and there is room for
    /// them (then each millisecond, as the token bucket refills: see
    /// `on_pace`), and the subscription sweep while subscriptions live.
    /// Every entry point that can change either ends here.
    pub(super) fn schedule(&mut self, now: u64, wheel: &mut Timers) {
        if self.pace.is_none() && self.wants_pace() {
            self.pace = Some(wheel.arm(now, Timer::Pace));
        }
        if self.sweep.is_none() {
            if let Some(at) = self.subscriptions.next_sweep() {
                self.sweep = Some(wheel.arm(at.max(now), Timer::Subscriptions));
            }
        }
    }
}

/// Timers: one wheel entry per transaction slot, keyed by (slot, nonce),
/// at the earliest of the transaction's own deadline and its INVITE
/// follow-ups' (ring limit, CANCEL), on the core's one wheel as
/// `Timer::Transaction`. `arm` sets it, `on_timer` runs when it fires,
/// `release` drops it with the slot.
impl Engine {
    pub(super) fn arm(&mut self, slot: u32, at: Option<u64>, wheel: &mut Timers) {
        let Some(t) = self.txns.get_mut(slot) else {
            return;
        };
        if let Some(h) = t.timer.take() {
            wheel.cancel(h);
        }
        let at = [at, t.ring.deadline()].into_iter().flatten().min();
        if let Some(at) = at {
            t.timer = Some(wheel.arm(
                at,
                Timer::Transaction {
                    slot,
                    nonce: t.nonce,
                },
            ));
        }
    }

    /// `Timer::Transaction` of `slot` fired.
    pub(crate) fn on_timer(&mut self, slot: u32, nonce: u32, now: u64, wheel: &mut Timers) {
        self.on_txn_timer(slot, nonce, now, wheel);
        self.schedule(now, wheel);
    }

    fn on_txn_timer(&mut self, slot: u32, nonce: u32, now: u64, wheel: &mut Timers) {
        let timers = self.cfg.timers;
        let Some(t) = self.txns.get_mut(slot) else {
            return;
        };
        if t.nonce != nonce {
            return;
        }
        t.timer = None;
        let mut sends = SmallVec::new();
        // CANCEL and the ring limit run beside the INVITE's own state.
        let abandon = t
            .ring
            .on_timer(t.tx.state(), &t.bytes, now, &timers, &mut sends);
        let o = t.tx.on_timer(now, &timers);
        if o.retransmit {
            sends.push(t.bytes.clone());
        }
        let (to, local) = (t.to, t.local);
        let next = o.next_deadline;
        for b in &sends {
            self.queue(b, to, local);
        }
        if o.retransmit {
            self.stats.retransmissions += 1;
            if let Some(t) = self.txns.get_mut(slot) {
                if t.retransmits == 0 && matches!(t.role, Role::Request { .. }) {
                    self.pacer.on_first_retransmit();
                }
                t.retransmits = t.retransmits.saturating_add(1);
            }
            if let Some(job) = self.txns.get(slot).and_then(|t| t.job.as_ref()) {
                job.retransmissions
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if o.timed_out {
            self.settle(slot, Outcome::TimedOut, now);
        }
        if o.terminated || abandon {
            // Only a request that never got an answer ends as timed out.
            if self.txns.get(slot).is_some_and(|t| !t.settled) {
                self.settle(slot, Outcome::TimedOut, now);
            }
            self.release(slot, wheel);
            return;
        }
        self.arm(slot, next, wheel);
    }

    /// Frees a transaction's slot and cancels its timer.
    pub(super) fn release(&mut self, slot: u32, wheel: &mut Timers) {
        if let Some(h) = self.txns.release(slot) {
            wheel.cancel(h);
        }
    }
}
