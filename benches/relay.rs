//! The relay's per-packet decision, sans IO: `Table::relay` for RTP on a
//! latched stream among 1,000 calls (2,000 streams), packets spread over
//! the streams the way a poll round meets them. What this costs is the
//! protocol part of CPU per forwarded packet; the rest is the system
//! calls (`benches/compare-rtpengine.sh` measures the whole).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tether::media::table::{PartySdp, TableConfig};
use tether::media::{Table, Verdict};

const CALLS: u16 = 1000;

fn setup() -> (Table, Vec<(u32, SocketAddr)>) {
    let pairs = usize::from(CALLS) * 4;
    let mut t = Table::new(TableConfig {
        max_pairs: pairs,
        ..Default::default()
    });
    let ports: Vec<u16> = (0..pairs as u32)
        .map(|i| (20000 + 2 * (i % 20000)) as u16)
        .collect();
    t.add_pairs(&ports);
    let mut out = Vec::new();
    let mut sources = Vec::new();
    for c in 0..CALLS {
        let id = t.create(0);
        let a = format!(
            "v=0\r\nc=IN IP4 10.1.{}.{}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\n",
            c / 250,
            c % 250
        );
        t.apply_sdp(0, id, &PartySdp::new(0, a.as_bytes(), None), &mut out)
            .unwrap();
        let b = a.replace("10.1.", "10.2.");
        t.apply_sdp(0, id, &PartySdp::new(1, b.as_bytes(), None), &mut out)
            .unwrap();
        t.arm(0, id);
    }
    // Every leg's RTP socket with its party's address (latched on first use).
    let legs = usize::from(CALLS) * 4;
    for leg in 0..legs {
        let sock = (leg * 2) as u32;
        let src: SocketAddr = format!(
            "10.9.{}.{}:{}",
            leg / 250 % 250,
            leg % 250,
            4000 + leg % 2 * 2
        )
        .parse()
        .unwrap();
        sources.push((sock, src));
    }
    (t, sources)
}

fn relay(c: &mut Criterion) {
    let (mut t, sources) = setup();
    let mut pkt = vec![0x80u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    pkt.extend_from_slice(&[0xd5; 160]);
    let mut g = c.benchmark_group("relay");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    let mut seq = 0u16;
    let mut now = 1_000_000u64;
    g.bench_function("rtp_packet_1000_calls", |b| {
        b.iter(|| {
            let (sock, src) = sources[i];
            i += 1;
            if i == sources.len() {
                i = 0;
                seq = seq.wrapping_add(1);
                now += 20_000;
            }
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            let v = t.relay(now, sock, src, black_box(&pkt));
            debug_assert!(matches!(v, Verdict::Forward { .. }));
            black_box(v)
        })
    });
    g.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
