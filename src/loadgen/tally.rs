//! What a run counts: outcomes of the REGISTERs, their latencies (HDR
//! histograms), the requests the server sent, one [`Second`] per second of
//! the run; and the [`Summary`] made of them and of what only the driver
//! measures (wall clock, CPU time, the API side's reports).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::{job, percentiles, Scenario, Second, Summary};

/// Counters the simulated endpoints keep (see [`Summary`] for each).
#[derive(Debug)]
pub(crate) struct Tally {
    pub registered: u64,
    pub unregistered: u64,
    pub refreshed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub retransmissions: u64,
    pub challenges: u64,
    pub device_challenges: u64,
    pub answered: u64,
    pub churned: u64,
    pub churn_failed: u64,
    /// Requests received over the whole run, and by the time the last
    /// phase had all its answers (the rest arrived during the hold).
    pub requests_total: u64,
    pub requests_at_settled: u64,
    codes: BTreeMap<u16, u64>,
    requests: BTreeMap<String, u64>,
    hist: Histogram<u64>,
    /// This second's latencies.
    sec_hist: Histogram<u64>,
    /// Call scenario: this second's call setup latencies.
    setup_sec: Histogram<u64>,
    timeline: Vec<Second>,
    /// The second being counted.
    pub cur: Second,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            registered: 0,
            unregistered: 0,
            refreshed: 0,
            failed: 0,
            timeouts: 0,
            retransmissions: 0,
            challenges: 0,
            device_challenges: 0,
            answered: 0,
            churned: 0,
            churn_failed: 0,
            requests_total: 0,
            requests_at_settled: 0,
            codes: BTreeMap::new(),
            requests: BTreeMap::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            sec_hist: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
            setup_sec: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
            timeline: Vec::new(),
            cur: Second::default(),
        }
    }

    /// A REGISTER's final response `code`, `latency_us` after it was first sent.
    pub fn record_final(&mut self, code: u16, latency_us: u64) {
        *self.codes.entry(code).or_default() += 1;
        let lat = latency_us.max(1);
        let _ = self.hist.record(lat);
        let _ = self.sec_hist.record(lat);
    }

    /// A call answered this second, `us` after its INVITE.
    pub fn record_setup(&mut self, us: u64) {
        let _ = self.setup_sec.record(us.max(1));
        self.cur.calls_answered += 1;
    }

    /// A request from the server.
    pub fn record_request(&mut self, method: &str) {
        // No String built per request once the method has been seen.
        match self.requests.get_mut(method) {
            Some(c) => *c += 1,
            None => {
                self.requests.insert(method.to_owned(), 1);
            }
        }
        self.cur.requests_received += 1;
        self.requests_total += 1;
    }

    /// Closes the current second if `t` (whole seconds since the start) is
    /// past it: at most one per call, as the run loop calls often.
    pub fn close_second(&mut self, t: u32) {
        if t > self.cur.t {
            self.seal_second();
            let t_next = self.cur.t + 1;
            self.timeline.push(std::mem::replace(
                &mut self.cur,
                Second {
                    t: t_next,
                    ..Second::default()
                },
            ));
        }
    }

    /// Fan-out outcomes the server reported since the last call (delivered,
    /// rejected, timed out), counted in the current second.
    pub fn outcomes(&mut self, [d, r, t]: [u64; 3]) {
        self.cur.delivered += d;
        self.cur.rejected += r;
        self.cur.timed_out += t;
    }

    fn seal_second(&mut self) {
        self.cur.p50_us = self.sec_hist.value_at_quantile(0.5);
        self.cur.p99_us = self.sec_hist.value_at_quantile(0.99);
        self.sec_hist.reset();
        if !self.setup_sec.is_empty() {
            self.cur.setup_p50_us = self.setup_sec.value_at_quantile(0.5);
            self.cur.setup_p99_us = self.setup_sec.value_at_quantile(0.99);
            self.setup_sec.reset();
        }
    }
}

/// CPU time of a process (ns, from /proc) at three moments of a run.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSamples {
    pub start: Option<u64>,
    /// When the last phase had all its answers.
    pub settled: Option<u64>,
    pub end: Option<u64>,
    /// Call scenario: when the calls began and when they were over.
    pub calls: [Option<u64>; 2],
}

/// What only the driver measures.
#[derive(Debug, Default)]
pub(crate) struct Measured {
    pub elapsed_s: f64,
    /// From the start until the last phase had all its answers.
    pub settled_s: Option<f64>,
    pub generator_cpu: CpuSamples,
    pub server_cpu: CpuSamples,
    pub job: Option<job::JobReport>,
    pub soak_jobs: Option<job::SoakReport>,
}

/// The run's inputs the summary repeats or divides by.
pub(crate) struct Totals {
    pub endpoints: u32,
    pub rate_asked: u32,
    pub scenario: Scenario,
    /// REGISTERs first sent (retransmissions are counted apart).
    pub registers_started: u64,
    pub endpoints_prompted: u64,
}

/// Microseconds of CPU per unit between two samples.
fn per(a: Option<u64>, b: Option<u64>, n: u64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some(b.saturating_sub(a) as f64 / 1000.0 / n as f64),
        _ => None,
    }
}

impl Tally {
    pub fn summary(mut self, t: Totals, m: Measured) -> Summary {
        self.seal_second();
        self.timeline.push(self.cur);
        let hold_requests = self.requests_total - self.requests_at_settled;
        // The rate is over the registration phase, not the hold.
        let reg_secs = m.settled_s.unwrap_or(m.elapsed_s).max(1e-3);
        let (g, s) = (m.generator_cpu, m.server_cpu);
        Summary {
            endpoints: t.endpoints,
            rate_asked: t.rate_asked,
            elapsed_s: m.elapsed_s,
            registered: self.registered,
            unregistered: self.unregistered,
            refreshed: self.refreshed,
            failed: self.failed,
            timeouts: self.timeouts,
            retransmissions: self.retransmissions,
            challenges: self.challenges,
            codes: self.codes,
            achieved_rate: self.registered as f64 / reg_secs,
            latency_us: percentiles(&self.hist),
            requests_received: self.requests,
            requests_answered: self.answered,
            endpoints_prompted: t.endpoints_prompted,
            generator_cpu_us_per_register: per(
                g.start,
                g.settled.or(g.end),
                t.registers_started + self.retransmissions,
            ),
            server_cpu_us_per_register: per(s.start, s.settled.or(s.end), self.registered),
            server_cpu_us_per_request: if t.scenario == Scenario::Keepalive {
                per(s.settled, s.end, hold_requests)
            } else {
                None
            },
            job: m.job,
            device_challenges: self.device_challenges,
            churned: self.churned,
            churn_failed: self.churn_failed,
            soak_jobs: m.soak_jobs,
            calls: None,
            flood: None,
            nodes: Vec::new(),
            duplicate_prompts: 0,
            timeline: self.timeline,
        }
    }
}
