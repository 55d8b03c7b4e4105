//! REGISTERs waiting on the authorization service (`auth.mode = "http"`,
//! seed 003).
//!
//! The core never blocks: a REGISTER the registrar cannot decide is
//! **parked** here (its datagram kept), answered `100 Trying` at once, and
//! POSTed through the side threads (`Event::Http`). The answer comes back
//! as `Command::HttpAnswer`; the core's own `Timer::Authorize` deadline
//! fires `auth.http.on_timeout` if it never does, and a late answer finds
//! nothing to wake. Either way the REGISTER is run again with the decision
//! ([`Authz`]) and answered from its core.
//!
//! The parked REGISTER is a server transaction (RFC 3261 §17.2.2): its
//! retransmissions (same source, top Via branch and CSeq) are answered
//! `100 Trying` again instead of asking twice, and for a while after the
//! final answer a straggler is answered with the same decision.

use std::net::SocketAddr;

use super::Endpoint;
use crate::hooks::{Answer, Kind, Purpose, Request};
use crate::registrar::{Arrival, Authz, HttpAuth, OnTimeout, Outcome};
use crate::sip::{self, writer, Checked, Message};
use crate::timer::{Timer, TimerHandle};

/// How long a finished transaction's decision is kept for stragglers (ms):
/// a UA that got `100 Trying` retransmits every T2 = 4 s, so one interval
/// and a margin.
const LINGER_MS: u64 = 5_000;

/// Retry-After (s) when the service could not answer: spread over 30–59 s
/// so that devices turned away during an outage do not all come back in
/// the same second.
const UNAVAILABLE_RETRY_S: (u32, u32) = (30, 30);

/// Retry-After (s) when `auth.http.max_pending` wait already: 5–9 s.
const OVERLOADED_RETRY_S: (u32, u32) = (5, 5);

/// Counters of the HTTP authorization (plain integers: one core writes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthStats {
    /// Callouts answered 2xx.
    pub authorized: u64,
    /// Callouts answered 4xx.
    pub rejected: u64,
    /// No answer by the deadline, or the side threads could not ask.
    pub timed_out: u64,
    /// Answered, but 5xx or another unusable status.
    pub failed: u64,
    /// Turned away `503`: `max_pending` were waiting.
    pub overloaded: u64,
    /// Retransmissions of a waiting REGISTER, answered `100 Trying`.
    pub retransmissions: u64,
}

/// One REGISTER waiting for its answer.
struct Parked {
    nonce: u32,
    tx: u64,
    bytes: Box<[u8]>,
    src: SocketAddr,
    local: u8,
    deadline: TimerHandle,
}

/// A core's waiting REGISTERs, in a slab (slot + nonce name one in the
/// callout id and the deadline timer, so neither can wake a reused slot).
pub(crate) struct Waiting {
    cfg: HttpAuth,
    slots: Vec<Option<Parked>>,
    free: Vec<u32>,
    pending: usize,
    next_nonce: u32,
    /// Transaction key → slot of a waiting REGISTER.
    by_tx: hashbrown::HashMap<u64, u32>,
    /// Transaction key → (kept until, ms; decision) of a finished one.
    done: hashbrown::HashMap<u64, (u64, Authz)>,
    last_sweep: u64,
    hasher: foldhash::fast::FixedState,
    pub(crate) stats: AuthStats,
}

/// What a REGISTER's transaction key found.
enum Seen {
    /// A retransmission of a waiting REGISTER.
    Waiting,
    /// A straggler of one answered lately with this decision.
    Done(Authz),
}

impl Waiting {
    pub(crate) fn new(cfg: HttpAuth, seed: u64) -> Waiting {
        Waiting {
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            pending: 0,
            next_nonce: 0,
            by_tx: hashbrown::HashMap::new(),
            done: hashbrown::HashMap::new(),
            last_sweep: 0,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            stats: AuthStats::default(),
        }
    }

    /// REGISTERs waiting now.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// RFC 3261 §17.2.3's match: the top Via's branch and sent-by (here the
    /// source it came from, which a retransmission shares) and the CSeq.
    fn tx_key(&self, src: SocketAddr, checked: &Checked<'_>) -> u64 {
        let branch = checked.top_via.branch().unwrap_or("");
        std::hash::BuildHasher::hash_one(&self.hasher, (src, branch, checked.cseq.seq))
    }

    fn seen(&mut self, tx: u64, now: u64) -> Option<Seen> {
        if self.by_tx.contains_key(&tx) {
            return Some(Seen::Waiting);
        }
        match self.done.get(&tx) {
            Some(&(until, authz)) if until > now => Some(Seen::Done(authz)),
            _ => None,
        }
    }

    /// Callout id: nonce in the high half, slot in the low.
    fn id(slot: u32, nonce: u32) -> u64 {
        u64::from(nonce) << 32 | u64::from(slot)
    }

    /// A free slot and a fresh nonce for the next parked REGISTER.
    fn reserve(&mut self) -> (u32, u32) {
        self.next_nonce = self.next_nonce.wrapping_add(1);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        (slot, self.next_nonce)
    }

    fn park(&mut self, slot: u32, p: Parked) {
        self.by_tx.insert(p.tx, slot);
        self.pending += 1;
        self.slots[slot as usize] = Some(p);
    }

    /// Takes the REGISTER waiting in (slot, nonce) out, if it still is.
    fn take(&mut self, slot: u32, nonce: u32) -> Option<Parked> {
        let cell = self.slots.get_mut(slot as usize)?;
        if cell.as_ref().is_none_or(|p| p.nonce != nonce) {
            return None;
        }
        let p = cell.take()?;
        self.free.push(slot);
        self.by_tx.remove(&p.tx);
        self.pending -= 1;
        Some(p)
    }

    /// Keeps a finished transaction's decision for its stragglers for
    /// [`LINGER_MS`], sweeping out old ones now and then. At most eight
    /// times `max_pending` are kept; beyond, a straggler is run as new.
    fn remember(&mut self, tx: u64, authz: Authz, now: u64) {
        if now >= self.last_sweep + LINGER_MS {
            self.last_sweep = now;
            self.done.retain(|_, (until, _)| *until > now);
        }
        if self.done.len() < self.cfg.max_pending.saturating_mul(8) {
            self.done.insert(tx, (now + LINGER_MS, authz));
        }
    }
}

/// `lo + a value below span`, drawn from the core's id generator.
fn spread(ids: &mut sip::ids::IdGen, (lo, span): (u32, u32)) -> u32 {
    lo + (ids.next_u64() % u64::from(span.max(1))) as u32
}

impl Endpoint {
    /// A validated REGISTER from `src`: registered, refused, or parked
    /// until the authorization service answers. `true` when `self.out`
    /// holds the answer for `src` (a final one, or `100 Trying`).
    pub(super) fn on_register<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        datagram: &[u8],
        src: SocketAddr,
        local: u8,
        now_ms: u64,
    ) -> bool {
        let at = self.arrival(src, local, now_ms);
        self.set_source_room(src);
        let mut tx = 0;
        if let Some(w) = self.waiting.as_mut() {
            tx = w.tx_key(src, checked);
            match w.seen(tx, now_ms) {
                Some(Seen::Waiting) => {
                    w.stats.retransmissions += 1;
                    return self.trying(msg, checked, src);
                }
                Some(Seen::Done(authz)) => {
                    self.registrar.register_as(
                        msg,
                        checked,
                        at,
                        authz,
                        &mut self.out,
                        &mut self.tags,
                    );
                    self.sync_paths(now_ms);
                    return true;
                }
                None => {}
            }
        }
        let outcome =
            self.registrar
                .register_as(msg, checked, at, Authz::Ask, &mut self.out, &mut self.tags);
        match outcome {
            Outcome::Answered => {
                self.sync_paths(now_ms);
                true
            }
            Outcome::Callout(body) => self.park(msg, checked, tx, datagram, at, body, now_ms),
        }
    }

    /// Where and when a REGISTER arrived, on both clocks.
    pub(super) fn arrival(&self, src: SocketAddr, local: u8, now_ms: u64) -> Arrival {
        Arrival {
            source: src,
            local,
            // Rounded up: a binding must never expire before its full
            // Expires has passed (truncating cost up to a second).
            now_secs: now_ms.div_ceil(1000) as u32,
            now_unix: self.unix_epoch_ms.saturating_add(now_ms) / 1000,
        }
    }

    fn trying(&mut self, msg: &Message<'_>, checked: &Checked<'_>, src: SocketAddr) -> bool {
        writer::response_to_checked(&mut self.out, msg, checked, 100, "Trying", None, Some(src))
            .finish(None);
        true
    }

    /// Parks a REGISTER and asks the service, or turns it away when
    /// `max_pending` wait already.
    #[allow(clippy::too_many_arguments)]
    fn park<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        tx: u64,
        datagram: &[u8],
        at: Arrival,
        body: Vec<u8>,
        now_ms: u64,
    ) -> bool {
        let core = self.registrar.core();
        let Some(w) = self.waiting.as_mut() else {
            // The registrar only asks for callouts in HTTP mode, which
            // makes `waiting`; answer rather than drop if that ever breaks.
            let retry = spread(&mut self.tags, UNAVAILABLE_RETRY_S);
            self.registrar
                .unavailable(msg, checked, at, retry, &mut self.out, &mut self.tags);
            return true;
        };
        if w.pending >= w.cfg.max_pending {
            w.stats.overloaded += 1;
            let retry = spread(&mut self.tags, OVERLOADED_RETRY_S);
            self.registrar
                .unavailable(msg, checked, at, retry, &mut self.out, &mut self.tags);
            return true;
        }
        let (slot, nonce) = w.reserve();
        let deadline = self
            .timers
            .arm(now_ms + w.cfg.timeout_ms, Timer::Authorize { slot, nonce });
        w.park(
            slot,
            Parked {
                nonce,
                tx,
                bytes: datagram.into(),
                src: at.source,
                local: at.local,
                deadline,
            },
        );
        self.http.push(Request {
            url: w.cfg.url.clone(),
            body,
            kind: Kind::Callout {
                core,
                purpose: Purpose::Authorize,
                id: Waiting::id(slot, nonce),
                timeout_ms: w.cfg.timeout_ms,
            },
        });
        self.trying(msg, checked, at.source)
    }

    /// The service answered (status 0: the side threads could not ask).
    pub(super) fn on_authorize_answer(&mut self, now_ms: u64, a: &Answer) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let (slot, nonce) = (a.id as u32, (a.id >> 32) as u32);
        let Some(p) = w.take(slot, nonce) else {
            // Its deadline passed first: that decision stands.
            tracing::debug!(a.id, a.status, "late authorization answer ignored");
            return;
        };
        self.timers.cancel(p.deadline);
        if (400..=499).contains(&a.status) {
            self.guard.auth_failed(p.src.ip(), now_ms);
        }
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let authz = match a.status {
            200..=299 => {
                w.stats.authorized += 1;
                Authz::Granted
            }
            400..=499 => {
                w.stats.rejected += 1;
                Authz::Denied
            }
            0 => {
                w.stats.timed_out += 1;
                self.fallback()
            }
            _ => {
                w.stats.failed += 1;
                self.fallback()
            }
        };
        self.finish(p, authz, now_ms);
    }

    /// A parked REGISTER's deadline: the service did not answer in time.
    pub(super) fn on_authorize_timer(&mut self, slot: u32, nonce: u32, now_ms: u64) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let Some(p) = w.take(slot, nonce) else {
            return;
        };
        w.stats.timed_out += 1;
        let authz = self.fallback();
        self.finish(p, authz, now_ms);
    }

    /// `auth.http.on_timeout`'s decision.
    fn fallback(&mut self) -> Authz {
        match self.waiting.as_ref().map(|w| w.cfg.on_timeout) {
            Some(OnTimeout::Accept) => Authz::Assumed,
            _ => Authz::Unavailable {
                retry_after: spread(&mut self.tags, UNAVAILABLE_RETRY_S),
            },
        }
    }

    /// Runs a parked REGISTER again with the decision and sends its answer.
    fn finish(&mut self, p: Parked, authz: Authz, now_ms: u64) {
        if let Some(w) = self.waiting.as_mut() {
            w.remember(p.tx, authz, now_ms);
        }
        // It parsed and validated when it arrived; this cannot fail.
        let Ok(msg) = sip::parse_with(&p.bytes, &self.limits) else {
            return;
        };
        let Ok(checked) = msg.validate() else {
            return;
        };
        let at = self.arrival(p.src, p.local, now_ms);
        self.set_source_room(p.src);
        self.registrar
            .register_as(&msg, &checked, at, authz, &mut self.out, &mut self.tags);
        self.transmits.push(&self.out, p.src, p.local);
        self.sync_paths(now_ms);
        // Like a REGISTER answered at once: its calls held for it go now.
        if self.out.starts_with(b"SIP/2.0 200") {
            self.wake_held(&checked);
        }
    }
}
