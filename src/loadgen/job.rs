//! The application server's side of the `notify` scenario: once the
//! simulated endpoints are registered, ask the server's control API for one
//! fan-out job to all of them and time it; then measure API-to-wire
//! latency with single-target jobs to a probe device of our own.

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{percentiles, process_cpu_ns, Percentiles};
use crate::sip;

/// What to ask for.
#[derive(Debug, Clone)]
pub struct JobPlan {
    /// Base URL of the control API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    pub token: String,
    /// `contact-me` or `wake-invite`.
    pub kind: String,
    /// Single-target jobs for the latency probe (0: none).
    pub probes: u32,
    /// The big job's `rate` (requests/s); `None`: the server's node rate.
    pub rate: Option<u32>,
    /// The SIP server (the probe device registers there).
    pub target: SocketAddrV4,
    pub domain: String,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobReport {
    pub devices: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub other: u64,
    /// From the POST to the job reading `finished`.
    pub seconds: f64,
    /// Server CPU over that time (all threads), with `--server-pid`.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_device: Option<f64>,
    /// From sending the POST to the NOTIFY arriving at the probe device.
    pub api_to_wire_us: Option<Percentiles>,
    /// The server's fan-out counters from its `/metrics` after the job.
    pub server_metrics: std::collections::BTreeMap<String, f64>,
    pub error: Option<String>,
}

/// Devices delivered, rejected and timed out so far, summed over the run's
/// jobs, as the job poller last read them from the server's API (live
/// while a job runs); the load loop samples them into its timeline.
#[derive(Debug, Default)]
pub(crate) struct Outcomes([AtomicU64; 3]);

impl Outcomes {
    /// `base` (jobs already finished) plus a running job's `counts`.
    fn show(&self, base: [u64; 3], counts: &serde_json::Value) {
        for (k, (cell, b)) in ["delivered", "rejected", "timed_out"]
            .into_iter()
            .zip(self.0.iter().zip(base))
        {
            cell.store(b + counts[k].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// What was added since `last` (which becomes now).
    pub(crate) fn since(&self, last: &mut [u64; 3]) -> [u64; 3] {
        let now = self.0.each_ref().map(|c| c.load(Ordering::Relaxed));
        let d = [0, 1, 2].map(|i| now[i].saturating_sub(last[i]));
        *last = now;
        d
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn post(
    agent: &ureq::Agent,
    plan: &JobPlan,
    targets: &str,
    rate: Option<u32>,
) -> Result<String, String> {
    let rate = rate
        .map(|r| format!(r#", "rate": {r}"#))
        .unwrap_or_default();
    let body = format!(
        r#"{{"targets": {targets}, "kind": "{}", "request_id": "1",
        "application_server_addr": "127.0.0.1", "application_server_port": 8443{rate}}}"#,
        plan.kind
    );
    let mut resp = agent
        .post(format!("{}/v1/notify", plan.api))
        .header("Authorization", format!("Bearer {}", plan.token))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .map_err(|e| format!("POST /v1/notify: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    if status != 202 {
        return Err(format!("POST /v1/notify: {status} {text}"));
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v["job"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no job id in {text}"))
}

fn get(agent: &ureq::Agent, plan: &JobPlan, id: &str) -> Result<serde_json::Value, String> {
    let mut resp = agent
        .get(format!("{}/v1/notify/{id}?limit=1", plan.api))
        .header("Authorization", format!("Bearer {}", plan.token))
        .call()
        .map_err(|e| format!("GET job: {e}"))?;
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| format!("GET job: {e}: {text}"))
}

/// Runs the big job, then the probes. Never panics: errors land in the report.
pub(crate) fn run(
    plan: &JobPlan,
    server_pid: Option<u32>,
    limit: Duration,
    outcomes: &Outcomes,
) -> JobReport {
    let mut r = JobReport::default();
    if let Err(e) = big_job(plan, server_pid, limit, outcomes, &mut r) {
        r.error = Some(e);
        return r;
    }
    r.server_metrics = server_metrics(plan);
    if plan.probes > 0 {
        match probes(plan) {
            Ok(p) => r.api_to_wire_us = Some(p),
            Err(e) => r.error = Some(e),
        }
    }
    r
}

/// The `tether_notify_*` lines of the server's `/metrics` (empty when the
/// server is not tether or does not answer).
fn server_metrics(plan: &JobPlan) -> std::collections::BTreeMap<String, f64> {
    let text = agent()
        .get(format!("{}/metrics", plan.api))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("tether_notify_"))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn big_job(
    plan: &JobPlan,
    server_pid: Option<u32>,
    limit: Duration,
    outcomes: &Outcomes,
    r: &mut JobReport,
) -> Result<(), String> {
    let agent = agent();
    let cpu0 = server_pid.and_then(process_cpu_ns);
    let t0 = Instant::now();
    let id = post(&agent, plan, r#"{"all": true}"#, plan.rate)?;
    let v = loop {
        let v = get(&agent, plan, &id)?;
        outcomes.show([0; 3], &v["counts"]);
        if v["status"] != "running" {
            break v;
        }
        if t0.elapsed() > limit {
            return Err(format!("job {id} still running after {limit:?}: {v}"));
        }
        // Each GET scans the job's outcomes on the server: poll gently.
        std::thread::sleep(Duration::from_millis(100));
    };
    r.seconds = t0.elapsed().as_secs_f64();
    let cpu1 = server_pid.and_then(process_cpu_ns);
    let c = &v["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    r.devices = n("devices");
    r.delivered = n("delivered");
    r.rejected = n("rejected");
    r.timed_out = n("timed_out");
    r.other = r
        .devices
        .saturating_sub(r.delivered + r.rejected + r.timed_out);
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let ns = b.saturating_sub(a);
        r.server_cpu_s = Some(ns as f64 / 1e9);
        r.server_cpu_us_per_device = (r.devices > 0).then(|| ns as f64 / 1e3 / r.devices as f64);
    }
    Ok(())
}

/// A device of our own: registers, then reports when each NOTIFY arrives
/// (answering it 200) through a channel.
fn probes(plan: &JobPlan) -> Result<Percentiles, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = sock.local_addr().map_err(|e| e.to_string())?.port();
    let user = format!("probe{}", std::process::id());
    let reg = format!(
        "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKprobe;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@{d}>;tag=p\r\nTo: <sip:{user}@{d}>\r\nCall-ID: {user}\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\n\
Accept: application/application-server-contact-me\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        d = plan.domain
    );
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    sock.send_to(reg.as_bytes(), plan.target)
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("probe REGISTER: {e}"))?;
        if sip::parse(&buf[..n]).ok().and_then(|m| m.status()) == Some(200) {
            break;
        }
    }
    let (tx, rx) = crossbeam_channel::bounded::<Instant>(1);
    let rsock = sock.try_clone().map_err(|e| e.to_string())?;
    let count = plan.probes;
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        let mut seen = 0;
        while seen < count {
            let Ok((n, from)) = rsock.recv_from(&mut buf) else {
                return;
            };
            let at = Instant::now();
            let Ok(m) = sip::parse(&buf[..n]) else {
                continue;
            };
            if m.method() != Some(sip::Method::Notify) && m.method() != Some(sip::Method::Invite) {
                continue;
            }
            sip::writer::response_to(&mut out, &m, 200, "OK", Some("probe"), None).finish(None);
            let _ = rsock.send_to(&out, from);
            seen += 1;
            let _ = tx.send(at);
        }
    });
    let agent = agent();
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
    let target = format!("\"{user}@{}\"", plan.domain);
    for _ in 0..count {
        let t0 = Instant::now();
        post(&agent, plan, &target, None)?;
        let at = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "probe NOTIFY did not arrive within 5 s".to_owned())?;
        let _ = h.record(at.saturating_duration_since(t0).as_micros().max(1) as u64);
    }
    let _ = receiver.join();
    Ok(percentiles(&h))
}

/// The soak scenario's periodic jobs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakReport {
    pub jobs: u64,
    pub devices: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub timed_out: u64,
    pub other: u64,
    /// Seconds each job took, request to `finished`.
    pub job_seconds: Option<Percentiles>,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Every `every` until `no_more`: one job to `k` endpoints picked at
/// random among `u0..u<n-1>`, waited for (at most 60 s), its counts added
/// up. A job in flight when `no_more` is set is still waited for, so that
/// the soak can end with nothing in flight; `stop` abandons it (counted as
/// an error).
pub(crate) fn soak(
    plan: &JobPlan,
    every: Duration,
    k: u32,
    n: u32,
    no_more: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
    outcomes: &Outcomes,
) -> SoakReport {
    let agent = agent();
    let mut r = SoakReport::default();
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut rng = u64::from(std::process::id()) | 1;
    let mut next = Instant::now();
    while !no_more.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        next += every;
        let mut targets = Vec::with_capacity(k as usize);
        for _ in 0..k.min(n) {
            // xorshift: a spread of endpoints, repeatable per run.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            targets.push(format!(
                "\"u{}@{}\"",
                rng % u64::from(n.max(1)),
                plan.domain
            ));
        }
        let t0 = Instant::now();
        let base = [r.delivered, r.rejected, r.timed_out];
        let result = post(&agent, plan, &format!("[{}]", targets.join(",")), plan.rate).and_then(
            |id| loop {
                let v = get(&agent, plan, &id)?;
                outcomes.show(base, &v["counts"]);
                if v["status"] != "running" {
                    return Ok(v);
                }
                if t0.elapsed() > Duration::from_secs(60) || stop.load(Ordering::Relaxed) {
                    return Err(format!("job {id} still running"));
                }
                std::thread::sleep(Duration::from_millis(50));
            },
        );
        match result {
            Ok(v) => {
                let c = &v["counts"];
                let g = |key: &str| c[key].as_u64().unwrap_or(0);
                r.jobs += 1;
                r.devices += g("devices");
                r.delivered += g("delivered");
                r.rejected += g("rejected");
                r.timed_out += g("timed_out");
                r.other +=
                    g("devices").saturating_sub(g("delivered") + g("rejected") + g("timed_out"));
                let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
            }
            Err(e) => {
                r.errors += 1;
                r.last_error = Some(e);
            }
        }
    }
    if r.jobs > 0 {
        r.job_seconds = Some(percentiles(&h));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_add_a_running_job_to_the_finished_ones_and_hand_out_increments() {
        let o = Outcomes::default();
        let mut seen = [0; 3];
        o.show([0; 3], &serde_json::json!({"delivered": 5, "timed_out": 1}));
        assert_eq!(o.since(&mut seen), [5, 0, 1]);
        // A second job, read while it runs, on top of the first job's totals.
        o.show(
            [5, 0, 1],
            &serde_json::json!({"delivered": 2, "rejected": 3}),
        );
        assert_eq!(o.since(&mut seen), [2, 3, 0]);
        assert_eq!(o.since(&mut seen), [0, 0, 0]);
    }
}
