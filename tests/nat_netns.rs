//! A real NAT (seed 004): network namespaces `lan`, `nat` and `wan` joined
//! by veth pairs, iptables MASQUERADE in `nat`, UDP conntrack timeouts
//! lowered to 10 s. tether runs in `wan`; a UA in `lan` registers through
//! the NAT and then sends nothing for 50 s. With keepalive prompts every
//! 5 s the mapping stays open and a request 45 s later still reaches the
//! UA; with the first prompt only at 45 s (the mapping died at 10 s) that
//! request is lost. The same holds for a contact-me job posted to the
//! control API 42 s after the registration: its NOTIFY reaches the UA only
//! through the kept-alive mapping. Needs root and `ip netns` (CI has both);
//! without them it reports itself skipped, and fails under `CI=true`.
//! The namespaces are side 0 of the bed in tests/common/netns.rs (the other
//! side goes unused); they are removed even when the test fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::netns::{Bed, WAN_ADDR};

struct Tether(Child);

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TOKEN: &str = "nat-test-token-0123456";

/// What the UA behind the NAT saw, and what the NAT and the API said.
struct Outcome {
    /// Seconds after registering at which OPTIONS reached the UA.
    options_at: Vec<f64>,
    /// Seconds after registering at which the contact-me NOTIFY reached it.
    notify_at: Vec<f64>,
    /// Datagrams from tether that died at the NAT for want of a mapping.
    stranded: u64,
    /// The job's JSON once finished (or as it stood after 10 s).
    job: String,
}

fn times(line: &str, key: &str) -> Vec<f64> {
    line.split(&format!("\"{key}\": ["))
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A control-API call from inside the `wan` namespace (the API listens on
/// that namespace's loopback): "status body".
fn api(ns: &Bed, method: &str, url: &str, body: Option<&str>) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/api_call.py");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns", "exec", &ns.wan, "python3", script, method, url, TOKEN,
    ]);
    if let Some(b) = body {
        cmd.arg(b);
    }
    String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
}

/// Registers through the NAT and stays silent 50 s (answering only what
/// tether sends); 42 s in, an application server posts a contact-me job.
fn scenario(tag: &str, interval_ms: u64) -> Outcome {
    // Side 0 of the bed only: one UA behind one NAT.
    let ns = Bed::new(tag);
    let server = WAN_ADDR;
    let dir = std::env::temp_dir().join(format!("tether-nat-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("tether.toml");
    std::fs::write(
        &cfg,
        format!(
            "[sip]\nlisten = [\"{server}:5060\"]\n[runtime]\nworkers = 1\n\
[keepalive]\ninterval_ms = {interval_ms}\ntimeout_ms = 2000\njitter_ms = 0\n\
[api]\nlisten = \"127.0.0.1:8080\"\nclients = [{{ name = \"as1\", token = \"{TOKEN}\" }}]\n\
[notify]\nt1_ms = 500\ntimeout_ms = 4000\n"
        ),
    )
    .unwrap();
    let _tether = Tether(
        Command::new("ip")
            .args(["netns", "exec", &ns.wan])
            .arg(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/nat_client.py");
    let ua = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.lan[0],
            "python3",
            client,
            server,
            "5060",
            &format!("ua{tag}"),
            "50",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(42));
    let posted = api(
        &ns,
        "POST",
        "http://127.0.0.1:8080/v1/notify",
        Some(&format!(
            r#"{{"targets": "ua{tag}@{server}", "kind": "contact-me", "request_id": "42",
            "application_server_addr": "{server}", "application_server_port": 8443}}"#
        )),
    );
    assert!(posted.starts_with("202 "), "job not accepted: {posted}");
    let id = posted
        .split("\"job\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let out = ua.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        line.contains("\"registered\": true"),
        "UA did not register through the NAT: {line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("http://127.0.0.1:8080/v1/notify/{id}");
    let mut job = api(&ns, "GET", &url, None);
    for _ in 0..100 {
        if !job.contains("\"status\":\"running\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        job = api(&ns, "GET", &url, None);
    }
    Outcome {
        options_at: times(&line, "options_at"),
        notify_at: times(&line, "notify_at"),
        stranded: ns.stranded(0),
        job,
    }
}

#[test]
fn keepalives_hold_a_nat_mapping_open_and_without_them_the_request_is_lost() {
    if let Some(why) = common::netns::cannot_run(&[]) {
        common::skip("nat_netns", &why);
        return;
    }
    let with = std::thread::spawn(|| scenario("k", 5_000));
    let without = std::thread::spawn(|| scenario("x", 45_000));
    let with = with.join().unwrap();
    let without = without.join().unwrap();
    assert!(
        with.options_at.iter().any(|&t| t >= 40.0),
        "with 5 s keepalives a request after 40 s of UA silence must arrive: {:?}",
        with.options_at
    );
    assert!(
        with.options_at.len() >= 8,
        "prompts every ~5 s: {:?}",
        with.options_at
    );
    assert_eq!(with.stranded, 0, "every prompt found its mapping");
    assert!(
        with.notify_at.iter().any(|&t| t >= 40.0),
        "the contact-me NOTIFY 42 s in reaches the UA: {:?} {}",
        with.notify_at,
        with.job
    );
    assert!(
        with.job.contains("\"delivered\":1"),
        "the job reports the device delivered: {}",
        with.job
    );
    assert!(
        without.options_at.is_empty() && without.notify_at.is_empty(),
        "with the first prompt at 45 s the 10 s NAT mapping is gone and the NOTIFY 42 s in is lost: {:?} {:?}",
        without.options_at,
        without.notify_at
    );
    assert!(
        without.stranded >= 1,
        "tether did send the NOTIFY; the NAT dropped it"
    );
    assert!(
        without.job.contains("\"timed_out\":1"),
        "the job reports the device timed out: {}",
        without.job
    );
}
