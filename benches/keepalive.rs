//! Keepalive cost per prompt round trip, sans-IO: N endpoints registered on
//! one core (each on its own NAT path), the clock moved to the interval, and
//! then timed separately: (1) the tick that finds every idle path and writes
//! its OPTIONS, (2) feeding every 200 answer back (parse, top Via, match by
//! branch). Syscalls are not included: on this machine a UDP receive+send
//! pair costs about 3.5 µs of kernel time (../shared/peers.md C echo).
//! `cargo bench --bench keepalive -- [N]` (default 200,000).

mod common;

use std::net::SocketAddr;
use std::time::Instant;

use tether::endpoint::{Core, Endpoint};
use tether::metrics::CoreMetric;
use tether::nat::KeepaliveConfig;
use tether::sip;

fn src(i: u32) -> SocketAddr {
    SocketAddr::from((
        [198, 18 + (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8],
        1024 + (i & 0xff) as u16,
    ))
}

/// A core with `n` endpoints registered at time 0, each on its own path.
fn setup(n: u32) -> Endpoint {
    let cfg = KeepaliveConfig {
        interval_ms: 20_000,
        jitter_ms: 0,
        ..KeepaliveConfig::default()
    };
    let mut d = common::one_core(n, cfg);
    let mut msg = Vec::new();
    for i in 0..n {
        use std::io::Write;
        msg.clear();
        write!(
            msg,
            "REGISTER sip:t.net SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{i};rport\r\nMax-Forwards: 70\r\n\
From: <sip:u{i}@t.net>;tag=1\r\nTo: <sip:u{i}@t.net>\r\nCall-ID: {i}@x\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:u{i}@10.0.0.2:5060>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
        )
        .unwrap();
        d.handle_datagram(0, 0, src(i), &msg);
        d.poll_transmit().expect("200");
    }
    assert_eq!(d.paths(), n as usize);
    d
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);

    // (1) The tick at the interval: every path is idle, every path is prompted.
    let mut d = setup(n);
    let t = Instant::now();
    let mut count = 0u32;
    // The runtime ticks in slices of PROMPTS_PER_TICK; so does the bench.
    for _ in 0..=n {
        let before = count;
        d.handle_timeout(20_000);
        while d.poll_transmit().is_some() {
            count += 1;
        }
        if count == before {
            break;
        }
    }
    let tick = t.elapsed();
    assert_eq!(count, n);
    drop(d);

    // (2) Matching the answers; building them is not timed.
    let mut d = setup(n);
    let mut prompts: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(n as usize);
    loop {
        let before = prompts.len();
        d.handle_timeout(20_000);
        while let Some(t) = d.poll_transmit() {
            prompts.push((t.bytes.to_vec(), t.to));
        }
        if prompts.len() == before {
            break;
        }
    }
    let answers: Vec<(Vec<u8>, SocketAddr)> = prompts
        .iter()
        .map(|(p, to)| {
            let m = sip::parse(p).unwrap();
            let mut out = Vec::new();
            sip::writer::response_to(&mut out, &m, 200, "OK", Some("ua"), None).finish(None);
            (out, *to)
        })
        .collect();
    drop(prompts);
    let t = Instant::now();
    for (a, from) in &answers {
        d.handle_datagram(20_010, 0, *from, a);
    }
    let answer = t.elapsed();
    assert_eq!(d.metric(CoreMetric::PromptsAnswered), u64::from(n));

    let per = |x: std::time::Duration| x.as_secs_f64() * 1e6 / f64::from(n);
    println!("paths:                           {n}");
    println!(
        "tick (find idle, write OPTIONS): {:.2} us per prompt",
        per(tick)
    );
    println!(
        "answer (parse, top Via, match): {:.2} us per answer",
        per(answer)
    );
    println!(
        "round trip, sans-IO:             {:.2} us",
        per(tick) + per(answer)
    );
}
