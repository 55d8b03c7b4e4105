//! The sans-IO front door: one datagram and its source in, at most one
//! datagram to send back out. The runtime owns sockets and clocks; this owns
//! the protocol decisions, so they are testable without a network.

use std::fmt::Write as _;
use std::net::SocketAddr;

use smallvec::SmallVec;

use crate::nat::{self, Action, Keepalive, PathKey};
use crate::registrar::{Arrival, Registrar, SUPPORTED};
use crate::sip::{self, writer, HeaderName, Limits, Method, ParseError, StartLine};

/// Methods tether accepts today (the proxy will add INVITE, BYE, CANCEL …).
pub const ALLOW: &str = "REGISTER, OPTIONS, ACK, SUBSCRIBE";

/// Keepalive actions handled per tick (one `sendmmsg` worth of prompts).
pub const PROMPTS_PER_TICK: usize = 64;

/// Counters a worker keeps without atomics; the metrics layer reads copies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub oversize_dropped: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub keepalive_pings: u64,
    pub stun_requests: u64,
    pub responses_received: u64,
}

/// Per-worker protocol state: parser limits, a reusable output buffer,
/// the registrar and the NAT keepalive of this core, counters.
pub struct Dispatcher {
    limits: Limits,
    out: Vec<u8>,
    tags: sip::ids::IdGen,
    pub registrar: Registrar,
    pub keepalive: Keepalive,
    /// Contact-me and wake-up fan-out (client transactions, subscriptions).
    pub notify: crate::notify::Engine,
    /// Our address per listen socket, for the Via and From of prompts.
    local_addrs: Vec<SocketAddr>,
    actions: Vec<Action>,
    scratch: String,
    pub counters: Counters,
}

impl Dispatcher {
    pub fn new(
        limits: Limits,
        seed: u64,
        registrar: Registrar,
        keepalive: Keepalive,
        notify: crate::notify::Engine,
        local_addrs: Vec<SocketAddr>,
    ) -> Dispatcher {
        Dispatcher {
            limits,
            out: Vec::with_capacity(limits.max_datagram),
            tags: sip::ids::IdGen::new(seed),
            registrar,
            keepalive,
            notify,
            local_addrs,
            actions: Vec::new(),
            scratch: String::with_capacity(128),
            counters: Counters::default(),
        }
    }

    /// When [`Dispatcher::tick`] next has work (ms), for the poll timeout.
    pub fn next_deadline_ms(&self, now_ms: u64) -> Option<u64> {
        let expiry = self.registrar.next_expiry().map(|s| u64::from(s) * 1000);
        [
            expiry,
            self.keepalive.next_deadline(),
            self.notify.next_deadline(now_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The values of [`crate::metrics::CORE`], in its order.
    pub fn metric_values(&self) -> Vec<u64> {
        let (c, r, k, n) = (
            &self.counters,
            &self.registrar.stats,
            &self.keepalive.stats,
            &self.notify.stats,
        );
        let [reg_only, dialog_reg, dialog_only] = self.keepalive.paths_by_state();
        let v = vec![
            c.received,
            c.malformed_answered,
            c.malformed_dropped,
            c.oversize_dropped,
            c.stun_requests,
            c.keepalive_pings,
            c.responses_received,
            self.registrar.local_bindings() as u64,
            r.registered,
            r.refreshed,
            r.unregistered,
            r.expired,
            r.challenged,
            r.forbidden,
            reg_only,
            dialog_reg,
            dialog_only,
            self.keepalive.dead_paths(),
            k.prompts,
            k.retransmissions,
            k.answered,
            k.missed,
            k.dead,
            n.jobs_started,
            n.jobs_finished,
            n.requests_sent,
            n.retransmissions,
            n.delivered,
            n.rejected,
            n.timed_out,
            n.no_binding,
            n.path_dead,
            n.not_accepted,
            n.cancelled,
            n.challenges_answered,
            self.notify.in_flight() as u64,
            self.notify.subscriptions.len() as u64,
        ];
        debug_assert_eq!(v.len(), crate::metrics::CORE.len());
        v
    }

    /// Runs what is due at `now_ms`: binding expiry, keepalive prompts and
    /// their timeouts. Requests to send go to `send(bytes, to, local)`.
    pub fn tick(&mut self, now_ms: u64, send: &mut dyn FnMut(&[u8], SocketAddr, u8)) {
        self.registrar.expire((now_ms / 1000) as u32);
        self.sync_paths(now_ms);
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        // A bounded slice per tick: the worker reads answers between slices.
        self.keepalive
            .poll_some(now_ms, PROMPTS_PER_TICK, &mut actions);
        for a in &actions {
            match *a {
                Action::Prompt { path, id, .. } => {
                    self.write_prompt(path, id);
                    send(&self.out, path.remote(), path.local());
                }
                Action::Dead { path } => {
                    let on_path: SmallVec<[(u32, u32); 4]> =
                        self.keepalive.bindings_on(&path).into();
                    let n = self.registrar.mark_bindings(&on_path, false);
                    tracing::info!(path = %path.remote(), bindings = n, "NAT path dead: keepalive prompts unanswered");
                }
                Action::Revived { path } => {
                    let on_path: SmallVec<[(u32, u32); 4]> =
                        self.keepalive.bindings_on(&path).into();
                    self.registrar.mark_bindings(&on_path, true);
                    tracing::info!(path = %path.remote(), "NAT path answering again");
                }
            }
        }
        self.actions = actions;
        self.notify.tick(now_ms);
        self.notify.drain_outbound(send);
    }

    /// Frees a binding another core took over (from the worker's inbox).
    pub fn forget(&mut self, b: crate::registrar::BindingRef, now_ms: u64) {
        self.registrar.forget(b);
        self.sync_paths(now_ms);
    }

    /// Feeds the registrar's binding changes into the path table.
    fn sync_paths(&mut self, now_ms: u64) {
        for e in self.registrar.path_events.drain(..) {
            if e.added {
                self.keepalive
                    .binding_added(e.path, (e.slot, e.gen), now_ms);
            } else {
                self.keepalive
                    .binding_removed(e.path, (e.slot, e.gen), now_ms);
            }
        }
    }

    /// An OPTIONS prompt (seed 004): fresh branch, Call-ID and From tag per
    /// prompt id; `Max-Forwards: 0` so that whatever sits at the far end of
    /// the path answers it rather than forwarding it.
    fn write_prompt(&mut self, path: PathKey, id: u64) {
        let local = self
            .local_addrs
            .get(usize::from(path.local()))
            .copied()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5060)));
        let branch = nat::prompt_branch(id);
        let tag = sip::ids::Id::from_parts("", id);
        self.scratch.clear();
        let _ = write!(
            self.scratch,
            "sip:{}|sip:tether@{local}|{local}|{}@tether",
            path.remote(),
            tag.as_str()
        );
        let mut parts = self.scratch.split('|');
        let (target, from, sent_by, call_id) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let head = writer::RequestHead {
            method: Method::Options,
            uri: target,
            transport: "UDP",
            sent_by,
            branch: &branch,
            from_uri: from,
            from_tag: &tag,
            to_uri: target,
            to_tag: None,
            call_id,
            cseq: 1,
            max_forwards: 0,
            contact: None,
            routes: &[],
        };
        writer::request(&mut self.out, &head).finish(None);
    }

    /// Handles one datagram from `src`, received on local address number
    /// `local`, at `now_ms` on the runtime clock; returns the bytes to send
    /// back to `src`, if any.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        local: u8,
        now_ms: u64,
    ) -> Option<&[u8]> {
        self.counters.received += 1;
        // Any packet from a path refreshes its NAT mapping.
        let path = PathKey::new(local, src);
        let path_index = self.keepalive.touch(&path, now_ms);
        // RFC 5626 clients keep their flow alive with STUN Binding requests.
        if nat::stun::is_stun(datagram) {
            self.counters.stun_requests += 1;
            return nat::stun::binding_response(datagram, src, &mut self.out)
                .then_some(&self.out[..]);
        }
        let msg = match sip::parse_with(datagram, &self.limits) {
            Ok(m) => m,
            Err(e) => return self.reject(datagram, src, e),
        };
        if msg.status().is_some() {
            self.counters.responses_received += 1;
            // Answers to fan-out requests and to keepalive prompts are told
            // apart by the top Via's branch alone: parse it once for both.
            let branch = msg.top_via().ok().and_then(|v| v.branch())?;
            if !self.notify.on_response(&msg, branch, now_ms) {
                self.on_response(branch, path, path_index, now_ms);
            }
            return None;
        }
        let checked = match msg.validate() {
            Ok(c) => c,
            Err(e) => return self.answer_invalid(&msg, src, e),
        };
        let StartLine::Request { method, .. } = msg.start else {
            return None;
        };
        // OPTIONS to us is answered whatever its Max-Forwards; an ACK never is.
        if checked.max_forwards == Some(0) && !matches!(method, Method::Options | Method::Ack) {
            return self.respond(&msg, src, 483, "Too Many Hops");
        }
        match method {
            // ACK to a final response we sent is absorbed (RFC 3261 §17.2.1).
            Method::Ack => None,
            Method::Register => {
                // Rounded up: a binding must never expire before its full
                // Expires has passed (truncating cost up to a second).
                let at = Arrival {
                    source: src,
                    local,
                    now_secs: now_ms.div_ceil(1000) as u32,
                };
                self.registrar
                    .register(&msg, &checked, at, &mut self.out, &mut self.tags);
                self.sync_paths(now_ms);
                Some(&self.out)
            }
            Method::Options => {
                let tag = self.tags.tag();
                let mut w = writer::response_to_checked(
                    &mut self.out,
                    &msg,
                    &checked,
                    200,
                    "OK",
                    Some(&tag),
                    Some(src),
                );
                w.header(HeaderName::Allow, ALLOW)
                    .header(HeaderName::Accept, "application/sdp")
                    .header(HeaderName::Supported, SUPPORTED);
                w.finish(None);
                Some(&self.out)
            }
            // No INVITE transactions exist yet, so nothing can be cancelled.
            Method::Cancel => self.respond(&msg, src, 481, "Call/Transaction Does Not Exist"),
            // Methods SIP defines but tether does not take here yet: 405 with Allow.
            Method::Subscribe => {
                let tag = self.tags.tag();
                self.notify
                    .subscribe(&msg, &checked, src, local, now_ms, &tag, &mut self.out);
                Some(&self.out)
            }
            Method::Invite
            | Method::Bye
            | Method::Notify
            | Method::Refer
            | Method::Message
            | Method::Info
            | Method::Prack
            | Method::Update
            | Method::Publish => self.respond(&msg, src, 405, "Method Not Allowed"),
            Method::Extension(_) => self.respond(&msg, src, 501, "Not Implemented"),
        }
    }

    /// A response that is not an answer to a fan-out request: only answers
    /// to keepalive prompts mean anything here, and those need just the top
    /// Via's branch, so the rest of the message is not validated. Any status
    /// counts: the path is alive.
    fn on_response(&mut self, branch: &str, path: PathKey, index: Option<u32>, now_ms: u64) {
        let (Some(id), Some(index)) = (nat::prompt_id(branch), index) else {
            return;
        };
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        self.keepalive.answered_at(index, id, now_ms, &mut actions);
        if actions.contains(&Action::Revived { path }) {
            let on_path: SmallVec<[(u32, u32); 4]> = self.keepalive.bindings_on(&path).into();
            self.registrar.mark_bindings(&on_path, true);
        }
        self.actions = actions;
    }

    fn respond(
        &mut self,
        msg: &sip::Message<'_>,
        src: SocketAddr,
        code: u16,
        reason: &str,
    ) -> Option<&[u8]> {
        let tag = self.tags.tag();
        let mut w = writer::response_to(&mut self.out, msg, code, reason, Some(&tag), Some(src));
        if code == 501 || code == 405 {
            w.header(HeaderName::Allow, ALLOW);
        }
        w.finish(None);
        Some(&self.out)
    }

    /// A datagram that did not even split into start line and headers.
    fn reject(&mut self, datagram: &[u8], src: SocketAddr, e: ParseError) -> Option<&[u8]> {
        match e {
            ParseError::Empty => {
                // RFC 5626 §4.4.1: a CRLFCRLF ping is answered with CRLF (pong).
                self.counters.keepalive_pings += 1;
                if datagram.len() >= 4 {
                    self.out.clear();
                    self.out.extend_from_slice(b"\r\n");
                    return Some(&self.out);
                }
                None
            }
            ParseError::TooLarge { .. } => {
                self.counters.oversize_dropped += 1;
                None
            }
            // Answer 400 when the transaction ids survive a lenient scan;
            // otherwise count and drop.
            _ => {
                let _ = src;
                let code = if e == ParseError::BadVersion {
                    505
                } else {
                    400
                };
                if writer::salvage_bad_request(&mut self.out, datagram, code, e.reason()) {
                    self.counters.malformed_answered += 1;
                    Some(&self.out)
                } else {
                    self.counters.malformed_dropped += 1;
                    None
                }
            }
        }
    }

    /// A message that split cleanly but breaks a header grammar: requests
    /// whose top Via parses get `400 <reason>`; the rest are dropped.
    fn answer_invalid(
        &mut self,
        msg: &sip::Message<'_>,
        src: SocketAddr,
        e: ParseError,
    ) -> Option<&[u8]> {
        let answerable =
            msg.is_request() && msg.method() != Some(Method::Ack) && msg.top_via().is_ok();
        if !answerable {
            self.counters.malformed_dropped += 1;
            return None;
        }
        self.counters.malformed_answered += 1;
        let code = if e == ParseError::BadVersion {
            505
        } else {
            400
        };
        self.respond(msg, src, code, e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn dispatcher(limits: Limits) -> Dispatcher {
        let dir = std::sync::Arc::new(crate::registrar::Directory::new());
        let reg = Registrar::new(
            0,
            std::sync::Arc::new(crate::registrar::Policy::default()),
            dir.clone(),
            None,
        );
        let ka = Keepalive::new(
            nat::KeepaliveConfig {
                jitter_ms: 0,
                ..nat::KeepaliveConfig::default()
            },
            0,
            7,
        );
        let addrs = vec!["192.0.2.1:5060".parse().unwrap()];
        let notify = crate::notify::Engine::new(
            std::sync::Arc::new(crate::notify::NotifyConfig::default()),
            dir,
            addrs.clone(),
            1000,
            7,
        );
        Dispatcher::new(limits, 7, reg, ka, notify, addrs)
    }

    #[test]
    fn options_gets_200_with_capabilities() {
        let mut d = dispatcher(Limits::default());
        let req = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1;rport\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
        let out = d.handle(req, src(), 0, 0).unwrap().to_vec();
        let m = sip::parse(&out).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.header(HeaderName::Allow), Some(ALLOW));
        assert_eq!(m.top_via().unwrap().rport(), Some(Some(40000)));
        assert!(m.to().unwrap().tag().is_some());
    }

    #[test]
    fn stun_binding_on_the_sip_port() {
        let mut d = dispatcher(Limits::default());
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        req.extend_from_slice(&[9u8; 12]);
        let out = d.handle(&req, src(), 0, 0).unwrap().to_vec();
        assert_eq!(nat::stun::mapped_address(&out), Some(src()));
        assert_eq!(d.counters.stun_requests, 1);
    }

    #[test]
    fn keepalive_prompt_after_registration_and_answer_by_branch() {
        let mut d = dispatcher(Limits::default());
        let reg = b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr1;rport\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:a@10.0.0.2:5060>\r\nMax-Forwards: 70\r\n\r\n";
        assert_eq!(
            sip::parse(d.handle(reg, src(), 0, 0).unwrap())
                .unwrap()
                .status(),
            Some(200)
        );
        let mut sent = Vec::new();
        d.tick(24_999, &mut |b, to, l| sent.push((b.to_vec(), to, l)));
        assert!(sent.is_empty());
        d.tick(25_000, &mut |b, to, l| sent.push((b.to_vec(), to, l)));
        assert_eq!(sent.len(), 1);
        let (prompt, to, local) = sent.pop().unwrap();
        assert_eq!((to, local), (src(), 0));
        let m = sip::parse(&prompt).unwrap();
        let c = m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Options));
        assert_eq!(c.max_forwards, Some(0));
        assert_eq!(c.top_via.sent_by, "192.0.2.1:5060");
        // A 404 answers it as well as a 200 would.
        let mut resp = Vec::new();
        writer::response_to(&mut resp, &m, 404, "Not Found", Some("x"), None).finish(None);
        assert!(d.handle(&resp, src(), 0, 25_010).is_none());
        assert_eq!(d.keepalive.stats.answered, 1);
        d.tick(27_000, &mut |b, to, l| sent.push((b.to_vec(), to, l)));
        assert!(sent.is_empty(), "no retransmission of an answered prompt");
    }

    #[test]
    fn bad_header_gets_400_with_reason() {
        let mut d = dispatcher(Limits::default());
        let req = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: x OPTIONS\r\n\r\n";
        let out = d.handle(req, src(), 0, 0).unwrap().to_vec();
        let m = sip::parse(&out).unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 400,
                reason: "Bad CSeq Header"
            }
        );
        assert_eq!(d.counters.malformed_answered, 1);
    }

    #[test]
    fn garbage_and_oversize_are_counted_drops_and_ping_gets_pong() {
        let mut d = dispatcher(Limits {
            max_datagram: 512,
            max_headers: 16,
        });
        assert!(d.handle(b"\x00\x01garbage", src(), 0, 0).is_none());
        assert!(d.handle(&[b'A'; 600], src(), 0, 0).is_none());
        assert_eq!(d.handle(b"\r\n\r\n", src(), 0, 0), Some(&b"\r\n"[..]));
        assert_eq!(d.counters.malformed_dropped, 1);
        assert_eq!(d.counters.oversize_dropped, 1);
        assert_eq!(d.counters.keepalive_pings, 1);
    }

    #[test]
    fn known_methods_get_405_extensions_501_and_zero_max_forwards_483() {
        let mut d = dispatcher(Limits::default());
        let req = b"INFO sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 INFO\r\nMax-Forwards: 5\r\n\r\n";
        assert_eq!(
            sip::parse(d.handle(req, src(), 0, 0).unwrap())
                .unwrap()
                .status(),
            Some(405)
        );
        let ext = String::from_utf8_lossy(req).replace("INFO", "WAKEUP");
        let out = d.handle(ext.as_bytes(), src(), 0, 0).unwrap().to_vec();
        let m = sip::parse(&out).unwrap();
        assert_eq!(m.status(), Some(501));
        assert_eq!(m.header(HeaderName::Allow), Some(ALLOW));
        let ack = String::from_utf8_lossy(req)
            .replace("INFO sip", "ACK sip")
            .replace("1 INFO", "1 ACK")
            .replace("Max-Forwards: 5", "Max-Forwards: 0");
        assert!(
            d.handle(ack.as_bytes(), src(), 0, 0).is_none(),
            "an ACK is never answered"
        );
        let zero = String::from_utf8_lossy(req).replace("Max-Forwards: 5", "Max-Forwards: 0");
        assert_eq!(
            sip::parse(d.handle(zero.as_bytes(), src(), 0, 0).unwrap())
                .unwrap()
                .status(),
            Some(483)
        );
    }
}
