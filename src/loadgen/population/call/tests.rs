//! The calls on a fake clock: the test plays a record-routing proxy
//! between the population's callers and callees (its Via on requests it
//! forwards, its Record-Route on INVITEs, its Via off responses).

use std::net::Ipv4Addr;
use std::time::Duration;

use super::super::tests::{answer, config, drain, population, summary, tick, Sent, MS, SERVER};
use super::super::{addr_of, Event, Population};
use crate::loadgen::{CallPlan, CallReport, LoadConfig, Scenario};
use crate::sip::{HeaderName, Method};

const BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);
const PROXY_VIA: &str = "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKpx\r\n";
const RR: &str = "<sip:127.0.0.1:5060;lr>";

/// `callees` and `callers`, one call a second for a second, held 1 s;
/// `f` changes the plan.
fn call_config(callees: u32, callers: u32, f: impl FnOnce(&mut CallPlan)) -> LoadConfig {
    let mut plan = CallPlan {
        callers,
        rate: 1,
        duration: Duration::from_secs(1),
        hold: Duration::from_secs(1),
        ring: Duration::from_millis(200),
        ..CallPlan::default()
    };
    f(&mut plan);
    LoadConfig {
        scenario: Scenario::Call,
        call: Some(plan),
        hold: Duration::ZERO,
        ..config(callees)
    }
}

/// Registers every endpoint (each REGISTER answered 200) and runs the
/// clock until the registrations settle; returns when the calls begin.
fn registered(p: &mut Population) -> u64 {
    for r in tick(p, 0) {
        answer(p, MS, &r, 200, &[]);
    }
    tick(p, 2 * MS);
    assert_eq!(p.poll_event(), Some(Event::Settled));
    3 * MS
}

/// A datagram from the proxy to endpoint `i`.
fn deliver(p: &mut Population, now: u64, i: u32, bytes: &[u8]) -> Vec<Sent> {
    let (socket, ip) = addr_of(BASE, 2, i);
    p.handle_datagram(now, socket, ip, SERVER, bytes);
    drain(p)
}

/// The proxy forwards a request to endpoint `i`.
fn forward_request(p: &mut Population, now: u64, req: &Sent, i: u32) -> Vec<Sent> {
    let text = String::from_utf8(req.bytes.clone()).unwrap();
    let (line, rest) = text.split_once("\r\n").unwrap();
    let rr = if line.starts_with("INVITE") {
        format!("Record-Route: {RR}\r\n")
    } else {
        String::new()
    };
    deliver(
        p,
        now,
        i,
        format!("{line}\r\n{PROXY_VIA}{rr}{rest}").as_bytes(),
    )
}

/// The proxy forwards a response to endpoint `i`.
fn forward_response(p: &mut Population, now: u64, resp: &Sent, i: u32) -> Vec<Sent> {
    let text = String::from_utf8(resp.bytes.clone()).unwrap();
    let back = text.replacen(PROXY_VIA, "", 1);
    assert_ne!(back, text, "the proxy's Via is on top");
    deliver(p, now, i, back.as_bytes())
}

/// The proxy's 100 Trying to `req`.
fn trying_to(req: &Sent) -> Vec<u8> {
    let mut buf = Vec::new();
    crate::sip::writer::response_to(&mut buf, &req.msg(), 100, "Trying", None, None).finish(None);
    buf
}

fn codes(sent: &[Sent]) -> Vec<u16> {
    sent.iter().map(|s| s.msg().status().unwrap_or(0)).collect()
}

fn method(s: &Sent) -> Method<'_> {
    s.msg().method().expect("a request")
}

fn branch(s: &Sent) -> String {
    s.msg().top_via().unwrap().branch().unwrap().to_owned()
}

fn calls(p: Population) -> CallReport {
    summary(p).calls.expect("a call run reports its calls")
}

#[test]
fn a_whole_call_invite_ringing_answer_ack_hold_bye() {
    let mut p = population(&call_config(1, 1, |_| {}));
    let t0 = registered(&mut p);
    let sent = tick(&mut p, t0);
    assert_eq!(sent.len(), 1);
    let invite = &sent[0];
    let m = invite.msg();
    assert_eq!(method(invite), Method::Invite);
    // The caller is endpoint 1 (socket 1), calling the callee's AOR.
    assert_eq!((invite.socket, invite.src, invite.dst), (1, BASE, SERVER));
    assert_eq!(m.request_uri_raw(), Some("sip:u0@127.0.0.1"));
    assert_eq!(
        invite.header("Contact").unwrap(),
        "<sip:u1@127.1.0.1:40001>"
    );
    assert!(std::str::from_utf8(m.body).unwrap().contains("m=audio"));
    assert!(invite.header("X-Bench-Answer").is_none());

    // The callee rings and answers from its own address and socket.
    let answers = forward_request(&mut p, t0 + MS, invite, 0);
    assert_eq!(codes(&answers), [180, 200]);
    let ok = &answers[1];
    assert_eq!((ok.socket, ok.src, ok.dst), (0, BASE, SERVER));
    let okm = ok.msg();
    assert_eq!(
        okm.header_values(HeaderName::RecordRoute)
            .collect::<Vec<_>>(),
        [RR]
    );
    assert_eq!(ok.header("Contact").unwrap(), "<sip:u0@127.1.0.1:40000>");
    assert_eq!(okm.header_values(HeaderName::Via).count(), 2);
    let tag = okm.to().unwrap().tag().unwrap().to_owned();
    assert_eq!(ok.header("Content-Type").unwrap(), "application/sdp");
    assert!(!okm.body.is_empty());

    // The caller ACKs the 200 along the route set, to the remote target.
    assert!(forward_response(&mut p, t0 + 2 * MS, &answers[0], 1).is_empty());
    let ack = forward_response(&mut p, t0 + 3 * MS, ok, 1);
    assert_eq!(ack.len(), 1);
    let a = ack[0].msg();
    assert_eq!(method(&ack[0]), Method::Ack);
    assert_eq!(a.request_uri_raw(), Some("sip:u0@127.1.0.1:40000"));
    assert_eq!(ack[0].header("Route").unwrap(), RR);
    assert_eq!(a.cseq().unwrap().seq, 1);
    assert_eq!(a.to().unwrap().tag(), Some(tag.as_str()));
    assert_ne!(
        branch(&ack[0]),
        branch(invite),
        "a 2xx ACK is a new transaction"
    );
    assert_eq!(ack[0].dst, SERVER, "the first route");
    assert!(forward_request(&mut p, t0 + 4 * MS, &ack[0], 0).is_empty());

    // Held one second (no 200 resent: it was ACKed), then BYE.
    assert!(tick(&mut p, t0 + 1_002 * MS).is_empty());
    let bye = tick(&mut p, t0 + 1_003 * MS);
    assert_eq!(bye.len(), 1);
    let b = bye[0].msg();
    assert_eq!(method(&bye[0]), Method::Bye);
    assert_eq!(b.request_uri_raw(), Some("sip:u0@127.1.0.1:40000"));
    assert_eq!(bye[0].header("Route").unwrap(), RR);
    assert_eq!(b.cseq().unwrap().seq, 2);
    assert_eq!(b.to().unwrap().tag(), Some(tag.as_str()));
    let bye_ok = forward_request(&mut p, t0 + 1_004 * MS, &bye[0], 0);
    assert_eq!(codes(&bye_ok), [200]);
    assert!(forward_response(&mut p, t0 + 1_006 * MS, &bye_ok[0], 1).is_empty());

    tick(&mut p, t0 + 1_007 * MS);
    assert!(p.is_finished(), "every call placed and over");
    let c = calls(p);
    assert_eq!(
        (c.attempted, c.answered, c.failed, c.unfinished),
        (1, 1, 0, 0)
    );
    assert_eq!((c.bye_ok, c.bye_failed), (1, 0));
    assert_eq!(c.codes.get(&200), Some(&1));
    assert!(
        (3_000..=3_003).contains(&c.setup_latency_us.p50),
        "{:?}",
        c.setup_latency_us
    );
    assert!(
        (3_000..=3_003).contains(&c.bye_rtt_us.p50),
        "{:?}",
        c.bye_rtt_us
    );
    assert_eq!(c.invite_retransmissions + c.callee_retransmissions, 0);
}

#[test]
fn retransmitted_invites_and_200s_are_absorbed() {
    let mut p = population(&call_config(1, 1, |_| {}));
    let t0 = registered(&mut p);
    let invite = tick(&mut p, t0).remove(0);
    // Unanswered, the INVITE goes again after T1, byte for byte.
    assert!(tick(&mut p, t0 + 499 * MS).is_empty());
    let again = tick(&mut p, t0 + 500 * MS);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].bytes, invite.bytes);

    let answers = forward_request(&mut p, t0 + 501 * MS, &invite, 0);
    assert_eq!(codes(&answers), [180, 200]);
    // The retransmission reaches the callee too: the same 200 again.
    let repeat = forward_request(&mut p, t0 + 502 * MS, &again[0], 0);
    assert_eq!(repeat.len(), 1);
    assert_eq!(repeat[0].bytes, answers[1].bytes);

    let ack = forward_response(&mut p, t0 + 503 * MS, &answers[1], 1);
    let ack_again = forward_response(&mut p, t0 + 504 * MS, &repeat[0], 1);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack_again.len(), 1, "a repeated 200 is ACKed again");
    assert_eq!(ack_again[0].bytes, ack[0].bytes);
    assert!(forward_request(&mut p, t0 + 505 * MS, &ack[0], 0).is_empty());
    // No more INVITEs (the 200 stopped them) and no 200s (the ACK did).
    assert!(tick(&mut p, t0 + 1_502 * MS).is_empty());

    let c = calls(p);
    assert_eq!((c.attempted, c.answered), (1, 1), "answered once");
    assert_eq!((c.invite_retransmissions, c.invites_absorbed), (1, 1));
    assert!(
        (503_000..=503_300).contains(&c.setup_latency_us.p50),
        "from the first INVITE"
    );
}

#[test]
fn a_lost_200_is_sent_again_on_t1_doubling_until_the_ack() {
    let cfg = call_config(1, 1, |c| c.hold = Duration::from_secs(60));
    let mut p = population(&cfg);
    let t0 = registered(&mut p);
    let invite = tick(&mut p, t0).remove(0);
    let answers = forward_request(&mut p, t0 + MS, &invite, 0);
    let ok = &answers[1];
    assert!(forward_response(&mut p, t0 + 2 * MS, &answers[0], 1).is_empty());
    // The 200 is lost on the way to the caller.
    let mut resent = Vec::new();
    for now in (t0 + 3 * MS..t0 + 4_000 * MS).step_by(MS as usize) {
        for s in tick(&mut p, now) {
            assert_eq!(s.bytes, ok.bytes, "the same 200");
            resent.push((now - t0) / MS);
        }
    }
    assert_eq!(resent, [501, 1_501, 3_501], "T1, then doubling");
    let ack = forward_response(&mut p, t0 + 4_000 * MS, ok, 1);
    assert!(forward_request(&mut p, t0 + 4_001 * MS, &ack[0], 0).is_empty());
    for now in (t0 + 4_002 * MS..t0 + 9_000 * MS).step_by(10 * MS as usize) {
        assert!(tick(&mut p, now).is_empty(), "ACKed: no more");
    }
    let c = calls(p);
    assert_eq!(
        (c.answered, c.callee_retransmissions, c.ack_timeouts),
        (1, 3, 0)
    );
}

#[test]
fn a_call_nobody_completes_ends_on_both_sides_within_64_t1() {
    let mut p = population(&call_config(1, 1, |_| {}));
    let t0 = registered(&mut p);
    let invite = tick(&mut p, t0).remove(0);
    let answers = forward_request(&mut p, t0 + MS, &invite, 0);
    assert!(forward_response(&mut p, t0 + 2 * MS, &answers[0], 1).is_empty());
    // Neither the 200 nor anything after it arrives.
    let mut resends = 0;
    for now in (t0 + 10 * MS..t0 + 40_000 * MS).step_by(10 * MS as usize) {
        resends += tick(&mut p, now).len();
        if p.is_finished() {
            break;
        }
    }
    assert!(p.is_finished(), "the caller gave up and the callee stopped");
    assert_eq!(resends, 10, "0.5, 1.5, 3.5, 7.5, then every 4 s to 32 s");
    let c = calls(p);
    assert_eq!(
        (c.answered, c.failed, c.timeouts, c.ack_timeouts),
        (0, 1, 1, 1)
    );
    assert_eq!(c.codes.get(&408), Some(&1));
}

#[test]
fn a_call_to_cancel_rings_then_is_cancelled_and_its_487_acked() {
    let mut p = population(&call_config(1, 1, |c| c.cancel_share = 100.0));
    let t0 = registered(&mut p);
    let invite = tick(&mut p, t0).remove(0);
    assert_eq!(invite.header("X-Bench-Answer").unwrap(), "ring");
    // The proxy's 100 Trying is not ringing yet.
    assert!(deliver(&mut p, t0, 1, &trying_to(&invite)).is_empty());
    assert!(
        tick(&mut p, t0 + 300 * MS).is_empty(),
        "no CANCEL before the 180"
    );
    let t0 = t0 + 300 * MS;
    let ring = forward_request(&mut p, t0 + MS, &invite, 0);
    assert_eq!(codes(&ring), [180], "rings, and waits");
    assert!(forward_response(&mut p, t0 + 2 * MS, &ring[0], 1).is_empty());

    // After the ring time the caller CANCELs: same Request-URI and branch.
    assert!(tick(&mut p, t0 + 201 * MS).is_empty());
    let cancel = tick(&mut p, t0 + 202 * MS);
    assert_eq!(cancel.len(), 1);
    let cm = cancel[0].msg();
    assert_eq!(method(&cancel[0]), Method::Cancel);
    assert_eq!(cm.request_uri_raw(), invite.msg().request_uri_raw());
    assert_eq!(branch(&cancel[0]), branch(&invite));
    assert_eq!(cm.cseq().unwrap().seq, 1);
    assert!(cm.to().unwrap().tag().is_none());
    assert_eq!(cancel[0].dst, SERVER);

    // The callee answers the CANCEL 200 and the INVITE 487.
    let answers = forward_request(&mut p, t0 + 203 * MS, &cancel[0], 0);
    assert_eq!(codes(&answers), [200, 487]);
    let method_of = |s: &Sent| s.msg().cseq().unwrap().method.as_str().to_owned();
    assert_eq!(method_of(&answers[0]), "CANCEL");
    assert_eq!(method_of(&answers[1]), "INVITE");
    assert!(forward_response(&mut p, t0 + 204 * MS, &answers[0], 1).is_empty());
    // The caller ACKs the 487 in the INVITE's transaction, hop by hop.
    let ack = forward_response(&mut p, t0 + 205 * MS, &answers[1], 1);
    assert_eq!(ack.len(), 1);
    let am = ack[0].msg();
    assert_eq!(method(&ack[0]), Method::Ack);
    assert_eq!(branch(&ack[0]), branch(&invite));
    assert_eq!(am.request_uri_raw(), invite.msg().request_uri_raw());
    assert_eq!(am.to().unwrap().tag(), answers[1].msg().to().unwrap().tag());
    assert_eq!(ack[0].dst, SERVER);
    assert!(forward_request(&mut p, t0 + 206 * MS, &ack[0], 0).is_empty());

    tick(&mut p, t0 + 207 * MS);
    assert!(p.is_finished());
    let c = calls(p);
    assert_eq!(
        (c.cancelled, c.cancel_ok, c.answered, c.failed),
        (1, 1, 0, 0)
    );
    assert_eq!(c.codes.get(&487), Some(&1));
}

#[test]
fn a_busy_callee_answers_486_until_acked_and_a_late_486_is_acked_statelessly() {
    let mut p = population(&call_config(1, 1, |c| c.busy_share = 100.0));
    let t0 = registered(&mut p);
    let invite = tick(&mut p, t0).remove(0);
    assert_eq!(invite.header("X-Bench-Answer").unwrap(), "busy");
    let busy = forward_request(&mut p, t0 + MS, &invite, 0);
    assert_eq!(codes(&busy), [486], "no ringing");
    // Lost: sent again after T1 (as the caller sends its INVITE again).
    let again = tick(&mut p, t0 + 501 * MS);
    assert_eq!(again.len(), 2);
    let again = again.iter().find(|s| s.msg().status() == Some(486));
    assert_eq!(again.unwrap().bytes, busy[0].bytes);
    let ack = forward_response(&mut p, t0 + 502 * MS, again.unwrap(), 1);
    assert_eq!(ack.len(), 1);
    assert_eq!(method(&ack[0]), Method::Ack);
    assert_eq!(branch(&ack[0]), branch(&invite));
    assert!(forward_request(&mut p, t0 + 503 * MS, &ack[0], 0).is_empty());
    // The call is over on both sides; the first 486 arrives late.
    let late = forward_response(&mut p, t0 + 504 * MS, &busy[0], 1);
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0].bytes, ack[0].bytes,
        "the same ACK, from the response alone"
    );
    tick(&mut p, t0 + 505 * MS);
    assert!(p.is_finished());
    let c = calls(p);
    assert_eq!(
        (c.busy, c.failed, c.callee_retransmissions, c.stale),
        (1, 0, 1, 1)
    );
    assert_eq!(c.codes.get(&486), Some(&1));
}

#[test]
fn calls_are_paced_and_go_round_robin_over_callees_and_callers() {
    let cfg = call_config(2, 3, |c| {
        c.rate = 1_000;
        c.duration = Duration::from_millis(10);
    });
    let mut p = population(&cfg);
    let t0 = registered(&mut p);
    let mut invites = tick(&mut p, t0);
    assert_eq!(invites.len(), 1, "call 0 at once");
    invites.extend(tick(&mut p, t0 + 4 * MS));
    assert_eq!(invites.len(), 5, "one per millisecond");
    invites.extend(tick(&mut p, t0 + 20 * MS));
    assert_eq!(invites.len(), 10, "rate × duration in all");
    assert!(tick(&mut p, t0 + 30 * MS).is_empty());
    let users: Vec<(String, String)> = invites
        .iter()
        .map(|s| {
            let m = s.msg();
            let from = m.from().unwrap().uri_raw.to_owned();
            (m.request_uri_raw().unwrap().to_owned(), from)
        })
        .collect();
    for (q, (to, from)) in users.iter().enumerate() {
        assert_eq!(to, &format!("sip:u{}@127.0.0.1", q % 2));
        assert_eq!(from, &format!("sip:u{}@127.0.0.1", 2 + q % 3));
    }
}
