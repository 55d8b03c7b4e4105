//! RFC 3261 §10.3 step 7, second part: the REGISTER's contacts applied to
//! the AOR's record in the shared directory (CSeq order, add, refresh,
//! remove, RFC 5626 flows), then the local side of that change on this core
//! (slots, timers, NAT path events, the device index). Step 6's removal of
//! every binding (`Contact: *`) is here too.

use std::net::SocketAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::binding::{self, LocalBinding};
use super::events::Origin;
use super::{AorRecord, Arrival, BindingRef, ContactView, Decision, PathEvent, Registrar, Reject};
use crate::addr::PathKey;
use crate::hooks::EventKind;
use crate::sip::{Announced, Checked, CheckedContact, HeaderName, Host, Message};

/// What one REGISTER changed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    /// Contacts that left the AOR (unregistered, replaced by instance, or moved).
    pub(super) removed: SmallVec<[ContactView; 1]>,
    /// The AOR's contacts after the change: the stored record's own list, moved.
    pub(super) current: SmallVec<[ContactView; 1]>,
}

/// One contact of the request, ready to apply.
pub(super) struct Op<'c, 'm> {
    pub(super) contact: &'c CheckedContact<'m>,
    pub(super) uri: &'m str,
    pub(super) expires: u32,
    pub(super) instance: Option<&'m str>,
    pub(super) reg_id: Option<u32>,
}

/// Everything the change to the stored record needs from the request.
struct Change<'a, 'c, 'm> {
    ops: &'a [Op<'c, 'm>],
    call_id_hash: u64,
    cseq: u32,
    /// One fresh slot per contact with a non-zero expiry.
    reserved: &'a [(u32, u32)],
    /// The fields every binding of this request shares.
    template: &'a ContactView,
    at: Arrival,
    core: u16,
    max_contacts: usize,
    /// New bindings the source may still add ([`Registrar::set_source_room`]).
    source_room: u32,
}

/// How the request's CSeq stands against the bindings it names (step 7).
enum CSeqOrder {
    /// Newer than every binding of the same Call-ID: apply it.
    Newer,
    /// This request again (its 200 was lost).
    Repeated,
    /// Lower: refused (400).
    Older,
}

impl Registrar {
    /// Applies the contacts to the AOR's record, then on this core.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_bindings(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        at: Arrival,
        aor: &str,
        call_id_hash: u64,
        cseq: u32,
        ops: &[Op<'_, '_>],
    ) -> Result<Changes, Reject> {
        // Slots for contacts that may become new bindings here; unused ones are released.
        let mut reserved: SmallVec<[(u32, u32); 4]> = SmallVec::new();
        for op in ops {
            if op.expires > 0 {
                reserved.push(self.slab.reserve());
            }
        }
        let template = self.template(msg, checked, at, call_id_hash, cseq);
        let change = Change {
            ops,
            call_id_hash,
            cseq,
            reserved: &reserved,
            template: &template,
            at,
            core: self.core,
            max_contacts: self.policy.max_contacts,
            source_room: self.source_room,
        };
        let mut replaced = false;
        let (result, stored) = self.dir.update_then(aor, |next| {
            let decision = change_record(next, &change);
            replaced = matches!(decision, Decision::Replace(..));
            decision
        });
        let result = match (result, stored) {
            (Ok(mut changes), Some(rec)) => {
                changes.current = rec.contacts;
                Ok(changes)
            }
            // The directory kept the old record although this request changed
            // it (see `update_then`): nothing happened, so nothing is applied.
            (Ok(_), None) if replaced => Err(Reject::Internal),
            (result, _) => result,
        };
        let core = self.core;
        let used = |slot: u32, gen: u32, changes: &Changes| {
            changes
                .current
                .iter()
                .any(|c| c.binding == BindingRef { core, slot, gen })
        };
        match result {
            Ok(changes) => {
                for &(slot, gen) in &reserved {
                    if !used(slot, gen, &changes) {
                        self.slab.release(slot, gen);
                    }
                }
                let origin = Origin {
                    msg,
                    at,
                    applied: replaced.then_some((call_id_hash, cseq)),
                };
                self.apply(aor, &changes, &reserved, &origin);
                Ok(changes)
            }
            Err(e) => {
                for &(slot, gen) in &reserved {
                    self.slab.release(slot, gen);
                }
                Err(e)
            }
        }
    }

    /// The fields every contact of this REGISTER shares.
    fn template(
        &self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        at: Arrival,
        call_id_hash: u64,
        cseq: u32,
    ) -> ContactView {
        // Recognised in Accept and Allow-Events by `validate`.
        let seen = checked.announced;
        let mut flags = 0;
        if seen.has(Announced::ACCEPTS_CONTACT_ME) || seen.has(Announced::ALLOWS_CONTACT_ME_EVENTS)
        {
            flags |= binding::flags::CONTACT_ME;
        }
        if seen.has(Announced::ACCEPTS_SDP) {
            flags |= binding::flags::SDP;
        }
        let mut paths = msg.header_values(HeaderName::Path).peekable();
        let path = paths.peek().is_some().then(|| {
            let v: Vec<&str> = paths.collect();
            v.join(", ").into_boxed_str()
        });
        ContactView {
            source: at.source,
            local: at.local,
            flags,
            path,
            call_id_hash,
            cseq,
            ..ContactView::default()
        }
    }

    /// Applies the local side of a directory change: fill new slots, refresh
    /// timers, release removed bindings this core owned, keep the device
    /// index in step, and report each change (registration events).
    fn apply(
        &mut self,
        aor: &str,
        changes: &Changes,
        reserved: &[(u32, u32)],
        origin: &Origin<'_, '_>,
    ) {
        for gone in &changes.removed {
            if let Some(dev) = &gone.instance {
                // Another flow (reg-id) of the same device may remain: point
                // the device index at it rather than forgetting the device.
                match changes
                    .current
                    .iter()
                    .find(|c| c.instance.as_deref() == Some(&**dev))
                {
                    Some(_) => self.dir.set_device(dev, aor),
                    None => self.dir.clear_device(dev),
                }
            }
            if gone.binding.core == self.core {
                self.release(gone.binding.slot, gone.binding.gen);
            } else {
                self.outbox.push(gone.binding);
            }
            self.stats.unregistered += 1;
            self.report(EventKind::RegistrationRemoved, aor, gone, Some(origin));
        }
        let core = self.core;
        for c in changes.current.iter().filter(|c| c.binding.core == core) {
            let BindingRef { slot, gen, .. } = c.binding;
            let is_new = reserved.contains(&(slot, gen));
            if is_new {
                self.slab.fill(
                    slot,
                    gen,
                    LocalBinding {
                        aor: self.dir.hash(aor),
                        expires_at: c.expires_at,
                        scheduled_at: c.expires_at,
                    },
                );
                self.path_events.push(PathEvent::Uses {
                    key: PathKey::new(c.local, c.source),
                    slot,
                    gen,
                    was: None,
                });
                self.arm(c.expires_at, slot, gen);
                self.stats.registered += 1;
                if let Some(dev) = &c.instance {
                    self.dir.set_device(dev, aor);
                }
                self.report(EventKind::RegistrationAdded, aor, c, Some(origin));
            } else if self.slab.get_mut(slot, gen).is_some() {
                // A refresh from a new NAT mapping moves the binding to that
                // path (the path table compares the keys).
                self.uses_path(slot, gen, PathKey::new(c.local, c.source));
                if self.refresh_expiry(slot, gen, c.expires_at) {
                    self.stats.refreshed += 1;
                }
                // Only the bindings this request named, not the AOR's others.
                if origin.renewed(c) {
                    self.report(EventKind::RegistrationRefreshed, aor, c, Some(origin));
                }
            }
        }
    }

    /// `Contact: *` with `Expires: 0`: removes every binding of the AOR,
    /// unless one of them was made by this Call-ID with a CSeq not lower.
    pub(super) fn remove_all(
        &mut self,
        msg: &Message<'_>,
        at: Arrival,
        aor: &str,
        call_id_hash: u64,
        cseq: u32,
    ) -> Result<Changes, Reject> {
        let result = self.dir.update(aor, |rec| {
            if rec
                .contacts
                .iter()
                .any(|c| c.call_id_hash == call_id_hash && cseq <= c.cseq)
            {
                return Decision::Keep(Err(Reject::OutOfOrderCSeq));
            }
            let changes = Changes {
                removed: rec.contacts.into_iter().collect(),
                current: SmallVec::new(),
            };
            Decision::Replace(AorRecord::default(), Ok(changes))
        });
        let changes = result?;
        let origin = Origin {
            msg,
            at,
            applied: None,
        };
        self.apply(aor, &changes, &[], &origin);
        Ok(changes)
    }
}

/// The request's contacts applied to the record as stored (it runs inside
/// the directory's update of the AOR).
fn change_record(mut next: AorRecord, c: &Change<'_, '_, '_>) -> Decision<Result<Changes, Reject>> {
    match cseq_order(&next, c) {
        CSeqOrder::Newer => {}
        // A server transaction would re-send the lost 200: answer with the
        // current state and change nothing.
        CSeqOrder::Repeated => {
            return Decision::Keep(Ok(Changes {
                removed: SmallVec::new(),
                current: next.contacts,
            }))
        }
        CSeqOrder::Older => return Decision::Keep(Err(Reject::OutOfOrderCSeq)),
    }
    let mut changes = Changes::default();
    let mut fresh = c.reserved.iter();
    let mut added = 0u32;
    for op in c.ops {
        let existing = next.contacts.iter().position(|b| same_binding(b, op));
        if op.expires == 0 {
            if let Some(i) = existing {
                changes.removed.push(next.contacts.remove(i));
            }
            continue;
        }
        let &(slot, gen) = fresh.next().expect("one reserved slot per live contact");
        let mut view = c.template.clone();
        view.contact = op.uri.into();
        view.expires_at = c.at.now_secs.saturating_add(op.expires);
        view.q = op.contact.q;
        // Share the stored instance string when the device refreshes.
        view.instance = existing
            .and_then(|i| next.contacts[i].instance.clone())
            .or_else(|| op.instance.map(Arc::from));
        view.reg_id = op.reg_id;
        view.scope = super::steps::scope_of(op.contact).map(Into::into);
        view.flags |= nat_flag(op, c.at.source);
        let core = c.core;
        match existing {
            // A refresh on the owning core keeps its binding.
            Some(i) if next.contacts[i].binding.core == core => {
                view.binding = next.contacts[i].binding;
                // A subscription lives on with the binding it refreshes.
                view.flags |= next.contacts[i].flags & binding::flags::SUBSCRIBED;
                next.contacts[i] = view;
            }
            // The device moved to another path (and core): the old
            // binding goes and the new one is appended, so the
            // latest flow of a device is its last contact (the
            // device index finds it by that).
            Some(i) => {
                view.binding = BindingRef { core, slot, gen };
                changes.removed.push(next.contacts.remove(i));
                next.contacts.push(view);
            }
            None => {
                if next.contacts.len() >= c.max_contacts {
                    return Decision::Keep(Err(Reject::TooManyContacts));
                }
                added += 1;
                if added > c.source_room {
                    return Decision::Keep(Err(Reject::SourceFull));
                }
                view.binding = BindingRef { core, slot, gen };
                next.contacts.push(view);
            }
        }
    }
    // `current` is filled from the stored record by the caller, not copied here.
    Decision::Replace(next, Ok(changes))
}

/// Step 7's ordering, against the record as stored, each binding once (a
/// contact listed twice is checked at its first mention): the same Call-ID
/// must come with a higher CSeq; an equal one is this request again.
fn cseq_order(rec: &AorRecord, c: &Change<'_, '_, '_>) -> CSeqOrder {
    let mut seen: SmallVec<[usize; 4]> = SmallVec::new();
    for op in c.ops {
        let Some(i) = rec.contacts.iter().position(|b| same_binding(b, op)) else {
            continue;
        };
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let old = &rec.contacts[i];
        if old.call_id_hash == c.call_id_hash && c.cseq == old.cseq {
            return CSeqOrder::Repeated;
        }
        if old.call_id_hash == c.call_id_hash && c.cseq < old.cseq {
            return CSeqOrder::Older;
        }
    }
    CSeqOrder::Newer
}

/// RFC 5626: the same instance and reg-id is the same flow; without an
/// instance, the same Contact URI is the same binding.
fn same_binding(c: &ContactView, op: &Op<'_, '_>) -> bool {
    match (&c.instance, op.instance) {
        (Some(a), Some(b)) => **a == *b && c.reg_id == op.reg_id,
        (None, None) => c.contact.eq_ignore_ascii_case(op.uri),
        _ => false,
    }
}

/// NATed when the Contact's host:port is not where the REGISTER came from.
fn nat_flag(op: &Op<'_, '_>, source: SocketAddr) -> u8 {
    let Some(a) = op.contact.contact.addr() else {
        return 0;
    };
    let uri = a.uri();
    let port = uri.port.unwrap_or(5060);
    let same = match (uri.host, source) {
        (Some(Host::V4(ip)), SocketAddr::V4(s)) => ip == *s.ip() && port == s.port(),
        (Some(Host::V6(ip)), SocketAddr::V6(s)) => ip == *s.ip() && port == s.port(),
        _ => false,
    };
    if same {
        0
    } else {
        binding::flags::NATED
    }
}
