//! Binding expiry on the core that owns the binding: one `Timer::Expiry`
//! per binding on the core's one wheel, moved later lazily (a refresh only
//! updates the binding; the due entry re-arms it), earlier by an entry of
//! its own. The registrar never cancels an expiry timer, so it needs no
//! handles: it asks for timers through [`Registrar::expiry_arms`] and is
//! handed each one back when it is due. An entry whose binding is scheduled
//! later is a superseded one.

use super::{BindingRef, Registrar};
use crate::hooks::EventKind;

impl Registrar {
    /// Arms the expiry timer of a binding this core owns.
    pub(super) fn arm(&mut self, at_secs: u32, slot: u32, gen: u32) {
        self.expiry_arms
            .push((u64::from(at_secs) * 1000, slot, gen));
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

    /// The expiry timer of binding (`slot`, `gen`) is due at `now_secs`:
    /// removes the binding if its time has come (true), re-arms it if it
    /// was refreshed since.
    pub fn on_expiry(&mut self, slot: u32, gen: u32, now_secs: u32) -> bool {
        let Some(b) = self.slab.get_mut(slot, gen) else {
            return false;
        };
        if b.scheduled_at > now_secs {
            // A superseded entry: the binding's own one comes later. (When
            // both are due, whichever comes first does the work and the
            // other finds the binding gone or scheduled later.)
            return false;
        }
        if b.expires_at > now_secs {
            // Refreshed since: re-arm for the new expiry (lazy re-scheduling).
            b.scheduled_at = b.expires_at;
            let next = b.expires_at;
            self.arm(next, slot, gen);
            return false;
        }
        let b = self.release(slot, gen).expect("present above");
        let r = BindingRef {
            core: self.core,
            slot,
            gen,
        };
        // The name goes with the AOR's last binding: read it first (the
        // webhook and the cluster's record both need it).
        let name = (self.hooks.wants(EventKind::RegistrationExpired) || self.cluster.is_some())
            .then(|| self.dir.aor_name(b.aor))
            .flatten();
        if let Some(gone) = self.dir.remove_binding_hashed(b.aor, r) {
            if let Some(dev) = &gone.instance {
                self.dir.clear_device(dev);
            }
            if let Some(aor) = name {
                self.report(EventKind::RegistrationExpired, &aor, &gone, None);
            }
        }
        self.stats.expired += 1;
        true
    }

    /// `[cluster]`: another node took binding `b`'s ownership record over
    /// (the device registered there since): drops it like an unregister
    /// (its NAT path loses a binding, so its keepalive stops with the last
    /// one; `registration.removed` is reported, the webhook format has no
    /// reason field). False when it is gone already.
    pub fn evict(&mut self, b: BindingRef) -> bool {
        if b.core != self.core {
            return false;
        }
        let Some(held) = self.release(b.slot, b.gen) else {
            return false;
        };
        let name = self.dir.aor_name(held.aor);
        if let Some(gone) = self.dir.remove_binding_hashed(held.aor, b) {
            if let Some(dev) = &gone.instance {
                self.dir.clear_device(dev);
            }
            if let Some(aor) = name {
                self.report(EventKind::RegistrationRemoved, &aor, &gone, None);
            }
        }
        true
    }
}
