//! The sans-IO front door: one datagram and its source in, at most one
//! datagram to send back out. The runtime owns sockets and clocks; this owns
//! the protocol decisions, so they are testable without a network.

use std::net::SocketAddr;

use crate::registrar::{Arrival, Registrar, SUPPORTED};
use crate::sip::{self, writer, HeaderName, Limits, Method, ParseError, StartLine};

/// Methods tether accepts today (the proxy will add INVITE, BYE, CANCEL …).
pub const ALLOW: &str = "REGISTER, OPTIONS, ACK";

/// Counters a worker keeps without atomics; the metrics layer reads copies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub oversize_dropped: u64,
    pub malformed_answered: u64,
    pub malformed_dropped: u64,
    pub keepalive_pings: u64,
    pub responses_received: u64,
}

/// Per-worker protocol state: parser limits, a reusable output buffer, counters.
pub struct Dispatcher {
    limits: Limits,
    out: Vec<u8>,
    tags: sip::ids::IdGen,
    pub registrar: Registrar,
    pub counters: Counters,
}

impl Dispatcher {
    pub fn new(limits: Limits, seed: u64, registrar: Registrar) -> Dispatcher {
        Dispatcher {
            limits,
            out: Vec::with_capacity(limits.max_datagram),
            tags: sip::ids::IdGen::new(seed),
            registrar,
            counters: Counters::default(),
        }
    }

    /// Runs what is due at `now_secs` (binding expiry).
    pub fn tick(&mut self, now_secs: u32) {
        self.registrar.expire(now_secs);
    }

    /// Handles one datagram from `src`, received on local address number
    /// `local`, at `now_secs` on the runtime clock; returns the bytes to send
    /// back to `src`, if any.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        src: SocketAddr,
        local: u8,
        now_secs: u32,
    ) -> Option<&[u8]> {
        self.counters.received += 1;
        let msg = match sip::parse_with(datagram, &self.limits) {
            Ok(m) => m,
            Err(e) => return self.reject(datagram, src, e),
        };
        let checked = match msg.validate() {
            Ok(c) => c,
            Err(e) => return self.answer_invalid(&msg, src, e),
        };
        let method = match msg.start {
            StartLine::Response { .. } => {
                self.counters.responses_received += 1;
                return None;
            }
            StartLine::Request { method, .. } => method,
        };
        if checked.max_forwards == Some(0) && method != Method::Options {
            return self.respond(&msg, src, 483, "Too Many Hops");
        }
        match method {
            // ACK to a final response we sent is absorbed (RFC 3261 §17.2.1).
            Method::Ack => None,
            Method::Register => {
                let at = Arrival {
                    source: src,
                    local,
                    now_secs,
                };
                self.registrar
                    .register(&msg, &checked, at, &mut self.out, &mut self.tags);
                Some(&self.out)
            }
            Method::Options => {
                let tag = self.tags.tag();
                let mut w =
                    writer::response_to(&mut self.out, &msg, 200, "OK", Some(&tag), Some(src));
                w.header(HeaderName::Allow, ALLOW)
                    .header(HeaderName::Accept, "application/sdp")
                    .header(HeaderName::Supported, SUPPORTED);
                w.finish(None);
                Some(&self.out)
            }
            // No INVITE transactions exist yet, so nothing can be cancelled.
            Method::Cancel => self.respond(&msg, src, 481, "Call/Transaction Does Not Exist"),
            // Methods SIP defines but tether does not take here yet: 405 with Allow.
            Method::Invite
            | Method::Bye
            | Method::Subscribe
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
        let reg = Registrar::new(
            0,
            std::sync::Arc::new(crate::registrar::Policy::default()),
            std::sync::Arc::new(crate::registrar::Directory::new()),
            None,
        );
        Dispatcher::new(limits, 7, reg)
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
        let zero = String::from_utf8_lossy(req).replace("Max-Forwards: 5", "Max-Forwards: 0");
        assert_eq!(
            sip::parse(d.handle(zero.as_bytes(), src(), 0, 0).unwrap())
                .unwrap()
                .status(),
            Some(483)
        );
    }
}
