//! Instruction-count probe for the codec (run under `valgrind --tool=callgrind`):
//! `cargo build --release --example codec_cost && valgrind --tool=callgrind
//! target/release/examples/codec_cost FILE ITERATIONS`. Instruction counts are
//! repeatable on a shared, noisy machine where wall-clock time is not.
use std::hint::black_box;
use tether::sip;

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
            _ => sip::read_typed(&m),
        }
        black_box(&m);
    }
    println!(
        "{mode}: {:.1} ns/message",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
