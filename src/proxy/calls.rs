//! The proxy transactions of one core: a server transaction towards the
//! sender and its client branches, in a slab addressed by (slot, nonce) —
//! the same pair our Via branches and timers carry — and found again by
//! the sender's top Via (RFC 3261 §17.2.3) when it retransmits, ACKs or
//! CANCELs.

use hashbrown::HashMap;
use smallvec::SmallVec;

use crate::addr::PathKey;
use crate::timer::TimerHandle;
use crate::transaction::ClientTransaction;

use super::server::ServerTransaction;

/// Where a branch goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The path the request is sent over (a binding's NAT path, an
    /// upstream proxy, the other party of a dialog).
    pub to: PathKey,
    /// The new Request-URI (a binding's Contact); `None` keeps it.
    pub uri: Option<Box<str>>,
    /// Route values to put on top (the binding's RFC 3327 Path).
    pub path: Option<Box<str>>,
    /// The core owning the target's NAT path, when it is a registered device.
    pub device_core: Option<u16>,
    /// Forking group (q-values in descending order).
    pub group: u16,
    /// `Some(0)` for the primary upstream, `Some(1)` for the fallback.
    pub upstream: Option<u8>,
}

/// A CANCEL sent for a branch.
#[derive(Debug)]
pub struct Cancel {
    pub tx: ClientTransaction,
    pub timer: Option<TimerHandle>,
    pub bytes: Vec<u8>,
}

/// One client branch of a proxy transaction.
#[derive(Debug)]
pub struct Branch {
    pub tx: ClientTransaction,
    pub timer: Option<TimerHandle>,
    /// RFC 3261 §16.6 Timer C, INVITE only.
    pub timer_c: Option<TimerHandle>,
    pub target: Target,
    /// The request as sent, for retransmissions, CANCEL and ACK.
    pub bytes: Vec<u8>,
    /// A final response arrived, or the branch timed out.
    pub done: bool,
    pub provisional: bool,
    /// CANCEL this branch as soon as it sends a provisional (§9.1: not before).
    pub cancel_wanted: bool,
    pub cancel: Option<Cancel>,
}

/// What the proxy does once the request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A 2xx creates a dialog (out-of-dialog INVITE or SUBSCRIBE).
    CreatesDialog,
    /// An in-dialog request of dialog (slot, nonce); `ends` for BYE.
    InDialog { slot: u32, nonce: u32, ends: bool },
    /// Anything else (MESSAGE, an out-of-dialog NOTIFY …).
    Plain,
}

/// What a dialog-creating request says about its caller, kept from the
/// first parse so that the 2xx need not read the request again.
#[derive(Debug)]
pub struct DialogSeed {
    pub call_id: Box<str>,
    pub from_tag: Box<str>,
    pub from_uri: Box<str>,
    pub contact: Box<str>,
    pub cseq: u32,
}

/// A proxy transaction: one request from one sender, forked to branches.
#[derive(Debug)]
pub struct Call {
    pub nonce: u32,
    /// The key of [`Calls::by_via`].
    pub via_key: u64,
    /// Branch and sent-by of the sender's top Via, with the method class.
    pub via_id: Box<str>,
    pub invite: bool,
    pub role: Role,
    pub server: ServerTransaction,
    pub server_timer: Option<TimerHandle>,
    /// Where the request came from (responses go back over it).
    pub src: PathKey,
    /// The sender is a device (not trusted, not an upstream): its path
    /// joins seed 004's dialog states.
    pub src_device: bool,
    /// The request as received.
    pub request: Box<[u8]>,
    /// The last response sent to the sender, re-sent on retransmissions.
    pub last_response: Vec<u8>,
    pub branches: SmallVec<[Branch; 2]>,
    /// Targets of later forking groups, not yet tried.
    pub later: SmallVec<[Target; 2]>,
    /// Best final response so far (code, bytes without our Via).
    pub best: Option<(u16, Vec<u8>)>,
    /// A 2xx was forwarded.
    pub answered: bool,
    /// A final response was sent to the sender.
    pub finished: bool,
    pub cancelled: bool,
    /// When the request arrived (ms), for setup latency.
    pub started: u64,
    /// Our Route values on top of the request, dropped when forwarding.
    pub pop: usize,
    /// See `request::loop_hash`.
    pub loop_hash: u32,
    /// We authenticated the sender: its Proxy-Authorization stops here.
    pub strip_auth: bool,
    /// For [`Role::CreatesDialog`].
    pub seed: Option<Box<DialogSeed>>,
    /// The call's media session, when anchored.
    pub media: Option<super::media::CallMedia>,
    /// The body the branches send (the anchored offer); `None` = the request's.
    pub body: Option<Box<[u8]>>,
    /// Waiting with no branch: held for its callee, or for the routing webhook.
    pub parked: Option<Box<super::hold::Parked>>,
    /// Routed to another node of the cluster (looked up again once if stale).
    pub owner: Option<Box<super::cluster::OwnerTry>>,
}

impl Call {
    /// Branches still waiting for a final response.
    pub fn pending(&self) -> usize {
        self.branches.iter().filter(|b| !b.done).count()
    }
}

struct Slot {
    nonce: u32,
    call: Option<Call>,
}

/// The slab of a core's proxy transactions.
#[derive(Default)]
pub struct Calls {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_via: HashMap<u64, SmallVec<[u32; 1]>>,
    /// Transactions per source path still waiting for their final
    /// response (flood fairness: a finished one lingering for its
    /// retransmission timers does not count).
    per_source: HashMap<PathKey, u32>,
    next_nonce: u32,
}

impl Calls {
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Transactions from `src` not yet answered.
    pub fn from_source(&self, src: &PathKey) -> u32 {
        self.per_source.get(src).copied().unwrap_or(0)
    }

    /// Stores `call` (its `nonce` is set here); returns (slot, nonce).
    pub fn insert(&mut self, mut call: Call) -> (u32, u32) {
        self.next_nonce = (self.next_nonce + 1) & 0xFF_FFFF;
        let nonce = self.next_nonce;
        call.nonce = nonce;
        *self.per_source.entry(call.src).or_insert(0) += 1;
        if call.via_key != 0 {
            let slot_hint = self.free.last().copied().unwrap_or(self.slots.len() as u32);
            self.by_via.entry(call.via_key).or_default().push(slot_hint);
        }
        let slot = match self.free.pop() {
            Some(s) => {
                let e = &mut self.slots[s as usize];
                e.nonce = nonce;
                e.call = Some(call);
                s
            }
            None => {
                self.slots.push(Slot {
                    nonce,
                    call: Some(call),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        (slot, nonce)
    }

    pub fn get(&self, slot: u32, nonce: u32) -> Option<&Call> {
        let s = self.slots.get(slot as usize)?;
        (s.nonce == nonce).then_some(())?;
        s.call.as_ref()
    }

    pub fn get_mut(&mut self, slot: u32, nonce: u32) -> Option<&mut Call> {
        let s = self.slots.get_mut(slot as usize)?;
        (s.nonce == nonce).then_some(())?;
        s.call.as_mut()
    }

    /// The transaction the sender's top Via names, if any.
    pub fn find(&self, via_key: u64, via_id: &str) -> Option<(u32, u32)> {
        self.by_via.get(&via_key)?.iter().find_map(|&slot| {
            let s = self.slots.get(slot as usize)?;
            let c = s.call.as_ref()?;
            (&*c.via_id == via_id).then_some((slot, s.nonce))
        })
    }

    /// Every transaction in flight.
    pub fn iter(&self) -> impl Iterator<Item = &Call> {
        self.slots.iter().filter_map(|s| s.call.as_ref())
    }

    /// The transaction in (slot, nonce) sent its final response.
    pub fn finish(&mut self, slot: u32, nonce: u32) {
        let Some(call) = self.get_mut(slot, nonce) else {
            return;
        };
        if std::mem::replace(&mut call.finished, true) {
            return;
        }
        let src = call.src;
        self.unpend(src);
    }

    fn unpend(&mut self, src: PathKey) {
        if let Some(n) = self.per_source.get_mut(&src) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&src);
            }
        }
    }

    /// Frees a transaction; its timers must be cancelled by the caller.
    pub fn remove(&mut self, slot: u32, nonce: u32) -> Option<Call> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.nonce != nonce {
            return None;
        }
        let call = s.call.take()?;
        self.free.push(slot);
        self.live -= 1;
        if !call.finished {
            self.unpend(call.src);
        }
        if let Some(v) = self.by_via.get_mut(&call.via_key) {
            v.retain(|s| *s != slot);
            if v.is_empty() {
                self.by_via.remove(&call.via_key);
            }
        }
        Some(call)
    }
}
