//! Sources blocked for repeated authentication failures: a small per-core
//! map with a fixed bound. Every datagram from a blocked source is dropped
//! until its block ends; the API lists and lifts blocks.

use std::net::IpAddr;

use super::table::SourceKey;

/// One block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The address whose failures started it (an IPv6 block covers its /64).
    pub addr: IpAddr,
    pub since_ms: u64,
    pub until_ms: u64,
    /// Failures that led to it.
    pub failures: u32,
    /// Datagrams dropped since it started.
    pub dropped: u64,
}

/// The blocks of one core.
pub struct Blocks {
    map: hashbrown::HashMap<SourceKey, Block, foldhash::fast::FixedState>,
    max: usize,
    /// Blocks pushed out early to make room for a new one.
    pub evicted: u64,
    /// Blocks started.
    pub started: u64,
}

impl Blocks {
    /// At most `max` blocks at once; `seed` keys the hash.
    pub fn new(max: usize, seed: u64) -> Blocks {
        Blocks {
            map: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed)),
            max: max.max(1),
            evicted: 0,
            started: 0,
        }
    }

    /// Blocks held (some may have ended and wait for a sweep).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True when `key` is blocked at `now` (the datagram is counted as
    /// dropped); an ended block is removed here.
    pub fn check(&mut self, key: SourceKey, now: u64) -> bool {
        if self.map.is_empty() {
            return false;
        }
        match self.map.get_mut(&key) {
            Some(b) if b.until_ms > now => {
                b.dropped += 1;
                true
            }
            Some(_) => {
                self.map.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Blocks `key` until `block.until_ms`. When the map is full, the block
    /// ending soonest makes room (a spoofed flood of failures must not
    /// grow it without bound). `false` when `key` was blocked already.
    pub fn insert(&mut self, key: SourceKey, block: Block) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        if self.map.len() >= self.max {
            self.sweep(block.since_ms);
        }
        if self.map.len() >= self.max {
            if let Some(k) = self
                .map
                .iter()
                .min_by_key(|(_, b)| b.until_ms)
                .map(|(k, _)| *k)
            {
                self.map.remove(&k);
                self.evicted += 1;
            }
        }
        self.map.insert(key, block);
        self.started += 1;
        true
    }

    /// Drops the blocks that ended by `now`.
    pub fn sweep(&mut self, now: u64) {
        self.map.retain(|_, b| b.until_ms > now);
    }

    /// Lifts the block of `key`; `true` when there was one.
    pub fn remove(&mut self, key: SourceKey) -> bool {
        self.map.remove(&key).is_some()
    }

    /// The blocks in force at `now`.
    pub fn active(&self, now: u64) -> impl Iterator<Item = &Block> {
        self.map.values().filter(move |b| b.until_ms > now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::key_of;
    use super::*;

    fn block(addr: &str, since: u64, until: u64) -> (SourceKey, Block) {
        let addr: IpAddr = addr.parse().unwrap();
        let b = Block {
            addr,
            since_ms: since,
            until_ms: until,
            failures: 5,
            dropped: 0,
        };
        (key_of(addr), b)
    }

    #[test]
    fn a_block_drops_until_it_ends() {
        let mut m = Blocks::new(4, 1);
        let (k, b) = block("10.0.0.1", 0, 1_000);
        assert!(m.insert(k, b));
        assert!(!m.insert(k, b), "blocked once, logged once");
        assert!(m.check(k, 999));
        assert!(!m.check(key_of("10.0.0.2".parse().unwrap()), 999));
        assert!(!m.check(k, 1_000), "ended");
        assert_eq!(m.len(), 0, "removed when found ended");
        assert_eq!(m.started, 1);
    }

    #[test]
    fn full_map_drops_the_block_ending_soonest() {
        let mut m = Blocks::new(2, 1);
        let (a, ba) = block("10.0.0.1", 0, 5_000);
        let (b, bb) = block("10.0.0.2", 0, 3_000);
        let (c, bc) = block("10.0.0.3", 10, 9_000);
        assert!(m.insert(a, ba) && m.insert(b, bb) && m.insert(c, bc));
        assert_eq!(m.len(), 2);
        assert_eq!(m.evicted, 1);
        assert!(m.check(a, 20) && m.check(c, 20) && !m.check(b, 20));
    }

    #[test]
    fn lift_and_list() {
        let mut m = Blocks::new(8, 1);
        let (a, ba) = block("10.0.0.1", 0, 5_000);
        let (b, bb) = block("2001:db8::1", 0, 1_000);
        m.insert(a, ba);
        m.insert(b, bb);
        assert_eq!(m.active(2_000).count(), 1);
        assert!(m.remove(a));
        assert!(!m.remove(a));
        assert_eq!(m.active(0).count(), 1);
        m.sweep(1_000);
        assert_eq!(m.len(), 0);
    }
}
