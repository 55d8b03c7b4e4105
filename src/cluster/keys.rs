//! How ownership records sit in Redis, designed for memory.
//!
//! One key per record (a string with its own TTL) costs about 150 bytes in
//! Redis 7 (two dict entries, two objects, the key's SDS, the cluster's
//! per-slot bookkeeping), over the 100-byte goal. So records are grouped:
//! an AOR hashes to one of `cluster.buckets` hashes, `tether:o:<bucket>`,
//! where a record is one field, 16 bytes (the AOR's and the device's 64-bit
//! hashes), holding `node:core:expiry` (Unix seconds). A small hash is a
//! listpack in Redis: a record is then its field and value plus a few
//! bytes, and the bucket's own overhead is shared by its records.
//!
//! Redis 7.0 has no TTL per hash field, so a record's expiry is in its
//! value (a reader ignores a record past it) and each bucket's TTL covers
//! the latest expiry written into it (`EXPIRE NX` then `EXPIRE GT`): a
//! bucket nobody writes any more disappears, and with it the records of a
//! node that stopped. All devices of one AOR share a bucket, so one
//! `HGETALL` answers "who owns this AOR".
//!
//! The hashes are FNV-1a with a final mix, fixed here forever: every node,
//! of every version, must derive the same field from the same AOR.

use std::fmt::Write as _;

/// A 64-bit hash of `bytes`, the same on every node and version.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    StableHasher::new().bytes(bytes).finish()
}

/// [`stable_hash`] over several pieces, without joining them first.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl StableHasher {
    pub fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds `bytes` (FNV-1a).
    pub fn bytes(mut self, bytes: &[u8]) -> StableHasher {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// The hash. FNV's low bits mix poorly; splitmix64's finalizer makes
    /// every bit depend on every byte.
    pub fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher::new()
    }
}

/// Identifies one binding across the cluster: its AOR and device, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId {
    pub aor: u64,
    pub device: u64,
}

impl RecordId {
    /// The record of `device` (the `+sip.instance`, or the Contact URI when
    /// there is none) under `aor`.
    pub fn new(aor: &str, device: &str) -> RecordId {
        RecordId {
            aor: stable_hash(aor.as_bytes()),
            device: stable_hash(device.as_bytes()),
        }
    }

    /// The record of a registered contact: the device is its
    /// `+sip.instance` (and `reg-id`: each RFC 5626 flow of a device is its
    /// own binding), or its Contact URI when it has no instance.
    pub fn for_contact(
        aor: &str,
        instance: Option<&str>,
        reg_id: Option<u32>,
        contact: &str,
    ) -> RecordId {
        let device = match (instance, reg_id) {
            (Some(i), Some(r)) => StableHasher::new()
                .bytes(i.as_bytes())
                .bytes(b";reg-id=")
                .bytes(&r.to_be_bytes())
                .finish(),
            (Some(i), None) => stable_hash(i.as_bytes()),
            (None, _) => stable_hash(contact.as_bytes()),
        };
        RecordId {
            aor: stable_hash(aor.as_bytes()),
            device,
        }
    }

    /// The hash field: both hashes, big-endian.
    pub fn field(&self) -> [u8; 16] {
        let mut f = [0u8; 16];
        f[..8].copy_from_slice(&self.aor.to_be_bytes());
        f[8..].copy_from_slice(&self.device.to_be_bytes());
        f
    }

    /// Reads a field back; `None` for anything not 16 bytes.
    pub fn from_field(f: &[u8]) -> Option<RecordId> {
        let aor = u64::from_be_bytes(f.get(..8)?.try_into().ok()?);
        let device = u64::from_be_bytes(f.get(8..16)?.try_into().ok()?);
        (f.len() == 16).then_some(RecordId { aor, device })
    }
}

/// The Redis key of the bucket holding `aor`'s records.
pub fn bucket_key(aor: u64, buckets: u32) -> String {
    // High bits: the field starts with the AOR hash, so the bucket does
    // not repeat what the field already tells apart.
    bucket_key_at((aor >> 40) as u32 & (buckets - 1))
}

/// The Redis key of bucket number `b`.
pub fn bucket_key_at(b: u32) -> String {
    let mut k = String::with_capacity(20);
    let _ = write!(k, "tether:o:{b}");
    k
}

/// The heartbeat key of `node`: its advertised SIP address, with a TTL.
pub fn node_key(node: u32) -> String {
    format!("tether:node:{node}")
}

/// The hash listing every node that ever joined (node → SIP address), so
/// that a reader can enumerate nodes without scanning every master.
pub const NODES_KEY: &str = "tether:nodes";

/// The hash of every node's control API address (node → `host:port`),
/// written beside [`NODES_KEY`] when a node joins: a job posted to any node
/// hands each other node its part through that node's API (fan-out across
/// the cluster). A key of its own, so the SIP address records stay as they are.
pub const NODES_API_KEY: &str = "tether:nodes:api";
/// The list of eviction notices for `node`: another node took over one of
/// its records (the device registered there since). A list with a TTL,
/// not PUBLISH: a notice waits while its node is briefly away (reconnecting,
/// Redis failing over) and is read once that node is back; pub/sub would
/// lose it. The TTL ([`EVICT_TTL_S`]) bounds what a node that never comes
/// back leaves behind.
pub fn evict_key(node: u32) -> String {
    format!("tether:evict:{node}")
}

/// How long a node's notice list outlives its last notice (s). A node away
/// longer than this lost its heartbeat long ago; the device's own refresh
/// at the new node is then what counts.
pub const EVICT_TTL_S: u64 = 3600;

/// "Node `by` took over record `id` at Unix second `at`; it named core
/// `core` of the node the notice is for."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    pub id: RecordId,
    pub core: u16,
    pub by: u32,
    pub at: u64,
}

impl Notice {
    /// `<aor hex><device hex>:core:by:at`, readable with redis-cli.
    pub fn value(&self) -> String {
        format!(
            "{:016x}{:016x}:{}:{}:{}",
            self.id.aor, self.id.device, self.core, self.by, self.at
        )
    }

    /// Parses a value; `None` for anything malformed (any client could
    /// have pushed it).
    pub fn parse(v: &[u8]) -> Option<Notice> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.splitn(4, ':');
        let ids = it.next()?;
        if ids.len() != 32 || !ids.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let aor = u64::from_str_radix(ids.get(..16)?, 16).ok()?;
        let device = u64::from_str_radix(ids.get(16..)?, 16).ok()?;
        Some(Notice {
            id: RecordId { aor, device },
            core: it.next()?.parse().ok()?,
            by: it.next()?.parse().ok()?,
            at: it.next()?.parse().ok()?,
        })
    }
}

/// The SIP address in a heartbeat or [`NODES_KEY`] value: its first word.
/// Fields added later follow it after a space, so readers of this version
/// still find the address.
pub fn node_sip_addr(value: &str) -> &str {
    value.split_ascii_whitespace().next().unwrap_or("")
}

/// What a record says: who owns the binding and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub node: u32,
    pub core: u16,
    /// Unix seconds; past it the record is void.
    pub expiry: u64,
}

impl Owner {
    /// The hash value, `node:core:expiry`, readable with redis-cli.
    pub fn value(&self) -> String {
        format!("{}:{}:{}", self.node, self.core, self.expiry)
    }

    /// Parses a value; `None` for anything malformed (it came from Redis,
    /// which any client could have written).
    pub fn parse(v: &[u8]) -> Option<Owner> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.splitn(3, ':');
        let node = it.next()?.parse().ok()?;
        let core = it.next()?.parse().ok()?;
        let expiry = it.next()?.parse().ok()?;
        Some(Owner { node, core, expiry })
    }

    /// The value's prefix naming `node`: a delete only removes a record
    /// that still names this node (the device may have moved on).
    pub fn node_prefix(node: u32) -> String {
        format!("{node}:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fixed() {
        // Every node must agree on these forever: a change here strands
        // every record already written.
        assert_eq!(stable_hash(b""), stable_hash(b""));
        assert_ne!(stable_hash(b"alice"), stable_hash(b"alicf"));
        assert_eq!(stable_hash(b"sip:alice@example.com"), 0x8407_5c36_c0ee_7d9c);
    }

    #[test]
    fn field_round_trips_and_rejects_other_lengths() {
        let id = RecordId::new("sip:alice@example.com", "urn:uuid:1");
        assert_eq!(RecordId::from_field(&id.field()), Some(id));
        assert_eq!(RecordId::from_field(&id.field()[..15]), None);
        assert_eq!(RecordId::from_field(&[0u8; 17]), None);
        assert_eq!(RecordId::from_field(b""), None);
    }

    #[test]
    fn devices_of_one_aor_share_a_bucket() {
        let a = RecordId::new("sip:alice@example.com", "urn:uuid:1");
        let b = RecordId::new("sip:alice@example.com", "urn:uuid:2");
        assert_eq!(bucket_key(a.aor, 65536), bucket_key(b.aor, 65536));
        assert!(bucket_key(a.aor, 16).starts_with("tether:o:"));
        let n: u32 = bucket_key(u64::MAX, 16)["tether:o:".len()..]
            .parse()
            .unwrap();
        assert!(n < 16);
    }

    #[test]
    fn a_node_value_starts_with_its_sip_address() {
        assert_eq!(node_sip_addr("10.0.0.1:5060"), "10.0.0.1:5060");
        assert_eq!(
            node_sip_addr("10.0.0.1:5060 api=10.0.0.1:8080"),
            "10.0.0.1:5060"
        );
        assert_eq!(node_sip_addr(""), "");
    }

    #[test]
    fn value_round_trips_and_malformed_is_none() {
        let o = Owner {
            node: 3,
            core: 1,
            expiry: 1_764_770_000,
        };
        assert_eq!(o.value(), "3:1:1764770000");
        assert_eq!(Owner::parse(o.value().as_bytes()), Some(o));
        assert!(o.value().starts_with(&Owner::node_prefix(3)));
        for bad in [
            &b""[..],
            b"3",
            b"3:1",
            b"x:1:2",
            b"3:1:2:4",
            b"\xff:1:2",
            b"3:70000:1",
        ] {
            assert_eq!(Owner::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn notice_round_trips_and_malformed_is_none() {
        let n = Notice {
            id: RecordId::new("sip:alice@example.com", "urn:uuid:1"),
            core: 3,
            by: 2,
            at: 1_764_770_000,
        };
        assert_eq!(Notice::parse(n.value().as_bytes()), Some(n));
        assert_eq!(evict_key(4), "tether:evict:4");
        let good = n.value();
        for bad in [
            "",
            "00",
            &good[1..],
            &good.replacen(':', "", 1),
            &format!("{}:x", &good[..32]),
            &format!("{}g{}", &good[..5], &good[6..]),
            &format!("{good}:9"),
        ] {
            assert_eq!(Notice::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(Notice::parse(b"\xff"), None);
    }
}
