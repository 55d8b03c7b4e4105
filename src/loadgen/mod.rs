//! The load generator (`tether bench`): simulated endpoints, each on its own
//! source address and port (a distinct NAT path as the server sees it),
//! registering at a target rate and then staying to answer the server's
//! requests (keepalive OPTIONS, later NOTIFY and INVITE). It speaks standard
//! SIP, so it loads any registrar: tether, Kamailio, OpenSIPS.
//!
//! One thread, one `mio` loop, a few wildcard sockets with `IP_PKTINFO`
//! (see [`udp`]); retransmissions on tether's own timer wheel; latencies in
//! an HDR histogram. Every run is bounded by `duration`.

pub mod report;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::io::{RecvBatch, SendBatch};
use crate::sip::writer::Decimal;
use crate::sip::{self, HeaderName, Method, StartLine};
use crate::timer::TimerWheel;

mod device_auth;
pub mod job;

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
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target: SocketAddrV4,
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
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5060),
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
        }
    }
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

const PENDING: u8 = 1;
const DONE: u8 = 2;
/// RFC 3261 T1.
const T1_MS: u64 = 500;
/// Retransmissions before a REGISTER times out (500 ms, 1, 2, 4 s: 7.5 s in all).
const MAX_RETRANS: u8 = 4;

struct Endpoint {
    state: u8,
    retrans: u8,
    /// CSeq of the REGISTER in flight (one more per new request).
    cseq: u16,
    /// Challenges answered for the REGISTER in flight (a loop guard).
    auth_rounds: u8,
    /// Soak churn: 1 while the device's un-REGISTER is in flight, 2 while
    /// its REGISTER back is, 0 otherwise.
    churn: u8,
    /// Bumped with every new request so that timers of an older one are ignored.
    epoch: u8,
    /// Registered at least once (a later 200 is a refresh).
    registered: bool,
    /// Microseconds since the start when the REGISTER was first sent.
    sent_at_us: u32,
    prompted: bool,
}

impl Endpoint {
    /// A new REGISTER transaction for this endpoint (refresh, restart):
    /// next CSeq, a new epoch so the old one's timers are ignored.
    fn next_transaction(&mut self, now_us: u64) {
        self.state = PENDING;
        self.retrans = 0;
        self.auth_rounds = 0;
        self.cseq = self.cseq.wrapping_add(1);
        self.epoch = self.epoch.wrapping_add(1);
        self.sent_at_us = now_us as u32;
    }
}

/// Runs a load; `progress` gets (registered, failed, elapsed) about once a second.
pub fn run(
    cfg: &LoadConfig,
    mut progress: impl FnMut(u64, u64, Duration),
) -> std::io::Result<Summary> {
    let ports = cfg.ports.max(1);
    let sockets: Vec<UdpSocket> = (0..ports)
        .map(|_| crate::io::bind_pktinfo(0, 8 << 20))
        .collect::<Result<_, _>>()?;
    let local_ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
        .collect();
    let mut poll = Poll::new()?;
    for (j, s) in sockets.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&s.as_raw_fd()), Token(j), Interest::READABLE)?;
    }
    let n = cfg.endpoints;
    let addr_of = |i: u32| -> (usize, Ipv4Addr) {
        let ip = u32::from(cfg.source_base).wrapping_add(i / u32::from(ports));
        ((i % u32::from(ports)) as usize, Ipv4Addr::from(ip))
    };
    let dead_below = (cfg.dead_share.clamp(0.0, 1.0) * f64::from(n)) as u32;
    let mut eps: Vec<Endpoint> = (0..n)
        .map(|_| Endpoint {
            state: 0,
            retrans: 0,
            cseq: 1,
            auth_rounds: 0,
            churn: 0,
            epoch: 0,
            registered: false,
            sent_at_us: 0,
            prompted: false,
        })
        .collect();
    let mut timers: TimerWheel<(u32, u8)> = TimerWheel::new(0);
    let mut challenges = 0u64;
    let mut challenges_sent = 0u64;
    let (mut churn_started, mut churn_cursor, mut churned, mut churn_failed) =
        (0u64, 0u32, 0u64, 0u64);
    let mut unregistering = false;
    let mut unregister_started = false;
    let mut unregistered = 0u64;
    let mut refreshed = 0u64;
    // Refresh timers: (endpoint, epoch of the registration they refresh).
    let mut refreshes: TimerWheel<(u32, u8)> = TimerWheel::new(0);
    let mut phase_expires = cfg.expires;
    let mut phase_start_us = 0u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut sec_hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut requests: BTreeMap<String, u64> = BTreeMap::new();
    let (mut registered, mut failed, mut timeouts, mut retransmissions, mut answered) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut timeline: Vec<Second> = Vec::new();
    let mut cur = Second::default();
    let mut next_ep = 0u32;
    let mut inflight = 0u32;
    let mut done_at: Option<Instant> = None;
    let mut job_thread: Option<std::thread::JoinHandle<job::JobReport>> = None;
    let mut job_report: Option<job::JobReport> = None;
    let soak_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut soak_thread: Option<std::thread::JoinHandle<job::SoakReport>> = None;
    let mut msg = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    let mut events = Events::with_capacity(256);
    // One send batch per socket, one receive batch for all: sendmmsg/recvmmsg.
    let mut sends: Vec<SendBatch> = (0..ports)
        .map(|_| SendBatch::new(64, MAX_DATAGRAM))
        .collect();
    let mut inbox = RecvBatch::new(64, MAX_DATAGRAM);
    let cpu_start = cfg.server_pid.and_then(process_cpu_ns);
    let self_pid = std::process::id();
    let self_start = process_cpu_ns(self_pid);
    let mut self_at_done: Option<u64> = None;
    let mut cpu_at_done: Option<u64> = None;
    let mut requests_at_done = 0u64;
    let mut requests_total = 0u64;
    let start = Instant::now();
    let mut last_progress = start;

    // Pieces joined without `fmt`: this runs once per REGISTER sent.
    let write_register = |msg: &mut Vec<u8>,
                          i: u32,
                          ip: Ipv4Addr,
                          port: u16,
                          cseq: u16,
                          auth: &[u8],
                          expires: u32| {
        let expires = Decimal::new(expires);
        let d = cfg.domain.as_bytes();
        let id = Decimal::new(i);
        let id = id.as_str().as_bytes();
        let port = Decimal::new(u32::from(port));
        let port = port.as_str().as_bytes();
        let mut ipbuf = [0u8; 15];
        let ip = ipv4_text(ip, &mut ipbuf);
        // The endpoint number as the last 12 digits of its instance UUID.
        let mut instance = *b"000000000000";
        let mut v = i;
        for d in instance.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        msg.clear();
        for part in [
            b"REGISTER sip:".as_slice(),
            d,
            b" SIP/2.0\r\nVia: SIP/2.0/UDP ",
            ip,
            b":",
            port,
            b";branch=z9hG4bKlg",
            id,
            b"x",
            Decimal::new(u32::from(cseq)).as_str().as_bytes(),
            b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:u",
            id,
            b"@",
            d,
            b">;tag=lg",
            id,
            b"\r\nTo: <sip:u",
            id,
            b"@",
            d,
            b">\r\nCall-ID: lg",
            id,
            b"@",
            ip,
            b"\r\nCSeq: ",
            Decimal::new(u32::from(cseq)).as_str().as_bytes(),
            b" REGISTER\r\n",
            auth,
            b"Contact: <sip:u",
            id,
            b"@",
            ip,
            b":",
            port,
            b">",
            if cfg.instance {
                b";+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-"
            } else {
                b""
            },
            if cfg.instance { &instance[..] } else { b"" },
            if cfg.instance { b">\";reg-id=1" } else { b"" },
            cfg.contact_params.as_bytes(),
            b"\r\nExpires: ",
            expires.as_str().as_bytes(),
            b"\r\nAccept: application/sdp, application/application-server-contact-me\r\n\
User-Agent: tether-bench\r\nContent-Length: 0\r\n\r\n",
        ] {
            msg.extend_from_slice(part);
        }
    };

    // Every REGISTER leaves the same way: written for its endpoint, queued on
    // that endpoint's socket, sent in the next batch.
    let send_register = |sends: &mut [SendBatch],
                         msg: &mut Vec<u8>,
                         i: u32,
                         cseq: u16,
                         auth: &[u8],
                         expires: u32| {
        let (j, ip) = addr_of(i);
        write_register(msg, i, ip, local_ports[j], cseq, auth, expires);
        send_soon(&mut sends[j], sockets[j].as_raw_fd(), msg, ip, cfg.target);
    };

    loop {
        let now = start.elapsed();
        let now_us = now.as_micros() as u64;
        let now_ms = now_us / 1000;
        if now >= cfg.duration {
            break;
        }
        if let (Scenario::Soak, Some(_), Some(plan), None) =
            (cfg.scenario, done_at, &cfg.job, &soak_thread)
        {
            let (plan, stop) = (plan.clone(), soak_stop.clone());
            let (every, k, n) = (cfg.job_every, cfg.job_targets, n);
            soak_thread = Some(std::thread::spawn(move || {
                job::soak(&plan, every, k, n, &stop)
            }));
        }
        if let (Some(_), Some(plan), None, None) = (done_at, &cfg.job, &job_thread, &job_report) {
            if cfg.scenario == Scenario::Notify && !unregistering {
                // The application server's side runs beside the endpoints.
                let (plan, pid) = (plan.clone(), cfg.server_pid);
                let left = cfg.duration.saturating_sub(now);
                job_thread = Some(std::thread::spawn(move || job::run(&plan, pid, left)));
            }
        }
        if job_thread.as_ref().is_some_and(|t| t.is_finished()) {
            job_report = job_thread.take().and_then(|t| t.join().ok());
        }
        if let Some(t) = done_at {
            let phase_over = unregistering
                || cfg.scenario == Scenario::Register
                || (cfg.scenario == Scenario::Notify
                    && (job_report.is_some() || cfg.job.is_none()))
                || (cfg.scenario == Scenario::Keepalive && t.elapsed() >= cfg.hold)
                // A soak ends with nothing in flight: no device caught mid-restart.
                || (cfg.scenario == Scenario::Soak && t.elapsed() >= cfg.hold && inflight == 0);
            if phase_over && cfg.unregister && !unregistering {
                // Second phase: the same endpoints, REGISTER with Expires: 0.
                unregistering = true;
                phase_expires = 0;
                phase_start_us = now_us;
                next_ep = 0;
                for e in eps.iter_mut() {
                    e.state = 0;
                    e.retrans = 0;
                    e.cseq = e.cseq.wrapping_add(1);
                    e.epoch = e.epoch.wrapping_add(1);
                }
                unregister_started = true;
            } else if phase_over {
                break;
            }
        }
        // Start the REGISTERs that are due by now.
        let due = if cfg.rate == 0 {
            n
        } else {
            (((now_us - phase_start_us) * u64::from(cfg.rate)) / 1_000_000).min(u64::from(n)) as u32
        };
        while next_ep < due && inflight < cfg.window {
            let i = next_ep;
            // A datagram the kernel drops is retransmitted on the T1 timer.
            send_register(
                &mut sends,
                &mut msg,
                i,
                eps[i as usize].cseq,
                b"",
                phase_expires,
            );
            let e = &mut eps[i as usize];
            e.state = PENDING;
            e.sent_at_us = now_us as u32;
            timers.insert(now_ms + T1_MS, (i, e.epoch));
            inflight += 1;
            next_ep += 1;
            cur.sent += 1;
        }
        // Refresh bindings whose time has come (a new transaction, same Call-ID).
        while let Some((_, (i, epoch))) = refreshes.poll(now_ms) {
            let e = &mut eps[i as usize];
            if unregistering || e.state != DONE || e.epoch != epoch || !e.registered {
                continue;
            }
            if cfg.scenario == Scenario::Soak && done_at.is_some_and(|t| t.elapsed() >= cfg.hold) {
                continue; // the soak is winding down
            }
            e.next_transaction(now_us);
            inflight += 1;
            send_register(&mut sends, &mut msg, i, e.cseq, b"", phase_expires);
            timers.insert(now_ms + T1_MS, (i, e.epoch));
            cur.sent += 1;
        }
        // Soak: devices that restart (unregister, then register again) at
        // `churn_per_s`, taken in turn among those registered and idle.
        if let (Scenario::Soak, Some(t), false) = (cfg.scenario, done_at, unregistering) {
            if t.elapsed() >= cfg.hold {
                churn_started = u64::MAX;
            }
            let due = (t.elapsed().as_micros() as u64 * u64::from(cfg.churn_per_s) / 1_000_000)
                .min(u64::MAX / 2);
            let mut tries = 0;
            while churn_started < due && tries < n {
                tries += 1;
                let i = churn_cursor % n;
                churn_cursor = churn_cursor.wrapping_add(1);
                let e = &mut eps[i as usize];
                if e.state != DONE || !e.registered {
                    continue;
                }
                churn_started += 1;
                e.churn = 1;
                e.next_transaction(now_us);
                inflight += 1;
                send_register(&mut sends, &mut msg, i, e.cseq, b"", 0);
                timers.insert(now_ms + T1_MS, (i, e.epoch));
                cur.sent += 1;
            }
        }
        // Retransmit or give up on unanswered REGISTERs.
        while let Some((_, (i, epoch))) = timers.poll(now_ms) {
            let e = &mut eps[i as usize];
            if e.state != PENDING || e.epoch != epoch {
                continue;
            }
            if e.retrans >= MAX_RETRANS {
                e.state = DONE;
                timeouts += 1;
                failed += 1;
                cur.failed += 1;
                inflight -= 1;
                continue;
            }
            e.retrans += 1;
            retransmissions += 1;
            let expires = if e.churn == 1 { 0 } else { phase_expires };
            // A retransmission after a challenge carries no credentials: the
            // server challenges again and the next answer has a fresh nonce.
            send_register(&mut sends, &mut msg, i, e.cseq, b"", expires);
            timers.insert(now_ms + (T1_MS << e.retrans), (i, e.epoch));
        }
        for (j, b) in sends.iter_mut().enumerate() {
            b.flush(sockets[j].as_raw_fd());
        }
        if unregister_started {
            // The unregister phase ends like the first: all answered.
            unregister_started = false;
            done_at = None;
        }
        if next_ep == n && inflight == 0 && done_at.is_none() {
            done_at = Some(Instant::now());
            cpu_at_done = cfg.server_pid.and_then(process_cpu_ns);
            self_at_done = process_cpu_ns(self_pid);
            requests_at_done = requests_total;
        }
        // Wait for traffic, at most until the next send or timer.
        let wait = if next_ep < n && inflight < cfg.window {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(20)
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let jtok = ev.token().0;
            let s = sockets[jtok].as_raw_fd();
            loop {
                let got = inbox.recv(s).unwrap_or(0);
                if got == 0 {
                    break;
                }
                for k in 0..got {
                    let (data, from) = inbox.get(k);
                    let Some(SocketAddr::V4(from)) = from else {
                        continue;
                    };
                    let local = match inbox.local_ip(k) {
                        Some(std::net::IpAddr::V4(ip)) => ip,
                        _ => Ipv4Addr::UNSPECIFIED,
                    };
                    let Ok(m) = sip::parse(data) else {
                        continue;
                    };
                    let now_us = start.elapsed().as_micros() as u64;
                    match m.start {
                        StartLine::Response { code, .. } => {
                            let Some(i) = m
                                .header(HeaderName::CallId)
                                .and_then(|c| c.strip_prefix("lg"))
                                .and_then(|c| c.split('@').next())
                                .and_then(|c| c.parse::<u32>().ok())
                                .filter(|&i| i < n)
                            else {
                                continue;
                            };
                            let e = &mut eps[i as usize];
                            if e.state != PENDING || code < 200 {
                                continue;
                            }
                            if code == 401 && e.auth_rounds < 4 {
                                if let Some(pw) = &cfg.password {
                                    if let Some(auth) = answer_challenge(&m, i, pw, &cfg.domain) {
                                        e.auth_rounds += 1;
                                        e.cseq = e.cseq.wrapping_add(1);
                                        e.epoch = e.epoch.wrapping_add(1);
                                        e.retrans = 0;
                                        challenges += 1;
                                        let expires = if e.churn == 1 { 0 } else { phase_expires };
                                        send_register(
                                            &mut sends,
                                            &mut msg,
                                            i,
                                            e.cseq,
                                            auth.as_bytes(),
                                            expires,
                                        );
                                        timers.insert(now_us / 1000 + T1_MS, (i, e.epoch));
                                        continue;
                                    }
                                }
                            }
                            e.state = DONE;
                            inflight -= 1;
                            if e.churn != 0 {
                                // A restarting device: gone, then back at once.
                                if code != 200 {
                                    e.churn = 0;
                                    churn_failed += 1;
                                } else if e.churn == 1 {
                                    e.churn = 2;
                                    e.next_transaction(now_us);
                                    inflight += 1;
                                    let cseq = e.cseq;
                                    send_register(&mut sends, &mut msg, i, cseq, b"", cfg.expires);
                                    timers
                                        .insert(now_us / 1000 + T1_MS, (i, eps[i as usize].epoch));
                                    continue;
                                } else {
                                    e.churn = 0;
                                    churned += 1;
                                }
                            }
                            let e = &mut eps[i as usize];
                            *codes.entry(code).or_default() += 1;
                            let lat = now_us.saturating_sub(u64::from(e.sent_at_us)).max(1);
                            let _ = hist.record(lat);
                            let _ = sec_hist.record(lat);
                            if code == 200 {
                                if unregistering {
                                    unregistered += 1;
                                } else if e.registered {
                                    refreshed += 1;
                                } else {
                                    e.registered = true;
                                    registered += 1;
                                }
                                if (cfg.refresh || cfg.scenario == Scenario::Soak)
                                    && !unregistering
                                    && matches!(cfg.scenario, Scenario::Keepalive | Scenario::Soak)
                                {
                                    // Refresh at 80% of what the server granted.
                                    let granted = granted_expires(&m).unwrap_or(cfg.expires);
                                    let at = now_us / 1000 + u64::from(granted) * 800;
                                    refreshes.insert(at, (i, e.epoch));
                                }
                                cur.ok += 1;
                            } else {
                                failed += 1;
                                cur.failed += 1;
                            }
                        }
                        StartLine::Request { method, .. } => {
                            *requests.entry(method.as_str().to_owned()).or_default() += 1;
                            cur.requests_received += 1;
                            requests_total += 1;
                            // Which endpoint: the address and socket it was sent to.
                            let j = ev.token().0 as u32;
                            let idx = (u32::from(local).wrapping_sub(u32::from(cfg.source_base)))
                                .wrapping_mul(u32::from(ports))
                                .wrapping_add(j);
                            if idx < n {
                                eps[idx as usize].prompted = true;
                            }
                            if cfg.answer == 0 || idx < dead_below || method == Method::Ack {
                                continue;
                            }
                            // `--answer 401`: challenge, then 200 for valid credentials
                            // (403 otherwise); other codes are answered as they are.
                            let code = match cfg.answer {
                                401 => device_auth::verdict(&m, &cfg.device_password),
                                c => c,
                            };
                            let mut w = sip::writer::response_to(
                                &mut out,
                                &m,
                                code,
                                reason(code),
                                Some("lgua"),
                                None,
                            );
                            if code == 401 {
                                w.header_named("WWW-Authenticate", device_auth::CHALLENGE);
                                challenges_sent += 1;
                            }
                            w.finish(None);
                            if send_soon(&mut sends[jtok], s, &out, local, from) {
                                answered += 1;
                            }
                        }
                    }
                }
            }
            sends[jtok].flush(s);
        }
        // Close the second.
        let t = start.elapsed().as_secs() as u32;
        if t > cur.t {
            cur.p50_us = sec_hist.value_at_quantile(0.5);
            cur.p99_us = sec_hist.value_at_quantile(0.99);
            sec_hist.reset();
            let t_next = cur.t + 1;
            timeline.push(std::mem::replace(
                &mut cur,
                Second {
                    t: t_next,
                    ..Second::default()
                },
            ));
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            progress(registered, failed, start.elapsed());
        }
    }
    soak_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let soak_report = soak_thread.take().and_then(|t| t.join().ok());
    cur.p50_us = sec_hist.value_at_quantile(0.5);
    cur.p99_us = sec_hist.value_at_quantile(0.99);
    timeline.push(cur);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_end = cfg.server_pid.and_then(process_cpu_ns);
    let per = |a: Option<u64>, b: Option<u64>, n: u64| match (a, b) {
        (Some(a), Some(b)) if n > 0 => Some(b.saturating_sub(a) as f64 / 1000.0 / n as f64),
        _ => None,
    };
    let hold_requests = requests_total - requests_at_done;
    // The rate is over the registration phase, not the hold.
    let reg_secs = done_at
        .map_or(elapsed, |t| (t - start).as_secs_f64())
        .max(1e-3);
    Ok(Summary {
        endpoints: n,
        rate_asked: cfg.rate,
        elapsed_s: elapsed,
        registered,
        unregistered,
        refreshed,
        failed,
        timeouts,
        retransmissions,
        challenges,
        codes,
        achieved_rate: registered as f64 / reg_secs,
        latency_us: percentiles(&hist),
        requests_received: requests,
        requests_answered: answered,
        endpoints_prompted: eps.iter().filter(|e| e.prompted).count() as u64,
        generator_cpu_us_per_register: per(
            self_start,
            self_at_done.or_else(|| process_cpu_ns(self_pid)),
            u64::from(next_ep) + retransmissions,
        ),
        server_cpu_us_per_register: per(cpu_start, cpu_at_done.or(cpu_end), registered),
        server_cpu_us_per_request: if cfg.scenario == Scenario::Keepalive {
            per(cpu_at_done, cpu_end, hold_requests)
        } else {
            None
        },
        job: job_report,
        device_challenges: challenges_sent,
        churned,
        churn_failed,
        soak_jobs: soak_report,
        timeline,
    })
}

/// Largest datagram the generator sends or reads whole.
const MAX_DATAGRAM: usize = 2048;

/// Queues a datagram from `from` to `to`, first sending the batch on `fd` if
/// it is full; false when it is too big to send.
fn send_soon(b: &mut SendBatch, fd: RawFd, data: &[u8], from: Ipv4Addr, to: SocketAddrV4) -> bool {
    if b.is_full() {
        b.flush(fd);
    }
    let dropped = b.dropped;
    b.push_from(data, from, SocketAddr::V4(to));
    b.dropped == dropped
}

/// The expiry the server granted in a 200 to REGISTER: the first Contact's
/// `expires`, else the Expires header.
fn granted_expires(resp: &sip::Message<'_>) -> Option<u32> {
    resp.contacts()
        .filter_map(Result::ok)
        .find_map(|c| c.expires().ok().flatten())
        .or_else(|| resp.expires().ok().flatten())
}

/// The Authorization line answering a 401 for endpoint `i` (user `u<i>`,
/// password `pattern` with `{i}` replaced), for the first challenge whose
/// algorithm is MD5 or SHA-256, in the server's order of preference.
fn answer_challenge(
    resp: &sip::Message<'_>,
    i: u32,
    pattern: &str,
    domain: &str,
) -> Option<String> {
    use crate::sip::digest::{self, Algorithm, ResponseInput};
    let (alg, ch) = resp
        .header_values(HeaderName::WwwAuthenticate)
        .filter_map(|v| sip::AuthParams::parse(v, "WWW-Authenticate").ok())
        .filter(|c| c.is_digest())
        .find_map(|c| Algorithm::parse(c.get("algorithm")).map(|a| (a, c)))?;
    let (realm, nonce) = (ch.get("realm")?, ch.get("nonce")?);
    let user = format!("u{i}");
    let password = pattern.replace("{i}", &i.to_string());
    let uri = format!("sip:{domain}");
    let cnonce = format!("{:08x}", i.wrapping_mul(2_654_435_761));
    let qop = ch
        .get("qop")
        .is_some_and(|q| q.split(',').any(|x| x.trim() == "auth"));
    let ha1 = digest::ha1(alg, &user, realm, &password);
    let input = ResponseInput {
        method: "REGISTER",
        uri: &uri,
        nonce,
        qop_auth: qop.then_some(("00000001", cnonce.as_str())),
    };
    let r = digest::response(alg, &ha1, &input);
    let qop_part = if qop {
        format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
    } else {
        String::new()
    };
    Some(format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{}\", algorithm={}{qop_part}\r\n",
        r.as_str(),
        alg.as_str()
    ))
}

/// Dotted-quad text of an address into a stack buffer.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (k, o) in ip.octets().iter().enumerate() {
        if k > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let d = Decimal::new(u32::from(*o));
        let d = d.as_str().as_bytes();
        buf[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    &buf[..n]
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        _ => "Answer",
    }
}
