//! The publisher thread: the I/O around [`Coalescer`]. It reads the cores'
//! changes, writes them to Redis Cluster in pipelines, keeps the node's
//! heartbeat key alive, and while Redis is unreachable keeps the backlog
//! and tries again (every heartbeat interval). After an outage it writes
//! every owned record again. Stopping, it deletes its heartbeat key. With
//! each heartbeat it sweeps a few buckets for expired records (every bucket
//! once per `sweep_s`): records of a node that died would otherwise stay in
//! buckets other nodes keep alive.
//!
//! Moves between nodes: a record's first write from this node learns what
//! it replaces (`HSETNX` in place of `HSET`; only where the record was
//! there already do an `HGET` and the `HSET` follow, in a second round
//! trip; renewals and rewrites of what was ours send plain `HSET`s). When
//! it named another node, that node gets a notice ([`super::keys::evict_key`]); each node
//! reads its own notices with its heartbeat and tells the owning core to
//! drop the binding, once Redis confirms the record names another node.
//! Without it the old node would ping the device, and reach it in
//! broadcasts, until the binding expired there.
//!
//! Writes go out as soon as the previous pipeline is back: changes arriving
//! meanwhile pile up in the channel and leave together, so the batch grows
//! with the load and nothing waits for a timer when the load is light.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver};
use redis::cluster::{cluster_pipe, ClusterClient, ClusterConnection};

use super::coalesce::{BindingChange, Coalescer, Op, Verdict};
use super::keys::{
    bucket_key, bucket_key_at, evict_key, node_key, Notice, Owner, RecordId, EVICT_TTL_S,
    NODES_API_KEY, NODES_KEY,
};
use super::{ClusterSection, Publish, Stats};

/// Operations per pipeline.
const BATCH: usize = 2000;

/// Bucket TTLs are raised to a multiple of this (s): a record's bucket may
/// outlive it by this much, and most writes need no `EXPIRE` of their own.
const TTL_STEP: u64 = 300;

/// Deletes a record only while it still names this node (KEYS[1] bucket,
/// ARGV[1] field, ARGV[2] the value's `node:` prefix): a device that moved
/// to another node keeps that node's record.
const DELETE_IF_OURS: &str = "local v = redis.call('HGET', KEYS[1], ARGV[1]) \
if v and string.sub(v, 1, #ARGV[2]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end \
return 0";

/// A restored binding's first write where a record exists (KEYS[1]
/// bucket, ARGV[1] field, ARGV[2] this node's value, ARGV[3] its `node:`
/// prefix, ARGV[4] Unix seconds now): another node's unexpired record is
/// kept and returned (the device registered there while this node was
/// down); anything else is overwritten, and nil returned.
const WRITE_UNLESS_OTHERS: &str = "local v = redis.call('HGET', KEYS[1], ARGV[1]) \
if v and string.sub(v, 1, #ARGV[3]) ~= ARGV[3] then local e = tonumber(string.match(v, ':(%d+)$')) \
if e and e > tonumber(ARGV[4]) then return v end end \
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return false";

/// Removes the records of bucket KEYS[1] whose expiry (the value's last
/// field) is before ARGV[1]; returns how many. Atomic, so a record renewed
/// meanwhile stays.
const SWEEP_EXPIRED: &str = "local n = 0 local all = redis.call('HGETALL', KEYS[1]) \
for i = 1, #all, 2 do local e = tonumber(string.match(all[i + 1], ':(%d+)$')) \
if e and e < tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], all[i]) n = n + 1 end end \
return n";

/// Whether Redis refused outright (retrying the same commands cannot
/// help), as opposed to being unreachable, overloaded or resharding.
fn permanent(e: &redis::RedisError) -> bool {
    !e.is_io_error() && matches!(e.retry_method(), redis::RetryMethod::NoRetry)
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens a cluster connection from the seeds, with the configured timeouts
/// and no retries of its own (the caller decides when to try again).
pub fn connect(cfg: &ClusterSection) -> redis::RedisResult<ClusterConnection> {
    let t = Duration::from_millis(cfg.timeout_ms);
    ClusterClient::builder(cfg.redis.iter().map(String::as_str))
        .connection_timeout(t)
        .response_timeout(t)
        .retries(1)
        .build()?
        .get_connection()
}

/// The running publisher thread.
pub struct Publisher {
    thread: super::SideThread,
    handle: Publish,
    inboxes: Arc<OnceLock<Vec<crate::runtime::Inbox>>>,
}

impl Publisher {
    /// Starts the thread (it connects on its own; Redis being down at start
    /// is an outage like any other).
    pub fn start(cfg: &ClusterSection, stats: Arc<Stats>) -> std::io::Result<Publisher> {
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue);
        let inboxes = Arc::new(OnceLock::new());
        let mut t = Thread {
            inboxes: inboxes.clone(),
            later: Vec::new(),
            cfg: cfg.clone(),
            state: Coalescer::new(cfg.node, cfg.renew_s, cfg.backlog),
            rx,
            // The side thread's stop channel, set as it starts.
            stop: crossbeam_channel::never(),
            stats: stats.clone(),
            conn: None,
            outage: false,
            next_heartbeat: Instant::now(),
            // Nodes start their sweep at different buckets.
            sweep_at: super::keys::stable_hash(&cfg.node.to_be_bytes()) as u32 & (cfg.buckets - 1),
            next_renewal: Instant::now() + Duration::from_secs(u64::from(cfg.renew_s)),
            joined: false,
            renewing: false,
            covered: HashMap::new(),
        };
        let thread = super::SideThread::spawn("tether-cluster", move |stop| {
            t.stop = stop;
            t.run();
        })?;
        Ok(Publisher {
            thread,
            handle: Publish { tx, stats },
            inboxes,
        })
    }

    /// The cores' inboxes, once they exist (the publisher starts before
    /// them): eviction notices are read only from then on.
    pub fn set_inboxes(&self, inboxes: Vec<crate::runtime::Inbox>) {
        let _ = self.inboxes.set(inboxes);
    }

    /// The handle the cores send changes through.
    pub fn handle(&self) -> Publish {
        self.handle.clone()
    }

    /// Stops the thread after one last flush attempt.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

struct Thread {
    cfg: ClusterSection,
    /// Where bindings to drop are sent (see [`Publisher::set_inboxes`]).
    inboxes: Arc<OnceLock<Vec<crate::runtime::Inbox>>>,
    /// Records whose binding is to be dropped once the inboxes are there.
    later: Vec<RecordId>,
    state: Coalescer,
    rx: Receiver<BindingChange>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
    conn: Option<ClusterConnection>,
    /// A round trip failed since the last success: write everything again
    /// once Redis answers.
    outage: bool,
    next_heartbeat: Instant,
    next_renewal: Instant,
    /// Whether this node is in the nodes hash yet (written once per connection).
    joined: bool,
    /// The next bucket to sweep.
    sweep_at: u32,
    /// A renewal pass is under way (started every `renew_s`).
    renewing: bool,
    /// Bucket → the Unix second this node last raised its TTL to (forgotten
    /// on any failed round trip: Redis may come back empty).
    covered: HashMap<String, u64>,
}

impl Thread {
    fn run(&mut self) {
        loop {
            let wait = if self.conn.is_some() && self.has_work() {
                Duration::ZERO
            } else {
                self.next_heartbeat
                    .min(self.next_renewal)
                    .saturating_duration_since(Instant::now())
            };
            let stopping = select! {
                recv(self.rx) -> c => {
                    if let Ok(c) = c {
                        self.state.apply(c, unix_now());
                    }
                    false
                }
                recv(self.stop) -> _ => true,
                default(wait) => false,
            };
            // Everything queued behind it leaves in the same batch.
            let now = unix_now();
            while let Ok(c) = self.rx.try_recv() {
                self.state.apply(c, now);
            }
            self.tick();
            if stopping {
                self.leave();
                tracing::info!(pending = self.state.pending(), "cluster publisher stopped");
                return;
            }
        }
    }

    /// One round: heartbeat when due, urgent writes, renewals when due.
    fn tick(&mut self) {
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + Duration::from_millis(self.cfg.heartbeat_ms);
            self.heartbeat();
            self.sweep();
            self.read_notices();
        }
        if now >= self.next_renewal {
            self.next_renewal = now + Duration::from_secs(u64::from(self.cfg.renew_s));
            self.renewing = true;
        }
        while self.conn.is_some() && self.has_work() {
            let ops = self.state.take(self.renewing, BATCH);
            if ops.is_empty() {
                break;
            }
            if let Err(e) = self.write(&ops) {
                // Refused outright, the pipeline's other commands were
                // applied and retrying cannot help; otherwise all wait.
                if !permanent(&e) {
                    self.state.failed(&ops);
                }
                self.failed_round(&e);
            }
            // Renewals and changes arriving meanwhile go in the next round;
            // do not starve the channel behind a long resync.
            if !self.rx.is_empty() {
                break;
            }
        }
        // A renewal pass lasts until every renewal is out, over as many
        // rounds as the load leaves it.
        if !self.state.has_renewals() {
            self.renewing = false;
        }
        self.publish_counts();
    }

    /// Whether there is something to write now.
    fn has_work(&self) -> bool {
        self.state.has_urgent() || (self.renewing && self.state.has_renewals())
    }

    fn publish_counts(&self) {
        let s = &self.stats;
        s.coalesced
            .store(self.state.counts.coalesced, Ordering::Relaxed);
        s.backlog_dropped
            .store(self.state.counts.dropped, Ordering::Relaxed);
        s.backlog
            .store(self.state.pending() as u64, Ordering::Relaxed);
        s.owned.store(self.state.owned() as u64, Ordering::Relaxed);
    }

    /// Writes the heartbeat (connecting first if need be); Redis answering
    /// it after an outage starts the resync.
    fn heartbeat(&mut self) {
        if self.conn.is_none() {
            match connect(&self.cfg) {
                Ok(c) => {
                    self.conn = Some(c);
                    self.joined = false;
                }
                Err(e) => return self.down(&e),
            }
        }
        let ttl = self.cfg.heartbeat_ttl_ms;
        let mut p = cluster_pipe();
        p.cmd("SET")
            .arg(node_key(self.cfg.node))
            .arg(&self.cfg.advertise)
            .arg("PX")
            .arg(ttl)
            .ignore();
        if !self.joined {
            p.cmd("HSET")
                .arg(NODES_KEY)
                .arg(self.cfg.node)
                .arg(&self.cfg.advertise)
                .ignore();
            if !self.cfg.api_advertise.is_empty() {
                p.cmd("HSET")
                    .arg(NODES_API_KEY)
                    .arg(self.cfg.node)
                    .arg(&self.cfg.api_advertise)
                    .ignore();
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match p.exec(conn) {
            Ok(()) => {
                self.joined = true;
                self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                self.up();
            }
            Err(e) => self.failed_round(&e),
        }
    }

    /// Sweeps the share of buckets due in one heartbeat interval, so that
    /// all are swept once per `sweep_s`.
    fn sweep(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let per_round = (u64::from(self.cfg.buckets) * self.cfg.heartbeat_ms)
            .div_ceil(u64::from(self.cfg.sweep_s) * 1000)
            .max(1);
        let mut p = cluster_pipe();
        let now = unix_now();
        let mask = self.cfg.buckets - 1;
        for i in 0..per_round {
            let b = (self.sweep_at.wrapping_add(i as u32)) & mask;
            p.cmd("EVAL")
                .arg(SWEEP_EXPIRED)
                .arg(1)
                .arg(bucket_key_at(b))
                .arg(now);
        }
        match p.query::<Vec<u64>>(conn) {
            Ok(n) => {
                self.sweep_at = self.sweep_at.wrapping_add(per_round as u32) & mask;
                self.stats
                    .swept
                    .fetch_add(n.iter().sum(), Ordering::Relaxed);
            }
            Err(e) => self.failed_round(&e),
        }
    }

    /// Reads this node's eviction notices (at most [`BATCH`] per heartbeat)
    /// and tells the cores which bindings to drop: those the notice names
    /// as they are here, and whose record Redis names another node now
    /// (a device registering at both nodes on purpose is not ours to judge;
    /// the record says who owns it).
    fn read_notices(&mut self) {
        if self.conn.is_none() || self.inboxes.get().is_none() {
            return;
        }
        for id in std::mem::take(&mut self.later) {
            self.drop_binding(id);
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let popped: redis::RedisResult<Option<Vec<Vec<u8>>>> = redis::cmd("LPOP")
            .arg(evict_key(self.cfg.node))
            .arg(BATCH)
            .query(conn);
        let notices: Vec<Notice> = match popped {
            Ok(v) => v
                .unwrap_or_default()
                .iter()
                .filter_map(|n| Notice::parse(n))
                .collect(),
            Err(e) => return self.failed_round(&e),
        };
        // The records whose binding goes if Redis confirms.
        let mut drop: Vec<RecordId> = Vec::new();
        for n in &notices {
            match self.state.on_notice(n) {
                Verdict::Drop { .. } => drop.push(n.id),
                Verdict::Reassert => tracing::debug!(
                    by = n.by,
                    "cluster: record taken over by another node, refreshed here since: written again"
                ),
                Verdict::Unknown => {}
            }
        }
        if drop.is_empty() {
            return;
        }
        let mut p = cluster_pipe();
        for id in &drop {
            p.cmd("HGET")
                .arg(bucket_key(id.aor, self.cfg.buckets))
                .arg(&id.field()[..]);
        }
        let now_named: Vec<Option<Vec<u8>>> = match p.query(conn) {
            Ok(v) => v,
            // The notices are gone from Redis; the bindings expire here as
            // they would have without them.
            Err(e) => return self.failed_round(&e),
        };
        let now = unix_now();
        for (id, v) in drop.into_iter().zip(now_named) {
            let other = v
                .as_deref()
                .and_then(Owner::parse)
                .is_some_and(|o| o.node != self.cfg.node && o.expiry > now);
            if !other {
                continue;
            }
            self.drop_binding(id);
        }
    }

    /// Drops this node's binding behind record `id` (another node holds the
    /// record): forgotten here, and its core told to drop it.
    fn drop_binding(&mut self, id: RecordId) {
        let Some((core, slot, gen)) = self.state.binding(id) else {
            return;
        };
        let Some(inboxes) = self.inboxes.get() else {
            // The cores' inboxes are not there yet (bindings restored at
            // start): done with the next heartbeat.
            if self.later.len() < BATCH {
                self.later.push(id);
            }
            return;
        };
        let Some(inbox) = inboxes.get(usize::from(core)) else {
            return;
        };
        self.state.evict(id);
        let b = crate::registrar::BindingRef { core, slot, gen };
        // A full inbox loses it: the binding then expires as it would have.
        if inbox.send(crate::endpoint::Command::ClusterEvict(b)) {
            self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells the previous owners of records this node just took over
    /// (`taken`: the record and the value it replaced).
    fn send_notices(&mut self, taken: &[(RecordId, Vec<u8>)]) {
        let now = unix_now();
        let mut p = cluster_pipe();
        let mut n = 0u64;
        for (id, old) in taken {
            let Some(o) = Owner::parse(old) else {
                continue;
            };
            if o.node == self.cfg.node || o.expiry <= now {
                continue;
            }
            let key = evict_key(o.node);
            let notice = Notice {
                id: *id,
                core: o.core,
                by: self.cfg.node,
                at: now,
            };
            p.cmd("RPUSH").arg(&key).arg(notice.value()).ignore();
            p.cmd("EXPIRE").arg(&key).arg(EVICT_TTL_S).ignore();
            n += 1;
        }
        if n == 0 {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match p.exec(conn) {
            Ok(()) => {
                self.stats.notices.fetch_add(n, Ordering::Relaxed);
            }
            // Lost: the old node keeps the binding until it expires there,
            // as before notices existed.
            Err(e) => self.failed_round(&e),
        }
    }

    /// A node stopping on purpose deletes its heartbeat key: the others
    /// see it gone at once rather than after `heartbeat_ttl_ms`.
    fn leave(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let r: redis::RedisResult<()> =
                redis::cmd("DEL").arg(node_key(self.cfg.node)).exec(conn);
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster: heartbeat key not deleted at stop");
            }
        }
    }

    /// Sends `ops` in one pipeline: each record, then each bucket's TTL
    /// raised to cover the latest expiry written into it.
    fn write(&mut self, ops: &[Op]) -> redis::RedisResult<()> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected",
            )));
        };
        let now = unix_now();
        let buckets = self.cfg.buckets;
        let prefix = Owner::node_prefix(self.cfg.node);
        // Bucket → the latest expiry written into it by this batch.
        let mut ttl: HashMap<String, u64> = HashMap::new();
        let mut p = cluster_pipe();
        let (mut writes, mut deletes) = (0u64, 0u64);
        // First writes (record, bucket, value), in order: sent as HSETNX,
        // so that a record someone else holds is seen, not overwritten.
        let mut firsts: Vec<(RecordId, String, String, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Write {
                    id,
                    owner,
                    first,
                    restored,
                } => {
                    let key = bucket_key(id.aor, buckets);
                    if *first {
                        p.cmd("HSETNX")
                            .arg(&key)
                            .arg(&id.field()[..])
                            .arg(owner.value());
                        firsts.push((*id, key.clone(), owner.value(), *restored));
                    } else {
                        p.cmd("HSET")
                            .arg(&key)
                            .arg(&id.field()[..])
                            .arg(owner.value())
                            .ignore();
                    }
                    let t = ttl.entry(key).or_default();
                    *t = (*t).max(owner.expiry);
                    writes += 1;
                }
                Op::Delete { id } => {
                    let key = bucket_key(id.aor, buckets);
                    // It may empty the bucket, and Redis drops an empty
                    // hash with its TTL: raise it again at the next write.
                    self.covered.remove(&key);
                    p.cmd("EVAL")
                        .arg(DELETE_IF_OURS)
                        .arg(1)
                        .arg(&key)
                        .arg(&id.field()[..])
                        .arg(&prefix)
                        .ignore();
                    deletes += 1;
                }
            }
        }
        let mut raised = Vec::new();
        for (key, expiry) in ttl {
            if self.covered.get(&key).is_some_and(|c| *c >= expiry) {
                continue;
            }
            // Raised in steps of TTL_STEP, so that the writes that follow
            // into this bucket find it covered and send one HSET, not three
            // commands. (Another node emptying the bucket also drops its
            // TTL unseen here; its records then go by the sweeper.)
            let until = expiry.div_ceil(TTL_STEP) * TTL_STEP;
            let secs = until.saturating_sub(now).max(1);
            // A new bucket has no TTL, which GT treats as infinite: NX first.
            p.cmd("EXPIRE").arg(&key).arg(secs).arg("NX").ignore();
            p.cmd("EXPIRE").arg(&key).arg(secs).arg("GT").ignore();
            raised.push((key, until));
        }
        let set: Vec<bool> = if firsts.is_empty() {
            p.exec(conn)?;
            Vec::new()
        } else {
            p.query(conn)?
        };
        // Records that were there already (a device that moved here, or
        // this node's own record from before a restart): read the value,
        // then write ours. A second round trip, for these only; most first
        // writes are of records nobody holds, and HSETNX costs them about
        // what HSET would (BENCHMARKS.md, cluster).
        let held: Vec<&(RecordId, String, String, bool)> = firsts
            .iter()
            .zip(&set)
            .filter(|(_, new)| !**new)
            .map(|(f, _)| f)
            .collect();
        let mut replaced: Vec<Option<Vec<u8>>> = Vec::new();
        if !held.is_empty() {
            let mut p = cluster_pipe();
            for (id, key, value, restored) in &held {
                if *restored {
                    p.cmd("EVAL")
                        .arg(WRITE_UNLESS_OTHERS)
                        .arg(1)
                        .arg(key)
                        .arg(&id.field()[..])
                        .arg(value)
                        .arg(&prefix)
                        .arg(now);
                    continue;
                }
                p.cmd("HGET").arg(key).arg(&id.field()[..]);
                p.cmd("HSET")
                    .arg(key)
                    .arg(&id.field()[..])
                    .arg(value)
                    .ignore();
            }
            replaced = p.query(conn)?;
        }
        if self.covered.len() + raised.len() > self.cfg.buckets as usize {
            self.covered.clear();
        }
        self.covered.extend(raised);
        self.stats.writes.fetch_add(writes, Ordering::Relaxed);
        self.stats.deletes.fetch_add(deletes, Ordering::Relaxed);
        self.up();
        let mut taken: Vec<(RecordId, Vec<u8>)> = Vec::new();
        for ((id, _, _, restored), v) in held.iter().zip(replaced) {
            match (restored, v) {
                (false, Some(v)) => taken.push((*id, v)),
                // Restored from disk, and another node holds the device
                // now: this node lets go instead.
                (true, Some(_)) => self.drop_binding(*id),
                (_, None) => {}
            }
        }
        if !taken.is_empty() {
            self.send_notices(&taken);
        }
        Ok(())
    }

    fn up(&mut self) {
        if self.stats.redis_up.swap(1, Ordering::Relaxed) == 0 {
            tracing::info!(node = self.cfg.node, "cluster: Redis reachable");
        }
        if self.outage {
            self.outage = false;
            self.state.resync();
            tracing::info!(
                owned = self.state.owned(),
                "cluster: Redis back, writing every owned record again"
            );
        }
    }

    /// A failed round trip: an outage ([`Thread::down`]) unless Redis
    /// refused the commands outright (a script error, a key of the wrong
    /// type, an ACL): counted and logged, the connection kept.
    fn failed_round(&mut self, e: &redis::RedisError) {
        if !permanent(e) {
            return self.down(e);
        }
        let n = self.stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(error = %e, total = n, "cluster: Redis refused a command; not retried");
        }
    }

    /// A failed round trip: drop the connection (the next heartbeat makes
    /// a new one) and keep everything pending.
    fn down(&mut self, e: &redis::RedisError) {
        self.conn = None;
        self.covered.clear();
        self.outage = true;
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if self.stats.redis_up.swap(0, Ordering::Relaxed) == 1
            || self.stats.errors.load(Ordering::Relaxed) == 1
        {
            tracing::warn!(error = %e, backlog = self.state.pending(), "cluster: Redis unreachable; keeping a backlog");
        }
    }
}
