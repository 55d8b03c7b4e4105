use super::*;
use crate::hooks::Kind;

fn cfg(events: &[&str], headers: &[&str]) -> WebhookConfig {
    WebhookConfig {
        url: "http://127.0.0.1:9/ev".into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        headers: headers.iter().map(|s| s.to_string()).collect(),
        ..WebhookConfig::default()
    }
}

fn json(r: &Request) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: a84b4c76e66710@pc33\r\n\
CSeq: 314159 INVITE\r\n\
X-Account: 42\r\n\
x-tag: a\r\n\
X-Tag: b\r\n\
User-Agent: softphone \"1.0\"\r\n\
Content-Length: 0\r\n\r\n";

fn src() -> SocketAddr {
    "192.0.2.4:5060".parse().unwrap()
}

#[test]
fn call_invite_json_has_ids_source_and_configured_headers() {
    let hooks = EventHooks::new(&cfg(
        &["call.invite"],
        &["X-Account", "X-Tag", "From", "User-Agent", "X-Absent"],
    ));
    let msg = crate::sip::parse(INVITE.as_bytes()).unwrap();
    let ev = CallEvent::from_message(EventKind::CallInvite, &msg, src(), 3);
    let r = hooks.call(&ev, Some(&msg)).expect("wanted");
    assert_eq!(&*r.url, "http://127.0.0.1:9/ev");
    assert_eq!(r.kind, Kind::Webhook);
    let v = json(&r);
    assert_eq!(
        v,
        serde_json::json!({
            "event": "call.invite",
            "core": 3,
            "call_id": "a84b4c76e66710@pc33",
            "from": "\"Alice\" <sip:alice@example.com>;tag=1928301774",
            "to": "<sip:bob@example.com>",
            "request_uri": "sip:bob@example.com",
            "source": "192.0.2.4:5060",
            "code": null,
            "reason": null,
            "headers": {
                "X-Account": "42",
                "X-Tag": "a, b",
                "From": "\"Alice\" <sip:alice@example.com>;tag=1928301774",
                "User-Agent": "softphone \"1.0\"",
            },
        })
    );
}

#[test]
fn responses_and_ends_carry_code_reason_and_kept_request_uri() {
    let hooks = EventHooks::new(&cfg(&["call.ringing", "call.ended"], &[]));
    let ringing = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKx\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
Call-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let msg = crate::sip::parse(ringing.as_bytes()).unwrap();
    let ev = CallEvent::from_message(EventKind::CallRinging, &msg, src(), 0)
        .with_request_uri("sip:bob@example.com");
    let v = json(&hooks.call(&ev, Some(&msg)).unwrap());
    assert_eq!(v["code"], 180);
    assert_eq!(v["request_uri"], "sip:bob@example.com");
    assert_eq!(v["to"], "<sip:bob@example.com>;tag=2");
    assert_eq!(v["headers"], serde_json::json!({}));

    let ev = CallEvent::new(EventKind::CallEnded, "c1", "a", "b", src(), 1)
        .with_reason(EndReason::Failure)
        .with_code(486);
    let v = json(&hooks.call(&ev, None).unwrap());
    assert_eq!(
        (v["reason"].as_str(), v["code"].as_u64()),
        (Some("failure"), Some(486))
    );
    for (r, s) in [
        (EndReason::Bye, "bye"),
        (EndReason::Cancel, "cancel"),
        (EndReason::Timeout, "timeout"),
    ] {
        let ev = CallEvent::new(EventKind::CallEnded, "c1", "a", "b", src(), 1).with_reason(r);
        assert_eq!(json(&hooks.call(&ev, None).unwrap())["reason"], s);
    }
}

#[test]
fn registration_json() {
    let hooks = EventHooks::new(&cfg(&["registration.added"], &["X-Account"]));
    let reg = "REGISTER sip:example.com SIP/2.0\r\nX-Account: 7\r\nContent-Length: 0\r\n\r\n";
    let msg = crate::sip::parse(reg.as_bytes()).unwrap();
    let ev = RegistrationEvent {
        kind: EventKind::RegistrationAdded,
        aor: "alice@example.com",
        contact: "sip:alice@10.0.0.2:5062;ob",
        source: src(),
        expires: 600,
        user_agent: Some("baresip"),
        instance: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"),
        core: 1,
    };
    let v = json(&hooks.registration(&ev, Some(&msg)).unwrap());
    assert_eq!(
        v,
        serde_json::json!({
            "event": "registration.added",
            "core": 1,
            "aor": "alice@example.com",
            "contact": "sip:alice@10.0.0.2:5062;ob",
            "source": "192.0.2.4:5060",
            "expires": 600,
            "user_agent": "baresip",
            "instance": "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
            "headers": {"X-Account": "7"},
        })
    );
    let expired = RegistrationEvent {
        kind: EventKind::RegistrationExpired,
        user_agent: None,
        instance: None,
        expires: 0,
        ..ev
    };
    assert!(
        hooks.registration(&expired, None).is_none(),
        "not subscribed"
    );
}

#[test]
fn only_subscribed_kinds_and_only_with_a_url() {
    let hooks = EventHooks::new(&cfg(&["registration.removed", "call.answered"], &[]));
    for k in EventKind::ALL {
        let on = matches!(k, EventKind::RegistrationRemoved | EventKind::CallAnswered);
        assert_eq!(hooks.wants(k), on, "{k:?}");
    }
    // A call kind is no registration event and the reverse.
    let ev = CallEvent::new(EventKind::RegistrationRemoved, "c", "f", "t", src(), 0);
    assert!(hooks.call(&ev, None).is_none());
    let off = EventHooks::new(&WebhookConfig::default());
    assert!(!off.any());
    assert!(EventKind::ALL.iter().all(|&k| !off.wants(k)));
    assert!(!EventHooks::off().any());
}

#[test]
fn names_round_trip() {
    for k in EventKind::ALL {
        assert_eq!(EventKind::parse(k.as_str()), Some(k));
    }
    assert_eq!(EventKind::parse("call.rang"), None);
}
