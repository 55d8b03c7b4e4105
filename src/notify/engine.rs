//! One core's share of every fan-out job: paced sends, client transactions
//! on the core's timer wheel, and outcomes written into the shared jobs.
//! Sans-IO: the endpoint passes `now` and the core's [`Timers`], hands it
//! the timers it armed when they fire, and drains [`Engine::drain_outbound`].
//!
//! The state lives in units the engine composes: job runs (`run`), pacing
//! (`pace`), the transaction table and branch codec (`txn`), INVITE
//! follow-ups (`followup`), subscriptions (`subscription`); the requests are
//! written by `initial` and `request`. The engine owns what they share: the
//! outbound queue, the id generator and the counters.

use std::net::SocketAddr;
use std::sync::Arc;

use super::followup;
use super::initial::{write_request, RequestContext, Strings};
use super::job::{JobPart, Kind, Outcome};
use super::pace::Pacer;
use super::run::{self, Runs};
use super::subscription::{self, SubscribeAnswer, Subscriptions};
use super::txn::{branch, parse_branch, Role, Transactions, Txn};
use super::NotifyConfig;
use crate::registrar::Directory;
use crate::sip::ids::{Id, IdGen};
use crate::sip::{Checked, HeaderName, Message, Method};
use crate::timer::{Timer, TimerHandle, Timers};
use crate::transaction::{self, ClientTransaction};
use smallvec::SmallVec;

mod timers;

/// Counters (plain integers: only the owning core writes them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub jobs_started: u64,
    /// Job parts this core finished (the job itself may go on elsewhere).
    pub parts_finished: u64,
    pub jobs_finished: u64,
    pub requests_sent: u64,
    pub retransmissions: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub no_binding: u64,
    pub path_dead: u64,
    pub not_accepted: u64,
    pub cancelled: u64,
    pub challenges_answered: u64,
    pub stray_responses: u64,
}

/// One core's fan-out engine.
pub struct Engine {
    cfg: Arc<NotifyConfig>,
    dir: Arc<Directory>,
    runs: Runs,
    pacer: Pacer,
    txns: Transactions,
    /// `host:port` and our URI per listen socket, made once.
    local_ids: Vec<(String, String)>,
    /// The armed `Timer::Pace`, while first sends wait for the pacer.
    pace: Option<TimerHandle>,
    /// The armed `Timer::Subscriptions` sweep, while subscriptions live.
    sweep: Option<TimerHandle>,
    ids: IdGen,
    scratch: Vec<u8>,
    strings: Strings,
    /// Datagrams to send: (range in `out_buf`, destination, local socket).
    out_buf: Vec<u8>,
    out_meta: Vec<(usize, usize, SocketAddr, u8)>,
    pub(crate) subscriptions: Subscriptions,
    /// Jobs whose last part finished on this core (the runtime reports them).
    pub(crate) finished: Vec<Arc<super::Job>>,
    pub(crate) stats: Stats,
}

/// The boundary: what the runtime and the dispatcher call.
impl Engine {
    /// A SUBSCRIBE for tether's own contact-me package (or naming none,
    /// which tether answers with 489): the proxy routes the other packages.
    pub fn is_contact_me(&self, msg: &crate::sip::Message<'_>) -> bool {
        match msg.event() {
            Ok(Some(e)) => e.package.eq_ignore_ascii_case(&self.cfg.event),
            _ => true,
        }
    }

    /// `rate` is this core's share of the node's request rate.
    pub fn new(
        cfg: Arc<NotifyConfig>,
        dir: Arc<Directory>,
        local_addrs: Vec<SocketAddr>,
        rate: u32,
        seed: u64,
    ) -> Engine {
        let pacer = Pacer::new(rate, cfg.timers.t1_ms, cfg.max_in_flight);
        Engine {
            cfg,
            dir,
            runs: Runs::default(),
            pacer,
            txns: Transactions::default(),
            local_ids: local_addrs
                .iter()
                .map(|a| (a.to_string(), format!("sip:tether@{a}")))
                .collect(),
            pace: None,
            sweep: None,
            ids: IdGen::new(seed),
            scratch: Vec::with_capacity(2048),
            strings: Strings::default(),
            out_buf: Vec::with_capacity(64 * 1024),
            out_meta: Vec::new(),
            subscriptions: Subscriptions::default(),
            finished: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Client transactions alive on this core (including INVITEs that
    /// linger to re-ACK retransmitted answers).
    pub(crate) fn in_flight(&self) -> usize {
        self.txns.in_flight()
    }

    /// Takes a job's share for this core. `rate` is this core's share of
    /// the job's own rate limit.
    pub(crate) fn start(&mut self, part: JobPart, rate: Option<u32>, now: u64, wheel: &mut Timers) {
        self.stats.jobs_started += 1;
        let run = self.runs.start(part, rate, now);
        self.check_done(run, now);
        self.schedule(now, wheel);
    }

    /// A response whose top Via has `branch` (the caller parsed it once for
    /// every consumer). Returns false when the branch is not one of ours
    /// (the caller tries the keepalive).
    pub(crate) fn on_response(
        &mut self,
        msg: &Message<'_>,
        branch: &str,
        now: u64,
        wheel: &mut Timers,
    ) -> bool {
        let ours = self.response(msg, branch, now, wheel);
        self.schedule(now, wheel);
        ours
    }

    fn response(&mut self, msg: &Message<'_>, branch: &str, now: u64, wheel: &mut Timers) -> bool {
        let Some((slot, nonce)) = parse_branch(branch) else {
            return false;
        };
        let Some(code) = msg.status() else {
            return false;
        };
        let timers = self.cfg.timers;
        let Some(t) = self.txns.get_mut(slot) else {
            self.stats.stray_responses += 1;
            return true;
        };
        if t.nonce != nonce {
            self.stats.stray_responses += 1;
            return true;
        }
        let Ok(cseq) = msg.cseq() else { return true };
        if cseq.method == Method::Cancel {
            t.ring.on_cancel_response(code, now, &timers);
            return true;
        }
        let o = t.tx.on_response(code, now, &timers);
        let (to, local) = (t.to, t.local);
        let to_header = msg.header(HeaderName::To).unwrap_or("");
        if o.ack {
            let mut buf = std::mem::take(&mut self.scratch);
            followup::ack(&t.bytes, to_header, cseq.seq, &mut buf);
            self.queue(&buf, to, local);
            self.scratch = buf;
        }
        let mut next = o.next_deadline;
        if let Some(code) = o.deliver {
            self.deliver(slot, code, o.repeated, msg, now, wheel);
            if (200..300).contains(&code) && !o.repeated {
                // A wake-up INVITE is ACKed and BYEd at once: it re-ACKs a
                // 2xx retransmitted for a lost ACK for T4 (the device's
                // retransmissions at T1, 2·T1, 4·T1 fall within it), not for
                // Timer M's 32 s, which held every answered INVITE's slot and
                // capped a job at max_in_flight per 32 s (~6,000/s a core).
                if let Some(t) = self.txns.get_mut(slot).filter(|t| t.nonce == nonce) {
                    t.tx.linger_until(now + timers.t4_ms);
                    next = t.tx.deadline();
                }
            }
        }
        let alive = self.txns.get(slot).filter(|t| t.nonce == nonce);
        if let Some(t) = alive {
            // A completed non-INVITE is freed now rather than after Timer K:
            // on UDP that timer only absorbs a duplicate final answer, and a
            // duplicate now misses on the slot's nonce and is counted as stray.
            let done = t.tx.kind() == transaction::Kind::NonInvite
                && t.tx.state() == transaction::State::Completed;
            if o.terminated || done {
                self.release(slot, wheel);
            } else {
                self.arm(slot, next, wheel);
            }
        }
        true
    }

    /// Handles a SUBSCRIBE (validated) from `src` on listen socket `local`;
    /// writes the response into `out` and queues the RFC 6665 NOTIFY that
    /// must follow a successful one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn subscribe(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: SocketAddr,
        local: u8,
        now: u64,
        tag: &str,
        out: &mut Vec<u8>,
        wheel: &mut Timers,
    ) -> SubscribeAnswer {
        let hostport = self.local_hostport(local);
        let ctx = subscription::Context {
            cfg: &self.cfg,
            dir: &self.dir,
            hostport: &hostport,
            housekeeping: self.txns.others(),
            src,
            local,
            now,
        };
        let (answer, notify) = self.subscriptions.subscribe(&ctx, msg, checked, tag, out);
        if let Some(n) = notify {
            self.send_other(|branch, buf| n.write(branch, buf), src, local, now, wheel);
        }
        self.schedule(now, wheel);
        answer
    }

    /// Hands every queued datagram to `send(bytes, to, local)` and clears the queue.
    pub(crate) fn drain_outbound(&mut self, send: &mut dyn FnMut(&[u8], SocketAddr, u8)) {
        for &(a, b, to, local) in &self.out_meta {
            send(&self.out_buf[a..b], to, local);
        }
        self.out_meta.clear();
        self.out_buf.clear();
    }

    /// True when datagrams wait in the outbound queue.
    pub(crate) fn has_outbound(&self) -> bool {
        !self.out_meta.is_empty()
    }

    /// The directory it resolves devices in (tests change it under a job).
    #[cfg(test)]
    pub(super) fn directory(&self) -> &Arc<Directory> {
        &self.dir
    }
}

/// Sending: paced first sends of the job runs, and housekeeping requests.
impl Engine {
    fn send_paced(&mut self, now: u64, wheel: &mut Timers) {
        let mut budget = self.pacer.budget(now);
        for run in 0..self.runs.slots() {
            if budget == 0 || !self.has_room() {
                break;
            }
            let Some(n) = self.runs.quota(run, budget, now, &mut self.stats) else {
                continue;
            };
            for _ in 0..n {
                if !self.has_room() {
                    break;
                }
                let Some(device) = self.runs.next_device(run) else {
                    break;
                };
                budget -= 1;
                self.pacer.take_one();
                self.send_device(run, device, now, wheel);
            }
            self.check_done(run, now);
        }
    }

    /// Room for another first send (see [`Pacer::has_room`]).
    fn has_room(&self) -> bool {
        self.pacer
            .has_room(self.runs.awaiting(), self.txns.in_flight())
    }

    /// Resolves one device's binding now (it may have moved or gone since
    /// the job was accepted) and sends it the job's request.
    fn send_device(&mut self, run: u32, device: u32, now: u64, wheel: &mut Timers) {
        let job = self.runs.job(run);
        let dev = &job.devices[device as usize];
        let now_secs = (now / 1000) as u32;
        let (slot, nonce) = self.txns.alloc(&mut self.ids);
        let branch = branch(slot, nonce);
        // The request is written while the directory's record is in hand
        // (only this binding decoded from it; borrows split by field).
        let Engine {
            dir,
            cfg,
            local_ids,
            ids,
            subscriptions,
            scratch,
            strings,
            ..
        } = self;
        let verdict = dir.with_contact(&dev.aor, dev.binding, |v| {
            let Some(v) = v else {
                return Err(Outcome::NoBinding);
            };
            if v.expires_at <= now_secs {
                return Err(Outcome::NoBinding);
            }
            if !v.is_reachable() {
                return Err(Outcome::PathDead);
            }
            if job.spec.kind == Kind::ContactMe
                && !v.accepts_contact_me()
                && !subscriptions.has(&v.binding, now)
            {
                return Err(Outcome::NotAccepted);
            }
            let ctx = RequestContext {
                cfg,
                local_ids,
                job: &job,
                aor: &dev.aor,
                branch: &branch,
                now,
            };
            write_request(&ctx, v, ids, subscriptions, strings, scratch);
            Ok((v.source, v.local))
        });
        let (to, local) = match verdict {
            Ok(dest) => dest,
            Err(o) => {
                self.txns.unalloc(slot);
                job.set_outcome(device as usize, o);
                run::count(&mut self.stats, o);
                return;
            }
        };
        let mut bytes = self.txns.buffer();
        bytes.extend_from_slice(&self.scratch);
        let kind = match job.spec.kind {
            Kind::ContactMe => transaction::Kind::NonInvite,
            Kind::WakeInvite => transaction::Kind::Invite,
        };
        let (tx, out) = ClientTransaction::start(kind, now, &self.cfg.timers);
        self.queue(&bytes, to, local);
        self.txns.fill(
            slot,
            Txn::new(
                nonce,
                Role::Request { run, device },
                Some(job.clone()),
                tx,
                bytes,
                to,
                local,
            ),
        );
        self.arm(slot, out.next_deadline, wheel);
        self.runs.sent(run);
        self.pacer.on_send();
        job.set_outcome(device as usize, Outcome::InFlight);
        job.sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stats.requests_sent += 1;
    }

    /// Starts a housekeeping request (a subscription's NOTIFY) as a client
    /// transaction whose outcome nobody waits for.
    fn send_other(
        &mut self,
        build: impl FnOnce(&Id, &mut Vec<u8>),
        to: SocketAddr,
        local: u8,
        now: u64,
        wheel: &mut Timers,
    ) {
        let (slot, nonce) = self.txns.alloc(&mut self.ids);
        let br = branch(slot, nonce);
        let mut buf = std::mem::take(&mut self.scratch);
        build(&br, &mut buf);
        self.start_other((slot, nonce), buf.as_slice().into(), to, local, now, wheel);
        self.scratch = buf;
    }

    /// Starts housekeeping request `bytes` in slot `slot` (taken with `nonce`).
    fn start_other(
        &mut self,
        (slot, nonce): (u32, u32),
        bytes: Vec<u8>,
        to: SocketAddr,
        local: u8,
        now: u64,
        wheel: &mut Timers,
    ) {
        let (tx, out) =
            ClientTransaction::start(transaction::Kind::NonInvite, now, &self.cfg.timers);
        self.queue(&bytes, to, local);
        self.txns
            .fill(slot, Txn::other(nonce, tx, bytes, to, local));
        self.arm(slot, out.next_deadline, wheel);
    }

    fn queue(&mut self, bytes: &[u8], to: SocketAddr, local: u8) {
        let a = self.out_buf.len();
        self.out_buf.extend_from_slice(bytes);
        self.out_meta.push((a, self.out_buf.len(), to, local));
    }

    /// Our address on listen socket `local` as `host:port`.
    fn local_hostport(&self, local: u8) -> String {
        self.local_ids
            .get(usize::from(local))
            .map_or_else(|| "0.0.0.0:5060".to_owned(), |(hp, _)| hp.clone())
    }
}

/// The transaction user: what an answer means for the device and the job.
impl Engine {
    /// The transaction user's part: outcomes, challenge answers, ACK and
    /// BYE after a 2xx, the ring limit.
    fn deliver(
        &mut self,
        slot: u32,
        code: u16,
        repeated: bool,
        msg: &Message<'_>,
        now: u64,
        wheel: &mut Timers,
    ) {
        let Some(t) = self.txns.get_mut(slot) else {
            return;
        };
        let Role::Request { .. } = t.role else {
            return;
        };
        let invite = t.tx.kind() == transaction::Kind::Invite;
        // A challenge after the device already answered (a 407 after a 180)
        // changes nothing: the outcome is settled.
        if (code == 401 || code == 407)
            && !t.auth_tried
            && !t.settled
            && self.cfg.credentials.is_some()
        {
            self.answer_challenge(slot, code, msg, now, wheel);
            return;
        }
        if invite {
            if (200..300).contains(&code) {
                self.ack_and_bye(slot, msg, repeated, now, wheel);
            }
            if code < 200 {
                if let Some(t) = self.txns.get_mut(slot) {
                    t.ring.ringing(now, self.cfg.ring_ms);
                }
            }
            if !repeated {
                // Seed 001: any answer means the wake-up reached the device.
                self.settle(slot, Outcome::Delivered(code), now);
            }
            return;
        }
        match code {
            100..=199 => {}
            200..=299 => self.settle(slot, Outcome::Delivered(code), now),
            _ => self.settle(slot, Outcome::Rejected(code), now),
        }
    }

    /// ACK the 2xx (to its Contact, with its To tag), then end the call
    /// with a BYE so no dialog is left behind. A repeated 2xx only gets the
    /// ACK again.
    fn ack_and_bye(
        &mut self,
        slot: u32,
        msg: &Message<'_>,
        repeated: bool,
        now: u64,
        wheel: &mut Timers,
    ) {
        if self.txns.get(slot).is_none() {
            return;
        }
        // The BYE's slot and buffer first: the INVITE is then read in place
        // (one pass for both requests), not copied out of its slot.
        let bye = (!repeated).then(|| {
            let mut buf = self.txns.buffer();
            // A BYE's size at once, not grown from empty by doubling.
            buf.reserve(512);
            (self.txns.alloc(&mut self.ids), buf)
        });
        let Some(t) = self.txns.get(slot) else {
            return;
        };
        let (to, local) = (t.to, t.local);
        let mut ack = std::mem::take(&mut self.scratch);
        let bye = {
            let invite = super::request::Dialog::of(&t.bytes);
            let answered = followup::Answered::of(msg);
            answered.ack(&invite, &self.ids.branch(), &mut ack);
            bye.map(|((bye_slot, nonce), mut buf)| {
                answered.bye(&invite, &branch(bye_slot, nonce), &mut buf);
                ((bye_slot, nonce), buf)
            })
        };
        self.queue(&ack, to, local);
        self.scratch = ack;
        if let Some((bye_slot, buf)) = bye {
            self.start_other(bye_slot, buf, to, local, now, wheel);
        }
    }

    /// Answers a device's 401/407 once with the configured credentials, as
    /// a new transaction in the same slot ([`followup::answer_challenge`]).
    fn answer_challenge(
        &mut self,
        slot: u32,
        code: u16,
        msg: &Message<'_>,
        now: u64,
        wheel: &mut Timers,
    ) {
        let cfg = self.cfg.clone();
        let Some((user, pass)) = cfg.credentials.as_ref() else {
            return;
        };
        let Some(t) = self.txns.get_mut(slot) else {
            return;
        };
        let creds = (user.as_str(), pass.as_str());
        let retry = followup::answer_challenge(&t.bytes, slot, code, msg, creds, &mut self.ids);
        let Some((bytes, nonce)) = retry else {
            self.settle(slot, Outcome::Rejected(code), now);
            return;
        };
        let (tx, out) = ClientTransaction::start(t.tx.kind(), now, &cfg.timers);
        let (to, local) = (t.to, t.local);
        t.restart(nonce, tx, bytes.as_slice().into());
        self.queue(&bytes, to, local);
        self.stats.challenges_answered += 1;
        self.arm(slot, out.next_deadline, wheel);
    }

    /// Records a device's outcome; the first final one settles it.
    fn settle(&mut self, slot: u32, o: Outcome, now: u64) {
        let Some(run) = self.txns.get_mut(slot).and_then(|t| t.settle(o)) else {
            return;
        };
        let done = self.runs.settle(run, o, now, &mut self.stats);
        self.finished.extend(done);
    }

    /// Retires a run whose devices are all settled.
    fn check_done(&mut self, run: u32, now: u64) {
        let done = self.runs.check_done(run, now, &mut self.stats);
        self.finished.extend(done);
    }
}
