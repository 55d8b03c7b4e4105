//! tether's upstream is a real carrier core: Kamailio (Debian `kamailio`)
//! with tests/fixtures/kamailio/upstream.cfg, a stateful proxy that
//! Record-Routes and relays every request to a SIPp UAS (the far end).
//!
//! A SIPp device registers to tether (`registrar.domains = ["tether.test"]`),
//! then, from the same port (the registered NAT path tether lets out), calls
//! `sip:service@carrier.test`, a domain tether does not serve: the call goes
//! tether → Kamailio → SIPp UAS, the ACK and the BYE follow both
//! Record-Routes back. The second test puts a SIPp UAS answering 503 as the
//! primary upstream and Kamailio as the fallback.
//!
//! Each test has loopback addresses of its own (127.0.0.5x) so they run in
//! parallel with each other and with the tests on 127.0.0.1. Every process
//! is bounded (SIPp `-m`, `-timeout`; Kamailio ended by PID on drop) and
//! traces its messages; a failure shows every peer's errors and SIP trace.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kamailio::{self, udp_bound, Peer};
use common::{free_udp_port, wait_until, TempDir};
use tether::metrics::CoreMetric;
use tether::runtime::Runtime;

/// The domain tether serves; the device's AOR lives there.
const DOMAIN: &str = "tether.test";
/// The carrier's domain, which tether sends upstream.
const CARRIER: &str = "carrier.test";

/// Whether SIPp and Kamailio are here; if not, reports the test skipped
/// (a failure under CI).
fn have_peers(test: &str) -> bool {
    common::have_tools(
        test,
        &[("sipp", "-v", "sip-tester"), ("kamailio", "-v", "kamailio")],
    )
}

/// Kamailio on `listen`, relaying to the UAS at `uas`.
fn kamailio(dir: &TempDir, name: &str, listen: SocketAddr, uas: SocketAddr) -> Peer {
    kamailio::start(
        dir,
        name,
        "upstream.cfg",
        listen,
        &[("UAS", &format!("sip:{uas}"))],
    )
}

/// SIPp running tests/sipp/`scenario` bound to `local` for one call,
/// tracing every message; `target` for a client.
fn sipp(
    dir: &TempDir,
    name: &str,
    scenario: &str,
    local: SocketAddr,
    target: Option<SocketAddr>,
    keys: &[(&str, &str)],
    extra: &[&str],
) -> Peer {
    let file = |ext: &str| dir.0.join(format!("{name}.{ext}"));
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(common::scenario(scenario))
        .args(["-m", "1", "-bind_local"])
        .args(["-i", &local.ip().to_string()])
        .args(["-p", &local.port().to_string()])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .args(["-trace_msg", "-message_file"])
        .arg(file("messages"))
        .args(["-trace_err", "-error_file"])
        .arg(file("errors"));
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    cmd.args(extra);
    if let Some(t) = target {
        cmd.arg(t.to_string());
    }
    let log = file("log");
    let child = cmd
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("sipp is installed by scripts/test.sh (apt-get install sip-tester)");
    Peer {
        name: name.into(),
        child,
        log,
    }
}

/// Every peer's log, errors and SIP trace, for a failure message.
fn report(dir: &TempDir, peers: &[&Peer]) -> String {
    let mut s = String::new();
    for p in peers {
        let read = |ext: &str| {
            std::fs::read_to_string(dir.0.join(format!("{}.{ext}", p.name))).unwrap_or_default()
        };
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        let tail: String = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        s.push_str(&format!(
            "\n===== {} log (tail)\n{tail}\n===== {} errors\n{}\n===== {} messages\n{}\n",
            p.name,
            p.name,
            read("errors"),
            p.name,
            read("messages")
        ));
    }
    s
}

/// Sum of one metric over tether's cores (published about once a second).
fn metric(rt: &Runtime, m: CoreMetric) -> u64 {
    rt.control().metrics.iter().map(|c| c.get(m as usize)).sum()
}

/// tether serving `tether.test`, with `upstream` as its upstream list.
/// Keepalive prompts off: an OPTIONS to the SIPp device between its two
/// runs (or during the call) is nothing its scenario expects.
fn tether(upstream: &[SocketAddr]) -> (Runtime, SocketAddr) {
    let list: Vec<String> = upstream.iter().map(|a| format!("\"{a}\"")).collect();
    common::start(&format!(
        "[registrar]\ndomains = [\"{DOMAIN}\"]\n[keepalive]\ninterval_ms = 0\n\
[proxy]\nupstream = [{}]\n",
        list.join(", ")
    ))
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Registers a SIPp device `dev@tether.test` from `device`, then calls the
/// carrier from there; asserts that the SIPp `servers` (already listening)
/// and the caller succeed, and that tether's dialog opened and closed.
/// `bed` are the other peers, shown when something fails.
fn register_and_call(
    rt: &Runtime,
    tether_addr: SocketAddr,
    dir: &TempDir,
    device: SocketAddr,
    bed: &[&Peer],
    mut servers: Vec<Peer>,
) {
    let mut reg = sipp(
        dir,
        "register",
        "upstream_register.xml",
        device,
        Some(tether_addr),
        &[("user", "dev"), ("domain", DOMAIN)],
        &[],
    );
    let code = reg.wait(20);
    let all = |servers: &[Peer], extra: &Peer| {
        let mut v: Vec<&Peer> = bed.to_vec();
        v.extend(servers.iter());
        v.push(extra);
        report(dir, &v)
    };
    assert_eq!(
        code,
        Some(0),
        "the device's REGISTER failed{}",
        all(&servers, &reg)
    );
    assert_eq!(rt.directory().lookup(&format!("dev@{DOMAIN}"), 0).len(), 1);

    // The call is held 1.5 s: time for the dialog gauge to be published.
    let mut call = sipp(
        dir,
        "call",
        "upstream_call.xml",
        device,
        Some(tether_addr),
        &[
            ("user", "dev"),
            ("domain", DOMAIN),
            ("callee", "service"),
            ("callee_domain", CARRIER),
        ],
        &["-d", "1500"],
    );
    let opened = common::wait_for(Duration::from_secs(10), || {
        metric(rt, CoreMetric::Dialogs) == 1
    });
    let mut codes = vec![("call".to_string(), call.wait(30))];
    for s in servers.iter_mut() {
        codes.push((s.name.clone(), s.wait(10)));
    }
    assert!(
        codes.iter().all(|(_, c)| *c == Some(0)),
        "SIPp exit codes {codes:?}{}",
        all(&servers, &call)
    );
    assert!(
        opened,
        "tether's dialog gauge never showed the call{}",
        all(&servers, &call)
    );
    wait_until(5, "tether's dialog gauge back to 0 after the BYE", || {
        metric(rt, CoreMetric::Dialogs) == 0
    });
    assert_eq!(metric(rt, CoreMetric::CallsAnswered), 1);
    assert_eq!(metric(rt, CoreMetric::ProxyRefused), 0);
}

#[test]
fn a_device_calls_the_carrier_through_kamailio() {
    if !have_peers("a_device_calls_the_carrier_through_kamailio") {
        return;
    }
    let dir = TempDir::new("kam-upstream");
    let kam_addr = addr("127.0.0.51:5080");
    let uas_addr = addr("127.0.0.52:5080");
    let device = SocketAddr::new("127.0.0.53".parse().unwrap(), free_udp_port());
    let uas = sipp(&dir, "uas", "upstream_uas.xml", uas_addr, None, &[], &[]);
    let kam = kamailio(&dir, "kamailio", kam_addr, uas_addr);
    let (rt, tether_addr) = tether(&[kam_addr]);
    wait_until(10, "Kamailio and the UAS listening", || {
        udp_bound(kam_addr) && udp_bound(uas_addr)
    });
    register_and_call(&rt, tether_addr, &dir, device, &[&kam], vec![uas]);
    // The call went upstream once: no fallback was needed.
    assert_eq!(metric(&rt, CoreMetric::CallsFailed5xx), 0);
    drop(kam);
    rt.shutdown().unwrap();
}

#[test]
fn a_503_from_the_primary_upstream_falls_back_to_kamailio() {
    if !have_peers("a_503_from_the_primary_upstream_falls_back_to_kamailio") {
        return;
    }
    let dir = TempDir::new("kam-fallback");
    let primary = addr("127.0.0.57:5080");
    let kam_addr = addr("127.0.0.55:5080");
    let uas_addr = addr("127.0.0.56:5080");
    let device = SocketAddr::new("127.0.0.58".parse().unwrap(), free_udp_port());
    let uas = sipp(&dir, "uas", "upstream_uas.xml", uas_addr, None, &[], &[]);
    let down = sipp(
        &dir,
        "primary",
        "upstream_uas_503.xml",
        primary,
        None,
        &[],
        &[],
    );
    let kam = kamailio(&dir, "kamailio", kam_addr, uas_addr);
    let (rt, tether_addr) = tether(&[primary, kam_addr]);
    wait_until(10, "Kamailio and both UASes listening", || {
        udp_bound(kam_addr) && udp_bound(uas_addr) && udp_bound(primary)
    });
    register_and_call(&rt, tether_addr, &dir, device, &[&kam], vec![down, uas]);
    // The primary's 503 was not the call's answer: nothing failed.
    assert_eq!(metric(&rt, CoreMetric::CallsFailed5xx), 0);
    drop(kam);
    rt.shutdown().unwrap();
}
