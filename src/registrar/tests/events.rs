//! Registration events: which binding changes the registrar reports, and
//! with what.

use super::*;
use crate::config::WebhookConfig;
use crate::hooks::EventHooks;

fn with_hooks(b: &mut Bench, headers: &[&str]) {
    let cfg = WebhookConfig {
        url: "http://127.0.0.1:9/ev".into(),
        headers: headers.iter().map(|s| s.to_string()).collect(),
        ..WebhookConfig::default()
    };
    b.reg.set_event_hooks(Arc::new(EventHooks::new(&cfg)));
}

/// The events queued since the last call, as JSON.
fn events(b: &mut Bench) -> Vec<serde_json::Value> {
    b.reg
        .http
        .drain(..)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

fn kinds(evs: &[serde_json::Value]) -> Vec<&str> {
    evs.iter().map(|e| e["event"].as_str().unwrap()).collect()
}

const UA: &str = "User-Agent: phone/2\r\nX-Account: 42\r\n";

#[test]
fn added_refreshed_removed_with_source_expiry_and_headers() {
    let mut b = bench();
    with_hooks(&mut b, &["X-Account"]);
    let contact = format!("Contact: <sip:alice@10.0.0.2:5060>;{INSTANCE}\r\n{UA}");
    assert_eq!(b.send(&register("alice", "c1", 1, &contact), 100).0, 200);
    let evs = events(&mut b);
    assert_eq!(
        evs,
        vec![serde_json::json!({
            "event": "registration.added",
            "core": 0,
            "aor": "alice@example.com",
            "contact": "sip:alice@10.0.0.2:5060",
            "source": SRC,
            "expires": 3600,
            "user_agent": "phone/2",
            "instance": "urn:uuid:00000000-0000-1000-8000-000A95A0E128",
            "headers": {"X-Account": "42"},
        })]
    );
    let refresh = format!("Expires: 600\r\n{contact}");
    assert_eq!(b.send(&register("alice", "c1", 2, &refresh), 200).0, 200);
    let evs = events(&mut b);
    assert_eq!(kinds(&evs), ["registration.refreshed"]);
    assert_eq!(evs[0]["expires"], 600);
    // The same request again (its 200 was lost): nothing changed, no event.
    assert_eq!(b.send(&register("alice", "c1", 2, &refresh), 201).0, 200);
    assert!(events(&mut b).is_empty());
    // Another contact of the AOR: only it is reported, not the first one.
    let other = "Contact: <sip:alice@10.0.0.3:5060>\r\n";
    assert_eq!(b.send(&register("alice", "c2", 1, other), 300).0, 200);
    let evs = events(&mut b);
    assert_eq!(kinds(&evs), ["registration.added"]);
    assert_eq!(evs[0]["contact"], "sip:alice@10.0.0.3:5060");
    assert_eq!(evs[0]["instance"], serde_json::Value::Null);
    let bye = "Contact: <sip:alice@10.0.0.3:5060>;expires=0\r\n";
    assert_eq!(b.send(&register("alice", "c2", 2, bye), 310).0, 200);
    let evs = events(&mut b);
    assert_eq!(kinds(&evs), ["registration.removed"]);
    assert_eq!(
        (evs[0]["contact"].as_str(), evs[0]["expires"].as_u64()),
        (Some("sip:alice@10.0.0.3:5060"), Some(0))
    );
    // Contact: * removes what is left.
    let star = "Contact: *\r\nExpires: 0\r\n";
    assert_eq!(b.send(&register("alice", "c1", 3, star), 320).0, 200);
    assert_eq!(kinds(&events(&mut b)), ["registration.removed"]);
}

#[test]
fn expiry_is_reported_with_the_aor_name() {
    let mut b = bench();
    with_hooks(&mut b, &[]);
    let req = register(
        "bob",
        "c1",
        1,
        "Contact: <sip:bob@10.0.0.9>\r\nExpires: 60\r\n",
    );
    assert_eq!(b.send(&req, 10).0, 200);
    events(&mut b);
    assert_eq!(b.expire(71), 1);
    let evs = events(&mut b);
    assert_eq!(kinds(&evs), ["registration.expired"]);
    assert_eq!(evs[0]["aor"], "bob@example.com");
    assert_eq!(evs[0]["contact"], "sip:bob@10.0.0.9");
    assert_eq!(evs[0]["user_agent"], serde_json::Value::Null);
    assert_eq!(evs[0]["expires"], 0);
}

#[test]
fn a_device_moving_core_is_removed_there_and_added_here() {
    let mut a = bench();
    with_hooks(&mut a, &[]);
    let mut c1 = a.other_core(1);
    with_hooks(&mut c1, &[]);
    assert_eq!(
        a.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 1)
            .0,
        200
    );
    events(&mut a);
    let moved = flow("10.0.0.4", 1);
    assert_eq!(
        c1.send_from(&register("alice", "c9", 1, &moved), 2, "198.51.100.1:9")
            .0,
        200
    );
    let evs = events(&mut c1);
    assert_eq!(kinds(&evs), ["registration.removed", "registration.added"]);
    assert_eq!(evs[0]["source"], SRC, "the old binding's path");
    assert_eq!(evs[1]["source"], "198.51.100.1:9");
    assert_eq!(evs[1]["core"], 1);
    assert!(events(&mut a).is_empty(), "one report per change");
}

#[test]
fn nothing_is_queued_when_no_event_is_wanted() {
    let mut b = bench();
    assert_eq!(
        b.send(
            &register(
                "carol",
                "c1",
                1,
                "Contact: <sip:carol@10.0.0.5>\r\nExpires: 60\r\n"
            ),
            1
        )
        .0,
        200
    );
    assert_eq!(b.expire(62), 1);
    assert!(b.reg.http.is_empty());
    // Only the subscribed kinds.
    let cfg = WebhookConfig {
        url: "http://127.0.0.1:9/ev".into(),
        events: vec!["registration.expired".into()],
        ..WebhookConfig::default()
    };
    b.reg.set_event_hooks(Arc::new(EventHooks::new(&cfg)));
    assert_eq!(
        b.send(
            &register(
                "carol",
                "c2",
                1,
                "Contact: <sip:carol@10.0.0.5>\r\nExpires: 60\r\n"
            ),
            100
        )
        .0,
        200
    );
    assert!(b.reg.http.is_empty());
    assert_eq!(b.expire(161), 1);
    assert_eq!(kinds(&events(&mut b)), ["registration.expired"]);
}
