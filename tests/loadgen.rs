//! The load generator against tether over loopback: every endpoint
//! registers from its own source address, the directory sees each as a
//! distinct NAT path, and in the keepalive scenario every endpoint is
//! prompted and (unless configured dead) answers.

mod common;

use std::net::SocketAddrV4;
use std::time::Duration;

use tether::loadgen::{self, LoadConfig, Scenario};

fn target(addr: std::net::SocketAddr) -> SocketAddrV4 {
    match addr {
        std::net::SocketAddr::V4(a) => a,
        _ => panic!("IPv4 expected"),
    }
}

#[test]
fn register_scenario_every_endpoint_on_its_own_path() {
    let (rt, addr) = common::start("");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 3_000,
        rate: 3_000,
        duration: Duration::from_secs(30),
        source_base: "127.5.0.1".parse().unwrap(),
        ports: 4,
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 3_000, "{s:?}");
    assert_eq!(s.failed, 0);
    assert_eq!(s.codes.get(&200), Some(&3_000));
    assert!(s.latency_us.p50 > 0 && s.latency_us.max >= s.latency_us.p99);
    assert_eq!(rt.directory().aor_count(), 3_000);
    // Endpoint 5 sits on the second address (5 / 4 ports = 1), port index 1.
    let c = &rt.directory().lookup("u5@127.0.0.1", 1)[0];
    assert_eq!(c.source.ip().to_string(), "127.5.0.2");
    let distinct: std::collections::HashSet<_> = (0..3_000)
        .map(|i| rt.directory().lookup(&format!("u{i}@127.0.0.1"), 1)[0].source)
        .collect();
    assert_eq!(distinct.len(), 3_000, "3,000 distinct NAT paths");
    rt.shutdown().unwrap();
}

#[test]
fn keepalive_scenario_prompts_every_endpoint_and_dead_ones_stay_silent() {
    let (rt, addr) =
        common::start("[keepalive]\ninterval_ms = 500\ntimeout_ms = 200\njitter_ms = 100\n");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 1_000,
        rate: 5_000,
        duration: Duration::from_secs(30),
        hold: Duration::from_millis(2_500),
        scenario: Scenario::Keepalive,
        dead_share: 0.5,
        source_base: "127.6.0.1".parse().unwrap(),
        ports: 4,
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 1_000);
    assert_eq!(s.endpoints_prompted, 1_000, "every path was prompted");
    let options = s.requests_received.get("OPTIONS").copied().unwrap_or(0);
    assert!(options >= 2_000, "several rounds of prompts: {options}");
    // Only the live half answers; the dead half gets retransmissions too.
    assert!(
        s.requests_answered * 10 < options * 6,
        "{} of {options}",
        s.requests_answered
    );
    assert!(s.requests_answered > 0);
    rt.shutdown().unwrap();
}

#[test]
fn remote_targets_are_refused_by_default() {
    assert!(loadgen::check_target("192.0.2.1:5060".parse().unwrap(), false).is_err());
    assert!(loadgen::check_target("127.0.0.1:5060".parse().unwrap(), false).is_ok());
}

#[test]
fn cli_prints_json_and_writes_a_plot() {
    let (rt, addr) = common::start("");
    let dir = common::TempDir::new("bench-cli");
    let plot = dir.0.join("run.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "bench",
            "register",
            "-t",
            &addr.to_string(),
            "-n",
            "500",
            "-r",
            "1000",
            "--json",
        ])
        .args(["--source-base", "127.7.0.1", "--plot"])
        .arg(&plot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["registered"], 500);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    rt.shutdown().unwrap();
}

#[test]
fn digest_authentication_with_per_endpoint_passwords() {
    use tether::sip::digest::{ha1, Algorithm};
    let dir = common::TempDir::new("bench-auth");
    let users: String = (0..200)
        .map(|i| {
            let (u, p) = (format!("u{i}"), format!("pw{i}"));
            format!(
                "{u}:tether:{}:{}\n",
                ha1(Algorithm::Md5, &u, "tether", &p).as_str(),
                ha1(Algorithm::Sha256, &u, "tether", &p).as_str()
            )
        })
        .collect();
    let creds = dir.file("users", &users);
    let (rt, addr) = common::start(&format!(
        "[auth]\nenabled = true\ncredentials = \"{}\"\n",
        creds.display()
    ));
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 200,
        rate: 1_000,
        duration: Duration::from_secs(30),
        source_base: "127.14.0.1".parse().unwrap(),
        password: Some("pw{i}".into()),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 200, "{s:?}");
    assert_eq!(
        s.challenges, 200,
        "each endpoint answered one challenge (SHA-256 offered first)"
    );
    assert_eq!(rt.directory().aor_count(), 200);
    // A wrong password ends in 403.
    let bad = LoadConfig {
        endpoints: 20,
        source_base: "127.15.0.1".parse().unwrap(),
        password: Some("nope".into()),
        ..cfg
    };
    let s = loadgen::run(&bad, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 0);
    assert_eq!(s.codes.get(&403), Some(&20));
    rt.shutdown().unwrap();
}

#[test]
fn unregister_phase_removes_every_binding_again() {
    let (rt, addr) = common::start("");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 1_000,
        rate: 2_000,
        duration: Duration::from_secs(30),
        source_base: "127.16.0.1".parse().unwrap(),
        unregister: true,
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 1_000);
    assert_eq!(s.unregistered, 1_000, "{s:?}");
    assert_eq!(rt.directory().aor_count(), 0);
    rt.shutdown().unwrap();
}

#[test]
fn refresh_keeps_bindings_alive_past_their_expiry() {
    let (rt, addr) = common::start("[registrar]\nmin_expires = 2\ndefault_expires = 3\n");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 200,
        rate: 1_000,
        duration: Duration::from_secs(30),
        hold: Duration::from_secs(7),
        scenario: Scenario::Keepalive,
        expires: 3,
        refresh: true,
        source_base: "127.17.0.1".parse().unwrap(),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!(s.registered, 200);
    // Refreshed about every 2.4 s over 7 s: two or three times each.
    assert!(s.refreshed >= 400, "refreshed {}", s.refreshed);
    assert_eq!(s.failed, 0);
    // 7 s after registering with a 3 s expiry, every binding is still there.
    assert_eq!(rt.directory().aor_count(), 200);
    rt.shutdown().unwrap();
}

#[test]
fn notify_scenario_fans_out_to_every_endpoint_through_the_api_even_when_they_challenge() {
    let (rt, addr, api, base) =
        common::start_with_api("[notify]\nusername = \"tether\"\npassword = \"device\"\n");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 500,
        rate: 5_000,
        duration: Duration::from_secs(60),
        scenario: Scenario::Notify,
        instance: true,
        contact_params: ";scope=mobile".into(),
        answer: 401,
        device_password: "device".into(),
        source_base: "127.8.0.1".parse().unwrap(),
        ports: 4,
        job: Some(loadgen::job::JobPlan {
            api: base,
            token: common::API_TOKEN.into(),
            kind: "contact-me".into(),
            probes: 20,
            rate: None,
            target: target(addr),
            domain: "127.0.0.1".into(),
        }),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    let job = s.job.clone().expect("the job ran");
    assert_eq!(job.error, None, "{s:?}");
    assert_eq!((job.devices, job.delivered), (500, 500), "{job:?}");
    assert_eq!(s.device_challenges, 500, "every endpoint challenged once");
    assert_eq!(
        job.server_metrics
            .get("tether_notify_challenges_answered_total"),
        Some(&500.0)
    );
    let probes = job.api_to_wire_us.expect("probes measured");
    // Device ids and scopes as the other issues need them.
    let dev = rt
        .directory()
        .device("<urn:uuid:00000000-0000-4000-8000-000000000042>")
        .or_else(|| {
            rt.directory()
                .device("urn:uuid:00000000-0000-4000-8000-000000000042")
        })
        .expect("endpoint 42 is a device");
    assert_eq!(&*dev.aor, "u42@127.0.0.1");
    assert_eq!(rt.directory().lookup("u42@127.0.0.1:mobile", 1).len(), 1);
    assert!(probes.max >= probes.p50 && probes.p50 > 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn soak_scenario_mixes_refresh_keepalive_churn_and_fan_out_without_failures() {
    let (rt, addr, api, base) = common::start_with_api(
        "[registrar]\nmin_expires = 2\n[keepalive]\ninterval_ms = 1000\ntimeout_ms = 500\njitter_ms = 200\n",
    );
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 2_000,
        rate: 4_000,
        duration: Duration::from_secs(60),
        hold: Duration::from_secs(4),
        expires: 3,
        scenario: Scenario::Soak,
        churn_per_s: 100,
        job_every: Duration::from_secs(1),
        job_targets: 50,
        source_base: "127.9.0.1".parse().unwrap(),
        ports: 4,
        job: Some(loadgen::job::JobPlan {
            api: base,
            token: common::API_TOKEN.into(),
            kind: "contact-me".into(),
            probes: 0,
            rate: None,
            target: target(addr),
            domain: "127.0.0.1".into(),
        }),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    assert_eq!((s.registered, s.failed), (2_000, 0), "{s:?}");
    assert!(
        s.refreshed >= 2_000,
        "every binding refreshed at least once: {}",
        s.refreshed
    );
    assert!(
        s.churned > 0 && s.churn_failed == 0,
        "{} / {}",
        s.churned,
        s.churn_failed
    );
    assert!(
        s.requests_received.contains_key("OPTIONS"),
        "keepalive prompts answered"
    );
    let jobs = s.soak_jobs.clone().expect("soak jobs ran");
    assert!(jobs.jobs >= 2 && jobs.errors == 0, "{jobs:?}");
    // A device restarting during a job may be between bindings: counted, not lost.
    assert_eq!(jobs.delivered + jobs.other, jobs.devices, "{jobs:?}");
    assert_eq!(jobs.timed_out + jobs.rejected, 0, "{jobs:?}");
    // Nothing lost: every endpoint is registered at the end.
    assert_eq!(rt.directory().aor_count(), 2_000);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn call_scenario_every_call_through_the_proxy_ends_as_planned() {
    let (rt, addr) = common::start("[registrar]\ndomains = [\"127.0.0.1\"]\n");
    let cfg = LoadConfig {
        target: target(addr),
        endpoints: 100,
        rate: 2_000,
        duration: Duration::from_secs(60),
        scenario: Scenario::Call,
        source_base: "127.12.0.1".parse().unwrap(),
        call: Some(loadgen::CallPlan {
            callers: 20,
            rate: 100,
            duration: Duration::from_secs(3),
            hold: Duration::from_millis(300),
            cancel_share: 10.0,
            busy_share: 10.0,
            ..loadgen::CallPlan::default()
        }),
        ..LoadConfig::default()
    };
    let s = loadgen::run(&cfg, |_, _, _| {}).unwrap();
    let c = s.calls.expect("a call report");
    assert!(c.attempted >= 250, "{c:?}");
    assert_eq!(c.failed, 0, "{c:?}");
    assert_eq!(c.unfinished, 0, "{c:?}");
    assert_eq!(c.answered + c.cancelled + c.busy, c.attempted, "{c:?}");
    assert!(c.cancelled > 0 && c.busy > 0, "{c:?}");
    assert_eq!(c.bye_ok, c.answered, "{c:?}");
    // Every dialog ended with its BYE (the cores publish about once a second).
    let sum = |m: tether::metrics::CoreMetric| -> u64 {
        rt.control().metrics.iter().map(|c| c.get(m as usize)).sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while (sum(tether::metrics::CoreMetric::CallsAnswered) < c.answered
        || sum(tether::metrics::CoreMetric::Dialogs) > 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sum(tether::metrics::CoreMetric::CallsAnswered), c.answered);
    assert_eq!(sum(tether::metrics::CoreMetric::Dialogs), 0);
    rt.shutdown().unwrap();
}
