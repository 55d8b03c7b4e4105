//! What the RTP scenario counts: packets sent and received per flow (a
//! stream in one direction), corrupted payloads, one-way latency through
//! the relay in HDR histograms (whole run and per second), and the
//! per-second series; and the spread of delivery over the flows.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::packet::{self, Corrupt};
use crate::loadgen::{percentiles, Percentiles};

/// One second of the send window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RtpSecond {
    pub t: u32,
    pub sent: u64,
    pub received: u64,
    /// One-way latency of the packets received this second (ns).
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// How delivery spreads over the flows: each flow's received ÷ sent.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Flows that sent packets and got none of them through.
    pub silent: u64,
    /// The first few silent flows (stream × 2 + direction), for a look.
    pub silent_examples: Vec<u32>,
}

pub(crate) struct RtpTally {
    payload: usize,
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
    /// Datagrams that were not an intact packet of ours.
    pub corrupted: u64,
    /// Intact packets naming a flow this run does not have.
    pub foreign: u64,
    /// Received during the send window (the rest arrived while draining).
    pub received_in_window: u64,
    hist: Histogram<u64>,
    sec_hist: Histogram<u64>,
    timeline: Vec<RtpSecond>,
    cur: RtpSecond,
}

fn histogram() -> Histogram<u64> {
    // 1 ns to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

impl RtpTally {
    pub fn new(flows: usize, payload: usize) -> RtpTally {
        RtpTally {
            payload,
            sent: vec![0; flows],
            received: vec![0; flows],
            corrupted: 0,
            foreign: 0,
            received_in_window: 0,
            hist: histogram(),
            sec_hist: histogram(),
            timeline: Vec::new(),
            cur: RtpSecond::default(),
        }
    }

    /// Moves the per-second series on to second `t` (closing the current one).
    pub fn tick(&mut self, t: u32) {
        while self.cur.t < t {
            self.close_second();
        }
    }

    fn close_second(&mut self) {
        let mut s = std::mem::take(&mut self.cur);
        if !self.sec_hist.is_empty() {
            s.p50_ns = self.sec_hist.value_at_quantile(0.5);
            s.p99_ns = self.sec_hist.value_at_quantile(0.99);
        }
        self.sec_hist.reset();
        self.cur.t = s.t + 1;
        self.timeline.push(s);
    }

    pub fn on_sent(&mut self, flow: usize, n: u64) {
        if let Some(c) = self.sent.get_mut(flow) {
            *c += n;
        }
        self.cur.sent += n;
    }

    /// Accounts a received datagram at `now_ns`; `in_window` while sending.
    pub fn on_received(&mut self, data: &[u8], now_ns: u64, in_window: bool) {
        let s = match packet::parse(data, self.payload) {
            Ok(s) => s,
            Err(Corrupt::TooShort | Corrupt::NotRtpV2 | Corrupt::Payload) => {
                self.corrupted += 1;
                return;
            }
        };
        let flow = s.stream as usize * 2 + usize::from(s.dir);
        let Some(c) = self.received.get_mut(flow) else {
            self.foreign += 1;
            return;
        };
        *c += 1;
        if in_window {
            self.received_in_window += 1;
            self.cur.received += 1;
        }
        let lat = now_ns.saturating_sub(s.sent_ns).max(1);
        let _ = self.hist.record(lat.min(self.hist.high()));
        if in_window {
            let _ = self.sec_hist.record(lat.min(self.sec_hist.high()));
        }
    }

    pub fn total_sent(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn total_received(&self) -> u64 {
        self.received.iter().sum()
    }

    pub fn latency_ns(&self) -> Percentiles {
        percentiles(&self.hist)
    }

    /// Delivery per flow, over the flows that sent anything.
    pub fn spread(&self) -> Spread {
        let mut ratios: Vec<f64> = Vec::new();
        let mut silent = 0;
        let mut silent_examples = Vec::new();
        for (f, (&s, &r)) in self.sent.iter().zip(&self.received).enumerate() {
            if s == 0 {
                continue;
            }
            if r == 0 {
                silent += 1;
                if silent_examples.len() < 10 {
                    silent_examples.push(f as u32);
                }
            }
            ratios.push(r as f64 / s as f64);
        }
        if ratios.is_empty() {
            return Spread::default();
        }
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = if n % 2 == 1 {
            ratios[n / 2]
        } else {
            (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
        };
        Spread {
            min: ratios[0],
            median,
            max: ratios[n - 1],
            silent,
            silent_examples,
        }
    }

    /// The per-second series, the current second closed.
    pub fn timeline(&mut self) -> Vec<RtpSecond> {
        if self.cur.sent > 0 || self.cur.received > 0 {
            self.close_second();
        }
        std::mem::take(&mut self.timeline)
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::{build, Stamp};
    use super::*;

    fn pkt(stream: u32, dir: u8, seq: u32, sent_ns: u64) -> Vec<u8> {
        let mut b = vec![0; 200];
        let s = Stamp {
            stream,
            dir,
            seq,
            sent_ns,
        };
        let n = build(&mut b, &s, 0, 160, 40).unwrap();
        b.truncate(n);
        b
    }

    #[test]
    fn delivery_spread_and_silent_flows() {
        let mut t = RtpTally::new(4, 40);
        for f in 0..4 {
            t.on_sent(f, 10);
        }
        // Flow 0 (stream 0 A→B): all 10; flow 1: 5; flow 2: none; flow 3: 8.
        for (stream, dir, n) in [(0, 0, 10), (0, 1, 5), (1, 1, 8)] {
            for seq in 0..n {
                t.on_received(&pkt(stream, dir, seq, 1_000), 21_000, true);
            }
        }
        assert_eq!((t.total_sent(), t.total_received()), (40, 23));
        let s = t.spread();
        assert_eq!((s.min, s.max, s.silent), (0.0, 1.0, 1));
        assert!((s.median - 0.65).abs() < 1e-9, "{}", s.median);
        assert_eq!(s.silent_examples, vec![2]);
        let l = t.latency_ns();
        assert!((19_980..=20_020).contains(&l.p50), "{l:?}");
    }

    #[test]
    fn corrupted_foreign_and_late_packets_are_told_apart() {
        let mut t = RtpTally::new(2, 40);
        t.on_sent(0, 3);
        let mut bad = pkt(0, 0, 1, 5);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        t.on_received(&bad, 10, true);
        t.on_received(b"hello", 10, true);
        t.on_received(&pkt(7, 0, 1, 5), 10, true);
        t.on_received(&pkt(0, 0, 2, 5), 10, false);
        assert_eq!((t.corrupted, t.foreign), (2, 1));
        assert_eq!((t.total_received(), t.received_in_window), (1, 0));
    }

    #[test]
    fn per_second_series() {
        let mut t = RtpTally::new(2, 40);
        t.on_sent(0, 2);
        t.on_received(&pkt(0, 0, 0, 0), 50_000, true);
        t.tick(2);
        t.on_sent(1, 1);
        t.on_received(&pkt(0, 1, 0, 0), 2_000_000_100, true);
        let tl = t.timeline();
        assert_eq!(tl.len(), 3);
        assert_eq!((tl[0].t, tl[0].sent, tl[0].received), (0, 2, 1));
        assert!((49_900..=50_100).contains(&tl[0].p50_ns));
        assert_eq!(
            (tl[1].t, tl[1].sent, tl[1].received, tl[1].p50_ns),
            (1, 0, 0, 0)
        );
        assert_eq!((tl[2].t, tl[2].sent, tl[2].received), (2, 1, 1));
        let s = RtpTally::new(3, 40).spread();
        assert_eq!(s, Spread::default(), "nothing sent, nothing to say");
    }
}
