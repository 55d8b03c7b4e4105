//! The path index: from a path's key to its slot in the path table.

use super::{PathKey, Table};

/// Path key → the path's slot in the table. Buckets hold only the 4-byte
/// slot and the key is compared in the path itself: at a million paths that
/// is 5 bytes a bucket instead of 33 for a map of (key, slot).
///
/// Sharded: a hashbrown table has a power of two of buckets and holds at
/// most 7/8 of them, so one table of 1,000,000 paths has 2^21 buckets, 48%
/// full. [`PathIndex::reserve`] on an empty index splits it into as many
/// tables of a smaller power of two as the paths need, about 80% full at
/// the reserved count (a shard growing past its share rehashes only
/// itself). The shard is picked by hash bits the tables do not use for the
/// bucket position (the low bits) nor the tag (the top 7).
pub(super) struct PathIndex {
    shards: Vec<hashbrown::HashTable<u32>>,
    /// Seeded per table: remote addresses choose the keys.
    hasher: foldhash::fast::RandomState,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex {
            shards: vec![hashbrown::HashTable::new()],
            hasher: Default::default(),
        }
    }
}

/// Below this many reserved paths one table is kept (a shard's buckets
/// would be too few for its count to be even).
const SHARD_FROM: usize = 1 << 16;

impl PathIndex {
    fn hash(&self, key: &PathKey) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, key)
    }

    /// The shard of a hash: bits 24..56 scaled to the shard count.
    fn shard(&self, hash: u64) -> usize {
        shard_of(hash, self.shards.len())
    }

    /// Paths indexed.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(hashbrown::HashTable::len).sum()
    }

    /// Buckets held over all shards (hashbrown: a power of two holding at
    /// most 7/8 of them), for the memory benches.
    pub(super) fn buckets(&self) -> usize {
        self.shards
            .iter()
            .map(|t| match t.capacity() {
                0 => 0,
                c => (c * 8 / 7).next_power_of_two(),
            })
            .sum()
    }

    pub(super) fn get(&self, key: &PathKey, paths: &Table) -> Option<u32> {
        let hash = self.hash(key);
        self.shards[self.shard(hash)]
            .find(hash, holds(key, paths))
            .copied()
    }

    /// Indexes slot `i`, which already holds the path for `key`.
    pub(super) fn insert(&mut self, key: PathKey, i: u32, paths: &Table) {
        let hash = self.hash(&key);
        let rehash = rehasher(&self.hasher, paths);
        let k = self.shard(hash);
        self.shards[k].insert_unique(hash, i, rehash);
    }

    /// Room for `n` entries in all. On an empty index, first picks the
    /// shard count for `n` (see the type).
    pub(super) fn reserve(&mut self, n: usize, paths: &Table) {
        if self.len() == 0 && n >= SHARD_FROM {
            // Shards of a sixteenth of n's power of two: 10 to 20 of them,
            // each reserved for its share plus 5% (the shares of a random
            // hash differ by far less at these counts).
            let per = n.next_power_of_two() / 16 / 8 * 7;
            let count = (n + n / 20).div_ceil(per);
            self.shards = (0..count).map(|_| hashbrown::HashTable::new()).collect();
        }
        let count = self.shards.len();
        let rehash = rehasher(&self.hasher, paths);
        for t in &mut self.shards {
            let share = if count == 1 { n } else { (n + n / 20) / count };
            t.reserve(share.saturating_sub(t.len()), &rehash);
        }
    }

    /// Forgets `key`, before its slot is emptied.
    pub(super) fn remove(&mut self, key: &PathKey, paths: &Table) {
        let hash = self.hash(key);
        let k = self.shard(hash);
        if let Ok(e) = self.shards[k].find_entry(hash, holds(key, paths)) {
            e.remove();
        }
    }
}

fn shard_of(hash: u64, count: usize) -> usize {
    ((((hash >> 24) & 0xFFFF_FFFF) * count as u64) >> 32) as usize
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
