//! Anchoring through the proxy: the SDP of offers and answers rewritten to
//! the relay's ports both ways, sessions freed with their calls, and the
//! refusals (488 for a body that cannot be anchored, 503 without ports).

use super::*;
use crate::media::table::TableConfig;
use crate::media::{Mode, Table};

const RELAY_IP: &str = "192.0.2.1";

impl Net {
    /// A core whose proxy anchors per `mode`, with `pairs` relay pairs.
    fn media(mode: Mode, pairs: u16, timeout_ms: u64) -> Net {
        Net::media_with(mode, pairs, timeout_ms, |_| {})
    }

    /// [`Net::media`] with the proxy's configuration tweaked.
    fn media_with(
        mode: Mode,
        pairs: u16,
        timeout_ms: u64,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> Net {
        let mut n = Net::with(ProxySection::default());
        let dir = n.dir.clone();
        let mut cfg = ProxyConfig::from_section(
            &ProxySection::default(),
            &["example.com".to_string()],
            Default::default(),
        );
        cfg.media = mode;
        tweak(&mut cfg);
        let proxy = Proxy::new(0, Arc::new(cfg), dir, [3; 32], &[addr(TETHER)], 9);
        let table = Table::new(TableConfig {
            addr: RELAY_IP.parse().unwrap(),
            timeout_ms,
            max_pairs: usize::from(pairs),
            ..Default::default()
        });
        let ep = std::mem::replace(&mut n.ep, Net::with(ProxySection::default()).ep);
        n.ep = ep.with_proxy(proxy).with_media(table);
        let ports: Vec<u16> = (0..pairs).map(|i| 40000 + 2 * i).collect();
        n.ep.media_opened(&ports);
        n
    }

    fn sessions(&self) -> usize {
        self.ep.media().sessions()
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
}

fn invite_sdp(branch: &str, body: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5061;branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\n\
Call-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@10.0.0.1:5061>\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `resp` (a UAS answer without body) with `body` as SDP.
fn with_body(resp: &[u8], body: &str) -> Vec<u8> {
    let s = String::from_utf8_lossy(resp);
    let head = s.replace("Content-Length: 0\r\n", "");
    let head = head.trim_end_matches("\r\n");
    format!(
        "{head}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The connection address and port of the first stream of a message's SDP.
fn media_of(msg: &[u8]) -> (String, u16) {
    let m = sip::parse(msg).unwrap();
    assert_eq!(
        m.header(HeaderName::ContentLength)
            .map(|v| v.trim().parse::<usize>().unwrap()),
        Some(m.body.len()),
        "Content-Length matches the rewritten body"
    );
    let s = crate::media::sdp::parse(m.body).unwrap();
    (s.streams[0].addr.unwrap().to_string(), s.streams[0].port)
}

#[test]
fn a_natted_callee_gets_the_call_anchored_both_ways_and_the_ports_back_at_bye() {
    let mut n = Net::media(Mode::Nat, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "192.168.1.2:5060");
    let out = n.send("10.0.0.1:5061", &invite_sdp("m1", &sdp("10.0.0.1", 7000)));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let (ip, to_bob) = media_of(&fwd);
    assert_eq!(ip, RELAY_IP);
    assert!((40000..40016).contains(&to_bob));
    assert_eq!(n.sessions(), 1);

    let ok = with_body(
        &answer(&fwd, 200, "b1", "sip:bob@192.168.1.2:5060"),
        &sdp("192.168.1.2", 8000),
    );
    let out = n.send("10.0.0.2:5062", &ok);
    let (ip, to_alice) = media_of(&one_to(&out, "10.0.0.1:5061"));
    assert_eq!(ip, RELAY_IP);
    assert_ne!(to_alice, to_bob);
    let calls = n.ep.proxy().dialog_list(n.now, n.ep.media());
    assert_eq!(calls[0].media.len(), 1);
    assert_eq!(
        calls[0].media[0].legs[1].signalled,
        Some(addr("192.168.1.2:8000"))
    );

    // The relay moves packets between the two: Bob (NATed) from his mapping.
    let a_leg = u32::from(to_alice - 40000);
    let b_leg = u32::from(to_bob - 40000);
    let pkt = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9];
    let v = n.ep.relay(2_000_000, b_leg, addr("10.0.0.2:40500"), &pkt);
    assert_eq!(
        v,
        crate::media::Verdict::Forward {
            sock: a_leg,
            to: addr("10.0.0.1:7000")
        }
    );
    let v = n.ep.relay(2_010_000, a_leg, addr("10.0.0.1:7000"), &pkt);
    assert_eq!(
        v,
        crate::media::Verdict::Forward {
            sock: b_leg,
            to: addr("10.0.0.2:40500")
        }
    );

    let rr = crate::proxy::forward::record_routes(&sip::parse(&fwd).unwrap())
        .next()
        .unwrap()
        .to_owned();
    let (alice, bob) = (
        "<sip:alice@example.com>;tag=a1",
        "<sip:bob@example.com>;tag=b1",
    );
    let bye = in_dialog(
        "BYE",
        "sip:bob@192.168.1.2:5060",
        "10.0.0.1:5061",
        alice,
        bob,
        "call-m1",
        2,
        &[&rr],
    );
    let out = n.send("10.0.0.1:5061", &bye);
    let b = one_to(&out, "10.0.0.2:5062");
    n.send(
        "10.0.0.2:5062",
        &answer(&b, 200, "b1", "sip:bob@192.168.1.2:5060"),
    );
    assert_eq!(n.sessions(), 0, "the BYE's answer frees the session");
    assert_eq!(
        n.ep.metric(crate::metrics::CoreMetric::MediaCallsAnchored),
        1
    );
}

#[test]
fn a_call_between_parties_not_behind_nat_is_not_anchored_in_nat_mode() {
    let mut n = Net::media(Mode::Nat, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let body = sdp("10.0.0.1", 7000);
    let out = n.send("10.0.0.1:5061", &invite_sdp("m2", &body));
    let fwd = one_to(&out, "10.0.0.2:5062");
    assert_eq!(media_of(&fwd), ("10.0.0.1".to_string(), 7000));
    assert_eq!(n.sessions(), 0);
}

#[test]
fn a_body_that_cannot_be_anchored_gets_488_with_a_warning_and_goes_nowhere() {
    let mut n = Net::media(Mode::Always, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send(
        "10.0.0.1:5061",
        &invite_sdp("m3", "v=0\r\nm=audio seven RTP/AVP 0\r\n"),
    );
    assert_eq!(out.len(), 1, "{out:#?}");
    let m = sip::parse(&out[0].0).unwrap();
    assert_eq!(m.status(), Some(488));
    let warning = m
        .headers()
        .find(|h| h.raw_name.eq_ignore_ascii_case("Warning"));
    assert!(
        warning.is_some_and(|w| w.value.starts_with("399 ")),
        "{}",
        text(&out[0].0)
    );
    assert_eq!(n.sessions(), 0);
    // Not SDP at all: the same.
    let other = String::from_utf8(invite_sdp("m4", "hello"))
        .unwrap()
        .replace("application/sdp", "text/plain");
    let out = n.send("10.0.0.1:5061", other.as_bytes());
    assert_eq!(status(&out[0].0), 488);
}

#[test]
fn no_free_relay_pair_is_503_and_counted() {
    // One stream takes two pairs: room for one call.
    let mut n = Net::media(Mode::Always, 2, 60_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite_sdp("m5", &sdp("10.0.0.1", 7000)));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite_sdp("m6", &sdp("10.0.0.1", 7002)));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].0), 503);
    assert_eq!(
        n.ep.metric(crate::metrics::CoreMetric::MediaPortsExhausted),
        1
    );
    // A failed call frees its pairs at once (into quarantine, not after
    // the transaction's 32 s linger): after the quarantine the next gets them.
    n.send(
        "10.0.0.2:5062",
        &answer(&fwd, 486, "b5", "sip:bob@10.0.0.2:5062"),
    );
    assert_eq!(n.sessions(), 0);
    n.now += 6_000;
    let out = n.send("10.0.0.1:5061", &invite_sdp("m7", &sdp("10.0.0.1", 7004)));
    assert_eq!(media_of(&one_to(&out, "10.0.0.2:5062")).0, RELAY_IP);
}

#[test]
fn late_offer_in_the_200_and_answer_in_the_ack_are_both_anchored() {
    let mut n = Net::media(Mode::Always, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let inv = String::from_utf8(invite_sdp("m8", ""))
        .unwrap()
        .replace("Content-Type: application/sdp\r\n", "");
    let out = n.send("10.0.0.1:5061", inv.as_bytes());
    let fwd = one_to(&out, "10.0.0.2:5062");
    assert!(sip::parse(&fwd).unwrap().body.is_empty());
    assert_eq!(n.sessions(), 1, "anchored without an offer yet");
    let ok = with_body(
        &answer(&fwd, 200, "b8", "sip:bob@10.0.0.2:5062"),
        &sdp("10.0.0.2", 8000),
    );
    let out = n.send("10.0.0.2:5062", &ok);
    let (ip, _) = media_of(&one_to(&out, "10.0.0.1:5061"));
    assert_eq!(ip, RELAY_IP);
    let rr = crate::proxy::forward::record_routes(&sip::parse(&fwd).unwrap())
        .next()
        .unwrap()
        .to_owned();
    let ack = String::from_utf8(in_dialog(
        "ACK",
        "sip:bob@10.0.0.2:5062",
        "10.0.0.1:5061",
        "<sip:alice@example.com>;tag=a1",
        "<sip:bob@example.com>;tag=b8",
        "call-m8",
        1,
        &[&rr],
    ))
    .unwrap();
    let answer_sdp = sdp("10.0.0.1", 7000);
    let ack = ack.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer_sdp}",
            answer_sdp.len()
        ),
    );
    let out = n.send("10.0.0.1:5061", ack.as_bytes());
    let (ip, port) = media_of(&one_to(&out, "10.0.0.2:5062"));
    assert_eq!(ip, RELAY_IP);
    assert!((40000..40016).contains(&port));
}

#[test]
fn an_answered_call_without_media_is_ended_with_a_bye_to_both() {
    let mut n = Net::media(Mode::Always, 8, 5_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite_sdp("m9", &sdp("10.0.0.1", 7000)));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let ok = with_body(
        &answer(&fwd, 200, "b9", "sip:bob@10.0.0.2:5062"),
        &sdp("10.0.0.2", 8000),
    );
    n.send("10.0.0.2:5062", &ok);
    let out = n.advance(n.now + 8_000);
    let byes: Vec<_> = out
        .iter()
        .filter(|(b, _)| sip::parse(b).unwrap().method() == Some(Method::Bye))
        .map(|(_, to)| *to)
        .collect();
    assert!(
        byes.contains(&addr("10.0.0.1:5061")) && byes.contains(&addr("10.0.0.2:5062")),
        "{out:#?}"
    );
    assert_eq!(n.sessions(), 0);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::MediaTimeouts), 1);
    assert_eq!(n.ep.metric(crate::metrics::CoreMetric::Dialogs), 0);
}

#[test]
fn an_offer_with_ice_is_left_to_ice_in_nat_mode_but_anchored_in_always() {
    let ice = format!(
        "{}a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
         a=candidate:1 1 UDP 2130706431 192.168.1.5 7000 typ host\r\n",
        sdp("192.168.1.5", 7000)
    );
    let mut n = Net::media(Mode::Nat, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "192.168.1.2:5060");
    let out = n.send("10.0.0.1:5061", &invite_sdp("i1", &ice));
    let fwd = one_to(&out, "10.0.0.2:5062");
    assert!(
        text(&fwd).contains("a=candidate:1"),
        "ICE kept, not anchored"
    );
    assert_eq!(n.sessions(), 0);
    let mut n = Net::media(Mode::Always, 8, 60_000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let out = n.send("10.0.0.1:5061", &invite_sdp("i2", &ice));
    let fwd = one_to(&out, "10.0.0.2:5062");
    assert!(!text(&fwd).contains("a=candidate"), "anchored: ICE removed");
    assert_eq!(media_of(&fwd).0, RELAY_IP);
}

/// A held call's callee is a device behind a NAT (its Contact is not its
/// path): the call is anchored when it is held, before any branch exists,
/// and the INVITE the woken device gets offers the relay.
#[test]
fn a_held_call_to_a_device_behind_a_nat_is_anchored_when_held() {
    use super::hold::{asleep_bob, events, hold_settings, statuses_to};
    let mut n = Net::media_with(Mode::Nat, 8, 600_000, |cfg| {
        cfg.hold = Some(Arc::new(hold_settings()));
    });
    n.ep.set_unix_epoch(1_800_000_000_000);
    asleep_bob(&mut n);
    // The caller is not behind a NAT: its SDP and Contact are its source.
    let out = n.send("10.0.0.1:5061", &invite_sdp("h1", &sdp("10.0.0.1", 4000)));
    assert_eq!(statuses_to(&out, "10.0.0.1:5061"), vec![100, 180]);
    assert_eq!(n.sessions(), 1, "anchored at hold time");
    events(&mut n);
    let woken = "203.0.113.5:4001";
    let reg = "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKrb2;rport\r\n\
From: <sip:bob@example.com>;tag=r1\r\nTo: <sip:bob@example.com>\r\nCall-ID: reg-bob\r\n\
CSeq: 2 REGISTER\r\nContact: <sip:bob@10.0.0.2:5062>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n\r\n";
    n.send(woken, reg.as_bytes());
    for e in events(&mut n) {
        if let Event::Registered(aor) = e {
            n.ep.handle_command(n.now, crate::endpoint::Command::Registered(aor));
        }
    }
    let out = n.drain();
    let fwd = one_to(&out, woken);
    assert_eq!(
        media_of(&fwd).0,
        RELAY_IP,
        "{}",
        String::from_utf8_lossy(&fwd)
    );
}

/// The routing webhook names a callee behind a NAT: the call, which took
/// its media decision before any target was known, is anchored when the
/// answer sends it there.
#[test]
fn a_call_routed_by_the_webhook_to_a_device_behind_a_nat_is_anchored() {
    use super::hold::{answer_to, callouts, events, statuses_to};
    use crate::hooks::Purpose;
    let mut n = Net::media_with(Mode::Nat, 8, 600_000, |cfg| {
        cfg.route = Some(crate::proxy::hold::RouteSettings {
            url: "http://127.0.0.1:9/route".into(),
            timeout_ms: 1000,
        });
    });
    n.register("carol", "203.0.113.7:4000", "10.0.0.7:5060");
    events(&mut n);
    let out = n.send("10.0.0.1:5061", &invite_sdp("w1", &sdp("10.0.0.1", 4000)));
    assert_eq!(statuses_to(&out, "10.0.0.1:5061"), vec![100]);
    assert_eq!(n.sessions(), 0, "nothing says the call needs the relay yet");
    let evs = events(&mut n);
    let r = callouts(&evs, Purpose::Route);
    assert_eq!(r.len(), 1, "{evs:#?}");
    n.ep.handle_command(
        n.now,
        answer_to(
            &r[0],
            200,
            r#"{"targets":[{"uri":"sip:carol@example.com"}]}"#,
        ),
    );
    let fwd = one_to(&n.drain(), "203.0.113.7:4000");
    assert_eq!(n.sessions(), 1);
    assert_eq!(
        media_of(&fwd).0,
        RELAY_IP,
        "{}",
        String::from_utf8_lossy(&fwd)
    );
}
