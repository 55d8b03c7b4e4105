//! The endpoint through its own API: datagrams in, transmits out.

use super::*;
use crate::metrics::CoreMetric;
use crate::nat::{self, Keepalive};
use crate::registrar::Registrar;
use crate::sip::{writer, HeaderName, Method, StartLine};

/// Feeds one datagram from `src()` and returns the answer, if any.
fn answer(d: &mut Endpoint, bytes: &[u8], now: u64) -> Option<Vec<u8>> {
    d.handle_datagram(now, 0, src(), bytes);
    let out = d.poll_transmit().map(|t| {
        assert_eq!((t.to, t.local), (src(), 0));
        t.bytes.to_vec()
    });
    assert!(d.poll_transmit().is_none(), "one answer at most");
    out
}

/// Runs the timers due at `now`; returns what they sent.
fn tick(d: &mut Endpoint, now: u64) -> Vec<(Vec<u8>, SocketAddr, u8)> {
    d.handle_timeout(now);
    let mut sent = Vec::new();
    while let Some(t) = d.poll_transmit() {
        sent.push((t.bytes.to_vec(), t.to, t.local));
    }
    sent
}

fn src() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn dispatcher(limits: Limits) -> Endpoint {
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
    Endpoint::new(limits, 7, reg, ka, notify, addrs)
}

#[test]
fn options_gets_200_with_capabilities() {
    let mut d = dispatcher(Limits::default());
    let req = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1;rport\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
    let out = answer(&mut d, req, 0).unwrap();
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
    let out = answer(&mut d, &req, 0).unwrap();
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
        sip::parse(&answer(&mut d, reg, 0).unwrap())
            .unwrap()
            .status(),
        Some(200)
    );
    assert!(tick(&mut d, 24_999).is_empty());
    assert_eq!(d.poll_timeout(), Some(25_000));
    let mut sent = tick(&mut d, 25_000);
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
    assert!(answer(&mut d, &resp, 25_010).is_none());
    assert_eq!(d.keepalive.stats.answered, 1);
    assert!(
        tick(&mut d, 27_000).is_empty(),
        "no retransmission of an answered prompt"
    );
}

#[test]
fn bad_header_gets_400_with_reason() {
    let mut d = dispatcher(Limits::default());
    let req =
        b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: c1\r\nCSeq: x OPTIONS\r\n\r\n";
    let out = answer(&mut d, req, 0).unwrap();
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
    assert!(answer(&mut d, b"\x00\x01garbage", 0).is_none());
    assert!(answer(&mut d, &[b'A'; 600], 0).is_none());
    assert_eq!(answer(&mut d, b"\r\n\r\n", 0), Some(b"\r\n".to_vec()));
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
        sip::parse(&answer(&mut d, req, 0).unwrap())
            .unwrap()
            .status(),
        Some(405)
    );
    let ext = String::from_utf8_lossy(req).replace("INFO", "WAKEUP");
    let out = answer(&mut d, ext.as_bytes(), 0).unwrap();
    let m = sip::parse(&out).unwrap();
    assert_eq!(m.status(), Some(501));
    assert_eq!(m.header(HeaderName::Allow), Some(ALLOW));
    let ack = String::from_utf8_lossy(req)
        .replace("INFO sip", "ACK sip")
        .replace("1 INFO", "1 ACK")
        .replace("Max-Forwards: 5", "Max-Forwards: 0");
    assert!(
        answer(&mut d, ack.as_bytes(), 0).is_none(),
        "an ACK is never answered"
    );
    let zero = String::from_utf8_lossy(req).replace("Max-Forwards: 5", "Max-Forwards: 0");
    assert_eq!(
        sip::parse(&answer(&mut d, zero.as_bytes(), 0).unwrap())
            .unwrap()
            .status(),
        Some(483)
    );
}

#[test]
fn an_answer_over_max_datagram_is_dropped_and_counted_not_lost_silently() {
    let mut d = dispatcher(Limits {
        max_datagram: 1024,
        max_headers: 64,
    });
    // Each request fits; the second one's 200 lists both bindings, and does not.
    let reg = |n: u32, fill: char| {
        let long: String = std::iter::repeat_n(fill, 500).collect();
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKbig{n};rport\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: big1\r\nCSeq: {n} REGISTER\r\n\
Contact: <sip:a@10.0.0.{n}:5060;p={long}>\r\nMax-Forwards: 70\r\n\r\n"
        )
    };
    let first = reg(1, 'x');
    assert!(answer(&mut d, first.as_bytes(), 0).is_some());
    let second = reg(2, 'y');
    assert!(second.len() < 1024);
    assert_eq!(answer(&mut d, second.as_bytes(), 0), None);
    assert_eq!(d.metric(CoreMetric::OversizeSendsDropped), 1);
    assert_eq!(
        d.metric(CoreMetric::Registered),
        2,
        "the binding itself was made"
    );
}

#[test]
fn a_binding_follows_its_nat_mapping_and_leaves_its_path_when_it_goes() {
    // The registrar names a binding's path by its index in the path table:
    // a refresh over a new mapping moves it, an unregister frees the path.
    let mut d = dispatcher(Limits::default());
    let register = |cseq: u32, expires: u32| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKm{cseq};rport\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:a@10.0.0.2:5060>;expires={expires}\r\nMax-Forwards: 70\r\n\r\n"
        )
        .into_bytes()
    };
    let a: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let b: SocketAddr = "203.0.113.7:41000".parse().unwrap();
    let (pa, pb) = (nat::PathKey::new(0, a), nat::PathKey::new(0, b));
    d.handle_datagram(0, 0, a, &register(1, 600));
    while d.poll_transmit().is_some() {}
    assert_eq!(d.keepalive.bindings_on(&pa).len(), 1);
    d.handle_datagram(1_000, 0, a, &register(2, 600));
    while d.poll_transmit().is_some() {}
    assert_eq!((d.paths(), d.keepalive.bindings_on(&pa).len()), (1, 1));
    d.handle_datagram(2_000, 0, b, &register(3, 600));
    while d.poll_transmit().is_some() {}
    assert_eq!(d.paths(), 1, "the old mapping's path is gone");
    assert_eq!(d.keepalive.state(&pa), nat::PathState::Idle);
    assert_eq!(d.keepalive.bindings_on(&pb).len(), 1);
    d.handle_datagram(3_000, 0, b, &register(4, 0));
    while d.poll_transmit().is_some() {}
    assert_eq!(d.paths(), 0);
    // And one that expires leaves too.
    d.handle_datagram(4_000, 0, a, &register(5, 60));
    while d.poll_transmit().is_some() {}
    assert_eq!(d.paths(), 1);
    tick(&mut d, 70_000);
    assert_eq!(d.paths(), 0);
}
