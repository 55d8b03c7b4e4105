//! A fast local authorization service for measuring `auth.mode = "http"`:
//! answers every request at once (status 200 unless told otherwise) and
//! measures its own handling time, from the moment tiny_http hands it the
//! request to the moment the answer is written (the body read included),
//! so the latency tether adds can be told apart from the callback's own.
//!
//! ```text
//! cargo run --release --example auth_responder -- [--listen 127.0.0.1:0]
//!     [--status 200] [--requests N] [--seconds S]
//! ```
//!
//! Prints `listening http ADDR` first, then, after N requests or S seconds
//! (defaults: 1,000,000 and 600), one JSON line: requests served and the
//! handling time's percentiles in microseconds.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

fn main() {
    let mut listen = "127.0.0.1:0".to_owned();
    let mut status: u16 = 200;
    let mut requests: u64 = 1_000_000;
    let mut seconds: u64 = 600;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = value(),
            "--status" => status = value().parse().expect("--status: a number"),
            "--requests" => requests = value().parse().expect("--requests: a number"),
            "--seconds" => seconds = value().parse().expect("--seconds: a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    let server = tiny_http::Server::http(&listen).expect("listen");
    let addr = server.server_addr().to_ip().expect("an IP listener");
    println!("listening http {addr}");
    // Nanoseconds, 1 ns to 10 s, three significant digits.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut body = Vec::with_capacity(1024);
    while hist.len() < requests && Instant::now() < end {
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let t0 = Instant::now();
        body.clear();
        let _ = std::io::Read::read_to_end(req.as_reader(), &mut body);
        let _ = req.respond(tiny_http::Response::empty(status));
        let _ = hist.record(t0.elapsed().as_nanos().max(1) as u64);
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{{\"requests\":{},\"handling_us\":{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}}}}",
        hist.len(),
        us(0.5),
        us(0.9),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0
    );
}
