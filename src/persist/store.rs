//! The files in `persist.dir`: numbered journals and snapshots.
//!
//! `journal-N` holds the changes made from the moment it was opened;
//! `snapshot-N` the whole directory as walked just after `journal-N` was
//! opened. So the state is the newest whole snapshot `N` plus every journal
//! numbered `N` or more, in order (records are states: a change seen both
//! in the walk and in `journal-N` is applied twice to the same result).
//! A snapshot is written to a temporary name, synced, then renamed, so a
//! crash leaves the previous one; one damaged some other way is skipped for
//! the one before it, which is why the two newest snapshots and the
//! journals from the older one on are kept.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::record::{self, Damage, Kind, JOURNAL_MAGIC, SNAPSHOT_MAGIC};
use super::replay::Replay;
use crate::registrar::Directory;

pub fn journal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("journal-{seq:016}"))
}

pub fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snapshot-{seq:016}"))
}

/// The numbers of the snapshots and journals in `dir`, each ascending.
pub fn list(dir: &Path) -> io::Result<(Vec<u64>, Vec<u64>)> {
    let (mut snaps, mut journals) = (Vec::new(), Vec::new());
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("snapshot-").and_then(|n| n.parse().ok()) {
            snaps.push(n);
        } else if let Some(n) = name.strip_prefix("journal-").and_then(|n| n.parse().ok()) {
            journals.push(n);
        }
    }
    snaps.sort_unstable();
    journals.sort_unstable();
    Ok((snaps, journals))
}

/// What [`load`] found.
pub struct Loaded {
    pub replay: Replay,
    /// The number the next journal takes.
    pub next_seq: u64,
    /// The snapshot used, if any.
    pub snapshot: Option<u64>,
    pub journals: usize,
    /// Files skipped or cut short, each with why (also logged).
    pub damage: Vec<String>,
}

/// Reads the newest whole snapshot and the journals after it. Damage is
/// logged and skipped, never an error: only an unreadable directory is.
pub fn load(dir: &Path) -> io::Result<Loaded> {
    fs::create_dir_all(dir)?;
    let (snaps, journals) = list(dir)?;
    let mut damage = Vec::new();
    let mut replay = Replay::new();
    let mut used = None;
    for &n in snaps.iter().rev() {
        let path = snapshot_path(dir, n);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                damage.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let mut r = Replay::new();
        match whole(&r.apply_file(bytes, SNAPSHOT_MAGIC)) {
            Ok(()) => {
                replay = r;
                used = Some(n);
                break;
            }
            Err(why) => {
                tracing::warn!(file = %path.display(), why, "snapshot damaged: trying the one before");
                damage.push(format!("{}: {why}", path.display()));
            }
        }
    }
    let from = used.unwrap_or(0);
    let mut read = 0;
    for &n in journals.iter().filter(|&&n| n >= from) {
        let path = journal_path(dir, n);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "journal unreadable: skipped");
                damage.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let size = bytes.len();
        read += 1;
        let report = replay.apply_file(bytes, JOURNAL_MAGIC);
        if let Some(d @ Damage::OldFormat { .. }) = report.damage {
            tracing::warn!(file = %path.display(), "journal skipped: {d}");
            damage.push(format!("{}: {d}", path.display()));
        } else if let Some(d) = report.damage {
            let lost = size - report.good_len.min(size);
            tracing::warn!(
                file = %path.display(),
                damage = %d,
                dropped_bytes = lost,
                "journal tail damaged (a write cut by a crash?): kept the records before it"
            );
            damage.push(format!("{}: {d}, {lost} bytes dropped", path.display()));
        }
    }
    let next_seq = snaps.iter().chain(&journals).max().map_or(1, |m| m + 1);
    Ok(Loaded {
        replay,
        next_seq,
        snapshot: used,
        journals: read,
        damage,
    })
}

/// Whether a snapshot was read whole: every record good and an end record
/// counting them.
fn whole(r: &super::replay::FileReport) -> Result<(), String> {
    if let Some(d) = r.damage {
        return Err(d.to_string());
    }
    match r.end {
        Some(n) if n == r.aors => Ok(()),
        Some(n) => Err(format!("end record counts {n} AORs, {} read", r.aors)),
        None => Err("no end record (cut short)".into()),
    }
}

/// Writes snapshot `seq` of `directory` (`epoch_ms`: the clock zero its
/// expiries count from): to a temporary file, synced, renamed, and the
/// directory synced. Returns the AORs written.
pub fn write_snapshot(
    dir: &Path,
    seq: u64,
    epoch_ms: u64,
    directory: &Directory,
) -> io::Result<u64> {
    let tmp = dir.join(format!("snapshot-{seq:016}.tmp"));
    let file = fs::File::create(&tmp)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, file);
    let mut buf = SNAPSHOT_MAGIC.to_vec();
    record::put_epoch(&mut buf, epoch_ms);
    let mut aors = 0u64;
    let mut err = None;
    directory.for_each_block(|b| {
        if err.is_some() {
            return;
        }
        record::put(&mut buf, Kind::Aor, b);
        aors += 1;
        if buf.len() >= 1 << 16 {
            err = w.write_all(&buf).err();
            buf.clear();
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    record::put(&mut buf, Kind::End, &aors.to_le_bytes());
    w.write_all(&buf)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    fs::rename(&tmp, snapshot_path(dir, seq))?;
    sync_dir(dir)?;
    Ok(aors)
}

/// Makes renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// After snapshot `seq` is durable: keeps it and the snapshot before it,
/// and the journals from that one on; removes the rest (and leftover
/// temporary files).
pub fn prune(dir: &Path, seq: u64) -> io::Result<()> {
    let (snaps, journals) = list(dir)?;
    let Some(&keep_from) = snaps.iter().rev().find(|&&n| n < seq) else {
        return Ok(());
    };
    for &n in snaps.iter().filter(|&&n| n < keep_from) {
        fs::remove_file(snapshot_path(dir, n))?;
    }
    for &n in journals.iter().filter(|&&n| n < keep_from) {
        fs::remove_file(journal_path(dir, n))?;
    }
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let stale = name
            .to_str()
            .and_then(|n| {
                n.strip_prefix("snapshot-")?
                    .strip_suffix(".tmp")?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|n| n < seq);
        if stale {
            fs::remove_file(e.path())?;
        }
    }
    sync_dir(dir)
}

/// Opens journal `seq` for appending, with its magic and epoch record.
pub fn open_journal(dir: &Path, seq: u64, epoch_ms: u64) -> io::Result<fs::File> {
    let mut f = fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(journal_path(dir, seq))?;
    let mut head = JOURNAL_MAGIC.to_vec();
    record::put_epoch(&mut head, epoch_ms);
    f.write_all(&head)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::{AorRecord, BindingRef, ContactView, Decision};

    pub(crate) fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tether-persist-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn put_aor(dir: &Directory, aor: &str, expires_at: u32) {
        let mut rec = AorRecord::default();
        rec.contacts.push(ContactView {
            binding: BindingRef {
                core: 0,
                slot: 1,
                gen: 1,
            },
            contact: format!("sip:{aor}").into(),
            expires_at,
            source: "192.0.2.1:5060".parse().unwrap(),
            ..ContactView::default()
        });
        dir.update(aor, |_| Decision::Replace(rec, ()));
    }

    fn restored(d: &Path) -> (Directory, Loaded) {
        let mut l = load(d).unwrap();
        let replay = std::mem::take(&mut l.replay);
        let out = Directory::new();
        replay.restore(&out, 0, 0, 1);
        (out, l)
    }

    #[test]
    fn a_snapshot_plus_its_journal_restore_everything_and_prune_truncates() {
        let d = tmpdir("snap");
        let dir = Directory::new();
        put_aor(&dir, "a@x", 100);
        put_aor(&dir, "b@x", 100);
        let mut j = open_journal(&d, 1, 0).unwrap();
        assert_eq!(write_snapshot(&d, 1, 0, &dir).unwrap(), 2);
        let mut buf = Vec::new();
        put_aor(&dir, "c@x", 100);
        dir.with_aor("c@x", |_| ());
        let mut c = AorRecord::default();
        dir.with_aor("c@x", |r| c = r.unwrap().clone());
        record::put(
            &mut buf,
            Kind::Aor,
            &crate::registrar::packed::encode("c@x", &c).unwrap(),
        );
        j.write_all(&buf).unwrap();
        let (out, l) = restored(&d);
        assert_eq!(l.snapshot, Some(1));
        assert_eq!(l.next_seq, 2);
        assert_eq!(out.aor_count(), 3);
        // Two more snapshots: the first pair goes.
        open_journal(&d, 2, 0).unwrap();
        write_snapshot(&d, 2, 0, &dir).unwrap();
        prune(&d, 2).unwrap();
        assert_eq!(list(&d).unwrap(), (vec![1, 2], vec![1, 2]));
        open_journal(&d, 3, 0).unwrap();
        write_snapshot(&d, 3, 0, &dir).unwrap();
        prune(&d, 3).unwrap();
        assert_eq!(list(&d).unwrap(), (vec![2, 3], vec![2, 3]));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_newest_snapshot_falls_back_to_the_one_before() {
        let d = tmpdir("fallback");
        let dir = Directory::new();
        put_aor(&dir, "a@x", 100);
        open_journal(&d, 1, 0).unwrap();
        write_snapshot(&d, 1, 0, &dir).unwrap();
        // b arrives in journal 1 only; then snapshot 2 gets damaged.
        let mut j = fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&d, 1))
            .unwrap();
        put_aor(&dir, "b@x", 100);
        let mut b = AorRecord::default();
        dir.with_aor("b@x", |r| b = r.unwrap().clone());
        let mut buf = Vec::new();
        record::put(
            &mut buf,
            Kind::Aor,
            &crate::registrar::packed::encode("b@x", &b).unwrap(),
        );
        j.write_all(&buf).unwrap();
        open_journal(&d, 2, 0).unwrap();
        write_snapshot(&d, 2, 0, &dir).unwrap();
        for damage in ["flip", "cut"] {
            let p = snapshot_path(&d, 2);
            let mut bytes = fs::read(&p).unwrap();
            let good = bytes.clone();
            match damage {
                "flip" => bytes[20] ^= 0x10,
                _ => bytes.truncate(bytes.len() - 3),
            }
            fs::write(&p, &bytes).unwrap();
            let (out, l) = restored(&d);
            assert_eq!(l.snapshot, Some(1), "{damage}");
            assert_eq!(l.damage.len(), 1, "{damage}");
            assert_eq!(out.aor_count(), 2, "{damage}: b comes from journal 1");
            fs::write(&p, &good).unwrap();
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_journal_loads_what_precedes_the_tear() {
        let d = tmpdir("torn");
        let dir = Directory::new();
        put_aor(&dir, "a@x", 100);
        put_aor(&dir, "b@x", 100);
        let mut j = open_journal(&d, 1, 0).unwrap();
        let mut buf = Vec::new();
        for aor in ["a@x", "b@x"] {
            let mut r = AorRecord::default();
            dir.with_aor(aor, |x| r = x.unwrap().clone());
            record::put(
                &mut buf,
                Kind::Aor,
                &crate::registrar::packed::encode(aor, &r).unwrap(),
            );
        }
        j.write_all(&buf[..buf.len() - 5]).unwrap();
        let (out, l) = restored(&d);
        assert_eq!(out.aor_count(), 1);
        assert_eq!(l.damage.len(), 1);
        assert!(l.damage[0].contains("cut short"), "{:?}", l.damage);
        fs::remove_dir_all(&d).unwrap();
    }
}
