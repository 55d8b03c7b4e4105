//! The protocol cost of one REGISTER, sans-IO: a datagram through
//! `Endpoint::handle_datagram` (NAT path touch, parse, validate, registrar,
//! directory, 200 OK written) on one core, no sockets. Criterion medians for
//! a typical UA's REGISTER (RFC 5626 instance and reg-id, NATed Contact,
//! Accept), authentication off as in a load test:
//!
//! * `register/new_aor`: each iteration registers an AOR never seen before
//!   (a directory of up to 100,000 AORs, so the tables stay in cache; the
//!   million-AOR figure with cache misses is `registrar_memory`);
//! * `register/refresh`: each iteration refreshes the same binding (same
//!   Call-ID, next CSeq), the steady state of a registered population.
//!
//! Messages are written before the clock starts; a fresh core is built,
//! untimed, whenever the prepared messages run out.
//! `cargo bench --bench register`

mod common;

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

use tether::endpoint::{Core, Endpoint};
use tether::nat::KeepaliveConfig;

/// Prepared messages per fresh core.
const BATCH: u32 = 100_000;

fn core() -> Endpoint {
    common::one_core(BATCH, KeepaliveConfig::default())
}

/// Endpoint `i`'s REGISTER with CSeq `cseq`, as a typical UA behind a NAT writes it.
fn register(i: u32, cseq: u32) -> Vec<u8> {
    let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.{a}.{b}.{c}:5060;branch=z9hG4bK{i:x}c{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:u{i:07}@example.com>;tag={i:x}\r\nTo: <sip:u{i:07}@example.com>\r\n\
Call-ID: {i:08x}-reg@10.{a}.{b}.{c}\r\nCSeq: {cseq} REGISTER\r\n\
Contact: <sip:u{i:07}@10.{a}.{b}.{c}:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-{i:012x}>\";reg-id=1\r\n\
Expires: 3600\r\nAccept: application/sdp, application/application-server-contact-me\r\n\
User-Agent: tether-bench/1.0\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn source(i: u32) -> SocketAddr {
    SocketAddr::from((
        [198, 51, (i >> 8) as u8, i as u8],
        1024 + (i >> 16) as u16 * 8,
    ))
}

/// Times `iters` datagrams through `handle`, `msgs[k]` from `src(k)`, on
/// fresh cores whenever the messages run out (built outside the clock).
fn run(iters: u64, msgs: &[Vec<u8>], src: impl Fn(u32) -> SocketAddr) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let mut d = core();
        let n = left.min(msgs.len() as u64) as usize;
        let t = Instant::now();
        for (k, m) in msgs[..n].iter().enumerate() {
            d.handle_datagram(1000, 0, src(k as u32), black_box(m));
            black_box(d.poll_transmit());
        }
        total += t.elapsed();
        left -= n as u64;
    }
    total
}

/// The bench measures what it says only if every message gets its 200.
fn check(msgs: &[Vec<u8>], src: impl Fn(u32) -> SocketAddr) {
    let mut d = core();
    for (k, m) in msgs.iter().take(1000).enumerate() {
        d.handle_datagram(1000, 0, src(k as u32), m);
        let out = d.poll_transmit().expect("an answer").bytes;
        assert!(
            out.starts_with(b"SIP/2.0 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(out)
        );
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("register");
    let fresh: Vec<Vec<u8>> = (0..BATCH).map(|i| register(i, 1)).collect();
    check(&fresh, source);
    g.bench_function("new_aor", |b| {
        b.iter_custom(|iters| run(iters, &fresh, source))
    });
    // One endpoint: its first REGISTER, then refreshes with the next CSeq.
    let refreshes: Vec<Vec<u8>> = (1..=BATCH).map(|cseq| register(7, cseq)).collect();
    check(&refreshes, |_| source(7));
    g.bench_function("refresh", |b| {
        b.iter_custom(|iters| run(iters, &refreshes, |_| source(7)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
