//! tether in place of rtpengine: Kamailio (Debian `kamailio`, its
//! `rtpengine` module) with tests/fixtures/kamailio/rtpengine.cfg proxies a
//! call between two small UAs written here on std UDP sockets, and anchors
//! its media with `rtpengine_offer()` / `rtpengine_answer()` /
//! `rtpengine_delete()` sent over `ng` to tether's `media.ng_listen`.
//!
//! Checked: Kamailio's module pinged tether at startup and holds it as
//! enabled (`kamcmd rtpengine.show all`); each UA's received SDP names
//! tether's relay; RTP and RTCP cross the relay both ways byte for byte,
//! from the ports those SDPs named; the BYE's `delete` removes the
//! call from tether (`ng query` fails, the sessions gauge is 0) and stops
//! the forwarding.
//!
//! Addresses of its own (127.0.0.6x) and a relay port block of its own, so
//! it runs beside every other test. Kamailio is ended by PID on drop.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::kamailio::{self, udp_bound};
use common::ng::{collect, ng_call, rtp};
use common::{free_udp_port, wait_until, TempDir};
use tether::media::ng;

/// tether's relay ports for this test (below the ephemeral range, apart
/// from every other test's block).
const RELAY_PORTS: (u16, u16) = (14100, 14199);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A UDP socket on `ip` (any free port), reads time out after 2 s.
fn sock(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// The value of the first header `name` (case-insensitive) of a SIP message.
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n\r\n").next()?.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every value of header `name`, in order.
fn headers<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// The `(c= address, m=audio port)` of a message's SDP body.
fn sdp_audio(msg: &str) -> Option<(String, u16)> {
    let body = msg.split_once("\r\n\r\n")?.1;
    let c = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .to_owned();
    let m = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some((c, m))
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

/// A SIP message with its Content-Length (and SDP type if a body).
fn message(start: &str, headers: &[String], body: &str) -> String {
    let mut m = format!("{start}\r\n");
    for h in headers {
        m.push_str(h);
        m.push_str("\r\n");
    }
    if !body.is_empty() {
        m.push_str("Content-Type: application/sdp\r\n");
    }
    m.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    m
}

/// The next SIP message on `s` (at most 5 s) that satisfies `want`,
/// skipping others (provisional responses, retransmissions); with its source.
fn recv_sip(s: &UdpSocket, what: &str, want: impl Fn(&str) -> bool) -> (String, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 8192];
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&m) {
                return (m, from);
            }
            seen.push(m.lines().next().unwrap_or_default().to_owned());
        }
    }
    panic!("no {what} within 5 s (got {seen:?})");
}

/// tether's `ng query` for `call_id`: the reply (`ok` with the call's
/// streams, `error` once the call is gone). Not `list`: that one answers
/// from the calls of the core the datagram lands on only, while `query` is
/// routed to the core that owns the Call-ID.
fn ng_query(ng_addr: SocketAddr, call_id: &str) -> (bool, String) {
    let ctl = sock("127.0.0.1");
    let mut req = Vec::new();
    ng::encode_query(b"q1", call_id.as_bytes(), None, &mut req);
    let reply = ng_call(&ctl, ng_addr, &req);
    let ok = ng::parse_reply(&reply).expect("a bencoded reply").is_ok();
    (ok, String::from_utf8_lossy(&reply).into_owned())
}

/// Relay sessions over tether's cores (published about once a second).
fn sessions(rt: &tether::runtime::Runtime) -> u64 {
    let m = tether::metrics::CoreMetric::MediaSessions as usize;
    rt.control().metrics.iter().map(|c| c.get(m)).sum()
}

#[test]
fn kamailio_anchors_a_call_on_tether_over_ng() {
    let test = "kamailio_anchors_a_call_on_tether_over_ng";
    if !common::have_tools(test, &[("kamailio", "-v", "kamailio")]) {
        return;
    }
    let dir = TempDir::new("kam-ng");
    let (lo, hi) = RELAY_PORTS;
    let ng_port = free_udp_port();
    let ng_addr: SocketAddr = addr(&format!("127.0.0.1:{ng_port}"));
    // tether's own SIP listens too (ephemeral port), unused here.
    let (rt, _) = common::start(&format!(
        "[media]\nng_listen = \"{ng_addr}\"\nports = \"{lo}-{hi}\"\naddress = \"127.0.0.1\"\n"
    ));
    let kam_addr = addr("127.0.0.60:5080");
    let ctl = dir.0.join("kamailio.ctl");
    let kam = kamailio::start(
        &dir,
        "kamailio",
        "rtpengine.cfg",
        kam_addr,
        &[
            ("NG", &format!("udp:{ng_addr}")),
            ("CTL", &format!("unix:{}", ctl.display())),
        ],
    );
    let logs = || format!("\n===== kamailio log\n{}", kam.log_tail(60));
    wait_until(10, "Kamailio listening", || {
        udp_bound(kam_addr) && ctl.exists()
    });

    // Kamailio's module pinged tether when its workers started and holds
    // it enabled; with kamcmd (same package) we ask it.
    let show = std::process::Command::new("kamcmd")
        .arg("-s")
        .arg(format!("unix:{}", ctl.display()))
        .args(["rtpengine.show", "all"])
        .output();
    if let Ok(out) = show {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains(&format!("udp:{ng_addr}")) && text.contains("disabled: 0"),
            "kamcmd rtpengine.show all: {text}{}",
            logs()
        );
        eprintln!("kamcmd rtpengine.show all:\n{text}");
    }

    // The UAs: alice (caller) on 127.0.0.61, bob on 127.0.0.62; SIP and RTP
    // sockets of their own, RTCP on RTP + 1 where it was free.
    let (a_sip, b_sip) = (sock("127.0.0.61"), sock("127.0.0.62"));
    let (a_rtp, b_rtp) = (sock("127.0.0.61"), sock("127.0.0.62"));
    let a_port = a_rtp.local_addr().unwrap().port();
    let b_port = b_rtp.local_addr().unwrap().port();
    let a_rtcp = UdpSocket::bind(("127.0.0.61", a_port + 1)).ok();
    let b_rtcp = UdpSocket::bind(("127.0.0.62", b_port + 1)).ok();
    let (a_at, b_at) = (a_sip.local_addr().unwrap(), b_sip.local_addr().unwrap());
    let call_id = format!("kam-ng-{}@127.0.0.61", std::process::id());
    let from = "From: <sip:alice@127.0.0.61>;tag=a1".to_string();

    let invite = message(
        &format!("INVITE sip:bob@{b_at} SIP/2.0"),
        &[
            format!("Via: SIP/2.0/UDP {a_at};branch=z9hG4bK-inv-1;rport"),
            "Max-Forwards: 70".into(),
            from.clone(),
            format!("To: <sip:bob@{b_at}>"),
            format!("Call-ID: {call_id}"),
            "CSeq: 1 INVITE".into(),
            format!("Contact: <sip:alice@{a_at}>"),
        ],
        &sdp("127.0.0.61", a_port),
    );
    a_sip.send_to(invite.as_bytes(), kam_addr).unwrap();

    // Bob gets the INVITE with tether's offer and answers 200 to Kamailio.
    let (inv, via_kam) = recv_sip(&b_sip, "INVITE at bob", |m| m.starts_with("INVITE "));
    let offer_at_b = sdp_audio(&inv).unwrap_or_else(|| panic!("SDP in {inv}"));
    let mut ok_headers: Vec<String> = headers(&inv, "Via")
        .iter()
        .map(|v| format!("Via: {v}"))
        .collect();
    ok_headers.extend(
        headers(&inv, "Record-Route")
            .iter()
            .map(|v| format!("Record-Route: {v}")),
    );
    ok_headers.extend([
        format!("From: {}", header(&inv, "From").unwrap()),
        format!("To: {};tag=b1", header(&inv, "To").unwrap()),
        format!("Call-ID: {call_id}"),
        "CSeq: 1 INVITE".into(),
        format!("Contact: <sip:bob@{b_at}>"),
    ]);
    let ok = message("SIP/2.0 200 OK", &ok_headers, &sdp("127.0.0.62", b_port));
    b_sip.send_to(ok.as_bytes(), via_kam).unwrap();

    // Alice gets the 200 with tether's answer and ACKs along the route.
    let (ok_at_a, _) = recv_sip(&a_sip, "200 at alice", |m| {
        m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE")
    });
    let answer_at_a = sdp_audio(&ok_at_a).unwrap_or_else(|| panic!("SDP in {ok_at_a}"));
    let route: Vec<String> = headers(&ok_at_a, "Record-Route")
        .iter()
        .rev()
        .map(|v| format!("Route: {v}"))
        .collect();
    let to_tagged = format!("To: {}", header(&ok_at_a, "To").unwrap());
    let in_dialog = |branch: &str, cseq: &str| {
        let mut h = vec![
            format!("Via: SIP/2.0/UDP {a_at};branch=z9hG4bK-{branch};rport"),
            "Max-Forwards: 70".into(),
        ];
        h.extend(route.iter().cloned());
        h.extend([
            from.clone(),
            to_tagged.clone(),
            format!("Call-ID: {call_id}"),
            format!("CSeq: {cseq}"),
        ]);
        h
    };
    let ack = message(
        &format!("ACK sip:bob@{b_at} SIP/2.0"),
        &in_dialog("ack-1", "1 ACK"),
        "",
    );
    a_sip.send_to(ack.as_bytes(), kam_addr).unwrap();
    recv_sip(&b_sip, "ACK at bob", |m| m.starts_with("ACK "));

    // Both SDPs name tether's relay, never the other UA.
    let report = format!("bob got {offer_at_b:?}, alice got {answer_at_a:?}");
    for (c, port) in [&offer_at_b, &answer_at_a] {
        assert!(
            c == "127.0.0.1" && (lo..=hi).contains(port),
            "{report}{}",
            logs()
        );
    }
    assert_ne!(offer_at_b.1, answer_at_a.1, "{report}");
    let (known, reply) = ng_query(ng_addr, &call_id);
    assert!(known, "ng query during the call: {reply}");
    wait_until(5, "tether's media sessions gauge at 1", || {
        sessions(&rt) == 1
    });

    // RTP both ways, 50 packets each, unchanged, from the relay ports the
    // SDPs named; RTCP on the next ports.
    let relay_a = addr(&format!("127.0.0.1:{}", answer_at_a.1));
    let relay_b = addr(&format!("127.0.0.1:{}", offer_at_b.1));
    for seq in 0..50u16 {
        a_rtp.send_to(&rtp(seq, 0xa), relay_a).unwrap();
    }
    let at_b = collect(&b_rtp, 50, 5);
    for seq in 0..50u16 {
        b_rtp.send_to(&rtp(seq, 0xb), relay_b).unwrap();
    }
    let at_a = collect(&a_rtp, 50, 5);
    eprintln!(
        "RTP through tether: alice -> bob {} of 50, bob -> alice {} of 50",
        at_b.len(),
        at_a.len()
    );
    assert!(at_b.len() >= 45 && at_a.len() >= 45, "{report}{}", logs());
    for (got, from, tag) in [(&at_b, relay_b, 0xa), (&at_a, relay_a, 0xb)] {
        for (pkt, src) in got {
            assert_eq!(*src, from, "heard from the relay port its SDP named");
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            assert_eq!(pkt, &rtp(seq, tag), "payload unchanged");
        }
    }
    if let (Some(ar), Some(br)) = (&a_rtcp, &b_rtcp) {
        let report_pkt = [0x81, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
        ar.send_to(&report_pkt, (relay_a.ip(), relay_a.port() + 1))
            .unwrap();
        let got = collect(br, 1, 5);
        assert_eq!(got.len(), 1, "bob's RTCP port gets alice's report");
        assert_eq!(got[0].0, report_pkt);
        br.send_to(&report_pkt, (relay_b.ip(), relay_b.port() + 1))
            .unwrap();
        assert_eq!(collect(ar, 1, 5).len(), 1, "and back to alice's");
    }

    // Alice hangs up: Kamailio sends `delete`, then relays the BYE.
    let bye = message(
        &format!("BYE sip:bob@{b_at} SIP/2.0"),
        &in_dialog("bye-1", "2 BYE"),
        "",
    );
    a_sip.send_to(bye.as_bytes(), kam_addr).unwrap();
    let (bye_at_b, via_kam) = recv_sip(&b_sip, "BYE at bob", |m| m.starts_with("BYE "));
    let mut bye_ok: Vec<String> = headers(&bye_at_b, "Via")
        .iter()
        .map(|v| format!("Via: {v}"))
        .collect();
    bye_ok.extend(
        ["From", "To", "Call-ID", "CSeq"]
            .iter()
            .map(|h| format!("{h}: {}", header(&bye_at_b, h).unwrap())),
    );
    b_sip
        .send_to(message("SIP/2.0 200 OK", &bye_ok, "").as_bytes(), via_kam)
        .unwrap();
    recv_sip(&a_sip, "200 to the BYE at alice", |m| {
        m.starts_with("SIP/2.0 200") && m.contains("CSeq: 2 BYE")
    });
    let (known, reply) = ng_query(ng_addr, &call_id);
    assert!(!known, "ng query after the BYE: {reply}{}", logs());
    wait_until(5, "tether's media sessions gauge back to 0", || {
        sessions(&rt) == 0
    });
    for seq in 100..110u16 {
        a_rtp.send_to(&rtp(seq, 0xa), relay_a).unwrap();
    }
    assert!(
        collect(&b_rtp, 1, 1).is_empty(),
        "a deleted call relays nothing"
    );
    // Kamailio found tether alive at startup (its ping) and logged no error.
    let log = std::fs::read_to_string(&kam.log).unwrap_or_default();
    assert!(
        log.contains(&format!("rtpengine instance <udp:{ng_addr}> found")),
        "Kamailio's ping{}",
        logs()
    );
    assert!(!log.contains("ERROR"), "Kamailio's log{}", logs());
    drop(kam);
    rt.shutdown().unwrap();
}
