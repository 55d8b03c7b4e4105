//! Server-side keepalive over loopback: a registered client is prompted
//! with OPTIONS after the idle interval, each prompt fresh, answers keep it
//! alive; a client that stops answering is declared unreachable.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tether::sip;

fn register(sock: &UdpSocket, to: std::net::SocketAddr, user: &str) {
    let port = sock.local_addr().unwrap().port();
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKr{user};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: {user}-c\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(sip::parse(&buf[..n]).unwrap().status(), Some(200));
}

/// Waits for the next OPTIONS; returns (branch, call-id, bytes).
fn next_options(sock: &UdpSocket) -> Option<(String, String, Vec<u8>)> {
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let m = sip::parse(&buf[..n]).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(m.method(), Some(sip::Method::Options));
    assert_eq!(c.max_forwards, Some(0));
    Some((
        c.top_via.branch().unwrap().to_owned(),
        c.call_id.to_owned(),
        buf[..n].to_vec(),
    ))
}

fn answer(sock: &UdpSocket, to: std::net::SocketAddr, req: &[u8], code: u16) {
    let m = sip::parse(req).unwrap();
    let mut out = Vec::new();
    sip::writer::response_to(&mut out, &m, code, "Whatever", Some("ua"), None).finish(None);
    sock.send_to(&out, to).unwrap();
}

#[test]
fn prompts_after_idle_interval_fresh_each_time_and_answers_keep_the_path() {
    let (rt, addr) =
        common::start("[keepalive]\ninterval_ms = 800\ntimeout_ms = 400\njitter_ms = 0\n");
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    register(&ua, addr, "kate");
    let t0 = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (branch, call_id, req) = next_options(&ua).expect("a prompt");
        // Any status proves the path alive: answer with an error on purpose.
        answer(&ua, addr, &req, 481);
        seen.push((branch, call_id));
    }
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= Duration::from_millis(3 * 800 - 100),
        "prompts only after the interval: {elapsed:?}"
    );
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "fresh branch and Call-ID per prompt: {seen:?}"
    );
    assert!(rt.directory().lookup("kate@127.0.0.1", 1)[0].is_reachable());
    rt.shutdown().unwrap();
}

#[test]
fn a_silent_path_is_retried_then_marked_unreachable() {
    let (rt, addr) = common::start(
        "[keepalive]\ninterval_ms = 600\ntimeout_ms = 300\nmax_misses = 2\njitter_ms = 0\n",
    );
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    ua.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    register(&ua, addr, "mute");
    // Two prompts, each sent twice (one retransmission, same branch), none answered.
    let mut branches = Vec::new();
    for _ in 0..4 {
        branches.push(next_options(&ua).expect("a prompt").0);
    }
    assert_eq!(branches[0], branches[1]);
    assert_eq!(branches[2], branches[3]);
    assert_ne!(branches[0], branches[2]);
    let dir = rt.directory().clone();
    let deadline = Instant::now() + Duration::from_secs(3);
    while dir.lookup("mute@127.0.0.1", 1)[0].is_reachable() {
        assert!(
            Instant::now() < deadline,
            "the binding was never marked unreachable"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The binding stays until it expires; an answer to a later prompt revives it.
    let (_, _, req) = next_options(&ua).expect("prompting goes on");
    answer(&ua, addr, &req, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !dir.lookup("mute@127.0.0.1", 1)[0].is_reachable() {
        assert!(
            Instant::now() < deadline,
            "the answer did not revive the path"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown().unwrap();
}
