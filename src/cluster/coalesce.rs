//! The publisher's state machine, sans-IO: binding changes in (with the
//! wall clock the thread read), Redis operations out.
//!
//! It keeps, per binding this node owns, what Redis should say and what was
//! last written. A binding change (new, moved to another core, removed) is
//! *urgent*: written at the next flush. A refresh that only extends the
//! expiry is written only when the new expiry passes the one in Redis, and
//! then at the next *renewal* (every `renew_s`, one batch): records carry
//! `2 * renew_s` of slack, so a renewal is never late. Whatever happens to
//! a binding before its write goes out collapses into that one write.
//!
//! While Redis is unreachable the pending set is the backlog: one entry per
//! binding however often it changed, bounded by `cluster.backlog`. After an
//! outage every owned record is written again, since Redis may have come
//! back without its data.

use std::collections::{HashMap, HashSet};

use super::keys::{Notice, Owner, RecordId};

/// What a core saw happen to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Registered or refreshed on `core` (in its binding slot `slot`,
    /// generation `gen`), expiring in `expires_in` seconds.
    /// `restored`: restored from disk at start, not a REGISTER.
    Set {
        core: u16,
        slot: u32,
        gen: u32,
        expires_in: u32,
        restored: bool,
    },
    /// Unregistered, expired, or replaced by a binding on another node.
    Remove,
}

/// One binding change, as the cores send it (small and `Copy`: nothing is
/// allocated per REGISTER to hand it over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingChange {
    pub id: RecordId,
    pub change: Change,
}

/// One Redis operation the thread is to perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Set the record to `owner` (and cover its expiry with the bucket's
    /// TTL). `first`: this node never wrote it, so it reads what it
    /// replaces, and tells the previous owner if that was another node.
    /// `restored`: the binding came from disk and no REGISTER renewed it
    /// since; such a first write does not take over another node's live
    /// record (the device registered there while this node was down).
    Write {
        id: RecordId,
        owner: Owner,
        first: bool,
        restored: bool,
    },
    /// Delete the record if it still names this node.
    Delete { id: RecordId },
}

/// A binding this node owns.
/// 24 bytes (Unix seconds fit a u32 until 2106): with its 16-byte id, a
/// published binding costs the node about 45 bytes here. The slot,
/// generation and `set_at` (12 of them) are for eviction notices: the core
/// is told which binding to drop without an index of its own.
#[derive(Debug, Clone, Copy)]
struct Held {
    core: u16,
    slot: u32,
    gen: u32,
    /// When a core last registered or refreshed it (Unix s).
    set_at: u32,
    /// Restored from disk, no REGISTER since (in what was padding).
    restored: bool,
    /// The binding's own expiry (Unix s).
    expiry: u32,
    /// The expiry Redis holds for it (Unix s, slack included); 0 = never
    /// sent, [`MAYBE`] = sent but not known to be there (a failed or
    /// resynced write).
    written: u32,
}

/// `Held::written` of a record that may be in Redis with an unknown expiry:
/// any refresh writes it again, a removal deletes it.
const MAYBE: u32 = 1;

/// What to do about an eviction notice ([`Coalescer::on_notice`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not a binding this node holds (any more) as the notice says.
    Unknown,
    /// Refreshed here after the other node's write: written again.
    Reassert,
    /// Drop binding `slot`/`gen` of `core`, if Redis names the other node.
    Drop { core: u16, slot: u32, gen: u32 },
}

/// Counters the thread publishes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Changes that needed no write of their own (merged into a pending
    /// one, or a refresh Redis already covers).
    pub coalesced: u64,
    /// Changes not kept: the backlog was full.
    pub dropped: u64,
}

/// The publisher's state.
#[derive(Debug)]
pub struct Coalescer {
    node: u32,
    slack: u32,
    backlog: usize,
    owned: HashMap<RecordId, Held>,
    /// Written at the next flush.
    urgent: HashSet<RecordId>,
    /// Written at the next renewal.
    renew: HashSet<RecordId>,
    pub counts: Counts,
}

impl Coalescer {
    /// For `node`, renewing every `renew_s`, holding at most `backlog`
    /// pending changes.
    pub fn new(node: u32, renew_s: u32, backlog: usize) -> Coalescer {
        Coalescer {
            node,
            slack: 2 * renew_s,
            backlog,
            owned: HashMap::new(),
            urgent: HashSet::new(),
            renew: HashSet::new(),
            counts: Counts::default(),
        }
    }

    /// Bindings this node owns now.
    pub fn owned(&self) -> usize {
        self.owned.len()
    }

    /// Changes waiting for Redis (the backlog while it is unreachable).
    pub fn pending(&self) -> usize {
        self.urgent.len() + self.renew.len()
    }

    /// Whether an urgent change waits.
    pub fn has_urgent(&self) -> bool {
        !self.urgent.is_empty()
    }

    /// Takes a core's change; `now` is Unix seconds.
    pub fn apply(&mut self, c: BindingChange, now: u64) {
        match c.change {
            Change::Set {
                core,
                slot,
                gen,
                expires_in,
                restored,
            } => {
                let now32 = u32::try_from(now).unwrap_or(u32::MAX);
                let expiry = now32.saturating_add(expires_in);
                match self.owned.get_mut(&c.id) {
                    Some(h) if h.core == core => {
                        h.expiry = expiry;
                        h.set_at = now32;
                        h.restored &= restored;
                        (h.slot, h.gen) = (slot, gen);
                        if expiry <= h.written {
                            self.counts.coalesced += 1;
                        } else {
                            self.mark(c.id, false);
                        }
                    }
                    Some(h) => {
                        h.core = core;
                        h.expiry = expiry;
                        h.set_at = now32;
                        h.restored &= restored;
                        (h.slot, h.gen) = (slot, gen);
                        self.mark(c.id, true);
                    }
                    None => {
                        self.owned.insert(
                            c.id,
                            Held {
                                core,
                                slot,
                                gen,
                                set_at: now32,
                                restored,
                                expiry,
                                written: 0,
                            },
                        );
                        self.mark(c.id, true);
                    }
                }
            }
            Change::Remove => match self.owned.remove(&c.id) {
                // Never reached Redis: forgetting the pending write is enough.
                Some(h) if h.written == 0 => {
                    let was_pending = self.urgent.remove(&c.id) | self.renew.remove(&c.id);
                    self.counts.coalesced += u64::from(was_pending);
                }
                Some(_) => self.mark(c.id, true),
                None => {}
            },
        }
    }

    /// Marks `id` to be written at the next flush (`urgent`) or renewal.
    fn mark(&mut self, id: RecordId, urgent: bool) {
        if self.urgent.contains(&id) {
            self.counts.coalesced += 1;
            return;
        }
        if urgent {
            if !self.renew.remove(&id) && self.pending() >= self.backlog {
                self.counts.dropped += 1;
                return;
            }
            self.urgent.insert(id);
        } else if !self.renew.insert(id) {
            self.counts.coalesced += 1;
        } else if self.pending() > self.backlog {
            self.renew.remove(&id);
            self.counts.dropped += 1;
        }
    }

    /// Up to `max` operations: the urgent ones, and the renewals too when
    /// `renewal` (their batch is due). The records' expiries count as
    /// written; give the operations back with [`Coalescer::failed`] if
    /// Redis did not take them.
    pub fn take(&mut self, renewal: bool, max: usize) -> Vec<Op> {
        let mut ids: Vec<RecordId> = self.urgent.iter().take(max).copied().collect();
        for id in &ids {
            self.urgent.remove(id);
        }
        if renewal && ids.len() < max {
            let more: Vec<RecordId> = self.renew.iter().take(max - ids.len()).copied().collect();
            for id in &more {
                self.renew.remove(id);
            }
            ids.extend(more);
        }
        ids.into_iter()
            .map(|id| match self.owned.get_mut(&id) {
                Some(h) => {
                    let first = h.written == 0;
                    h.written = h.expiry.saturating_add(self.slack);
                    Op::Write {
                        id,
                        owner: Owner {
                            node: self.node,
                            core: h.core,
                            expiry: u64::from(h.written),
                        },
                        first,
                        restored: h.restored,
                    }
                }
                None => Op::Delete { id },
            })
            .collect()
    }

    /// Whether renewals wait.
    pub fn has_renewals(&self) -> bool {
        !self.renew.is_empty()
    }

    /// Operations Redis did not take: they wait again, urgent (a change
    /// made since then has replaced them already).
    pub fn failed(&mut self, ops: &[Op]) {
        for op in ops {
            let id = match op {
                Op::Write { id, .. } | Op::Delete { id } => *id,
            };
            if let Some(h) = self.owned.get_mut(&id) {
                h.written = MAYBE;
            }
            self.renew.remove(&id);
            // Not through `mark`: these were already counted in the backlog.
            self.urgent.insert(id);
        }
    }

    /// A notice that another node took over record `n.id`: the binding to
    /// drop, if this node still holds it on the core the taken-over record
    /// named and no core refreshed it here after the other node's write
    /// (then it is [`Verdict::Reassert`]: the latest REGISTER wins, the
    /// record is written again and the other node hears of it). The caller
    /// checks that Redis still names another node before [`Coalescer::evict`].
    pub fn on_notice(&mut self, n: &Notice) -> Verdict {
        let Some(h) = self.owned.get_mut(&n.id) else {
            return Verdict::Unknown;
        };
        if h.core != n.core {
            // It moved between cores here since: the record that was
            // replaced was not this binding's.
            return Verdict::Unknown;
        }
        if u64::from(h.set_at) > n.at {
            // Written again as if new, so that the other node is told.
            h.written = 0;
            self.renew.remove(&n.id);
            self.urgent.insert(n.id);
            return Verdict::Reassert;
        }
        Verdict::Drop {
            core: h.core,
            slot: h.slot,
            gen: h.gen,
        }
    }

    /// The binding behind record `id` (core, slot, generation), if owned.
    pub fn binding(&self, id: RecordId) -> Option<(u16, u32, u32)> {
        self.owned.get(&id).map(|h| (h.core, h.slot, h.gen))
    }

    /// Forgets record `id` without deleting it: Redis names another node
    /// now, and the core drops the binding (its removal then finds nothing
    /// to do here).
    pub fn evict(&mut self, id: RecordId) {
        self.owned.remove(&id);
        self.urgent.remove(&id);
        self.renew.remove(&id);
    }

    /// After an outage: every owned record is written again (Redis may
    /// have restarted empty). Deletes still pending stay pending.
    pub fn resync(&mut self) {
        for (id, h) in self.owned.iter_mut() {
            h.written = h.written.min(MAYBE);
            self.renew.remove(id);
            self.urgent.insert(*id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RecordId {
        RecordId { aor: n, device: n }
    }

    fn set(n: u64, core: u16, expires_in: u32) -> BindingChange {
        BindingChange {
            id: id(n),
            change: Change::Set {
                core,
                slot: n as u32,
                gen: 1,
                expires_in,
                restored: false,
            },
        }
    }

    fn remove(n: u64) -> BindingChange {
        BindingChange {
            id: id(n),
            change: Change::Remove,
        }
    }

    #[test]
    fn a_new_binding_is_written_once_with_slack() {
        let mut c = Coalescer::new(7, 30, 100);
        c.apply(set(1, 2, 3600), 1000);
        c.apply(set(1, 2, 3600), 1001);
        let ops = c.take(false, 10);
        let want = Owner {
            node: 7,
            core: 2,
            expiry: 1001 + 3600 + 60,
        };
        assert_eq!(
            ops,
            vec![Op::Write {
                id: id(1),
                owner: want,
                first: true,
                restored: false
            }]
        );
        assert_eq!(c.counts.coalesced, 1);
        assert!(c.take(true, 10).is_empty());
    }

    #[test]
    fn refreshes_within_the_slack_write_nothing_and_others_wait_for_renewal() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        c.take(false, 10);
        // Expiry 1000+600+60 is written; a refresh 30 s later ends at 1630.
        c.apply(set(1, 0, 600), 1030);
        assert_eq!(c.counts.coalesced, 1);
        assert_eq!(c.pending(), 0);
        // 100 s later it passes what Redis holds: a renewal, not a flush.
        c.apply(set(1, 0, 600), 1100);
        assert!(!c.has_urgent());
        assert!(c.take(false, 10).is_empty());
        let ops = c.take(true, 10);
        assert!(matches!(ops[..], [Op::Write { owner, .. }] if owner.expiry == 1760));
    }

    #[test]
    fn a_move_to_another_core_is_urgent() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        c.take(false, 10);
        c.apply(set(1, 1, 600), 1001);
        assert!(c.has_urgent());
        assert!(matches!(c.take(false, 10)[..], [Op::Write { owner, .. }] if owner.core == 1));
    }

    #[test]
    fn removal_deletes_what_was_written_and_cancels_what_was_not() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        c.apply(remove(1), 1000);
        assert_eq!(c.pending(), 0);
        assert!(c.take(true, 10).is_empty());
        c.apply(set(2, 0, 600), 1000);
        c.take(false, 10);
        c.apply(remove(2), 1001);
        assert_eq!(c.take(false, 10), vec![Op::Delete { id: id(2) }]);
        assert_eq!(c.owned(), 0);
        // A removal of something never owned is nothing.
        c.apply(remove(3), 1001);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn failed_operations_wait_again_and_the_latest_state_wins() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        c.apply(set(2, 0, 600), 1000);
        let ops = c.take(false, 10);
        assert_eq!(ops.len(), 2);
        c.apply(remove(2), 1001);
        c.failed(&ops);
        let mut again = c.take(false, 10);
        again.sort_by_key(|o| match o {
            Op::Write { id, .. } | Op::Delete { id } => id.aor,
        });
        assert!(matches!(again[0], Op::Write { id: i, .. } if i == id(1)));
        assert_eq!(again[1], Op::Delete { id: id(2) });
    }

    #[test]
    fn the_backlog_is_bounded_per_binding_not_per_change() {
        let mut c = Coalescer::new(1, 30, 2);
        for _ in 0..100 {
            c.apply(set(1, 0, 600), 1000);
        }
        c.apply(set(2, 0, 600), 1000);
        assert_eq!(c.pending(), 2);
        c.apply(set(3, 0, 600), 1000);
        assert_eq!(c.counts.dropped, 1);
        assert_eq!(c.pending(), 2);
    }

    #[test]
    fn resync_rewrites_every_owned_record() {
        let mut c = Coalescer::new(1, 30, 100);
        for n in 0..5 {
            c.apply(set(n, 0, 600), 1000);
        }
        assert_eq!(c.take(false, 100).len(), 5);
        c.resync();
        assert_eq!(c.take(false, 3).len(), 3);
        assert_eq!(c.take(false, 100).len(), 2);
    }

    #[test]
    fn only_a_records_first_write_reads_what_it_replaces() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write { first: true, .. }]
        ));
        c.apply(set(1, 1, 600), 1001);
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write { first: false, .. }]
        ));
        c.apply(set(1, 1, 600), 1200);
        assert!(matches!(
            c.take(true, 10)[..],
            [Op::Write { first: false, .. }]
        ));
        // A resync rewrites what was ours: nobody is told.
        c.resync();
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write { first: false, .. }]
        ));
    }

    #[test]
    fn a_restored_binding_is_marked_until_a_register_renews_it() {
        let mut c = Coalescer::new(1, 30, 100);
        let mut r = set(1, 0, 600);
        if let Change::Set { restored, .. } = &mut r.change {
            *restored = true;
        }
        c.apply(r, 1000);
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write {
                first: true,
                restored: true,
                ..
            }]
        ));
        c.resync();
        c.apply(set(1, 0, 600), 1001);
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write {
                restored: false,
                ..
            }]
        ));
    }

    fn notice(n: u64, core: u16, at: u64) -> Notice {
        Notice {
            id: id(n),
            core,
            by: 2,
            at,
        }
    }

    #[test]
    fn a_notice_drops_the_binding_it_names_unless_refreshed_since() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        c.apply(set(2, 0, 600), 1000);
        c.take(false, 10);
        // Node 2 took record 1 over at 1005: drop slot 1 of core 0.
        assert_eq!(
            c.on_notice(&notice(1, 0, 1005)),
            Verdict::Drop {
                core: 0,
                slot: 1,
                gen: 1
            }
        );
        c.evict(id(1));
        assert_eq!(c.owned(), 1);
        // The core's removal that follows writes nothing.
        c.apply(remove(1), 1006);
        assert_eq!(c.pending(), 0);
        // Unknown records, and a notice naming another core (it moved
        // between cores here since), are left alone.
        assert_eq!(c.on_notice(&notice(1, 0, 1005)), Verdict::Unknown);
        assert_eq!(c.on_notice(&notice(2, 1, 1005)), Verdict::Unknown);
        // Refreshed here after the other node's write: written again as
        // a first write, so that node hears of it.
        c.apply(set(2, 0, 600), 1010);
        assert_eq!(c.on_notice(&notice(2, 0, 1009)), Verdict::Reassert);
        assert!(matches!(
            c.take(false, 10)[..],
            [Op::Write { first: true, owner, .. }] if owner.node == 1
        ));
        assert_eq!(c.owned(), 1);
    }

    #[test]
    fn a_record_that_may_be_in_redis_is_deleted_on_removal() {
        let mut c = Coalescer::new(1, 30, 100);
        c.apply(set(1, 0, 600), 1000);
        let ops = c.take(false, 10);
        // The pipeline failed after Redis may have applied it.
        c.failed(&ops);
        c.apply(remove(1), 1001);
        assert_eq!(c.take(false, 10), vec![Op::Delete { id: id(1) }]);
        // Same after a resync that has not written it yet.
        c.apply(set(2, 0, 600), 1000);
        c.take(false, 10);
        c.resync();
        c.apply(remove(2), 1001);
        assert_eq!(c.take(false, 10), vec![Op::Delete { id: id(2) }]);
    }
}
