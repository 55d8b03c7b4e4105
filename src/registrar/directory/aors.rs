//! The AOR table: each AOR's packed block ([`packed`]: its name and every
//! contact with its strings), on the generic sharded table. A change packs
//! a new block and swaps it in; readers holding the old one keep a whole,
//! consistent record.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::table::{probe, BlockSlot, Pinned, Probe, Sharded};
use super::{AorRecord, Decision};
use crate::registrar::binding::ContactView;
use crate::registrar::packed;

type Hasher = foldhash::fast::RandomState;

/// How a probe for an AOR recognises its block: by name, or (for callers
/// that keep only the hash) by the hash of the name.
#[derive(Clone, Copy)]
pub(super) enum Key<'a> {
    Name(&'a str),
    Hash,
}

pub(super) struct AorTable {
    /// Files every name the directory keeps (AORs, and device ids for the
    /// device table).
    hasher: Hasher,
    table: Sharded<BlockSlot>,
    /// AORs with at least one contact.
    count: AtomicUsize,
    /// Where every change goes when persistence is on: sent under the
    /// shard's write lock, so one AOR's changes reach the journal in the
    /// order they were made.
    pub(super) journal: std::sync::OnceLock<crate::persist::Sink>,
}

impl AorTable {
    pub(super) fn with_capacity(capacity: usize) -> AorTable {
        AorTable {
            hasher: Hasher::default(),
            table: Sharded::with_capacity(capacity),
            count: AtomicUsize::new(0),
            journal: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn hash(&self, name: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, name)
    }

    pub(super) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Finds an AOR's block: `Ok((slot, block))`, or `Err(slot)` where it
    /// would go.
    fn find<'g>(
        &self,
        slots: &'g [BlockSlot],
        hash: u64,
        key: Key<'_>,
        p: &'g Pinned,
    ) -> Result<(usize, &'g [u8]), usize> {
        probe(slots, hash, |s| {
            let e = s.load(p);
            if e.is_empty() {
                return Probe::Empty;
            }
            if e.is_tombstone() {
                return Probe::Tombstone;
            }
            let Some(b) = e.block_tagged(hash) else {
                return Probe::Miss;
            };
            let name = packed::aor(b);
            let hit = match key {
                Key::Name(n) => n == name,
                Key::Hash => self.hash(name) == hash,
            };
            if hit {
                Probe::Hit(b)
            } else {
                Probe::Miss
            }
        })
    }

    /// Calls `f` with the AOR's block (or `None`), without blocking.
    pub(super) fn with_block<R>(
        &self,
        hash: u64,
        key: Key<'_>,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> R {
        self.table.read(hash, |slots, p| {
            f(self.find(slots, hash, key, p).ok().map(|(_, b)| b))
        })
    }

    /// Runs `f` on the AOR's record under its shard's write lock and stores
    /// what it decides: `None` when the AOR is known by hash only and has no
    /// record; else `f`'s verdict and the record stored (`None` when the old
    /// one stays: [`Decision::Keep`], or a record too long to pack).
    pub(super) fn update<T>(
        &self,
        hash: u64,
        key: Key<'_>,
        f: impl FnOnce(AorRecord) -> Decision<T>,
    ) -> Option<(T, Option<AorRecord>)> {
        self.table.write(hash, |w| {
            let p = w.pinned();
            match self.find(w.slots(), hash, key, p) {
                Ok((i, old)) => {
                    let (next, verdict) = match f(packed::decode(old)) {
                        Decision::Keep(v) => return Some((v, None)),
                        Decision::Replace(next, v) => (next, v),
                    };
                    if next.contacts.is_empty() {
                        self.count.fetch_sub(1, Ordering::Relaxed);
                        if let Some(j) = self.journal.get() {
                            j.removed(packed::aor(old));
                        }
                        w.replace(i, None);
                    } else {
                        match packed::encode(packed::aor(old), &next) {
                            Ok(b) => {
                                if let Some(j) = self.journal.get() {
                                    j.changed(&b);
                                }
                                w.replace(i, Some((b, hash)))
                            }
                            // Fields come from one datagram each and contacts
                            // are capped (registrar.max_contacts ≤ 65535), so
                            // no REGISTER makes such a record; keep the old one.
                            Err(packed::TooLong) => {
                                tracing::error!(aor = packed::aor(old), "record too long to store");
                                return Some((verdict, None));
                            }
                        }
                    }
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
                    if w.full() {
                        w.rebuild(|s| s.load(p).block().map(|b| self.hash(packed::aor(b))));
                        i = self
                            .find(w.slots(), hash, key, p)
                            .expect_err("absent before the rebuild");
                    }
                    if let Some(j) = self.journal.get() {
                        j.changed(&b);
                    }
                    w.insert(i, b, hash);
                    self.count.fetch_add(1, Ordering::Relaxed);
                    Some((verdict, Some(next)))
                }
            }
        })
    }

    /// Stores a block as it is (replacing the AOR's, if any), without
    /// journaling it: for a restore, whose blocks come from the journal.
    pub(super) fn put_block(&self, block: Box<[u8]>) {
        let hash = self.hash(packed::aor(&block));
        self.table.write(hash, |w| {
            let p = w.pinned();
            let found = self
                .find(w.slots(), hash, Key::Name(packed::aor(&block)), p)
                .map(|(i, _)| i);
            match found {
                Ok(i) => w.replace(i, Some((block, hash))),
                Err(mut i) => {
                    if w.full() {
                        w.rebuild(|s| s.load(p).block().map(|b| self.hash(packed::aor(b))));
                        i = self
                            .find(w.slots(), hash, Key::Name(packed::aor(&block)), p)
                            .map(|(i, _)| i)
                            .expect_err("absent before the rebuild");
                    }
                    w.insert(i, block, hash);
                    self.count.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    /// Calls `f` with every AOR's packed block (a snapshot per AOR).
    pub(super) fn for_each_block(&self, mut f: impl FnMut(&[u8])) {
        self.table.for_each_shard(|slots, p| {
            for b in slots.iter().filter_map(|s| s.load(p).block()) {
                f(b);
            }
        });
    }

    /// Calls `f` for every contact of every AOR (a snapshot per AOR).
    pub(super) fn for_each(&self, mut f: impl FnMut(&Arc<str>, &ContactView)) {
        self.table.for_each_shard(|slots, p| {
            for b in slots.iter().filter_map(|s| s.load(p).block()) {
                let aor: Arc<str> = packed::aor(b).into();
                for c in packed::contacts(b) {
                    f(&aor, &c.to_view());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::registrar::directory::tests::view;
    use crate::registrar::directory::{AorRecord, Decision, Directory};

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
