//! Floods and abuse over loopback, at a small scale: flooding sources are
//! limited while legitimate endpoints refresh (every refresh `200`), the
//! counters on both sides agree, and refused tokens block their source
//! until the API lifts the block.

mod common;

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use tether::loadgen::{self, flood::FloodPlan, LoadConfig, Scenario};
use tether::metrics::CoreMetric;
use tether::runtime::Runtime;

/// Sum of one metric over tether's cores (published about once a second).
fn metric(rt: &Runtime, m: CoreMetric) -> u64 {
    rt.control().metrics.iter().map(|c| c.get(m as usize)).sum()
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        _ => panic!("IPv4 expected"),
    }
}

#[test]
fn flooding_sources_are_limited_while_every_legitimate_refresh_succeeds() {
    // Short expiries so that each endpoint refreshes twice within the hold;
    // loopback is exempt by default, so the test opts it in.
    let (rt, addr) = common::start(
        "[registrar]\nmin_expires = 4\n[limits]\nexempt = []\nregister_rate = 5\nregister_burst = 10\n\
invite_rate = 5\ninvite_burst = 10\nother_rate = 1000\nother_burst = 1000\n",
    );
    let flood = FloodPlan {
        sources: 50,
        // 200/s per source asked, a third each REGISTER, INVITE, OPTIONS:
        // the first two exceed their 5/s even if the generator reaches a
        // tenth of that, OPTIONS stays within its 1,000/s.
        rate: 10_000,
        source_base: "127.40.0.1".parse().unwrap(),
        duration: Duration::from_secs(6),
        max_requests: 80_000,
        ..FloodPlan::default()
    };
    let cfg = LoadConfig {
        target: v4(addr),
        endpoints: 2_000,
        rate: 2_000,
        duration: Duration::from_secs(60),
        hold: Duration::from_secs(8),
        scenario: Scenario::Keepalive,
        refresh: true,
        expires: 4,
        source_base: "127.41.0.1".parse().unwrap(),
        // Four devices per address: each address refreshes about 1.25
        // times a second, within 5/s.
        ports: 4,
        flood: Some(flood),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    // The legitimate side: registered, refreshed at least once each, none failed.
    assert_eq!(s.registered, 2_000, "{s:?}");
    assert_eq!((s.failed, s.timeouts), (0, 0), "{:?}", s.codes);
    assert!(
        s.refreshed >= 2_000,
        "every endpoint refreshed: {}",
        s.refreshed
    );
    assert_eq!(
        s.codes.keys().copied().collect::<Vec<_>>(),
        [200],
        "{:?}",
        s.codes
    );
    // The flood: every source limited (answered 503 at least once).
    let f = s.flood.clone().expect("the flood ran");
    assert!(f.sent >= 20_000, "{f:?}");
    assert_eq!(f.sources_limited, 50, "{f:?}");
    let answered_503 = f.answers.get(&503).copied().unwrap_or(0);
    // The server's counters, once published, agree with what came back.
    let limited = |rt: &Runtime| {
        metric(rt, CoreMetric::LimitedRegister)
            + metric(rt, CoreMetric::LimitedInvite)
            + metric(rt, CoreMetric::LimitedOther)
    };
    common::wait_until(10, "the limit counters published", || {
        metric(&rt, CoreMetric::LimitAnswered) == answered_503
            && limited(&rt)
                == metric(&rt, CoreMetric::LimitAnswered) + metric(&rt, CoreMetric::LimitDropped)
    });
    assert!(metric(&rt, CoreMetric::LimitedRegister) > 0);
    assert!(metric(&rt, CoreMetric::LimitedInvite) > 0);
    assert_eq!(
        metric(&rt, CoreMetric::LimitedOther),
        0,
        "OPTIONS stayed within its limit"
    );
    // At most one 503 a second per source (the flood lasts 6 s at most).
    assert!(answered_503 <= 50 * 7, "{answered_503}");
    rt.shutdown().unwrap();
}

#[test]
fn refused_tokens_block_the_source_until_the_api_lifts_it() {
    let (rt, addr, _api, base) = common::start_with_api(&format!(
        "[auth.token]\nsecrets = [\"{}\"]\n[limits]\nexempt = []\nauth_failures = 3\n",
        "s".repeat(32)
    ));
    let sock = UdpSocket::bind("127.42.0.9:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let register = |cseq: u32| {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.42.0.9:{port};branch=z9hG4bKt{cseq}\r\n\
Max-Forwards: 70\r\nFrom: <sip:eve@example.com>;tag=e\r\nTo: <sip:eve@example.com>\r\nCall-ID: eve\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:eve@127.42.0.9:{port}>\r\nAuthorization: Bearer bad.bad.bad\r\n\
Content-Length: 0\r\n\r\n"
        )
    };
    let status = |cseq: u32| -> Option<String> {
        sock.send_to(register(cseq).as_bytes(), addr).unwrap();
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..12.min(n)]).into_owned())
    };
    for cseq in 1..=3 {
        assert_eq!(status(cseq).as_deref(), Some("SIP/2.0 403 "));
    }
    // Blocked now: silence, however often it tries.
    assert_eq!(status(4), None);
    let token = Some(common::API_TOKEN);
    let (code, body) = common::http("GET", &format!("{base}/v1/blocks"), token, None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["total"], 1, "{body}");
    assert_eq!(v["blocks"][0]["source"], "127.42.0.9");
    common::wait_until(10, "the block counted", || {
        metric(&rt, CoreMetric::BlocksStarted) == 1 && metric(&rt, CoreMetric::AuthFailures) == 3
    });
    let (code, body) = common::http(
        "DELETE",
        &format!("{base}/v1/blocks/127.42.0.9"),
        token,
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(5).as_deref(), Some("SIP/2.0 403 "), "answered again");
    let (code, _) = common::http(
        "DELETE",
        &format!("{base}/v1/blocks/127.42.0.9"),
        token,
        None,
    );
    assert_eq!(code, 404);
    rt.shutdown().unwrap();
}
