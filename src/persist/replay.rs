//! Replay, sans-IO: the records of a snapshot and the journals after it in,
//! each AOR's latest state out; then that state into a fresh directory, its
//! expiries moved onto the new run's clock and its bindings dealt to the
//! cores that will own them.

use super::record::{u64_payload, Damage, Kind, Reader};
use crate::addr::PathKey;
use crate::registrar::binding::{flags, BindingRef};
use crate::registrar::{packed, AorRecord, Directory};

/// Where one AOR's latest state is: its packed block as written (in one of
/// the files replay keeps), and the clock zero (Unix ms) of the run that
/// wrote it. Positions rather than copies: a restore of a million AORs
/// allocates nothing per record until it builds the directory's blocks.
#[derive(Clone, Copy)]
struct Loc {
    file: u32,
    len: u32,
    start: usize,
    epoch_ms: u64,
}

/// What replay counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records applied.
    pub records: u64,
    /// Records skipped: a block that does not decode, or an AOR record
    /// before any epoch.
    pub skipped: u64,
}

/// What one file held, as far as it could be read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FileReport {
    pub damage: Option<Damage>,
    /// Bytes of whole records (with the magic).
    pub good_len: usize,
    /// AOR records read.
    pub aors: u64,
    /// The count in a snapshot's end record, if it has one (reading stops
    /// there).
    pub end: Option<u64>,
}

/// Every AOR's latest state, as replay has seen so far.
#[derive(Default)]
pub struct Replay {
    /// The files read, whole; file 0 collects records applied one by one.
    files: Vec<Vec<u8>>,
    index: hashbrown::HashTable<Loc>,
    hasher: foldhash::fast::FixedState,
    epoch_ms: Option<u64>,
    pub stats: ReplayStats,
}

/// A binding restored on a core: what its registrar and keepalive need.
/// Its slot on that core is its index in the core's list (generation 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The AOR's [`Directory::hash`].
    pub aor: u64,
    /// On the new run's clock (s).
    pub expires_at: u32,
    pub path: PathKey,
    /// Its path was dead when it was written.
    pub unreachable: bool,
}

fn block_at<'f>(files: &'f [Vec<u8>], l: &Loc) -> &'f [u8] {
    &files[l.file as usize][l.start..l.start + l.len as usize]
}

impl Replay {
    pub fn new() -> Replay {
        Replay {
            files: vec![Vec::new()],
            ..Replay::default()
        }
    }

    /// Applies a whole file's records (it must start with `magic`), up to
    /// damage or a snapshot's end record; each file states the epoch of its
    /// records before them.
    pub fn apply_file(&mut self, bytes: Vec<u8>, magic: &[u8; 8]) -> FileReport {
        if self.files.is_empty() {
            self.files.push(Vec::new());
        }
        self.epoch_ms = None;
        // About 110 bytes a record: room up front rather than rehashing a
        // million entries as they come.
        self.index.reserve(bytes.len() / 128, |l| {
            std::hash::BuildHasher::hash_one(&self.hasher, packed::aor(block_at(&self.files, l)))
        });
        let file = self.files.len() as u32;
        self.files.push(bytes);
        let mut report = FileReport::default();
        let files = &self.files;
        let bytes = &files[file as usize];
        let mut r = Reader::new(bytes, magic);
        for (kind, payload) in r.by_ref() {
            match kind {
                Kind::End => {
                    report.end = Some(u64_payload(payload).unwrap_or(u64::MAX));
                    break;
                }
                Kind::Aor => report.aors += 1,
                Kind::Epoch => {}
            }
            let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
            Self::apply_at(
                &mut self.index,
                &self.hasher,
                &mut self.epoch_ms,
                &mut self.stats,
                files,
                kind,
                (file, start, payload.len()),
            );
        }
        report.damage = r.damage();
        report.good_len = r.good_len();
        report
    }

    /// Applies one record from elsewhere (its payload is copied).
    pub fn apply(&mut self, kind: Kind, payload: &[u8]) {
        if self.files.is_empty() {
            self.files.push(Vec::new());
        }
        let start = self.files[0].len();
        self.files[0].extend_from_slice(payload);
        let files = &self.files;
        Self::apply_at(
            &mut self.index,
            &self.hasher,
            &mut self.epoch_ms,
            &mut self.stats,
            files,
            kind,
            (0, start, payload.len()),
        );
    }

    fn apply_at(
        index: &mut hashbrown::HashTable<Loc>,
        hasher: &foldhash::fast::FixedState,
        epoch: &mut Option<u64>,
        stats: &mut ReplayStats,
        files: &[Vec<u8>],
        kind: Kind,
        (file, start, len): (u32, usize, usize),
    ) {
        let payload = &files[file as usize][start..start + len];
        match kind {
            Kind::Epoch => match u64_payload(payload) {
                Some(e) => *epoch = Some(e),
                None => stats.skipped += 1,
            },
            Kind::Aor => {
                let (Some(epoch_ms), true) = (*epoch, packed::is_valid(payload)) else {
                    stats.skipped += 1;
                    return;
                };
                stats.records += 1;
                let name = packed::aor(payload);
                let hash = std::hash::BuildHasher::hash_one(hasher, name);
                let same = |l: &Loc| packed::aor(block_at(files, l)) == name;
                let rehash = |l: &Loc| {
                    std::hash::BuildHasher::hash_one(hasher, packed::aor(block_at(files, l)))
                };
                let loc = Loc {
                    file,
                    len: len as u32,
                    start,
                    epoch_ms,
                };
                let gone = packed::contacts(payload).next().is_none();
                match index.entry(hash, same, rehash) {
                    hashbrown::hash_table::Entry::Occupied(e) if gone => {
                        e.remove();
                    }
                    hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = loc,
                    hashbrown::hash_table::Entry::Vacant(e) if !gone => {
                        e.insert(loc);
                    }
                    hashbrown::hash_table::Entry::Vacant(_) => {}
                }
            }
            Kind::End => {}
        }
    }

    /// AORs with contacts so far.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Stores every binding not expired at `now_unix_ms` in `dir` (which
    /// must be empty and have no journal yet), with expiries on the clock
    /// whose zero is `epoch_ms` and each binding on core `old core %
    /// cores`. Returns each core's restored bindings, in slot order.
    ///
    /// Spread over the machine's threads: the AORs (in file order) are cut
    /// into one run per thread; a first pass counts each run's bindings per
    /// core, so every thread knows the slots its bindings take, and the
    /// runs' lists join in order.
    pub fn restore(
        self,
        dir: &Directory,
        epoch_ms: u64,
        now_unix_ms: u64,
        cores: usize,
    ) -> Vec<Vec<Restored>> {
        let cores = cores.max(1);
        let clock = Clock {
            epoch_ms,
            now_unix_ms,
        };
        // In file order: the blocks are read front to back, not at random
        // (a third of the time, at a million, went on cache misses).
        let mut locs: Vec<Loc> = self.index.iter().copied().collect();
        locs.sort_unstable_by_key(|l| (l.file, l.start));
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16)
            .min(locs.len() / 10_000 + 1);
        let chunk = locs.len().div_ceil(threads).max(1);
        let files = &self.files;
        let runs: Vec<&[Loc]> = locs.chunks(chunk).collect();
        let counts: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = runs
                .iter()
                .map(|run| s.spawn(move || count(files, run, clock, cores)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut base = vec![0u32; cores];
        let mut bases = Vec::with_capacity(runs.len());
        for c in &counts {
            bases.push(base.clone());
            for (b, n) in base.iter_mut().zip(c) {
                *b += n;
            }
        }
        let lists: Vec<Vec<Vec<Restored>>> = std::thread::scope(|s| {
            let handles: Vec<_> = runs
                .iter()
                .zip(&bases)
                .map(|(run, base)| s.spawn(move || rebuild(files, run, dir, clock, base)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut per_core: Vec<Vec<Restored>> = (0..cores)
            .map(|c| Vec::with_capacity(base[c] as usize))
            .collect();
        for run in lists {
            for (all, mine) in per_core.iter_mut().zip(run) {
                all.extend(mine);
            }
        }
        per_core
    }
}

/// The new run's clock and the wall time of the restore.
#[derive(Clone, Copy)]
struct Clock {
    epoch_ms: u64,
    now_unix_ms: u64,
}

impl Clock {
    /// The new run's expiry (s) of a contact written at `written_ms` (the
    /// writing run's clock zero), or None when its time is up.
    fn moved(self, written_ms: u64, expires_at: u32) -> Option<u32> {
        let unix_exp_ms = written_ms + u64::from(expires_at) * 1000;
        if unix_exp_ms <= self.now_unix_ms || unix_exp_ms <= self.epoch_ms {
            return None;
        }
        // Rounded up, so a binding never expires before its time.
        Some(u32::try_from((unix_exp_ms - self.epoch_ms).div_ceil(1000)).unwrap_or(u32::MAX))
    }
}

/// Live bindings per core in a run of AORs.
fn count(files: &[Vec<u8>], run: &[Loc], clock: Clock, cores: usize) -> Vec<u32> {
    let mut n = vec![0u32; cores];
    for l in run {
        for p in packed::contacts(block_at(files, l)) {
            if clock.moved(l.epoch_ms, p.expires_at).is_some() {
                n[usize::from(p.binding.core) % cores] += 1;
            }
        }
    }
    n
}

/// Puts a run of AORs into `dir`, its bindings on their cores from slot
/// `base[core]` on; returns them per core, in slot order.
fn rebuild(
    files: &[Vec<u8>],
    run: &[Loc],
    dir: &Directory,
    clock: Clock,
    base: &[u32],
) -> Vec<Vec<Restored>> {
    let cores = base.len();
    let mut per_core: Vec<Vec<Restored>> = vec![Vec::new(); cores];
    let mut devices: Vec<String> = Vec::new();
    for l in run {
        let block = block_at(files, l);
        let name = packed::aor(block);
        let hash = dir.hash(name);
        let mut deal = |p: &packed::Packed<'_>, expires_at: u32| {
            let core = usize::from(p.binding.core) % cores;
            let list = &mut per_core[core];
            list.push(Restored {
                aor: hash,
                expires_at,
                path: PathKey::new(p.local, p.source),
                unreachable: p.flags & flags::UNREACHABLE != 0,
            });
            BindingRef {
                core: core as u16,
                slot: base[core] + (list.len() - 1) as u32,
                gen: 1,
            }
        };
        devices.clear();
        let all_live =
            packed::contacts(block).all(|p| clock.moved(l.epoch_ms, p.expires_at).is_some());
        if all_live {
            // The common case: the block as written, with new bindings and
            // expiries and its strings copied, not decoded.
            let b = packed::rebind(block, |_, p| {
                let exp = clock.moved(l.epoch_ms, p.expires_at).unwrap_or(1);
                (deal(p, exp), exp)
            });
            devices.extend(packed::contacts(&b).filter_map(|p| p.instance()));
            dir.put_block(b);
        } else {
            let mut rec = AorRecord::default();
            for p in packed::contacts(block) {
                let Some(exp) = clock.moved(l.epoch_ms, p.expires_at) else {
                    continue;
                };
                let mut v = p.to_view();
                v.binding = deal(&p, exp);
                v.expires_at = exp;
                rec.contacts.push(v);
            }
            if rec.contacts.is_empty() {
                continue;
            }
            devices.extend(
                rec.contacts
                    .iter()
                    .filter_map(|c| c.instance.as_deref().map(str::to_owned)),
            );
            if let Ok(b) = packed::encode(name, &rec) {
                dir.put_block(b);
            }
        }
        for d in &devices {
            dir.set_device(d, name);
        }
    }
    per_core
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::record::{put, put_epoch, JOURNAL_MAGIC};
    use crate::registrar::ContactView;

    fn block(aor: &str, contacts: &[(u16, u32, u8)]) -> Box<[u8]> {
        let mut rec = AorRecord::default();
        for (i, &(core, expires_at, fl)) in contacts.iter().enumerate() {
            rec.contacts.push(ContactView {
                binding: BindingRef {
                    core,
                    slot: 40 + i as u32,
                    gen: 9,
                },
                contact: format!("sip:d{i}@10.0.0.{i}:5060").into(),
                expires_at,
                instance: Some(format!("urn:uuid:00000000-0000-1000-8000-00000000000{i}").into()),
                source: format!("192.0.2.{}:4000{i}", 1 + i).parse().unwrap(),
                flags: fl,
                ..ContactView::default()
            });
        }
        packed::encode(aor, &rec).unwrap()
    }

    fn journal(epoch: u64, blocks: &[Box<[u8]>]) -> Vec<u8> {
        let mut f = JOURNAL_MAGIC.to_vec();
        put_epoch(&mut f, epoch);
        for b in blocks {
            put(&mut f, Kind::Aor, b);
        }
        f
    }

    #[test]
    fn the_latest_state_wins_and_removals_remove() {
        let mut r = Replay::new();
        let j = journal(
            1_000_000,
            &[
                block("a@x", &[(0, 100, 0)]),
                block("b@x", &[(1, 100, 0)]),
                block("a@x", &[(0, 200, 0), (1, 300, flags::UNREACHABLE)]),
                block("b@x", &[]),
            ],
        );
        assert_eq!(r.apply_file(j, JOURNAL_MAGIC).damage, None);
        assert_eq!(r.len(), 1);
        let dir = Directory::new();
        // The new run started 50 s after the old one.
        let cores = r.restore(&dir, 1_050_000, 1_050_000, 2);
        let got = dir.lookup("a@x", 0);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].expires_at, 150);
        assert_eq!(got[1].expires_at, 250);
        assert_eq!(
            got[1].binding,
            BindingRef {
                core: 1,
                slot: 0,
                gen: 1
            }
        );
        assert!(dir.lookup("b@x", 0).is_empty());
        assert_eq!(cores[0].len(), 1);
        assert_eq!(cores[1][0].expires_at, 250);
        assert!(cores[1][0].unreachable);
        assert_eq!(cores[0][0].aor, dir.hash("a@x"));
        let dev = dir
            .device("urn:uuid:00000000-0000-1000-8000-000000000001")
            .unwrap();
        assert_eq!(&*dev.aor, "a@x");
    }

    #[test]
    fn expired_bindings_stay_gone_and_cores_fold() {
        let mut r = Replay::new();
        let j = journal(0, &[block("a@x", &[(0, 10, 0), (5, 100, 0)])]);
        r.apply_file(j, JOURNAL_MAGIC);
        let dir = Directory::new();
        let cores = r.restore(&dir, 20_000, 20_000, 2);
        let got = dir.lookup("a@x", 0);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].binding.core, 1, "core 5 folds onto 1 of 2");
        assert_eq!(got[0].expires_at, 80);
        assert!(cores[0].is_empty());
    }

    #[test]
    fn records_without_an_epoch_or_with_bad_blocks_are_skipped() {
        let mut r = Replay::new();
        let mut f = JOURNAL_MAGIC.to_vec();
        put(&mut f, Kind::Aor, &block("a@x", &[(0, 10, 0)]));
        put_epoch(&mut f, 0);
        put(&mut f, Kind::Aor, b"\x05\0\0\0\xff");
        let b = block("c@x", &[(0, 10, 0)]);
        put(&mut f, Kind::Aor, &b[..b.len() - 1]);
        put(&mut f, Kind::Epoch, b"short");
        assert_eq!(r.apply_file(f, JOURNAL_MAGIC).damage, None);
        assert!(r.is_empty());
        assert_eq!(r.stats.skipped, 4);
    }

    #[test]
    fn runs_on_several_threads_give_each_binding_the_slot_the_directory_names() {
        // Enough AORs for more than one run; some with a second, expired contact.
        let n = 25_000;
        let blocks: Vec<Box<[u8]>> = (0..n)
            .map(|i| {
                let exp = if i % 7 == 0 { 10 } else { 500 };
                block(
                    &format!("a{i}@x"),
                    &[((i % 5) as u16, 500, 0), (((i + 1) % 5) as u16, exp, 0)],
                )
            })
            .collect();
        let mut r = Replay::new();
        r.apply_file(journal(0, &blocks), JOURNAL_MAGIC);
        let dir = Directory::with_capacity(n);
        let cores = r.restore(&dir, 100_000, 100_000, 3);
        let total: usize = cores.iter().map(Vec::len).sum();
        assert_eq!(total, 2 * n - n.div_ceil(7));
        let mut seen = 0;
        dir.for_each(|aor, c| {
            let r = &cores[usize::from(c.binding.core)][c.binding.slot as usize];
            assert_eq!(r.aor, dir.hash(aor));
            assert_eq!(r.expires_at, c.expires_at);
            assert_eq!(c.binding.gen, 1);
            seen += 1;
        });
        assert_eq!(seen, total);
    }
}
