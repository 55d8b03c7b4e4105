//! What registered endpoints do while they hold: refresh their bindings
//! and, in a soak, restart (unregister, then register again).

use super::{Churn, Population, Reg, Scenario};

impl Population {
    /// Refreshes bindings whose time has come (a new transaction, same Call-ID).
    pub(super) fn refresh_due(&mut self, now: u64) {
        // A soak stops refreshing once its last job is over, so that
        // nothing is in flight soon after; until then bindings stay fresh.
        let winding_down = self.cfg.scenario == Scenario::Soak
            && self.held(now)
            && (self.job_done || self.cfg.job.is_none());
        while let Some((_, (i, epoch))) = self.refreshes.poll(now / 1000) {
            let e = &self.eps[i as usize];
            if self.unregistering || e.state != Reg::Done || e.epoch != epoch || !e.registered {
                continue;
            }
            if winding_down {
                continue;
            }
            self.next_transaction(i, now);
            self.send_register(i, b"", self.phase_expires);
            self.start_transaction(i, now);
            self.tally.cur.sent += 1;
        }
    }

    /// The hold is over (the phase settled at least `hold` ago).
    pub(super) fn held(&self, now: u64) -> bool {
        self.settled_at
            .is_some_and(|t| now.saturating_sub(t) >= self.cfg.hold.as_micros() as u64)
    }

    /// Soak: devices that restart (unregister, then register again) at
    /// `churn_per_s`, taken in turn among those registered and idle.
    pub(super) fn churn_due(&mut self, now: u64) {
        let (Scenario::Soak, Some(t), false) =
            (self.cfg.scenario, self.settled_at, self.unregistering)
        else {
            return;
        };
        if self.held(now) {
            self.churn_started = u64::MAX;
        }
        let due =
            (now.saturating_sub(t) * u64::from(self.cfg.churn_per_s) / 1_000_000).min(u64::MAX / 2);
        let n = self.n();
        let mut tries = 0;
        while self.churn_started < due && tries < n {
            tries += 1;
            let i = self.churn_cursor % n;
            self.churn_cursor = self.churn_cursor.wrapping_add(1);
            let e = &mut self.eps[i as usize];
            if e.state != Reg::Done || !e.registered {
                continue;
            }
            self.churn_started += 1;
            e.churn = Churn::Leaving;
            self.next_transaction(i, now);
            self.send_register(i, b"", 0);
            self.start_transaction(i, now);
            self.tally.cur.sent += 1;
        }
    }
}
