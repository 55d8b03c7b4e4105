//! The generic epoch-protected sharded table under the directory's AOR and
//! device tables, and all of the directory's unsafe code.
//!
//! A table is 64 shards by hash, each an open-addressing array of slots `S`
//! probed linearly from a start taken from the hash, behind a crossbeam-epoch
//! [`Atomic`], with a write lock that holds the shard's fill counts. Readers
//! pin the epoch and probe without locks ([`Sharded::read`]); a writer takes
//! its shard's lock and changes slots in place, one atomic slot at a time
//! ([`Sharded::write`]). When one more entry would fill a shard past
//! `MAX_FILL`, the writer copies its live entries into a new array (twice
//! the size when more than half full, else the same size without
//! tombstones), swaps it in, and retires the old one through the epoch.
//!
//! The AOR table's slots are [`BlockSlot`]s: 8 bytes, a 16-bit tag from the
//! hash beside a 48-bit pointer to a packed block (`packed`), so a probe
//! skips other AORs' blocks without reading them. A change stores a new
//! block and retires the old one through the epoch.
//!
//! # Invariants (every `unsafe` block below cites them by number)
//!
//! 1. **Tables.** A shard's table pointer is never null while its
//!    [`Sharded`] lives. A table is freed only through the epoch after it has
//!    been swapped out ([`Writer::rebuild`]), or by [`Sharded`]'s `Drop`. So
//!    a table loaded while pinned stays allocated until the pin ends. Only
//!    the holder of the shard's write lock swaps the table, so under the
//!    lock the table loaded is the current one.
//! 2. **Blocks.** A live [`BlockSlot`] value (above `TOMBSTONE`) is
//!    `tag << 48 | address` of a `Box<[u8]>` given up by `entry_for`, which
//!    starts with its length (a varint, `packed::block_len`, checked there),
//!    and which is never written again until it is freed.
//! 3. **One current slot per block.** A block's address is in at most one
//!    slot of its shard's current table: it enters an empty slot when
//!    stored, and is copied only by a rebuild, into the table that replaces
//!    the one it came from. Tables own no block (`BlockSlot` has no `Drop`),
//!    so a retired table, which may still hold copies, frees nothing.
//!    Nothing outside this module can copy a `BlockSlot` ([`Slot::copy_to`]
//!    needs a [`Sealed`]) or write one (only [`Writer`]'s methods do).
//! 4. **Retiring a block.** A writer, under the lock and so on the current
//!    table (1), swaps the block out of its slot, then defers its free
//!    through the epoch. After the swap no reader can newly reach it: not
//!    through the current table (3), and a stale copy lives only in a table
//!    retired before the swap, which only readers pinned at that time still
//!    hold. The epoch frees the block only after every pin held at the
//!    deferral has ended, and a reader that reached the block through any
//!    table was pinned then.
//! 5. **Drop.** `Sharded`'s `Drop` has `&mut self`: no reader or writer is
//!    left. It frees each current table and each block still in one, once
//!    (3); blocks retired before are no longer in a current table (4).
//! 6. **Pins.** Every guard comes from `epoch::pin()` (the one collector
//!    that retired tables and blocks are deferred to) and is held in a
//!    [`Pinned`] that only this module makes; references read under a pin
//!    carry its lifetime, so none outlives it.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use parking_lot::Mutex;

use crate::registrar::packed;

const SHARDS: usize = 64;
/// Slot values with a meaning of their own; hashes and entries avoid them.
pub(super) const EMPTY: u64 = 0;
pub(super) const TOMBSTONE: u64 = 1;
/// User-space pointers on x86-64 and aarch64 Linux fit in 48 bits; the 16
/// above carry the tag.
const ADDR_MASK: u64 = (1 << 48) - 1;
/// A table is rebuilt when live entries and tombstones fill this share (%).
const MAX_FILL: usize = 85;

/// Proof that a call comes from this module: only it can make one.
pub(super) struct Sealed(());

/// A slot type of a [`Sharded`] table.
pub(super) trait Slot: Default {
    /// Copies this slot's entry into `to`, a slot of the table a rebuild is
    /// building (not yet visible to readers).
    fn copy_to(&self, to: &Self, _: Sealed);

    /// Frees what the entry owns, when its table is dropped with the whole
    /// [`Sharded`] (never for a table retired by a rebuild: the entries
    /// moved on).
    fn free(&mut self, _: Sealed) {}
}

/// An epoch pin (invariant 6): what is read under it lives as long as it.
pub(super) struct Pinned(Guard);

/// One shard's slots; replaced whole when it grows or sheds tombstones.
struct Table<S> {
    slots: Box<[S]>,
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

impl<S: Slot> Shard<S> {
    fn new(len: usize) -> Shard<S> {
        Shard {
            write: Mutex::new(Fill::default()),
            table: Atomic::new(Table {
                slots: (0..len.max(16)).map(|_| S::default()).collect(),
            }),
        }
    }

    /// The current slots, valid while `p` is pinned.
    #[inline]
    fn current<'g>(&'g self, p: &'g Pinned) -> &'g [S] {
        // SAFETY: the pointer is never null and the table is freed only
        // through the epoch (1), so it outlives the pin `p` (6).
        unsafe { &self.table.load(Ordering::Acquire, &p.0).deref().slots }
    }
}

/// A table of slots `S` in 64 shards.
pub(super) struct Sharded<S: Slot> {
    shards: Box<[Shard<S>]>,
}

impl<S: Slot> Sharded<S> {
    /// Sized for `capacity` entries up front, at 80% fill.
    pub(super) fn with_capacity(capacity: usize) -> Sharded<S> {
        let per_shard = capacity.div_ceil(SHARDS) * 100 / (MAX_FILL - 5);
        Sharded {
            shards: (0..SHARDS).map(|_| Shard::new(per_shard)).collect(),
        }
    }

    /// Pins the epoch and calls `f` with the current slots of `hash`'s
    /// shard, without blocking.
    #[inline]
    pub(super) fn read<R>(&self, hash: u64, f: impl FnOnce(&[S], &Pinned) -> R) -> R {
        let p = Pinned(epoch::pin());
        let slots = self.shards[shard_of(hash)].current(&p);
        f(slots, &p)
    }

    /// Calls `f` with each shard's current slots in turn, each under a pin
    /// of its own.
    pub(super) fn for_each_shard(&self, mut f: impl FnMut(&[S], &Pinned)) {
        for shard in self.shards.iter() {
            let p = Pinned(epoch::pin());
            f(shard.current(&p), &p);
        }
    }

    /// Takes `hash`'s shard's write lock, pins, and calls `f` with a
    /// [`Writer`] on the shard's current slots.
    #[inline]
    pub(super) fn write<R>(&self, hash: u64, f: impl FnOnce(&mut Writer<'_, S>) -> R) -> R {
        let shard = &self.shards[shard_of(hash)];
        let mut fill = shard.write.lock();
        let p = Pinned(epoch::pin());
        let slots = shard.current(&p);
        f(&mut Writer {
            shard,
            fill: &mut fill,
            pinned: &p,
            slots,
        })
    }
}

impl<S: Slot> Drop for Sharded<S> {
    fn drop(&mut self) {
        for shard in self.shards.iter_mut() {
            let table = std::mem::replace(&mut shard.table, Atomic::null());
            // SAFETY: `&mut self`: nothing else holds the table (5); it is
            // the current one, so not also deferred to the epoch (1), and it
            // is never null (1).
            let mut table = unsafe { table.into_owned() };
            for s in table.slots.iter_mut() {
                s.free(Sealed(()));
            }
        }
    }
}

/// One shard under its write lock and a pin: the only way to change slots.
pub(super) struct Writer<'g, S: Slot> {
    shard: &'g Shard<S>,
    fill: &'g mut Fill,
    pinned: &'g Pinned,
    /// Always the current table's (1): rebuilds update it.
    slots: &'g [S],
}

impl<'g, S: Slot> Writer<'g, S> {
    pub(super) fn slots(&self) -> &'g [S] {
        self.slots
    }

    pub(super) fn pinned(&self) -> &'g Pinned {
        self.pinned
    }

    /// True when one more entry would fill the shard past `MAX_FILL`:
    /// rebuild before taking a free slot.
    pub(super) fn full(&self) -> bool {
        (self.fill.live + self.fill.tombstones + 1) * 100 > self.slots.len() * MAX_FILL
    }

    /// Counts a free slot taken (it held a tombstone, or was empty).
    pub(super) fn taken(&mut self, was_tombstone: bool) {
        if was_tombstone {
            self.fill.tombstones -= 1;
        }
        self.fill.live += 1;
    }

    /// Counts a live slot turned into a tombstone.
    pub(super) fn vacated(&mut self) {
        self.fill.live -= 1;
        self.fill.tombstones += 1;
    }

    /// Copies the live entries (those `hash_of` gives a hash) into a fresh
    /// table, twice the size when more than half full, else the same size
    /// without tombstones, and installs it. Probe again afterwards: slots
    /// found before belong to the old table.
    pub(super) fn rebuild(&mut self, hash_of: impl Fn(&S) -> Option<u64>) {
        let old = self.slots;
        let len = grown_len(old.len(), self.fill.live);
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
                s.copy_to(&slots[i], Sealed(()));
            }
        }
        self.fill.tombstones = 0;
        self.slots = install(&self.shard.table, slots, &self.pinned.0);
    }
}

fn grown_len(len: usize, live: usize) -> usize {
    if (live + 1) * 2 > len {
        len * 2
    } else {
        len
    }
}

/// Publishes a rebuilt table and retires the old one; returns the new slots.
/// Called under the shard's write lock.
fn install<'g, S>(table: &Atomic<Table<S>>, slots: Box<[S]>, g: &'g Guard) -> &'g [S] {
    let new = Owned::new(Table { slots }).into_shared(g);
    let old = table.swap(new, Ordering::AcqRel, g);
    // SAFETY: `old` was the current table (1) and is swapped out: new
    // readers cannot load it, and the epoch waits for pinned ones. Only the
    // lock holder swaps, so it is retired once.
    unsafe { g.defer_destroy(old) };
    // SAFETY: `new` is the current table now, freed only through the epoch
    // (1), so it outlives the pin `g`.
    unsafe { &new.deref().slots }
}

/// The outcome of looking at one slot while probing.
pub(super) enum Probe<T> {
    Empty,
    Tombstone,
    /// Another key's entry.
    Miss,
    Hit(T),
}

/// Probes `slots` for `hash`'s entry, asking `look` about each slot:
/// `Ok((slot, what look found))`, or `Err(slot)` where the entry would go
/// (the first tombstone passed, else the empty slot that ended the probe).
#[inline]
pub(super) fn probe<'s, S, T>(
    slots: &'s [S],
    hash: u64,
    mut look: impl FnMut(&'s S) -> Probe<T>,
) -> Result<(usize, T), usize> {
    let len = slots.len();
    let mut i = start(hash, len);
    let mut free = None;
    for _ in 0..len {
        match look(&slots[i]) {
            Probe::Empty => return Err(free.unwrap_or(i)),
            Probe::Tombstone => {
                free.get_or_insert(i);
            }
            Probe::Miss => {}
            Probe::Hit(t) => return Ok((i, t)),
        }
        i = if i + 1 == len { 0 } else { i + 1 };
    }
    Err(free.expect("tables are rebuilt before they fill"))
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

/// A slot of the AOR table: `EMPTY`, `TOMBSTONE`, or a tagged pointer to a
/// packed block (invariant 2).
#[derive(Default)]
#[repr(transparent)]
pub(super) struct BlockSlot(AtomicU64);

impl BlockSlot {
    /// What the slot holds now, readable while `p` is pinned.
    #[inline]
    pub(super) fn load<'g>(&'g self, _p: &'g Pinned) -> Entry<'g> {
        Entry {
            raw: self.0.load(Ordering::Acquire),
            _pin: PhantomData,
        }
    }
}

impl Slot for BlockSlot {
    fn copy_to(&self, to: &Self, _: Sealed) {
        to.0.store(self.0.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn free(&mut self, _: Sealed) {
        let raw = std::mem::replace(self.0.get_mut(), EMPTY);
        if raw > TOMBSTONE {
            // SAFETY: a live entry (2) of a current table being dropped with
            // its `Sharded` (only caller: `Drop`, via `Sealed`): nothing reads
            // it any more, no other current slot holds it (3), and it was not
            // retired (4), so this is its one free (5).
            unsafe { free_block(raw & ADDR_MASK) }
        }
    }
}

/// A [`BlockSlot`]'s value as loaded under a pin (`'g`).
#[derive(Clone, Copy)]
pub(super) struct Entry<'g> {
    raw: u64,
    _pin: PhantomData<&'g Pinned>,
}

impl<'g> Entry<'g> {
    pub(super) fn is_empty(self) -> bool {
        self.raw == EMPTY
    }

    pub(super) fn is_tombstone(self) -> bool {
        self.raw == TOMBSTONE
    }

    /// The block, when the entry is live and tagged as `hash` would tag it
    /// (else `None` without reading the block).
    #[inline]
    pub(super) fn block_tagged(self, hash: u64) -> Option<&'g [u8]> {
        if self.raw >> 48 == tag(hash) {
            self.block()
        } else {
            None
        }
    }

    /// The block, when the entry is live.
    #[inline]
    pub(super) fn block(self) -> Option<&'g [u8]> {
        if self.raw <= TOMBSTONE {
            return None;
        }
        let p: *const u8 = std::ptr::with_exposed_provenance((self.raw & ADDR_MASK) as usize);
        // SAFETY: a live entry points at a block that starts with its length
        // (2), of which `block_len` reads no more than its varint; loaded
        // from a slot under the pin `'g`, so not freed before the pin ends
        // (1, 4, 6).
        let len = packed::block_len(|i| unsafe { p.add(i).read() });
        // SAFETY: as above; `p..p + len` is the block's whole allocation,
        // initialised and never written while stored (2).
        Some(unsafe { std::slice::from_raw_parts(p, len) })
    }
}

impl<'g> Writer<'g, BlockSlot> {
    /// Stores `block`, filed under `hash`, in free slot `i` (a probe's
    /// `Err`). The block must start with its length (`packed::encode`).
    pub(super) fn insert(&mut self, i: usize, block: Box<[u8]>, hash: u64) {
        let e = entry_for(block, hash);
        let slot = &self.slots[i].0;
        let was = slot.load(Ordering::Relaxed);
        debug_assert!(was <= TOMBSTONE, "insert into a free slot");
        self.taken(was == TOMBSTONE);
        slot.store(e, Ordering::Release);
    }

    /// Replaces live slot `i`'s block (a probe's `Ok`) with `next`'s block
    /// filed under its hash, or with a tombstone; retires the old block.
    pub(super) fn replace(&mut self, i: usize, next: Option<(Box<[u8]>, u64)>) {
        let e = match next {
            Some((block, hash)) => entry_for(block, hash),
            None => {
                self.vacated();
                TOMBSTONE
            }
        };
        let prev = self.slots[i].0.swap(e, Ordering::AcqRel);
        debug_assert!(prev > TOMBSTONE, "replace a live slot");
        if prev > TOMBSTONE {
            retire(prev, &self.pinned.0);
        }
    }
}

/// A slot value for `block`: gives the block up to the table (invariant 2).
fn entry_for(block: Box<[u8]>, hash: u64) -> u64 {
    assert_eq!(
        packed::stated_len(&block),
        Some(block.len()),
        "a block starts with its length"
    );
    let addr = Box::into_raw(block).cast::<u8>().expose_provenance() as u64;
    assert_eq!(addr & !ADDR_MASK, 0, "heap address beyond 48 bits");
    tag(hash) << 48 | addr
}

/// Frees a block once no reader can reach it: `prev` was just swapped out
/// of a slot of the current table, under the write lock.
fn retire(prev: u64, g: &Guard) {
    let addr = prev & ADDR_MASK;
    let free = move || {
        // SAFETY: `addr` is a block (2) that no reader can reach any more
        // (4); the slot gave it up, so this is its one free.
        unsafe { free_block(addr) }
    };
    // SAFETY: `free` holds only an address (nothing on this stack, fine on
    // any thread) and runs once, after every pin held now has ended (4).
    unsafe { g.defer_unchecked(free) }
}

/// Frees a block.
///
/// # Safety
/// `addr` is the address part of a live [`BlockSlot`] value (invariant 2),
/// not freed before, and nothing reads the block afterwards.
unsafe fn free_block(addr: u64) {
    let p: *mut u8 = std::ptr::with_exposed_provenance_mut(addr as usize);
    // SAFETY: by the contract, `p` is a live block, which starts with its
    // length (2), of which `block_len` reads no more than its varint.
    let len = packed::block_len(|i| unsafe { p.add(i).read() });
    // SAFETY: `p` and `len` are the pointer and length of the `Box<[u8]>`
    // that `entry_for` gave up, freed once (contract).
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, len)) });
}

#[cfg(test)]
mod tests {
    use crate::registrar::binding::BindingRef;
    use crate::registrar::directory::tests::view;
    use crate::registrar::directory::{AorRecord, Decision, Directory};

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
}
