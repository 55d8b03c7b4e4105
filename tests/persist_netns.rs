//! A restart behind a real NAT (the bed of tests/common/netns.rs, conntrack
//! UDP timeouts 10 s): a UA in `lan` registers through the NAT with tether
//! persisting, then originates nothing. tether is killed with SIGKILL 2 s
//! later and started again on the same directory. The restored binding's
//! path is prompted within one keepalive interval, the UA's answers keep
//! its mapping open, and a contact-me job posted 15 s in (past the 10 s a
//! mapping lives unused) reaches the UA: without it re-registering. Needs
//! root and `ip netns`; without them it reports itself skipped, and fails
//! under `CI=true`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::{Bed, WAN_ADDR};

const TOKEN: &str = "persist-nat-token-01234";

struct Tether(Child);

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(ns: &Bed, cfg: &std::path::Path) -> Tether {
    // `ip netns exec` execs tether: the child's pid is tether's.
    Tether(
        Command::new("ip")
            .args(["netns", "exec", &ns.wan])
            .arg(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

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

fn times(line: &str, key: &str) -> Vec<f64> {
    line.split(&format!("\"{key}\": ["))
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or("")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[test]
fn a_device_restored_after_a_crash_is_prompted_and_reached_without_registering_again() {
    if let Some(why) = common::netns::cannot_run(&[]) {
        common::skip("persist_netns", &why);
        return;
    }
    let ns = Bed::new("p");
    let server = WAN_ADDR;
    let dir = common::TempDir::new("persist-nat");
    let state = dir.0.join("state");
    let cfg = dir.file(
        "tether.toml",
        &format!(
            "[sip]\nlisten = [\"{server}:5060\"]\n[runtime]\nworkers = 1\n\
[keepalive]\ninterval_ms = 5000\ntimeout_ms = 2000\njitter_ms = 0\n\
[api]\nlisten = \"127.0.0.1:8080\"\nclients = [{{ name = \"as1\", token = \"{TOKEN}\" }}]\n\
[notify]\nt1_ms = 500\ntimeout_ms = 4000\n\
[persist]\nenabled = true\ndir = \"{}\"\nfsync_ms = 100\n",
            state.display()
        ),
    );
    let mut tether = start(&ns, &cfg);
    std::thread::sleep(Duration::from_millis(500));
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/nat_client.py");
    let ua = Command::new("ip")
        .args([
            "netns", "exec", &ns.lan[0], "python3", client, server, "5060", "uap", "22",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let registered = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    // The crash: nothing written after this.
    tether.0.kill().unwrap();
    tether.0.wait().unwrap();
    let _tether = start(&ns, &cfg);
    let restarted = registered.elapsed().as_secs_f64();
    // Past the NAT's 10 s: only the restored keepalive holds the mapping.
    std::thread::sleep(Duration::from_secs(15).saturating_sub(registered.elapsed()));
    let posted = api(
        &ns,
        "POST",
        "http://127.0.0.1:8080/v1/notify",
        Some(&format!(
            r#"{{"targets": "uap@{server}", "kind": "contact-me", "request_id": "7",
            "application_server_addr": "{server}", "application_server_port": 8443}}"#
        )),
    );
    assert!(posted.starts_with("202 "), "job not accepted: {posted}");
    let out = ua.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        line.contains("\"registered\": true"),
        "UA did not register through the NAT: {line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let options = times(&line, "options_at");
    let notify = times(&line, "notify_at");
    assert!(
        options.iter().any(|&t| t > restarted - 0.5 && t < restarted + 6.0),
        "the restored path is prompted within one interval of the restart ({restarted:.1} s): {options:?}"
    );
    assert!(
        notify.iter().any(|&t| t >= 14.0),
        "the contact-me NOTIFY 15 s in reaches the restored device: {notify:?}"
    );
    assert_eq!(ns.stranded(0), 0, "nothing tether sent died at the NAT");
}
