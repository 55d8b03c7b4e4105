//! The load generator (`tether bench`): simulated endpoints, each on its own
//! source address and port (a distinct NAT path as the server sees it),
//! registering at a target rate and then staying to answer the server's
//! requests (keepalive OPTIONS, later NOTIFY and INVITE). It speaks standard
//! SIP, so it loads any registrar: tether, Kamailio, OpenSIPS.
//!
//! Two halves, as in the rest of tether: the endpoints are one sans-IO
//! state machine (`population`: bytes and `now` in, datagrams and
//! deadlines out, REGISTERs as [`crate::transaction`] client transactions),
//! and a thin driver (`driver`: one thread, one `mio` loop, a few wildcard
//! sockets with `IP_PKTINFO` from `crate::io`, the clock, the CPU
//! samples and the application server's threads). Latencies go into HDR
//! histograms. Every run is bounded by `duration`.
//!
//! The call scenario ([`Scenario::Call`], [`CallPlan`]) puts callers and
//! callees among the endpoints: callers place INVITEs through the server
//! to callees' AORs and hang up after a hold, callees answer as a UA does.

pub mod report;
pub mod rtp;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use hdrhistogram::Histogram;

mod call_tally;
mod device_auth;
mod driver;
pub mod flood;
pub mod job;
mod message;
mod population;
mod tally;

pub use call_tally::CallReport;
pub use driver::run;

/// What the simulated endpoints do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Register every endpoint once, then stop.
    Register,
    /// Register, then stay for `hold` answering the server's requests.
    Keepalive,
    /// Register, then ask the server's API for a fan-out job to every
    /// endpoint (see [`job::JobPlan`]), answer it, and time it.
    Notify,
    /// Everything at once for `hold`: refreshes at 80% of the expiry,
    /// keepalive and fan-out requests answered, `churn_per_s` devices
    /// restarting (unregister, register again), and with `job` a small
    /// fan-out job every `job_every`.
    Soak,
    /// Register callees and callers, then place calls through the server
    /// as [`LoadConfig::call`] says.
    Call,
}

/// The call scenario: `callers` endpoints (after the `endpoints` callees,
/// registering too) call the callees' AORs in turn.
#[derive(Debug, Clone)]
pub struct CallPlan {
    pub callers: u32,
    /// New calls per second (0: as many as `LoadConfig::window` allows in flight).
    pub rate: u32,
    /// How long calls are placed for.
    pub duration: Duration,
    /// How long an answered call lasts before the caller sends BYE.
    pub hold: Duration,
    /// Percent of calls the caller CANCELs while they ring.
    pub cancel_share: f64,
    /// Percent of calls the callee answers 486 Busy Here.
    pub busy_share: f64,
    /// How long a call to be cancelled rings before the CANCEL.
    pub ring: Duration,
    /// After the last call is placed and held: how long to wait for the
    /// calls still in flight before giving up on them.
    pub drain: Duration,
}

impl Default for CallPlan {
    fn default() -> Self {
        CallPlan {
            callers: 100,
            rate: 100,
            duration: Duration::from_secs(10),
            hold: Duration::from_secs(1),
            cancel_share: 0.0,
            busy_share: 0.0,
            ring: Duration::from_millis(200),
            drain: Duration::from_secs(40),
        }
    }
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: SocketAddrV4,
    /// Several nodes (a cluster): endpoint `i` registers at
    /// `targets[i % len]`; empty = `target` alone.
    pub targets: Vec<SocketAddrV4>,
    /// With several targets: a node whose STUN keepalives go unanswered
    /// this long is down, and its endpoints register again at the nodes
    /// still up (DNS SRV failover). Zero: never.
    pub failover: Duration,
    /// A device prompted by two different nodes within this is counted as
    /// a duplicate prompt (each device must be prompted by one node only).
    pub duplicate_window: Duration,
    pub endpoints: u32,
    /// REGISTERs per second (0: as fast as the window allows).
    pub rate: u32,
    /// Hard limit on the whole run.
    pub duration: Duration,
    /// Keepalive scenario: how long to stay after the last registration.
    pub hold: Duration,
    pub scenario: Scenario,
    pub expires: u32,
    /// Status to answer server requests with; 0 stays silent.
    pub answer: u16,
    /// Share of endpoints that never answer (dead devices), 0.0..=1.0.
    pub dead_share: f64,
    /// First source address; endpoints use consecutive addresses from it.
    pub source_base: Ipv4Addr,
    /// Sockets (ports) the endpoints are spread over.
    pub ports: u16,
    /// Domain in the Request-URI and AORs.
    pub domain: String,
    /// Most REGISTER transactions in flight at once.
    pub window: u32,
    /// Keepalive scenario: re-REGISTER each endpoint when 80% of its expiry
    /// has passed, as a UA keeps its binding.
    pub refresh: bool,
    /// After registering (and the hold), remove every binding again with
    /// `Expires: 0`, at the same rate.
    pub unregister: bool,
    /// Digest password for every endpoint (username `u<i>`); `{i}` is
    /// replaced by the endpoint's number. `None`: a 401 is a failure.
    pub password: Option<String>,
    /// The server's process id, when it runs on this machine: its CPU time
    /// (all threads, from /proc) is then reported per REGISTER and per
    /// request answered during the hold.
    pub server_pid: Option<u32>,
    /// Notify scenario: the job to ask for.
    pub job: Option<job::JobPlan>,
    /// With `answer = 401`: the password the server must answer the
    /// endpoints' challenges with (any username).
    pub device_password: String,
    /// Soak: devices restarting per second.
    pub churn_per_s: u32,
    /// Give each endpoint an RFC 5626 `+sip.instance` (`…-<12-digit number>`)
    /// and `reg-id=1`: device ids to target jobs by.
    pub instance: bool,
    /// Extra Contact header parameters, e.g. `;scope=mobile` (seed 002).
    pub contact_params: String,
    /// Soak: a job to `job_targets` random endpoints this often (with `job`).
    pub job_every: Duration,
    pub job_targets: u32,
    /// Call scenario: the calls (`endpoints` is then the number of callees).
    pub call: Option<CallPlan>,
    /// A flood from other sources, started once the endpoints registered
    /// (during the keepalive or soak hold, where they refresh).
    pub flood: Option<flood::FloodPlan>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5060),
            targets: Vec::new(),
            failover: Duration::from_secs(2),
            duplicate_window: Duration::from_secs(60),
            endpoints: 10_000,
            rate: 1_000,
            duration: Duration::from_secs(60),
            hold: Duration::from_secs(30),
            scenario: Scenario::Register,
            expires: 3600,
            answer: 200,
            dead_share: 0.0,
            source_base: Ipv4Addr::new(127, 1, 0, 1),
            ports: 16,
            domain: "127.0.0.1".into(),
            window: 20_000,
            password: None,
            unregister: false,
            refresh: false,
            server_pid: None,
            job: None,
            device_password: "device".into(),
            churn_per_s: 0,
            instance: false,
            contact_params: String::new(),
            job_every: Duration::from_secs(5),
            job_targets: 100,
            call: None,
            flood: None,
        }
    }
}

impl LoadConfig {
    /// Every node the endpoints are spread over.
    pub fn nodes(&self) -> Vec<SocketAddrV4> {
        if self.targets.is_empty() {
            vec![self.target]
        } else {
            self.targets.clone()
        }
    }
}

/// One node's share of a run over several nodes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeReport {
    pub target: String,
    /// Endpoints it holds at the end (after any failover).
    pub endpoints: u64,
    /// REGISTERs it answered 200, and finally otherwise (or not at all).
    pub ok: u64,
    pub failed: u64,
    /// Requests it sent the endpoints (keepalives, NOTIFY, INVITE).
    pub prompts: u64,
    /// Prompts of a device another node had prompted within the window.
    pub duplicate_prompts: u64,
    /// Endpoints that left it when it stopped answering.
    pub moved_away: u64,
    /// When it was seen down (ms since the start).
    pub went_down_ms: Option<u64>,
}

/// One second of the run, for the timeline and the plot.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Second {
    pub t: u32,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub requests_received: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    /// Notify and soak: devices whose fan-out request ended this second
    /// delivered, rejected or timed out, as the server's API reported them.
    pub delivered: u64,
    pub rejected: u64,
    pub timed_out: u64,
    /// Call scenario: INVITEs first sent, calls answered 200, calls that
    /// ended otherwise than planned, and the setup latency of the calls
    /// answered this second.
    pub calls_placed: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub setup_p50_us: u64,
    pub setup_p99_us: u64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub endpoints: u32,
    pub rate_asked: u32,
    pub elapsed_s: f64,
    pub registered: u64,
    /// Bindings removed again (with `unregister`).
    pub unregistered: u64,
    /// Refresh REGISTERs answered 200 (with `refresh`).
    pub refreshed: u64,
    pub failed: u64,
    pub timeouts: u64,
    pub retransmissions: u64,
    /// 401 challenges answered with credentials.
    pub challenges: u64,
    /// Final responses by status code.
    pub codes: BTreeMap<u16, u64>,
    pub achieved_rate: f64,
    pub latency_us: Percentiles,
    /// Requests the server sent to the endpoints, by method.
    pub requests_received: BTreeMap<String, u64>,
    pub requests_answered: u64,
    /// Endpoints that received at least one request during the hold.
    pub endpoints_prompted: u64,
    /// The generator's own CPU (µs) per REGISTER sent (including retransmissions)
    /// during the registration phase: it must stay well below the server's.
    pub generator_cpu_us_per_register: Option<f64>,
    /// Server CPU (µs, all threads) per successful REGISTER, with `server_pid`.
    pub server_cpu_us_per_register: Option<f64>,
    /// Server CPU (µs) per request it sent during the hold (a keepalive
    /// prompt and the handling of its answer), with `server_pid`.
    pub server_cpu_us_per_request: Option<f64>,
    /// Notify scenario: the job's outcome.
    pub job: Option<job::JobReport>,
    /// Challenges the endpoints sent the server (`--answer 401`).
    pub device_challenges: u64,
    /// Soak: devices that restarted (unregistered and registered again),
    /// and restarts where either REGISTER failed.
    pub churned: u64,
    pub churn_failed: u64,
    /// Soak: the periodic fan-out jobs.
    pub soak_jobs: Option<job::SoakReport>,
    /// Call scenario: the calls.
    pub calls: Option<CallReport>,
    /// The flood, when one ran.
    pub flood: Option<flood::FloodReport>,
    /// Several targets: each node's share.
    pub nodes: Vec<NodeReport>,
    /// Devices prompted by a second node within the duplicate window.
    pub duplicate_prompts: u64,
    pub timeline: Vec<Second>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// Refuses targets outside loopback unless the caller allows them: the
/// default run must never send traffic off this machine.
pub fn check_target(target: SocketAddrV4, allow_remote: bool) -> Result<(), String> {
    if target.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(format!(
            "target {target} is not on loopback; pass --allow-remote to load a remote server"
        ))
    }
}

/// CPU time of every thread of a process and of its child processes (a
/// forking server such as Kamailio), in nanoseconds (Linux schedstat).
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let mut pids = vec![pid];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                pids.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    let mut total = None;
    for p in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in dir.flatten() {
            // A thread may exit between listing and reading: skip it.
            let Ok(stat) = std::fs::read_to_string(t.path().join("schedstat")) else {
                continue;
            };
            if let Some(ns) = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
            {
                *total.get_or_insert(0) += ns;
            }
        }
    }
    total
}
