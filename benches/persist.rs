//! Persistence, sans network: `cargo bench --bench persist [-- N]` (N
//! bindings, default 1,000,000; files under $TMPDIR).
//!
//! 1. The journal as tether runs it: a directory whose every change goes
//!    through the writer thread, changed at 100,000/s for 5 s by two
//!    threads; records written, dropped, group commits, and the writer
//!    thread's CPU per record (its `schedstat`).
//! 2. Own format against redb (dev-dependency, this bench only): the same N
//!    AOR blocks appended as fast as possible, one commit (fdatasync /
//!    redb's durable commit) per 10,000 records, then read back.
//! 3. Recovery of N bindings: snapshot written, then loaded and restored
//!    into an empty directory over 2 cores; and the same from a journal
//!    alone (a crash before any snapshot).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::persist::record::{self, Kind, JOURNAL_MAGIC};
use tether::persist::{self as persist, writer::Writer, PersistSection};
use tether::registrar::{packed, AorRecord, BindingRef, ContactView, Decision, Directory};

fn view(i: usize, expires_at: u32) -> ContactView {
    ContactView {
        binding: BindingRef {
            core: (i % 2) as u16,
            slot: i as u32,
            gen: 1,
        },
        contact: format!(
            "sip:u{i}@10.{}.{}.{}:5060",
            i >> 16 & 255,
            i >> 8 & 255,
            i & 255
        )
        .into(),
        expires_at,
        instance: Some(format!("urn:uuid:00000000-0000-1000-8000-{i:012x}").into()),
        reg_id: Some(1),
        source: format!(
            "198.{}.{}.{}:{}",
            18 + (i >> 16 & 1),
            i >> 8 & 255,
            i & 255,
            1024 + i % 60000
        )
        .parse()
        .unwrap(),
        flags: 2,
        call_id_hash: i as u64 * 0x9E37_79B9,
        cseq: 1,
        ..ContactView::default()
    }
}

fn aor(i: usize) -> String {
    format!("u{i}@example.com")
}

fn put(dir: &Directory, i: usize, expires_at: u32) {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(i, expires_at));
    dir.update(&aor(i), |_| Decision::Replace(rec, ()));
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "tether-bench-persist-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// CPU time (ns) of this process's threads named `name`.
fn thread_ns(name: &str) -> u64 {
    let mut sum = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            sum += s
                .split(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    sum
}

/// CPU time of this thread (s): the machine is shared, so wall time alone
/// says little about what a restore costs.
fn cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn journal_at_rate(rate: u64, secs: u64) {
    let d = scratch("rate");
    let cfg = PersistSection {
        enabled: true,
        dir: d.display().to_string(),
        // No snapshot during the run: the journal alone is measured.
        snapshot_s: 86_400,
        ..PersistSection::default()
    };
    let dir = Arc::new(Directory::with_capacity(200_000));
    let w = Writer::start(&cfg, dir.clone(), 1, unix_ms()).unwrap();
    let stats = w.stats.clone();
    let before = thread_ns("tether-persist");
    let t = Instant::now();
    let producers = 2;
    std::thread::scope(|s| {
        for p in 0..producers {
            let dir = dir.clone();
            s.spawn(move || {
                let per = rate / producers;
                let total = per * secs;
                let begin = Instant::now();
                for k in 0..total {
                    // 100,000 AORs, each changed again and again (refreshes).
                    let i = (k * producers + p) as usize % 100_000;
                    put(&dir, i, 3600 + k as u32);
                    if k % 100 == 0 {
                        let due = Duration::from_micros(k * 1_000_000 / per);
                        if let Some(ahead) = due.checked_sub(begin.elapsed()) {
                            std::thread::sleep(ahead);
                        }
                    }
                }
            });
        }
    });
    let offered_s = t.elapsed().as_secs_f64();
    // The last group commit.
    std::thread::sleep(Duration::from_millis(300));
    let cpu = thread_ns("tether-persist") - before;
    let written = stats.records.load(Ordering::Relaxed);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let commits = stats.commits.load(Ordering::Relaxed);
    let bytes = stats.bytes.load(Ordering::Relaxed);
    println!(
        "journal at {rate}/s for {secs} s: offered {:.0}/s, written {written}, dropped {dropped}, \
         {commits} group commits ({:.0} records each), {:.1} MB/s, writer CPU {:.2} µs/record ({:.1}% of a core)",
        written as f64 / offered_s,
        written as f64 / commits.max(1) as f64,
        bytes as f64 / offered_s / 1e6,
        cpu as f64 / 1000.0 / written.max(1) as f64,
        cpu as f64 / 1e9 / offered_s * 100.0
    );
    drop(w);
    let _ = std::fs::remove_dir_all(&d);
}

/// What the journal costs the thread that changes the directory (a core):
/// `n` new AORs stored with and without the writer installed, alternating,
/// CPU time of the storing thread per change.
fn core_cost(n: usize) {
    for round in 1..=2 {
        let mut line = format!("round {round}: CPU per new AOR stored, {n} AORs:");
        let modes = if round % 2 == 1 {
            ["off", "on"]
        } else {
            ["on", "off"]
        };
        for mode in modes {
            let d = scratch("core");
            let dir = Arc::new(Directory::with_capacity(n));
            let w = (mode == "on").then(|| {
                let cfg = PersistSection {
                    enabled: true,
                    dir: d.display().to_string(),
                    snapshot_s: 86_400,
                    queue: 1 << 20,
                    ..PersistSection::default()
                };
                Writer::start(&cfg, dir.clone(), 1, unix_ms()).unwrap()
            });
            let c = cpu_s();
            for i in 0..n {
                put(&dir, i, 3600);
            }
            let per = (cpu_s() - c) * 1e9 / n as f64;
            let dropped = w
                .as_ref()
                .map_or(0, |w| w.stats.dropped.load(Ordering::Relaxed));
            line += &format!(" persist {mode} {per:.0} ns (dropped {dropped});");
            drop(w);
            drop(dir);
            let _ = std::fs::remove_dir_all(&d);
        }
        println!("{line}");
    }
}

fn blocks(n: usize) -> Vec<(String, Box<[u8]>)> {
    (0..n)
        .map(|i| {
            let mut rec = AorRecord::default();
            rec.contacts.push(view(i, 3600));
            (aor(i), packed::encode(&aor(i), &rec).unwrap())
        })
        .collect()
}

const PER_COMMIT: usize = 10_000;

fn own_format_append(b: &[(String, Box<[u8]>)]) -> (f64, f64, u64) {
    let d = scratch("own");
    let path = d.join("journal-0000000000000001");
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut buf = JOURNAL_MAGIC.to_vec();
    record::put_epoch(&mut buf, 0);
    for chunk in b.chunks(PER_COMMIT) {
        for (_, block) in chunk {
            record::put(&mut buf, Kind::Aor, block);
        }
        f.write_all(&buf).unwrap();
        f.sync_data().unwrap();
        buf.clear();
    }
    let append = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let bytes = std::fs::read(&path).unwrap();
    let mut r = persist::Replay::new();
    r.apply_file(bytes, JOURNAL_MAGIC);
    assert_eq!(r.len(), b.len());
    let read = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&d);
    (append, read, size)
}

fn redb_append(b: &[(String, Box<[u8]>)]) -> (f64, f64, u64) {
    use redb::{ReadableDatabase as _, ReadableTable as _};
    const T: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("aors");
    let d = scratch("redb");
    let path = d.join("db.redb");
    let t = Instant::now();
    let db = redb::Database::create(&path).unwrap();
    for chunk in b.chunks(PER_COMMIT) {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(T).unwrap();
            for (k, v) in chunk {
                table.insert(k.as_str(), &v[..]).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let append = t.elapsed().as_secs_f64();
    drop(db);
    let size = std::fs::metadata(&path).unwrap().len();
    let t = Instant::now();
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(T).unwrap();
    let mut r = persist::Replay::new();
    r.apply(Kind::Epoch, &0u64.to_le_bytes());
    for e in table.iter().unwrap() {
        let (_, v) = e.unwrap();
        r.apply(Kind::Aor, v.value());
    }
    assert_eq!(r.len(), b.len());
    let read = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&d);
    (append, read, size)
}

fn recovery(n: usize) {
    let d = scratch("recover");
    let dir = Directory::with_capacity(n);
    for i in 0..n {
        put(&dir, i, 3600);
    }
    let epoch = unix_ms();
    let t = Instant::now();
    let aors = persist::store::write_snapshot(&d, 1, epoch, &dir).unwrap();
    let snap_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(persist::store::snapshot_path(&d, 1))
        .unwrap()
        .len();
    drop(dir);
    let cfg = PersistSection {
        enabled: true,
        dir: d.display().to_string(),
        ..PersistSection::default()
    };
    let restore = |what: &str| {
        let fresh = Directory::with_capacity(n);
        let (t, c) = (Instant::now(), cpu_s());
        let mut loaded = persist::store::load(&d).unwrap();
        let (load_wall, load_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
        let replay = std::mem::take(&mut loaded.replay);
        let (t, c) = (Instant::now(), cpu_s());
        let per_core = replay.restore(&fresh, unix_ms(), unix_ms(), 2);
        let (rb_wall, rb_cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
        assert_eq!(per_core.iter().map(Vec::len).sum::<usize>(), n);
        println!(
            "restore of {n} bindings from {what}: {:.2} s wall, {:.2} s CPU (read and replay {load_wall:.2} s wall, \
             {load_cpu:.2} s CPU; directory rebuilt {rb_wall:.2} s wall, {rb_cpu:.2} s CPU)",
            load_wall + rb_wall,
            load_cpu + rb_cpu
        );
        // The whole call as tether makes it.
        let fresh = Directory::with_capacity(n);
        let t = Instant::now();
        let r = persist::restore(&cfg, &fresh, unix_ms(), 2).unwrap();
        assert_eq!(r.bindings, n);
        println!(
            "  persist::restore again: {:.2} s wall",
            t.elapsed().as_secs_f64()
        );
    };
    println!(
        "snapshot of {aors} AORs: written in {snap_s:.2} s, {:.0} MB ({:.0} B per AOR)",
        size as f64 / 1e6,
        size as f64 / aors as f64
    );
    restore("the snapshot");
    // The same bindings from a journal alone.
    std::fs::remove_file(persist::store::snapshot_path(&d, 1)).unwrap();
    let mut f = persist::store::open_journal(&d, 1, epoch).unwrap();
    let mut buf = Vec::new();
    for (_, b) in blocks(n) {
        record::put(&mut buf, Kind::Aor, &b);
    }
    f.write_all(&buf).unwrap();
    f.sync_all().unwrap();
    restore("a journal alone");
    let _ = std::fs::remove_dir_all(&d);
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    // PERSIST_ONLY=recovery skips the journal parts.
    if std::env::var("PERSIST_ONLY").as_deref() == Ok("recovery") {
        recovery(n);
        return;
    }
    journal_at_rate(100_000, 5);
    core_cost(n);
    let b = blocks(n);
    let avg = b.iter().map(|(_, v)| v.len()).sum::<usize>() / n.max(1);
    for round in 1..=2 {
        let (oa, or, os) = own_format_append(&b);
        let (ra, rr, rs) = redb_append(&b);
        println!(
            "round {round}: {n} AOR blocks of {avg} B, a commit per {PER_COMMIT}: \
             own format {:.0}/s append, {:.2} s read back, {:.0} MB; \
             redb {:.0}/s append, {:.2} s read back, {:.0} MB",
            n as f64 / oa,
            or,
            os as f64 / 1e6,
            n as f64 / ra,
            rr,
            rs as f64 / 1e6
        );
    }
    drop(b);
    recovery(n);
}
