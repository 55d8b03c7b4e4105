//! The front door of a core: what one datagram does (requests tether
//! answers itself, responses to its own requests, malformed input).

use std::net::SocketAddr;

use super::Endpoint;
use crate::nat::{self, PathKey};
use crate::registrar::{Arrival, SUPPORTED};
use crate::sip::{self, writer, HeaderName, Method, ParseError, StartLine};

/// Methods tether accepts today (the proxy will add INVITE, BYE, CANCEL …).
pub const ALLOW: &str = "REGISTER, OPTIONS, ACK, SUBSCRIBE";

impl Endpoint {
    /// Handles one datagram from `src`, received on local address number
    /// `local`, at `now_ms` on the runtime clock; `true` when `self.out`
    /// holds an answer for `src`.
    pub(super) fn handle(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        local: u8,
        now_ms: u64,
    ) -> bool {
        self.counters.received += 1;
        // Any packet from a path refreshes its NAT mapping.
        let path = PathKey::new(local, src);
        let path_index = self.keepalive.touch(&path, now_ms);
        self.revive_touched_paths();
        // RFC 5626 clients keep their flow alive with STUN Binding requests.
        if nat::stun::is_stun(datagram) {
            self.counters.stun_requests += 1;
            return nat::stun::binding_response(datagram, src, &mut self.out);
        }
        let msg = match sip::parse_with(datagram, &self.limits) {
            Ok(m) => m,
            Err(e) => return self.reject(datagram, src, e),
        };
        if msg.status().is_some() {
            self.counters.responses_received += 1;
            // Answers to fan-out requests and to keepalive prompts are told
            // apart by the top Via's branch alone: parse it once for both.
            let Some(branch) = msg.top_via().ok().and_then(|v| v.branch()) else {
                return false;
            };
            if !self
                .notify
                .on_response(&msg, branch, now_ms, &mut self.timers)
            {
                self.on_prompt_answer(branch, path, path_index, now_ms);
            }
            return false;
        }
        let checked = match msg.validate() {
            Ok(c) => c,
            Err(e) => return self.answer_invalid(&msg, src, e),
        };
        let StartLine::Request { method, .. } = msg.start else {
            return false;
        };
        // OPTIONS to us is answered whatever its Max-Forwards; an ACK never is.
        if checked.max_forwards == Some(0) && !matches!(method, Method::Options | Method::Ack) {
            return self.respond(&msg, src, 483, "Too Many Hops");
        }
        match method {
            // ACK to a final response we sent is absorbed (RFC 3261 §17.2.1).
            Method::Ack => false,
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
                true
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
                true
            }
            // No INVITE transactions exist yet, so nothing can be cancelled.
            Method::Cancel => self.respond(&msg, src, 481, "Call/Transaction Does Not Exist"),
            // Methods SIP defines but tether does not take here yet: 405 with Allow.
            Method::Subscribe => {
                let tag = self.tags.tag();
                self.notify.subscribe(
                    &msg,
                    &checked,
                    src,
                    local,
                    now_ms,
                    &tag,
                    &mut self.out,
                    &mut self.timers,
                );
                true
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

    fn respond(
        &mut self,
        msg: &sip::Message<'_>,
        src: SocketAddr,
        code: u16,
        reason: &str,
    ) -> bool {
        let tag = self.tags.tag();
        let mut w = writer::response_to(&mut self.out, msg, code, reason, Some(&tag), Some(src));
        if code == 501 || code == 405 {
            w.header(HeaderName::Allow, ALLOW);
        }
        w.finish(None);
        true
    }

    /// A datagram that did not even split into start line and headers.
    fn reject(&mut self, datagram: &[u8], src: SocketAddr, e: ParseError) -> bool {
        match e {
            ParseError::Empty => {
                // RFC 5626 §4.4.1: a CRLFCRLF ping is answered with CRLF (pong).
                self.counters.keepalive_pings += 1;
                if datagram.len() >= 4 {
                    self.out.clear();
                    self.out.extend_from_slice(b"\r\n");
                    return true;
                }
                false
            }
            ParseError::TooLarge { .. } => {
                self.counters.oversize_dropped += 1;
                false
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
                    true
                } else {
                    self.counters.malformed_dropped += 1;
                    false
                }
            }
        }
    }

    /// A message that split cleanly but breaks a header grammar: requests
    /// whose top Via parses get `400 <reason>`; the rest are dropped.
    fn answer_invalid(&mut self, msg: &sip::Message<'_>, src: SocketAddr, e: ParseError) -> bool {
        let answerable =
            msg.is_request() && msg.method() != Some(Method::Ack) && msg.top_via().is_ok();
        if !answerable {
            self.counters.malformed_dropped += 1;
            return false;
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
