//! "Which node owns this AOR's devices?", for the proxy: the same shape as
//! the HTTP callouts in [`crate::hooks`]. A core asks through its
//! [`OwnerCache`] (never waiting: a bounded channel to the lookup thread);
//! the thread reads the AOR's bucket and the owners' heartbeat keys from
//! Redis and answers the asking core with
//! [`crate::endpoint::Command::ClusterOwners`]. Answers are cached for a
//! short while; a caller that finds the owner wrong (the node answered that
//! it has no such binding) invalidates the entry, and the next call asks
//! Redis again.
//!
//! Records past their expiry, and records of a node whose heartbeat key is
//! gone (a node that stopped), are not owners.
//!
//! The same thread reads the node list (`tether:nodes` and each node's
//! heartbeat) once per heartbeat interval and hands every core a copy when
//! it changes ([`crate::endpoint::Command::ClusterNodes`]): the proxy trusts
//! requests from these addresses (calls another node routed here) and
//! forwards bridge call-backs to the node holding the call.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};
use redis::cluster::ClusterConnection;

use super::keys::{bucket_key, node_key, node_sip_addr, stable_hash, Owner, RecordId, NODES_KEY};
use super::publisher::{connect, unix_now};
use super::{ClusterSection, Stats};
use crate::endpoint::Command;
use crate::runtime::Inbox;

/// A device of the AOR asked about and the node that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The device's hash (see [`RecordId`]).
    pub device: u64,
    pub owner: Owner,
    /// The owner's advertised SIP address (`cluster.advertise`).
    pub addr: Arc<str>,
}

/// The node list goes to the cores at least every this many reads (one a
/// heartbeat), changed or not.
const NODES_RESEND: u32 = 10;

/// A node of the cluster, as the cores know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    /// Its SIP address (`cluster.advertise`), when it is numeric.
    pub addr: Option<std::net::SocketAddr>,
    /// Its heartbeat key lives.
    pub live: bool,
}

/// Every node that joined, by id.
pub type Nodes = Arc<[Node]>;

/// A core's question.
#[derive(Debug, Clone)]
pub struct OwnerQuery {
    pub core: u16,
    /// The AOR, canonical (`user@host`).
    pub aor: Arc<str>,
}

/// The lookup thread's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerAnswer {
    /// The AOR's [`stable_hash`].
    pub aor: u64,
    /// Its live owners; `None` when Redis did not answer.
    pub owners: Option<Vec<Remote>>,
}

/// What [`OwnerCache::lookup`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Known (possibly no owner at all).
    Known(&'a [Remote]),
    /// Asked; the answer comes as [`Command::ClusterOwners`].
    Asked,
    /// Not known and not asked: the queue to the lookup thread is full or
    /// the cluster is off. The caller goes on as if no node owned it.
    Unavailable,
}

/// A core's cache of owner lookups: answers kept `ttl_ms`, at most `max`
/// AORs, one question in flight per AOR.
pub struct OwnerCache {
    core: u16,
    ttl_ms: u64,
    max: usize,
    tx: Option<Sender<OwnerQuery>>,
    known: HashMap<u64, (u64, Vec<Remote>)>,
    /// AOR hash → when it was asked (ms): asked again after `ttl_ms` in
    /// case the answer was lost.
    asked: HashMap<u64, u64>,
}

impl OwnerCache {
    /// For core `core`; `tx` is the lookup thread's queue (`None`: the
    /// cluster is off and every lookup is [`Lookup::Unavailable`]).
    pub fn new(core: u16, tx: Option<Sender<OwnerQuery>>, ttl_ms: u64, max: usize) -> OwnerCache {
        OwnerCache {
            core,
            ttl_ms,
            max,
            tx,
            known: HashMap::new(),
            asked: HashMap::new(),
        }
    }

    /// The owners of `aor` at `now` (ms): cached, or asked for.
    pub fn lookup(&mut self, aor: &str, now: u64) -> Lookup<'_> {
        let h = stable_hash(aor.as_bytes());
        let fresh = self
            .known
            .get(&h)
            .is_some_and(|(at, _)| now.saturating_sub(*at) < self.ttl_ms);
        if fresh {
            return Lookup::Known(self.known.get(&h).map_or(&[], |(_, v)| v.as_slice()));
        }
        if let Some(at) = self.asked.get(&h) {
            if now.saturating_sub(*at) < self.ttl_ms {
                return Lookup::Asked;
            }
        }
        let Some(tx) = &self.tx else {
            return Lookup::Unavailable;
        };
        let q = OwnerQuery {
            core: self.core,
            aor: aor.into(),
        };
        if tx.try_send(q).is_err() {
            return Lookup::Unavailable;
        }
        if self.asked.len() >= self.max {
            self.asked.clear();
        }
        self.asked.insert(h, now);
        Lookup::Asked
    }

    /// Takes the thread's answer at `now` (ms); returns the AOR hash so
    /// that the caller can go on with what waited for it.
    pub fn answer(&mut self, a: OwnerAnswer, now: u64) -> u64 {
        self.asked.remove(&a.aor);
        if let Some(owners) = a.owners {
            if self.known.len() >= self.max {
                // Crude but bounded: entries live for ttl_ms anyway.
                let ttl = self.ttl_ms;
                self.known
                    .retain(|_, (at, _)| now.saturating_sub(*at) < ttl);
                if self.known.len() >= self.max {
                    self.known.clear();
                }
            }
            self.known.insert(a.aor, (now, owners));
        }
        a.aor
    }

    /// Forgets what is known of `aor` (its owner turned out wrong).
    pub fn invalidate(&mut self, aor: &str) {
        self.known.remove(&stable_hash(aor.as_bytes()));
    }
}

/// The lookup thread.
pub struct Resolver {
    thread: super::SideThread,
}

impl Resolver {
    /// Starts the thread answering `queries` into `inboxes[core]`.
    pub fn start(
        cfg: &ClusterSection,
        queries: Receiver<OwnerQuery>,
        inboxes: Vec<Inbox>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Resolver> {
        let mut t = LookupThread {
            cfg: cfg.clone(),
            queries,
            // The side thread's stop channel, set as it starts.
            stop: crossbeam_channel::never(),
            inboxes,
            stats,
            conn: None,
            retry_at: Instant::now(),
            nodes: HashMap::new(),
            node_list: Arc::from(Vec::new()),
            node_reads: 0,
            listed_at: None,
        };
        let thread = super::SideThread::spawn("tether-lookup", move |stop| {
            t.stop = stop;
            t.run();
        })?;
        Ok(Resolver { thread })
    }

    /// Stops the thread after the lookup in hand.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

struct LookupThread {
    cfg: ClusterSection,
    queries: Receiver<OwnerQuery>,
    stop: Receiver<()>,
    inboxes: Vec<Inbox>,
    stats: Arc<Stats>,
    conn: Option<ClusterConnection>,
    /// No connection attempt before this (after a failed one).
    retry_at: Instant,
    /// Node → (its address, or none when its heartbeat is gone; when read).
    nodes: HashMap<u32, (Option<Arc<str>>, Instant)>,
    /// The node list last sent to the cores.
    node_list: Nodes,
    /// Node-list reads so far (see [`NODES_RESEND`]).
    node_reads: u32,
    /// When the node list was last read.
    listed_at: Option<Instant>,
}

impl LookupThread {
    fn run(&mut self) {
        let every = Duration::from_millis(self.cfg.heartbeat_ms);
        loop {
            if self.listed_at.is_none_or(|t| t.elapsed() >= every) {
                self.listed_at = Some(Instant::now());
                self.refresh_nodes();
            }
            select! {
                recv(self.queries) -> q => match q {
                    Ok(q) => self.answer(q),
                    Err(_) => return,
                },
                recv(self.stop) -> _ => return,
                default(every) => {}
            }
        }
    }

    /// Reads the node list; tells every core when it changed, and every
    /// [`NODES_RESEND`]th read anyway (a core whose inbox was full missed a
    /// copy and would otherwise wait for the next change). A failed read
    /// keeps the list the cores have (Redis down: peers stay trusted).
    fn refresh_nodes(&mut self) {
        let list = match self.read_nodes() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: node list not read");
                self.conn = None;
                self.retry_at = Instant::now() + Duration::from_millis(self.cfg.heartbeat_ms);
                return;
            }
        };
        self.node_reads = self.node_reads.wrapping_add(1);
        if *list == *self.node_list && !self.node_reads.is_multiple_of(NODES_RESEND) {
            return;
        }
        self.node_list = list;
        for inbox in &self.inboxes {
            // A full inbox misses this copy; a later read sends another.
            let _ = inbox.send(Command::ClusterNodes(self.node_list.clone()));
        }
    }

    fn read_nodes(&mut self) -> redis::RedisResult<Nodes> {
        self.ensure_conn()?;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(self.node_list.clone());
        };
        let all: Vec<(String, String)> = redis::cmd("HGETALL").arg(NODES_KEY).query(conn)?;
        let mut list = Vec::with_capacity(all.len());
        for (id, listed) in all {
            let Ok(id) = id.parse::<u32>() else {
                continue;
            };
            // The heartbeat names the address the node has now; a node
            // without one keeps the address it joined with.
            let beat = self.node_addr(id)?;
            let addr = beat.as_deref().unwrap_or(&listed);
            list.push(Node {
                id,
                addr: node_sip_addr(addr).parse().ok(),
                live: beat.is_some(),
            });
        }
        list.sort_by_key(|n| n.id);
        Ok(list.into())
    }

    fn ensure_conn(&mut self) -> redis::RedisResult<()> {
        if self.conn.is_none() {
            if Instant::now() < self.retry_at {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "Redis unreachable, waiting to reconnect",
                )));
            }
            self.conn = Some(connect(&self.cfg)?);
        }
        Ok(())
    }

    fn answer(&mut self, q: OwnerQuery) {
        let aor = stable_hash(q.aor.as_bytes());
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let owners = match self.owners(aor) {
            Ok(o) => Some(o),
            Err(e) => {
                self.stats.lookup_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "cluster: owner lookup failed");
                self.conn = None;
                self.retry_at = Instant::now() + Duration::from_millis(self.cfg.heartbeat_ms);
                None
            }
        };
        let cmd = Command::ClusterOwners(OwnerAnswer { aor, owners });
        if let Some(inbox) = self.inboxes.get(usize::from(q.core)) {
            // A full inbox loses the answer; the core asks again later.
            let _ = inbox.send(cmd);
        }
    }

    /// Live owners of the AOR hashed `aor`.
    fn owners(&mut self, aor: u64) -> redis::RedisResult<Vec<Remote>> {
        self.ensure_conn()?;
        let Some(conn) = self.conn.as_mut() else {
            return Ok(Vec::new());
        };
        let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
            .arg(bucket_key(aor, self.cfg.buckets))
            .query(conn)?;
        let now = unix_now();
        let mut found = Vec::new();
        for (f, v) in fields {
            let (Some(id), Some(owner)) = (RecordId::from_field(&f), Owner::parse(&v)) else {
                continue;
            };
            if id.aor == aor && owner.expiry > now {
                found.push((id.device, owner));
            }
        }
        let mut out = Vec::with_capacity(found.len());
        for (device, owner) in found {
            if let Some(addr) = self.node_addr(owner.node)? {
                out.push(Remote {
                    device,
                    owner,
                    addr,
                });
            }
        }
        Ok(out)
    }

    /// A node's advertised address while its heartbeat lives (read at most
    /// once per heartbeat interval).
    fn node_addr(&mut self, node: u32) -> redis::RedisResult<Option<Arc<str>>> {
        let fresh = Duration::from_millis(self.cfg.heartbeat_ms);
        if let Some((addr, at)) = self.nodes.get(&node) {
            if at.elapsed() < fresh {
                return Ok(addr.clone());
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(None);
        };
        let addr: Option<String> = redis::cmd("GET").arg(node_key(node)).query(conn)?;
        let addr: Option<Arc<str>> = addr.map(Into::into);
        if self.nodes.len() > 4096 {
            self.nodes.clear();
        }
        self.nodes.insert(node, (addr.clone(), Instant::now()));
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(node: u32) -> Remote {
        Remote {
            device: 7,
            owner: Owner {
                node,
                core: 0,
                expiry: 2_000_000_000,
            },
            addr: "10.0.0.2:5060".into(),
        }
    }

    #[test]
    fn asks_once_then_answers_from_the_cache_until_stale_or_invalidated() {
        let (tx, rx) = crossbeam_channel::bounded(8);
        let mut c = OwnerCache::new(3, Some(tx), 1000, 100);
        assert_eq!(c.lookup("alice@example.com", 0), Lookup::Asked);
        assert_eq!(c.lookup("alice@example.com", 10), Lookup::Asked);
        let q = rx.try_recv().unwrap();
        assert_eq!((q.core, &*q.aor), (3, "alice@example.com"));
        assert!(rx.try_recv().is_err(), "asked twice");
        let aor = stable_hash(b"alice@example.com");
        let got = c.answer(
            OwnerAnswer {
                aor,
                owners: Some(vec![remote(2)]),
            },
            20,
        );
        assert_eq!(got, aor);
        assert_eq!(
            c.lookup("alice@example.com", 500),
            Lookup::Known(&[remote(2)])
        );
        // Stale: asked again.
        assert_eq!(c.lookup("alice@example.com", 1500), Lookup::Asked);
        c.answer(
            OwnerAnswer {
                aor,
                owners: Some(vec![]),
            },
            1500,
        );
        assert_eq!(c.lookup("alice@example.com", 1600), Lookup::Known(&[]));
        c.invalidate("alice@example.com");
        assert_eq!(c.lookup("alice@example.com", 1601), Lookup::Asked);
    }

    #[test]
    fn a_failed_lookup_is_not_cached_and_a_full_queue_is_unavailable() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut c = OwnerCache::new(0, Some(tx), 1000, 100);
        assert_eq!(c.lookup("a@x", 0), Lookup::Asked);
        assert_eq!(c.lookup("b@x", 0), Lookup::Unavailable);
        rx.try_recv().unwrap();
        c.answer(
            OwnerAnswer {
                aor: stable_hash(b"a@x"),
                owners: None,
            },
            5,
        );
        assert_eq!(c.lookup("a@x", 6), Lookup::Asked);
        let mut off = OwnerCache::new(0, None, 1000, 100);
        assert_eq!(off.lookup("a@x", 0), Lookup::Unavailable);
    }

    #[test]
    fn the_cache_is_bounded() {
        let (tx, _rx) = crossbeam_channel::bounded(1000);
        let mut c = OwnerCache::new(0, Some(tx), 1000, 10);
        for i in 0..50u64 {
            c.answer(
                OwnerAnswer {
                    aor: i,
                    owners: Some(vec![]),
                },
                0,
            );
            assert!(c.known.len() <= 10);
        }
    }
}
