//! The guard on a fake clock: what a legitimate device sends passes, a
//! flooding source is limited, repeated failures block.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;

const REGISTER: &[u8] = b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP x\r\n\r\n";
const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n";
const OPTIONS: &[u8] = b"OPTIONS sip:example.com SIP/2.0\r\n\r\n";

fn settings() -> Settings {
    LimitsSection {
        exempt: vec!["10.255.0.0/16".into()],
        ..LimitsSection::default()
    }
    .settings()
    .as_ref()
    .clone()
}

fn guard(s: Settings) -> Guard {
    Guard::new(Arc::new(s), 42)
}

fn src(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn classify_reads_only_the_method() {
    assert_eq!(classify(REGISTER), Some(Kind::Register));
    assert_eq!(classify(INVITE), Some(Kind::Invite));
    assert_eq!(classify(OPTIONS), Some(Kind::Other));
    assert_eq!(
        classify(b"\r\nSUBSCRIBE sip:x SIP/2.0\r\n"),
        Some(Kind::Other)
    );
    for never in [
        &b"SIP/2.0 200 OK\r\n"[..],
        b"ACK sip:x SIP/2.0\r\n",
        b"BYE sip:x SIP/2.0\r\n",
        b"CANCEL sip:x SIP/2.0\r\n",
        b"\r\n\r\n",
        b"",
        b"\x00\x01\x00\x00stun",
        b"register sip:x SIP/2.0",
        b"REGISTERREGISTERREGISTERREGISTERREGISTER sip:x",
    ] {
        assert_eq!(classify(never), None, "{never:?}");
    }
}

#[test]
fn a_flooding_source_is_limited_and_answered_once_a_second() {
    let mut g = guard(settings());
    let flood = src("192.0.2.7:5060");
    let mut passed = 0;
    let mut rejected = 0;
    // 1,000 REGISTERs in one second (20/s, burst 100 by default).
    for i in 0..1_000u64 {
        match g.admit(REGISTER, flood, 10_000 + i) {
            Admit::Pass => passed += 1,
            Admit::Reject { retry_after } => {
                assert!(retry_after >= 1);
                rejected += 1;
            }
            Admit::Drop => {}
        }
    }
    // The burst, then 20/s refilled over the 999 ms.
    assert!((100..=120).contains(&passed), "{passed}");
    assert_eq!(rejected, 1, "one 503 in the second");
    assert_eq!(g.stats.limited[0], 1_000 - passed);
    assert_eq!(g.stats.answered + g.stats.dropped, g.stats.limited[0]);
    // Its INVITE bucket is its own.
    assert_eq!(g.admit(INVITE, flood, 11_000), Admit::Pass);
    // A second later it is answered again.
    assert!(matches!(
        g.admit(REGISTER, flood, 11_001),
        Admit::Pass | Admit::Reject { .. }
    ));
}

#[test]
fn action_drop_never_answers() {
    let mut s = settings();
    s.reject = false;
    let mut g = guard(s);
    let flood = src("192.0.2.7:5060");
    for i in 0..500 {
        assert_ne!(
            std::mem::discriminant(&g.admit(OPTIONS, flood, i)),
            std::mem::discriminant(&Admit::Reject { retry_after: 1 })
        );
    }
    assert_eq!(g.stats.answered, 0);
    assert_eq!(g.stats.dropped, g.stats.limited[2]);
    assert!(g.stats.dropped > 0);
}

/// What a legitimate device behind a carrier NAT sends: 2,000 devices on
/// one public address, each refreshing every 10 minutes through a digest
/// challenge (two REGISTERs), with retransmissions, keepalive OPTIONS
/// every 30 s and a call's INVITE/ACK/BYE now and then. Nothing is limited.
#[test]
fn a_busy_carrier_nat_stays_within_the_defaults() {
    let mut g = guard(settings());
    let nat = src("198.51.100.1:1");
    let mut now = 0u64;
    let mut kinds = [0u64; 3];
    // 600 s: REGISTER every 150 ms on average (2,000 × 2 per 600 s), a
    // retransmission burst of 10 at minute 5, OPTIONS every 15 ms, a few
    // INVITEs a second.
    while now < 600_000 {
        if now.is_multiple_of(150) {
            assert_eq!(g.admit(REGISTER, nat, now), Admit::Pass, "at {now}");
            kinds[0] += 1;
        }
        if now.is_multiple_of(15) {
            assert_eq!(g.admit(OPTIONS, nat, now), Admit::Pass, "at {now}");
            kinds[2] += 1;
        }
        if now.is_multiple_of(400) {
            assert_eq!(g.admit(INVITE, nat, now), Admit::Pass);
            assert_eq!(g.admit(b"ACK sip:x SIP/2.0\r\n", nat, now), Admit::Pass);
            assert_eq!(g.admit(b"BYE sip:x SIP/2.0\r\n", nat, now), Admit::Pass);
            kinds[1] += 1;
        }
        if now == 300_000 {
            for _ in 0..10 {
                assert_eq!(g.admit(REGISTER, nat, now), Admit::Pass);
            }
        }
        now += 1;
    }
    assert_eq!(g.stats.limited, [0; 3]);
    assert!(kinds.iter().all(|&k| k > 1_000), "{kinds:?}");
}

#[test]
fn exempt_and_unlimited_sources_pass() {
    let mut g = guard(settings());
    for i in 0..10_000 {
        assert_eq!(g.admit(REGISTER, src("10.255.3.4:5060"), i), Admit::Pass);
    }
    let mut off = guard(Settings::off());
    for i in 0..10_000 {
        assert_eq!(off.admit(REGISTER, src("192.0.2.1:5060"), i), Admit::Pass);
    }
    assert_eq!(g.metric(crate::metrics::CoreMetric::LimitSources), 0);
}

#[test]
fn spoofed_sources_fill_the_table_but_never_grow_it() {
    let mut g = guard(settings());
    let cap = g.table.capacity();
    for i in 0..(4 * cap as u32) {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        g.admit(INVITE, SocketAddr::from((ip, 5060)), u64::from(i));
    }
    assert_eq!(g.table.len(), cap);
    assert_eq!(g.table.evictions, 3 * cap as u64);
    assert_eq!(
        g.stats.limited, [0; 3],
        "one request each is within any burst"
    );
}

#[test]
fn repeated_failures_block_for_block_s_and_are_listed_and_lifted() {
    let mut s = settings();
    s.auth_failures = 3;
    s.auth_window_ms = 60_000;
    s.block_ms = 600_000;
    let mut g = guard(s);
    let bad = src("203.0.113.9:5060");
    assert!(g.auth_failed(bad.ip(), 0).is_none());
    // Failures outside the window start the count again.
    assert!(g.auth_failed(bad.ip(), 1_000).is_none());
    assert!(g.auth_failed(bad.ip(), 70_000).is_none());
    assert!(g.auth_failed(bad.ip(), 71_000).is_none());
    let block = g
        .auth_failed(bad.ip(), 72_000)
        .expect("third in the window");
    assert_eq!(block.until_ms, 672_000);
    assert_eq!(g.metric(crate::metrics::CoreMetric::BlocksStarted), 1);
    // Everything from it is dropped now, responses and pings too.
    assert_eq!(g.admit(REGISTER, bad, 80_000), Admit::Drop);
    assert_eq!(g.admit(b"SIP/2.0 200 OK\r\n", bad, 80_001), Admit::Drop);
    assert_eq!(
        g.admit(b"\r\n\r\n", src("203.0.113.9:1"), 80_002),
        Admit::Drop
    );
    assert_eq!(
        g.admit(REGISTER, src("203.0.113.10:5060"), 80_000),
        Admit::Pass
    );
    let list = g.blocks(80_000, 3);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].source, "203.0.113.9");
    assert_eq!(
        (list[0].core, list[0].dropped, list[0].remaining_s),
        (3, 3, 592)
    );
    assert_eq!(g.metric(crate::metrics::CoreMetric::BlockedSources), 1);
    // It ends by itself ...
    assert_eq!(g.admit(REGISTER, bad, 672_000), Admit::Pass);
    assert!(g.blocks(672_000, 3).is_empty());
    // ... or is lifted.
    for t in 0..3 {
        g.auth_failed(bad.ip(), 700_000 + t);
    }
    assert_eq!(g.admit(REGISTER, bad, 700_010), Admit::Drop);
    assert!(g.unblock(bad.ip()));
    assert!(!g.unblock(bad.ip()));
    assert_eq!(g.admit(REGISTER, bad, 700_011), Admit::Pass);
    assert_eq!(g.stats.auth_failures, 8);
}

#[test]
fn exempt_sources_and_block_s_zero_never_block() {
    let mut g = guard(settings());
    for t in 0..100 {
        assert!(g.auth_failed("10.255.0.1".parse().unwrap(), t).is_none());
    }
    let mut s = settings();
    s.block_ms = 0;
    let mut g = guard(s);
    for t in 0..100 {
        assert!(g.auth_failed("192.0.2.1".parse().unwrap(), t).is_none());
    }
}

#[test]
fn bindings_per_source_are_counted_per_address() {
    let mut s = settings();
    s.max_bindings = 3;
    let mut g = guard(s);
    let nat: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(g.binding_room(nat), 3);
    g.binding_changed(nat, true);
    g.binding_changed(nat, true);
    assert_eq!(g.binding_room(nat), 1);
    assert_eq!(g.binding_room("198.51.100.2".parse().unwrap()), 3);
    g.binding_changed(nat, true);
    g.binding_changed(nat, true);
    assert_eq!(g.binding_room(nat), 0, "never below zero");
    for _ in 0..4 {
        g.binding_changed(nat, false);
    }
    assert_eq!(g.binding_room(nat), 3);
    assert!(
        g.bindings.is_empty(),
        "a source with no binding costs nothing"
    );
    g.binding_changed(nat, false);
    assert_eq!(
        g.binding_room("10.255.0.9".parse().unwrap()),
        u32::MAX,
        "exempt"
    );
}

#[test]
fn a_reload_changes_rates_at_once_and_keeps_blocks() {
    let mut g = guard(settings());
    let s = src("192.0.2.1:5060");
    for t in 0..10 {
        g.auth_failed(s.ip(), t);
    }
    assert_eq!(g.admit(REGISTER, s, 20), Admit::Drop, "blocked");
    let mut tight = settings();
    tight.rates[0] = bucket::Rate { per_s: 1, burst: 1 };
    g.reconfigure(Arc::new(tight), 5);
    assert_eq!(g.admit(REGISTER, s, 30), Admit::Drop, "still blocked");
    let other = src("192.0.2.2:5060");
    assert_eq!(g.admit(REGISTER, other, 40), Admit::Pass);
    assert!(matches!(g.admit(REGISTER, other, 41), Admit::Reject { .. }));
}
