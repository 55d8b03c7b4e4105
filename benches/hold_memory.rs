//! Memory per held call, sans-IO, on one core: N devices register push
//! bindings (RFC 8599 `pn-*`), their paths die (keepalive prompts nobody
//! answers, on the fake clock), then N callers call them and every call is
//! held at once (`180`, a push POSTed, the hold deadline armed). Live heap
//! is counted by this bench's allocator; RSS growth also holds what the
//! allocator keeps. The push requests the core queues for the HTTP side
//! threads are drained (they leave the core at once in the runtime).
//! Then all holds run out (`480`) and what is left is shown; a second
//! and third round of N held calls show what the first left behind is capacity
//! (the call slab, hash tables) reused, not a leak.
//! `cargo bench --bench hold_memory -- [N]` (default 100,000).

use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

use tether::config::Config;
use tether::endpoint::Setup;
use tether::endpoint::{Core, Endpoint};
use tether::metrics::CoreMetric;

#[path = "common/counting.rs"]
mod counting;
#[path = "common/memory.rs"]
mod memory;
use counting::live;

fn device(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5060))
}

fn caller(i: u32) -> SocketAddr {
    SocketAddr::from(([172, 16 + (i >> 16) as u8, (i >> 8) as u8, i as u8], 5062))
}

/// Everything the core would send or hand to its side threads, dropped.
fn drain(ep: &mut Endpoint) -> (usize, usize) {
    let (mut sent, mut events) = (0, 0);
    while ep.poll_transmit().is_some() {
        sent += 1;
    }
    while ep.poll_event().is_some() {
        events += 1;
    }
    (sent, events)
}

/// Runs every timer due by `now`, each at its own time (a prompt sent
/// late would be timed from when it went out).
fn run_timers(ep: &mut Endpoint, now: u64) {
    while let Some(t) = ep.poll_timeout().filter(|t| *t <= now) {
        ep.handle_timeout(t);
        drain(ep);
    }
}

fn main() {
    let n = memory::count_arg(100_000);
    let cfg = Config::from_toml(&format!(
        "[registrar]\ndomains = [\"example.com\"]\ncapacity = {}\n\
[keepalive]\ninterval_ms = 1000\ntimeout_ms = 500\nmax_misses = 1\njitter_ms = 0\n\
[push]\nhold_ms = 120000\nmax_held = {n}\n[push.gateways]\napns = \"http://127.0.0.1:9/push\"\n\
[media]\nmode = \"never\"\n",
        2 * n
    ))
    .expect("bench config");
    let addrs = ["192.0.2.1:5060".parse().unwrap()];
    let mut ep = Setup::new(&cfg, 1, [7; 32])
        .expect("setup")
        .endpoint(0, &addrs)
        .with_unix_epoch(1_800_000_000_000);
    let mut buf = Vec::with_capacity(2048);
    for i in 0..n {
        buf.clear();
        let d = device(i);
        write!(
            buf,
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {d};branch=z9hG4bKr{i:x};rport\r\n\
From: <sip:u{i:07}@example.com>;tag=r{i:x}\r\nTo: <sip:u{i:07}@example.com>\r\nCall-ID: r{i:x}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:u@{d};pn-provider=apns;pn-prid=DEV{i:08X}0123456789ABCDEF;pn-param=ABCD1234.com.example.voip>\r\n\
Max-Forwards: 70\r\nExpires: 3600\r\n\r\n"
        )
        .unwrap();
        ep.handle_datagram(0, 0, d, &buf);
        drain(&mut ep);
    }
    // Nobody answers the prompts: every path dies.
    run_timers(&mut ep, 5_000);
    let dead = ep.metric(CoreMetric::PathsDead);
    println!("devices: {n}, dead paths: {dead}");
    let mib = |b: f64| b / 1048576.0;
    let (mut now, mut rounds) = (5_000, Vec::new());
    // Rounds 2 and 3 meet tables already grown by round 1: what they
    // leave behind is what a hold would leak.
    for round in 1..=3 {
        let live_before = live();
        let rss_before = memory::rss_bytes();
        let t = Instant::now();
        let mut pushes = 0;
        for i in 0..n {
            // 10,000 calls a second on the fake clock: all held within 10 s.
            if i % 10 == 0 {
                now += 1;
                run_timers(&mut ep, now);
            }
            invite(i, round, &mut buf);
            ep.handle_datagram(now, 0, caller(i), &buf);
            pushes += drain(&mut ep).1;
        }
        let spent = t.elapsed();
        let held = ep.metric(CoreMetric::CallsHeld);
        let grown = live() as f64 - live_before as f64;
        let rss = memory::rss_bytes() as f64 - rss_before as f64;
        // Every hold runs out (480), then the transactions' linger (32 s).
        now += 130_000;
        run_timers(&mut ep, now);
        let timed_out = ep.metric(CoreMetric::HoldsTimedOut);
        now += 40_000;
        run_timers(&mut ep, now);
        let left = live() as f64 - live_before as f64;
        rounds.push(left);
        println!(
            "round {round}: {held} calls held ({pushes} push requests queued): live heap {:.1} MiB \
             ({:.0} B per held call), RSS growth {:.1} MiB ({:.0} B per held call); \
             protocol CPU per held call (INVITE in, 100 + 180 out, push queued) {:.2} µs",
            mib(grown),
            grown / held.max(1) as f64,
            mib(rss),
            rss / held.max(1) as f64,
            spent.as_nanos() as f64 / f64::from(n) / 1000.0
        );
        println!(
            "round {round}: after push.hold_ms: {timed_out} answered 480 in all, {} still held; \
             after the linger: live heap {:+.1} MiB against before the round",
            ep.metric(CoreMetric::CallsHeld),
            mib(left)
        );
    }
    println!(
        "kept per call after each round (a leak would stay level): {}",
        rounds
            .iter()
            .map(|b| format!("{:+.0} B", b / f64::from(n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn invite(i: u32, round: u32, buf: &mut Vec<u8>) {
    buf.clear();
    let c = caller(i);
    write!(
        buf,
        "INVITE sip:u{i:07}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {c};branch=z9hG4bKi{round}x{i:x};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:caller{i}@example.com>;tag=a{i:x}\r\nTo: <sip:u{i:07}@example.com>\r\n\
Call-ID: call-{round}-{i:x}@{c}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller{i}@{c}>\r\n\
Content-Type: application/sdp\r\nContent-Length: 78\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    .unwrap();
}
