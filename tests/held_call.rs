//! Held calls end to end, with real peers: a SIPp caller calls bob, whose
//! only binding is a push binding (RFC 8599 `pn-*` in its Contact) on a
//! path that died; tether holds the call (`180`), POSTs the push to the
//! Python push gateway (`tests/fixtures/push_gateway.py`), and the gateway
//! wakes a real baresip (stopped with SIGSTOP, like a sleeping app) that
//! either registers again or calls the bridge URI back; baresip answers
//! the held INVITE by itself and the caller gets its `200`.
//!
//! baresip 1.0 cannot put `pn-*` parameters in its Contact, so the push
//! binding is registered by the test from a UDP socket it then leaves
//! silent (see `tests/push_gateway.rs`); baresip plays the woken app.
//! The failures: a gateway answering 500, answering too late, refusing the
//! connection, or taking the push with nobody waking; the caller giving up
//! (CANCEL), after which bob's registration forwards nothing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::baresip::{have_baresip, Ctrl, Phone};
use common::hookserver::have_python;
use common::push_gateway::{register_push_binding, PushGateway};
use common::{
    expect_sipp_ok, free_udp_port, have_tools, scenario, spawn_sipp, start_with_api, wait_metric,
    wait_until, TempDir,
};

/// Fast keepalives so a silent path is dead within a second or two.
const KEEPALIVE: &str =
    "[keepalive]\ninterval_ms = 600\ntimeout_ms = 300\nmax_misses = 1\njitter_ms = 0\n";

fn have_peers(test: &str) -> bool {
    have_python(test) && have_baresip(test) && have_tools(test, &[("sipp", "-v", "sip-tester")])
}

/// tether (with its API) serving 127.0.0.1, holding calls for `hold_ms`,
/// pushing through `gateways` (`provider = "url"` lines).
fn tether(
    hold_ms: u64,
    gateways: &str,
) -> (tether::runtime::Runtime, SocketAddr, impl Drop, String) {
    let (rt, addr, api, base) = start_with_api(&format!(
        "[registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 5\n{KEEPALIVE}\
[push]\nhold_ms = {hold_ms}\ntimeout_ms = 1000\n[push.gateways]\n{gateways}"
    ));
    (rt, addr, ApiGuard(Some(api)), base)
}

struct ApiGuard(Option<tether::api::http::Api>);

impl Drop for ApiGuard {
    fn drop(&mut self) {
        if let Some(api) = self.0.take() {
            api.shutdown();
        }
    }
}

/// Registers `user`'s push binding for `provider` from a socket left
/// silent, and waits until tether has found its path dead.
fn asleep(
    rt: &tether::runtime::Runtime,
    addr: SocketAddr,
    user: &str,
    provider: &str,
) -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_push_binding(
        &sock,
        addr,
        user,
        &format!("pn-provider={provider};pn-prid={user}-phone"),
        120,
    );
    let dir = rt.directory().clone();
    let aor = format!("{user}@127.0.0.1");
    wait_until(10, "the push binding's path to die", || {
        dir.lookup(&aor, 1).iter().all(|c| !c.is_reachable())
    });
    sock
}

/// A proxy scenario for `callee`, written into `dir` as `name`.xml and
/// run from a port of its own against tether.
fn call(
    dir: &TempDir,
    name: &str,
    file: &str,
    callee: &str,
    to: SocketAddr,
) -> std::process::Child {
    let xml = std::fs::read_to_string(scenario(&format!("proxy/{file}")))
        .unwrap()
        .replace("[callee]", callee)
        .replace("[domain]", "127.0.0.1");
    spawn_sipp(dir, name, &xml, free_udp_port(), 1, Some(to))
}

/// baresip as bob's phone app, asleep (SIGSTOP): it never registered
/// (`regint=0`) and answers calls for `bob` by itself.
fn sleeping_bob(dir: &TempDir, tether: SocketAddr) -> (Phone, u16) {
    let (bob, ctrl) = Phone::start_account(
        dir,
        &format!("<sip:bob@{tether};transport=udp>;regint=0;answermode=auto;audio_codecs=PCMU"),
        "",
    );
    // Up once its control socket answers.
    drop(Ctrl::connect(ctrl));
    // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
    unsafe { libc::kill(bob.child.id() as libc::pid_t, libc::SIGSTOP) };
    (bob, ctrl)
}

/// The one push the gateway got, checked against bob's binding.
fn check_push(gw: &PushGateway, user: &str) -> String {
    assert!(gw.wait("push", 1, 10), "no push reached the gateway");
    let pushes = gw.records("push");
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    let body = &pushes[0]["body"];
    assert_eq!(body["aor"], format!("{user}@127.0.0.1"), "{body}");
    assert_eq!(body["pn_provider"], "test", "{body}");
    assert_eq!(body["pn_prid"], format!("{user}-phone"), "{body}");
    let bridge = body["bridge_uri"].as_str().unwrap_or_default().to_owned();
    assert!(bridge.starts_with("sip:bridge-"), "{body}");
    bridge
}

#[test]
fn a_push_wakes_baresip_which_registers_and_answers_the_held_call() {
    let test = "a_push_wakes_baresip_which_registers_and_answers_the_held_call";
    if !have_peers(test) {
        return;
    }
    let gw = PushGateway::start(&[]);
    let (rt, addr, _api, base) = tether(20_000, &format!("test = \"{}\"\n", gw.url()));
    let _silent = asleep(&rt, addr, "bob", "test");
    let dir = TempDir::new("held-register");
    let (bob, ctrl) = sleeping_bob(&dir, addr);
    // The push wakes the app, which registers (a new binding, a live path).
    let actions = serde_json::json!({"actions": [
        format!("signal {} CONT", bob.child.id()),
        format!(
            "ctrl 127.0.0.1:{ctrl} uanew <sip:bob@{addr};transport=udp>;regint=60;answermode=auto;audio_codecs=PCMU"
        ),
    ]});
    gw.control(&actions.to_string());

    let alice = call(&dir, "alice", "uac_call.xml", "bob", addr);
    expect_sipp_ok(&dir, "alice", alice, 30);
    check_push(&gw, "bob");
    let report = || format!("{:#?}\n{}", gw.records("action"), bob.log());
    assert!(gw.wait("action", 2, 5), "{}", report());
    assert!(
        gw.records("action").iter().all(|a| a["ok"] == true),
        "{}",
        report()
    );
    let held = common::sipp_messages(&dir, "alice");
    assert!(held.contains("SIP/2.0 180"), "{held}");
    wait_metric(&base, "tether_holds_total", 1);
    wait_metric(&base, "tether_holds_woken_total", 1);
    wait_metric(&base, "tether_calls_held", 0);
    rt.shutdown().unwrap();
}

#[test]
fn a_push_wakes_baresip_which_calls_the_bridge_uri_and_gets_the_held_call() {
    let test = "a_push_wakes_baresip_which_calls_the_bridge_uri_and_gets_the_held_call";
    if !have_peers(test) {
        return;
    }
    let gw = PushGateway::start(&[]);
    let (rt, addr, _api, base) = tether(20_000, &format!("test = \"{}\"\n", gw.url()));
    let _silent = asleep(&rt, addr, "bob", "test");
    let dir = TempDir::new("held-bridge");
    let (bob, ctrl) = sleeping_bob(&dir, addr);
    // The woken app calls back with the token (an OPTIONS without Contact):
    // the held INVITE comes to it over that flow, for its AOR.
    let actions = serde_json::json!({"actions": [
        format!("signal {} CONT", bob.child.id()),
        format!("ctrl 127.0.0.1:{ctrl} options {{bridge_uri}}"),
    ]});
    gw.control(&actions.to_string());

    let alice = call(&dir, "alice", "uac_call.xml", "bob", addr);
    expect_sipp_ok(&dir, "alice", alice, 30);
    check_push(&gw, "bob");
    wait_metric(&base, "tether_holds_bridged_total", 1);
    wait_metric(&base, "tether_bridge_refused_total", 0);
    // bob never registered: the call reached him over the call-back's flow.
    assert!(
        rt.directory()
            .lookup("bob@127.0.0.1", 1)
            .iter()
            .all(|c| !c.is_reachable()),
        "{}",
        bob.log()
    );
    rt.shutdown().unwrap();
}

#[test]
fn failed_late_refused_and_unanswered_wake_ups_give_480_and_a_cancel_487() {
    let test = "failed_late_refused_and_unanswered_wake_ups_give_480_and_a_cancel_487";
    if !have_peers(test) {
        return;
    }
    let gw = PushGateway::start(&[]);
    // A gateway nobody listens on: the connection is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/push", dead.local_addr().unwrap());
    drop(dead);
    let (rt, addr, _api, base) = tether(
        3000,
        &format!("test = \"{}\"\ndead = \"{dead_url}\"\n", gw.url()),
    );
    let _bob = asleep(&rt, addr, "bob", "test");
    let _carol = asleep(&rt, addr, "carol", "dead");
    let dir = TempDir::new("held-fail");
    let held_480 = |name: &str, callee: &str| {
        let started = Instant::now();
        let c = call(&dir, name, "uac_held_480.xml", callee, addr);
        expect_sipp_ok(&dir, name, c, 30);
        started.elapsed()
    };

    // The gateway fails the push: the only wake-up is gone, 480 at once.
    gw.control(r#"{"status": 500}"#);
    held_480("status500", "bob");
    // It answers after push.timeout_ms: the same, when tether gives up.
    gw.control(r#"{"status": 200, "delay_ms": 2500}"#);
    held_480("late", "bob");
    // Refused connection.
    held_480("refused", "carol");
    // Taken, but nobody wakes: 480 at push.hold_ms.
    gw.control(r#"{"status": 200, "delay_ms": 0}"#);
    let waited = held_480("unanswered", "bob");
    assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    wait_metric(&base, "tether_holds_total", 4);
    wait_metric(&base, "tether_holds_timed_out_total", 1);
    wait_metric(&base, "tether_pushes_failed_total", 3);

    // The caller gives up while bob is woken: 487, and bob's registration
    // afterwards forwards nothing.
    let alice = call(&dir, "cancel", "uac_cancel.xml", "bob", addr);
    expect_sipp_ok(&dir, "cancel", alice, 30);
    wait_metric(&base, "tether_calls_held", 0);
    let woken = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_push_binding(&woken, addr, "bob", "ob", 120);
    woken
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let until = Instant::now() + Duration::from_millis(1500);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok((n, _)) = woken.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(
                !text.starts_with("INVITE "),
                "a cancelled call was forwarded: {text}"
            );
        }
    }
    wait_metric(&base, "tether_holds_woken_total", 0);
    rt.shutdown().unwrap();
}
