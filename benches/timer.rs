//! Timer queues side by side: tether's hierarchical wheel
//! (`tether::timer::TimerWheel`), a `BTreeMap<(deadline, seq), value>`
//! reference queue, and the `bitwheel` crate (0.6), each at N = 1k, 100k and
//! 1M pending timers. Three criterion groups, `BenchmarkId` = (queue, N):
//!
//! * `timer/insert_cancel`: N timers pending, deadlines uniform over the next
//!   hour; one iteration arms one timer at a random deadline in that hour and
//!   cancels it again (the population stays N).
//! * `timer/cancel`: cancel alone, of a random *old* timer (see
//!   [`bench_cancel`] for the method).
//! * `timer/expire`: N timers pending, deadlines uniform over the next N ms so
//!   that about one timer falls due per ms; one iteration advances the clock
//!   by 1 ms, pops everything due and re-arms each popped timer N ms ahead
//!   (the population stays N). The time per iteration is about the time per
//!   expired timer.
//!
//! Each queue is filled once per (group, queue, N), outside the timed
//! closures, and reused across iterations since every operation keeps the
//! population constant. Time is u64 ms on a virtual clock that starts at 0;
//! bitwheel, which takes `Instant`s, gets `epoch + ms`.
//!
//! bitwheel is fixed-capacity and does not cascade: a timer stays in the slot
//! of the gear its delay picked and fires at the start of that slot. With 1 ms
//! ticks a 1-hour delay lands in gear 3, whose slots span 2^18 ms (~4.4 min),
//! so the 1M/1-hour population sits in ~14 slots (~73k timers each) and the
//! 1M/expire population (one timer per ms) puts 2^18 = 262,144 timers in a
//! slot. It is therefore configured as `BitWheel<_, 4 gears, 1 ms, 300_000
//! per slot, 2 probes>`: 4 × 64 × 300,000 preallocated entries of 32 bytes,
//! about 2.5 GB per wheel whatever N is. This is the plain wheel, not
//! `BitWheelWithFailover`, so that overflow into its BTreeMap does not turn it
//! into the reference queue; an insert that does not fit panics. In `expire`
//! it fires a whole gear-3 slot (up to 262k timers) in the one poll that
//! reaches the slot and nothing in most others: its per-iteration figure is an
//! average over those bursts.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bitwheel::timer::{BitWheel, Timer};
use criterion::{
    criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion,
};
use tether::timer::{TimerHandle, TimerWheel};

const SIZES: [u64; 3] = [1_000, 100_000, 1_000_000];
/// The insert/cancel window: deadlines uniform over the next hour.
const HOUR_MS: u64 = 3_600_000;
/// Timers cancelled per timed batch in `timer/cancel`.
const CANCEL_BATCH: usize = 128;

/// splitmix64: fast, deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift, no division).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

/// What the benchmarks need of a timer queue.
trait Queue: Sized {
    type Handle;
    const NAME: &'static str;
    /// An empty queue whose clock reads 0 ms.
    fn build() -> Self;
    fn insert(&mut self, deadline_ms: u64, value: u64) -> Self::Handle;
    /// True when the timer was still pending.
    fn cancel(&mut self, h: Self::Handle) -> bool;
    /// Advances the clock to `now_ms` and appends every due value to `out`.
    fn expire(&mut self, now_ms: u64, out: &mut Vec<u64>);
    fn len(&self) -> usize;
}

struct Tether(TimerWheel<u64>);

impl Queue for Tether {
    type Handle = TimerHandle;
    const NAME: &'static str = "tether";

    fn build() -> Self {
        Tether(TimerWheel::new(0))
    }

    fn insert(&mut self, deadline_ms: u64, value: u64) -> TimerHandle {
        self.0.insert(deadline_ms, value)
    }

    fn cancel(&mut self, h: TimerHandle) -> bool {
        self.0.cancel(h)
    }

    fn expire(&mut self, now_ms: u64, out: &mut Vec<u64>) {
        while let Some((_, v)) = self.0.poll(now_ms) {
            out.push(v);
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The reference: ordered map keyed by (deadline, insertion sequence); the
/// key doubles as the cancel handle.
struct BTree {
    map: BTreeMap<(u64, u64), u64>,
    seq: u64,
}

impl Queue for BTree {
    type Handle = (u64, u64);
    const NAME: &'static str = "btreemap";

    fn build() -> Self {
        BTree {
            map: BTreeMap::new(),
            seq: 0,
        }
    }

    fn insert(&mut self, deadline_ms: u64, value: u64) -> (u64, u64) {
        self.seq += 1;
        let key = (deadline_ms, self.seq);
        self.map.insert(key, value);
        key
    }

    fn cancel(&mut self, h: (u64, u64)) -> bool {
        self.map.remove(&h).is_some()
    }

    fn expire(&mut self, now_ms: u64, out: &mut Vec<u64>) {
        while let Some(e) = self.map.first_entry() {
            if e.key().0 > now_ms {
                break;
            }
            out.push(e.remove());
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// bitwheel's timers fire through a callback; this one hands its value to
/// the context so that the caller can re-arm it.
struct Fire(u64);

impl Timer for Fire {
    type Context = Vec<u64>;

    fn fire(&mut self, ctx: &mut Vec<u64>) {
        ctx.push(self.0);
    }
}

/// 4 gears of 1 ms ticks (range 2^24 ms, ~4.7 h), 300,000 timers per slot,
/// 2 probes: sized for the 1M populations (see the module comment).
type BitWheel1M = BitWheel<Fire, 4, 1, 300_000, 2>;

struct Bit {
    wheel: Box<BitWheel1M>,
    epoch: Instant,
    /// Kept here: bitwheel 0.6.0's own `len()` is not decremented when a
    /// timer fires (only on insert and cancel), so it overcounts after polls.
    len: usize,
}

impl Queue for Bit {
    type Handle = bitwheel::timer::TimerHandle;
    const NAME: &'static str = "bitwheel";

    fn build() -> Self {
        let epoch = Instant::now();
        // Each slot is built as `Box::new([Entry; CAP])`, i.e. a 9.6 MB array
        // on the stack first: build on a thread with room for it.
        let wheel = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || BitWheel1M::boxed_with_epoch(epoch))
            .expect("spawn")
            .join()
            .expect("bitwheel construction");
        Bit {
            wheel,
            epoch,
            len: 0,
        }
    }

    fn insert(&mut self, deadline_ms: u64, value: u64) -> bitwheel::timer::TimerHandle {
        let when = self.epoch + Duration::from_millis(deadline_ms);
        let h = self
            .wheel
            .insert(when, Fire(value))
            .expect("bitwheel slot capacity exceeded");
        self.len += 1;
        h
    }

    fn cancel(&mut self, h: bitwheel::timer::TimerHandle) -> bool {
        let v = self.wheel.cancel(h).is_some();
        self.len -= usize::from(v);
        v
    }

    fn expire(&mut self, now_ms: u64, out: &mut Vec<u64>) {
        self.len -= self
            .wheel
            .poll(self.epoch + Duration::from_millis(now_ms), out);
    }

    fn len(&self) -> usize {
        self.len
    }
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30);
}

/// N timers at deadlines `1..=window` ms; returns the queue and the handles.
fn filled<Q: Queue>(n: u64, window: u64, rng: &mut Rng) -> (Q, Vec<Q::Handle>) {
    let mut q = Q::build();
    let handles = (0..n).map(|i| q.insert(1 + rng.below(window), i)).collect();
    assert_eq!(q.len() as u64, n);
    (q, handles)
}

fn bench_insert_cancel<Q: Queue>(g: &mut BenchmarkGroup<'_, WallTime>, n: u64) {
    let mut rng = Rng(0x5eed ^ n);
    let (mut q, handles) = filled::<Q>(n, HOUR_MS, &mut rng);
    drop(handles);
    g.bench_function(BenchmarkId::new(Q::NAME, n), |b| {
        b.iter(|| {
            let h = q.insert(1 + rng.below(HOUR_MS), black_box(u64::MAX));
            black_box(q.cancel(h))
        })
    });
    assert_eq!(q.len() as u64, n);
}

/// Cancel alone, of a timer picked at random among the N pending ones (so,
/// at large N, usually not in cache, as when a registration's timer is
/// cancelled long after it was armed). `iter_custom` works in batches of
/// `CANCEL_BATCH`: untimed, take that many random handles out of the handle
/// list; timed, cancel them; untimed, arm as many fresh timers at random
/// deadlines in the hour and put their handles back. The population thus
/// stays between N - 128 and N. The two `Instant::now` calls per batch add
/// well under 1 ns per cancel.
fn bench_cancel<Q: Queue>(g: &mut BenchmarkGroup<'_, WallTime>, n: u64) {
    let mut rng = Rng(0xca2c ^ n);
    let (mut q, mut handles) = filled::<Q>(n, HOUR_MS, &mut rng);
    let mut batch: Vec<Q::Handle> = Vec::with_capacity(CANCEL_BATCH);
    g.bench_function(BenchmarkId::new(Q::NAME, n), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(CANCEL_BATCH as u64) as usize;
                for _ in 0..k {
                    let i = rng.below(handles.len() as u64) as usize;
                    batch.push(handles.swap_remove(i));
                }
                let start = Instant::now();
                for h in batch.drain(..) {
                    black_box(q.cancel(h));
                }
                timed += start.elapsed();
                for _ in 0..k {
                    handles.push(q.insert(1 + rng.below(HOUR_MS), 0));
                }
                left -= k as u64;
            }
            timed
        })
    });
    assert_eq!(q.len() as u64, n);
}

fn bench_expire<Q: Queue>(g: &mut BenchmarkGroup<'_, WallTime>, n: u64) {
    let mut rng = Rng(0xe4 ^ n);
    let (mut q, handles) = filled::<Q>(n, n, &mut rng);
    drop(handles);
    let mut now = 0u64;
    let mut out = Vec::new();
    g.bench_function(BenchmarkId::new(Q::NAME, n), |b| {
        b.iter(|| {
            now += 1;
            q.expire(now, &mut out);
            let fired = out.len();
            for v in out.drain(..) {
                q.insert(now + n, v);
            }
            black_box(fired)
        })
    });
    assert_eq!(q.len() as u64, n);
}

type BenchFn = fn(&mut BenchmarkGroup<'_, WallTime>, u64);

fn run_group(c: &mut Criterion, name: &str, fns: [BenchFn; 3]) {
    let mut g = c.benchmark_group(name);
    configure(&mut g);
    for n in SIZES {
        for f in fns {
            f(&mut g, n);
        }
    }
    g.finish();
}

fn insert_cancel(c: &mut Criterion) {
    run_group(
        c,
        "timer/insert_cancel",
        [
            bench_insert_cancel::<Tether>,
            bench_insert_cancel::<BTree>,
            bench_insert_cancel::<Bit>,
        ],
    );
}

fn cancel(c: &mut Criterion) {
    run_group(
        c,
        "timer/cancel",
        [
            bench_cancel::<Tether>,
            bench_cancel::<BTree>,
            bench_cancel::<Bit>,
        ],
    );
}

fn expire(c: &mut Criterion) {
    run_group(
        c,
        "timer/expire",
        [
            bench_expire::<Tether>,
            bench_expire::<BTree>,
            bench_expire::<Bit>,
        ],
    );
}

criterion_group!(benches, insert_cancel, cancel, expire);
criterion_main!(benches);
