//! What one core keeps per registered and kept-alive endpoint, structure by
//! structure: N endpoints register through one core's sans-IO endpoint (the
//! registrar, its directory, the NAT path table with a 20 s keepalive, the
//! core's timer wheel), each a typical UA on its own NAT path. Live heap
//! bytes come from a counting allocator; each structure's share from its
//! capacity; the directory's blocks are the rest. RSS growth is printed too.
//! `cargo bench --bench node_memory -- [N]` (default 1,000,000).

mod common;
#[path = "common/counting.rs"]
mod counting;
#[path = "common/memory.rs"]
mod memory;

use std::net::SocketAddr;

use tether::endpoint::Core;
use tether::nat::KeepaliveConfig;

fn main() {
    let n = memory::count_arg(1_000_000);
    let rss0 = memory::rss_bytes();
    let live0 = counting::live();
    let dir_only = tether::registrar::Directory::with_capacity(n as usize);
    let tables = counting::live() - live0;
    drop(dir_only);
    let live0 = counting::live();
    let cfg = KeepaliveConfig {
        interval_ms: 20_000,
        ..KeepaliveConfig::default()
    };
    let mut d = common::one_core(n, cfg);
    let mut msg = Vec::with_capacity(1024);
    for i in 0..n {
        memory::typical_register(&mut msg, i);
        let src = SocketAddr::from((
            [198, 51, (i >> 16) as u8, (i >> 8) as u8],
            1024 + (i & 0xff) as u16 * 200,
        ));
        d.handle_datagram(0, 0, src, &msg);
        while d.poll_transmit().is_some() {}
    }
    assert_eq!(d.paths(), n as usize);
    let live = counting::live() - live0;
    let rss = memory::rss_bytes() - rss0;
    let per = |b: usize| b as f64 / f64::from(n);
    println!("endpoints registered and kept alive: {n}");
    println!("{:<40} {:>14} {:>10}", "structure", "bytes", "per endpoint");
    println!(
        "{:<40} {:>14} {:>10.1}",
        "AOR + device tables (preallocated)",
        tables,
        per(tables)
    );
    let mut counted = tables;
    for (name, b) in d.heap_breakdown() {
        println!("{name:<40} {b:>14} {:>10.1}", per(b));
        counted += b;
    }
    let rest = live.saturating_sub(counted);
    println!(
        "{:<40} {:>14} {:>10.1}",
        "directory blocks + the rest (live - above)",
        rest,
        per(rest)
    );
    println!(
        "{:<40} {:>14} {:>10.1}",
        "live heap in all",
        live,
        per(live)
    );
    println!(
        "{:<40} {:>14} {:>10.1}",
        "RSS growth",
        rss,
        per(rss as usize)
    );
    std::hint::black_box(&d);
}
