//! A call between two parties each behind its own NAT (seed 004 with the
//! proxy): network namespaces `lan`+`nat` per side, joined to a `wan`
//! namespace where tether runs, iptables MASQUERADE in each `nat`, UDP
//! conntrack timeouts lowered to 10 s. Both LANs are 192.168.1.0/24 with the
//! UA at 192.168.1.2:5060, so only the NAT paths tell the parties apart.
//!
//! The callee (SIPp) registers, then answers an INVITE from the caller
//! (SIPp, not registered: its path carries only the dialog), holds the call
//! 40 s and hangs up; its BYE follows tether's Record-Route to the caller.
//! With keepalive prompts every 5 s on both dialog paths the caller's
//! mapping stays open and the BYE reaches it 40 s into the call; with the
//! first prompt only after 60 s the caller's mapping dies at 10 s and the
//! BYE is dropped at its NAT. Needs root, `ip netns`, iptables and SIPp
//! (CI has them); without them it reports itself skipped, and fails under
//! `CI=true`. Namespaces and processes go even when the test fails.

mod common;

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::netns::{in_ns, Bed, UA};
use common::TempDir;

const TOKEN: &str = "nat-call-token-0123456";
const DOMAIN: &str = "tether.test";
/// tether's address in `wan`; both NATs route to it.
const TETHER: &str = "10.0.1.2:5060";
/// How long the callee holds the call before its BYE (ms).
const HOLD_MS: u64 = 40_000;

/// A child process killed (by its PID) when dropped.
struct Proc(Child);

impl Proc {
    /// Waits at most until `deadline`; `None` if it still runs.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIPp with a `nat_call_*` scenario inside side `side`'s LAN on UA:5060,
/// tracing its messages and errors to `<name>.messages` / `.errors`.
fn sipp(bed: &Bed, dir: &TempDir, side: usize, name: &str, args: &[&str]) -> Proc {
    let sf = common::scenario(&format!("nat_call_{name}.xml"));
    let file = |ext: &str| dir.0.join(format!("{name}.{ext}"));
    let mut cmd = in_ns(&bed.lan[side], &["sipp", "-sf"]);
    cmd.arg(sf)
        .args(["-i", UA, "-p", "5060", "-nostdin", "-timeout_error"])
        .args(["-key", "domain", DOMAIN])
        .arg("-trace_msg")
        .arg("-message_file")
        .arg(file("messages"))
        .arg("-trace_err")
        .arg("-error_file")
        .arg(file("errors"))
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(file("stderr")).unwrap());
    Proc(cmd.spawn().expect("sipp (apt-get install sip-tester)"))
}

/// A control-API call from inside `wan` (the API listens on its loopback):
/// "status body".
fn api(bed: &Bed, path: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/api_call.py");
    let url = format!("http://127.0.0.1:8080{path}");
    let out = in_ns(&bed.wan, &["python3", script, "GET", &url, TOKEN])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// tether's metrics (summed over its cores) at this moment.
struct Metrics(String);

impl Metrics {
    fn get(&self, name: &str) -> u64 {
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in {}", self.0))
    }
}

fn metrics(bed: &Bed) -> Metrics {
    Metrics(api(bed, "/metrics"))
}

/// The end of a log file, whole lines, at most `max` bytes.
fn tail(path: &Path, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut cut = s.len().saturating_sub(max);
    if cut == 0 {
        return s;
    }
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    let start = s[cut..].find('\n').map_or(cut, |i| cut + i + 1);
    s[start..].to_owned()
}

/// What one run showed.
struct Outcome {
    caller: Option<ExitStatus>,
    callee: Option<ExitStatus>,
    /// During the call: dialogs, paths carrying only a dialog, paths
    /// carrying a dialog and a registration.
    in_call: (u64, u64, u64),
    /// Over the call (from before the INVITE to the end): prompts sent,
    /// answered, missed.
    prompts: (u64, u64, u64),
    /// Dialogs once both UAs were done.
    dialogs_after: u64,
    /// Datagrams from tether dropped at the caller's / callee's NAT.
    stranded: [u64; 2],
    /// OPTIONS prompts that reached the caller, and whether a BYE did.
    caller_options: usize,
    caller_got_bye: bool,
    /// Whether the INVITE reached the callee with the caller's NAT address
    /// in the caller's Via (`received`/`rport`).
    callee_saw_caller_nat: bool,
    /// Every process's logs, for assertion messages.
    report: String,
}

/// One call: the callee registers and answers, the caller calls, the
/// callee hangs up after [`HOLD_MS`]. `interval_ms` is tether's keepalive
/// interval; `expect_bye` says whether to wait for the call to end
/// properly (else the UAs are stopped once the BYE's fate is known).
fn call(tag: &str, interval_ms: u64, expect_bye: bool) -> Outcome {
    let bed = Bed::new(tag);
    let dir = TempDir::new(&format!("nat-call-{tag}"));
    let cfg = dir.file(
        "tether.toml",
        &format!(
            "[sip]\nlisten = [\"{TETHER}\"]\n[runtime]\nworkers = 2\n\
[registrar]\ndomains = [\"{DOMAIN}\"]\n\
[keepalive]\ninterval_ms = {interval_ms}\ntimeout_ms = 2000\njitter_ms = 0\n\
[api]\nlisten = \"127.0.0.1:8080\"\nclients = [{{ name = \"as1\", token = \"{TOKEN}\" }}]\n"
        ),
    );
    let log = dir.0.join("tether.log");
    let _tether = Proc(
        in_ns(&bed.wan, &[env!("CARGO_BIN_EXE_tether"), "run", "--config"])
            .arg(&cfg)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    common::wait_until(10, "tether's API", || {
        api(&bed, "/healthz").starts_with("200")
    });
    let report = |dir: &TempDir| {
        let mut r = format!("\n======== tether log\n{}", tail(&log, 3000));
        for name in ["register", "callee", "caller"] {
            let f = |ext: &str| dir.0.join(format!("{name}.{ext}"));
            r.push_str(&format!(
                "\n======== sipp {name}\n-------- stderr\n{}\n-------- errors\n{}\n-------- messages\n{}\n",
                tail(&f("stderr"), 1000),
                tail(&f("errors"), 3000),
                tail(&f("messages"), 10_000)
            ));
        }
        r
    };

    // The callee registers from 5060, then its UAS takes that port over.
    let mut reg = sipp(
        &bed,
        &dir,
        1,
        "register",
        &["-m", "1", "-timeout", "15s", "-key", "user", "bob", TETHER],
    );
    let done = reg.wait_until(Instant::now() + Duration::from_secs(20));
    assert!(
        done.is_some_and(|s| s.success()),
        "the callee did not register through its NAT: {done:?}{}",
        report(&dir)
    );
    drop(reg);
    let hold = HOLD_MS.to_string();
    let limit = format!("{}s", HOLD_MS / 1000 + 40);
    let mut callee = sipp(
        &bed,
        &dir,
        1,
        "callee",
        &["-d", &hold, "-timeout", &limit, "-key", "user", "bob"],
    );
    common::wait_until(10, "the callee's UAS to listen", || bed.ua_bound(1));
    let before = metrics(&bed);

    let mut caller = sipp(
        &bed,
        &dir,
        0,
        "caller",
        &[
            "-m", "1", "-aa", "-timeout", &limit, "-key", "callee", "bob", TETHER,
        ],
    );
    let mut now = metrics(&bed);
    // The path gauges follow the dialog count within a snapshot or two.
    let up = common::wait_for(Duration::from_secs(10), || {
        now = metrics(&bed);
        [
            "tether_dialogs",
            "tether_nat_paths_dialog_only",
            "tether_nat_paths_dialog_and_registration",
        ]
        .iter()
        .all(|m| now.get(m) > 0)
    });
    assert!(
        up,
        "no dialog on both paths after the INVITE: {}{}",
        now.0,
        report(&dir)
    );
    let in_call = (
        now.get("tether_dialogs"),
        now.get("tether_nat_paths_dialog_only"),
        now.get("tether_nat_paths_dialog_and_registration"),
    );

    let deadline = Instant::now() + Duration::from_millis(HOLD_MS) + Duration::from_secs(25);
    let (caller_status, callee_status) = if expect_bye {
        (caller.wait_until(deadline), callee.wait_until(deadline))
    } else {
        // The BYE (and tether's retransmissions of it) meet a dead mapping;
        // once they did for a while, nothing more is coming.
        common::wait_for(Duration::from_millis(HOLD_MS + 20_000), || {
            bed.stranded(0) >= 3
        });
        (
            caller.wait_until(Instant::now()),
            callee.wait_until(Instant::now()),
        )
    };
    let mut after = metrics(&bed);
    if expect_bye {
        common::wait_for(Duration::from_secs(5), || {
            after = metrics(&bed);
            after.get("tether_dialogs") == 0
        });
    }
    let delta = |m: &str| after.get(m) - before.get(m);
    let caller_trace = std::fs::read_to_string(dir.0.join("caller.messages")).unwrap_or_default();
    Outcome {
        caller: caller_status,
        callee: callee_status,
        in_call,
        prompts: (
            delta("tether_keepalive_prompts_total"),
            delta("tether_keepalive_answered_total"),
            delta("tether_keepalive_missed_total"),
        ),
        dialogs_after: after.get("tether_dialogs"),
        stranded: [bed.stranded(0), bed.stranded(1)],
        caller_options: caller_trace
            .lines()
            .filter(|l| l.starts_with("OPTIONS sip:"))
            .count(),
        caller_got_bye: caller_trace.lines().any(|l| l.starts_with("BYE sip:")),
        callee_saw_caller_nat: std::fs::read_to_string(dir.0.join("callee.messages"))
            .unwrap_or_default()
            .contains("received=10.0.1.1;rport="),
        report: report(&dir),
    }
}

#[test]
fn dialog_keepalives_carry_the_callee_bye_to_a_natted_caller_40_s_into_the_call() {
    if let Some(why) = common::netns::cannot_run(&[("sipp", &["-v"])]) {
        common::skip("nat_call", &why);
        return;
    }
    let with = std::thread::spawn(|| call("k", 5_000, true));
    let without = std::thread::spawn(|| call("x", 60_000, false));
    let with = with.join().unwrap();
    let without = without.join().unwrap();

    let r = &with.report;
    assert!(
        with.caller.is_some_and(|s| s.success()) && with.callee.is_some_and(|s| s.success()),
        "with 5 s keepalives both UAs finish the call: caller {:?}, callee {:?}{r}",
        with.caller,
        with.callee
    );
    assert_eq!(
        with.in_call,
        (1, 1, 1),
        "in the call: one dialog, the caller's path carrying only it, the callee's \
         carrying it and the registration{r}"
    );
    assert!(
        with.caller_options >= 4,
        "tether prompted the caller's dialog-only path through the call: {} OPTIONS{r}",
        with.caller_options
    );
    let (sent, answered, missed) = with.prompts;
    assert!(
        answered >= 8 && missed == 0,
        "both paths were prompted through the call and answered every time: \
         sent {sent}, answered {answered}, missed {missed}{r}"
    );
    assert!(
        with.callee_saw_caller_nat,
        "tether stamps the caller's Via with its NAT address{r}"
    );
    assert_eq!(with.dialogs_after, 0, "the BYE ended the dialog{r}");
    assert_eq!(with.stranded, [0, 0], "every datagram found its mapping{r}");

    let r = &without.report;
    assert_eq!(
        without.in_call,
        (1, 1, 1),
        "without prompts too the call was set up{r}"
    );
    assert!(
        !without.caller_got_bye && without.caller_options == 0,
        "with the first prompt after 60 s the caller's mapping is gone and the BYE \
         40 s in is lost{r}"
    );
    assert!(
        without.stranded[0] >= 1,
        "tether did send the BYE; the caller's NAT dropped it{r}"
    );
}
