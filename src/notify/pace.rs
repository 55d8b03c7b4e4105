//! Pacing of first sends: how many requests a core may start now.
//!
//! Three limits apply. A token bucket per core holds the node's rate share
//! (and one per job run holds the job's own `rate`). A cap on devices
//! awaiting an answer (`max_in_flight`) bounds memory. And the node's
//! bucket refills at a rate the congestion back-off sets:
//!
//! A node asked to send faster than it and its peers can absorb sees answers
//! come back after T1; every request is then retransmitted, the load
//! doubles and throughput collapses (measured in BENCHMARKS.md). So each
//! core compares, per 100 ms window, the first retransmissions it makes with
//! the first sends they belong to (those made T1 earlier). Silent devices
//! (dead, or phones slow to wake) retransmit too, but as a steady share:
//! that share's recent minimum is the baseline, and only a rise well above
//! it is congestion. Above baseline + 20 points the rate drops by 30%; near
//! the baseline it climbs back by 5% of the configured rate per window.

/// Requests started per `Timer::Pace`, so the worker reads answers
/// between slices.
pub(super) const SENDS_PER_TICK: usize = 256;

/// A token bucket in thousandths of a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    rate: u64,
    milli: u64,
    last: u64,
}

impl Bucket {
    pub fn new(rate_per_s: u32, now: u64) -> Bucket {
        let mut b = Bucket {
            rate: u64::from(rate_per_s.max(1)),
            milli: 0,
            last: now,
        };
        b.milli = b.cap();
        b
    }

    /// At most 10 ms worth of requests (and at least one) in a burst.
    fn cap(&self) -> u64 {
        (self.rate * 10).max(1000)
    }

    pub fn available(&mut self, now: u64) -> usize {
        if now > self.last {
            self.milli = (self.milli + (now - self.last) * self.rate).min(self.cap());
            self.last = now;
        }
        (self.milli / 1000) as usize
    }

    pub fn take(&mut self, n: usize) {
        self.milli = self.milli.saturating_sub(n as u64 * 1000);
    }
}

/// One core's pacing: its share of the node's rate, adapted to congestion,
/// and the in-flight cap.
#[derive(Debug, Clone)]
pub(super) struct Pacer {
    node: Bucket,
    congestion: Congestion,
    max_in_flight: usize,
}

impl Pacer {
    /// `rate`: this core's share of the node's rate; `t1_ms`: when an
    /// unanswered send is first retransmitted.
    pub fn new(rate: u32, t1_ms: u64, max_in_flight: usize) -> Pacer {
        Pacer {
            node: Bucket::new(rate, 0),
            congestion: Congestion::new(rate, t1_ms, 0),
            max_in_flight,
        }
    }

    /// First sends the node's bucket allows at `now`, at most
    /// [`SENDS_PER_TICK`]; each one made is then [`Pacer::take_one`].
    pub fn budget(&mut self, now: u64) -> usize {
        self.node.rate = u64::from(self.congestion.rate(now));
        self.node.available(now).min(SENDS_PER_TICK)
    }

    pub fn take_one(&mut self) {
        self.node.take(1);
    }

    /// Room for another first send: devices awaiting an answer under
    /// `max_in_flight`, and transactions alive (INVITEs ringing or
    /// lingering to re-ACK, BYEs) under twice that, so memory stays bounded.
    pub fn has_room(&self, awaiting: usize, in_flight: usize) -> bool {
        awaiting < self.max_in_flight && in_flight < 2 * self.max_in_flight
    }

    /// A request's first send.
    pub fn on_send(&mut self) {
        self.congestion.on_send();
    }

    /// A request retransmitted for the first time (nothing heard after T1).
    pub fn on_first_retransmit(&mut self) {
        self.congestion.on_first_retransmit();
    }
}

/// Window over which sends and first retransmissions are counted (ms).
const WINDOW_MS: u64 = 100;
/// Windows remembered: for the send counts T1 back and the baseline (6.4 s).
const HISTORY: usize = 64;
/// Fewer first sends than this in the reference window: no verdict.
const MIN_SAMPLE: u32 = 20;

/// The adaptive share of a configured request rate.
#[derive(Debug, Clone)]
struct Congestion {
    max: f64,
    current: f64,
    floor: f64,
    window_start: u64,
    sent: u32,
    retransmitted: u32,
    /// First sends per past window, a ring indexed by `pos`.
    sends: [u32; HISTORY],
    /// Retransmitted share per past window (negative: no verdict).
    shares: [f32; HISTORY],
    pos: usize,
    /// Windows between a send and its first retransmission (T1).
    lag: usize,
}

impl Congestion {
    /// `t1_ms`: when an unanswered send is first retransmitted.
    fn new(max_rate: u32, t1_ms: u64, now: u64) -> Congestion {
        let max = f64::from(max_rate.max(1));
        Congestion {
            max,
            current: max,
            floor: (max / 100.0).max(100.0_f64.min(max)),
            window_start: now,
            sent: 0,
            retransmitted: 0,
            sends: [0; HISTORY],
            shares: [-1.0; HISTORY],
            pos: 0,
            lag: (t1_ms / WINDOW_MS).clamp(1, HISTORY as u64 - 1) as usize,
        }
    }

    /// A first send of a request.
    fn on_send(&mut self) {
        self.sent += 1;
    }

    /// A request retransmitted for the first time (nothing heard after T1).
    fn on_first_retransmit(&mut self) {
        self.retransmitted += 1;
    }

    /// The rate (requests/s) to pace at from `now`.
    fn rate(&mut self, now: u64) -> u32 {
        if now >= self.window_start + WINDOW_MS {
            self.close_window();
            self.window_start = now;
        }
        self.current as u32
    }

    fn close_window(&mut self) {
        let reference = self.sends[(self.pos + HISTORY - self.lag) % HISTORY];
        let share = if reference >= MIN_SAMPLE {
            (self.retransmitted as f32 / reference as f32).min(1.0)
        } else {
            -1.0
        };
        self.shares[self.pos] = share;
        self.sends[self.pos] = self.sent;
        self.pos = (self.pos + 1) % HISTORY;
        self.sent = 0;
        self.retransmitted = 0;
        let baseline = self
            .shares
            .iter()
            .copied()
            .filter(|s| *s >= 0.0)
            .fold(f32::INFINITY, f32::min);
        if share >= 0.0 && share > baseline + 0.2 {
            self.current = (self.current * 0.7).max(self.floor);
        } else if share < 0.0 || share <= baseline + 0.05 {
            self.current = (self.current + self.max * 0.05).min(self.max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `windows` windows of `sent` first sends, each followed T1 later
    /// by `retrans(window)` first retransmissions; returns the rates seen.
    fn run(
        c: &mut Congestion,
        now: &mut u64,
        windows: usize,
        sent: u32,
        retrans: impl Fn(usize) -> u32,
    ) -> Vec<u32> {
        let mut rates = Vec::new();
        for w in 0..windows {
            for _ in 0..sent {
                c.on_send();
            }
            for _ in 0..retrans(w) {
                c.on_first_retransmit();
            }
            *now += WINDOW_MS;
            rates.push(c.rate(*now));
        }
        rates
    }

    #[test]
    fn congestion_cuts_the_rate_and_its_end_restores_it() {
        let mut c = Congestion::new(100_000, 500, 0);
        let mut now = 0;
        run(&mut c, &mut now, 10, 1000, |_| 0);
        // Answers stop coming back in time: 60% of sends need retransmitting.
        let rates = run(&mut c, &mut now, 10, 1000, |_| 600);
        assert!(*rates.last().unwrap() < 10_000, "{rates:?}");
        // The queue drains: back to the configured rate within a few seconds.
        let rates = run(&mut c, &mut now, 40, 1000, |_| 0);
        assert_eq!(*rates.last().unwrap(), 100_000, "{rates:?}");
    }

    #[test]
    fn a_steady_share_of_silent_devices_is_not_congestion() {
        for silent in [50, 300, 500] {
            let mut c = Congestion::new(100_000, 500, 0);
            let mut now = 0;
            // The first T1 of sends has no retransmissions yet, then a steady share.
            let rates = run(
                &mut c,
                &mut now,
                100,
                1000,
                |w| if w < 5 { 0 } else { silent },
            );
            assert!(
                rates.iter().all(|&r| r >= 70_000),
                "{silent} per 1000 silent: {rates:?}"
            );
            assert_eq!(*rates.last().unwrap(), 100_000);
        }
    }

    #[test]
    fn a_bucket_bursts_10_ms_worth_then_refills_at_its_rate() {
        let mut b = Bucket::new(1000, 0);
        assert_eq!(b.available(0), 10);
        b.take(10);
        assert_eq!(b.available(0), 0);
        assert_eq!(b.available(3), 3);
        assert_eq!(b.available(100), 10, "never more than the burst");
        // A slow rate still allows one request at a time.
        let mut slow = Bucket::new(1, 0);
        assert_eq!(slow.available(0), 1);
        slow.take(1);
        assert_eq!(slow.available(999), 0);
        assert_eq!(slow.available(1000), 1);
    }

    #[test]
    fn the_floor_never_exceeds_the_configured_rate() {
        let mut c = Congestion::new(50, 500, 0);
        let mut now = 0;
        run(&mut c, &mut now, 10, 100, |_| 0);
        let rates = run(&mut c, &mut now, 20, 100, |_| 90);
        assert!(rates.iter().all(|&r| r <= 50), "{rates:?}");
    }
}
