//! The runtime's floor: tether's worker loop, sockets and batching around an
//! endpoint that does no protocol work. Each request comes back with its own
//! headers under a `200` status line, unparsed, so what is left is the
//! kernel and the event loop. Run it like `tether run` (benches/ab_register.sh
//! takes it as one of its builds):
//!   cargo bench --bench runtime_floor --no-run   # prints the binary's path
//!   BIN run --config FILE
use std::net::SocketAddr;

use tether::endpoint::{Command, Core, Event, Transmit, Transmits};

/// The whole alternative endpoint.
struct Floor {
    out: Vec<u8>,
    queue: Transmits,
}

impl Core for Floor {
    fn handle_datagram(&mut self, _now: u64, local: u8, remote: SocketAddr, bytes: &[u8]) {
        let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        self.out.clear();
        self.out.extend_from_slice(b"SIP/2.0 200 OK");
        self.out.extend_from_slice(&bytes[eol..]);
        self.queue.push(&self.out, remote, local);
    }
    fn handle_command(&mut self, _now: u64, _cmd: Command) {}
    fn handle_timeout(&mut self, _now: u64) {}
    fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.queue.pop()
    }
    fn poll_event(&mut self) -> Option<Event> {
        None
    }
    fn poll_timeout(&self) -> Option<u64> {
        None
    }
    fn metrics(&self, _out: &mut [u64]) {}
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; only `run --config FILE` starts a server.
    let Some(i) = args.iter().position(|a| a == "--config") else {
        eprintln!("usage: runtime_floor run --config FILE");
        return Ok(());
    };
    let cfg = tether::config::Config::load(args.get(i + 1).map(std::path::Path::new))
        .map_err(std::io::Error::other)?;
    let dir = std::sync::Arc::new(tether::registrar::Directory::new());
    let rt = tether::runtime::Runtime::start_with(&cfg, dir, |_, _| Floor {
        out: Vec::new(),
        queue: Transmits::new(65_535),
    })?;
    for a in &rt.local_addrs {
        println!("listening udp {a}");
    }
    let term = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    while !term.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rt.shutdown()
}
