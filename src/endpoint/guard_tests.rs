//! The limits through the endpoint: a flooding source gets `503` with
//! `Retry-After` before any parsing, refused tokens block their source,
//! and the bindings-per-source cap refuses new bindings, never refreshes.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::limits::{Guard, LimitsSection};
use crate::nat;
use crate::registrar::token::TokenKeys;
use crate::sip::StartLine;

fn endpoint(limits: LimitsSection) -> Endpoint {
    let dir = Arc::new(crate::registrar::Directory::new());
    let reg = Registrar::new(0, Arc::new(Default::default()), dir.clone(), None)
        .with_tokens(Some(Arc::new(TokenKeys::new(["k".repeat(32)]))));
    let ka = Keepalive::new(nat::KeepaliveConfig::default(), 7);
    let addrs = vec!["192.0.2.1:5060".parse().unwrap()];
    let notify =
        crate::notify::Engine::new(Arc::new(Default::default()), dir, addrs.clone(), 1000, 7);
    Endpoint::new(Limits::default(), 7, reg, ka, notify, addrs)
        .with_limits(Guard::new(limits.settings(), 11))
}

fn register(user: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa{user}{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f\r\nTo: <sip:{user}@example.com>\r\n\
Call-ID: {user}-reg\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:{user}@10.0.0.2:5060>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Status and Retry-After of what one datagram from `from` produced.
fn send(d: &mut Endpoint, from: SocketAddr, bytes: &[u8], now: u64) -> Option<(u16, Option<u32>)> {
    d.handle_datagram(now, 0, from, bytes);
    let t = d.poll_transmit()?;
    assert_eq!(t.to, from);
    let m = sip::parse(t.bytes).unwrap();
    let retry = m
        .header_by_name("Retry-After")
        .and_then(|v| v.trim().parse().ok());
    Some((m.status().unwrap(), retry))
}

fn limits() -> LimitsSection {
    LimitsSection {
        register_rate: 2,
        register_burst: 3,
        exempt: vec![],
        ..LimitsSection::default()
    }
}

#[test]
fn a_flooding_source_gets_503_once_a_second_and_others_go_on() {
    let mut d = endpoint(limits());
    let flood: SocketAddr = "198.51.100.9:5060".parse().unwrap();
    let other: SocketAddr = "198.51.100.10:5060".parse().unwrap();
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(send(
            &mut d,
            flood,
            &register(&format!("f{i}"), 1, ""),
            1_000,
        ));
    }
    let ok = statuses.iter().filter(|s| **s == Some((200, None))).count();
    assert_eq!(ok, 3, "the burst: {statuses:?}");
    assert_eq!(statuses[3], Some((503, Some(1))), "{statuses:?}");
    assert!(
        statuses[4..].iter().all(Option::is_none),
        "then silence within the second"
    );
    assert_eq!(
        send(&mut d, other, &register("o", 1, ""), 1_000),
        Some((200, None))
    );
    // A retransmission or refresh later finds a token again.
    assert_eq!(
        send(&mut d, flood, &register("f0", 2, ""), 1_500),
        Some((200, None))
    );
    assert_eq!(d.metric(CoreMetric::LimitedRegister), 7);
    assert_eq!(d.metric(CoreMetric::LimitAnswered), 1);
    assert_eq!(d.metric(CoreMetric::LimitDropped), 6);
    assert_eq!(
        d.metric(CoreMetric::Received),
        12,
        "limited datagrams are still received"
    );
    // ACK and BYE are never limited: the proxy sees them.
    let bye =
        b"BYE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKb\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:x@example.com>;tag=2\r\n\
Call-ID: bye1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    for _ in 0..5 {
        assert_eq!(send(&mut d, flood, bye, 1_600).map(|s| s.0), Some(481));
    }
}

#[test]
fn refused_tokens_block_the_source_once_and_the_api_lifts_it() {
    let mut d = endpoint(LimitsSection {
        auth_failures: 3,
        exempt: vec![],
        ..LimitsSection::default()
    });
    let bad: SocketAddr = "203.0.113.5:5060".parse().unwrap();
    let bearer = "Authorization: Bearer not.a.token\r\n";
    for i in 0..3 {
        assert_eq!(
            send(&mut d, bad, &register("v", i + 1, bearer), 10).map(|s| s.0),
            Some(403)
        );
    }
    assert_eq!(d.metric(CoreMetric::BlocksStarted), 1);
    assert_eq!(d.metric(CoreMetric::AuthFailures), 3);
    // Blocked: even a good-looking REGISTER gets nothing now.
    assert_eq!(send(&mut d, bad, &register("w", 1, ""), 20), None);
    assert_eq!(d.metric(CoreMetric::BlockedDropped), 1);
    let (tx, rx) = crossbeam_channel::bounded(1);
    d.handle_command(
        30,
        Command::Blocks {
            lift: None,
            reply: tx.clone(),
        },
    );
    let Some(Event::Blocks(reply, list)) = d.poll_event() else {
        panic!("the blocks come back as an event");
    };
    reply.send(list).unwrap();
    let list = rx.recv().unwrap();
    assert_eq!((list.len(), list[0].source.as_str()), (1, "203.0.113.5"));
    d.handle_command(
        40,
        Command::Blocks {
            lift: Some(bad.ip()),
            reply: tx,
        },
    );
    assert!(matches!(d.poll_event(), Some(Event::Blocks(_, l)) if l.len() == 1));
    assert_eq!(
        send(&mut d, bad, &register("w", 2, ""), 50).map(|s| s.0),
        Some(200)
    );
    // A challenge or a good registration is no failure.
    assert_eq!(d.metric(CoreMetric::AuthFailures), 3);
}

#[test]
fn bindings_per_source_refuse_new_bindings_but_never_a_refresh() {
    let mut d = endpoint(LimitsSection {
        max_bindings_per_source: 2,
        exempt: vec![],
        ..LimitsSection::default()
    });
    let nat: SocketAddr = "198.51.100.1:4000".parse().unwrap();
    let nat2: SocketAddr = "198.51.100.1:4001".parse().unwrap();
    assert_eq!(
        send(&mut d, nat, &register("a", 1, ""), 0).map(|s| s.0),
        Some(200)
    );
    assert_eq!(
        send(&mut d, nat2, &register("b", 1, ""), 0).map(|s| s.0),
        Some(200)
    );
    d.handle_datagram(0, 0, nat, &register("c", 1, ""));
    let t = d.poll_transmit().unwrap();
    let m = sip::parse(t.bytes).unwrap();
    assert_eq!(m.status(), Some(403));
    let StartLine::Response { reason, .. } = m.start else {
        panic!("a response")
    };
    assert_eq!(reason, "Too Many Registrations From This Address");
    assert!(m
        .header_by_name("Warning")
        .unwrap()
        .contains("max_bindings_per_source"));
    assert_eq!(d.metric(CoreMetric::BindingsPerSourceRefused), 1);
    // Refreshes of the two go on; another address is not affected.
    assert_eq!(
        send(&mut d, nat, &register("a", 2, ""), 100).map(|s| s.0),
        Some(200)
    );
    assert_eq!(
        send(&mut d, nat2, &register("b", 2, ""), 100).map(|s| s.0),
        Some(200)
    );
    let far: SocketAddr = "198.51.100.2:4000".parse().unwrap();
    assert_eq!(
        send(&mut d, far, &register("c", 2, ""), 100).map(|s| s.0),
        Some(200)
    );
    // One leaves: room for one more.
    let bye = register("a", 3, "Expires: 0\r\n");
    assert_eq!(send(&mut d, nat, &bye, 200).map(|s| s.0), Some(200));
    assert_eq!(
        send(&mut d, nat, &register("d", 1, ""), 200).map(|s| s.0),
        Some(200)
    );
}
