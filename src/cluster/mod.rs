//! tether as a cluster on Redis Cluster (issue 18): each node keeps and
//! pings only its own bindings and tells the cluster which it owns.
//!
//! A core hands every binding change to [`Publish`] (a bounded channel;
//! full → dropped and counted, never a wait). The publisher thread
//! ([`publisher`]) coalesces them ([`coalesce`]), pipelines the writes to
//! Redis, keeps the node's heartbeat key alive, and holds a bounded backlog
//! while Redis is unreachable. [`keys`] is the layout in Redis;
//! [`lookup`] answers "which node owns this AOR" for the proxy.

pub mod coalesce;
mod config;
pub mod keys;
pub mod lookup;
pub mod peers;
pub mod publisher;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use coalesce::{BindingChange, Change};
pub use config::ClusterSection;
pub use keys::{Owner, RecordId};
pub use publisher::{connect, unix_now, Publisher};

/// A core's handle on the publisher: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Publish {
    tx: crossbeam_channel::Sender<BindingChange>,
    stats: Arc<Stats>,
}

impl Publish {
    /// Queues a change; when the queue is full it is dropped and counted
    /// (the binding is written again at its next refresh).
    pub fn send(&self, c: BindingChange) {
        if self.tx.try_send(c).is_err() {
            let n = self.stats.queue_full.fetch_add(1, Ordering::Relaxed) + 1;
            // One line per power of two: a flood is visible without flooding the log.
            if n.is_power_of_two() {
                tracing::warn!(
                    total = n,
                    "cluster queue full: ownership change not published (raise cluster.queue)"
                );
            }
        }
    }

    /// A change of `device` under `aor`: the `+sip.instance` names the
    /// device when there is one, else the Contact URI.
    pub fn binding(&self, aor: &str, device: &str, change: Change) {
        self.send(BindingChange {
            id: RecordId::new(aor, device),
            change,
        });
    }
}

/// The cluster's counters, shown in `/metrics`. Off the hot path (the
/// cores touch only `queue_full`, and only when the queue is full).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records written (set or renewed).
    pub writes: AtomicU64,
    /// Records deleted.
    pub deletes: AtomicU64,
    /// Changes that needed no write of their own.
    pub coalesced: AtomicU64,
    /// Changes dropped: the cores' queue was full.
    pub queue_full: AtomicU64,
    /// Changes dropped: the backlog was full.
    pub backlog_dropped: AtomicU64,
    /// Changes waiting for Redis now (gauge).
    pub backlog: AtomicU64,
    /// Bindings this node publishes (gauge).
    pub owned: AtomicU64,
    /// Failed Redis round trips (connect, pipeline, heartbeat).
    pub errors: AtomicU64,
    /// Heartbeats written.
    pub heartbeats: AtomicU64,
    /// 1 while the last Redis round trip succeeded (gauge).
    pub redis_up: AtomicU64,
    /// Owner lookups asked of Redis, and those it did not answer.
    pub lookups: AtomicU64,
    pub lookup_errors: AtomicU64,
    /// Expired records (of any node) the sweeper removed.
    pub swept: AtomicU64,
    /// Bindings this node dropped because another node took their record
    /// over (the device registered there since).
    pub evicted: AtomicU64,
    /// Eviction notices this node sent to the previous owners of records
    /// it took over.
    pub notices: AtomicU64,
}

impl Stats {
    /// The counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let rows: [(&'static str, &'static str, &AtomicU64, bool); 15] = [
            ("tether_cluster_writes_total", "Ownership records written to Redis (new, moved or renewed).", &self.writes, true),
            ("tether_cluster_deletes_total", "Ownership records deleted from Redis.", &self.deletes, true),
            ("tether_cluster_coalesced_total", "Binding changes that needed no Redis write of their own.", &self.coalesced, true),
            ("tether_cluster_queue_full_total", "Binding changes dropped: the cores' queue to the publisher was full (cluster.queue).", &self.queue_full, true),
            ("tether_cluster_backlog_dropped_total", "Binding changes dropped: the backlog was full while Redis was unreachable (cluster.backlog).", &self.backlog_dropped, true),
            ("tether_cluster_errors_total", "Failed Redis round trips (connect, pipeline, heartbeat).", &self.errors, true),
            ("tether_cluster_heartbeats_total", "Heartbeats written.", &self.heartbeats, true),
            ("tether_cluster_lookups_total", "Owner lookups asked of Redis.", &self.lookups, true),
            ("tether_cluster_swept_total", "Expired ownership records (of any node) removed by this node's sweeper.", &self.swept, true),
            ("tether_cluster_evicted_total", "Bindings dropped because another node took their ownership record over (the device registered there since).", &self.evicted, true),
            ("tether_cluster_notices_total", "Eviction notices sent to the previous owner node of a record this node took over.", &self.notices, true),
            ("tether_cluster_lookup_errors_total", "Owner lookups Redis did not answer.", &self.lookup_errors, true),
            ("tether_cluster_backlog", "Binding changes waiting for Redis.", &self.backlog, false),
            ("tether_cluster_owned", "Bindings this node publishes as their owner.", &self.owned, false),
            ("tether_cluster_redis_up", "1 while Redis answers the publisher, else 0.", &self.redis_up, false),
        ];
        crate::metrics::render_atomic_rows(out, &rows);
    }
}

/// A cluster side thread that stops when its stop channel closes: dropping
/// this (or [`SideThread::stop`]) closes it and joins the thread.
pub(crate) struct SideThread {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Option<crossbeam_channel::Sender<()>>,
}

impl SideThread {
    /// Runs `body` on a thread named `name`; `body` returns once the
    /// receiver it is given disconnects.
    pub(crate) fn spawn(
        name: &str,
        body: impl FnOnce(crossbeam_channel::Receiver<()>) + Send + 'static,
    ) -> std::io::Result<SideThread> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(stop_rx))?;
        Ok(SideThread {
            thread: Some(thread),
            stop: Some(stop_tx),
        })
    }

    /// Closes the stop channel and waits for the thread.
    pub(crate) fn stop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SideThread {
    fn drop(&mut self) {
        self.stop();
    }
}
