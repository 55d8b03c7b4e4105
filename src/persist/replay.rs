//! Replay, sans-IO: the records of a snapshot and the journals after it in,
//! each AOR's latest state out; then that state into a fresh directory, its
//! expiries moved onto the new run's clock and its bindings dealt to the
//! cores that will own them.

use std::collections::HashMap;

use super::record::{u64_payload, Kind, Reader};
use crate::addr::PathKey;
use crate::registrar::binding::{flags, BindingRef};
use crate::registrar::{packed, AorRecord, Decision, Directory};

/// One AOR's latest state: its packed block as written, and the clock zero
/// (Unix ms) of the run that wrote it.
struct Latest {
    block: Box<[u8]>,
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

/// Every AOR's latest state, as replay has seen so far.
#[derive(Default)]
pub struct Replay {
    aors: HashMap<Box<str>, Latest>,
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

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Applies one file's records; `Err` when the reader stopped at damage
    /// (the records before it are applied).
    pub fn apply_file(&mut self, r: &mut Reader<'_>) -> Option<super::record::Damage> {
        // Each file states the epoch of its records before them.
        self.epoch_ms = None;
        for (kind, payload) in r.by_ref() {
            self.apply(kind, payload);
        }
        r.damage()
    }

    /// Applies one record.
    pub fn apply(&mut self, kind: Kind, payload: &[u8]) {
        match kind {
            Kind::Epoch => match u64_payload(payload) {
                Some(e) => self.epoch_ms = Some(e),
                None => self.stats.skipped += 1,
            },
            Kind::Aor => {
                let Some(epoch_ms) = self.epoch_ms else {
                    self.stats.skipped += 1;
                    return;
                };
                if !packed::is_valid(payload) {
                    self.stats.skipped += 1;
                    return;
                }
                self.stats.records += 1;
                let name = packed::aor(payload);
                if packed::contacts(payload).next().is_none() {
                    self.aors.remove(name);
                    return;
                }
                self.aors.insert(
                    name.into(),
                    Latest {
                        block: payload.into(),
                        epoch_ms,
                    },
                );
            }
            Kind::End => {}
        }
    }

    /// AORs with contacts so far.
    pub fn len(&self) -> usize {
        self.aors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }

    /// Stores every binding not expired at `now_unix_ms` in `dir` (which
    /// must be empty and have no journal yet), with expiries on the clock
    /// whose zero is `epoch_ms` and each binding on core `old core %
    /// cores`. Returns each core's restored bindings, in slot order.
    pub fn restore(
        self,
        dir: &Directory,
        epoch_ms: u64,
        now_unix_ms: u64,
        cores: usize,
    ) -> Vec<Vec<Restored>> {
        let cores = cores.max(1);
        let mut per_core: Vec<Vec<Restored>> = vec![Vec::new(); cores];
        for (name, latest) in self.aors {
            let mut rec = AorRecord::default();
            for p in packed::contacts(&latest.block) {
                let unix_exp_ms = latest.epoch_ms + u64::from(p.expires_at) * 1000;
                if unix_exp_ms <= now_unix_ms || unix_exp_ms <= epoch_ms {
                    continue;
                }
                // Rounded up, so a binding never expires before its time.
                let expires_at =
                    u32::try_from((unix_exp_ms - epoch_ms).div_ceil(1000)).unwrap_or(u32::MAX);
                let core = usize::from(p.binding.core) % cores;
                let list = &mut per_core[core];
                let mut v = p.to_view();
                v.binding = BindingRef {
                    core: core as u16,
                    slot: list.len() as u32,
                    gen: 1,
                };
                v.expires_at = expires_at;
                list.push(Restored {
                    aor: dir.hash(&name),
                    expires_at,
                    path: PathKey::new(v.local, v.source),
                    unreachable: v.flags & flags::UNREACHABLE != 0,
                });
                rec.contacts.push(v);
            }
            if rec.contacts.is_empty() {
                continue;
            }
            let devices: Vec<_> = rec
                .contacts
                .iter()
                .filter_map(|c| c.instance.clone())
                .collect();
            dir.update(&name, |_| Decision::Replace(rec, ()));
            for d in devices {
                dir.set_device(&d, &name);
            }
        }
        per_core
    }
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
        assert_eq!(r.apply_file(&mut Reader::new(&j, JOURNAL_MAGIC)), None);
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
        r.apply_file(&mut Reader::new(&j, JOURNAL_MAGIC));
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
        assert_eq!(r.apply_file(&mut Reader::new(&f, JOURNAL_MAGIC)), None);
        assert!(r.is_empty());
        assert_eq!(r.stats.skipped, 4);
    }
}
