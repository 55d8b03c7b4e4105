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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::registrar::binding::{BindingRef, ContactView};
use crate::registrar::packed;

type Hasher = foldhash::fast::RandomState;

const SHARDS: usize = 64;
const EMPTY: u64 = 0;
const TOMBSTONE: u64 = 1;
/// User-space pointers on x86-64 and aarch64 Linux fit in 48 bits; the 16
/// above carry the tag.
const ADDR_MASK: u64 = (1 << 48) - 1;
/// A table is rebuilt when live entries and tombstones fill this share (%).
const MAX_FILL: usize = 85;

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

/// One table's slots; replaced whole when it grows or sheds tombstones.
struct Table<S> {
    slots: Box<[S]>,
}

/// A device slot: the device id's hash (EMPTY/TOMBSTONE reserved) and its
/// AOR's hash.
#[derive(Default)]
struct DeviceSlot {
    key: AtomicU64,
    aor: AtomicU64,
}

#[derive(Default)]
struct Fill {
    live: usize,
    tombstones: usize,
}

struct Shard<S> {
    /// Taken by writers only.
    write: Mutex<Fill>,
    table: Atomic<Table<S>>,
}

impl<S: Default> Shard<S> {
    fn new(len: usize) -> Shard<S> {
        Shard {
            write: Mutex::new(Fill::default()),
            table: Atomic::new(Table {
                slots: (0..len.max(16)).map(|_| S::default()).collect(),
            }),
        }
    }
}

/// The shared directory.
pub struct Directory {
    hasher: Hasher,
    aors: Box<[Shard<AtomicU64>]>,
    devices: Box<[Shard<DeviceSlot>]>,
    aor_count: AtomicUsize,
    device_count: AtomicUsize,
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

fn shard_of(hash: u64) -> usize {
    (hash >> 58) as usize % SHARDS
}

/// Where probing for `hash` starts in a table of `len` slots.
fn start(hash: u64, len: usize) -> usize {
    ((u64::from(hash as u32) * len as u64) >> 32) as usize
}

fn tag(hash: u64) -> u64 {
    (hash >> 32) & 0xffff
}

fn entry_for(block: Box<[u8]>, hash: u64) -> u64 {
    let addr = Box::into_raw(block) as *mut u8 as u64;
    assert_eq!(addr & !ADDR_MASK, 0, "heap address beyond 48 bits");
    tag(hash) << 48 | addr
}

/// The block an entry points to.
///
/// # Safety
/// `e` was made by [`entry_for`] and its block is not freed while `_g` is
/// pinned (blocks are retired through the epoch, never freed directly while
/// reachable).
unsafe fn block(e: u64, _g: &Guard) -> &[u8] {
    let p = (e & ADDR_MASK) as *const u8;
    // SAFETY: the block starts with its own length (packed::encode).
    unsafe {
        let len = packed::block_len(std::ptr::read(p as *const [u8; 4]));
        std::slice::from_raw_parts(p, len)
    }
}

/// Frees a block no reader can reach any more.
///
/// # Safety
/// `addr` is a block's address from [`entry_for`], freed once.
unsafe fn free_block(addr: u64) {
    let p = addr as *mut u8;
    // SAFETY: as above; the layout is the boxed slice's own.
    unsafe {
        let len = packed::block_len(std::ptr::read(p as *const [u8; 4]));
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)));
    }
}

fn retire(e: u64, g: &Guard) {
    let addr = e & ADDR_MASK;
    // SAFETY: the slot no longer points at the block, so only readers pinned
    // before now can hold it, and the epoch waits for them.
    unsafe { g.defer_unchecked(move || free_block(addr)) }
}

/// How a probe for an AOR recognises its block: by name, or (for callers
/// that keep only the hash) by the hash of the name.
#[derive(Clone, Copy)]
enum Key<'a> {
    Name(&'a str),
    Hash,
}

/// The slot a device hash is stored under (two values are reserved).
fn device_key(hash: u64) -> u64 {
    hash.max(2)
}

impl Directory {
    pub fn new() -> Directory {
        Directory::with_capacity(0)
    }

    /// A directory sized for `capacity` AORs and devices up front (tables
    /// grow by rebuilding a shard under its write lock; readers meanwhile
    /// keep reading the old one).
    pub fn with_capacity(capacity: usize) -> Directory {
        let per_shard = capacity.div_ceil(SHARDS) * 100 / (MAX_FILL - 5);
        Directory {
            hasher: Hasher::default(),
            aors: (0..SHARDS).map(|_| Shard::new(per_shard)).collect(),
            devices: (0..SHARDS).map(|_| Shard::new(per_shard)).collect(),
            aor_count: AtomicUsize::new(0),
            device_count: AtomicUsize::new(0),
        }
    }

    /// The hash the directory files `aor` under (owners keep it instead of
    /// the name).
    pub fn hash(&self, aor: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, aor)
    }

    /// Finds an AOR's block: `Ok((slot, block))`, or `Err(slot)` where it
    /// would go.
    fn find_aor<'g>(
        &self,
        slots: &'g [AtomicU64],
        hash: u64,
        key: Key<'_>,
        g: &'g Guard,
    ) -> Result<(usize, &'g [u8]), usize> {
        let len = slots.len();
        let mut i = start(hash, len);
        let mut free = None;
        for _ in 0..len {
            let e = slots[i].load(Ordering::Acquire);
            if e == EMPTY {
                return Err(free.unwrap_or(i));
            }
            if e == TOMBSTONE {
                free.get_or_insert(i);
            } else if e >> 48 == tag(hash) {
                // SAFETY: loaded from a live slot while pinned.
                let b = unsafe { block(e, g) };
                let name = packed::aor(b);
                let hit = match key {
                    Key::Name(n) => n == name,
                    Key::Hash => self.hash(name) == hash,
                };
                if hit {
                    return Ok((i, b));
                }
            }
            i = if i + 1 == len { 0 } else { i + 1 };
        }
        Err(free.expect("tables are rebuilt before they fill"))
    }

    fn with_block<R>(&self, hash: u64, key: Key<'_>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let g = epoch::pin();
        let shard = &self.aors[shard_of(hash)];
        // SAFETY: tables are only freed through the epoch.
        let t = unsafe { shard.table.load(Ordering::Acquire, &g).deref() };
        f(self.find_aor(&t.slots, hash, key, &g).ok().map(|(_, b)| b))
    }

    /// Calls `f` with the AOR's record (or `None`), without blocking.
    pub fn with_aor<R>(&self, aor: &str, f: impl FnOnce(Option<&AorRecord>) -> R) -> R {
        self.with_block(self.hash(aor), Key::Name(aor), |b| match b {
            Some(b) => f(Some(&packed::decode(b))),
            None => f(None),
        })
    }

    /// Calls `f` with one binding of the AOR (or `None`), decoding only it.
    pub fn with_contact<R>(
        &self,
        aor: &str,
        binding: BindingRef,
        f: impl FnOnce(Option<&ContactView>) -> R,
    ) -> R {
        self.with_block(self.hash(aor), Key::Name(aor), |b| {
            match b.and_then(|b| packed::contacts(b).find(|c| c.binding == binding)) {
                Some(c) => f(Some(&c.to_view())),
                None => f(None),
            }
        })
    }

    /// The contacts a target reaches that have not expired at `now_secs`.
    pub fn lookup(&self, target: &str, now_secs: u32) -> SmallVec<[ContactView; 2]> {
        let t = Target::parse(target);
        self.with_block(self.hash(t.aor), Key::Name(t.aor), |b| {
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
        self.update_by(self.hash(aor), Key::Name(aor), f)
            .expect("a named update always runs")
    }

    /// [`Directory::update`] for an AOR known by its [`Directory::hash`]
    /// only: runs `f` when the AOR has a record, else returns `None`.
    pub fn update_hashed<T>(
        &self,
        hash: u64,
        f: impl FnOnce(AorRecord) -> Decision<T>,
    ) -> Option<T> {
        self.update_by(hash, Key::Hash, f).map(|(v, _)| v)
    }

    fn update_by<T>(
        &self,
        hash: u64,
        key: Key<'_>,
        f: impl FnOnce(AorRecord) -> Decision<T>,
    ) -> Option<(T, Option<AorRecord>)> {
        let shard = &self.aors[shard_of(hash)];
        let mut fill = shard.write.lock();
        let g = epoch::pin();
        // SAFETY: tables are only freed through the epoch; this one cannot
        // be replaced while the write lock is held.
        let t = unsafe { shard.table.load(Ordering::Acquire, &g).deref() };
        match self.find_aor(&t.slots, hash, key, &g) {
            Ok((i, old)) => {
                let (next, verdict) = match f(packed::decode(old)) {
                    Decision::Keep(v) => return Some((v, None)),
                    Decision::Replace(next, v) => (next, v),
                };
                let e = if next.contacts.is_empty() {
                    fill.live -= 1;
                    fill.tombstones += 1;
                    self.aor_count.fetch_sub(1, Ordering::Relaxed);
                    TOMBSTONE
                } else {
                    match packed::encode(packed::aor(old), &next) {
                        Ok(b) => entry_for(b, hash),
                        // Fields come from one datagram each and contacts are
                        // capped (registrar.max_contacts ≤ 65535), so no
                        // REGISTER makes such a record; keep the old one.
                        Err(packed::TooLong) => {
                            tracing::error!(aor = packed::aor(old), "record too long to store");
                            return Some((verdict, None));
                        }
                    }
                };
                let prev = t.slots[i].swap(e, Ordering::AcqRel);
                retire(prev, &g);
                Some((verdict, Some(next)))
            }
            Err(mut i) => {
                let name = match key {
                    Key::Name(n) => n,
                    Key::Hash => return None,
                };
                let (next, verdict) = match f(AorRecord::default()) {
                    Decision::Keep(v) => return Some((v, None)),
                    Decision::Replace(next, v) => (next, v),
                };
                if next.contacts.is_empty() {
                    return Some((verdict, Some(next)));
                }
                let Ok(b) = packed::encode(name, &next) else {
                    tracing::error!(aor = name, "record too long to store");
                    return Some((verdict, None));
                };
                let mut slots: &[AtomicU64] = &t.slots;
                if (fill.live + fill.tombstones + 1) * 100 > slots.len() * MAX_FILL {
                    slots = self.rebuild_aors(shard, &mut fill, &g);
                    i = self
                        .find_aor(slots, hash, key, &g)
                        .expect_err("absent before the rebuild");
                }
                let e = entry_for(b, hash);
                if slots[i].load(Ordering::Relaxed) == TOMBSTONE {
                    fill.tombstones -= 1;
                }
                fill.live += 1;
                self.aor_count.fetch_add(1, Ordering::Relaxed);
                slots[i].store(e, Ordering::Release);
                Some((verdict, Some(next)))
            }
        }
    }

    fn rebuild_aors<'g>(
        &self,
        shard: &Shard<AtomicU64>,
        fill: &mut Fill,
        g: &'g Guard,
    ) -> &'g [AtomicU64] {
        let hash_of = |s: &AtomicU64| {
            let e = s.load(Ordering::Relaxed);
            // SAFETY: a live entry, under the write lock.
            (e > TOMBSTONE).then(|| self.hash(packed::aor(unsafe { block(e, g) })))
        };
        let copy = |from: &AtomicU64, to: &AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        rebuild(shard, fill, g, hash_of, copy)
    }

    /// Calls `f` for every contact of every AOR (a snapshot per AOR; AORs
    /// changed during the walk may be seen before or after the change).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<str>, &ContactView)) {
        for shard in self.aors.iter() {
            let g = epoch::pin();
            // SAFETY: tables are only freed through the epoch.
            let t = unsafe { shard.table.load(Ordering::Acquire, &g).deref() };
            for e in t.slots.iter().map(|s| s.load(Ordering::Acquire)) {
                if e > TOMBSTONE {
                    // SAFETY: loaded from a live slot while pinned.
                    let b = unsafe { block(e, &g) };
                    let aor: Arc<str> = packed::aor(b).into();
                    for c in packed::contacts(b) {
                        f(&aor, &c.to_view());
                    }
                }
            }
        }
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
        let key = device_key(self.hash(device));
        let aor_hash = self.hash(aor);
        let shard = &self.devices[shard_of(key)];
        let mut fill = shard.write.lock();
        let g = epoch::pin();
        // SAFETY: as in update_by.
        let mut slots: &[DeviceSlot] =
            unsafe { &shard.table.load(Ordering::Acquire, &g).deref().slots };
        let i = match find_device(slots, key) {
            Ok(i) => {
                slots[i].aor.store(aor_hash, Ordering::Release);
                return;
            }
            Err(_) if (fill.live + fill.tombstones + 1) * 100 > slots.len() * MAX_FILL => {
                slots = self.rebuild_devices(shard, &mut fill, &g);
                find_device(slots, key).expect_err("absent before the rebuild")
            }
            Err(i) => i,
        };
        if slots[i].key.load(Ordering::Relaxed) == TOMBSTONE {
            fill.tombstones -= 1;
        }
        fill.live += 1;
        self.device_count.fetch_add(1, Ordering::Relaxed);
        // The AOR first: a reader that sees the key sees its AOR.
        slots[i].aor.store(aor_hash, Ordering::Relaxed);
        slots[i].key.store(key, Ordering::Release);
    }

    /// Forgets `device` unless its AOR still has a contact of that instance
    /// (another flow of the same device, RFC 5626 reg-id).
    pub fn clear_device(&self, device: &str) {
        let key = device_key(self.hash(device));
        let shard = &self.devices[shard_of(key)];
        let mut fill = shard.write.lock();
        let g = epoch::pin();
        // SAFETY: as in update_by.
        let slots = unsafe { &shard.table.load(Ordering::Acquire, &g).deref().slots };
        let Ok(i) = find_device(slots, key) else {
            return;
        };
        let aor = slots[i].aor.load(Ordering::Relaxed);
        let still = self.with_block(aor, Key::Hash, |b| {
            b.is_some_and(|b| packed::contacts(b).any(|c| c.instance_is(device)))
        });
        if !still {
            slots[i].key.store(TOMBSTONE, Ordering::Release);
            fill.live -= 1;
            fill.tombstones += 1;
            self.device_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Where a device is registered: its AOR and its latest binding there.
    pub fn device(&self, device: &str) -> Option<DeviceEntry> {
        let key = device_key(self.hash(device));
        let aor = {
            let g = epoch::pin();
            let shard = &self.devices[shard_of(key)];
            // SAFETY: tables are only freed through the epoch.
            let slots = unsafe { &shard.table.load(Ordering::Acquire, &g).deref().slots };
            let i = find_device(slots, key).ok()?;
            let aor = slots[i].aor.load(Ordering::Acquire);
            // A slot reused meanwhile would name another AOR: check the key again.
            (slots[i].key.load(Ordering::Acquire) == key).then_some(aor)?
        };
        self.with_block(aor, Key::Hash, |b| {
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

    fn rebuild_devices<'g>(
        &self,
        shard: &Shard<DeviceSlot>,
        fill: &mut Fill,
        g: &'g Guard,
    ) -> &'g [DeviceSlot] {
        let hash_of = |s: &DeviceSlot| {
            let key = s.key.load(Ordering::Relaxed);
            (key > TOMBSTONE).then_some(key)
        };
        let copy = |from: &DeviceSlot, to: &DeviceSlot| {
            let aor = from.aor.load(Ordering::Relaxed);
            to.aor.store(aor, Ordering::Relaxed);
            to.key
                .store(from.key.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        rebuild(shard, fill, g, hash_of, copy)
    }

    /// Number of AORs with at least one contact.
    pub fn aor_count(&self) -> usize {
        self.aor_count.load(Ordering::Relaxed)
    }

    /// Number of known devices.
    pub fn device_count(&self) -> usize {
        self.device_count.load(Ordering::Relaxed)
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

fn find_device(slots: &[DeviceSlot], key: u64) -> Result<usize, usize> {
    let len = slots.len();
    let mut i = start(key, len);
    let mut free = None;
    for _ in 0..len {
        match slots[i].key.load(Ordering::Acquire) {
            EMPTY => return Err(free.unwrap_or(i)),
            TOMBSTONE => {
                free.get_or_insert(i);
            }
            k if k == key => return Ok(i),
            _ => {}
        }
        i = if i + 1 == len { 0 } else { i + 1 };
    }
    Err(free.expect("tables are rebuilt before they fill"))
}

/// Copies a shard's live entries (those `hash_of` gives a hash) into a
/// fresh table, twice the size when more than half full, else the same size
/// without tombstones, and installs it. Called under the shard's write lock.
fn rebuild<'g, S: Default>(
    shard: &Shard<S>,
    fill: &mut Fill,
    g: &'g Guard,
    hash_of: impl Fn(&S) -> Option<u64>,
    copy: impl Fn(&S, &S),
) -> &'g [S] {
    // SAFETY: tables are only freed through the epoch; under the write lock
    // this one is current.
    let old = unsafe { &shard.table.load(Ordering::Acquire, g).deref().slots };
    let len = grown_len(old.len(), fill.live);
    let slots: Box<[S]> = (0..len).map(|_| S::default()).collect();
    // The new table is private until installed: track its use on the side.
    let mut taken = vec![false; len];
    for s in old.iter() {
        if let Some(hash) = hash_of(s) {
            let mut i = start(hash, len);
            while taken[i] {
                i = if i + 1 == len { 0 } else { i + 1 };
            }
            taken[i] = true;
            copy(s, &slots[i]);
        }
    }
    fill.tombstones = 0;
    install(&shard.table, slots, g)
}

fn grown_len(len: usize, live: usize) -> usize {
    if (live + 1) * 2 > len {
        len * 2
    } else {
        len
    }
}

/// Publishes a rebuilt table and retires the old one; returns the new slots.
fn install<'g, S>(table: &Atomic<Table<S>>, slots: Box<[S]>, g: &'g Guard) -> &'g [S] {
    let new = Owned::new(Table { slots }).into_shared(g);
    let old = table.swap(new, Ordering::AcqRel, g);
    // SAFETY: `old` is unreachable for new readers; pinned ones finish first.
    unsafe {
        g.defer_destroy(old);
        &new.deref().slots
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer is left.
        let g = unsafe { epoch::unprotected() };
        for shard in self.aors.iter() {
            let t = shard
                .table
                .swap(epoch::Shared::null(), Ordering::Relaxed, g);
            if t.is_null() {
                continue;
            }
            // SAFETY: as above; each live block is freed once, here.
            unsafe {
                for e in t.deref().slots.iter().map(|s| s.load(Ordering::Relaxed)) {
                    if e > TOMBSTONE {
                        free_block(e & ADDR_MASK);
                    }
                }
                drop(t.into_owned());
            }
        }
        for shard in self.devices.iter() {
            let t = shard
                .table
                .swap(epoch::Shared::null(), Ordering::Relaxed, g);
            if !t.is_null() {
                // SAFETY: as above.
                unsafe { drop(t.into_owned()) };
            }
        }
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

    /// Many AORs in a small directory: the shards grow, removals leave
    /// tombstones that later inserts reuse or rebuilds drop, and every AOR
    /// stays findable by name and by hash.
    #[test]
    fn tables_grow_and_shed_tombstones_without_losing_entries() {
        let d = Directory::with_capacity(0);
        let name = |i: u32| format!("u{i}@example.com");
        for round in 0..3u32 {
            for i in 0..20_000u32 {
                d.update(&name(i), |r| {
                    let mut n = r.clone();
                    n.contacts.push(view(0, i + round, None));
                    Decision::Replace(n, ())
                });
                d.set_device(&format!("dev{i}"), &name(i));
            }
            assert_eq!(d.aor_count(), 20_000);
            for i in (0..20_000u32).step_by(97) {
                let n = name(i);
                assert_eq!(d.lookup(&n, 0).len(), 1, "{n} round {round}");
                let h = d.hash(&n);
                assert_eq!(
                    d.remove_binding_hashed(
                        h,
                        BindingRef {
                            core: 0,
                            slot: i + round,
                            gen: 1
                        }
                    )
                    .map(|c| c.binding.slot),
                    Some(i + round)
                );
                assert!(d.lookup(&n, 0).is_empty());
                d.update(&n, |r| {
                    let mut n = r.clone();
                    n.contacts.push(view(0, i + round, None));
                    Decision::Replace(n, ())
                });
            }
            // Remove everything: all tombstones.
            for i in 0..20_000u32 {
                let gone = d.remove_binding(
                    &name(i),
                    BindingRef {
                        core: 0,
                        slot: i + round,
                        gen: 1,
                    },
                );
                assert!(gone.is_some(), "u{i} round {round}");
                d.clear_device(&format!("dev{i}"));
            }
            assert_eq!(d.aor_count(), 0);
            assert_eq!(d.device_count(), 0);
        }
        let mut seen = 0;
        d.for_each(|_, _| seen += 1);
        assert_eq!(seen, 0);
    }

    #[test]
    fn readers_keep_reading_while_shards_are_rebuilt() {
        let d = std::sync::Arc::new(Directory::with_capacity(0));
        d.update("fixed@x", |_| {
            let mut n = AorRecord::default();
            n.contacts.push(view(0, 7, None));
            Decision::Replace(n, ())
        });
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (d, stop) = (d.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let got = d.lookup("fixed@x", 0);
                    assert_eq!(got.len(), 1);
                    assert_eq!(got[0].binding.slot, 7);
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..50_000u32 {
            d.update(&format!("grow{i}@x"), |_| {
                let mut n = AorRecord::default();
                n.contacts.push(view(1, i, None));
                Decision::Replace(n, ())
            });
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(d.aor_count(), 50_001);
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

    #[test]
    fn a_record_that_cannot_be_packed_is_not_stored_and_the_caller_is_told() {
        let d = Directory::new();
        let stored = |d: &Directory, contact: String| {
            d.update_then("a@x", |mut rec| {
                let mut v = view(0, 1, None);
                v.contact = contact.into();
                rec.contacts.push(v);
                Decision::Replace(rec, ())
            })
            .1
        };
        let huge = format!("sip:u@{}.example", "h".repeat(70_000));
        assert!(stored(&d, huge.clone()).is_none(), "new AOR");
        assert_eq!(d.aor_count(), 0);
        let kept = stored(&d, "sip:u@10.0.0.1".into()).expect("stored");
        assert_eq!(kept.contacts.len(), 1);
        assert!(stored(&d, huge).is_none(), "existing AOR");
        assert_eq!(d.lookup("a@x", 0).into_vec(), kept.contacts.into_vec());
    }
}
