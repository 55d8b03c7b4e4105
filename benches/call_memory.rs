//! The proxy's cost per call, sans-IO, on one core: memory per dialog in
//! flight (live heap bytes, counted by this bench's allocator, with N
//! concurrent dialogs held once their transactions have drained; and the
//! RSS growth, which also holds what the allocator keeps after the
//! transactions are freed), set up at 1,000 calls/s on the fake clock so
//! that transactions linger as long as they would; and the protocol CPU of whole calls
//! (INVITE, 100, 180, 200, ACK, BYE, 200: the 7 datagrams tether takes in
//! and the 7 it sends) measured around the endpoint's calls only.
//! `cargo bench --bench call_memory -- [N]` (default 100,000).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tether::endpoint::{Core, Endpoint};
use tether::nat::KeepaliveConfig;
use tether::proxy::forward;
use tether::sip::{self, writer, HeaderName};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/memory.rs"]
mod memory;
use counting::live;

/// Runs every timer due by `now`.
fn run_timers(ep: &mut Endpoint, now: u64) {
    while ep.poll_timeout().is_some_and(|t| t <= now) {
        ep.handle_timeout(now);
        while ep.poll_transmit().is_some() {}
    }
}

fn callee(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5060))
}

fn caller(i: u32) -> SocketAddr {
    SocketAddr::from(([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 5062))
}

/// Feeds one datagram; returns what tether sent (timed into `spent`).
fn feed(
    ep: &mut Endpoint,
    now: u64,
    from: SocketAddr,
    bytes: &[u8],
    spent: &mut Duration,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let t = Instant::now();
    ep.handle_datagram(now, 0, from, bytes);
    let mut out = Vec::new();
    while let Some(x) = ep.poll_transmit() {
        out.push((x.bytes.to_vec(), x.to));
    }
    *spent += t.elapsed();
    out
}

fn to(out: &[(Vec<u8>, SocketAddr)], a: SocketAddr) -> Vec<u8> {
    match out.iter().find(|(_, x)| *x == a) {
        Some(d) => d.0.clone(),
        None => panic!(
            "no datagram to {a}: {:?}",
            out.iter()
                .map(|(b, t)| (
                    t,
                    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
                ))
                .collect::<Vec<_>>()
        ),
    }
}

/// The callee's answer to the INVITE tether forwarded.
fn answer(fwd: &[u8], code: u16, i: u32, buf: &mut Vec<u8>) {
    let m = sip::parse(fwd).unwrap();
    let mut w = writer::response_to(buf, &m, code, "OK", Some(&format!("b{i:x}")), None);
    for rr in forward::record_routes(&m) {
        w.header(HeaderName::RecordRoute, rr);
    }
    let c = callee(i);
    w.header_parts("Contact", &["<sip:u@", &c.to_string(), ">"]);
    w.finish(Some(("application/sdp", b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")));
}

fn invite(i: u32, buf: &mut Vec<u8>) {
    buf.clear();
    let c = caller(i);
    write!(
        buf,
        "INVITE sip:u{i:07}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bKi{i:x};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller{i}@example.com>;tag=a{i:x}\r\nTo: <sip:u{i:07}@example.com>\r\n\
Call-ID: call-{i:x}@{c}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller{i}@{c}>\r\n\
Content-Type: application/sdp\r\nContent-Length: 78\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    .unwrap();
}

fn in_dialog(method: &str, i: u32, rr: &str, from_caller: bool, buf: &mut Vec<u8>) {
    buf.clear();
    let (c, d) = (caller(i), callee(i));
    let (via, from, to, uri) = if from_caller {
        (
            c,
            format!("<sip:caller{i}@example.com>;tag=a{i:x}"),
            format!("<sip:u{i:07}@example.com>;tag=b{i:x}"),
            format!("sip:u@{d}"),
        )
    } else {
        (
            d,
            format!("<sip:u{i:07}@example.com>;tag=b{i:x}"),
            format!("<sip:caller{i}@example.com>;tag=a{i:x}"),
            format!("sip:caller{i}@{c}"),
        )
    };
    let cseq = if method == "ACK" { 1 } else { 2 };
    write!(
        buf,
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bK{method}{i:x};rport\r\nRoute: {rr}\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: call-{i:x}@{c}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
}

fn main() {
    let n = memory::count_arg(100_000);
    // No prompts: nobody here answers them, and a silent path is declared
    // dead (480) — what a real callee would not be.
    let ka = KeepaliveConfig {
        interval_ms: 0,
        ..KeepaliveConfig::default()
    };
    let mut ep = common::one_core(2 * n, ka);
    let mut buf = Vec::with_capacity(2048);
    let mut resp = Vec::with_capacity(2048);
    let mut spent = Duration::ZERO;
    for i in 0..n {
        buf.clear();
        let d = callee(i);
        write!(
            buf,
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {d};branch=z9hG4bKr{i:x};rport\r\n\
From: <sip:u{i:07}@example.com>;tag=r{i:x}\r\nTo: <sip:u{i:07}@example.com>\r\nCall-ID: r{i:x}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:u@{d}>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n\r\n"
        )
        .unwrap();
        feed(&mut ep, 0, d, &buf, &mut spent);
    }
    // Phase 1: N calls set up and held.
    let mut now = 1_000;
    let before = memory::rss_bytes();
    let live_before = live();
    let mut rrs = Vec::with_capacity(n as usize);
    let mut setup = Duration::ZERO;
    for i in 0..n {
        // 1,000 calls a second on the fake clock.
        now += 1;
        run_timers(&mut ep, now);
        invite(i, &mut buf);
        let out = feed(&mut ep, now, caller(i), &buf, &mut setup);
        let fwd = to(&out, callee(i));
        let rr = forward::record_routes(&sip::parse(&fwd).unwrap())
            .next()
            .unwrap()
            .to_owned();
        answer(&fwd, 180, i, &mut resp);
        feed(&mut ep, now, callee(i), &resp, &mut setup);
        answer(&fwd, 200, i, &mut resp);
        feed(&mut ep, now, callee(i), &resp, &mut setup);
        in_dialog("ACK", i, &rr, true, &mut buf);
        feed(&mut ep, now, caller(i), &buf, &mut setup);
        rrs.push(rr);
    }
    let dialogs = ep.metric(tether::metrics::CoreMetric::Dialogs);
    let lingering = ep.metric(tether::metrics::CoreMetric::ProxyTransactionsInFlight);
    let with_txns = memory::rss_bytes();
    let live_with_txns = live();
    // Let the INVITE transactions finish their RFC 6026 linger (Timer L, 32 s).
    now += 40_000;
    run_timers(&mut ep, now);
    let txns = ep.metric(tether::metrics::CoreMetric::ProxyTransactionsInFlight);
    let held = memory::rss_bytes();
    let live_held = live();
    // Phase 2: the same calls hung up by the callee.
    let mut teardown = Duration::ZERO;
    for (i, rr) in rrs.iter().enumerate() {
        let i = i as u32;
        in_dialog("BYE", i, rr, false, &mut buf);
        let out = feed(&mut ep, now, callee(i), &buf, &mut teardown);
        let bye = to(&out, caller(i));
        let m = sip::parse(&bye).unwrap();
        resp.clear();
        writer::response_to(&mut resp, &m, 200, "OK", Some("x"), None).finish(None);
        feed(&mut ep, now, caller(i), &resp, &mut teardown);
    }
    let left = ep.metric(tether::metrics::CoreMetric::Dialogs);
    let per = |d: Duration| d.as_nanos() as f64 / f64::from(n) / 1000.0;
    println!("calls: {n}, dialogs held: {dialogs}, after teardown: {left}");
    let mib = |b: f64| b / 1048576.0;
    println!(
        "{dialogs} dialogs held, {lingering} transactions lingering (32 s at 1,000 calls/s): \
         live heap {:.1} MiB, RSS growth {:.1} MiB",
        mib((live_with_txns - live_before) as f64),
        mib((with_txns - before) as f64),
    );
    println!(
        "{dialogs} dialogs held, {txns} transactions left: live heap {:.1} MiB ({:.0} B per dialog), \
         RSS growth {:.1} MiB ({:.0} B per dialog)",
        mib((live_held - live_before) as f64),
        (live_held - live_before) as f64 / f64::from(n),
        mib((held - before) as f64),
        (held - before) as f64 / f64::from(n)
    );
    println!(
        "protocol CPU per call: setup (INVITE, 180, 200, ACK) {:.2} µs + teardown (BYE, 200) {:.2} µs = {:.2} µs",
        per(setup),
        per(teardown),
        per(setup) + per(teardown)
    );
}
