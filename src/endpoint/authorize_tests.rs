//! `auth.mode = "http"` through the endpoint's own API on a fake clock:
//! the callout leaves as `Event::Http`, its answer is fed back by hand as
//! `Command::HttpAnswer` (the side threads are not in these tests).

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::hooks::{Answer, Kind, Purpose};
use crate::metrics::CoreMetric;
use crate::nat::{self, Keepalive};
use crate::registrar::token::{mint, Claims, TokenKeys};
use crate::registrar::{HttpAuth, OnTimeout, Registrar};

const TIMEOUT_MS: u64 = 2000;
const UNIX0_MS: u64 = 1_800_000_000_000;

fn src() -> SocketAddr {
    "198.51.100.4:40000".parse().unwrap()
}

fn endpoint(on_timeout: OnTimeout, cache_s: u64, max_pending: usize) -> Endpoint {
    endpoint_with(on_timeout, cache_s, max_pending, None)
}

fn endpoint_with(
    on_timeout: OnTimeout,
    cache_s: u64,
    max_pending: usize,
    tokens: Option<TokenKeys>,
) -> Endpoint {
    let dir = Arc::new(crate::registrar::Directory::new());
    let http = HttpAuth {
        url: "http://127.0.0.1:9/authorize".into(),
        timeout_ms: TIMEOUT_MS,
        cache_s,
        on_timeout,
        max_pending,
    };
    let reg = Registrar::new(3, Arc::new(Default::default()), dir.clone(), None)
        .with_tokens(tokens.map(Arc::new))
        .with_http(Some(http), 99);
    let ka = Keepalive::new(nat::KeepaliveConfig::default(), 7);
    let addrs = vec!["192.0.2.1:5060".parse().unwrap()];
    let notify =
        crate::notify::Engine::new(Arc::new(Default::default()), dir, addrs.clone(), 1000, 7);
    Endpoint::new(Limits::default(), 7, reg, ka, notify, addrs).with_unix_epoch(UNIX0_MS)
}

/// A REGISTER for `user` (branch and CSeq from `cseq`).
fn register(user: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa{user}{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f\r\nTo: <sip:{user}@example.com>\r\n\
Call-ID: {user}-reg\r\nCSeq: {cseq} REGISTER\r\nUser-Agent: phone/1.0\r\n\
Contact: <sip:{user}@10.0.0.2:5060>;+sip.instance=\"<urn:uuid:{user}>\"\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// What one input produced: the statuses sent (to `src()`) and the callouts.
#[derive(Debug, Default)]
struct Out {
    statuses: Vec<u16>,
    retry_after: Vec<u32>,
    callouts: Vec<(u64, serde_json::Value)>,
}

fn drain(d: &mut Endpoint) -> Out {
    let mut o = Out::default();
    while let Some(t) = d.poll_transmit() {
        assert_eq!((t.to, t.local), (src(), 0));
        let m = sip::parse(t.bytes).unwrap();
        o.statuses.push(m.status().unwrap());
        if let Some(r) = m.header_by_name("Retry-After") {
            o.retry_after.push(r.parse().unwrap());
        }
    }
    while let Some(e) = d.poll_event() {
        if let Event::Http(req) = e {
            let Kind::Callout {
                core,
                purpose,
                id,
                timeout_ms,
            } = req.kind
            else {
                panic!("a callout, not a webhook");
            };
            assert_eq!(
                (core, purpose, timeout_ms),
                (3, Purpose::Authorize, TIMEOUT_MS)
            );
            assert_eq!(&*req.url, "http://127.0.0.1:9/authorize");
            o.callouts
                .push((id, serde_json::from_slice(&req.body).unwrap()));
        }
    }
    o
}

fn send(d: &mut Endpoint, bytes: &[u8], now: u64) -> Out {
    d.handle_datagram(now, 0, src(), bytes);
    drain(d)
}

fn answer(d: &mut Endpoint, id: u64, status: u16, now: u64) -> Out {
    d.handle_command(
        now,
        Command::HttpAnswer(Answer {
            purpose: Purpose::Authorize,
            id,
            status,
            body: Box::default(),
        }),
    );
    drain(d)
}

fn tick(d: &mut Endpoint, now: u64) -> Out {
    d.handle_timeout(now);
    drain(d)
}

/// Sends a new REGISTER: `100 Trying` at once and one callout; its id.
fn parked(d: &mut Endpoint, bytes: &[u8], now: u64) -> u64 {
    let o = send(d, bytes, now);
    assert_eq!(o.statuses, [100]);
    assert_eq!(o.callouts.len(), 1);
    o.callouts[0].0
}

#[test]
fn a_new_registration_waits_for_the_service_and_its_200() {
    let mut d = endpoint(OnTimeout::Reject, 3600, 16);
    let o = send(&mut d, &register("alice", 1, ""), 1000);
    assert_eq!(o.statuses, [100], "100 Trying at once, nothing final yet");
    let (id, body) = &o.callouts[0];
    assert_eq!(body["aor"], "alice@example.com");
    assert_eq!(body["contact"], "sip:alice@10.0.0.2:5060");
    assert_eq!(body["contacts"][0], "sip:alice@10.0.0.2:5060");
    assert_eq!(body["instance"], "urn:uuid:alice");
    assert_eq!(body["source"], "198.51.100.4:40000");
    assert_eq!(body["user_agent"], "phone/1.0");
    assert_eq!(body["token"], serde_json::Value::Null);
    assert_eq!(d.local_bindings(), 0);
    assert_eq!(d.metric(CoreMetric::AuthHttpPending), 1);
    assert_eq!(answer(&mut d, *id, 200, 1005).statuses, [200]);
    assert_eq!(d.local_bindings(), 1);
    assert_eq!(d.metric(CoreMetric::AuthHttpAuthorized), 1);
    assert_eq!(d.metric(CoreMetric::AuthHttpPending), 0);
    // Its deadline was cancelled: nothing happens at it.
    let later = tick(&mut d, 1000 + TIMEOUT_MS);
    assert!(later.statuses.is_empty());
    assert_eq!(d.metric(CoreMetric::AuthHttpTimedOut), 0);
}

#[test]
fn a_4xx_answers_403_and_registers_nothing() {
    for status in [403, 404, 401] {
        let mut d = endpoint(OnTimeout::Accept, 3600, 16);
        let id = parked(&mut d, &register("mallory", 1, ""), 0);
        assert_eq!(answer(&mut d, id, status, 10).statuses, [403], "{status}");
        assert_eq!(d.local_bindings(), 0);
        assert_eq!(d.metric(CoreMetric::AuthHttpRejected), 1);
        assert_eq!(d.metric(CoreMetric::Forbidden), 1);
    }
}

#[test]
fn no_answer_by_the_deadline_rejects_503_with_retry_after_and_a_late_answer_is_ignored() {
    let mut d = endpoint(OnTimeout::Reject, 3600, 16);
    let id = parked(&mut d, &register("alice", 1, ""), 0);
    assert!(tick(&mut d, TIMEOUT_MS - 1).statuses.is_empty());
    let o = tick(&mut d, TIMEOUT_MS);
    assert_eq!(o.statuses, [503]);
    assert!((30..60).contains(&o.retry_after[0]), "{:?}", o.retry_after);
    assert_eq!(d.metric(CoreMetric::AuthHttpTimedOut), 1);
    let late = answer(&mut d, id, 200, TIMEOUT_MS + 50);
    assert!(late.statuses.is_empty(), "the deadline's decision stands");
    assert_eq!(d.local_bindings(), 0);
    assert_eq!(d.metric(CoreMetric::AuthHttpAuthorized), 0);
}

#[test]
fn no_answer_with_on_timeout_accept_registers_but_does_not_cache() {
    let mut d = endpoint(OnTimeout::Accept, 3600, 16);
    parked(&mut d, &register("alice", 1, ""), 0);
    assert_eq!(tick(&mut d, TIMEOUT_MS).statuses, [200]);
    assert_eq!(d.local_bindings(), 1);
    // Its refresh asks the service: the timeout's yes was no real yes.
    parked(&mut d, &register("alice", 2, ""), 60_000);
    assert_eq!(d.metric(CoreMetric::AuthHttpCached), 0);
}

#[test]
fn a_5xx_or_no_answer_from_the_side_threads_follows_on_timeout() {
    for (status, metric) in [
        (500, CoreMetric::AuthHttpFailed),
        (302, CoreMetric::AuthHttpFailed),
        (0, CoreMetric::AuthHttpTimedOut),
    ] {
        let mut d = endpoint(OnTimeout::Reject, 3600, 16);
        let id = parked(&mut d, &register("alice", 1, ""), 0);
        assert_eq!(answer(&mut d, id, status, 5).statuses, [503], "{status}");
        assert_eq!(d.metric(metric), 1);
        let mut d = endpoint(OnTimeout::Accept, 3600, 16);
        let id = parked(&mut d, &register("alice", 1, ""), 0);
        assert_eq!(answer(&mut d, id, status, 5).statuses, [200], "{status}");
        // Nothing left to fire.
        assert!(tick(&mut d, TIMEOUT_MS).statuses.is_empty());
    }
}

#[test]
fn retransmissions_while_waiting_get_100_again_and_no_second_callout() {
    let mut d = endpoint(OnTimeout::Reject, 3600, 16);
    let req = register("alice", 1, "");
    let id = parked(&mut d, &req, 0);
    for t in [500, 1500] {
        let o = send(&mut d, &req, t);
        assert_eq!(o.statuses, [100]);
        assert!(o.callouts.is_empty());
    }
    assert_eq!(d.metric(CoreMetric::AuthHttpRetransmissions), 2);
    assert_eq!(answer(&mut d, id, 403, 1600).statuses, [403]);
    // A straggler after the final answer gets the same answer, no callout.
    let o = send(&mut d, &req, 1700);
    assert_eq!((o.statuses, o.callouts.len()), (vec![403], 0));
    assert_eq!(d.metric(CoreMetric::AuthHttpRejected), 1);
    // Long after, the same bytes are a new question.
    assert_eq!(send(&mut d, &req, 60_000).callouts.len(), 1);
}

#[test]
fn a_refresh_within_cache_s_does_not_call_out() {
    let mut d = endpoint(OnTimeout::Reject, 600, 16);
    let id = parked(&mut d, &register("alice", 1, ""), 0);
    answer(&mut d, id, 200, 10);
    // A straggler of the first REGISTER: its 200 again, no callout.
    let o = send(&mut d, &register("alice", 1, ""), 20);
    assert_eq!((o.statuses, o.callouts.len()), (vec![200], 0));
    let o = send(&mut d, &register("alice", 2, ""), 300_000);
    assert_eq!((o.statuses, o.callouts.len()), (vec![200], 0));
    assert_eq!(d.metric(CoreMetric::AuthHttpCached), 1);
    assert_eq!(
        d.metric(CoreMetric::Refreshed),
        1,
        "the straggler was no refresh"
    );
    // cache_s after the service's yes (not after the last refresh): ask again.
    parked(&mut d, &register("alice", 3, ""), 601_000);
    // Another source, or another AOR, is never a refresh.
    let mut d = endpoint(OnTimeout::Reject, 600, 16);
    let id = parked(&mut d, &register("alice", 1, ""), 0);
    answer(&mut d, id, 200, 10);
    d.handle_datagram(
        20,
        0,
        "198.51.100.5:40000".parse().unwrap(),
        &register("alice", 2, ""),
    );
    assert!(d.poll_transmit().is_some());
    assert!(matches!(d.poll_event(), Some(Event::Http(_))));
    parked(&mut d, &register("bob", 1, ""), 30);
}

#[test]
fn unregistering_forgets_the_cached_yes() {
    let mut d = endpoint(OnTimeout::Reject, 600, 16);
    let id = parked(&mut d, &register("alice", 1, ""), 0);
    answer(&mut d, id, 200, 10);
    let o = send(&mut d, &register("alice", 2, "Expires: 0\r\n"), 1000);
    assert_eq!((o.statuses, o.callouts.len()), (vec![200], 0));
    assert_eq!(d.local_bindings(), 0);
    parked(&mut d, &register("alice", 3, ""), 2000);
}

#[test]
fn max_pending_turns_the_next_away_with_503() {
    let mut d = endpoint(OnTimeout::Reject, 600, 2);
    let a = parked(&mut d, &register("a", 1, ""), 0);
    parked(&mut d, &register("b", 1, ""), 0);
    let o = send(&mut d, &register("c", 1, ""), 0);
    assert_eq!((o.statuses.as_slice(), o.callouts.len()), (&[503][..], 0));
    assert!((5..10).contains(&o.retry_after[0]), "{:?}", o.retry_after);
    assert_eq!(d.metric(CoreMetric::AuthHttpOverloaded), 1);
    // One answered: room for one more.
    answer(&mut d, a, 200, 5);
    parked(&mut d, &register("c", 2, ""), 6);
    assert_eq!(d.metric(CoreMetric::AuthHttpPending), 2);
}

#[test]
fn a_bearer_token_is_passed_on_or_decides_when_secrets_are_set() {
    let key = b"0123456789abcdef0123456789abcdef";
    let t = mint(
        key,
        &Claims {
            sub: "alice@example.com".into(),
            scopes: vec!["*".into()],
            exp: UNIX0_MS / 1000 + 600,
            nbf: None,
        },
    );
    let auth = format!("Authorization: Bearer {t}\r\n");
    // No secrets here: the service gets the token to judge.
    let mut d = endpoint(OnTimeout::Reject, 600, 16);
    let o = send(&mut d, &register("alice", 1, &auth), 0);
    assert_eq!(o.callouts[0].1["token"], t.as_str());
    // With the secret: the token decides, no callout.
    let mut d = endpoint_with(OnTimeout::Reject, 600, 16, Some(TokenKeys::new([key])));
    let o = send(&mut d, &register("alice", 1, &auth), 0);
    assert_eq!((o.statuses, o.callouts.len()), (vec![200], 0));
    assert_eq!(d.metric(CoreMetric::TokenAccepted), 1);
    // …and on the wall clock the runtime gave: 600 s later it has expired.
    let o = send(&mut d, &register("alice", 2, &auth), 600_000);
    assert_eq!((o.statuses, o.callouts.len()), (vec![403], 0));
    assert_eq!(d.metric(CoreMetric::TokenRejected), 1);
}
