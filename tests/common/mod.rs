//! Shared helpers for integration tests: an in-process tether on an
//! ephemeral loopback port, temporary files, and SIPp runs.
#![allow(dead_code)]

pub mod baresip;
pub mod hookserver;
pub mod netns;
pub mod ng;
pub mod push_gateway;
pub mod redis_bed;
pub mod rtpengine;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tether::config::Config;
use tether::runtime::Runtime;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tether-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TETHER_KEEP_TEMP").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts tether in this process on 127.0.0.1 (ephemeral port, 2 workers)
/// with `extra` TOML appended to the defaults.
pub fn start(extra: &str) -> (Runtime, SocketAddr) {
    let toml = format!("[sip]\nlisten = [\"127.0.0.1:0\"]\n[runtime]\nworkers = 2\n{extra}");
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let rt = Runtime::start(&cfg).expect("tether starts");
    let addr = rt.local_addrs[0];
    (rt, addr)
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Runs SIPp as a client against `target` and returns its output. `csv`
/// rows become the injection file (`-inf`). SIPp exits 0 only when every
/// call succeeded.
pub fn sipp(
    dir: &TempDir,
    scenario_file: &str,
    csv: &[String],
    calls: usize,
    rate: usize,
    target: SocketAddr,
    extra: &[&str],
) -> Output {
    let inf = dir.file(
        &format!("{scenario_file}.csv"),
        &format!("SEQUENTIAL\n{}\n", csv.join("\n")),
    );
    Command::new("sipp")
        .arg("-sf")
        .arg(scenario(scenario_file))
        .arg("-inf")
        .arg(&inf)
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-rp",
            "1000",
        ])
        .args([
            "-l",
            "2000",
            "-max_socket",
            "4000",
            "-timeout",
            "60s",
            "-nostdin",
            "-i",
            "127.0.0.1",
        ])
        // SIPp reads `-p 0` as its default 5060; parallel tests need their own ports.
        .args(["-p", &free_udp_port().to_string()])
        .args(["-trace_err", "-error_file"])
        .arg(dir.0.join(format!("{scenario_file}.errors")))
        .args(extra)
        .arg(target.to_string())
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .output()
        .expect("sipp is installed by .ci/run (apt-get install sip-tester)")
}

/// [`sipp`], asserting that every call succeeded (SIPp's errors in the
/// failure message).
pub fn sipp_ok(
    dir: &TempDir,
    scenario_file: &str,
    csv: &[String],
    calls: usize,
    rate: usize,
    target: SocketAddr,
    extra: &[&str],
) {
    let out = sipp(dir, scenario_file, csv, calls, rate, target, extra);
    assert_eq!(
        out.status.code(),
        Some(0),
        "sipp {scenario_file} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        sipp_errors(dir, scenario_file)
    );
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
///
/// Taken below the kernel's ephemeral range (32768-60999) and away from the
/// tests' relay blocks (14000-31999, 41000-44999): a port the kernel handed
/// out for `:0` is handed out again to the next socket bound to `:0` (the
/// tethers and SIPp peers of parallel tests), which then races the test that
/// asked for it. Each process starts at its own pseudo-random point.
pub fn free_udp_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LO: u32 = 6000;
    const SPAN: u32 = 8000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LO + seed.wrapping_add(k.wrapping_mul(7919)) % SPAN) as u16;
        let free = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no free UDP port in {LO}-{}", LO + SPAN - 1);
}

/// SIPp's error log, for assertion messages.
pub fn sipp_errors(dir: &TempDir, scenario_file: &str) -> String {
    let log =
        std::fs::read_to_string(dir.0.join(format!("{scenario_file}.errors"))).unwrap_or_default();
    log.chars().take(3000).collect()
}

/// The bearer token of the API client that [`start_with_api`] configures.
pub const API_TOKEN: &str = "test-token-0123456789";

/// [`start`] plus the control API on an ephemeral loopback port, with one
/// trusted client (`as1`, [`API_TOKEN`]). Returns the API's base URL.
pub fn start_with_api(extra: &str) -> (Runtime, SocketAddr, tether::api::http::Api, String) {
    let toml = format!(
        "[sip]\nlisten = [\"127.0.0.1:0\"]\n[runtime]\nworkers = 2\n[api]\nlisten = \"127.0.0.1:0\"\n\
clients = [{{ name = \"as1\", token = \"{API_TOKEN}\" }}]\n{extra}"
    );
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let rt = Runtime::start(&cfg).expect("tether starts");
    let addr = rt.local_addrs[0];
    let api = tether::api::http::Api::start(cfg.api_listen().unwrap(), &cfg, rt.control())
        .expect("api starts");
    let base = format!("http://{}", api.addr);
    (rt, addr, api, base)
}

/// A metric without labels from the API's `/metrics` at `base`.
pub fn metric(base: &str, name: &str) -> u64 {
    let (_, text) = http("GET", &format!("{base}/metrics"), None, None);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Waits (at most 5 s) for a metric to read `want`: cores publish their
/// counters about once a second.
pub fn wait_metric(base: &str, name: &str, want: u64) {
    let mut got = 0;
    let ok = wait_for(std::time::Duration::from_secs(5), || {
        got = metric(base, name);
        got == want
    });
    assert!(ok, "{name} = {got}, want {want}");
}

/// An HTTP call to the API: (status, body).
pub fn http(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("POST", b) => {
            let mut r = agent.post(url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.send(b.unwrap_or("").as_bytes())
        }
        ("DELETE", _) => {
            let mut r = agent.delete(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        _ => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
    };
    let mut resp = resp.expect("http call");
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    (status, body)
}

/// Posts a job and returns its id.
pub fn post_job(base: &str, body: &str) -> String {
    let (status, resp) = http(
        "POST",
        &format!("{base}/v1/notify"),
        Some(API_TOKEN),
        Some(body),
    );
    assert_eq!(status, 202, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    v["job"].as_str().unwrap().to_owned()
}

/// `GET url` on the control API with the test token: asserts a 200 and
/// returns the JSON body.
pub fn get_json(url: &str) -> serde_json::Value {
    let (status, body) = http("GET", url, Some(API_TOKEN), None);
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// Polls a job until it is finished (at most `secs`); returns its JSON.
pub fn wait_job(base: &str, id: &str, secs: u64) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let v = get_json(&format!("{base}/v1/notify/{id}"));
        if v["status"] == "finished" || v["status"] == "cancelled" {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} not finished after {secs} s: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Polls `cond` every 20 ms until it holds (true) or `timeout` passes (false).
pub fn wait_for(timeout: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`wait_for`] that fails the test, naming `what`, after `secs`.
pub fn wait_until(secs: u64, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        wait_for(std::time::Duration::from_secs(secs), cond),
        "timed out waiting for {what}"
    );
}

/// Runs SIPp with a scenario written into `dir` (client or server mode by
/// its first step), bound to 127.0.0.1:`port`, for `calls` calls; traces
/// every message to `<name>.messages`. Returns the child; `target` is the
/// remote for client scenarios.
pub fn spawn_sipp(
    dir: &TempDir,
    name: &str,
    xml: &str,
    port: u16,
    calls: usize,
    target: Option<SocketAddr>,
) -> std::process::Child {
    let sf = dir.file(&format!("{name}.xml"), xml);
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&sf)
        .args([
            "-m",
            &calls.to_string(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-timeout", "60s", "-nostdin", "-trace_msg", "-message_file"])
        .arg(dir.0.join(format!("{name}.messages")))
        .args(["-trace_err", "-error_file"])
        .arg(dir.0.join(format!("{name}.errors")));
    if let Some(t) = target {
        cmd.arg(t.to_string());
    }
    cmd.current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp is installed by .ci/run (apt-get install sip-tester)")
}

/// Waits (at most `secs`) for a SIPp child and asserts it succeeded.
pub fn expect_sipp_ok(dir: &TempDir, name: &str, mut child: std::process::Child, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sipp {name} still running after {secs} s\n{}\n{}",
                sipp_errors(dir, name),
                sipp_messages(dir, name)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "sipp {name} failed\n{}\n{}",
        sipp_errors(dir, name),
        sipp_messages(dir, name)
    );
}

/// SIPp's message trace for `name`.
pub fn sipp_messages(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.0.join(format!("{name}.messages"))).unwrap_or_default()
}

/// Whether this run is CI's (`CI=true`, as `.ci/run` sets it), where every
/// test must run: one that cannot is a failure, not a silent pass.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// For a test that cannot run here (`why`: no root, a tool missing). Under
/// CI it fails the test; elsewhere it prints a `SKIPPED` line (shown with
/// `--nocapture` or nextest's `--success-output immediate`) and the caller
/// returns.
pub fn skip(test: &str, why: &str) {
    assert!(
        !under_ci(),
        "{test} could not run under CI (CI=true): {why}"
    );
    eprintln!("SKIPPED {test}: {why} (under CI=true this fails)");
}

/// Kamailio and the other processes of a test bed.
pub mod kamailio;

/// Whether each `(tool, version flag, Debian package)` runs here; if one
/// does not, reports the test skipped (a failure under CI).
pub fn have_tools(test: &str, tools: &[(&str, &str, &str)]) -> bool {
    for (tool, arg, pkg) in tools {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            skip(
                test,
                &format!("{tool} is not installed (apt-get install {pkg})"),
            );
            return false;
        }
    }
    true
}
