//! The location directory: AOR → current contacts, and device id → AOR.
//! Shared by every core and the control thread. Reads never block and never
//! write shared memory beyond an epoch pin; writers take a per-shard lock
//! (64 shards by hash), so cores registering different AORs rarely meet.
//! Each contact names the core that owns its binding, so anyone can find it
//! and ask the owner.
//!
//! Memory is the point of this layout (a node holds millions of AORs): an
//! AOR is one packed block ([`packed`]) holding its name and every contact
//! with its strings, referenced from an open-addressing table of 8-byte
//! slots (a 16-bit hash tag beside the pointer, so probing does not touch
//! other blocks). A device is 16 bytes in a second table: its id's hash and
//! its AOR's hash; the binding is found in the AOR's block. A change builds
//! a new block and swaps the slot; the old block and outgrown tables are
//! freed once no reader can still hold them (crossbeam-epoch).
//!
//! Three parts: `table`, the generic epoch-protected sharded table (all of
//! the directory's unsafe code, and the invariants it keeps); `aors` and
//! `devices`, the two tables built on it (safe code); and here, the
//! [`Directory`] that joins them.

mod aors;
mod devices;
mod table;

use std::sync::Arc;

use smallvec::SmallVec;

use crate::registrar::binding::{BindingRef, ContactView};
use crate::registrar::packed;
use aors::{AorTable, Key};
use devices::DeviceTable;

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

/// Where a device (RFC 5626 instance, or configured device id) is registered:
/// its AOR and the latest of its bindings there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub aor: Arc<str>,
    pub binding: BindingRef,
}

/// The shared directory.
pub struct Directory {
    aors: AorTable,
    devices: DeviceTable,
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

    /// A directory sized for `capacity` AORs and devices up front (tables
    /// grow by rebuilding a shard under its write lock; readers meanwhile
    /// keep reading the old one).
    pub fn with_capacity(capacity: usize) -> Directory {
        Directory {
            aors: AorTable::with_capacity(capacity),
            devices: DeviceTable::with_capacity(capacity),
        }
    }

    /// The hash the directory files `aor` under (owners keep it instead of
    /// the name).
    pub fn hash(&self, aor: &str) -> u64 {
        self.aors.hash(aor)
    }

    /// Calls `f` with the AOR's record (or `None`), without blocking.
    pub fn with_aor<R>(&self, aor: &str, f: impl FnOnce(Option<&AorRecord>) -> R) -> R {
        self.aors
            .with_block(self.hash(aor), Key::Name(aor), |b| match b {
                Some(b) => f(Some(&packed::decode(b))),
                None => f(None),
            })
    }

    /// The name of the AOR filed under `hash` (owners keep only the hash).
    pub fn aor_name(&self, hash: u64) -> Option<Box<str>> {
        self.aors
            .with_block(hash, Key::Hash, |b| b.map(|b| packed::aor(b).into()))
    }

    /// Calls `f` with one binding of the AOR (or `None`), decoding only it.
    pub fn with_contact<R>(
        &self,
        aor: &str,
        binding: BindingRef,
        f: impl FnOnce(Option<&ContactView>) -> R,
    ) -> R {
        self.aors.with_block(self.hash(aor), Key::Name(aor), |b| {
            match b.and_then(|b| packed::contacts(b).find(|c| c.binding == binding)) {
                Some(c) => f(Some(&c.to_view())),
                None => f(None),
            }
        })
    }

    /// The contacts a target reaches that have not expired at `now_secs`.
    pub fn lookup(&self, target: &str, now_secs: u32) -> SmallVec<[ContactView; 2]> {
        let t = Target::parse(target);
        self.aors
            .with_block(self.hash(t.aor), Key::Name(t.aor), |b| {
                b.map(|b| {
                    packed::contacts(b)
                        .filter(|c| c.expires_at > now_secs && t.reaches(c.scope))
                        .map(|c| c.to_view())
                        .collect()
                })
                .unwrap_or_default()
            })
    }

    /// Atomically replaces an AOR's record with what `f` computes from the
    /// current one (decoded for `f` to own and change; empty if none); an
    /// empty result removes the AOR. Returns `f`'s verdict. `f` runs once,
    /// under the shard's write lock: it must not call back into the
    /// directory's writers.
    pub fn update<T>(&self, aor: &str, f: impl FnOnce(AorRecord) -> Decision<T>) -> T {
        self.update_then(aor, f).0
    }

    /// [`Directory::update`], also handing back the record it stored, so
    /// the caller need not copy it. `None` when the old record stays: `f`
    /// said [`Decision::Keep`], or its record could not be packed (a field
    /// over 64 KiB; logged).
    pub fn update_then<T>(
        &self,
        aor: &str,
        f: impl FnOnce(AorRecord) -> Decision<T>,
    ) -> (T, Option<AorRecord>) {
        self.aors
            .update(self.hash(aor), Key::Name(aor), f)
            .expect("a named update always runs")
    }

    /// [`Directory::update`] for an AOR known by its [`Directory::hash`]
    /// only: runs `f` when the AOR has a record, else returns `None`.
    pub fn update_hashed<T>(
        &self,
        hash: u64,
        f: impl FnOnce(AorRecord) -> Decision<T>,
    ) -> Option<T> {
        self.aors.update(hash, Key::Hash, f).map(|(v, _)| v)
    }

    /// Calls `f` for every contact of every AOR (a snapshot per AOR; AORs
    /// changed during the walk may be seen before or after the change).
    pub fn for_each(&self, f: impl FnMut(&Arc<str>, &ContactView)) {
        self.aors.for_each(f)
    }

    /// Sends every change from now on to `sink` (persistence). Set once,
    /// after a restore and before any core runs; false if already set.
    pub fn set_journal(&self, sink: crate::persist::Sink) -> bool {
        self.aors.journal.set(sink).is_ok()
    }

    /// Stores an AOR's packed block as it is, replacing the AOR's record;
    /// not journaled (a restore's blocks come from the journal). The block
    /// must be whole ([`packed::is_valid`]) and hold at least one contact.
    pub fn put_block(&self, block: Box<[u8]>) {
        self.aors.put_block(block)
    }

    /// Calls `f` with every AOR's packed block ([`packed`]), for snapshots.
    pub fn for_each_block(&self, f: impl FnMut(&[u8])) {
        self.aors.for_each_block(f)
    }

    /// Removes one binding from its AOR, if it is still there.
    pub fn remove_binding(&self, aor: &str, binding: BindingRef) -> Option<ContactView> {
        self.update(aor, |rec| without(rec, binding))
    }

    /// [`Directory::remove_binding`] by the AOR's hash.
    pub fn remove_binding_hashed(&self, hash: u64, binding: BindingRef) -> Option<ContactView> {
        self.update_hashed(hash, |rec| without(rec, binding))
            .flatten()
    }

    /// Records that `device` is registered under `aor` (its binding there is
    /// the latest contact with that instance).
    pub fn set_device(&self, device: &str, aor: &str) {
        self.devices.set(self.hash(device), self.hash(aor));
    }

    /// Forgets `device` unless its AOR still has a contact of that instance
    /// (another flow of the same device, RFC 5626 reg-id).
    pub fn clear_device(&self, device: &str) {
        self.devices.clear_unless(self.hash(device), |aor| {
            self.aors.with_block(aor, Key::Hash, |b| {
                b.is_some_and(|b| packed::contacts(b).any(|c| c.instance_is(device)))
            })
        });
    }

    /// Where a device is registered: its AOR and its latest binding there.
    pub fn device(&self, device: &str) -> Option<DeviceEntry> {
        let aor = self.devices.aor_of(self.hash(device))?;
        self.aors.with_block(aor, Key::Hash, |b| {
            let b = b?;
            let binding = packed::contacts(b)
                .filter(|c| c.instance_is(device))
                .last()?
                .binding;
            Some(DeviceEntry {
                aor: packed::aor(b).into(),
                binding,
            })
        })
    }

    /// Number of AORs with at least one contact.
    pub fn aor_count(&self) -> usize {
        self.aors.count()
    }

    /// Number of known devices.
    pub fn device_count(&self) -> usize {
        self.devices.count()
    }
}

fn without(rec: AorRecord, binding: BindingRef) -> Decision<Option<ContactView>> {
    match rec.contacts.iter().position(|c| c.binding == binding) {
        Some(i) => {
            let mut next = rec;
            let gone = next.contacts.remove(i);
            Decision::Replace(next, Some(gone))
        }
        None => Decision::Keep(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn view(core: u16, slot: u32, scope: Option<&str>) -> ContactView {
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

    fn with_instance(slot: u32, instance: &str) -> ContactView {
        ContactView {
            instance: Some(instance.into()),
            ..view(0, slot, None)
        }
    }

    #[test]
    fn devices_follow_their_latest_binding() {
        let d = Directory::new();
        let dev = "urn:uuid:00000000-0000-1000-8000-0123456789ab";
        d.update("foo@x", |r| {
            let mut n = r.clone();
            n.contacts.push(with_instance(1, dev));
            n.contacts.push(with_instance(2, dev));
            Decision::Replace(n, ())
        });
        d.set_device(dev, "foo@x");
        let e = d.device(dev).unwrap();
        assert_eq!((&*e.aor, e.binding.slot), ("foo@x", 2));
        assert_eq!(d.device_count(), 1);
        // One flow gone: the device stays, at the other flow.
        d.remove_binding("foo@x", e.binding);
        d.clear_device(dev);
        assert_eq!(d.device(dev).unwrap().binding.slot, 1);
        d.remove_binding(
            "foo@x",
            BindingRef {
                core: 0,
                slot: 1,
                gen: 1,
            },
        );
        d.clear_device(dev);
        assert!(d.device(dev).is_none());
        assert_eq!(d.device_count(), 0);
        assert!(d.device("urn:uuid:never").is_none());
    }

    #[test]
    fn a_device_entry_without_its_contact_is_not_reported() {
        let d = Directory::new();
        d.set_device("urn:uuid:x", "nobody@x");
        assert!(d.device("urn:uuid:x").is_none());
    }
}
