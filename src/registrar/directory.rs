//! The location directory: AOR → current contacts, and device id → binding.
//! Shared by every core and the control thread; reads never block (papaya:
//! lock-free reads, writers retry a compare-and-swap). Each entry names the
//! core that owns the binding, so anyone can find it and ask the owner.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::registrar::binding::{BindingRef, ContactView};

type Hasher = foldhash::fast::RandomState;

/// All current contacts of one AOR. Replaced whole on every change, so a
/// reader always sees a consistent list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AorRecord {
    pub contacts: SmallVec<[ContactView; 1]>,
}

/// What [`Directory::update`]'s closure decides.
pub enum Decision<T> {
    /// Store this record (an empty one removes the AOR) and return `T`.
    Replace(AorRecord, T),
    /// Leave the record as it is and return `T`.
    Keep(T),
}

/// Where a device (RFC 5626 instance, or configured device id) is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub aor: Arc<str>,
    pub binding: BindingRef,
}

/// The shared directory.
/// Keys are `Arc<str>` so that the AOR and device strings are stored once,
/// shared by the maps, the contact views and the owning core's bindings.
pub struct Directory {
    aors: papaya::HashMap<Arc<str>, AorRecord, Hasher>,
    devices: papaya::HashMap<Arc<str>, DeviceEntry, Hasher>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new()
    }
}

/// A lookup target: `aor` or `aor:scope` (seed 002 namespaces). The AOR is
/// `user@domain`; the scope, if any, follows the last `:` after the `@`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub aor: &'a str,
    pub scope: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn parse(s: &'a str) -> Target<'a> {
        let at = s.find('@').unwrap_or(0);
        match s[at..].rfind(':') {
            Some(i) => Target {
                aor: &s[..at + i],
                scope: Some(&s[at + i + 1..]),
            },
            None => Target {
                aor: s,
                scope: None,
            },
        }
    }

    /// True when a contact registered with `scope` is reached by this target:
    /// an unscoped target reaches every scope.
    pub fn reaches(&self, scope: Option<&str>) -> bool {
        match self.scope {
            None => true,
            Some(want) => scope.is_some_and(|s| s.eq_ignore_ascii_case(want)),
        }
    }
}

impl Directory {
    pub fn new() -> Directory {
        Directory::with_capacity(0)
    }

    /// A directory sized for `capacity` AORs and devices up front: growing a
    /// concurrent table means copying it while it is in use, which costs
    /// every writer during the copy.
    pub fn with_capacity(capacity: usize) -> Directory {
        Directory {
            aors: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .capacity(capacity)
                .build(),
            devices: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .capacity(capacity)
                .build(),
        }
    }

    /// Calls `f` with the AOR's record (or `None`) without blocking or copying.
    pub fn with_aor<R>(&self, aor: &str, f: impl FnOnce(Option<&AorRecord>) -> R) -> R {
        let map = self.aors.pin();
        f(map.get(aor))
    }

    /// The contacts a target reaches that have not expired at `now_secs`.
    pub fn lookup(&self, target: &str, now_secs: u32) -> SmallVec<[ContactView; 2]> {
        let t = Target::parse(target);
        self.with_aor(t.aor, |rec| {
            rec.map(|r| {
                r.contacts
                    .iter()
                    .filter(|c| c.expires_at > now_secs && t.reaches(c.scope.as_deref()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
        })
    }

    /// Atomically replaces an AOR's record with what `f` computes from the
    /// current one. `f` may run more than once under contention, so it must
    /// be pure. An empty result removes the AOR. Returns `f`'s verdict.
    pub fn update<T>(&self, aor: &str, f: impl FnMut(&AorRecord) -> Decision<T>) -> T {
        self.update_keyed(self.key(aor), f)
    }

    /// The stored key for `aor` when it has a record, else a new one: callers
    /// that keep the AOR (the owning core) share the directory's copy.
    pub fn key(&self, aor: &str) -> Arc<str> {
        match self.aors.pin().get_key_value(aor) {
            Some((k, _)) => k.clone(),
            None => aor.into(),
        }
    }

    /// [`Directory::update`] with a key from [`Directory::key`].
    pub fn update_keyed<T>(
        &self,
        aor: Arc<str>,
        mut f: impl FnMut(&AorRecord) -> Decision<T>,
    ) -> T {
        let map = self.aors.pin();
        let empty = AorRecord::default();
        let mut verdict = None;
        map.compute(aor, |entry| {
            let current = entry.map_or(&empty, |(_, v)| v);
            match f(current) {
                Decision::Replace(next, t) => {
                    verdict = Some(t);
                    if next.contacts.is_empty() {
                        if entry.is_some() {
                            papaya::Operation::Remove
                        } else {
                            papaya::Operation::Abort(())
                        }
                    } else {
                        papaya::Operation::Insert(next)
                    }
                }
                Decision::Keep(t) => {
                    verdict = Some(t);
                    papaya::Operation::Abort(())
                }
            }
        });
        verdict.expect("compute calls the closure at least once")
    }

    /// Removes one binding from its AOR, if it is still there.
    pub fn remove_binding(&self, aor: &str, binding: BindingRef) -> Option<ContactView> {
        self.update(aor, |rec| {
            let mut next = rec.clone();
            match next.contacts.iter().position(|c| c.binding == binding) {
                Some(i) => {
                    let gone = next.contacts.remove(i);
                    Decision::Replace(next, Some(gone))
                }
                None => Decision::Keep(None),
            }
        })
    }

    /// Records that `device` is now at `binding`.
    pub fn set_device(&self, device: Arc<str>, aor: Arc<str>, binding: BindingRef) {
        self.devices
            .pin()
            .insert(device, DeviceEntry { aor, binding });
    }

    /// Forgets `device` if it still points at `binding`.
    pub fn clear_device(&self, device: &str, binding: BindingRef) {
        let _ = self
            .devices
            .pin()
            .remove_if(device, |_, v| v.binding == binding);
    }

    /// Where a device is registered.
    pub fn device(&self, device: &str) -> Option<DeviceEntry> {
        self.devices.pin().get(device).cloned()
    }

    /// Calls `f` for every contact of every AOR (a snapshot per AOR; AORs
    /// changed during the walk may be seen before or after the change).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<str>, &ContactView)) {
        let map = self.aors.pin();
        for (aor, rec) in map.iter() {
            for c in &rec.contacts {
                f(aor, c);
            }
        }
    }

    /// Number of AORs with at least one contact.
    pub fn aor_count(&self) -> usize {
        self.aors.len()
    }

    /// Number of known devices.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(core: u16, slot: u32, scope: Option<&str>) -> ContactView {
        ContactView {
            binding: BindingRef { core, slot, gen: 1 },
            contact: format!("sip:u@10.0.0.{slot}").into(),
            expires_at: 100,
            scope: scope.map(Into::into),
            ..ContactView::default()
        }
    }

    #[test]
    fn target_parsing() {
        assert_eq!(
            Target::parse("foo@example.com"),
            Target {
                aor: "foo@example.com",
                scope: None
            }
        );
        assert_eq!(
            Target::parse("foo@example.com:mobile"),
            Target {
                aor: "foo@example.com",
                scope: Some("mobile")
            }
        );
        assert_eq!(
            Target::parse("foo:web"),
            Target {
                aor: "foo",
                scope: Some("web")
            }
        );
    }

    #[test]
    fn namespaced_lookup_and_expiry() {
        let d = Directory::new();
        d.update("foo@x", |r| {
            let mut n = r.clone();
            n.contacts.push(view(0, 1, Some("mobile")));
            n.contacts.push(view(1, 2, Some("web")));
            n.contacts.push(view(1, 3, None));
            Decision::Replace(n, ())
        });
        assert_eq!(d.lookup("foo@x", 50).len(), 3);
        assert_eq!(d.lookup("foo@x:mobile", 50).len(), 1);
        assert_eq!(d.lookup("foo@x:web", 50)[0].binding.slot, 2);
        assert!(d.lookup("foo@x:tv", 50).is_empty());
        assert!(
            d.lookup("foo@x", 100).is_empty(),
            "expired contacts are not returned"
        );
        assert_eq!(
            d.remove_binding(
                "foo@x",
                BindingRef {
                    core: 1,
                    slot: 2,
                    gen: 1
                }
            )
            .unwrap()
            .binding
            .slot,
            2
        );
        assert!(d
            .remove_binding(
                "foo@x",
                BindingRef {
                    core: 1,
                    slot: 2,
                    gen: 1
                }
            )
            .is_none());
        d.remove_binding(
            "foo@x",
            BindingRef {
                core: 0,
                slot: 1,
                gen: 1,
            },
        );
        d.remove_binding(
            "foo@x",
            BindingRef {
                core: 1,
                slot: 3,
                gen: 1,
            },
        );
        assert_eq!(d.aor_count(), 0, "an AOR without contacts is removed");
    }

    #[test]
    fn devices_follow_their_latest_binding() {
        let d = Directory::new();
        let old = BindingRef {
            core: 0,
            slot: 1,
            gen: 1,
        };
        let new = BindingRef {
            core: 1,
            slot: 9,
            gen: 4,
        };
        d.set_device("urn:uuid:1".into(), "foo@x".into(), old);
        d.set_device("urn:uuid:1".into(), "foo@x".into(), new);
        d.clear_device("urn:uuid:1", old);
        assert_eq!(d.device("urn:uuid:1").unwrap().binding, new);
        d.clear_device("urn:uuid:1", new);
        assert!(d.device("urn:uuid:1").is_none());
    }

    #[test]
    fn concurrent_readers_see_whole_records_while_writers_change_them() {
        let d = std::sync::Arc::new(Directory::new());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    d.with_aor("a@x", |r| {
                        if let Some(r) = r {
                            // Writers always store 1 or 2 contacts with matching slots.
                            assert!(matches!(r.contacts.len(), 1 | 2));
                            assert!(r
                                .contacts
                                .iter()
                                .all(|c| c.expires_at == c.binding.slot + 1000));
                        }
                    });
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..20_000u32 {
            d.update("a@x", |_| {
                let mut n = AorRecord::default();
                for s in 0..(1 + i % 2) {
                    let mut v = view(0, i + s, None);
                    v.expires_at = i + s + 1000;
                    n.contacts.push(v);
                }
                Decision::Replace(n, ())
            });
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }
}
