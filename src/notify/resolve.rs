//! Target resolution: what an application server names (an AOR, a device
//! id, a namespace `foo` / `foo:mobile`, or everyone) → the bindings to
//! send to, read from the lock-free directory, split by owning core.

use std::sync::Arc;

use super::job::{Device, Kind};
use crate::registrar::{ContactView, Directory};

/// The target string that means every binding (the API's `{"all": true}`).
pub const ALL: &str = "*";

/// The bindings `targets` reach at `now_secs`, each once, and the indices
/// of targets that reached none. A target is tried as a device id first
/// (RFC 5626 instance or configured device id), then as an AOR with an
/// optional `:scope` (seed 002): `foo@d` reaches every scope of `foo@d`,
/// `foo@d:mobile` only bindings registered with `;scope=mobile`. [`ALL`]
/// reaches every binding, for contact-me only those that opted in.
pub fn resolve(
    dir: &Directory,
    targets: &[String],
    kind: Kind,
    now_secs: u32,
) -> (Vec<Device>, Vec<u32>) {
    let mut devices = Vec::new();
    let mut unmatched = Vec::new();
    let mut seen = hashbrown::HashSet::with_hasher(foldhash::fast::RandomState::default());
    // One target reaches each binding at most once (a binding belongs to
    // one AOR): only several can overlap. A job to everyone skips the set,
    // whose million inserts were ~1/5 of resolving it, before any send.
    let dedup = targets.len() > 1;
    for (i, t) in targets.iter().enumerate() {
        let before = devices.len();
        let mut push = |aor: &Arc<str>, c: &ContactView| {
            if c.expires_at > now_secs && (!dedup || seen.insert(c.binding)) {
                devices.push(Device {
                    target: i as u32,
                    aor: aor.clone(),
                    binding: c.binding,
                    instance: c.instance.clone(),
                });
            }
        };
        if t == ALL {
            dir.for_each(|aor, c| {
                if kind == Kind::WakeInvite || c.accepts_contact_me() {
                    push(aor, c);
                }
            });
        } else if let Some(d) = dir.device(t) {
            dir.with_aor(&d.aor, |rec| {
                if let Some(c) =
                    rec.and_then(|r| r.contacts.iter().find(|c| c.binding == d.binding))
                {
                    push(&d.aor, c);
                }
            });
        } else {
            let bare = t
                .strip_prefix("sip:")
                .or_else(|| t.strip_prefix("sips:"))
                .unwrap_or(t);
            let target = crate::registrar::Target::parse(bare);
            let key: Arc<str> = target.aor.into();
            dir.with_aor(target.aor, |rec| {
                for c in rec.iter().flat_map(|r| r.contacts.iter()) {
                    if target.reaches(c.scope.as_deref()) {
                        push(&key, c);
                    }
                }
            });
        }
        if devices.len() == before {
            unmatched.push(i as u32);
        }
    }
    (devices, unmatched)
}

/// Device indices per owning core (`cores` entries).
pub fn split_by_core(devices: &[Device], cores: usize) -> Vec<Vec<u32>> {
    let mut parts = vec![Vec::new(); cores.max(1)];
    for (i, d) in devices.iter().enumerate() {
        let c = usize::from(d.binding.core).min(parts.len() - 1);
        parts[c].push(i as u32);
    }
    parts
}
