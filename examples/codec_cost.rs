//! Instruction-count probe for the codec (run under `valgrind --tool=callgrind`):
//! `cargo build --release --example codec_cost && valgrind --tool=callgrind
//! target/release/examples/codec_cost FILE ITERATIONS`. Instruction counts are
//! repeatable on a shared, noisy machine where wall-clock time is not.
use std::hint::black_box;
use tether::sip::{self, HeaderName};

fn access(m: &sip::Message<'_>) {
    if let Some(Ok(u)) = m.request_uri() {
        black_box((u.user, u.host, u.port));
    }
    for v in m.vias() {
        let v = v.unwrap();
        black_box((v.branch(), v.received(), v.rport(), v.host, v.port));
    }
    for na in [m.from().unwrap(), m.to().unwrap()] {
        black_box((na.tag(), na.uri.user, na.uri.host, na.uri.port));
    }
    black_box((
        m.call_id().unwrap(),
        m.cseq().unwrap(),
        m.max_forwards().unwrap(),
    ));
    for c in m.contacts() {
        let c = c.unwrap();
        black_box((
            c.expires().unwrap(),
            c.q().unwrap(),
            c.instance(),
            c.reg_id().unwrap(),
        ));
    }
    black_box(m.expires().unwrap());
    for r in m.routes().chain(m.record_routes()).chain(m.paths()) {
        black_box(r.unwrap().uri.host);
    }
    black_box((
        m.content_length(),
        m.content_type().unwrap(),
        m.event().unwrap(),
        m.user_agent(),
    ));
    for a in m.accept() {
        black_box(a.unwrap());
    }
    for t in m
        .tokens(HeaderName::Supported)
        .chain(m.tokens(HeaderName::Require))
    {
        black_box(t.unwrap());
    }
    if let Some(a) = m.authorization().unwrap() {
        for p in [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
        ] {
            black_box(a.get(p));
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let msg = std::fs::read(args.next().expect("FILE")).unwrap();
    let n: u32 = args.next().map_or(100_000, |s| s.parse().unwrap());
    let mode = args.next().unwrap_or_else(|| "typed".into());
    let t = std::time::Instant::now();
    for _ in 0..n {
        let m = sip::parse(black_box(&msg)).unwrap();
        match mode.as_str() {
            "split" => {}
            "validate" => {
                black_box(m.validate().unwrap());
            }
            _ => access(&m),
        }
        black_box(&m);
    }
    println!(
        "{mode}: {:.1} ns/message",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
