//! The side thread that owns the files: it drains the cores' records into
//! the journal, commits them as a group every `fsync_ms` (one write and one
//! `fdatasync` for all of them), and starts a snapshot every `snapshot_s`,
//! or soon after the queue overflowed, on a thread of its own so the
//! journal keeps draining meanwhile.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use super::record::{self, Kind};
use super::{store, PersistSection, Sink, Stats};
use crate::registrar::Directory;

/// The running writer; [`Writer::shutdown`] stops it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    final_snapshot: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<Stats>,
}

struct State {
    dir: PathBuf,
    directory: Arc<Directory>,
    epoch_ms: u64,
    seq: u64,
    journal: File,
    buf: Vec<u8>,
    /// Written since the last sync.
    unsynced: bool,
    stats: Arc<Stats>,
    snapshot: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens journal `seq` in `cfg.dir`, installs the cores' queue in
    /// `directory` and starts the thread. `epoch_ms`: the runtime clock's
    /// zero (Unix ms), which the records' expiries count from.
    pub fn start(
        cfg: &PersistSection,
        directory: Arc<Directory>,
        seq: u64,
        epoch_ms: u64,
    ) -> std::io::Result<Writer> {
        let dir = PathBuf::from(&cfg.dir);
        let journal = store::open_journal(&dir, seq, epoch_ms)?;
        let (tx, rx) = bounded(cfg.queue);
        let stats = Arc::new(Stats::default());
        directory.set_journal(Sink {
            tx,
            stats: stats.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let final_snapshot = Arc::new(AtomicBool::new(false));
        let mut st = State {
            dir,
            directory,
            epoch_ms,
            seq,
            journal,
            buf: Vec::with_capacity(1 << 20),
            unsynced: false,
            stats: stats.clone(),
            snapshot: None,
        };
        let (fsync, every) = (
            Duration::from_millis(cfg.fsync_ms),
            Duration::from_secs(cfg.snapshot_s),
        );
        let thread = {
            let (stop, fin) = (stop.clone(), final_snapshot.clone());
            std::thread::Builder::new()
                .name("tether-persist".into())
                .spawn(move || st.run(&rx, fsync, every, &stop, &fin))?
        };
        Ok(Writer {
            stop,
            final_snapshot,
            thread: Some(thread),
            stats,
        })
    }

    /// Commits what is queued, then (when `snapshot`) writes a full
    /// snapshot before returning: call it after the cores stopped.
    pub fn shutdown(mut self, snapshot: bool) {
        self.final_snapshot.store(snapshot, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl State {
    fn run(
        &mut self,
        rx: &Receiver<Box<[u8]>>,
        fsync: Duration,
        every: Duration,
        stop: &AtomicBool,
        fin: &AtomicBool,
    ) {
        // Written to the OS every few ms (a killed process loses nothing
        // written), synced to the disk every `fsync` (what a power cut
        // may lose).
        let flush_every = fsync.min(Duration::from_millis(10));
        let mut next_flush = Instant::now() + flush_every;
        let mut next_sync = Instant::now() + fsync;
        let mut next_snapshot = Instant::now() + every;
        let mut last_snapshot = Instant::now();
        loop {
            // Sleep, then take what queued meanwhile: a writer blocked in
            // recv would have every core's send pay a wake-up (a futex
            // call) at a million changes a second; this way a send is an
            // enqueue and nothing more.
            let now = Instant::now();
            std::thread::sleep(next_flush.min(next_sync).saturating_duration_since(now));
            for b in rx.try_iter() {
                self.append(&b);
            }
            let now = Instant::now();
            if now >= next_flush {
                self.flush();
                next_flush = now + flush_every;
            }
            if now >= next_sync {
                self.commit();
                next_sync = now + fsync;
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if self.snapshot.as_ref().is_some_and(|t| t.is_finished()) {
                if let Some(t) = self.snapshot.take() {
                    let _ = t.join();
                }
            }
            // A drop means the journal misses a change: a snapshot taken
            // after it has it.
            // (At most one a second for that, should the disk keep failing.)
            let lost = self.stats.lost.load(Ordering::Relaxed)
                && now >= last_snapshot + Duration::from_secs(1);
            if self.snapshot.is_none() && (now >= next_snapshot || lost) {
                self.stats.lost.store(false, Ordering::Relaxed);
                self.start_snapshot(false);
                next_snapshot = now + every;
                last_snapshot = now;
            }
        }
        for b in rx.try_iter() {
            self.append(&b);
        }
        self.commit();
        if let Some(t) = self.snapshot.take() {
            let _ = t.join();
        }
        if fin.load(Ordering::SeqCst) {
            self.start_snapshot(true);
        }
    }

    fn append(&mut self, block: &[u8]) {
        record::put(&mut self.buf, Kind::Aor, block);
        self.stats.records.fetch_add(1, Ordering::Relaxed);
    }

    /// Hands the records since the last call to the OS in one write.
    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.journal.write_all(&self.buf) {
            Ok(()) => {
                self.stats
                    .bytes
                    .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
                self.unsynced = true;
            }
            Err(e) => self.failed(&e),
        }
        self.buf.clear();
    }

    /// The group commit: one `fdatasync` for every record written since
    /// the last.
    fn commit(&mut self) {
        self.flush();
        if !std::mem::take(&mut self.unsynced) {
            return;
        }
        match self.journal.sync_data() {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.failed(&e),
        }
    }

    fn failed(&mut self, e: &std::io::Error) {
        // The next snapshot covers what this journal lost.
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        self.stats.lost.store(true, Ordering::Relaxed);
        tracing::error!(error = %e, "persist: journal write failed");
    }

    /// Moves to a new journal and snapshots the directory as of now, on a
    /// thread of its own (or on this one, `wait`, at shutdown).
    fn start_snapshot(&mut self, wait: bool) {
        self.commit();
        let seq = self.seq + 1;
        match store::open_journal(&self.dir, seq, self.epoch_ms) {
            Ok(j) => {
                self.journal = j;
                self.seq = seq;
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "persist: cannot open a new journal; no snapshot");
                return;
            }
        }
        let (dir, directory, epoch, stats) = (
            self.dir.clone(),
            self.directory.clone(),
            self.epoch_ms,
            self.stats.clone(),
        );
        let job = move || {
            let t = Instant::now();
            let r = store::write_snapshot(&dir, seq, epoch, &directory)
                .and_then(|n| store::prune(&dir, seq).map(|()| n));
            match r {
                Ok(n) => {
                    stats.snapshots.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        aors = n,
                        seq,
                        ms = t.elapsed().as_millis() as u64,
                        "persist: snapshot written"
                    );
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    stats.lost.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, seq, "persist: snapshot failed");
                }
            }
        };
        if wait {
            job();
        } else {
            match std::thread::Builder::new()
                .name("tether-snapshot".into())
                .spawn(job)
            {
                Ok(t) => self.snapshot = Some(t),
                Err(e) => tracing::error!(error = %e, "persist: cannot start the snapshot thread"),
            }
        }
    }
}
