//! The `tether` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tether::config::{Config, DEFAULT_TOML};
use tether::reload::{self, Overrides};
use tether::runtime::Runtime;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Thread-per-core UDP SIP edge relay: keeps NATed endpoints reachable and wakes them on demand"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge relay (embedded defaults when no --config is given).
    /// SIGHUP re-reads --config and applies log.level, api.allow,
    /// api.clients and [limits]; other changed keys are logged as needing a restart.
    Run {
        /// TOML configuration file; see `tether config` for every key.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Override sip.listen (repeatable), e.g. --listen 127.0.0.1:5060.
        #[arg(short, long)]
        listen: Vec<std::net::SocketAddr>,
        /// Override runtime.workers (0 = one per core).
        #[arg(short, long)]
        workers: Option<usize>,
        /// Override api.listen, e.g. --api-listen 127.0.0.1:0 ("" = no API).
        #[arg(long)]
        api_listen: Option<String>,
    },
    /// Load-test a SIP registrar with simulated endpoints, each on its own
    /// source address (127.0.0.0/8) and port.
    Bench(Box<BenchArgs>),
    /// Print the embedded default configuration.
    Config {
        /// Every setting commented out (the installed /etc/tether/tether.toml).
        #[arg(long)]
        commented: bool,
    },
    /// Check a configuration file and exit.
    Check { config: PathBuf },
}

#[derive(clap::Args)]
struct BenchArgs {
    /// `register`: register every endpoint once. `keepalive`: register, then
    /// stay for --hold answering the server's requests. `notify`: register,
    /// then ask the server's control API (--api) for one fan-out job to all
    /// endpoints, answer it with --answer, time it, then probe API-to-wire
    /// latency with --probes single-target jobs. `soak`: register, then for
    /// --hold do everything at once: refreshes, keepalive and fan-out
    /// answers, --churn devices restarting per second, and (with --api and
    /// --token) a job to --job-targets random endpoints every --job-every s.
    /// `call`: -n callees and --callers callers register (at
    /// --register-rate), then the callers call the callees' AORs in turn
    /// through the target, --rate calls/s for --duration s, each answered
    /// call held --hold ms before the caller's BYE (--cancel-share,
    /// --busy-share: calls cancelled while ringing, refused 486). `rtp`:
    /// --calls calls set up on an RTP relay over rtpengine's ng protocol
    /// (--ng; or --fixed for a relay without signalling), each with an audio
    /// and a video stream, then RTP both ways on every stream at --pps for
    /// --seconds, paced; reports forwarded packets, loss per flow, one-way
    /// latency, corrupted payloads and (--server-pid) CPU per packet, then
    /// deletes the calls.
    #[arg(value_parser = ["register", "keepalive", "notify", "soak", "call", "rtp"])]
    scenario: String,
    /// The registrar to load (loopback only unless --allow-remote). Given
    /// several times (the nodes of a cluster), endpoints are spread over
    /// them in turn, each node is reported apart, and a node that stops
    /// answering loses its endpoints to the others (--failover-ms).
    #[arg(short, long = "target", default_value = "127.0.0.1:5060")]
    targets: Vec<std::net::SocketAddrV4>,
    /// Several targets: a node whose STUN keepalives go unanswered this
    /// long (ms) is down; its endpoints register again at the others. 0: never.
    #[arg(long, default_value_t = 2_000)]
    failover_ms: u64,
    /// A device prompted by two different nodes within this (ms) counts as
    /// a duplicate prompt.
    #[arg(long, default_value_t = 60_000)]
    duplicate_window_ms: u64,
    /// Simulated endpoints (call: the callees).
    #[arg(short = 'n', long, default_value_t = 10_000)]
    endpoints: u32,
    /// REGISTERs per second (call: new calls per second); 0 = as fast as
    /// the window allows.
    #[arg(short, long, default_value_t = 1_000)]
    rate: u32,
    /// Hard limit on the run, in seconds [default: 120]. Call: seconds of
    /// placing calls [default: 10]; the run then ends once every call is
    /// over, at the latest --hold and --drain later. Rtp: seconds of
    /// sending media [default: 10].
    #[arg(long, visible_alias = "seconds")]
    duration: Option<u64>,
    /// Keepalive and soak: seconds to stay after registering [default: 30].
    /// Call: milliseconds each answered call lasts [default: 1000].
    #[arg(long)]
    hold: Option<u64>,
    /// Call: the callers (endpoints after the callees, registering too).
    #[arg(long, default_value_t = 100)]
    callers: u32,
    /// Call: REGISTERs per second before the calls; 0 = as fast as the window allows.
    #[arg(long, default_value_t = 5_000)]
    register_rate: u32,
    /// Call: percent of calls the caller cancels while they ring (487).
    #[arg(long, default_value_t = 0.0)]
    cancel_share: f64,
    /// Call: percent of calls the callee refuses with 486 Busy Here.
    #[arg(long, default_value_t = 0.0)]
    busy_share: f64,
    /// Call: milliseconds a call to be cancelled rings before the CANCEL.
    #[arg(long, default_value_t = 200)]
    ring: u64,
    /// Call: seconds to wait for calls still in flight after the last one's hold.
    #[arg(long, default_value_t = 40)]
    drain: u64,
    /// Expires of each REGISTER.
    #[arg(long, default_value_t = 3600)]
    expires: u32,
    /// Status code to answer server requests with: 200, 486 …; 401 challenges
    /// (then 200 for valid credentials, see --device-password); 0 = stay silent.
    #[arg(long, default_value_t = 200)]
    answer: u16,
    /// Share of endpoints that never answer (dead devices), 0..1.
    #[arg(long, default_value_t = 0.0)]
    dead_share: f64,
    /// First source address; endpoints take consecutive addresses from it.
    #[arg(long, default_value = "127.1.0.1")]
    source_base: std::net::Ipv4Addr,
    /// Source ports (sockets) the endpoints are spread over.
    #[arg(long, default_value_t = 16)]
    ports: u16,
    /// Domain of the AORs and Request-URI (default: the target's address).
    #[arg(long)]
    domain: Option<String>,
    /// Most REGISTER transactions in flight (call: also most calls in flight).
    #[arg(long, default_value_t = 20_000)]
    window: u32,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write throughput, latency and (notify, soak) fan-out outcomes over time to this SVG file
    /// (call: calls placed, answered and failed, and call setup latency).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Allow a target outside 127.0.0.0/8.
    #[arg(long)]
    allow_remote: bool,
    /// Keepalive scenario: re-REGISTER at 80% of the granted expiry.
    #[arg(long)]
    refresh: bool,
    /// At the end, remove every binding again (REGISTER with Expires: 0).
    #[arg(long)]
    unregister: bool,
    /// Digest password of every endpoint (username u<N>); `{i}` becomes N.
    #[arg(long)]
    password: Option<String>,
    /// PID of the server when it runs here: report its CPU per REGISTER, per request and per call.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Notify scenario: the server's control API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Notify scenario: bearer token of an [[api.clients]] entry.
    #[arg(long, default_value = "")]
    token: String,
    /// Notify scenario: `contact-me` (NOTIFY) or `wake-invite` (INVITE).
    #[arg(long, default_value = "contact-me", value_parser = ["contact-me", "wake-invite"])]
    job_kind: String,
    /// Notify scenario: single-target jobs timed from POST to the request's arrival.
    #[arg(long, default_value_t = 200)]
    probes: u32,
    /// Notify scenario: the job's own rate limit (requests/s); default: the server's.
    #[arg(long)]
    job_rate: Option<u32>,
    /// With --answer 401: the password the server must answer the endpoints'
    /// digest challenges with (realm "tether-bench", any username).
    #[arg(long, default_value = "device")]
    device_password: String,
    /// Give each endpoint a +sip.instance (urn:uuid:00000000-0000-4000-8000-<12-digit N>)
    /// and reg-id=1, so jobs can target device ids.
    #[arg(long)]
    instance: bool,
    /// Extra Contact parameters for every endpoint, e.g. ';scope=mobile'.
    #[arg(long, default_value = "")]
    contact_params: String,
    /// Soak: devices restarting (unregister, register again) per second.
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// Soak: seconds between fan-out jobs.
    #[arg(long, default_value_t = 5)]
    job_every: u64,
    /// Soak: endpoints per fan-out job.
    #[arg(long, default_value_t = 100)]
    job_targets: u32,
    /// Keepalive and soak: once the endpoints registered, flood the target
    /// with this many requests/s (REGISTER, INVITE, OPTIONS in turn) from
    /// --flood-sources other addresses, while the endpoints refresh; 0 = no flood.
    #[arg(long, default_value_t = 0)]
    flood_rate: u32,
    /// Flooding source addresses, consecutive from --flood-base.
    #[arg(long, default_value_t = 1_000)]
    flood_sources: u32,
    /// First flooding address (127.0.0.0/8).
    #[arg(long, default_value = "127.200.0.1")]
    flood_base: std::net::Ipv4Addr,
    /// The flood's requests, sent in turn.
    #[arg(long, value_delimiter = ',', default_value = "register,invite,options",
          value_parser = ["register", "invite", "options"])]
    flood_kinds: Vec<String>,
    /// Seconds the flood lasts at most [default: --hold].
    #[arg(long)]
    flood_seconds: Option<u64>,
    /// Rtp: the relay's ng control address (loopback only unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:2223")]
    ng: std::net::SocketAddrV4,
    /// Rtp: no signalling; the relay's pair i listens on BASE+2i (side A)
    /// and BASE+2i+1 (side B), e.g. benches/relay_floor.c; stream s uses pair s % --pairs.
    #[arg(long, value_name = "ADDR:BASE")]
    fixed: Option<std::net::SocketAddrV4>,
    /// Rtp: the port pairs of a --fixed relay.
    #[arg(long, default_value_t = 1)]
    pairs: u32,
    /// Rtp: calls (each two streams, each stream both ways).
    #[arg(long, default_value_t = 100)]
    calls: u32,
    /// Rtp: packets per second on each stream in each direction (50: 20 ms ptime).
    #[arg(long, default_value_t = 50)]
    pps: u32,
    /// Rtp: RTP payload bytes (24 to 1400).
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// Rtp: cap on the packets sent in the whole run.
    #[arg(long, default_value_t = 200_000_000)]
    max_packets: u64,
}

fn bench_rtp(a: &BenchArgs) -> ExitCode {
    use tether::loadgen::{self, rtp};
    let target = match a.fixed {
        Some(base) => rtp::RtpTarget::Fixed {
            base,
            pairs: a.pairs.max(1),
        },
        None => rtp::RtpTarget::Ng(a.ng),
    };
    let addr = a.fixed.unwrap_or(a.ng);
    if let Err(e) = loadgen::check_target(addr, a.allow_remote) {
        eprintln!("tether bench: {e}");
        return ExitCode::from(2);
    }
    let plan = rtp::RtpPlan {
        target,
        calls: a.calls,
        pps: a.pps,
        payload: a.payload,
        seconds: a.duration.unwrap_or(10) as f64,
        server_pid: a.server_pid,
        max_packets: a.max_packets,
        ..rtp::RtpPlan::default()
    };
    let report = match rtp::run(&plan, |line| eprintln!("tether bench rtp: {line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tether bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        println!("{}", rtp::report::json(&report));
    } else {
        print!("{}", rtp::report::table(&report));
    }
    if let Some(path) = &a.plot {
        if let Err(e) = std::fs::write(path, rtp::report::svg(&report)) {
            eprintln!("tether bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

impl BenchArgs {
    /// The first target (the one the API, probes and floods use).
    fn target(&self) -> std::net::SocketAddrV4 {
        self.targets
            .first()
            .copied()
            .unwrap_or(std::net::SocketAddrV4::new([127, 0, 0, 1].into(), 5060))
    }
}

fn bench(a: BenchArgs) -> ExitCode {
    use tether::loadgen::{self, report, LoadConfig, Scenario};
    if a.scenario == "rtp" {
        return bench_rtp(&a);
    }
    for t in &a.targets {
        if let Err(e) = loadgen::check_target(*t, a.allow_remote) {
            eprintln!("tether bench: {e}");
            return ExitCode::from(2);
        }
    }
    if a.targets.len() > 200 {
        eprintln!("tether bench: at most 200 --target");
        return ExitCode::from(2);
    }
    if !a.source_base.is_loopback() || !a.flood_base.is_loopback() {
        eprintln!("tether bench: --source-base and --flood-base must be in 127.0.0.0/8");
        return ExitCode::from(2);
    }
    use std::time::Duration;
    let calling = a.scenario == "call";
    let shares = [a.cancel_share, a.busy_share];
    if shares.iter().any(|p| !(0.0..=100.0).contains(p)) || shares.iter().sum::<f64>() > 100.0 {
        eprintln!(
            "tether bench: --cancel-share and --busy-share are percents adding up to 100 at most"
        );
        return ExitCode::from(2);
    }
    let call = calling.then(|| loadgen::CallPlan {
        callers: a.callers.max(1),
        rate: a.rate,
        duration: Duration::from_secs(a.duration.unwrap_or(10)),
        hold: Duration::from_millis(a.hold.unwrap_or(1_000)),
        cancel_share: a.cancel_share,
        busy_share: a.busy_share,
        ring: Duration::from_millis(a.ring),
        drain: Duration::from_secs(a.drain),
    });
    // A call run's hard limit: registering (allowed 120 s), then the calls.
    let duration = match &call {
        Some(p) => Duration::from_secs(120) + p.duration + p.hold + p.drain,
        None => Duration::from_secs(a.duration.unwrap_or(120)),
    };
    let first = a.target();
    let cfg = LoadConfig {
        target: first,
        targets: if a.targets.len() > 1 {
            a.targets.clone()
        } else {
            Vec::new()
        },
        failover: Duration::from_millis(a.failover_ms),
        duplicate_window: Duration::from_millis(a.duplicate_window_ms),
        endpoints: a.endpoints,
        rate: if calling { a.register_rate } else { a.rate },
        duration,
        hold: if calling {
            Duration::ZERO
        } else {
            Duration::from_secs(a.hold.unwrap_or(30))
        },
        scenario: match a.scenario.as_str() {
            "keepalive" => Scenario::Keepalive,
            "notify" => Scenario::Notify,
            "soak" => Scenario::Soak,
            "call" => Scenario::Call,
            _ => Scenario::Register,
        },
        expires: a.expires,
        answer: a.answer,
        dead_share: a.dead_share,
        source_base: a.source_base,
        ports: a.ports,
        domain: a.domain.clone().unwrap_or_else(|| first.ip().to_string()),
        window: a.window,
        server_pid: a.server_pid,
        password: a.password,
        unregister: a.unregister,
        refresh: a.refresh,
        device_password: a.device_password.clone(),
        churn_per_s: a.churn,
        instance: a.instance,
        contact_params: a.contact_params.clone(),
        job_every: Duration::from_secs(a.job_every.max(1)),
        job_targets: a.job_targets,
        call,
        flood: (a.flood_rate > 0).then(|| loadgen::flood::FloodPlan {
            sources: a.flood_sources.max(1),
            rate: a.flood_rate,
            source_base: a.flood_base,
            duration: Duration::from_secs(a.flood_seconds.unwrap_or(a.hold.unwrap_or(30))),
            kinds: a
                .flood_kinds
                .iter()
                .map(|k| match k.as_str() {
                    "register" => 0,
                    "invite" => 1,
                    _ => 2,
                })
                .collect(),
            ..Default::default()
        }),
        job: (a.scenario == "notify" || (a.scenario == "soak" && !a.token.is_empty())).then(|| {
            loadgen::job::JobPlan {
                api: a.api.clone(),
                token: a.token.clone(),
                kind: a.job_kind.clone(),
                probes: a.probes,
                rate: a.job_rate,
                target: first,
                domain: a.domain.clone().unwrap_or_else(|| first.ip().to_string()),
            }
        }),
    };
    use std::io::IsTerminal as _;
    let bar = std::io::stderr().is_terminal().then(|| {
        let callers = cfg.call.as_ref().map_or(0, |p| p.callers);
        let b = indicatif::ProgressBar::new(u64::from(cfg.endpoints + callers));
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} registered {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let result = loadgen::run(&cfg, |ok, failed, _| {
        if let Some(b) = &bar {
            b.set_position(ok);
            b.set_message(format!("{failed} failed"));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tether bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.json {
        println!("{}", report::json(&summary));
    } else {
        print!("{}", report::table(&summary));
    }
    if let Some(path) = a.plot {
        if let Err(e) = std::fs::write(&path, report::svg(&summary)) {
            eprintln!("tether bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let log = tether::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(a) => bench(*a),
        Command::Config { commented } => {
            if commented {
                print!("{}", tether::config::commented_defaults());
            } else {
                print!("{DEFAULT_TOML}");
            }
            ExitCode::SUCCESS
        }
        Command::Check { config } => match Config::load(Some(&config)) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            listen,
            workers,
            api_listen,
        } => {
            let overrides = Overrides {
                listen,
                workers,
                api_listen,
            };
            let (cfg, text) = match reload::load(config.as_deref(), &overrides) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(set) = &log {
                if let Err(e) = set(&cfg.log.level) {
                    eprintln!("config key `log.level`: {e}");
                    return ExitCode::from(2);
                }
            }
            let targets = reload::Targets {
                log,
                ..Default::default()
            };
            let reloader = reload::Reloader::new(config, overrides, cfg, text, targets);
            match run(reloader) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tether: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(mut reloader: reload::Reloader) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Register before starting workers so an early signal is not lost (and
    // an early SIGHUP does not end the process, its default action).
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let cfg = reloader.running().clone();
    let rt = Runtime::start(&cfg)?;
    reloader.targets_mut().cores = rt.control().inboxes;
    use std::io::Write as _;
    // Machine-readable lines for scripts and tests that bind port 0. A reader
    // that stopped listening (closed pipe) is not a reason to stop serving.
    let mut out = std::io::stdout();
    for addr in &rt.local_addrs {
        let _ = writeln!(out, "listening udp {addr}");
    }
    let api = match cfg.api_listen() {
        Some(addr) => {
            let api = tether::api::http::Api::start(addr, &cfg, rt.control())?;
            let _ = writeln!(out, "listening http {}", api.addr);
            reloader.targets_mut().api = Some(api.service.clone());
            Some(api)
        }
        None => None,
    };
    let _ = out.flush();
    for sig in signals.forever() {
        if sig == SIGHUP {
            reloader.reload();
            continue;
        }
        tracing::info!(signal = sig, "stopping");
        break;
    }
    if let Some(api) = api {
        api.shutdown();
    }
    rt.shutdown()?;
    tracing::info!("stopped");
    Ok(())
}
