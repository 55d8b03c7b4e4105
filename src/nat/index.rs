//! The path index: from a path's key to its slot in the path table.

use super::{PathKey, Table};

/// Path key → the path's slot in the table. Buckets hold only the 4-byte
/// slot and the key is compared in the path itself: at a million paths that
/// is 5 bytes a bucket instead of 33 for a map of (key, slot).
#[derive(Default)]
pub(super) struct PathIndex {
    pub(super) table: hashbrown::HashTable<u32>,
    /// Seeded per table: remote addresses choose the keys.
    hasher: foldhash::fast::RandomState,
}

impl PathIndex {
    fn hash(&self, key: &PathKey) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    pub(super) fn get(&self, key: &PathKey, paths: &Table) -> Option<u32> {
        self.table.find(self.hash(key), holds(key, paths)).copied()
    }

    /// Indexes slot `i`, which already holds the path for `key`.
    pub(super) fn insert(&mut self, key: PathKey, i: u32, paths: &Table) {
        let hash = self.hash(&key);
        let rehash = rehasher(&self.hasher, paths);
        self.table.insert_unique(hash, i, rehash);
    }

    /// Room for `n` entries in all.
    pub(super) fn reserve(&mut self, n: usize, paths: &Table) {
        let more = n.saturating_sub(self.table.len());
        let rehash = rehasher(&self.hasher, paths);
        self.table.reserve(more, rehash);
    }

    /// Forgets `key`, before its slot is emptied.
    pub(super) fn remove(&mut self, key: &PathKey, paths: &Table) {
        if let Ok(e) = self.table.find_entry(self.hash(key), holds(key, paths)) {
            e.remove();
        }
    }
}

/// An index entry's hash, from its path's key (buckets keep only the slot).
fn rehasher<'a>(
    hasher: &'a foldhash::fast::RandomState,
    paths: &'a Table,
) -> impl Fn(&u32) -> u64 + 'a {
    move |&j| std::hash::BuildHasher::hash_one(hasher, paths.key(j))
}

/// Whether an index entry (a slot) holds the path for `key`.
fn holds<'a>(key: &'a PathKey, paths: &'a Table) -> impl Fn(&u32) -> bool + 'a {
    move |&i| paths.holds(i, key)
}
