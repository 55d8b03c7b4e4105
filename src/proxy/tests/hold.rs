//! Held calls, the bridge call-back and the routing webhook, on a fake
//! clock: the HTTP side is the core's `Event::Http` out and
//! `Command::HttpAnswer` in.

use super::*;
use crate::endpoint::Command;
use crate::hooks::{Answer, Kind, Purpose, Request};
use crate::proxy::hold::{HoldIndex, HoldSettings};

const CALLER: &str = "10.0.0.1:5061";
const BOB_NAT: &str = "203.0.113.5:4000";
const HOLD_MS: u64 = 30_000;

pub(super) fn hold_settings() -> HoldSettings {
    HoldSettings {
        hold_ms: HOLD_MS,
        gateways: vec![("apns".into(), "http://127.0.0.1:9/push".into())],
        push_timeout_ms: 5000,
        prefix: "bridge-".into(),
        keys: Arc::new(crate::hold::token::BridgeKeys::new(1, &[(1, [7u8; 32])])),
        node: 1,
        token_ttl_s: 30,
        max_held: 100,
        labels: Default::default(),
        index: Arc::new(HoldIndex::default()),
    }
}

fn held_net(route_url: Option<&str>) -> Net {
    let mut n = Net::build_with(
        0,
        ProxySection::default(),
        Arc::new(Directory::new()),
        None,
        |cfg| {
            cfg.hold = Some(Arc::new(hold_settings()));
            cfg.route = route_url.map(|u| crate::proxy::hold::RouteSettings {
                url: u.into(),
                timeout_ms: 1000,
            });
        },
    );
    n.ep.set_unix_epoch(1_800_000_000_000);
    n
}

/// Registers bob with RFC 8599 push parameters, then lets his NAT path
/// die (every keepalive prompt unanswered).
pub(super) fn asleep_bob(n: &mut Net) {
    let reg = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKrb1;rport\r\n\
From: <sip:bob@example.com>;tag=r1\r\nTo: <sip:bob@example.com>\r\nCall-ID: reg-bob\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:bob@10.0.0.2:5062;pn-provider=apns;pn-prid=DEV1;pn-param=ABC.voip>\r\n\
Max-Forwards: 70\r\nExpires: 3600\r\n\r\n";
    let out = n.send(BOB_NAT, reg.as_bytes());
    assert_eq!(status(&out[0].0), 200, "{}", text(&out[0].0));
    events(n);
    let later = n.now + 600_000;
    n.advance(later);
    let now = n.now / 1000;
    let bob = n.dir.lookup("bob@example.com", now as u32);
    assert!(
        !bob.is_empty() && !bob[0].is_reachable(),
        "bob's path is dead"
    );
}

pub(super) fn events(n: &mut Net) -> Vec<Event> {
    std::iter::from_fn(|| n.ep.poll_event()).collect()
}

pub(super) fn callouts(evs: &[Event], purpose: Purpose) -> Vec<Request> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Http(r) if matches!(r.kind, Kind::Callout { purpose: p, .. } if p == purpose) => {
                Some(r.clone())
            }
            _ => None,
        })
        .collect()
}

pub(super) fn answer_to(r: &Request, status: u16, body: &str) -> Command {
    let Kind::Callout { purpose, id, .. } = r.kind else {
        panic!("not a callout: {r:?}");
    };
    Command::HttpAnswer(Answer {
        purpose,
        id,
        status,
        body: body.as_bytes().into(),
    })
}

pub(super) fn statuses_to(out: &[Sent], to: &str) -> Vec<u16> {
    out.iter()
        .filter(|(_, a)| *a == addr(to))
        .map(|(b, _)| status(b))
        .collect()
}

/// Holds a call for asleep bob: the caller hears 100 and 180, and one
/// push callout carries his push parameters and a bridge URI.
pub(super) fn hold_call(n: &mut Net, branch: &str) -> serde_json::Value {
    let out = n.send(CALLER, &invite("bob", branch, ""));
    assert_eq!(statuses_to(&out, CALLER), vec![100, 180], "{out:#?}");
    let evs = events(n);
    let pushes = callouts(&evs, Purpose::Push);
    assert_eq!(pushes.len(), 1, "{evs:#?}");
    assert_eq!(&*pushes[0].url, "http://127.0.0.1:9/push");
    let body: serde_json::Value = serde_json::from_slice(&pushes[0].body).unwrap();
    assert_eq!(body["pn_prid"], "DEV1");
    assert_eq!(body["pn_param"], "ABC.voip");
    assert_eq!(body["aor"], "bob@example.com");
    assert!(body["bridge_uri"]
        .as_str()
        .unwrap()
        .starts_with("sip:bridge-"));
    n.ep.handle_command(n.now, answer_to(&pushes[0], 200, ""));
    assert_eq!(n.ep.proxy().held_calls(), 1);
    body
}

#[test]
fn a_held_call_is_forwarded_when_the_device_registers_again() {
    let mut n = held_net(None);
    asleep_bob(&mut n);
    hold_call(&mut n, "h1");
    // The push woke bob: he registers again from a new NAT mapping.
    let woken = "203.0.113.5:4001";
    let reg = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKrb2;rport\r\n\
From: <sip:bob@example.com>;tag=r1\r\nTo: <sip:bob@example.com>\r\nCall-ID: reg-bob\r\n\
CSeq: 2 REGISTER\r\nContact: <sip:bob@10.0.0.2:5062;pn-provider=apns;pn-prid=DEV1;pn-param=ABC.voip>\r\n\
Max-Forwards: 70\r\nExpires: 3600\r\n\r\n";
    let out = n.send(woken, reg.as_bytes());
    assert_eq!(statuses_to(&out, woken), vec![200]);
    let evs = events(&mut n);
    let aor = evs
        .iter()
        .find_map(|e| match e {
            Event::Registered(a) => Some(a.clone()),
            _ => None,
        })
        .expect("the registration is announced to the cores");
    n.ep.handle_command(n.now, Command::Registered(aor));
    let out = n.drain();
    let fwd = one_to(&out, woken);
    assert_eq!(sip::parse(&fwd).unwrap().method(), Some(Method::Invite));
    // The push parameters were for tether; the device gets its plain URI.
    assert!(
        text(&fwd).starts_with("INVITE sip:bob@10.0.0.2:5062 SIP/2.0\r\n"),
        "{}",
        text(&fwd)
    );
    assert_eq!(n.ep.proxy().held_calls(), 0);
    let out = n.send(woken, &answer(&fwd, 200, "b1", "sip:bob@10.0.0.2:5062"));
    assert_eq!(statuses_to(&out, CALLER), vec![200]);
}

#[test]
fn a_hold_ends_with_480_at_hold_ms_and_a_cancel_with_487() {
    let mut n = held_net(None);
    asleep_bob(&mut n);
    hold_call(&mut n, "t1");
    let at = n.now + HOLD_MS;
    let out = n.advance(at);
    assert_eq!(statuses_to(&out, CALLER), vec![480]);
    assert_eq!(n.ep.proxy().held_calls(), 0);

    hold_call(&mut n, "c1");
    let cancel = String::from_utf8(invite("bob", "c1", ""))
        .unwrap()
        .replace("INVITE sip:bob", "CANCEL sip:bob")
        .replace("1 INVITE", "1 CANCEL");
    let out = n.send(CALLER, cancel.as_bytes());
    let mut got = statuses_to(&out, CALLER);
    got.sort_unstable();
    assert_eq!(got, vec![200, 487]);
    assert_eq!(n.ep.proxy().held_calls(), 0);
    // bob registering now forwards nothing.
    n.ep.handle_command(n.now, Command::Registered("bob@example.com".into()));
    assert!(n.drain().is_empty());
}

#[test]
fn a_failed_push_that_was_the_only_wake_up_ends_the_hold_at_once() {
    let mut n = held_net(None);
    asleep_bob(&mut n);
    let out = n.send(CALLER, &invite("bob", "f1", ""));
    assert_eq!(statuses_to(&out, CALLER), vec![100, 180]);
    let evs = events(&mut n);
    let push = &callouts(&evs, Purpose::Push)[0];
    n.ep.handle_command(n.now, answer_to(push, 0, ""));
    assert_eq!(statuses_to(&n.drain(), CALLER), vec![480]);
}

#[test]
fn the_device_calling_back_with_its_token_is_bridged_once() {
    let mut n = held_net(None);
    asleep_bob(&mut n);
    let push = hold_call(&mut n, "b1");
    let uri = push["bridge_uri"].as_str().unwrap().to_owned();
    let phone = "198.51.100.9:5070";
    let callback = |branch: &str, uri: &str| {
        format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=cb\r\nTo: <{uri}>\r\nCall-ID: cb-{branch}\r\n\
CSeq: 1 OPTIONS\r\nContact: <sip:bob@10.0.0.2:5062>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // A forged token (right form, wrong tag) and a garbage one are refused.
    let mut forged: Vec<char> = uri.chars().collect();
    let i = "sip:bridge-".len() + 20;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    for (i, bad) in [forged, "sip:bridge-nonsense@example.com".to_string()]
        .iter()
        .enumerate()
    {
        let out = n.send(phone, callback(&format!("x{i}"), bad).as_bytes());
        assert_eq!(statuses_to(&out, phone), vec![403], "{bad}");
    }
    assert_eq!(n.ep.proxy().held_calls(), 1);
    let out = n.send(phone, callback("ok", &uri).as_bytes());
    let to_phone: Vec<_> = out.iter().filter(|(_, a)| *a == addr(phone)).collect();
    assert_eq!(to_phone.len(), 2, "{out:#?}");
    let fwd = to_phone
        .iter()
        .find(|(b, _)| sip::parse(b).unwrap().method() == Some(Method::Invite))
        .expect("the held INVITE goes over the call-back's flow")
        .0
        .clone();
    assert!(text(&fwd).starts_with("INVITE sip:bob@10.0.0.2:5062 "));
    assert_eq!(
        statuses_to(&out, phone)
            .iter()
            .filter(|s| **s == 200)
            .count(),
        1
    );
    let out = n.send(phone, &answer(&fwd, 200, "b9", "sip:bob@10.0.0.2:5062"));
    assert_eq!(statuses_to(&out, CALLER), vec![200]);
    // The same token again: the call is no longer held.
    let out = n.send(phone, callback("again", &uri).as_bytes());
    assert_eq!(statuses_to(&out, phone), vec![403]);
}

#[test]
fn the_routing_webhook_routes_rejects_or_falls_back_to_the_location_service() {
    let mut n = held_net(Some("http://127.0.0.1:9/route"));
    n.register("carol", "203.0.113.7:4000", "10.0.0.7:5060");
    events(&mut n);
    let ask = |n: &mut Net, branch: &str| {
        let out = n.send(CALLER, &invite("carol", branch, ""));
        assert_eq!(statuses_to(&out, CALLER), vec![100]);
        let evs = events(n);
        let r = callouts(&evs, Purpose::Route);
        assert_eq!(r.len(), 1, "{evs:#?}");
        let body: serde_json::Value = serde_json::from_slice(&r[0].body).unwrap();
        assert_eq!(body["call_id"], format!("call-{branch}"));
        r[0].clone()
    };
    // Targets: a numeric primary.
    let r = ask(&mut n, "r1");
    n.ep.handle_command(
        n.now,
        answer_to(
            &r,
            200,
            r#"{"targets":[{"uri":"sip:pbx@198.51.100.20:5060"}]}"#,
        ),
    );
    let f = one_to(&n.drain(), "198.51.100.20:5060");
    assert!(text(&f).starts_with("INVITE sip:pbx@198.51.100.20:5060 "));
    // A reject.
    let r = ask(&mut n, "r2");
    n.ep.handle_command(
        n.now,
        answer_to(&r, 200, r#"{"reject":{"code":486,"reason":"Busy Here"}}"#),
    );
    assert_eq!(statuses_to(&n.drain(), CALLER), vec![486]);
    // A 500 and a late webhook: carol's binding, as without the webhook.
    let r = ask(&mut n, "r3");
    n.ep.handle_command(n.now, answer_to(&r, 500, ""));
    one_to(&n.drain(), "203.0.113.7:4000");
    let r = ask(&mut n, "r4");
    let at = n.now + 2000;
    let out = n.advance(at);
    let r4: Vec<_> = out
        .iter()
        .filter(|(b, a)| *a == addr("203.0.113.7:4000") && text(b).contains("call-r4"))
        .collect();
    // (Retransmitted once by the time the clock stops.)
    assert!(
        !r4.is_empty(),
        "the late webhook's call takes the default route"
    );
    n.ep.handle_command(n.now, answer_to(&r, 200, r#"{"reject":{"code":486}}"#));
    assert!(
        statuses_to(&n.drain(), CALLER).is_empty(),
        "a late answer changes nothing"
    );
}

/// The call events of `webhooks.events` (seed 003), in the order the
/// call makes them; their JSON shape is `hooks::events`' to test.
#[test]
fn a_call_makes_invite_ringing_answered_and_ended_events() {
    let cfg = crate::config::WebhookConfig {
        url: "http://127.0.0.1:9/events".into(),
        events: ["call.invite", "call.ringing", "call.answered", "call.ended"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let hooks = Arc::new(crate::hooks::EventHooks::new(&cfg));
    let mut n = Net::with(ProxySection::default());
    n.ep.proxy_mut().set_event_hooks(hooks);
    n.register("bob", BOB_NAT, "10.0.0.2:5062");
    events(&mut n);
    let names = |n: &mut Net| -> Vec<String> {
        events(n)
            .into_iter()
            .filter_map(|e| match e {
                Event::Http(r) => {
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    Some(format!("{}:{}", v["event"].as_str()?, v["code"]))
                }
                _ => None,
            })
            .collect()
    };
    let out = n.send(CALLER, &invite("bob", "e1", ""));
    let fwd = one_to(&out, BOB_NAT);
    assert_eq!(names(&mut n), ["call.invite:null"]);
    n.send(BOB_NAT, &answer(&fwd, 180, "b1", "sip:bob@10.0.0.2:5062"));
    n.send(BOB_NAT, &answer(&fwd, 200, "b1", "sip:bob@10.0.0.2:5062"));
    assert_eq!(names(&mut n), ["call.ringing:180", "call.answered:200"]);
    let rr = super::super::forward::record_routes(&sip::parse(&fwd).unwrap())
        .next()
        .unwrap()
        .to_owned();
    let bye = in_dialog(
        "BYE",
        "sip:bob@10.0.0.2:5062",
        "10.0.0.1:5061",
        "<sip:alice@example.com>;tag=a1",
        "<sip:bob@example.com>;tag=b1",
        "call-e1",
        2,
        &[&rr],
    );
    let out = n.send(CALLER, &bye);
    let fbye = one_to(&out, BOB_NAT);
    n.send(BOB_NAT, &answer(&fbye, 200, "b1", "sip:bob@10.0.0.2:5062"));
    assert_eq!(names(&mut n), ["call.ended:200"]);
    // A failed attempt ends with its code.
    let out = n.send(CALLER, &invite("bob", "e2", ""));
    let fwd = one_to(&out, BOB_NAT);
    events(&mut n);
    n.send(BOB_NAT, &answer(&fwd, 486, "b2", "sip:bob@10.0.0.2:5062"));
    assert_eq!(names(&mut n), ["call.ended:486"]);
}
