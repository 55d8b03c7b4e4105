//! The load generator's I/O: sockets, the `mio` loop and the clock around
//! the sans-IO [`Population`], plus what a run measures outside it (CPU
//! time from /proc) and the application server's side (fan-out jobs through
//! the control API, on threads of their own).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::population::{Event, Population, MAX_DATAGRAM};
use super::tally::Measured;
use super::{job, process_cpu_ns, LoadConfig, Scenario, Summary};
use crate::io::{RecvBatch, SendBatch};

/// Datagrams per `recvmmsg`/`sendmmsg`.
const BATCH: usize = 64;

/// Waits up to `wait` for readiness; a signal ends the wait early, with
/// no events, rather than the run.
pub(crate) fn poll_for(
    poll: &mut Poll,
    events: &mut Events,
    wait: Duration,
) -> std::io::Result<()> {
    match poll.poll(events, Some(wait)) {
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
        r => r,
    }
}

/// Runs a load; `progress` gets (registered, failed, elapsed) about once a second.
pub fn run(
    cfg: &LoadConfig,
    mut progress: impl FnMut(u64, u64, Duration),
) -> std::io::Result<Summary> {
    let sockets: Vec<UdpSocket> = (0..cfg.ports.max(1))
        .map(|_| crate::io::bind_pktinfo(0, 8 << 20))
        .collect::<Result<_, _>>()?;
    for s in &sockets {
        // Its REGISTERs and answers are far under any MTU: DF spares the
        // kernel an IP ID per datagram (see `set_dont_fragment`).
        crate::io::set_dont_fragment(s)?;
    }
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut poll = Poll::new()?;
    for (j, fd) in fds.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(fd), Token(j), Interest::READABLE)?;
    }
    let ports = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    let mut pop = Population::new(cfg, ports);
    let mut sends: Vec<SendBatch> = fds
        .iter()
        .map(|_| SendBatch::new(BATCH, MAX_DATAGRAM))
        .collect();
    let mut inbox = RecvBatch::new(BATCH, MAX_DATAGRAM);
    let mut events = Events::with_capacity(256);
    let mut side = SideJobs::default();
    let mut flood = Flood::default();
    let self_pid = std::process::id();
    let mut m = Measured::default();
    m.server_cpu.start = cfg.server_pid.and_then(process_cpu_ns);
    m.generator_cpu.start = process_cpu_ns(self_pid);
    let start = Instant::now();
    let clock = || start.elapsed().as_micros() as u64;
    let mut last_progress = start;
    loop {
        if side.jobs_finished() {
            pop.job_finished();
        }
        let now = clock();
        pop.handle_timeout(now);
        if pop.is_finished() {
            break;
        }
        send(&mut pop, &mut sends, &fds);
        for (b, &fd) in sends.iter_mut().zip(&fds) {
            b.flush(fd);
        }
        while let Some(ev) = pop.poll_event() {
            match ev {
                Event::Settled => {
                    m.settled_s = Some(start.elapsed().as_secs_f64());
                    m.server_cpu.settled = cfg.server_pid.and_then(process_cpu_ns);
                    m.generator_cpu.settled = process_cpu_ns(self_pid);
                    side.start(cfg, cfg.duration.saturating_sub(start.elapsed()));
                    flood.start(cfg);
                }
                Event::HoldOver => side.post_no_more(),
                Event::CallsBegin | Event::CallsOver => {
                    let k = usize::from(ev == Event::CallsOver);
                    m.server_cpu.calls[k] = cfg.server_pid.and_then(process_cpu_ns);
                    m.generator_cpu.calls[k] = process_cpu_ns(self_pid);
                }
            }
        }
        // Wait for traffic, at most until the population wants the time.
        let wait = Duration::from_micros(pop.poll_timeout(now).saturating_sub(now));
        poll_for(&mut poll, &mut events, wait)?;
        for ev in events.iter() {
            let j = ev.token().0;
            // Read until the socket is empty (edge-triggered readiness).
            loop {
                let got = inbox.recv(fds[j]).unwrap_or(0);
                if got == 0 {
                    break;
                }
                for k in 0..got {
                    let (data, from) = inbox.get(k);
                    let Some(SocketAddr::V4(from)) = from else {
                        continue;
                    };
                    let local = match inbox.local_ip(k) {
                        Some(IpAddr::V4(ip)) => ip,
                        _ => Ipv4Addr::UNSPECIFIED,
                    };
                    pop.handle_datagram(clock(), j, local, from, data);
                }
                send(&mut pop, &mut sends, &fds);
            }
            sends[j].flush(fds[j]);
        }
        pop.fan_out_outcomes(side.outcomes_since());
        if last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let (registered, failed) = pop.progress();
            progress(registered, failed, start.elapsed());
        }
    }
    pop.fan_out_outcomes(side.outcomes_since());
    let (job, soak_jobs) = side.finish();
    let flood = flood.finish()?;
    m.job = job;
    m.soak_jobs = soak_jobs;
    m.elapsed_s = start.elapsed().as_secs_f64();
    m.server_cpu.end = cfg.server_pid.and_then(process_cpu_ns);
    m.generator_cpu.end = process_cpu_ns(self_pid);
    let mut summary = pop.summary(m);
    summary.flood = flood;
    Ok(summary)
}

/// The flood's thread, started once when the endpoints first settle.
#[derive(Default)]
struct Flood {
    thread: Option<JoinHandle<std::io::Result<super::flood::FloodReport>>>,
    stop: Arc<AtomicBool>,
}

impl Flood {
    fn start(&mut self, cfg: &LoadConfig) {
        let Some(plan) = cfg.flood.clone().filter(|_| self.thread.is_none()) else {
            return;
        };
        let (target, domain, pid) = (cfg.target, cfg.domain.clone(), cfg.server_pid);
        let stop = self.stop.clone();
        self.thread = Some(std::thread::spawn(move || {
            super::flood::run(&plan, target, &domain, pid, &stop)
        }));
    }

    /// Stops the flood (if still running) and returns its report.
    fn finish(self) -> std::io::Result<Option<super::flood::FloodReport>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.map(|t| t.join()) {
            None => Ok(None),
            Some(Ok(r)) => r.map(Some),
            Some(Err(_)) => Err(std::io::Error::other("the flood thread panicked")),
        }
    }
}

/// Moves what the population wrote into the sockets' batches, sending a
/// batch whenever it fills. A datagram the kernel drops is like one lost
/// on the way: REGISTERs are retransmitted, the server retransmits its
/// requests.
fn send(pop: &mut Population, sends: &mut [SendBatch], fds: &[RawFd]) {
    while let Some(t) = pop.poll_transmit() {
        let b = &mut sends[t.socket];
        if b.is_full() {
            b.flush(fds[t.socket]);
        }
        b.push_from(t.bytes, t.src, SocketAddr::V4(t.dst));
    }
}

/// The application server's side of a run, on threads beside the loop:
/// the Notify scenario's job, or the soak's periodic jobs.
#[derive(Default)]
struct SideJobs {
    job: Option<JoinHandle<job::JobReport>>,
    job_report: Option<job::JobReport>,
    soak: Option<JoinHandle<job::SoakReport>>,
    soak_report: Option<job::SoakReport>,
    /// The soak's jobs: post no more (wait for the one in flight); stop now.
    soak_no_more: Arc<AtomicBool>,
    soak_stop: Arc<AtomicBool>,
    started: bool,
    over: bool,
    /// What the job threads saw of the devices' outcomes, for the timeline.
    outcomes: Arc<job::Outcomes>,
    outcomes_seen: [u64; 3],
}

impl SideJobs {
    /// Starts the jobs once, when the registrations first settle; `left`
    /// bounds a Notify job.
    fn start(&mut self, cfg: &LoadConfig, left: Duration) {
        let Some(plan) = cfg.job.clone().filter(|_| !self.started) else {
            return;
        };
        self.started = true;
        match cfg.scenario {
            Scenario::Notify => {
                let pid = cfg.server_pid;
                let o = self.outcomes.clone();
                self.job = Some(std::thread::spawn(move || job::run(&plan, pid, left, &o)));
            }
            Scenario::Soak => {
                let (no_more, stop) = (self.soak_no_more.clone(), self.soak_stop.clone());
                let o = self.outcomes.clone();
                let (every, k, n) = (cfg.job_every, cfg.job_targets, cfg.endpoints);
                self.soak = Some(std::thread::spawn(move || {
                    job::soak(&plan, every, k, n, &no_more, &stop, &o)
                }));
            }
            Scenario::Register | Scenario::Keepalive | Scenario::Call => {}
        }
    }

    /// Outcomes reported since the last call.
    fn outcomes_since(&mut self) -> [u64; 3] {
        self.outcomes.since(&mut self.outcomes_seen)
    }

    /// The soak starts no new job (the hold is over).
    fn post_no_more(&self) {
        self.soak_no_more.store(true, Ordering::Relaxed);
    }

    /// True once, when the Notify job or the soak's jobs have just finished.
    fn jobs_finished(&mut self) -> bool {
        let job_done = self.job.as_ref().is_some_and(|t| t.is_finished());
        let soak_done = self.soak.as_ref().is_some_and(|t| t.is_finished());
        if self.over || !(job_done || soak_done) {
            return false;
        }
        self.over = true;
        self.job_report = self.job.take().and_then(|t| t.join().ok());
        self.soak_report = self.soak.take().and_then(|t| t.join().ok());
        true
    }

    /// Stops the soak's jobs (abandoning one in flight when the run ends
    /// early); both reports.
    fn finish(mut self) -> (Option<job::JobReport>, Option<job::SoakReport>) {
        self.soak_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.soak.take() {
            self.soak_report = t.join().ok();
        }
        (self.job_report, self.soak_report)
    }
}
