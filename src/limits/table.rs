//! The per-core table of source addresses the limits track: fixed
//! capacity, set-associative (a keyed hash picks a set of [`WAYS`]
//! entries; a new source takes an empty way or evicts the one heard from
//! longest ago). A flood of spoofed sources therefore costs O(1) per
//! packet and no memory beyond the table, and cannot aim at one set: the
//! hash is keyed with a per-core secret seed.

use std::hash::BuildHasher;
use std::net::IpAddr;

use super::bucket::{Bucket, Rate};

/// Entries per set.
pub const WAYS: usize = 8;

/// A source as the limits count it: an IPv4 address, or an IPv6 /64 (one
/// subscriber's prefix: rotating the low 64 bits must not reset a limit).
/// 0 is never a source (IPv4 keys carry the `::ffff:0:0/96` mapping bits,
/// IPv6 keys have bit 0 set), so it marks an empty way.
pub type SourceKey = u128;

/// The key of `ip`; an IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn key_of(ip: IpAddr) -> SourceKey {
    match ip.to_canonical() {
        IpAddr::V4(v4) => 0xffff_u128 << 32 | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6) >> 64 << 64 | 1,
    }
}

/// Requests the limits tell apart (each has its own bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Register = 0,
    Invite = 1,
    Other = 2,
}

/// What the table keeps about one source (96 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub key: SourceKey,
    /// Last request from it (ms).
    pub seen_ms: u64,
    /// One bucket per [`Kind`].
    pub buckets: [Bucket; 3],
    /// Authentication failures since `failures_since_ms`.
    pub failures: u32,
    pub failures_since_ms: u64,
    /// When it was last answered `503` for a limit (ms); 0 = never.
    pub answered_ms: u64,
}

impl Entry {
    fn new(key: SourceKey, rates: &[Rate; 3], now: u64) -> Entry {
        Entry {
            key,
            seen_ms: now,
            buckets: [
                Bucket::full(rates[0], now),
                Bucket::full(rates[1], now),
                Bucket::full(rates[2], now),
            ],
            failures: 0,
            failures_since_ms: now,
            answered_ms: 0,
        }
    }

    const EMPTY: Entry = Entry {
        key: 0,
        seen_ms: 0,
        buckets: [Bucket::ZERO; 3],
        failures: 0,
        failures_since_ms: 0,
        answered_ms: 0,
    };
}

/// The table. Only its core touches it: no lock, no atomics.
pub struct SourceTable {
    ways: Vec<Entry>,
    /// Sets − 1 (the set count is a power of two).
    mask: usize,
    hasher: foldhash::fast::FixedState,
    live: usize,
    /// Sources pushed out to make room for new ones.
    pub evictions: u64,
}

impl SourceTable {
    /// Room for about `capacity` sources (rounded up to whole sets, a
    /// power of two of them); `seed` keys the hash.
    pub fn new(capacity: usize, seed: u64) -> SourceTable {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        SourceTable {
            ways: vec![Entry::EMPTY; sets * WAYS],
            mask: sets - 1,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            live: 0,
            evictions: 0,
        }
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Sources the table can hold.
    pub fn capacity(&self) -> usize {
        self.ways.len()
    }

    fn set(&self, key: SourceKey) -> std::ops::Range<usize> {
        // foldhash's fast hash mixes its high bits best; sequential keys
        // (a flood walking an address range) left low-bit sets uneven.
        let h = self
            .hasher
            .hash_one(key)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let start = ((h >> 32) as usize & self.mask) * WAYS;
        start..start + WAYS
    }

    /// The entry of `key`, if the table holds it.
    pub fn get(&self, key: SourceKey) -> Option<&Entry> {
        self.ways[self.set(key)].iter().find(|e| e.key == key)
    }

    /// The entry of `key`, made at `now` with full buckets if it is new
    /// (taking an empty way of its set, or evicting the set's entry heard
    /// from longest ago); its `seen_ms` becomes `now`.
    pub fn entry(&mut self, key: SourceKey, rates: &[Rate; 3], now: u64) -> &mut Entry {
        let set = self.set(key);
        let ways = &mut self.ways[set];
        let i = match ways.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                // Empty ways have `seen_ms` 0 but are preferred outright.
                let (i, victim) = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| (e.key != 0, e.seen_ms))
                    .expect("WAYS > 0");
                if victim.key == 0 {
                    self.live += 1;
                } else {
                    self.evictions += 1;
                }
                ways[i] = Entry::new(key, rates, now);
                i
            }
        };
        let e = &mut ways[i];
        e.seen_ms = e.seen_ms.max(now);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: [Rate; 3] = [Rate { per_s: 1, burst: 2 }; 3];

    #[test]
    fn keys_tell_v4_from_v6_and_group_a_v6_prefix() {
        let v4 = key_of("192.0.2.1".parse().unwrap());
        assert_eq!(v4, key_of("::ffff:192.0.2.1".parse().unwrap()));
        let a = key_of("2001:db8:1:2::1".parse().unwrap());
        let b = key_of("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b, "one /64 is one source");
        assert_ne!(a, key_of("2001:db8:1:3::1".parse().unwrap()));
        assert_ne!(key_of("::1".parse().unwrap()), 0, "never the empty key");
        assert_ne!(key_of("0.0.0.0".parse().unwrap()), 0);
        assert_ne!(v4, a);
    }

    #[test]
    fn an_entry_is_kept_and_found_again() {
        let mut t = SourceTable::new(64, 7);
        let k = key_of("10.0.0.1".parse().unwrap());
        assert!(t.entry(k, &RATES, 5).buckets[0].take(RATES[0], 5));
        assert!(t.entry(k, &RATES, 6).buckets[0].take(RATES[0], 6));
        assert!(!t.entry(k, &RATES, 7).buckets[0].take(RATES[0], 7));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(k).map(|e| e.seen_ms), Some(7));
    }

    #[test]
    fn a_flood_of_new_sources_stays_within_capacity_and_spares_busy_ones() {
        let mut t = SourceTable::new(1024, 99);
        let busy = key_of("10.9.9.9".parse().unwrap());
        for i in 0..200_000u32 {
            let now = u64::from(i);
            // The busy source sends now and then; spoofed ones never twice.
            if i % 50 == 0 {
                let e = t.entry(busy, &RATES, now);
                assert_eq!(e.key, busy);
            }
            t.entry(key_of(std::net::Ipv4Addr::from(i + 1).into()), &RATES, now);
            assert!(t.len() <= t.capacity());
        }
        assert_eq!(t.len(), t.capacity(), "full, not grown");
        assert!(t.evictions >= 200_000 - t.capacity() as u64);
        // Its entry survived: 50 new sources between two of its requests
        // rarely reach its set of eight, and never evict it before the
        // seven quieter ones there.
        assert!(t.get(busy).is_some());
    }
}
