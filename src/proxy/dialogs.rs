//! Dialogs of one core (RFC 3261 §12): the core that proxied the INVITE
//! keeps them; in-dialog requests reach it through the flow token in our
//! Record-Route, whichever core the kernel handed them to.

use hashbrown::HashMap;

use crate::addr::PathKey;
use crate::timer::TimerHandle;

/// One side of a dialog.
#[derive(Debug, Clone)]
pub struct Side {
    /// Its NAT path (or the upstream's address).
    pub path: PathKey,
    /// The core owning the path's keepalive, when it is a device.
    pub device_core: Option<u16>,
    /// Its tag (From tag for the caller, To tag for the callee).
    pub tag: Box<str>,
    /// Its Contact URI (remote target), for a BYE of our own.
    pub contact: Box<str>,
    /// Its address of record as the dialog names it (From or To value).
    pub aor: Box<str>,
    /// The highest CSeq it used.
    pub cseq: u32,
}

/// A dialog in flight.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: Box<str>,
    pub caller: Side,
    pub callee: Side,
    /// When the 2xx passed (ms).
    pub started: u64,
    /// `proxy.max_call_s`.
    pub timer: Option<TimerHandle>,
    /// A BYE went through (or was sent by us): waiting for its answer.
    pub ending: bool,
    /// Its anchored media.
    pub media: Option<crate::media::table::SessionId>,
}

struct Slot {
    nonce: u32,
    dialog: Option<Dialog>,
}

/// The slab of a core's dialogs, found by Call-ID and tags.
#[derive(Default)]
pub struct Dialogs {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_id: HashMap<u64, smallvec::SmallVec<[u32; 1]>>,
    next_nonce: u32,
    hasher: foldhash::fast::FixedState,
}

impl Dialogs {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Order-independent: a request from either side finds the dialog.
    fn key(&self, call_id: &str, tag_a: &str, tag_b: &str) -> u64 {
        use std::hash::BuildHasher;
        let (lo, hi) = if tag_a <= tag_b {
            (tag_a, tag_b)
        } else {
            (tag_b, tag_a)
        };
        self.hasher.hash_one((call_id, lo, hi))
    }

    /// Stores a dialog; returns (slot, nonce). `None` when one with the
    /// same id exists (a retransmitted 2xx).
    pub fn insert(&mut self, d: Dialog) -> Option<(u32, u32)> {
        if self
            .find(&d.call_id, &d.caller.tag, &d.callee.tag)
            .is_some()
        {
            return None;
        }
        let key = self.key(&d.call_id, &d.caller.tag, &d.callee.tag);
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let nonce = self.next_nonce;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Slot {
                    nonce,
                    dialog: Some(d),
                };
                s
            }
            None => {
                self.slots.push(Slot {
                    nonce,
                    dialog: Some(d),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.entry(key).or_default().push(slot);
        self.live += 1;
        Some((slot, nonce))
    }

    /// The dialog of a request with these Call-ID and tags.
    pub fn find(&self, call_id: &str, from_tag: &str, to_tag: &str) -> Option<(u32, u32)> {
        let key = self.key(call_id, from_tag, to_tag);
        self.by_id.get(&key)?.iter().find_map(|&slot| {
            let s = &self.slots[slot as usize];
            let d = s.dialog.as_ref()?;
            let tags = (&*d.caller.tag, &*d.callee.tag);
            let same = &*d.call_id == call_id
                && (tags == (from_tag, to_tag) || tags == (to_tag, from_tag));
            same.then_some((slot, s.nonce))
        })
    }

    pub fn get(&self, slot: u32, nonce: u32) -> Option<&Dialog> {
        let s = self.slots.get(slot as usize)?;
        (s.nonce == nonce).then_some(())?;
        s.dialog.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32, nonce: u32) -> Option<&mut Dialog> {
        let s = self.slots.get_mut(slot as usize)?;
        (s.nonce == nonce).then_some(())?;
        s.dialog.as_mut()
    }

    pub fn remove(&mut self, slot: u32, nonce: u32) -> Option<Dialog> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.nonce != nonce {
            return None;
        }
        let d = s.dialog.take()?;
        self.free.push(slot);
        self.live -= 1;
        let key = self.key(&d.call_id, &d.caller.tag, &d.callee.tag);
        if let Some(v) = self.by_id.get_mut(&key) {
            v.retain(|x| *x != slot);
            if v.is_empty() {
                self.by_id.remove(&key);
            }
        }
        Some(d)
    }

    /// Every dialog in flight, in slot order (for `GET /v1/calls`).
    pub fn iter(&self) -> impl Iterator<Item = &Dialog> {
        self.slots.iter().filter_map(|s| s.dialog.as_ref())
    }
}
