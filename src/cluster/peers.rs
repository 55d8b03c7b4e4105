//! The other nodes, for fan-out across the cluster: which nodes are alive
//! and where their control APIs are, and which nodes own an AOR's devices.
//! Blocking Redis calls: only for side threads (the API's job coordinator),
//! never a worker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redis::cluster::{cluster_pipe, ClusterConnection};

use super::keys::{bucket_key, node_key, stable_hash, Owner, RecordId, NODES_API_KEY, NODES_KEY};

/// Commands per pipeline (as the publisher's batches).
const BATCH: usize = 2000;

/// A node of the cluster as its records show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: u32,
    /// Its control API (`host:port`), when it published one.
    pub api: Option<String>,
}

/// The nodes whose heartbeat lives now, by number.
pub fn live_nodes(conn: &mut ClusterConnection) -> redis::RedisResult<BTreeMap<u32, Peer>> {
    let joined: HashMap<String, String> = redis::cmd("HGETALL").arg(NODES_KEY).query(conn)?;
    let apis: HashMap<String, String> = redis::cmd("HGETALL").arg(NODES_API_KEY).query(conn)?;
    // Anything that is not a number was not written by a node: skipped.
    let nodes: Vec<u32> = joined.keys().filter_map(|k| k.parse().ok()).collect();
    let mut p = cluster_pipe();
    for n in &nodes {
        p.cmd("EXISTS").arg(node_key(*n));
    }
    let alive: Vec<bool> = if nodes.is_empty() {
        Vec::new()
    } else {
        p.query(conn)?
    };
    Ok(nodes
        .into_iter()
        .zip(alive)
        .filter(|(_, up)| *up)
        .map(|(node, _)| {
            let api = apis.get(&node.to_string()).cloned();
            (node, Peer { node, api })
        })
        .collect())
}

/// For each AOR (canonical, `user@host`), the nodes holding an unexpired
/// record of one of its devices at Unix second `now` (whether those nodes
/// live is the caller's to check with [`live_nodes`]). One `HGETALL` per
/// distinct bucket, pipelined.
pub fn owner_nodes(
    conn: &mut ClusterConnection,
    buckets: u32,
    aors: &[&str],
    now: u64,
) -> redis::RedisResult<Vec<BTreeSet<u32>>> {
    let hashes: Vec<u64> = aors.iter().map(|a| stable_hash(a.as_bytes())).collect();
    let mut keys: Vec<String> = hashes.iter().map(|h| bucket_key(*h, buckets)).collect();
    keys.sort_unstable();
    keys.dedup();
    // AOR hash → owning nodes, from every bucket read.
    let mut owners: HashMap<u64, BTreeSet<u32>> = HashMap::new();
    for chunk in keys.chunks(BATCH) {
        let mut p = cluster_pipe();
        for k in chunk {
            p.cmd("HGETALL").arg(k);
        }
        let all: Vec<Vec<(Vec<u8>, Vec<u8>)>> = p.query(conn)?;
        for fields in all {
            for (f, v) in fields {
                let (Some(id), Some(o)) = (RecordId::from_field(&f), Owner::parse(&v)) else {
                    continue;
                };
                if o.expiry > now {
                    owners.entry(id.aor).or_default().insert(o.node);
                }
            }
        }
    }
    Ok(hashes
        .iter()
        .map(|h| owners.get(h).cloned().unwrap_or_default())
        .collect())
}
