//! `auth.mode = "http"` (seed 003): what the registrar needs to let an
//! HTTP service decide who registers: the JSON it POSTs, and the cache
//! that spares the service every refresh.
//!
//! The cache remembers, per (AOR, device, NAT source), when the service
//! last said yes. A REGISTER all of whose contacts were said yes to within
//! `auth.http.cache_s` registers at once; anything else (a new device, a
//! new source, a query, `Contact: *`) asks. A device's REGISTERs come from
//! one source, so they reach one core and a per-core cache is enough. The
//! service's yes dates from its answer, not from the refreshes it spared:
//! a device is asked again at least every `cache_s`, so revoking it takes
//! effect within that time.

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::steps::instance_of;
use super::update::Op;
use super::{Arrival, HttpAuth};
use crate::sip::{Checked, Contact, HeaderName, Message};

/// Entries a core's cache holds at most: beyond, new ones are not
/// remembered (those devices are asked again: safe, only slower).
const MAX_ENTRIES: usize = 1 << 21;

/// How often expired entries are swept out (s).
const PURGE_EVERY_S: u32 = 10;

/// The HTTP mode's per-core state.
pub(super) struct Gate {
    pub(super) cfg: HttpAuth,
    /// Key of (AOR, device, source) → when the service said yes (s on the
    /// runtime clock).
    said_yes: hashbrown::HashMap<u64, u32>,
    /// Keyed with a per-node secret seed: a client cannot aim its own
    /// REGISTER at another device's entry.
    hasher: foldhash::fast::FixedState,
    last_purge: u32,
}

impl Gate {
    pub(super) fn new(cfg: HttpAuth, seed: u64) -> Gate {
        Gate {
            cfg,
            said_yes: hashbrown::HashMap::new(),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            last_purge: 0,
        }
    }

    fn key(&self, aor: &str, device: &str, source: SocketAddr) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, (aor, device, source))
    }

    fn fresh(&self, key: u64, now_secs: u32) -> bool {
        self.said_yes
            .get(&key)
            .is_some_and(|&at| u64::from(now_secs.saturating_sub(at)) < self.cfg.cache_s)
    }

    /// Every contact of this REGISTER is a binding the service authorized
    /// from this source within `cache_s`. A query or `Contact: *` never is.
    pub(super) fn covers(
        &self,
        aor: &str,
        checked: &Checked<'_>,
        at: Arrival,
        device_id_param: Option<&str>,
    ) -> bool {
        if checked.contacts.is_empty() || self.cfg.cache_s == 0 {
            return false;
        }
        checked.contacts.iter().all(|c| {
            let Some(addr) = c.contact.addr() else {
                return false;
            };
            let device = instance_of(c, device_id_param).unwrap_or(addr.uri_raw);
            self.fresh(self.key(aor, device, at.source), at.now_secs)
        })
    }

    /// After a REGISTER changed the bindings: remember what the service
    /// just said yes to (`granted`), forget what was unregistered (its
    /// device asks again next time).
    pub(super) fn note(&mut self, aor: &str, ops: &[Op<'_, '_>], at: Arrival, granted: bool) {
        self.purge(at.now_secs);
        for op in ops {
            let key = self.key(aor, op.instance.unwrap_or(op.uri), at.source);
            if op.expires == 0 {
                self.said_yes.remove(&key);
            } else if granted && self.cfg.cache_s > 0 && self.said_yes.len() < MAX_ENTRIES {
                self.said_yes.insert(key, at.now_secs);
            }
        }
    }

    fn purge(&mut self, now_secs: u32) {
        if now_secs < self.last_purge.saturating_add(PURGE_EVERY_S) {
            return;
        }
        self.last_purge = now_secs;
        let ttl = self.cfg.cache_s;
        self.said_yes
            .retain(|_, at| u64::from(now_secs.saturating_sub(*at)) < ttl);
    }
}

/// The JSON a callout POSTs: `aor`, `contact` (the first; `"*"` for a
/// removal of all, null for a query), `contacts` (all of them: a REGISTER
/// is authorized as a whole), `instance` (the first contact's
/// `+sip.instance`), `source` (`ip:port` the REGISTER came from),
/// `user_agent` and `token` (the Bearer token it carried), null when
/// absent.
pub(super) fn body(msg: &Message<'_>, checked: &Checked<'_>, source: SocketAddr) -> Vec<u8> {
    let aor = match (checked.to.uri.user, checked.to.uri.host) {
        (Some(u), Some(h)) => super::canonical_aor(u, h),
        // `process` refused these before any callout.
        _ => String::new(),
    };
    let contacts: SmallVec<[&str; 2]> = checked
        .contacts
        .iter()
        .map(|c| match &c.contact {
            Contact::Star => "*",
            Contact::Addr(a) => a.uri_raw,
        })
        .collect();
    let instance = checked.contacts.first().and_then(|c| c.contact.instance());
    let token = checked.authorization.as_ref().and_then(|a| a.bearer());
    let json = serde_json::json!({
        "aor": aor,
        "contact": contacts.first(),
        "contacts": contacts.as_slice(),
        "instance": instance,
        "source": source.to_string(),
        "user_agent": msg.header(HeaderName::UserAgent),
        "token": token,
    });
    json.to_string().into_bytes()
}
