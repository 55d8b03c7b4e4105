//! The proxy against real peers: SIPp (Debian `sip-tester`) callers and
//! callees over loopback, tether in-process as the registrar and stateful
//! proxy between them.
//!
//! A callee registers with one SIPp process (`proxy/register.xml`) from the
//! port its UAS then listens on, so tether reaches it at the address the
//! REGISTER came from; the test waits until the directory holds the binding
//! and the UAS has bound its port before it starts the caller. Every SIPp
//! run is bounded (`-m`, `-timeout` with `-timeout_error`) and traces its
//! messages; a failure shows every peer's errors and SIP trace.
//!
//! `scenarios_work_peer_to_peer_without_tether` runs the same scenarios
//! caller to callee directly, so a failure elsewhere is tether's, not the
//! XML's.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_udp_port, scenario, start, wait_until, TempDir};
use tether::runtime::Runtime;

/// The domain tether serves in these tests (`registrar.domains`).
const DOMAIN: &str = "tether.test";

/// Keepalive prompts off: an OPTIONS to a SIPp callee would be an
/// unexpected message that fails its call.
fn tether() -> (Runtime, SocketAddr) {
    start(&format!(
        "[registrar]\ndomains = [\"{DOMAIN}\"]\n[keepalive]\ninterval_ms = 0\n"
    ))
}

/// Whether SIPp is here; if not, reports the test skipped (a failure under CI).
fn have_sipp(test: &str) -> bool {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        common::skip(test, "sipp is not installed (apt-get install sip-tester)");
    }
    ok
}

/// One SIPp process of a test.
struct Peer {
    name: String,
    child: Child,
}

/// How to run one SIPp process.
struct Run<'a> {
    /// Names its log files; unique within a test.
    name: &'a str,
    /// Under tests/sipp/proxy/, or an absolute path.
    scenario: &'a str,
    /// Local UDP port on 127.0.0.1.
    port: u16,
    /// Calls (`-m`): a client places this many, a server ends after this many.
    calls: usize,
    /// Where a client sends; `None` for a server.
    target: Option<SocketAddr>,
    /// `-key` keywords the scenario uses.
    keys: &'a [(&'a str, &'a str)],
    /// More arguments (`-d`, `-r`, `-l`).
    extra: &'a [&'a str],
    /// Trace every message (off for load runs).
    trace: bool,
}

impl Run<'_> {
    fn spawn(&self, dir: &TempDir) -> Peer {
        let file = |ext: &str| dir.0.join(format!("{}.{ext}", self.name));
        let mut cmd = Command::new("sipp");
        let sf = if self.scenario.starts_with('/') {
            PathBuf::from(self.scenario)
        } else {
            scenario(&format!("proxy/{}", self.scenario))
        };
        cmd.arg("-sf")
            .arg(sf)
            .args(["-m", &self.calls.to_string()])
            .args(["-i", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file"])
            .arg(file("errors"));
        if self.trace {
            cmd.args(["-trace_msg", "-message_file"])
                .arg(file("messages"));
        }
        for (k, v) in self.keys {
            cmd.args(["-key", k, v]);
        }
        cmd.args(self.extra);
        if let Some(t) = self.target {
            cmd.arg(t.to_string());
        }
        let stderr = std::fs::File::create(file("stderr")).unwrap();
        let child = cmd
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("sipp is installed by .ci/run (apt-get install sip-tester)");
        Peer {
            name: self.name.to_owned(),
            child,
        }
    }
}

/// The start of a log file, at most `max` bytes: the first error is the
/// one that explains the rest.
fn head(path: PathBuf, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}\n[... {} more bytes ...]", &s[..end], s.len() - end)
}

/// The end of a log file, at most `max` bytes (whole lines).
fn tail(path: PathBuf, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    if s.len() <= max {
        return s;
    }
    let cut = (s.len() - max..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    let start = s[cut..].find('\n').map_or(cut, |i| cut + i + 1);
    format!("[... {start} bytes ...]\n{}", &s[start..])
}

/// Waits (at most `secs` in all) for every peer; if any did not exit 0,
/// fails with every peer's status, errors and SIP trace, so that what
/// tether did is in the message. Once one peer has failed the others get
/// 3 s more (to log what they saw) and are then killed.
fn finish(dir: &TempDir, mut peers: Vec<Peer>, secs: u64) {
    let mut deadline = Instant::now() + Duration::from_secs(secs);
    let mut status: Vec<Option<std::process::ExitStatus>> = vec![None; peers.len()];
    while status.iter().any(Option::is_none) && Instant::now() < deadline {
        for (p, s) in peers.iter_mut().zip(status.iter_mut()) {
            if s.is_none() {
                *s = p.child.try_wait().unwrap();
                if s.is_some_and(|s| !s.success()) {
                    deadline = deadline.min(Instant::now() + Duration::from_secs(3));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut report = String::new();
    let mut failed = false;
    for (mut p, status) in peers.into_iter().zip(status) {
        if status.is_none() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let ok = status.is_some_and(|s| s.success());
        failed |= !ok;
        let file = |ext: &str| dir.0.join(format!("{}.{ext}", p.name));
        report.push_str(&format!(
            "\n======== sipp {}: {}\n-------- stderr\n{}\n-------- errors\n{}\n-------- messages\n{}\n",
            p.name,
            status.map_or("still running (killed)".to_owned(), |s| s.to_string()),
            tail(file("stderr"), 1_000),
            head(file("errors"), 4_000),
            tail(file("messages"), 12_000),
        ));
    }
    assert!(!failed, "a SIPp peer failed{report}");
}

/// Keys every call scenario takes.
fn call_keys(callee: &str) -> [(&str, &str); 2] {
    [("callee", callee), ("domain", DOMAIN)]
}

/// Whether something is bound to 127.0.0.1:`port` (UDP), read from
/// /proc/net/udp so the probe cannot take the port itself.
fn udp_bound(port: u16) -> bool {
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| want.iter().any(|w| w == a))
        })
}

/// Starts a SIPp server on `run.port` and waits until it listens (or
/// fails with its output if it exits first).
fn serve(dir: &TempDir, run: Run<'_>) -> Peer {
    assert!(run.target.is_none());
    let (port, name) = (run.port, run.name.to_owned());
    let mut peer = run.spawn(dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !udp_bound(port) {
        if peer.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            finish(dir, vec![peer], 0);
            panic!("sipp server {name} did not listen on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    peer
}

/// Registers `callee`@[`DOMAIN`] from 127.0.0.1:`port` with Contact port
/// `contact_port` and waits until tether's directory holds `bindings` of it.
fn register(
    dir: &TempDir,
    rt: &Runtime,
    tether: SocketAddr,
    callee: &str,
    port: u16,
    contact_port: u16,
    bindings: usize,
) {
    let name = format!("register-{callee}-{port}");
    let cport = contact_port.to_string();
    let peer = Run {
        name: &name,
        scenario: "register.xml",
        port,
        calls: 1,
        target: Some(tether),
        keys: &[
            ("callee", callee),
            ("domain", DOMAIN),
            ("contact_port", &cport),
        ],
        extra: &[],
        trace: true,
    }
    .spawn(dir);
    finish(dir, vec![peer], 30);
    let aor = format!("{callee}@{DOMAIN}");
    wait_until(10, &format!("{bindings} binding(s) of {aor}"), || {
        rt.directory().lookup(&aor, 0).len() == bindings
    });
}

/// A callee `user` registered from its own port (named in its Contact too)
/// and then running `uas` there; its logs are `callee-<uas>.*`.
fn callee(
    dir: &TempDir,
    rt: &Runtime,
    tether: SocketAddr,
    user: &str,
    uas: &str,
    extra: &[&str],
    bindings: usize,
) -> Peer {
    let port = free_udp_port();
    register(dir, rt, tether, user, port, port, bindings);
    let name = format!("callee-{}", uas.trim_end_matches(".xml"));
    serve(
        dir,
        Run {
            name: &name,
            scenario: uas,
            port,
            calls: 1,
            target: None,
            keys: &call_keys(user),
            extra,
            trace: true,
        },
    )
}

/// A caller running `uac` once against `target`.
fn caller(
    dir: &TempDir,
    uac: &str,
    target: SocketAddr,
    keys: &[(&str, &str)],
    extra: &[&str],
) -> Peer {
    Run {
        name: "caller",
        scenario: uac,
        port: free_udp_port(),
        calls: 1,
        target: Some(target),
        keys,
        extra,
        trace: true,
    }
    .spawn(dir)
}

/// A callee running `uas` and a caller running `uac`, through tether.
fn call_through_tether(tag: &str, uas: &str, uac: &str, uac_extra: &[&str]) {
    let (rt, addr) = tether();
    let dir = TempDir::new(tag);
    let uas = callee(&dir, &rt, addr, "bob", uas, &[], 1);
    let uac = caller(&dir, uac, addr, &call_keys("bob"), uac_extra);
    finish(&dir, vec![uac, uas], 60);
    rt.shutdown().unwrap();
}

/// Case 1: INVITE → 100 → 180 → 200 → ACK and BYE along the Record-Route.
#[test]
fn basic_call_caller_hangs_up() {
    if !have_sipp("basic_call_caller_hangs_up") {
        return;
    }
    call_through_tether("px-call", "uas_answer.xml", "uac_call.xml", &["-d", "200"]);
}

/// Case 2: The callee sends the BYE, with the route set it learnt.
#[test]
fn callee_hangs_up() {
    if !have_sipp("callee_hangs_up") {
        return;
    }
    call_through_tether("px-bye", "uas_hangup.xml", "uac_called_back.xml", &[]);
}

/// Case 3: CANCEL while it rings: 200 for the CANCEL and 487 for the INVITE on
/// both sides, and the callee gets its ACK.
#[test]
fn cancel_while_ringing() {
    if !have_sipp("cancel_while_ringing") {
        return;
    }
    call_through_tether("px-cancel", "uas_cancelled.xml", "uac_cancel.xml", &[]);
}

/// Case 4: 486 reaches the caller, whose ACK tether absorbs; tether ACKs the
/// callee itself.
#[test]
fn busy_callee() {
    if !have_sipp("busy_callee") {
        return;
    }
    call_through_tether("px-busy", "uas_busy.xml", "uac_busy.xml", &[]);
}

/// Case 5: Two bindings of one AOR: one rings and answers after 500 ms, the
/// other only rings and must be CANCELled once the first answers.
#[test]
fn forking_cancels_the_branch_that_did_not_answer() {
    if !have_sipp("forking_cancels_the_branch_that_did_not_answer") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-fork");
    let answers = callee(
        &dir,
        &rt,
        addr,
        "carol",
        "uas_answer.xml",
        &["-d", "500"],
        1,
    );
    let rings = callee(&dir, &rt, addr, "carol", "uas_cancelled.xml", &[], 2);
    let uac = caller(
        &dir,
        "uac_call.xml",
        addr,
        &call_keys("carol"),
        &["-d", "200"],
    );
    finish(&dir, vec![uac, answers, rings], 60);
    rt.shutdown().unwrap();
}

/// Case 6: The Contact names a port nothing listens on; the call still arrives,
/// at the address the REGISTER came from.
#[test]
fn call_reaches_the_registering_address_not_the_contact_port() {
    if !have_sipp("call_reaches_the_registering_address_not_the_contact_port") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-nat");
    let port = free_udp_port();
    let mut contact_port = free_udp_port();
    while contact_port == port {
        contact_port = free_udp_port();
    }
    register(&dir, &rt, addr, "dave", port, contact_port, 1);
    let c = &rt.directory().lookup(&format!("dave@{DOMAIN}"), 0)[0];
    assert!(
        c.contact.ends_with(&format!(":{contact_port}>"))
            || c.contact.ends_with(&format!(":{contact_port}")),
        "{}",
        c.contact
    );
    let uas = serve(
        &dir,
        Run {
            name: "callee",
            scenario: "uas_answer.xml",
            port,
            calls: 1,
            target: None,
            keys: &call_keys("dave"),
            extra: &[],
            trace: true,
        },
    );
    let uac = caller(&dir, "uac_call.xml", addr, &call_keys("dave"), &[]);
    finish(&dir, vec![uac, uas], 60);
    rt.shutdown().unwrap();
}

/// Case 7: Max-Forwards: 0 gets 483 (the callee is registered, but at a port
/// nothing listens on: a forwarded INVITE would not be answered).
#[test]
fn max_forwards_zero_gets_483() {
    if !have_sipp("max_forwards_zero_gets_483") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-483");
    register(&dir, &rt, addr, "bob", free_udp_port(), free_udp_port(), 1);
    let uac = caller(&dir, "invite_483.xml", addr, &call_keys("bob"), &[]);
    finish(&dir, vec![uac], 40);
    rt.shutdown().unwrap();
}

/// Case 8: 2,000 calls at 200 per second, every one completed on both sides.
#[test]
fn two_thousand_calls_at_200_per_second_none_failed() {
    if !have_sipp("two_thousand_calls_at_200_per_second_none_failed") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-load");
    let port = free_udp_port();
    register(&dir, &rt, addr, "load", port, port, 1);
    let uas = serve(
        &dir,
        Run {
            name: "callee",
            scenario: "uas_answer.xml",
            port,
            calls: 2_000,
            target: None,
            keys: &call_keys("load"),
            extra: &["-l", "4000"],
            trace: false,
        },
    );
    let uac = Run {
        name: "caller",
        scenario: "uac_call.xml",
        port: free_udp_port(),
        calls: 2_000,
        target: Some(addr),
        keys: &call_keys("load"),
        // Held 100 ms: about 20 calls up at a time.
        extra: &["-r", "200", "-rp", "1000", "-l", "4000", "-d", "100"],
        trace: false,
    }
    .spawn(&dir);
    finish(&dir, vec![uac, uas], 90);
    rt.shutdown().unwrap();
}

/// Case 9a: An unknown extension in Proxy-Require gets 420 naming it.
#[test]
fn proxy_require_unknown_gets_420() {
    if !have_sipp("proxy_require_unknown_gets_420") {
        return;
    }
    rejected(
        "px-420p",
        "invite_420.xml",
        &[("ext_header", "Proxy-Require")],
    );
}

/// Case 9b: Require is for the callee (RFC 3261 §16.3: a proxy passes it
/// on): the callee's 420 naming the unknown extension reaches the caller.
#[test]
fn require_unknown_gets_the_callees_420() {
    if !have_sipp("require_unknown_gets_the_callees_420") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-420r");
    let uas = callee(&dir, &rt, addr, "bob", "uas_bad_extension.xml", &[], 1);
    let mut keys = call_keys("bob").to_vec();
    keys.push(("ext_header", "Require"));
    let uac = caller(&dir, "invite_420.xml", addr, &keys, &[]);
    finish(&dir, vec![uac, uas], 40);
    rt.shutdown().unwrap();
}

/// Case 9c: A Request-URI scheme tether does not route gets 416. (`tel:`
/// is routed: upstream, for the trusted core and registered devices.)
#[test]
fn mailto_and_http_request_uris_get_416() {
    if !have_sipp("mailto_and_http_request_uris_get_416") {
        return;
    }
    rejected(
        "px-416h",
        "invite_416.xml",
        &[("target_uri", "http://tether.test/bob")],
    );
    rejected(
        "px-416m",
        "invite_416.xml",
        &[("target_uri", "mailto:bob@tether.test")],
    );
}

/// Case 9d: An INVITE to a user with no binding gets 404.
#[test]
fn unregistered_user_gets_404() {
    if !have_sipp("unregistered_user_gets_404") {
        return;
    }
    rejected("px-404", "invite_404.xml", &[]);
}

/// Case 9e: A BYE whose To tag matches no dialog gets 481.
#[test]
fn bye_outside_a_dialog_gets_481() {
    if !have_sipp("bye_outside_a_dialog_gets_481") {
        return;
    }
    rejected("px-481", "bye_481.xml", &[]);
}

/// Runs a rejection scenario for `nobody`@[`DOMAIN`] (never registered)
/// against a fresh tether.
fn rejected(tag: &str, uac: &str, more_keys: &[(&str, &str)]) {
    let (rt, addr) = tether();
    let dir = TempDir::new(tag);
    let mut keys = call_keys("nobody").to_vec();
    keys.extend_from_slice(more_keys);
    let peer = caller(&dir, uac, addr, &keys, &[]);
    finish(&dir, vec![peer], 40);
    rt.shutdown().unwrap();
}

/// Every caller/callee pair above, caller straight to callee (no tether),
/// and the rejections against a SIPp stand-in answering what tether should:
/// the scenarios themselves are right, whatever tether does.
#[test]
fn scenarios_work_peer_to_peer_without_tether() {
    if !have_sipp("scenarios_work_peer_to_peer_without_tether") {
        return;
    }
    let dir = TempDir::new("px-p2p");
    let keys = [
        ("callee", "bob"),
        ("domain", DOMAIN),
        ("ext_header", "Require"),
    ];
    let pairs: [(&str, &str, &[&str]); 5] = [
        ("uas_answer.xml", "uac_call.xml", &["-d", "100"]),
        ("uas_hangup.xml", "uac_called_back.xml", &[]),
        ("uas_cancelled.xml", "uac_cancel.xml", &[]),
        ("uas_busy.xml", "uac_busy.xml", &[]),
        ("uas_bad_extension.xml", "invite_420.xml", &[]),
    ];
    for (uas, uac, uac_extra) in pairs {
        let port = free_udp_port();
        let s = serve(
            &dir,
            Run {
                name: &format!("p2p-{uas}"),
                scenario: uas,
                port,
                calls: 1,
                target: None,
                keys: &keys,
                extra: &[],
                trace: true,
            },
        );
        let c = Run {
            name: &format!("p2p-{uac}"),
            scenario: uac,
            port: free_udp_port(),
            calls: 1,
            target: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            keys: &keys,
            extra: uac_extra,
            trace: true,
        }
        .spawn(&dir);
        finish(&dir, vec![c, s], 40);
    }
    // (caller scenario, code, reason phrase, more keys)
    type Rejection<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let rejections: [Rejection; 6] = [
        ("invite_404.xml", "404", "Not Found", &[]),
        ("invite_483.xml", "483", "Too Many Hops", &[]),
        (
            "invite_420.xml",
            "420",
            "Bad Extension",
            &[("ext_header", "Require")],
        ),
        (
            "invite_416.xml",
            "416",
            "Unsupported URI Scheme",
            &[("target_uri", "http://tether.test/bob")],
        ),
        (
            "invite_416.xml",
            "416",
            "Unsupported URI Scheme",
            &[("target_uri", "mailto:bob@tether.test")],
        ),
        ("bye_481.xml", "481", "Call/Transaction Does Not Exist", &[]),
    ];
    for (i, (uac, code, reason, more)) in rejections.into_iter().enumerate() {
        let port = free_udp_port();
        // SIPp checks a response's code when it loads the scenario: no -key.
        let stand_in = dir.file(&format!("reject-{code}.xml"), &stand_in_uas(code, reason));
        let s = serve(
            &dir,
            Run {
                name: &format!("p2p-reject-{i}"),
                scenario: stand_in.to_str().unwrap(),
                port,
                calls: 1,
                target: None,
                keys: &[],
                extra: &[],
                trace: true,
            },
        );
        let mut k = keys.to_vec();
        k.extend_from_slice(more);
        let c = Run {
            name: &format!("p2p-{i}-{uac}"),
            scenario: uac,
            port: free_udp_port(),
            calls: 1,
            target: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            keys: &k,
            extra: &[],
            trace: true,
        }
        .spawn(&dir);
        finish(&dir, vec![c, s], 40);
    }
}

/// A SIPp server answering an INVITE or BYE with `code` (and `Unsupported:
/// foo`), then taking the ACK of an INVITE: what tether's rejections look
/// like, for checking the rejection scenarios without tether.
fn stand_in_uas(code: &str, reason: &str) -> String {
    // The 481 answers a BYE: its To is tagged already, and no ACK follows.
    let bye = code == "481";
    let tag = if bye { "" } else { ";tag=[pid]u[call_number]" };
    let ack = if bye {
        ""
    } else {
        "  <recv request=\"ACK\"/>\n"
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="stand-in for a rejection">
  <recv request="INVITE|BYE" regexp_match="true"/>
  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]{tag}
      [last_Call-ID:]
      [last_CSeq:]
      Unsupported: foo
      Content-Length: 0

    ]]>
  </send>
{ack}</scenario>
"#
    )
}

/// The registration step alone, against tether's registrar as it is today:
/// the binding is stored with the Contact port the scenario was given.
#[test]
fn callee_registration_lands_in_the_directory() {
    if !have_sipp("callee_registration_lands_in_the_directory") {
        return;
    }
    let (rt, addr) = tether();
    let dir = TempDir::new("px-reg");
    let (port, cport) = (free_udp_port(), free_udp_port());
    register(&dir, &rt, addr, "erin", port, cport, 1);
    let c = &rt.directory().lookup(&format!("erin@{DOMAIN}"), 0)[0];
    assert!(
        c.contact.contains(&format!("127.0.0.1:{cport}")),
        "{}",
        c.contact
    );
    rt.shutdown().unwrap();
}
