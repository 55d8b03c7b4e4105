//! The registrar (RFC 3261 §10.3, RFC 5626 instances, RFC 3327 Path), one per
//! core, sans-IO: a REGISTER and `now` in, the response bytes out. Bindings
//! live in the shared [`Directory`]; the core that received a binding's
//! REGISTER owns it and expires it.
//!
//! A REGISTER goes through `steps.rs` (the §10.3 steps in order), whose
//! step 7 changes the stored bindings in `update.rs`, and is answered by
//! `response.rs`; `expiry.rs` holds the bindings' expiry timers.
//!
//! Steps 3 and 4 (who may register) take one of three ways, after a
//! capability token (`token.rs`) when the REGISTER carries one: none, SIP
//! digest (`auth.rs`), or an HTTP callback (`callout.rs`). The callback
//! cannot be waited for here: [`Registrar::register_as`] returns
//! [`Outcome::Callout`] and the endpoint parks the REGISTER, then runs it
//! again with the service's [`Authz`].

pub mod auth;
pub mod auth_config;
pub mod binding;
mod callout;
pub mod directory;
mod events;
mod expiry;
pub mod packed;
mod response;
mod steps;
pub mod token;
mod update;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::addr::PathKey;
use crate::sip::ids::IdGen;
use crate::sip::{Checked, Host, Message};
use auth::Authenticator;
pub use auth_config::{AuthMode, HttpAuth, OnTimeout};
pub use binding::{flags, BindingRef, ContactView};
use binding::{LocalBinding, Slab};
pub use directory::{AorRecord, Decision, DeviceEntry, Directory, Target};
pub(crate) use steps::is_supported;

/// What the NAT path table is to learn of binding (`slot`, `gen`) on this
/// core. The registrar keeps a binding's path as the index of its record in
/// that table (the record has the key), which the endpoint hands back with
/// [`Registrar::set_path`] after each `Uses`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEvent {
    /// The binding's REGISTER came over the path of `key`: a new binding
    /// (`was` is `None`), or a refresh of one on the path at index `was`,
    /// which moves to `key`'s path if that is another one (a new NAT
    /// mapping).
    Uses {
        key: PathKey,
        slot: u32,
        gen: u32,
        was: Option<u32>,
    },
    /// The binding left the path at index `path` (expired, removed).
    Left { path: u32, slot: u32, gen: u32 },
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
    /// Wall time, Unix seconds, for capability tokens' `exp` and `nbf`
    /// (the runtime tells the endpoint its clock's Unix offset).
    pub now_unix: u64,
}

/// How a REGISTER's authorization stands when it is (re-)run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authz {
    /// Not decided: the registrar checks a token, a digest, its cache, or
    /// asks for a callout ([`Outcome::Callout`]).
    Ask,
    /// The authorization service said yes: register, and remember it for
    /// `auth.http.cache_s`.
    Granted,
    /// No usable answer and `on_timeout = "accept"`: register, but do not
    /// remember it, so the next refresh asks again.
    Assumed,
    /// The service said no: 403.
    Denied,
    /// No usable answer and `on_timeout = "reject"`, or too many waiting:
    /// 503 with this Retry-After (s).
    Unavailable { retry_after: u32 },
}

/// What [`Registrar::register_as`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The response is in the buffer.
    Answered,
    /// Nothing was written: this REGISTER needs the authorization service.
    /// POST this JSON body to `auth.http.url`, then run it again with the
    /// answer.
    Callout(Vec<u8>),
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
    /// REGISTERs let in by a valid capability token.
    pub token_accepted: u64,
    /// REGISTERs refused (403) for their token.
    pub token_rejected: u64,
    /// REGISTERs let in without a callout: refreshes of bindings the
    /// service authorized within `auth.http.cache_s`.
    pub http_cached: u64,
    /// Wrong digest credentials, another user's AOR, or a refused token
    /// (the limits count them against the source).
    pub auth_failures: u64,
    /// REGISTERs refused for `limits.max_bindings_per_source`.
    pub source_full: u64,
}

/// Why a REGISTER was refused; each is one status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    /// Step 1: the Request-URI is missing (a REGISTER always has one).
    BadRequestUri,
    /// Step 1: the Request-URI's domain is not one of `Policy::domains`.
    DomainNotServed,
    /// Step 5: the To URI is no SIP or SIPS URI with a user part.
    NotFound,
    /// Step 2: Require names an option tag tether does not support.
    BadExtension,
    /// Step 3: no (valid) credentials; `stale` when they were right but the
    /// nonce was old or replayed, so the UA retries without asking the user.
    Unauthorized { stale: bool },
    /// Steps 3 and 4: wrong credentials, or another user's AOR.
    Forbidden,
    /// Steps 3 and 4: the capability token does not let this REGISTER in.
    Token(token::TokenError),
    /// Steps 3 and 4: the authorization service said no.
    Refused,
    /// The authorization service could not answer, or too many REGISTERs
    /// wait on it: come back in `retry_after` s.
    Unavailable { retry_after: u32 },
    /// Not a refusal: the authorization service must be asked first.
    Callout,
    /// Step 3: the Authorization header lacks what a digest needs.
    BadAuthorization,
    /// Step 6: `*` with other contacts or without `Expires: 0`.
    InvalidStar,
    /// Step 7: an expiry below `Policy::min_expires`.
    IntervalTooBrief,
    /// Step 7: a lower CSeq than a binding of the same Call-ID holds.
    OutOfOrderCSeq,
    /// Step 7: the AOR would exceed `Policy::max_contacts`.
    TooManyContacts,
    /// Step 7: the source address holds `limits.max_bindings_per_source`.
    SourceFull,
    /// The directory could not store the changed record.
    Internal,
}

impl Reject {
    fn code(self) -> u16 {
        match self {
            Reject::BadRequestUri
            | Reject::BadAuthorization
            | Reject::InvalidStar
            | Reject::OutOfOrderCSeq => 400,
            Reject::Unauthorized { .. } => 401,
            Reject::Forbidden
            | Reject::TooManyContacts
            | Reject::SourceFull
            | Reject::Token(_)
            | Reject::Refused => 403,
            Reject::DomainNotServed | Reject::NotFound => 404,
            Reject::BadExtension => 420,
            Reject::IntervalTooBrief => 423,
            Reject::Internal => 500,
            Reject::Unavailable { .. } | Reject::Callout => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Reject::BadRequestUri => "Bad Request-URI",
            Reject::DomainNotServed => "Domain Not Served",
            Reject::NotFound => "Not Found",
            Reject::BadExtension => "Bad Extension",
            Reject::Unauthorized { .. } => "Unauthorized",
            Reject::Forbidden | Reject::Refused => "Forbidden",
            Reject::Token(e) => e.reason(),
            Reject::BadAuthorization => "Bad Authorization Header",
            Reject::InvalidStar => "Invalid Contact *",
            Reject::IntervalTooBrief => "Interval Too Brief",
            Reject::OutOfOrderCSeq => "Out of Order CSeq",
            Reject::TooManyContacts => "Too Many Contacts",
            Reject::SourceFull => "Too Many Registrations From This Address",
            Reject::Internal => "Server Internal Error",
            Reject::Unavailable { .. } | Reject::Callout => "Service Unavailable",
        }
    }
}

/// The per-core registrar.
pub struct Registrar {
    core: u16,
    policy: Arc<Policy>,
    dir: Arc<Directory>,
    slab: Slab,
    /// Expiry timers to arm on the core's wheel: (at ms, slot, generation)
    /// of bindings this core owns. The endpoint takes them after each call
    /// and hands the due ones back to [`Registrar::on_expiry`].
    pub expiry_arms: Vec<(u64, u32, u32)>,
    auth: Option<Authenticator>,
    /// Capability-token secrets (`auth.token.secrets`), when set.
    tokens: Option<Arc<token::TokenKeys>>,
    /// `auth.mode = "http"`: the callback's settings and the cache of
    /// bindings it authorized.
    gate: Option<callout::Gate>,
    call_id_hasher: foldhash::fast::FixedState,
    /// Bindings owned by other cores that this core replaced: the runtime
    /// tells their owners to free them ([`Registrar::forget`]).
    pub(crate) outbox: Vec<BindingRef>,
    /// What the keepalive's path table is to learn of this core's bindings
    /// (see [`PathEvent`]); the endpoint drains it after each request.
    pub path_events: Vec<PathEvent>,
    pub(crate) stats: Stats,
    /// Which registration events `[webhooks]` wants.
    hooks: Arc<crate::hooks::EventHooks>,
    /// Registration events to POST; the endpoint moves them to its HTTP
    /// outbox after each call.
    pub http: Vec<crate::hooks::Request>,
    /// `[cluster]`: where this core publishes its binding changes.
    cluster: Option<crate::cluster::Publish>,
    /// New bindings the next REGISTER's source may still add on this core
    /// (`limits.max_bindings_per_source`); set before each REGISTER.
    source_room: u32,
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
            expiry_arms: Vec::new(),
            auth,
            tokens: None,
            gate: None,
            call_id_hasher: foldhash::fast::FixedState::with_seed(0x7e7e_7e7e),
            outbox: Vec::new(),
            path_events: Vec::new(),
            stats: Stats::default(),
            hooks: crate::hooks::EventHooks::off(),
            http: Vec::new(),
            cluster: None,
            source_room: u32::MAX,
        }
    }

    /// How many new bindings the next REGISTER's source address may add
    /// (`u32::MAX`: no cap). Refreshes and moves are never refused for it.
    pub fn set_source_room(&mut self, room: u32) {
        self.source_room = room;
    }

    /// Lets REGISTERs with a capability token signed by one of `keys` in
    /// (in every mode).
    pub fn with_tokens(mut self, keys: Option<Arc<token::TokenKeys>>) -> Registrar {
        self.tokens = keys;
        self
    }

    /// `auth.mode = "http"`: a new registration asks the service first.
    /// `seed` keys the cache's hashes.
    pub fn with_http(mut self, http: Option<HttpAuth>, seed: u64) -> Registrar {
        self.gate = http.map(|cfg| callout::Gate::new(cfg, seed));
        self
    }

    /// `auth.mode = "http"`'s settings, when that is the mode.
    pub fn http_auth(&self) -> Option<&HttpAuth> {
        self.gate.as_ref().map(|g| &g.cfg)
    }

    /// Makes room for `bindings` on this core up front (a deployment's
    /// `registrar.capacity` share): growing the slab later copies it and
    /// leaves the old copy's pages behind in the heap.
    pub fn reserve(&mut self, bindings: usize) {
        self.slab.reserve_slots(bindings);
    }

    /// The digest authenticator, in `auth.mode = "digest"` (the proxy's 407
    /// challenges share its nonces and replay records).
    pub fn authenticator(&mut self) -> Option<&mut Authenticator> {
        self.auth.as_mut()
    }

    /// The core this registrar belongs to.
    pub fn core(&self) -> u16 {
        self.core
    }

    /// The shared location directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.dir
    }

    /// Bindings this core owns.
    pub fn local_bindings(&self) -> usize {
        self.slab.live()
    }

    /// Handles a validated REGISTER; writes the response into `out`
    /// (unless a callout is needed: see [`Registrar::register_as`]).
    pub fn register<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        out: &mut Vec<u8>,
        ids: &mut IdGen,
    ) -> Outcome {
        self.register_as(msg, checked, at, Authz::Ask, out, ids)
    }

    /// Handles a validated REGISTER whose authorization stands as `authz`;
    /// writes the response into `out`, or returns the callout to make.
    pub fn register_as<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        authz: Authz,
        out: &mut Vec<u8>,
        ids: &mut IdGen,
    ) -> Outcome {
        let result = self.process(msg, checked, at, authz);
        if let Err(Reject::Callout) = result {
            return Outcome::Callout(callout::body(msg, checked, at.source));
        }
        let tag = ids.tag();
        self.respond(msg, checked, at, &tag, result, out);
        Outcome::Answered
    }

    /// Answers a REGISTER `503` with `Retry-After` without running it (too
    /// many wait on the authorization service already).
    pub fn unavailable<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        retry_after: u32,
        out: &mut Vec<u8>,
        ids: &mut IdGen,
    ) {
        let tag = ids.tag();
        let result = Err(Reject::Unavailable { retry_after });
        self.respond(msg, checked, at, &tag, result, out);
    }

    /// Frees a filled slot and reports its path as one binding lighter.
    fn release(&mut self, slot: u32, gen: u32) -> Option<LocalBinding> {
        let (b, path) = self.slab.release(slot, gen)?;
        if path == binding::PATH_PENDING {
            // Its path was never named: the binding's `Uses` is still queued,
            // and the path table need not hear of it at all.
            self.path_events.retain(
                |e| !matches!(*e, PathEvent::Uses { slot: s, gen: g, .. } if (s, g) == (slot, gen)),
            );
        } else {
            self.path_events.push(PathEvent::Left { path, slot, gen });
        }
        Some(b)
    }

    /// A binding's REGISTER came over `key`: queues the path table's news.
    fn uses_path(&mut self, slot: u32, gen: u32, key: PathKey) {
        let was = match self.slab.path(slot, gen) {
            None => return,
            Some(binding::PATH_PENDING) => {
                // Its `Uses` is still queued: it now says this key.
                let queued = self.path_events.iter_mut().find_map(|e| match e {
                    PathEvent::Uses {
                        key: k,
                        slot: s,
                        gen: g,
                        ..
                    } if (*s, *g) == (slot, gen) => Some(k),
                    _ => None,
                });
                if let Some(k) = queued {
                    *k = key;
                    return;
                }
                None
            }
            Some(i) => Some(i),
        };
        self.path_events.push(PathEvent::Uses {
            key,
            slot,
            gen,
            was,
        });
    }

    /// The path table's index of the path binding (`slot`, `gen`) uses, in
    /// answer to a [`PathEvent::Uses`] or a restore.
    pub fn set_path(&mut self, slot: u32, gen: u32, path: u32) {
        self.slab.set_path(slot, gen, path);
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

    /// Heap bytes of this core's binding slab, for the memory benches.
    pub fn slab_heap_bytes(&self) -> usize {
        self.slab.heap_bytes()
    }

    /// Takes on bindings restored from disk ([`crate::persist`]): the
    /// directory already names them by this core and slots `0..`, so they
    /// fill an empty slab in order; their expiry timers are armed. Returns
    /// each one's (slot, generation), `None` for one that could not get the
    /// slot the directory names (the slab was not empty).
    pub fn restore(&mut self, list: &[crate::persist::Restored]) -> Vec<Option<(u32, u32)>> {
        let mut ids = Vec::with_capacity(list.len());
        self.slab.reserve_slots(list.len());
        for (i, r) in list.iter().enumerate() {
            let (slot, gen) = self.slab.reserve();
            if (slot, gen) != (i as u32, 1) {
                self.slab.release(slot, gen);
                tracing::error!(slot = i, "restored binding does not fit the slab: skipped");
                ids.push(None);
                continue;
            }
            self.slab.fill(
                slot,
                gen,
                LocalBinding {
                    aor: r.aor,
                    expires_at: r.expires_at,
                    scheduled_at: r.expires_at,
                },
            );
            self.arm(r.expires_at, slot, gen);
            ids.push(Some((slot, gen)));
        }
        ids
    }

    /// Frees the slot of a binding another core replaced (it is already out
    /// of the directory).
    pub fn forget(&mut self, b: BindingRef) {
        if b.core == self.core {
            self.release(b.slot, b.gen);
        }
    }
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod token_tests;
