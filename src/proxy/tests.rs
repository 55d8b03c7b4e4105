//! The proxy through a core's endpoint: datagrams from simulated parties
//! in, what tether sends out, a fake clock.
//!
//! Over 700 lines on purpose: one harness (`Net`, the message builders) and
//! the RFC 3261 call flows that use it, each a few dozen lines; the storm
//! test, which needs none of the builders' detail, lives in `storm.rs`, and
//! the media anchoring flows, which add their own SDP builders, in
//! `media.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Proxy, ProxyConfig, ProxySection};
use crate::addr::PathKey;
use crate::endpoint::{Core, Endpoint, Event};
use crate::nat::{self, Keepalive, PathState};
use crate::registrar::{Directory, Registrar};
use crate::sip::{self, writer, HeaderName, Limits, Method};

const TETHER: &str = "192.0.2.1:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct Net {
    ep: Endpoint,
    dir: Arc<Directory>,
    now: u64,
}

type Sent = (Vec<u8>, SocketAddr);

impl Net {
    fn with(section: ProxySection) -> Net {
        Net::core(0, section, Arc::new(Directory::new()))
    }

    fn core(core: u16, section: ProxySection, dir: Arc<Directory>) -> Net {
        Net::build(core, section, dir, None)
    }

    fn build(
        core: u16,
        section: ProxySection,
        dir: Arc<Directory>,
        auth: Option<crate::registrar::auth::Authenticator>,
    ) -> Net {
        Net::build_with(core, section, dir, auth, |_| {})
    }

    /// As `build`, with the resolved proxy settings changed by `tweak`.
    fn build_with(
        core: u16,
        section: ProxySection,
        dir: Arc<Directory>,
        auth: Option<crate::registrar::auth::Authenticator>,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> Net {
        let reg = Registrar::new(
            core,
            Arc::new(crate::registrar::Policy::default()),
            dir.clone(),
            auth,
        );
        let ka = Keepalive::new(
            nat::KeepaliveConfig {
                jitter_ms: 0,
                ..nat::KeepaliveConfig::default()
            },
            7,
        );
        let addrs = vec![addr(TETHER)];
        let notify = crate::notify::Engine::new(
            Arc::new(crate::notify::NotifyConfig::default()),
            dir.clone(),
            addrs.clone(),
            1000,
            7,
        );
        let mut cfg =
            ProxyConfig::from_section(&section, &["example.com".to_string()], Default::default());
        tweak(&mut cfg);
        let proxy = Proxy::new(core, Arc::new(cfg), dir.clone(), [3; 32], &addrs, 9);
        let ep = Endpoint::new(Limits::default(), 7, reg, ka, notify, addrs).with_proxy(proxy);
        Net {
            ep,
            dir,
            now: 1_000,
        }
    }

    /// This core looks cluster owners up through `cache`.
    fn with_owners(self, cache: crate::cluster::lookup::OwnerCache) -> Net {
        let Net { ep, dir, now } = self;
        Net {
            ep: ep.with_owner_cache(cache),
            dir,
            now,
        }
    }

    fn send(&mut self, from: &str, bytes: &[u8]) -> Vec<Sent> {
        self.ep.handle_datagram(self.now, 0, addr(from), bytes);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit() {
            out.push((t.bytes.to_vec(), t.to));
        }
        out
    }

    fn advance(&mut self, to: u64) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(at) = self.ep.poll_timeout() {
            if at > to {
                break;
            }
            self.now = at.max(self.now);
            self.ep.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = to;
        out
    }

    fn register(&mut self, user: &str, from: &str, contact: &str) {
        let reg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {contact};branch=z9hG4bKr{user};rport\r\n\
From: <sip:{user}@example.com>;tag=r1\r\nTo: <sip:{user}@example.com>\r\nCall-ID: reg-{user}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@{contact}>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n\r\n"
        );
        let out = self.send(from, reg.as_bytes());
        assert_eq!(status(&out[0].0), 200, "{}", text(&out[0].0));
    }
}

fn status(b: &[u8]) -> u16 {
    sip::parse(b).unwrap().status().unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn invite(to_user: &str, branch: &str, extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:{to_user}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:{to_user}@example.com>\r\n\
Call-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.1:5061>\r\n{extra}\
Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    )
    .into_bytes()
}

/// A UAS answer to `req` (To tag, Record-Route copied as RFC 3261 §12.1.1 asks).
fn answer(req: &[u8], code: u16, tag: &str, contact: &str) -> Vec<u8> {
    let m = sip::parse(req).unwrap();
    let mut out = Vec::new();
    let mut w = writer::response_to(&mut out, &m, code, "X", Some(tag), None);
    for rr in super::forward::record_routes(&m) {
        w.header(HeaderName::RecordRoute, rr);
    }
    w.header(HeaderName::Contact, &format!("<{contact}>"));
    w.finish(None);
    out
}

/// An in-dialog request from the UA whose route set is `routes`.
#[allow(clippy::too_many_arguments)]
fn in_dialog(
    method: &str,
    ruri: &str,
    via: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    routes: &[&str],
) -> Vec<u8> {
    let mut s = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{method}{cseq};rport\r\n"
    );
    for r in routes {
        s.push_str(&format!("Route: {r}\r\n"));
    }
    s.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ));
    s.into_bytes()
}

fn one_to(out: &[Sent], to: &str) -> Vec<u8> {
    let v: Vec<_> = out.iter().filter(|(_, a)| *a == addr(to)).collect();
    assert_eq!(v.len(), 1, "one datagram to {to}: {out:#?}");
    v[0].0.clone()
}

#[test]
fn a_call_reaches_a_natted_callee_and_in_dialog_requests_follow_the_flow() {
    let mut n = Net::with(ProxySection::default());
    // Bob registers from behind a NAT: his Contact names a private address.
    n.register("bob", "10.0.0.2:5062", "192.168.1.2:5060");
    let out = n.send("10.0.0.1:5061", &invite("bob", "c1", ""));
    assert_eq!(out.len(), 2, "100 Trying and the branch");
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 100);
    let fwd = one_to(&out, "10.0.0.2:5062");
    let m = sip::parse(&fwd).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(m.request_uri_raw(), Some("sip:bob@192.168.1.2:5060"));
    assert_eq!(c.top_via.sent_by, TETHER);
    assert_eq!(c.max_forwards, Some(69));
    let rr = super::forward::record_routes(&m).next().unwrap().to_owned();
    assert!(rr.ends_with("@192.0.2.1:5060;lr>"), "{rr}");

    // Retransmitted INVITE: absorbed, the 100 again.
    let again = n.send("10.0.0.1:5061", &invite("bob", "c1", ""));
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0].0), 100);

    let ringing = answer(&fwd, 180, "b1", "sip:bob@192.168.1.2:5060");
    let out = n.send("10.0.0.2:5062", &ringing);
    let r = one_to(&out, "10.0.0.1:5061");
    let rm = sip::parse(&r).unwrap();
    assert_eq!(rm.status(), Some(180));
    assert_eq!(rm.vias().count(), 1, "our Via is gone");

    let ok = answer(&fwd, 200, "b1", "sip:bob@192.168.1.2:5060");
    let out = n.send("10.0.0.2:5062", &ok);
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 1);
    assert_eq!(
        n.ep_state("10.0.0.2:5062"),
        PathState::DialogAndRegistration
    );
    // The caller is not registered: its path is kept for the dialog only.
    assert_eq!(n.ep_state("10.0.0.1:5061"), PathState::DialogOnly);

    // ACK and BYE from the caller: to Bob's NAT path, whatever the R-URI.
    let alice = "<sip:alice@example.com>;tag=a1";
    let bob = "<sip:bob@example.com>;tag=b1";
    let ack = in_dialog(
        "ACK",
        "sip:bob@192.168.1.2:5060",
        "10.0.0.1:5061",
        alice,
        bob,
        "call-c1",
        1,
        &[&rr],
    );
    let out = n.send("10.0.0.1:5061", &ack);
    let a_bytes = one_to(&out, "10.0.0.2:5062");
    let a = sip::parse(&a_bytes).unwrap();
    assert_eq!(a.method(), Some(Method::Ack));
    assert_eq!(super::forward::routes(&a).count(), 0, "our Route popped");

    // BYE from the callee: over the caller's path.
    let bye = in_dialog(
        "BYE",
        "sip:alice@10.0.0.1:5061",
        "192.168.1.2:5060",
        bob,
        alice,
        "call-c1",
        1,
        &[&rr],
    );
    let out = n.send("10.0.0.2:5062", &bye);
    let b = one_to(&out, "10.0.0.1:5061");
    let out = n.send(
        "10.0.0.1:5061",
        &answer(&b, 200, "a1", "sip:alice@10.0.0.1:5061"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.2:5062")), 200);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 0);
    assert_eq!(n.ep_state("10.0.0.2:5062"), PathState::RegistrationOnly);

    // A BYE for the ended dialog: 481, nothing forwarded.
    let out = n.send(
        "10.0.0.2:5062",
        &in_dialog(
            "BYE",
            "sip:alice@10.0.0.1:5061",
            "192.168.1.2:5060",
            bob,
            alice,
            "call-c1",
            2,
            &[&rr],
        ),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].0), 481);
    // Every transaction drains away once its timers have run.
    n.advance(n.now + 64_000);
    assert_eq!(
        n.ep.metric(crate::metrics::CoreMetric::ProxyTransactionsInFlight),
        0
    );
}

mod cluster;
mod hold;
mod media;
mod storm;

impl Net {
    fn dir(&self) -> Arc<Directory> {
        self.dir.clone()
    }

    fn ep_state(&self, a: &str) -> PathState {
        self.ep.path_state(&PathKey::new(0, addr(a)))
    }
}

#[test]
fn busy_is_acked_hop_by_hop_and_the_callers_ack_absorbed() {
    let mut n = Net::with(ProxySection::default());
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "c2", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let out = n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 486, "b2", "sip:bob@10.0.0.2:5062"),
    );
    let ack = one_to(&out, "10.0.0.2:5062");
    assert_eq!(sip::parse(&ack).unwrap().method(), Some(Method::Ack));
    let busy = one_to(&out, "10.0.0.1:5061");
    assert_eq!(status(&busy), 486);
    // The caller's ACK (same branch as its INVITE) stops here.
    let ack = String::from_utf8(invite("bob", "c2", ""))
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK")
        .replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=b2",
        );
    assert!(n.send("10.0.0.1:5061", ack.as_bytes()).is_empty());
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::CallsFailed4xx), 1);
}

#[test]
fn forking_cancels_the_branch_that_did_not_answer() {
    let mut n = Net::with(ProxySection::default());
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    n.register("bob", "10.0.0.3:5062", "10.0.0.3:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "c3", ""));
    assert_eq!(out.len(), 3);
    let f2 = one_to(&out, "10.0.0.2:5062");
    let f3 = one_to(&out, "10.0.0.3:5062");
    n.send(
        "10.0.0.3:5062",
        &answer(&f3, 180, "t3", "sip:bob@10.0.0.3:5062"),
    );
    let out = n.send(
        "10.0.0.2:5062",
        &answer(&f2, 200, "t2", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    let cancel_bytes = one_to(&out, "10.0.0.3:5062");
    let cancel = sip::parse(&cancel_bytes).unwrap().method();
    assert_eq!(cancel, Some(Method::Cancel));
    // Its 487 is ACKed by us and not forwarded.
    let out = n.send(
        "10.0.0.3:5062",
        &answer(&f3, 487, "t3", "sip:bob@10.0.0.3:5062"),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(sip::parse(&out[0].0).unwrap().method(), Some(Method::Ack));
}

#[test]
fn cancel_from_the_caller_reaches_the_ringing_branch() {
    let mut n = Net::with(ProxySection::default());
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let inv = invite("bob", "c4", "");
    let out = n.send("10.0.0.1:5061", &inv);
    let fwd = one_to(&out, "10.0.0.2:5062");
    n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 180, "b4", "sip:bob@10.0.0.2:5062"),
    );
    let cancel = String::from_utf8(inv)
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = n.send("10.0.0.1:5061", cancel.as_bytes());
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    let c_bytes = one_to(&out, "10.0.0.2:5062");
    let c = sip::parse(&c_bytes).unwrap();
    assert_eq!(c.method(), Some(Method::Cancel));
    let out = n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 487, "b4", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 487);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::CallsCancelled), 1);
}

#[test]
fn routing_answers() {
    let mut n = Net::with(ProxySection::default());
    let first = |out: Vec<Sent>| status(&out[0].0);
    // No binding.
    assert_eq!(
        first(n.send("10.0.0.1:5061", &invite("nobody", "d1", ""))),
        404
    );
    // Another domain, no upstream, unregistered caller: no open relay.
    let other = String::from_utf8(invite("x", "d2", ""))
        .unwrap()
        .replace("sip:x@example.com", "sip:x@other.net");
    assert_eq!(first(n.send("10.0.0.1:5061", other.as_bytes())), 403);
    // Proxy-Require we lack: 420 naming it. Require passes (100rel is the UAS's).
    let out = n.send(
        "10.0.0.1:5061",
        &invite("bob", "d3", "Proxy-Require: foo\r\n"),
    );
    let m = sip::parse(&out[0].0).unwrap();
    assert_eq!(m.status(), Some(420));
    assert_eq!(m.header(HeaderName::Unsupported), Some("foo"));
    let mailto = String::from_utf8(invite("x", "d4", ""))
        .unwrap()
        .replace("INVITE sip:x@example.com", "INVITE mailto:x@example.com");
    assert_eq!(first(n.send("10.0.0.1:5061", mailto.as_bytes())), 416);
    let mf0 = String::from_utf8(invite("x", "d5", ""))
        .unwrap()
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(first(n.send("10.0.0.1:5061", mf0.as_bytes())), 483);
    // A forged Route to a third party from a device.
    let forged = invite("bob", "d6", "Route: <sip:203.0.113.66;lr>\r\n");
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    assert_eq!(first(n.send("10.0.0.1:5061", &forged)), 403);
    // An in-dialog request with no token of ours.
    let stray = in_dialog(
        "BYE",
        "sip:bob@10.0.0.2",
        "10.0.0.1:5061",
        "<sip:a@example.com>;tag=1",
        "<sip:b@example.com>;tag=2",
        "zz",
        1,
        &[],
    );
    assert_eq!(first(n.send("10.0.0.1:5061", &stray)), 481);
}

#[test]
fn dead_bindings_get_480_and_the_upstream_falls_back_on_503() {
    let s = ProxySection {
        upstream: vec![addr("198.51.100.1:5060"), addr("198.51.100.2:5060")],
        trusted: vec!["10.9.0.0/16".into()],
        ..Default::default()
    };
    let mut n = Net::with(s);
    let other = String::from_utf8(invite("x", "e1", ""))
        .unwrap()
        .replace("sip:x@example.com", "sip:x@other.net");
    let out = n.send("10.9.0.1:5061", other.as_bytes());
    let p = one_to(&out, "198.51.100.1:5060");
    let out = n.send(
        "198.51.100.1:5060",
        &answer(&p, 503, "u1", "sip:x@198.51.100.1"),
    );
    let f = one_to(&out, "198.51.100.2:5060");
    assert_eq!(sip::parse(&f).unwrap().method(), Some(Method::Invite));
    assert!(
        out.iter().all(|(_, a)| *a != addr("10.9.0.1:5061")),
        "the 503 is not forwarded"
    );
    let out = n.send(
        "198.51.100.2:5060",
        &answer(&f, 200, "u2", "sip:x@198.51.100.2"),
    );
    assert_eq!(status(&one_to(&out, "10.9.0.1:5061")), 200);
}

#[test]
fn a_loop_is_refused_and_a_flood_is_capped() {
    let s = ProxySection {
        max_transactions: 8,
        ..Default::default()
    };
    let mut n = Net::with(s);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "l1", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    // The forwarded INVITE comes back to us with its first Request-URI
    // (a next hop that routes it back): 482. A spiral would change it.
    let back =
        String::from_utf8(fwd)
            .unwrap()
            .replacen("sip:bob@10.0.0.2:5062", "sip:bob@example.com", 1);
    let out = n.send("10.0.0.2:5062", back.as_bytes());
    assert_eq!(status(&out[0].0), 482);
    // One source gets at most a quarter of the table (2 here).
    let mut codes = Vec::new();
    for i in 0..5 {
        let out = n.send("10.0.0.7:5061", &invite("bob", &format!("f{i}"), ""));
        codes.push(status(&out[0].0));
    }
    assert_eq!(codes, [100, 100, 503, 503, 503]);
    // Another caller still gets through.
    let out = n.send("10.0.0.8:5061", &invite("bob", "g1", ""));
    assert_eq!(status(&out[0].0), 100);
}

#[test]
fn timer_c_and_max_call_end_what_lingers() {
    let s = ProxySection {
        timer_c_s: 10,
        max_call_s: 60,
        ..Default::default()
    };
    let mut n = Net::with(s);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "t1", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 180, "b", "sip:bob@10.0.0.2:5062"),
    );
    let out = n.advance(n.now + 10_000);
    let c_bytes = one_to(&out, "10.0.0.2:5062");
    let c = sip::parse(&c_bytes).unwrap();
    assert_eq!(c.method(), Some(Method::Cancel));
    // Answered call that outlives max_call_s: a BYE to each side.
    let out = n.send("10.0.0.1:5061", &invite("bob", "t2", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 200, "b", "sip:bob@10.0.0.2:5062"),
    );
    let start = n.now;
    let out = n.advance(start + 60_000);
    let byes: Vec<_> = out
        .iter()
        .filter(|(b, _)| sip::parse(b).unwrap().method() == Some(Method::Bye))
        .map(|(_, a)| *a)
        .collect();
    assert!(
        byes.contains(&addr("10.0.0.1:5061")) && byes.contains(&addr("10.0.0.2:5062")),
        "{byes:?}"
    );
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 0);
}

#[test]
fn a_dialog_of_another_core_is_handed_to_it() {
    let dir = Arc::new(Directory::new());
    let mut a = Net::core(0, ProxySection::default(), dir.clone());
    let mut b = Net::core(1, ProxySection::default(), dir);
    a.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = b.send("10.0.0.1:5061", &invite("bob", "h1", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    // Bob's 200 reaches core 0 (the kernel hashes his address there).
    a.ep.handle_datagram(
        a.now,
        0,
        addr("10.0.0.2:5062"),
        &answer(&fwd, 200, "b", "sip:bob@10.0.0.2:5062"),
    );
    let Some(Event::Handoff(h)) = a.ep.poll_event() else {
        panic!("a handoff");
    };
    assert_eq!(h.core, 1);
    b.ep.handle_command(b.now, crate::endpoint::Command::Datagram(h));
    assert_eq!(status(&one_to(&b.drain(), "10.0.0.1:5061")), 200);
    // The dialog on core 1 tells core 0 about Bob's path.
    let note = std::iter::from_fn(|| b.ep.poll_event())
        .find_map(|e| match e {
            Event::PathNote(n) => Some(n),
            _ => None,
        })
        .unwrap();
    assert_eq!((note.core, note.started), (0, true));
}

#[test]
fn with_auth_a_device_invite_is_challenged_with_407_and_the_answer_routed() {
    use crate::registrar::auth::{Authenticator, Credentials};
    use crate::sip::digest::{self, Algorithm};
    let creds = Credentials::from_passwords("tether", [("alice", "secret")]);
    let auth = Authenticator::new("tether".into(), Arc::new(creds), [1; 32], 300);
    let dir = Arc::new(Directory::new());
    let mut n = Net::build(0, ProxySection::default(), dir.clone(), Some(auth));
    // Bob's binding, put straight into the directory (his REGISTER would
    // need credentials too).
    let mut other = Net::core(1, ProxySection::default(), dir);
    other.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "p1", ""));
    let m = sip::parse(&out[0].0).unwrap();
    assert_eq!(m.status(), Some(407));
    let challenge = m.header_by_name("Proxy-Authenticate").unwrap().to_owned();
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let value = digest::authorization(&digest::Answer {
        alg: Algorithm::Md5,
        username: "alice",
        password: "secret",
        realm: "tether",
        nonce,
        opaque: None,
        method: "INVITE",
        uri: "sip:bob@example.com",
        qop_auth: Some(("00000001", "c0ffee")),
    });
    let header = format!("Proxy-Authorization: {value}\r\n");
    let out = n.send("10.0.0.1:5061", &invite("bob", "p2", &header));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let f = sip::parse(&fwd).unwrap();
    assert!(
        f.header(HeaderName::ProxyAuthorization).is_none(),
        "our credentials stop here"
    );
    // A wrong password: 403, nothing forwarded.
    let bad = value.replace("response=\"", "response=\"0");
    let out = n.send(
        "10.0.0.1:5061",
        &invite("bob", "p3", &format!("Proxy-Authorization: {bad}\r\n")),
    );
    assert!(
        matches!(status(&out[0].0), 403 | 400 | 407),
        "{}",
        text(&out[0].0)
    );
    assert!(out.iter().all(|(_, a)| *a != addr("10.0.0.2:5062")));
    // The trusted core is never challenged.
    let s = ProxySection {
        trusted: vec!["10.9.0.0/16".into()],
        ..Default::default()
    };
    let creds = Credentials::from_passwords("tether", [("alice", "secret")]);
    let auth = Authenticator::new("tether".into(), Arc::new(creds), [1; 32], 300);
    let mut t = Net::build(0, s, other.dir(), Some(auth));
    let out = t.send("10.9.0.1:5061", &invite("bob", "p4", ""));
    assert_eq!(status(&one_to(&out, "10.9.0.1:5061")), 100);
}

#[test]
fn a_routed_subscribe_makes_a_dialog_and_a_reinvite_keeps_it() {
    let mut n = Net::with(ProxySection::default());
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    // SUBSCRIBE for a package tether does not serve itself: routed.
    let sub = String::from_utf8(invite("bob", "sb1", "Event: presence\r\nExpires: 600\r\n"))
        .unwrap()
        .replace("INVITE sip", "SUBSCRIBE sip")
        .replace("1 INVITE", "1 SUBSCRIBE");
    let out = n.send("10.0.0.1:5061", sub.as_bytes());
    let fwd = one_to(&out, "10.0.0.2:5062");
    let f = sip::parse(&fwd).unwrap();
    assert_eq!(f.method(), Some(Method::Subscribe));
    assert_eq!(super::forward::record_routes(&f).count(), 1);
    let out = n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 200, "s1", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 1);

    // A call, then a re-INVITE from the callee through our Record-Route.
    let out = n.send("10.0.0.1:5061", &invite("bob", "ri1", ""));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let rr = super::forward::record_routes(&sip::parse(&fwd).unwrap())
        .next()
        .unwrap()
        .to_owned();
    n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 200, "r1", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 2);
    let alice = "<sip:alice@example.com>;tag=a1";
    let bob = "<sip:bob@example.com>;tag=r1";
    let reinvite = in_dialog(
        "INVITE",
        "sip:alice@10.0.0.1:5061",
        "10.0.0.2:5062",
        bob,
        alice,
        "call-ri1",
        5,
        &[&rr],
    );
    let out = n.send("10.0.0.2:5062", &reinvite);
    assert_eq!(status(&one_to(&out, "10.0.0.2:5062")), 100);
    let to_alice = one_to(&out, "10.0.0.1:5061");
    let r = sip::parse(&to_alice).unwrap();
    assert_eq!(r.method(), Some(Method::Invite));
    assert_eq!(
        super::forward::record_routes(&r).count(),
        0,
        "no Record-Route in a dialog"
    );
    let out = n.send(
        "10.0.0.1:5061",
        &answer(&to_alice, 200, "a1", "sip:alice@10.0.0.1:5061"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.2:5062")), 200);
    assert_eq!(
        n.ep.metric(crate::metrics::CoreMetric::Dialogs),
        2,
        "a re-INVITE keeps its dialog"
    );
}

#[test]
fn when_two_forks_answer_both_2xx_are_forwarded_and_each_is_a_dialog() {
    let mut n = Net::with(ProxySection::default());
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    n.register("bob", "10.0.0.3:5062", "10.0.0.3:5062");
    let out = n.send("10.0.0.1:5061", &invite("bob", "two", ""));
    let f2 = one_to(&out, "10.0.0.2:5062");
    let f3 = one_to(&out, "10.0.0.3:5062");
    let out = n.send(
        "10.0.0.2:5062",
        &answer(&f2, 200, "x2", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    // The other fork answers before our CANCEL reaches it: RFC 3261 §16.7
    // forwards it too; the caller ACKs and BYEs it, through us.
    let out = n.send(
        "10.0.0.3:5062",
        &answer(&f3, 200, "x3", "sip:bob@10.0.0.3:5062"),
    );
    assert_eq!(status(&one_to(&out, "10.0.0.1:5061")), 200);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 2);
    let rr = super::forward::record_routes(&sip::parse(&f3).unwrap())
        .next()
        .unwrap()
        .to_owned();
    let bye = in_dialog(
        "BYE",
        "sip:bob@10.0.0.3:5062",
        "10.0.0.1:5061",
        "<sip:alice@example.com>;tag=a1",
        "<sip:bob@example.com>;tag=x3",
        "call-two",
        2,
        &[&rr],
    );
    let out = n.send("10.0.0.1:5061", &bye);
    assert_eq!(
        sip::parse(&one_to(&out, "10.0.0.3:5062")).unwrap().method(),
        Some(Method::Bye)
    );
}
