//! The registrar (RFC 3261 §10.3, RFC 5626 instances, RFC 3327 Path), one per
//! core, sans-IO: a REGISTER and `now` in, the response bytes out. Bindings
//! live in the shared [`Directory`]; the core that received a binding's
//! REGISTER owns it and expires it.

pub mod auth;
pub mod binding;
pub mod directory;
pub mod packed;

use std::net::SocketAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::nat::PathKey;
use crate::sip::ids::IdGen;
use crate::sip::scan::{is_token_str, unquote};
use crate::sip::writer::{response_to_checked, Decimal, Writer};
use crate::sip::{Announced, Checked, CheckedContact, Contact, HeaderName, Host, Message, Scheme};
use crate::timer::TimerWheel;
use auth::{Authenticator, Verdict};
pub use binding::{flags, BindingRef, ContactView};
use binding::{LocalBinding, Slab};
pub use directory::{AorRecord, Decision, DeviceEntry, Directory, Target};

/// A binding on this core started (`added`) or stopped using a NAT path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathEvent {
    pub path: PathKey,
    pub slot: u32,
    pub gen: u32,
    pub added: bool,
}

/// Registrar policy, from the `[registrar]` configuration section.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
    /// Domains served; empty means any.
    pub domains: Vec<Box<str>>,
    /// Contact parameter that names a device when it has no `+sip.instance`.
    pub device_id_param: Option<Box<str>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts: 10,
            domains: Vec::new(),
            device_id_param: None,
        }
    }
}

/// Option tags tether understands in Require.
pub const SUPPORTED: &str = "path, outbound";

/// Where and when a REGISTER arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub source: SocketAddr,
    /// Index of the local listen address it arrived on.
    pub local: u8,
    /// Seconds on the runtime clock (shared by all cores).
    pub now_secs: u32,
}

/// Counters (plain integers: only the owning core writes them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub registered: u64,
    pub refreshed: u64,
    pub unregistered: u64,
    pub expired: u64,
    pub challenged: u64,
    pub forbidden: u64,
    pub rejected: u64,
}

/// A rejection, as a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    Status(u16, &'static str),
    IntervalTooBrief,
}

/// What one REGISTER changed.
#[derive(Debug, Default)]
struct Changes {
    /// Contacts that left the AOR (unregistered, replaced by instance, or moved).
    removed: SmallVec<[ContactView; 1]>,
    /// The AOR's contacts after the change: the stored record's own list, moved.
    current: SmallVec<[ContactView; 1]>,
}

/// One contact of the request, ready to apply.
struct Op<'c, 'm> {
    contact: &'c CheckedContact<'m>,
    uri: &'m str,
    expires: u32,
    instance: Option<&'m str>,
    reg_id: Option<u32>,
}

/// The per-core registrar.
pub struct Registrar {
    core: u16,
    policy: Arc<Policy>,
    dir: Arc<Directory>,
    slab: Slab,
    /// Expiry timers: (expiry second, slot, generation), on the core's wheel.
    /// (slot, generation) of bindings this core owns, at their expiry. An
    /// entry whose binding is scheduled later is a superseded one.
    expiries: TimerWheel<(u32, u32)>,
    auth: Option<Authenticator>,
    call_id_hasher: foldhash::fast::FixedState,
    /// Bindings owned by other cores that this core replaced: the runtime
    /// tells their owners to free them ([`Registrar::forget`]).
    pub outbox: Vec<BindingRef>,
    /// NAT paths that gained (`true`) or lost (`false`) a binding on this
    /// core, for the keepalive's path table.
    pub path_events: Vec<PathEvent>,
    pub stats: Stats,
}

impl Registrar {
    pub fn new(
        core: u16,
        policy: Arc<Policy>,
        dir: Arc<Directory>,
        auth: Option<Authenticator>,
    ) -> Registrar {
        Registrar {
            core,
            policy,
            dir,
            slab: Slab::default(),
            expiries: TimerWheel::new(0),
            auth,
            call_id_hasher: foldhash::fast::FixedState::with_seed(0x7e7e_7e7e),
            outbox: Vec::new(),
            path_events: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Makes room for `bindings` on this core up front (a deployment's
    /// `registrar.capacity` share): growing the slab later copies it and
    /// leaves the old copy's pages behind in the heap.
    pub fn reserve(&mut self, bindings: usize) {
        self.slab.reserve_slots(bindings);
    }

    /// Bindings this core owns.
    pub fn local_bindings(&self) -> usize {
        self.slab.live()
    }

    /// The earliest time (seconds) an expiry is due, for the poll timeout.
    pub fn next_expiry(&self) -> Option<u32> {
        self.expiries
            .next_deadline()
            .map(|ms| u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX))
    }

    /// Handles a validated REGISTER; writes the response into `out`.
    pub fn register<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        out: &mut Vec<u8>,
        ids: &mut IdGen,
    ) {
        let tag = ids.tag();
        match self.process(msg, checked, at) {
            Ok(changes) => {
                let mut w =
                    response_to_checked(out, msg, checked, 200, "OK", Some(&tag), Some(at.source));
                for c in &changes.current {
                    write_contact(&mut w, c, at.now_secs);
                }
                for p in msg.header_values(HeaderName::Path) {
                    w.header(HeaderName::Path, p);
                }
                w.header(HeaderName::Supported, SUPPORTED);
                w.finish(None);
            }
            Err(Reject::IntervalTooBrief) => {
                self.stats.rejected += 1;
                let mut w = response_to_checked(
                    out,
                    msg,
                    checked,
                    423,
                    "Interval Too Brief",
                    Some(&tag),
                    Some(at.source),
                );
                w.header_u32(HeaderName::MinExpires, self.policy.min_expires);
                w.finish(None);
            }
            Err(Reject::Status(401, reason)) => {
                self.stats.challenged += 1;
                let stale = reason == "Stale Nonce";
                let mut w = response_to_checked(
                    out,
                    msg,
                    checked,
                    401,
                    "Unauthorized",
                    Some(&tag),
                    Some(at.source),
                );
                if let Some(a) = &self.auth {
                    a.write_challenge(&mut w, stale, u64::from(at.now_secs), at.source);
                }
                w.finish(None);
            }
            Err(Reject::Status(code, reason)) => {
                if code == 403 {
                    self.stats.forbidden += 1;
                } else {
                    self.stats.rejected += 1;
                }
                let mut w = response_to_checked(
                    out,
                    msg,
                    checked,
                    code,
                    reason,
                    Some(&tag),
                    Some(at.source),
                );
                if code == 420 {
                    for t in checked.require.iter().filter(|t| !is_supported(t)) {
                        w.header(HeaderName::Unsupported, t);
                    }
                }
                w.finish(None);
            }
        }
    }

    fn process<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
    ) -> Result<Changes, Reject> {
        // Step 2: extensions we do not support.
        if checked.require.iter().any(|t| !is_supported(t)) {
            return Err(Reject::Status(420, "Bad Extension"));
        }
        // Step 1: is the domain ours?
        let Some(ruri) = checked.request_uri else {
            return Err(Reject::Status(400, "Bad Request-URI"));
        };
        if !self.serves(ruri.host) {
            return Err(Reject::Status(404, "Domain Not Served"));
        }
        let to_uri = checked.to.uri;
        let (Some(user), Some(host)) = (to_uri.user, to_uri.host) else {
            return Err(Reject::Status(404, "Not Found"));
        };
        if !matches!(to_uri.scheme, Scheme::Sip | Scheme::Sips) {
            return Err(Reject::Status(404, "Not Found"));
        }
        // Step 3: authentication, and the user may only register its own AOR.
        if let Some(a) = &mut self.auth {
            match a.check(msg, checked, at.source, u64::from(at.now_secs)) {
                Verdict::Authenticated(name) => {
                    // User parts are case-sensitive (RFC 3261 §19.1.4).
                    if name != user {
                        return Err(Reject::Status(403, "Forbidden"));
                    }
                }
                Verdict::Challenge { stale: false } => {
                    return Err(Reject::Status(401, "Unauthorized"))
                }
                Verdict::Challenge { stale: true } => {
                    return Err(Reject::Status(401, "Stale Nonce"))
                }
                Verdict::Forbidden => return Err(Reject::Status(403, "Forbidden")),
                Verdict::Malformed => return Err(Reject::Status(400, "Bad Authorization Header")),
            }
        }
        let aor = canonical_aor(user, host);
        let header_expires = checked.expires;
        let cseq = checked.cseq.seq;
        let call_id_hash = std::hash::BuildHasher::hash_one(&self.call_id_hasher, checked.call_id);
        let contacts = &checked.contacts;
        if contacts.is_empty() {
            // A query: list the current bindings.
            let current = self.dir.with_aor(&aor, |r| {
                r.map(|r| {
                    r.contacts
                        .iter()
                        .filter(|c| c.expires_at > at.now_secs)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default()
            });
            return Ok(Changes {
                removed: SmallVec::new(),
                current,
            });
        }
        if contacts.iter().any(|c| matches!(c.contact, Contact::Star)) {
            // Step 6: `*` only alone and only with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(Reject::Status(400, "Invalid Contact *"));
            }
            return self.remove_all(&aor, call_id_hash, cseq);
        }

        let mut ops: SmallVec<[Op<'_, 'm>; 4]> = SmallVec::new();
        let mut too_brief = false;
        for c in contacts {
            let e = c
                .expires
                .or(header_expires)
                .unwrap_or(self.policy.default_expires);
            if e != 0 && e < self.policy.min_expires {
                too_brief = true;
            }
            let addr = c.contact.addr().expect("not a star");
            let instance = c.contact.instance().or_else(|| {
                let p = self.policy.device_id_param.as_deref()?;
                addr.param(p).flatten().map(unquote)
            });
            ops.push(Op {
                contact: c,
                uri: addr.uri_raw,
                expires: e.min(self.policy.max_expires),
                instance,
                reg_id: c.reg_id,
            });
        }
        if too_brief {
            return Err(Reject::IntervalTooBrief);
        }

        // Slots for contacts that may become new bindings here; unused ones are released.
        let mut reserved: SmallVec<[(u32, u32); 4]> = SmallVec::new();
        for op in &ops {
            if op.expires > 0 {
                reserved.push(self.slab.reserve());
            }
        }
        let template = self.template(msg, checked, at, call_id_hash, cseq);
        let core = self.core;
        let policy = self.policy.clone();
        let mut replaced = false;
        let (result, stored) = self.dir.update_then(&aor, |mut next| {
            // Step 7, against the record as stored, each binding once (a
            // contact listed twice is checked at its first mention): the
            // same Call-ID must come with a higher CSeq. An equal one is
            // this request again (its 200 was lost): a server transaction
            // would re-send that 200, so answer with the current state and
            // change nothing.
            let mut seen: SmallVec<[usize; 4]> = SmallVec::new();
            for op in &ops {
                let Some(i) = next.contacts.iter().position(|c| same_binding(c, op)) else {
                    continue;
                };
                if seen.contains(&i) {
                    continue;
                }
                seen.push(i);
                let old = &next.contacts[i];
                if old.call_id_hash == call_id_hash && cseq == old.cseq {
                    return Decision::Keep(Ok(Changes {
                        removed: SmallVec::new(),
                        current: next.contacts,
                    }));
                }
                if old.call_id_hash == call_id_hash && cseq < old.cseq {
                    return Decision::Keep(Err(Reject::Status(400, "Out of Order CSeq")));
                }
            }
            let mut changes = Changes::default();
            let mut fresh = reserved.iter();
            for op in &ops {
                let existing = next.contacts.iter().position(|c| same_binding(c, op));
                if op.expires == 0 {
                    if let Some(i) = existing {
                        changes.removed.push(next.contacts.remove(i));
                    }
                    continue;
                }
                let &(slot, gen) = fresh.next().expect("one reserved slot per live contact");
                let mut view = template.clone();
                view.contact = op.uri.into();
                view.expires_at = at.now_secs.saturating_add(op.expires);
                view.q = op.contact.q;
                // Share the stored instance string when the device refreshes.
                view.instance = existing
                    .and_then(|i| next.contacts[i].instance.clone())
                    .or_else(|| op.instance.map(Arc::from));
                view.reg_id = op.reg_id;
                view.scope = op
                    .contact
                    .contact
                    .addr()
                    .and_then(|a| a.param("scope").flatten())
                    .map(unquote)
                    .filter(|s| is_token_str(s))
                    .map(Into::into);
                view.flags |= nat_flag(op, at.source);
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
                        if next.contacts.len() >= policy.max_contacts {
                            return Decision::Keep(Err(Reject::Status(403, "Too Many Contacts")));
                        }
                        view.binding = BindingRef { core, slot, gen };
                        next.contacts.push(view);
                    }
                }
            }
            // `current` is filled from the stored record below, not copied here.
            replaced = true;
            Decision::Replace(next, Ok(changes))
        });
        let result = match (result, stored) {
            (Ok(mut changes), Some(rec)) => {
                changes.current = rec.contacts;
                Ok(changes)
            }
            // The directory kept the old record although this request changed
            // it (see `update_then`): nothing happened, so nothing is applied.
            (Ok(_), None) if replaced => Err(Reject::Status(500, "Server Internal Error")),
            (result, _) => result,
        };
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
                self.apply(&aor, &changes, &reserved);
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
    /// timers, release removed bindings this core owned, and keep the device
    /// index in step.
    fn apply(&mut self, aor: &str, changes: &Changes, reserved: &[(u32, u32)]) {
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
                        path: PathKey::new(c.local, c.source),
                    },
                );
                self.path_events.push(PathEvent {
                    path: PathKey::new(c.local, c.source),
                    slot,
                    gen,
                    added: true,
                });
                self.arm(c.expires_at, slot, gen);
                self.stats.registered += 1;
                if let Some(dev) = &c.instance {
                    self.dir.set_device(dev, aor);
                }
            } else if let Some(b) = self.slab.get_mut(slot, gen) {
                // A refresh from a new NAT mapping moves the binding to that path.
                let path = PathKey::new(c.local, c.source);
                if b.path != path {
                    let old = std::mem::replace(&mut b.path, path);
                    self.path_events.push(PathEvent {
                        path: old,
                        slot,
                        gen,
                        added: false,
                    });
                    self.path_events.push(PathEvent {
                        path,
                        slot,
                        gen,
                        added: true,
                    });
                }
                let Some(b) = self.slab.get_mut(slot, gen) else {
                    continue;
                };
                if b.expires_at != c.expires_at {
                    b.expires_at = c.expires_at;
                    self.stats.refreshed += 1;
                    // Timers only move later lazily; an earlier expiry needs its own entry.
                    if c.expires_at < b.scheduled_at {
                        b.scheduled_at = c.expires_at;
                        self.expiries
                            .insert(u64::from(c.expires_at) * 1000, (slot, gen));
                    }
                }
            }
        }
    }

    /// `Contact: *` with `Expires: 0`: removes every binding of the AOR,
    /// unless one of them was made by this Call-ID with a CSeq not lower.
    fn remove_all(&mut self, aor: &str, call_id_hash: u64, cseq: u32) -> Result<Changes, Reject> {
        let result = self.dir.update(aor, |rec| {
            if rec
                .contacts
                .iter()
                .any(|c| c.call_id_hash == call_id_hash && cseq <= c.cseq)
            {
                return Decision::Keep(Err(Reject::Status(400, "Out of Order CSeq")));
            }
            let changes = Changes {
                removed: rec.contacts.into_iter().collect(),
                current: SmallVec::new(),
            };
            Decision::Replace(AorRecord::default(), Ok(changes))
        });
        let changes = result?;
        self.apply(aor, &changes, &[]);
        Ok(changes)
    }

    /// Frees a filled slot and reports its path as one binding lighter.
    fn release(&mut self, slot: u32, gen: u32) -> Option<LocalBinding> {
        let b = self.slab.release(slot, gen)?;
        self.path_events.push(PathEvent {
            path: b.path,
            slot,
            gen,
            added: false,
        });
        Some(b)
    }

    /// Arms the expiry timer of a binding this core owns.
    fn arm(&mut self, at_secs: u32, slot: u32, gen: u32) {
        self.expiries.insert(u64::from(at_secs) * 1000, (slot, gen));
    }

    /// Marks bindings this core holds (slot, generation) reachable or not:
    /// those on a NAT path that died, or answered again. The keepalive's path
    /// table says which bindings a path carries, so this touches only them.
    pub fn mark_bindings(&mut self, bindings: &[(u32, u32)], reachable: bool) -> usize {
        let core = self.core;
        let mut n = 0;
        for &(slot, gen) in bindings {
            let Some(b) = self.slab.get_mut(slot, gen) else {
                continue;
            };
            let r = BindingRef { core, slot, gen };
            set_contact_flag_hashed(&self.dir, b.aor, r, binding::flags::UNREACHABLE, !reachable);
            n += 1;
        }
        n
    }

    /// Frees the slot of a binding another core replaced (it is already out
    /// of the directory).
    pub fn forget(&mut self, b: BindingRef) {
        if b.core == self.core {
            self.release(b.slot, b.gen);
        }
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

    fn serves(&self, host: Option<Host<'_>>) -> bool {
        if self.policy.domains.is_empty() {
            return true;
        }
        match host {
            Some(Host::Name(h)) => self
                .policy
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(h)),
            Some(other) => {
                let s = other.to_string();
                self.policy.domains.iter().any(|d| **d == *s)
            }
            None => false,
        }
    }
}

fn is_supported(tag: &str) -> bool {
    tag.eq_ignore_ascii_case("path") || tag.eq_ignore_ascii_case("outbound")
}

/// Sets (`on`) or clears one [`flags`] bit of a binding in the directory;
/// false when the binding is no longer there.
pub fn set_contact_flag(dir: &Directory, aor: &str, b: BindingRef, flag: u8, on: bool) -> bool {
    dir.update(aor, |rec| flagged(rec, b, flag, on))
}

/// [`set_contact_flag`] for an AOR known by its hash.
pub fn set_contact_flag_hashed(
    dir: &Directory,
    aor: u64,
    b: BindingRef,
    flag: u8,
    on: bool,
) -> bool {
    dir.update_hashed(aor, |rec| flagged(rec, b, flag, on))
        .unwrap_or(false)
}

fn flagged(rec: AorRecord, b: BindingRef, flag: u8, on: bool) -> Decision<bool> {
    let Some(i) = rec.contacts.iter().position(|c| c.binding == b) else {
        return Decision::Keep(false);
    };
    let mut next = rec;
    if on {
        next.contacts[i].flags |= flag;
    } else {
        next.contacts[i].flags &= !flag;
    }
    Decision::Replace(next, true)
}

/// The AOR key: `user@host`, host lowercased (RFC 3261 §10.3 step 5; user
/// parts are case-sensitive, so they stay as written).
pub fn canonical_aor(user: &str, host: Host<'_>) -> String {
    let mut s = String::with_capacity(user.len() + 32);
    s.push_str(user);
    s.push('@');
    match host {
        Host::Name(h) => {
            for c in h.chars() {
                s.push(c.to_ascii_lowercase());
            }
        }
        other => s.push_str(&other.to_string()),
    }
    s
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

/// One Contact of a 200: the URI, its remaining expiry, and the RFC 5626
/// instance and reg-id when the binding has them.
fn write_contact(w: &mut Writer<'_>, c: &ContactView, now_secs: u32) {
    let secs = Decimal::new(c.expires_at.saturating_sub(now_secs));
    let reg = c.reg_id.map(Decimal::new);
    let mut parts: SmallVec<[&str; 8]> = SmallVec::new();
    parts.extend_from_slice(&["<", &c.contact, ">;expires=", secs.as_str()]);
    if let Some(inst) = &c.instance {
        parts.extend_from_slice(&[";+sip.instance=\"<", inst, ">\""]);
        if let Some(reg) = &reg {
            parts.extend_from_slice(&[";reg-id=", reg.as_str()]);
        }
    }
    w.header_parts("Contact", &parts);
}

#[cfg(test)]
mod tests;
