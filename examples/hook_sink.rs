//! A fast webhook receiver for benchmarks (`benches/webhooks.sh`): tiny_http
//! on 127.0.0.1, a few threads, every request read and answered `204`.
//! Prints its port as the first line on stdout; on SIGTERM or SIGINT prints
//! `requests N bytes M` and exits. (The test receiver,
//! `tests/fixtures/hookserver.py`, checks signatures and keeps a log, but
//! takes a few thousand requests per second, not tens of thousands.)
//!
//! ```text
//! cargo run --release --example hook_sink -- [--port P] [--threads T]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let mut port = 0u16;
    let mut threads = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().and_then(|v| v.parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--port", Some(p)) => port = u16::try_from(p).unwrap_or(0),
            ("--threads", Some(t)) => threads = (t as usize).clamp(1, 64),
            _ => {
                eprintln!("usage: hook_sink [--port P] [--threads T]");
                std::process::exit(2);
            }
        }
    }
    let server = tiny_http::Server::http(("127.0.0.1", port)).map_err(std::io::Error::other)?;
    let port = server.server_addr().to_ip().map_or(0, |a| a.port());
    let server = Arc::new(server);
    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    for _ in 0..threads {
        let (server, requests, bytes) = (server.clone(), requests.clone(), bytes.clone());
        std::thread::spawn(move || {
            let mut body = Vec::with_capacity(1024);
            while let Ok(mut req) = server.recv() {
                body.clear();
                let n = req.as_reader().read_to_end(&mut body).unwrap_or(0);
                bytes.fetch_add(n as u64, Ordering::Relaxed);
                requests.fetch_add(1, Ordering::Relaxed);
                let _ = req.respond(tiny_http::Response::empty(204));
            }
        });
    }
    println!("{port}");
    let _ = signals.forever().next();
    println!(
        "requests {} bytes {}",
        requests.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
