//! Persistence (`[persist]`): registrations survive restarts and crashes.
//!
//! Every change the directory stores is also handed, as the AOR's whole
//! packed block, to a bounded queue ([`Sink`]); a side thread
//! ([`writer::Writer`]) appends them to a journal and syncs it as a group
//! every `persist.fsync_ms`, and snapshots the directory every
//! `persist.snapshot_s` so older journals can go. No core waits on the
//! disk: a full queue drops the record, counts it, and has the next
//! snapshot (started at once) cover it. At start, [`store::load`] reads the
//! newest whole snapshot and the journals after it, and
//! [`replay::Replay::restore`] rebuilds the directory and each core's
//! bindings before the cores run.
//!
//! `record` (the format) and `replay` are sans-IO; `store` and `writer`
//! touch the files.

pub mod record;
pub mod replay;
pub mod store;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use crate::config::ConfigError;
pub use replay::{Replay, Restored};

/// `[persist]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PersistSection {
    /// Keep registrations across restarts. Off by default: it writes to
    /// `dir`, which the operator has to provide.
    pub enabled: bool,
    /// Where journals and snapshots live.
    pub dir: String,
    /// Group commit: the journal is synced this often (ms); a change is on
    /// disk at most this long after it was made.
    pub fsync_ms: u64,
    /// A snapshot (and journal truncation) this often (s).
    pub snapshot_s: u64,
    /// Changes waiting for the writer; more are dropped (counted) and the
    /// next snapshot covers them.
    pub queue: usize,
}

impl Default for PersistSection {
    fn default() -> Self {
        PersistSection {
            enabled: false,
            dir: "/var/lib/tether".into(),
            fsync_ms: 100,
            snapshot_s: 300,
            queue: 65_536,
        }
    }
}

impl PersistSection {
    /// Range checks.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, fix: String| Err(ConfigError::Invalid { key, fix });
        if self.enabled && self.dir.is_empty() {
            return bad(
                "persist.dir",
                "name a directory tether may write, e.g. \"/var/lib/tether\"".into(),
            );
        }
        if !(1..=10_000).contains(&self.fsync_ms) {
            return bad(
                "persist.fsync_ms",
                format!("{} is out of range; use 1..=10000 ms", self.fsync_ms),
            );
        }
        if !(10..=86_400).contains(&self.snapshot_s) {
            return bad(
                "persist.snapshot_s",
                format!("{} is out of range; use 10..=86400 s", self.snapshot_s),
            );
        }
        if !(1..=16_777_216).contains(&self.queue) {
            return bad(
                "persist.queue",
                format!("{} is out of range; use 1..=16777216 changes", self.queue),
            );
        }
        Ok(())
    }
}

/// The writer's counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records appended to the journal.
    pub records: AtomicU64,
    /// Records dropped for a full queue.
    pub dropped: AtomicU64,
    /// Journal bytes written.
    pub bytes: AtomicU64,
    /// Group commits (write + fdatasync).
    pub commits: AtomicU64,
    pub snapshots: AtomicU64,
    /// Failed writes, syncs and snapshots.
    pub errors: AtomicU64,
    /// Something is missing from the journal: the next snapshot is due now.
    pub lost: AtomicBool,
}

impl Stats {
    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let rows = [
            (
                "tether_persist_records_total",
                "Directory changes appended to the journal.",
                &self.records,
            ),
            (
                "tether_persist_dropped_total",
                "Directory changes dropped for a full queue (persist.queue); the next snapshot covers them.",
                &self.dropped,
            ),
            (
                "tether_persist_bytes_total",
                "Journal bytes written.",
                &self.bytes,
            ),
            (
                "tether_persist_commits_total",
                "Group commits (one write and fdatasync each).",
                &self.commits,
            ),
            (
                "tether_persist_snapshots_total",
                "Snapshots written.",
                &self.snapshots,
            ),
            (
                "tether_persist_errors_total",
                "Failed journal writes, syncs and snapshots.",
                &self.errors,
            ),
        ];
        crate::metrics::render_atomic_rows(out, &rows.map(|(n, h, v)| (n, h, v, true)));
    }
}

/// The cores' end of the writer's queue, installed in the directory.
pub struct Sink {
    tx: crossbeam_channel::Sender<Box<[u8]>>,
    stats: Arc<Stats>,
}

impl Sink {
    /// An AOR's block after a change. Never waits.
    pub fn changed(&self, block: &[u8]) {
        if self.tx.try_send(block.into()).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.stats.lost.store(true, Ordering::Relaxed);
        }
    }

    /// An AOR lost its last contact.
    pub fn removed(&self, aor: &str) {
        match crate::registrar::packed::encode(aor, &crate::registrar::AorRecord::default()) {
            Ok(b) => self.changed(&b),
            Err(_) => self.stats.lost.store(true, Ordering::Relaxed),
        }
    }
}

/// CPU time of the calling thread (ms), 0 if unknown: beside the wall
/// time a restore logs, it tells a slow disk or a busy machine from slow
/// code.
fn thread_cpu_ms() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split(' ').next()?.parse::<u64>().ok())
        .map_or(0, |ns| ns / 1_000_000)
}

/// What [`restore`] rebuilt.
pub struct Recovered {
    /// Each core's restored bindings, in slot order.
    pub per_core: Vec<Vec<Restored>>,
    /// The journal number the writer starts with.
    pub next_seq: u64,
    pub aors: usize,
    pub bindings: usize,
}

/// Loads `cfg.dir` into the empty `directory`: expiries on the clock whose
/// zero is `epoch_ms` (Unix ms), bindings dealt over `cores`. Logs what it
/// found and how long it took.
pub fn restore(
    cfg: &PersistSection,
    directory: &crate::registrar::Directory,
    epoch_ms: u64,
    cores: usize,
) -> std::io::Result<Recovered> {
    let t = std::time::Instant::now();
    let cpu = thread_cpu_ms();
    let mut loaded = store::load(std::path::Path::new(&cfg.dir))
        .map_err(|e| std::io::Error::new(e.kind(), format!("persist.dir {:?}: {e}", cfg.dir)))?;
    let replay = std::mem::take(&mut loaded.replay);
    let stats = replay.stats;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let per_core = replay.restore(directory, epoch_ms, now_ms, cores);
    let bindings = per_core.iter().map(Vec::len).sum();
    let aors = directory.aor_count();
    tracing::info!(
        aors,
        bindings,
        snapshot = ?loaded.snapshot,
        journals = loaded.journals,
        records = stats.records,
        skipped = stats.skipped,
        damaged_files = loaded.damage.len(),
        ms = t.elapsed().as_millis() as u64,
        cpu_ms = thread_cpu_ms() - cpu,
        "persist: registrations restored"
    );
    Ok(Recovered {
        per_core,
        next_seq: loaded.next_seq,
        aors,
        bindings,
    })
}
