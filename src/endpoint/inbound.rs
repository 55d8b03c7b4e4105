//! The front door of a core: what one datagram does (requests tether
//! answers itself, responses to its own requests, malformed input).

use std::net::SocketAddr;

use super::Endpoint;
use crate::nat::{self, PathKey};
use crate::registrar::SUPPORTED;
use crate::sip::{self, writer, HeaderName, Method, ParseError, StartLine};

/// Methods tether takes: REGISTER, OPTIONS and the contact-me SUBSCRIBE it
/// answers itself; the rest it proxies.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, MESSAGE, REFER, INFO, UPDATE, PRACK";

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
        let path = PathKey::new(local, src);
        // RFC 5626 clients keep their flow alive with STUN Binding requests.
        if nat::stun::is_stun(datagram) {
            self.keepalive.touch(&path, now_ms);
            self.revive_touched_paths();
            self.counters.stun_requests += 1;
            return nat::stun::binding_response(datagram, src, &mut self.out);
        }
        let parsed = sip::parse_with(datagram, &self.limits);
        // Answers to fan-out requests and to keepalive prompts are told
        // apart by the top Via's branch alone: parse it once for both.
        let branch = match &parsed {
            Ok(m) if m.status().is_some() => m.top_via().ok().and_then(|v| v.branch()),
            _ => None,
        };
        // Any packet from a path refreshes its NAT mapping. A prompt's
        // answer names its path's slot in the branch, sparing the probe.
        let hint = branch.and_then(nat::prompt_id).map(nat::prompt_path);
        let path_index = self.keepalive.touch_hinted(&path, hint, now_ms);
        self.revive_touched_paths();
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => return self.reject(datagram, src, e),
        };
        if msg.status().is_some() {
            self.counters.responses_received += 1;
            let Some(branch) = branch else {
                return false;
            };
            let mut cx = proxy_ctx!(self, now_ms);
            if self
                .proxy
                .on_response(&msg, branch, datagram, local, src, &mut cx)
            {
                return false;
            }
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
        let proxied = match method {
            Method::Register => false,
            // OPTIONS is ours, unless it is a held call's bridge call-back.
            Method::Options => checked
                .request_uri
                .and_then(|u| u.user)
                .is_some_and(|u| self.proxy.is_bridge_user(u)),
            // The contact-me opt-in is ours; other event packages are routed.
            Method::Subscribe => !self.notify.is_contact_me(&msg),
            _ => true,
        };
        if proxied {
            let mut cx = proxy_ctx!(self, now_ms);
            self.proxy
                .on_request(&msg, &checked, datagram, path, &mut cx);
            return false;
        }
        // Requests tether answers itself: the proxy's checks (Proxy-Require,
        // URI scheme) and Require, which only the REGISTER path read before.
        if let Some((code, reason, unsupported)) = crate::proxy::check(&msg, &checked) {
            return self.respond_unsupported(&msg, src, code, reason, unsupported.as_deref());
        }
        if method == Method::Options {
            let unknown: Vec<&str> = checked
                .require
                .iter()
                .copied()
                .filter(|t| !crate::registrar::is_supported(t))
                .collect();
            if !unknown.is_empty() {
                return self.respond_unsupported(
                    &msg,
                    src,
                    420,
                    "Bad Extension",
                    Some(&unknown.join(", ")),
                );
            }
        }
        match method {
            Method::Register => {
                let answered = self.on_register(&msg, &checked, datagram, src, local, now_ms);
                if answered && self.out.starts_with(b"SIP/2.0 200") {
                    self.wake_held(&checked);
                }
                answered
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
            // Every other method went to the proxy above.
            _ => false,
        }
    }

    fn respond_unsupported(
        &mut self,
        msg: &sip::Message<'_>,
        src: SocketAddr,
        code: u16,
        reason: &str,
        unsupported: Option<&str>,
    ) -> bool {
        let tag = self.tags.tag();
        let mut w = writer::response_to(&mut self.out, msg, code, reason, Some(&tag), Some(src));
        if let Some(u) = unsupported {
            w.header(HeaderName::Unsupported, u);
        }
        w.finish(None);
        true
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
