//! The device table: a device id's hash → its AOR's hash, 16 bytes a
//! device, on the generic sharded table. The binding itself is found in the
//! AOR's block (the latest contact of that instance), so it is not kept
//! here.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::table::{probe, Probe, Sealed, Sharded, Slot, EMPTY, TOMBSTONE};

/// A device slot: the device id's hash (`EMPTY`/`TOMBSTONE` reserved, see
/// [`device_key`]) and its AOR's hash.
#[derive(Default)]
pub(super) struct DeviceSlot {
    key: AtomicU64,
    aor: AtomicU64,
}

impl Slot for DeviceSlot {
    fn copy_to(&self, to: &Self, _: Sealed) {
        let aor = self.aor.load(Ordering::Relaxed);
        to.aor.store(aor, Ordering::Relaxed);
        to.key
            .store(self.key.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// The slot key a device hash is stored under (two values are reserved).
fn device_key(hash: u64) -> u64 {
    hash.max(2)
}

fn find(slots: &[DeviceSlot], key: u64) -> Result<usize, usize> {
    probe(slots, key, |s| match s.key.load(Ordering::Acquire) {
        EMPTY => Probe::Empty,
        TOMBSTONE => Probe::Tombstone,
        k if k == key => Probe::Hit(()),
        _ => Probe::Miss,
    })
    .map(|(i, ())| i)
}

pub(super) struct DeviceTable {
    table: Sharded<DeviceSlot>,
    /// Known devices.
    count: AtomicUsize,
}

impl DeviceTable {
    pub(super) fn with_capacity(capacity: usize) -> DeviceTable {
        DeviceTable {
            table: Sharded::with_capacity(capacity),
            count: AtomicUsize::new(0),
        }
    }

    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Files the device hashed `device` under the AOR hashed `aor`.
    pub(super) fn set(&self, device: u64, aor: u64) {
        let key = device_key(device);
        self.table.write(key, |w| {
            let i = match find(w.slots(), key) {
                Ok(i) => {
                    w.slots()[i].aor.store(aor, Ordering::Release);
                    return;
                }
                Err(_) if w.full() => {
                    w.rebuild(|s| {
                        let key = s.key.load(Ordering::Relaxed);
                        (key > TOMBSTONE).then_some(key)
                    });
                    find(w.slots(), key).expect_err("absent before the rebuild")
                }
                Err(i) => i,
            };
            let slot = &w.slots()[i];
            w.taken(slot.key.load(Ordering::Relaxed) == TOMBSTONE);
            self.count.fetch_add(1, Ordering::Relaxed);
            // The AOR first: a reader that sees the key sees its AOR.
            slot.aor.store(aor, Ordering::Relaxed);
            slot.key.store(key, Ordering::Release);
        });
    }

    /// Forgets the device hashed `device` unless `keep` says otherwise,
    /// asked with its AOR's hash under the shard's write lock.
    pub(super) fn clear_unless(&self, device: u64, keep: impl FnOnce(u64) -> bool) {
        let key = device_key(device);
        self.table.write(key, |w| {
            let slots = w.slots();
            let Ok(i) = find(slots, key) else {
                return;
            };
            if !keep(slots[i].aor.load(Ordering::Relaxed)) {
                slots[i].key.store(TOMBSTONE, Ordering::Release);
                w.vacated();
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// The hash of the AOR the device hashed `device` is filed under.
    pub(super) fn aor_of(&self, device: u64) -> Option<u64> {
        let key = device_key(device);
        self.table.read(key, |slots, _| {
            let i = find(slots, key).ok()?;
            let aor = slots[i].aor.load(Ordering::Acquire);
            // A slot reused meanwhile would name another AOR: check the key again.
            (slots[i].key.load(Ordering::Acquire) == key).then_some(aor)
        })
    }
}
