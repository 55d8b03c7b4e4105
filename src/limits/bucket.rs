//! A token bucket on the caller's clock (ms): `rate` tokens a second,
//! at most `burst` saved up. Integer arithmetic in milli-tokens, so a
//! rate of 1/s refills exactly one token per 1000 ms and nothing drifts.

/// How fast a bucket refills and how much it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens per second; 0 = unlimited (the bucket always has room).
    pub per_s: u32,
    /// Tokens a source may spend at once after being quiet.
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const OFF: Rate = Rate { per_s: 0, burst: 0 };

    fn cap(self) -> u64 {
        u64::from(self.burst.max(1)) * 1000
    }
}

/// One source's bucket for one kind of request (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Milli-tokens left at `at_ms`.
    level: u32,
    /// When `level` was last brought up to date.
    at_ms: u64,
}

impl Bucket {
    /// An empty bucket (for unused table ways).
    pub const ZERO: Bucket = Bucket { level: 0, at_ms: 0 };

    /// A full bucket at `now`: a source seen for the first time (or again
    /// after its entry was evicted) may spend its whole burst.
    pub fn full(rate: Rate, now: u64) -> Bucket {
        Bucket {
            level: rate.cap().min(u64::from(u32::MAX)) as u32,
            at_ms: now,
        }
    }

    /// The level at `now`, refilled at `rate` since the last call (a clock
    /// that went backwards refills nothing).
    fn refill(&mut self, rate: Rate, now: u64) {
        let elapsed = now.saturating_sub(self.at_ms);
        // `per_s` tokens a second = `per_s` milli-tokens a millisecond.
        let level =
            u64::from(self.level).saturating_add(elapsed.saturating_mul(u64::from(rate.per_s)));
        self.level = level.min(rate.cap()).min(u64::from(u32::MAX)) as u32;
        self.at_ms = self.at_ms.max(now);
    }

    /// Spends one token at `now` if there is one: `true` lets the request in.
    pub fn take(&mut self, rate: Rate, now: u64) -> bool {
        if rate.per_s == 0 {
            return true;
        }
        self.refill(rate, now);
        if self.level >= 1000 {
            self.level -= 1000;
            true
        } else {
            false
        }
    }

    /// Whole seconds until the next token (at least 1): the `Retry-After`
    /// of a refusal.
    pub fn retry_after_s(&self, rate: Rate) -> u32 {
        if rate.per_s == 0 {
            return 1;
        }
        let missing = 1000u64.saturating_sub(u64::from(self.level));
        let ms = missing.div_ceil(u64::from(rate.per_s));
        (ms.div_ceil(1000)).clamp(1, 3600) as u32
    }

    /// True when the bucket would be full at `now`: nothing about this
    /// source is worth keeping for this kind.
    pub fn is_full_at(&self, rate: Rate, now: u64) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        u64::from(b.level) >= rate.cap().min(u64::from(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rate = Rate { per_s: 2, burst: 3 };

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = Bucket::full(R, 1_000);
        assert!((0..3).all(|_| b.take(R, 1_000)), "the burst goes at once");
        assert!(!b.take(R, 1_000), "then nothing is left");
        assert!(!b.take(R, 1_499), "half a token after 499 ms");
        assert!(b.take(R, 1_500), "2/s: one token per 500 ms");
        assert!(!b.take(R, 1_500));
        assert!(b.take(R, 2_000));
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let mut b = Bucket::full(R, 0);
        assert!((0..3).all(|_| b.take(R, 0)));
        // An hour of silence saves up the burst, not 7,200 tokens.
        let later = 3_600_000;
        assert!((0..3).all(|_| b.take(R, later)));
        assert!(!b.take(R, later));
        assert!(b.is_full_at(R, later + 1_500) && !b.is_full_at(R, later + 1_499));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut b = Bucket::full(R, 10_000);
        assert!((0..3).all(|_| b.take(R, 10_000)));
        assert!(!b.take(R, 5_000));
        assert!(
            !b.take(R, 10_499),
            "the earlier call did not move time back"
        );
        assert!(b.take(R, 10_500));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut b = Bucket::full(Rate::OFF, 0);
        assert!((0..100_000).all(|_| b.take(Rate::OFF, 0)));
    }

    #[test]
    fn retry_after_names_the_next_token() {
        let slow = Rate { per_s: 1, burst: 1 };
        let mut b = Bucket::full(slow, 0);
        assert!(b.take(slow, 0));
        assert!(!b.take(slow, 100));
        assert_eq!(b.retry_after_s(slow), 1);
        let fast = Rate {
            per_s: 50,
            burst: 1,
        };
        let mut f = Bucket::full(fast, 0);
        assert!(f.take(fast, 0) && !f.take(fast, 0));
        assert_eq!(f.retry_after_s(fast), 1, "never below one second");
    }

    #[test]
    fn huge_bursts_do_not_overflow() {
        let big = Rate {
            per_s: u32::MAX,
            burst: u32::MAX,
        };
        let mut b = Bucket::full(big, 0);
        assert!(b.take(big, u64::MAX / 2));
    }
}
