//! This core's fan-out client transactions: a slab of slots, and the branch
//! codec that finds an answer's transaction. The branch carries the slot
//! index and a per-use nonce, so lookup is an index and a late answer to a
//! freed (and reused) slot, or a guessed branch, misses on the nonce.

use std::net::SocketAddr;
use std::sync::Arc;

use super::followup::Ring;
use super::{Job, Outcome};
use crate::sip::ids::{Id, IdGen};
use crate::timer::TimerHandle;
use crate::transaction::ClientTransaction;

/// Branch prefix of the requests this engine sends (after the magic cookie).
const BRANCH_PREFIX: &str = "z9hG4bKnt";

/// Why a transaction exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A job's request to one device (`run` slot, device index).
    Request { run: u32, device: u32 },
    /// Housekeeping (BYE after a 2xx, a subscription's NOTIFY): no outcome.
    Other,
}

pub(super) struct Txn {
    pub nonce: u32,
    pub role: Role,
    /// The job a request belongs to (outcomes outlive the core's run).
    pub job: Option<Arc<Job>>,
    pub tx: ClientTransaction,
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
    pub local: u8,
    pub timer: Option<TimerHandle>,
    /// A ringing INVITE's limit and CANCEL.
    pub ring: Ring,
    pub auth_tried: bool,
    pub settled: bool,
    pub retransmits: u8,
}

impl Txn {
    pub fn new(
        nonce: u32,
        role: Role,
        job: Option<Arc<Job>>,
        tx: ClientTransaction,
        bytes: Vec<u8>,
        to: SocketAddr,
        local: u8,
    ) -> Txn {
        let housekeeping = role == Role::Other;
        Txn {
            nonce,
            role,
            job,
            tx,
            bytes,
            to,
            local,
            timer: None,
            ring: Ring::default(),
            // Housekeeping is never challenged-and-retried and has no outcome.
            auth_tried: housekeeping,
            settled: housekeeping,
            retransmits: 0,
        }
    }

    /// The same request again as a new transaction (a challenge answered):
    /// `bytes` on the branch of `nonce`.
    pub fn restart(&mut self, nonce: u32, tx: ClientTransaction, bytes: Vec<u8>) {
        self.nonce = nonce;
        self.tx = tx;
        self.bytes = bytes;
        self.auth_tried = true;
        // Whatever CANCEL the old transaction had is over.
        self.ring = Ring::default();
    }

    /// Records the outcome `o` of a job's request; returns its run the
    /// first time `o` is final for it (the device settles: count it).
    pub fn settle(&mut self, o: Outcome) -> Option<u32> {
        let (Role::Request { run, device }, Some(job)) = (self.role, self.job.as_ref()) else {
            return None;
        };
        job.set_outcome(device as usize, o);
        if self.settled {
            return None;
        }
        self.settled = true;
        Some(run)
    }

    /// A housekeeping transaction (BYE, a subscription's NOTIFY).
    pub fn other(
        nonce: u32,
        tx: ClientTransaction,
        bytes: Vec<u8>,
        to: SocketAddr,
        local: u8,
    ) -> Txn {
        Txn::new(nonce, Role::Other, None, tx, bytes, to, local)
    }
}

/// The transaction slots, with their free list and counts.
#[derive(Default)]
pub(super) struct Transactions {
    slots: Vec<Option<Txn>>,
    free: Vec<u32>,
    /// Slots taken (filled or about to be).
    in_flight: usize,
    /// Housekeeping transactions alive (BYEs, subscription NOTIFYs).
    others: usize,
    /// Request buffers of freed transactions, reused.
    spare: Vec<Vec<u8>>,
}

impl Transactions {
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn others(&self) -> usize {
        self.others
    }

    /// Takes a slot, and a fresh nonce for its branch.
    pub fn alloc(&mut self, ids: &mut IdGen) -> (u32, u32) {
        let nonce = nonce(ids);
        self.in_flight += 1;
        match self.free.pop() {
            Some(s) => (s, nonce),
            None => {
                self.slots.push(None);
                ((self.slots.len() - 1) as u32, nonce)
            }
        }
    }

    /// Gives back a slot taken by [`Transactions::alloc`] that was never filled.
    pub fn unalloc(&mut self, slot: u32) {
        self.free.push(slot);
        self.in_flight -= 1;
    }

    /// Puts `t` in a slot taken by [`Transactions::alloc`].
    pub fn fill(&mut self, slot: u32, t: Txn) {
        if t.role == Role::Other {
            self.others += 1;
        }
        self.slots[slot as usize] = Some(t);
    }

    pub fn get(&self, slot: u32) -> Option<&Txn> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut Txn> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// Frees a slot. Returns the freed transaction's armed timer, which the
    /// caller (the owner of the wheel) cancels.
    pub fn release(&mut self, slot: u32) -> Option<TimerHandle> {
        let t = self.slots.get_mut(slot as usize).and_then(Option::take)?;
        self.free.push(slot);
        self.in_flight -= 1;
        if t.role == Role::Other {
            self.others -= 1;
        }
        // Keep a bounded pool of request buffers for the next sends.
        if self.spare.len() < 4096 && t.bytes.capacity() <= 4096 {
            self.spare.push(t.bytes);
        }
        t.timer
    }

    /// An empty request buffer, a freed transaction's when one is kept.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b
    }
}

/// A branch nonce: odd, so never zero.
pub(super) fn nonce(ids: &mut IdGen) -> u32 {
    (ids.next_u64() as u32) | 1
}

/// Our branch for transaction `slot`: the nonce makes a late answer to a
/// freed and reused slot (or a guessed one) miss.
pub(super) fn branch(slot: u32, nonce: u32) -> Id {
    Id::from_parts(BRANCH_PREFIX, (u64::from(slot) << 32) | u64::from(nonce))
}

/// The slot and nonce of one of our branches; `None` for anyone else's.
pub(super) fn parse_branch(b: &str) -> Option<(u32, u32)> {
    let hex = b.strip_prefix(BRANCH_PREFIX)?;
    if hex.len() != 16 {
        return None;
    }
    let v = u64::from_str_radix(hex, 16).ok()?;
    Some(((v >> 32) as u32, v as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_round_trip_and_foreign_ones_miss() {
        for (slot, nonce) in [(0, 1), (7, 0xdead_beef), (u32::MAX, u32::MAX)] {
            let b = branch(slot, nonce);
            assert_eq!(parse_branch(&b), Some((slot, nonce)));
        }
        assert_eq!(parse_branch("z9hG4bK-keepalive-1"), None);
        assert_eq!(parse_branch("z9hG4bKnt00"), None);
        assert_eq!(parse_branch("z9hG4bKntzzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn freed_slots_are_reused_and_counted() {
        let mut ids = IdGen::new(1);
        let mut t = Transactions::default();
        let (a, _) = t.alloc(&mut ids);
        let (b, _) = t.alloc(&mut ids);
        assert_eq!((a, b, t.in_flight()), (0, 1, 2));
        t.unalloc(a);
        assert_eq!(t.alloc(&mut ids).0, a);
        assert_eq!(t.release(b), None, "an unfilled slot holds nothing");
        assert_eq!(t.in_flight(), 2);
    }
}
