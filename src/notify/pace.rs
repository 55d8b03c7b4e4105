//! Congestion back-off for fan-out. A node asked to send faster than it and
//! its peers can absorb sees answers come back after T1; every request is
//! then retransmitted, the load doubles and throughput collapses (measured
//! in BENCHMARKS.md). So each core watches the share of first sends that
//! needed a retransmission, per 100 ms window: above a quarter it cuts its
//! rate by 30%, below a tenth it adds back 5% of the configured rate. Dead
//! devices retransmit too, but as a steady share well under the cut-off.

/// Window over which sends and first retransmissions are compared (ms).
const WINDOW_MS: u64 = 100;

/// The adaptive share of a configured request rate.
#[derive(Debug, Clone)]
pub struct Congestion {
    max: f64,
    current: f64,
    window_start: u64,
    sent: u32,
    retransmitted: u32,
}

impl Congestion {
    pub fn new(max_rate: u32, now: u64) -> Congestion {
        Congestion {
            max: f64::from(max_rate.max(1)),
            current: f64::from(max_rate.max(1)),
            window_start: now,
            sent: 0,
            retransmitted: 0,
        }
    }

    /// A first send of a request.
    pub fn on_send(&mut self) {
        self.sent += 1;
    }

    /// A request retransmitted for the first time (nothing heard after T1).
    pub fn on_first_retransmit(&mut self) {
        self.retransmitted += 1;
    }

    /// The rate (requests/s) to pace at from `now`.
    pub fn rate(&mut self, now: u64) -> u32 {
        if now >= self.window_start + WINDOW_MS {
            let (s, r) = (self.sent.max(1), self.retransmitted);
            if r >= 50 && r * 4 > s {
                self.current = (self.current * 0.7).max(self.max / 100.0).max(100.0);
            } else if r * 10 < s {
                self.current = (self.current + self.max * 0.05).min(self.max);
            }
            self.window_start = now;
            self.sent = 0;
            self.retransmitted = 0;
        }
        self.current as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_under_retransmissions_and_recovers() {
        let mut c = Congestion::new(100_000, 0);
        let mut now = 0;
        // Overload: half of what was sent came back unanswered.
        for _ in 0..5 {
            for _ in 0..1000 {
                c.on_send();
            }
            for _ in 0..500 {
                c.on_first_retransmit();
            }
            now += 100;
            c.rate(now);
        }
        let low = c.rate(now);
        assert!(low < 20_000, "{low}");
        // A steady 5% of dead devices is not congestion.
        for _ in 0..40 {
            for _ in 0..1000 {
                c.on_send();
            }
            for _ in 0..50 {
                c.on_first_retransmit();
            }
            now += 100;
            c.rate(now);
        }
        assert_eq!(c.rate(now), 100_000);
    }
}
