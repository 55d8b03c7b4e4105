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
//! Namespaces are removed even when the test fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Netns {
    names: [String; 3],
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Builds lan/nat/wan with subnets 10.<net>.1.0/24 (lan side) and
    /// 10.<net>.2.0/24 (wan side); the addresses exist only in the namespaces.
    fn new(tag: &str, net: u8) -> Netns {
        let id = std::process::id();
        let names = [
            format!("tl{id}{tag}"),
            format!("tn{id}{tag}"),
            format!("tw{id}{tag}"),
        ];
        let ns = Netns { names };
        let [lan, nat, wan] = [&ns.names[0], &ns.names[1], &ns.names[2]];
        for n in [lan, nat, wan] {
            sh(&["ip", "netns", "add", n]);
        }
        let (l0, nl, nw, w0) = (
            format!("l{id}{tag}"),
            format!("nl{id}{tag}"),
            format!("nw{id}{tag}"),
            format!("w{id}{tag}"),
        );
        sh(&[
            "ip", "link", "add", &l0, "netns", lan, "type", "veth", "peer", "name", &nl, "netns",
            nat,
        ]);
        sh(&[
            "ip", "link", "add", &w0, "netns", wan, "type", "veth", "peer", "name", &nw, "netns",
            nat,
        ]);
        let a = |h: u8, side: u8| format!("10.{net}.{side}.{h}/24");
        sh(&["ip", "-n", lan, "addr", "add", &a(2, 1), "dev", &l0]);
        sh(&["ip", "-n", nat, "addr", "add", &a(1, 1), "dev", &nl]);
        sh(&["ip", "-n", nat, "addr", "add", &a(1, 2), "dev", &nw]);
        sh(&["ip", "-n", wan, "addr", "add", &a(2, 2), "dev", &w0]);
        for (n, dev) in [(lan, &l0), (nat, &nl), (nat, &nw), (wan, &w0)] {
            sh(&["ip", "-n", n, "link", "set", dev, "up"]);
        }
        for n in [lan, nat, wan] {
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "-n",
            lan,
            "route",
            "add",
            "default",
            "via",
            &format!("10.{net}.1.1"),
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            nat,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            nat,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            &format!("10.{net}.1.0/24"),
            "-o",
            &nw,
            "-j",
            "MASQUERADE",
        ]);
        // Counts datagrams from tether that the NAT could not translate (no
        // mapping left), so the test can tell "lost at the NAT" from "never sent".
        sh(&[
            "ip", "netns", "exec", nat, "iptables", "-I", "INPUT", "-i", &nw, "-p", "udp",
            "--sport", "5060", "-j", "ACCEPT",
        ]);
        // The conntrack sysctls appear in the namespace once NAT is in use.
        sh(&[
            "ip",
            "netns",
            "exec",
            nat,
            "sysctl",
            "-qw",
            "net.netfilter.nf_conntrack_udp_timeout=10",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            nat,
            "sysctl",
            "-qw",
            "net.netfilter.nf_conntrack_udp_timeout_stream=10",
        ]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Netns {
    /// Datagrams from tether that reached the NAT box itself: untranslatable.
    fn stranded(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.names[1],
                "iptables",
                "-L",
                "INPUT",
                "-v",
                "-x",
                "-n",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("spt:5060"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

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
fn api(ns: &Netns, method: &str, url: &str, body: Option<&str>) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/api_call.py");
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        &ns.names[2],
        "python3",
        script,
        method,
        url,
        TOKEN,
    ]);
    if let Some(b) = body {
        cmd.arg(b);
    }
    String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
}

/// Registers through the NAT and stays silent 50 s (answering only what
/// tether sends); 42 s in, an application server posts a contact-me job.
fn scenario(tag: &str, net: u8, interval_ms: u64) -> Outcome {
    let ns = Netns::new(tag, net);
    let server = format!("10.{net}.2.2");
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
            .args(["netns", "exec", &ns.names[2]])
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
            &ns.names[0],
            "python3",
            client,
            &server,
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
        stranded: ns.stranded(),
        job,
    }
}

/// Why this machine cannot build the test bed, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    for (tool, args) in [
        ("ip", &["netns", "list"][..]),
        ("iptables", &["--version"][..]),
        ("python3", &["--version"][..]),
    ] {
        match Command::new(tool).args(args).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Some(format!(
                    "`{tool} {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Some(format!("`{tool}` unavailable: {e}")),
        }
    }
    None
}

#[test]
fn keepalives_hold_a_nat_mapping_open_and_without_them_the_request_is_lost() {
    if let Some(why) = cannot_run() {
        common::skip("nat_netns", &why);
        return;
    }
    let net = 200 + (std::process::id() % 50) as u8;
    let with = std::thread::spawn(move || scenario("k", net, 5_000));
    let without = std::thread::spawn(move || scenario("x", net + 1, 45_000));
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
