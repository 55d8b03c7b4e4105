//! Binding expiry on the core that owns the binding: one timer entry per
//! binding on the registrar's wheel, moved later lazily (a refresh only
//! updates the binding; the due entry re-arms it), earlier by an entry of
//! its own.

use super::{BindingRef, Registrar};

impl Registrar {
    /// The earliest time (seconds) an expiry is due, for the poll timeout.
    pub fn next_expiry(&self) -> Option<u32> {
        self.expiries
            .next_deadline()
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX))
    }

    /// Arms the expiry timer of a binding this core owns.
    pub(super) fn arm(&mut self, at_secs: u32, slot: u32, gen: u32) {
        self.expiries.insert(u64::from(at_secs) * 1000, (slot, gen));
    }

    /// A refreshed binding's new expiry; true when it changed.
    pub(super) fn refresh_expiry(&mut self, slot: u32, gen: u32, expires_at: u32) -> bool {
        let Some(b) = self.slab.get_mut(slot, gen) else {
            return false;
        };
        if b.expires_at == expires_at {
            return false;
        }
        b.expires_at = expires_at;
        // Timers only move later lazily; an earlier expiry needs its own entry.
        if expires_at < b.scheduled_at {
            b.scheduled_at = expires_at;
            self.arm(expires_at, slot, gen);
        }
        true
    }

    /// Removes bindings whose time has come. Call with the current time;
    /// returns how many expired.
    pub fn expire(&mut self, now_secs: u32) -> usize {
        let mut n = 0;
        while let Some((_, (slot, gen))) = self.expiries.poll(u64::from(now_secs) * 1000) {
            let Some(b) = self.slab.get_mut(slot, gen) else {
                continue;
            };
            if b.scheduled_at > now_secs {
                // A superseded entry: the binding's own one comes later. (When
                // both are due, whichever comes first does the work and the
                // other finds the binding gone or scheduled later.)
                continue;
            }
            if b.expires_at > now_secs {
                // Refreshed since: re-arm for the new expiry (lazy re-scheduling).
                b.scheduled_at = b.expires_at;
                let next = b.expires_at;
                self.arm(next, slot, gen);
                continue;
            }
            let b = self.release(slot, gen).expect("present above");
            let r = BindingRef {
                core: self.core,
                slot,
                gen,
            };
            if let Some(gone) = self.dir.remove_binding_hashed(b.aor, r) {
                if let Some(dev) = &gone.instance {
                    self.dir.clear_device(dev);
                }
            }
            self.stats.expired += 1;
            n += 1;
        }
        n
    }
}
