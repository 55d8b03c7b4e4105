//! Resident memory per registered endpoint: registers N distinct AORs (each
//! a typical UA: RFC 5626 instance and reg-id, NATed contact) through the
//! sans-IO registrar of one core and reads the process RSS before and after.
//! `cargo bench --bench registrar_memory -- [N]` (default 1,000,000).

#[path = "common/memory.rs"]
mod memory;

use std::sync::Arc;

use tether::registrar::{Arrival, Directory, Policy, Registrar};
use tether::sip::{self, ids::IdGen};
use tether::timer::{Timer, Timers};

fn main() {
    let n = memory::count_arg(1_000_000);
    // Sized up front as a deployment would (`registrar.capacity`); the table counts in the figure.
    let dir = Arc::new(Directory::with_capacity(n as usize));
    let mut reg = Registrar::new(0, Arc::new(Policy::default()), dir.clone(), None);
    reg.reserve(n as usize);
    let mut ids = IdGen::new(1);
    let mut out = Vec::with_capacity(2048);
    let mut timers = Timers::new(0);
    let mut msg = Vec::with_capacity(1024);
    let before = memory::rss_bytes();
    // Only parse + validate + register is timed, not the bench writing its messages.
    let mut protocol = std::time::Duration::ZERO;
    for i in 0..n {
        memory::typical_register(&mut msg, i);
        let t = std::time::Instant::now();
        let m = sip::parse(&msg).unwrap();
        let src = std::net::SocketAddr::from((
            [198, 51, (i >> 16) as u8, (i >> 8) as u8],
            1024 + (i & 0xff) as u16 * 200,
        ));
        reg.register(
            &m,
            &m.validate().unwrap(),
            Arrival {
                source: src,
                local: 0,
                now_secs: 0,
                now_unix: 0,
            },
            &mut out,
            &mut ids,
        );
        protocol += t.elapsed();
        debug_assert!(out.starts_with(b"SIP/2.0 200"));
        // The endpoint hands these to the NAT path table after each
        // request; the path table is not part of this figure. Expiry timers
        // are: they go onto the core's wheel, as the endpoint puts them.
        reg.path_events.clear();
        for (at, slot, gen) in reg.expiry_arms.drain(..) {
            timers.arm_unhandled(at, Timer::Expiry { slot, gen });
        }
    }
    let after = memory::rss_bytes();
    assert_eq!(dir.aor_count(), n as usize);
    assert_eq!(dir.device_count(), n as usize);
    let per = (after - before) as f64 / f64::from(n);
    println!("endpoints registered:        {n}");
    println!(
        "RSS growth:                  {:.1} MiB",
        (after - before) as f64 / (1 << 20) as f64
    );
    println!("bytes per endpoint:          {per:.0}");
    println!(
        "sans-IO REGISTER (new AOR):  {:.2} us each, one core (parse, validate, register, 200 OK)",
        protocol.as_secs_f64() * 1e6 / f64::from(n)
    );
}
