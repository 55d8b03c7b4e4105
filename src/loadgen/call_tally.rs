//! What the call scenario counts: each call's outcome against what its
//! caller planned (answered, cancelled while ringing, refused busy), setup
//! and BYE latencies in HDR histograms, the retransmissions on both ends;
//! and the [`CallReport`] made of them and of the driver's CPU samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::tally::CpuSamples;
use super::{percentiles, CallPlan, Percentiles};

/// The call scenario's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallReport {
    pub callees: u32,
    pub callers: u32,
    /// Calls per second asked (0: as many as the window allows).
    pub rate_asked: u32,
    pub hold_ms: u64,
    pub cancel_share: f64,
    pub busy_share: f64,
    /// INVITEs first sent.
    pub attempted: u64,
    /// Calls answered 200 (the caller then ACKs, holds and hangs up).
    pub answered: u64,
    /// Calls the caller cancelled and that ended 487, as planned.
    pub cancelled: u64,
    /// Calls the callee refused 486, as planned.
    pub busy: u64,
    /// Calls that ended otherwise than planned (an unexpected final or
    /// none at all).
    pub failed: u64,
    /// INVITEs without a final response (Timer B, or no final within 64·T1
    /// of ringing).
    pub timeouts: u64,
    /// Calls still in flight when the drain time ran out.
    pub unfinished: u64,
    /// Final responses to the INVITEs, by status code.
    pub codes: BTreeMap<u16, u64>,
    /// Calls that got their final response, per second, from the first
    /// INVITE to the last final response.
    pub calls_per_s: f64,
    /// INVITE first sent to 200 received.
    pub setup_latency_us: Percentiles,
    /// BYE first sent to its final response.
    pub bye_rtt_us: Percentiles,
    pub bye_ok: u64,
    pub bye_failed: u64,
    pub bye_timeouts: u64,
    /// CANCELs answered 200.
    pub cancel_ok: u64,
    pub invite_retransmissions: u64,
    pub cancel_retransmissions: u64,
    pub bye_retransmissions: u64,
    /// Callees' final responses (200, 486, 487) sent again for want of an ACK.
    pub callee_retransmissions: u64,
    /// Retransmitted INVITEs the callees answered with their last response.
    pub invites_absorbed: u64,
    /// Callees that gave up waiting for the ACK of their final response.
    pub ack_timeouts: u64,
    /// INVITEs that reached another endpoint than the callee called.
    pub misrouted: u64,
    /// Responses and requests for calls already over (answered statelessly:
    /// a late final is ACKed, a late BYE answered).
    pub stale: u64,
    /// Seconds from the first INVITE to the end of the run.
    pub call_phase_s: f64,
    /// Server CPU (µs, all threads and child processes) per call placed,
    /// over the call phase, with `server_pid`.
    pub server_cpu_us_per_call: Option<f64>,
    /// The generator's own CPU per call placed (both ends of the call).
    pub generator_cpu_us_per_call: Option<f64>,
}

/// The counters the calls keep (see [`CallReport`] for each).
#[derive(Debug)]
pub(crate) struct CallTally {
    pub attempted: u64,
    pub answered: u64,
    pub cancelled: u64,
    pub busy: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub unfinished: u64,
    pub bye_ok: u64,
    pub bye_failed: u64,
    pub bye_timeouts: u64,
    pub cancel_ok: u64,
    pub invite_retransmissions: u64,
    pub cancel_retransmissions: u64,
    pub bye_retransmissions: u64,
    pub callee_retransmissions: u64,
    pub invites_absorbed: u64,
    pub ack_timeouts: u64,
    pub misrouted: u64,
    pub stale: u64,
    codes: BTreeMap<u16, u64>,
    setup: Histogram<u64>,
    bye: Histogram<u64>,
    /// When the first INVITE went out and the last final came in (µs).
    pub first_invite_us: Option<u64>,
    /// When the call phase was over (µs).
    pub over_us: Option<u64>,
    last_final_us: u64,
    finals: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl CallTally {
    pub fn new() -> CallTally {
        CallTally {
            attempted: 0,
            answered: 0,
            cancelled: 0,
            busy: 0,
            failed: 0,
            timeouts: 0,
            unfinished: 0,
            bye_ok: 0,
            bye_failed: 0,
            bye_timeouts: 0,
            cancel_ok: 0,
            invite_retransmissions: 0,
            cancel_retransmissions: 0,
            bye_retransmissions: 0,
            callee_retransmissions: 0,
            invites_absorbed: 0,
            ack_timeouts: 0,
            misrouted: 0,
            stale: 0,
            codes: BTreeMap::new(),
            setup: histogram(),
            bye: histogram(),
            first_invite_us: None,
            over_us: None,
            last_final_us: 0,
            finals: 0,
        }
    }

    /// An INVITE's final response `code` (408 stands for none) at `now`.
    pub fn record_final(&mut self, code: u16, now: u64) {
        *self.codes.entry(code).or_default() += 1;
        self.finals += 1;
        self.last_final_us = self.last_final_us.max(now);
    }

    pub fn record_setup(&mut self, us: u64) {
        let _ = self.setup.record(us.max(1));
    }

    pub fn record_bye(&mut self, us: u64) {
        let _ = self.bye.record(us.max(1));
    }

    /// The report, with the run's length and the CPU samples taken when
    /// the calls began and were over (else at the end of the run).
    pub fn report(
        self,
        plan: &CallPlan,
        callees: u32,
        elapsed_s: f64,
        server: CpuSamples,
        generator: CpuSamples,
    ) -> CallReport {
        let first = self.first_invite_us.unwrap_or(0);
        let span_s = self.last_final_us.saturating_sub(first) as f64 / 1e6;
        let per_call = |c: CpuSamples| match (c.calls[0], c.calls[1].or(c.end)) {
            (Some(a), Some(b)) if self.attempted > 0 => {
                Some(b.saturating_sub(a) as f64 / 1e3 / self.attempted as f64)
            }
            _ => None,
        };
        CallReport {
            callees,
            callers: plan.callers,
            rate_asked: plan.rate,
            hold_ms: plan.hold.as_millis() as u64,
            cancel_share: plan.cancel_share,
            busy_share: plan.busy_share,
            attempted: self.attempted,
            answered: self.answered,
            cancelled: self.cancelled,
            busy: self.busy,
            failed: self.failed,
            timeouts: self.timeouts,
            unfinished: self.unfinished,
            calls_per_s: if span_s > 0.0 {
                self.finals as f64 / span_s
            } else {
                0.0
            },
            setup_latency_us: percentiles(&self.setup),
            bye_rtt_us: percentiles(&self.bye),
            bye_ok: self.bye_ok,
            bye_failed: self.bye_failed,
            bye_timeouts: self.bye_timeouts,
            cancel_ok: self.cancel_ok,
            invite_retransmissions: self.invite_retransmissions,
            cancel_retransmissions: self.cancel_retransmissions,
            bye_retransmissions: self.bye_retransmissions,
            callee_retransmissions: self.callee_retransmissions,
            invites_absorbed: self.invites_absorbed,
            ack_timeouts: self.ack_timeouts,
            misrouted: self.misrouted,
            stale: self.stale,
            call_phase_s: match self.over_us {
                Some(end) => end.saturating_sub(first) as f64 / 1e6,
                None => (elapsed_s - first as f64 / 1e6).max(0.0),
            },
            server_cpu_us_per_call: per_call(server),
            generator_cpu_us_per_call: per_call(generator),
            codes: self.codes,
        }
    }
}

impl CallReport {
    /// The call lines of the summary table.
    pub(crate) fn write_table(&self, t: &mut String) {
        let rate = match self.rate_asked {
            0 => "max".to_owned(),
            r => r.to_string(),
        };
        let _ = writeln!(
            t,
            "calls                {} callers to {} callees, {rate}/s asked, hold {} ms",
            self.callers, self.callees, self.hold_ms
        );
        let _ = writeln!(
            t,
            "calls placed         {} (answered {}, cancelled {}, busy {}, failed {}, timeouts {}, unfinished {})",
            self.attempted,
            self.answered,
            self.cancelled,
            self.busy,
            self.failed,
            self.timeouts,
            self.unfinished
        );
        let _ = writeln!(t, "calls/s              {:.0}", self.calls_per_s);
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        let _ = writeln!(t, "INVITE finals        {}", codes.join(", "));
        for (name, l) in [
            ("setup (us)", &self.setup_latency_us),
            ("BYE rtt (us)", &self.bye_rtt_us),
        ] {
            let _ = writeln!(
                t,
                "{name:<21}p50 {}  p90 {}  p99 {}  max {}",
                l.p50, l.p90, l.p99, l.max
            );
        }
        let _ = writeln!(
            t,
            "BYE                  ok {}, failed {}, timeouts {}; CANCEL ok {}",
            self.bye_ok, self.bye_failed, self.bye_timeouts, self.cancel_ok
        );
        let _ = writeln!(
            t,
            "retransmissions      INVITE {}, CANCEL {}, BYE {}, callee finals {} (INVITEs absorbed {}, ACK timeouts {})",
            self.invite_retransmissions,
            self.cancel_retransmissions,
            self.bye_retransmissions,
            self.callee_retransmissions,
            self.invites_absorbed,
            self.ack_timeouts
        );
        if self.misrouted + self.stale > 0 {
            let _ = writeln!(
                t,
                "misrouted INVITEs    {}; stale messages {}",
                self.misrouted, self.stale
            );
        }
        if let Some(c) = self.generator_cpu_us_per_call {
            let _ = writeln!(t, "own CPU/call         {c:.1} us (both ends)");
        }
        if let Some(c) = self.server_cpu_us_per_call {
            let _ = writeln!(t, "server CPU/call      {c:.1} us");
        }
    }
}
