use std::hint::black_box;
fn main() {
    let msg = std::fs::read(std::env::args().nth(1).unwrap()).unwrap();
    let n: u32 = std::env::args().nth(2).map_or(2_000_000, |s| s.parse().unwrap());
    let t = std::time::Instant::now();
    let mut acc = 0usize;
    for _ in 0..n {
        acc = acc.wrapping_add(tether::sip::parse(black_box(&msg)).unwrap().header_count());
    }
    println!("parse: {:.1} ns ({acc})", t.elapsed().as_nanos() as f64 / f64::from(n));
}
