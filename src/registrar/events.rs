//! Registration events for `webhooks.url` (`registration.added`,
//! `refreshed`, `removed`, `expired`): the registrar reports each binding
//! change it makes; [`crate::hooks::EventHooks`] decides whether anyone
//! wants it and writes the JSON.

use std::sync::Arc;

use super::{Arrival, ContactView, Registrar};
use crate::cluster::{BindingChange, Change, RecordId};
use crate::hooks::{EventHooks, EventKind, RegistrationEvent};
use crate::sip::{HeaderName, Message};

/// The REGISTER a change came from.
pub(super) struct Origin<'a, 'm> {
    pub(super) msg: &'a Message<'m>,
    pub(super) at: Arrival,
    /// (Call-ID hash, CSeq) when this request changed the stored record
    /// (not a retransmission): the bindings it renewed carry them.
    pub(super) applied: Option<(u64, u32)>,
}

impl Origin<'_, '_> {
    /// Whether `c` is a binding this request renewed.
    pub(super) fn renewed(&self, c: &ContactView) -> bool {
        self.applied == Some((c.call_id_hash, c.cseq))
    }
}

impl Registrar {
    /// `[cluster]` on: publish this core's binding changes through `p`.
    pub fn set_cluster(&mut self, p: Option<crate::cluster::Publish>) {
        self.cluster = p;
    }

    /// `[cluster]` on: bindings restored from disk at start (`ids` as
    /// [`Registrar::restore`] gave them) are published as if just
    /// registered, since their records may have expired in Redis while the
    /// node was down. `now_secs` on the runtime's clock.
    pub fn publish_restored(
        &self,
        list: &[crate::persist::Restored],
        ids: &[Option<(u32, u32)>],
        now_secs: u32,
    ) {
        let Some(p) = &self.cluster else {
            return;
        };
        for (r, id) in list.iter().zip(ids) {
            let Some((slot, gen)) = *id else { continue };
            let Some(aor) = self.dir.aor_name(r.aor) else {
                continue;
            };
            let me = super::BindingRef {
                core: self.core,
                slot,
                gen,
            };
            for c in self.dir.lookup(&aor, now_secs).iter() {
                if c.binding != me {
                    continue;
                }
                let id = RecordId::for_contact(&aor, c.instance.as_deref(), c.reg_id, &c.contact);
                let change = Change::Set {
                    core: self.core,
                    slot,
                    gen,
                    expires_in: r.expires_at.saturating_sub(now_secs),
                    restored: true,
                };
                p.send(BindingChange { id, change });
            }
        }
    }

    /// Sends this core's registration events as `hooks` says (none by default).
    pub fn set_event_hooks(&mut self, hooks: Arc<EventHooks>) {
        self.hooks = hooks;
    }

    /// Queues a `kind` event for binding `c` of `aor`, if it is wanted,
    /// and hands the change to the cluster's publisher when `[cluster]` is
    /// on; `origin` is the REGISTER that made it (none for an expiry).
    pub(super) fn report(
        &mut self,
        kind: EventKind,
        aor: &str,
        c: &ContactView,
        origin: Option<&Origin<'_, '_>>,
    ) {
        // The cluster hears of the same changes as the webhooks.
        if let Some(p) = &self.cluster {
            let change = match (kind, origin) {
                (EventKind::RegistrationAdded | EventKind::RegistrationRefreshed, Some(o)) => {
                    Change::Set {
                        core: self.core,
                        slot: c.binding.slot,
                        gen: c.binding.gen,
                        expires_in: c.expires_at.saturating_sub(o.at.now_secs),
                        restored: false,
                    }
                }
                _ => Change::Remove,
            };
            let id = RecordId::for_contact(aor, c.instance.as_deref(), c.reg_id, &c.contact);
            p.send(BindingChange { id, change });
        }
        if !self.hooks.wants(kind) {
            return;
        }
        let expires = match (kind, origin) {
            (EventKind::RegistrationAdded | EventKind::RegistrationRefreshed, Some(o)) => {
                c.expires_at.saturating_sub(o.at.now_secs)
            }
            _ => 0,
        };
        let msg = origin.map(|o| o.msg);
        let ev = RegistrationEvent {
            kind,
            aor,
            contact: &c.contact,
            source: c.source,
            expires,
            user_agent: msg.and_then(|m| m.header(HeaderName::UserAgent)),
            instance: c.instance.as_deref(),
            core: self.core,
        };
        self.http.extend(self.hooks.registration(&ev, msg));
    }
}
