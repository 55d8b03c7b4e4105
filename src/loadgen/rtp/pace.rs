//! Pacing: `flows` flows each send `pps` packets per second, spread evenly
//! over time rather than in bursts. Packet `k` of the whole run belongs to
//! flow `k % flows` (its `k / flows`-th packet) and is due at
//! `k · 1e9 / (flows · pps)` ns, so each flow keeps its own period and the
//! flows' sends interleave at equal gaps.

/// The run's send schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacer {
    pub flows: u64,
    pub pps: u64,
    /// Packets in the whole run (the schedule ends there).
    pub total: u64,
}

impl Pacer {
    /// `seconds` of sending, capped at `max_packets` in all.
    pub fn new(flows: u64, pps: u64, seconds: f64, max_packets: u64) -> Pacer {
        let per_s = flows.saturating_mul(pps);
        let total = (per_s as f64 * seconds.max(0.0)).floor();
        Pacer {
            flows,
            pps,
            total: (total as u64).min(max_packets),
        }
    }

    /// Packets per second over all flows.
    pub fn rate(&self) -> u64 {
        self.flows.saturating_mul(self.pps)
    }

    /// When packet `k` is due, in ns from the start (`u64::MAX` for none).
    pub fn due_ns(&self, k: u64) -> u64 {
        let rate = self.rate();
        if rate == 0 || k >= self.total {
            return u64::MAX;
        }
        // Rounded up, so `due_by(due_ns(k))` includes packet k.
        let ns = (u128::from(k) * 1_000_000_000).div_ceil(u128::from(rate));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// How many packets are due at `t_ns` (the first `n` of the run).
    pub fn due_by(&self, t_ns: u64) -> u64 {
        if self.rate() == 0 {
            return 0;
        }
        let n = u128::from(t_ns) * u128::from(self.rate()) / 1_000_000_000 + 1;
        u64::try_from(n).unwrap_or(u64::MAX).min(self.total)
    }

    /// The flow of packet `k` and its number within the flow.
    pub fn packet(&self, k: u64) -> (usize, u32) {
        let f = self.flows.max(1);
        ((k % f) as usize, (k / f) as u32)
    }

    /// How long the schedule lasts, in ns (from the first packet's due time
    /// to one period after the last).
    pub fn span_ns(&self) -> u64 {
        let rate = self.rate();
        if rate == 0 {
            return 0;
        }
        u64::try_from(u128::from(self.total) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flow_keeps_its_period_and_flows_interleave_evenly() {
        // 4 flows at 50 pps: a packet every 5 ms, each flow every 20 ms.
        let p = Pacer::new(4, 50, 1.0, u64::MAX);
        assert_eq!(p.total, 200);
        assert_eq!(p.rate(), 200);
        assert_eq!(p.due_ns(0), 0);
        assert_eq!(p.due_ns(1), 5_000_000);
        assert_eq!(p.packet(1), (1, 0));
        assert_eq!(p.packet(5), (1, 1));
        assert_eq!(p.due_ns(5) - p.due_ns(1), 20_000_000, "flow 1's period");
        assert_eq!(p.due_ns(199), 995_000_000);
        assert_eq!(p.due_ns(200), u64::MAX, "the schedule ends");
        assert_eq!(p.span_ns(), 1_000_000_000);
    }

    #[test]
    fn due_by_counts_exactly_the_packets_whose_time_has_come() {
        let p = Pacer::new(3, 7, 2.0, u64::MAX);
        for k in 0..p.total {
            let t = p.due_ns(k);
            assert!(p.due_by(t) > k, "packet {k} due at {t}");
            if t > 0 {
                assert!(p.due_by(t - 1) <= k, "packet {k} not due before {t}");
            }
        }
        assert_eq!(p.due_by(u64::MAX / 2), p.total);
    }

    #[test]
    fn caps_and_degenerate_plans() {
        assert_eq!(Pacer::new(1_000, 50, 10.0, 1_000).total, 1_000);
        assert_eq!(Pacer::new(10, 50, 0.5, u64::MAX).total, 250);
        let none = Pacer::new(0, 50, 1.0, u64::MAX);
        assert_eq!((none.total, none.due_by(1_000), none.span_ns()), (0, 0, 0));
        assert_eq!(none.due_ns(0), u64::MAX);
        assert_eq!(Pacer::new(4, 0, 1.0, u64::MAX).due_by(5), 0);
        assert_eq!(Pacer::new(4, 50, -1.0, u64::MAX).total, 0);
    }
}
