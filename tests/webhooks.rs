//! Event webhooks end to end: SIPp registers devices with an in-process
//! tether whose `[webhooks]` point at `tests/fixtures/hookserver.py`, a
//! receiver sharing no code with tether (Python's `http.server` and
//! `hmac`), which records what arrives and answers per its rules.

mod common;

use common::hookserver::{have_python, HookServer};
use common::{metric, sipp_ok, start_with_api, wait_until, TempDir};

/// Whether SIPp and python3 are here (else the test is skipped; under CI it fails).
fn have_peers(test: &str) -> bool {
    have_python(test) && common::have_tools(test, &[("sipp", "-v", "sip-tester")])
}

/// Runs `register_hooks.xml` for `rows` (`user;expires;last_expires`).
fn register(dir: &TempDir, tether: std::net::SocketAddr, rows: &[String]) {
    sipp_ok(
        dir,
        "register_hooks.xml",
        rows,
        rows.len(),
        rows.len().min(200),
        tether,
        &[],
    );
}

fn body(r: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(r["body"].as_str().unwrap()).unwrap()
}

#[test]
fn registration_events_arrive_signed_with_the_listed_headers() {
    if !have_peers("registration_events_arrive_signed_with_the_listed_headers") {
        return;
    }
    let hooks = HookServer::start("hooks-reg", "{}", Some("s3cret-for-tests"));
    let (rt, tether, api, base) = start_with_api(&format!(
        "[registrar]\nmin_expires = 1\n[webhooks]\nurl = \"{}\"\nsecret = \"s3cret-for-tests\"\n\
         headers = [\"X-Account\", \"User-Agent\", \"X-Missing\"]\n",
        hooks.url("/events")
    ));
    let dir = TempDir::new("hooks-reg");
    // Ten users register, refresh and unregister; one more re-registers for
    // one second at the end, and expires.
    let mut rows: Vec<String> = (0..10).map(|i| format!("u{i};60;0")).collect();
    rows.push("short;60;1".into());
    register(&dir, tether, &rows);
    let got = hooks.wait_requests(10 * 3 + 4, 20);
    let count = |kind: &str| got.iter().filter(|r| body(r)["event"] == kind).count();
    assert_eq!(count("registration.added"), 11, "{got:?}");
    assert_eq!(count("registration.refreshed"), 12, "{got:?}");
    assert_eq!(count("registration.removed"), 10, "{got:?}");
    assert_eq!(count("registration.expired"), 1, "{got:?}");
    for r in &got {
        assert_eq!(r["method"], "POST");
        assert_eq!(r["path"], "/events");
        assert_eq!(r["headers"]["content-type"], "application/json");
        assert_eq!(r["signature_ok"], true, "Python's hmac disagrees: {r}");
    }
    let added = got
        .iter()
        .map(body)
        .find(|b| b["event"] == "registration.added" && b["aor"] == "u3@127.0.0.1")
        .expect("u3's registration");
    assert_eq!(added["expires"], 60);
    assert_eq!(added["user_agent"], "SIPp webhooks");
    assert!(
        added["contact"]
            .as_str()
            .unwrap()
            .starts_with("sip:u3@127.0.0.1:"),
        "{added}"
    );
    assert_eq!(
        added["headers"],
        serde_json::json!({"X-Account": "acct-u3", "User-Agent": "SIPp webhooks"})
    );
    let expired = got
        .iter()
        .map(body)
        .find(|b| b["event"] == "registration.expired")
        .unwrap();
    assert_eq!(expired["aor"], "short@127.0.0.1");
    wait_until(10, "every delivery counted", || {
        metric(&base, "tether_webhooks_delivered_total") == 34
    });
    assert_eq!(metric(&base, "tether_webhooks_failed_total"), 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_500_then_200_is_retried_and_delivered() {
    if !have_peers("a_500_then_200_is_retried_and_delivered") {
        return;
    }
    let hooks = HookServer::start(
        "hooks-retry",
        r#"{"/events": {"fail_first": 1, "fail_status": 500}}"#,
        None,
    );
    let (rt, tether, api, base) = start_with_api(&format!(
        "[webhooks]\nurl = \"{}\"\nevents = [\"registration.added\"]\nbackoff_ms = 50\nretries = 2\n",
        hooks.url("/events")
    ));
    let dir = TempDir::new("hooks-retry");
    register(&dir, tether, &["solo;60;60".into()]);
    let got = hooks.wait_requests(2, 20);
    assert_eq!(got[0]["status"], 500);
    assert_eq!(got[1]["status"], 200);
    assert_eq!(got[0]["body"], got[1]["body"], "the same event again");
    assert_eq!(body(&got[1])["event"], "registration.added");
    assert_eq!(got[1]["signature_ok"], serde_json::Value::Null, "no secret");
    wait_until(10, "the delivery counted", || {
        metric(&base, "tether_webhooks_delivered_total") == 1
    });
    assert_eq!(metric(&base, "tether_webhooks_retried_total"), 1);
    assert_eq!(metric(&base, "tether_webhooks_failed_total"), 0);
    assert_eq!(hooks.requests().len(), 2, "nothing after the 200");
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_refused_port_fails_after_its_retries_and_is_counted() {
    if !have_peers("a_refused_port_fails_after_its_retries_and_is_counted") {
        return;
    }
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (rt, tether, api, base) = start_with_api(&format!(
        "[webhooks]\nurl = \"http://127.0.0.1:{port}/events\"\nevents = [\"registration.added\"]\n\
         backoff_ms = 20\nretries = 2\n"
    ));
    let dir = TempDir::new("hooks-refused");
    register(&dir, tether, &["a;60;60".into(), "b;60;60".into()]);
    wait_until(20, "both events failed", || {
        metric(&base, "tether_webhooks_failed_total") == 2
    });
    assert_eq!(metric(&base, "tether_webhooks_retried_total"), 4);
    assert_eq!(metric(&base, "tether_webhooks_delivered_total"), 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_receiver_slower_than_the_timeout_fails_and_is_counted() {
    if !have_peers("a_receiver_slower_than_the_timeout_fails_and_is_counted") {
        return;
    }
    let hooks = HookServer::start("hooks-slow", r#"{"*": {"delay_ms": 5000}}"#, None);
    let (rt, tether, api, base) = start_with_api(&format!(
        "[webhooks]\nurl = \"{}\"\nevents = [\"registration.added\"]\ntimeout_ms = 200\nretries = 0\n",
        hooks.url("/events")
    ));
    let dir = TempDir::new("hooks-slow");
    register(&dir, tether, &["late;60;60".into()]);
    hooks.wait_requests(1, 20);
    wait_until(20, "the timeout counted as a failure", || {
        metric(&base, "tether_webhooks_failed_total") == 1
    });
    assert_eq!(metric(&base, "tether_webhooks_delivered_total"), 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn sip_keeps_answering_while_the_receiver_hangs_and_a_full_queue_drops() {
    if !have_peers("sip_keeps_answering_while_the_receiver_hangs_and_a_full_queue_drops") {
        return;
    }
    // The receiver holds every request for a minute; one thread, a queue of
    // two: nearly every event of the run finds the queue full.
    let hooks = HookServer::start("hooks-hang", r#"{"*": {"delay_ms": 60000}}"#, None);
    let (rt, tether, api, base) = start_with_api(&format!(
        "[webhooks]\nurl = \"{}\"\nthreads = 1\nqueue = 2\ntimeout_ms = 1000\nretries = 0\n",
        hooks.url("/events")
    ));
    let dir = TempDir::new("hooks-hang");
    let rows: Vec<String> = (0..300).map(|i| format!("h{i};60;0")).collect();
    // Every REGISTER answered 200 (SIPp exits 0 only then).
    register(&dir, tether, &rows);
    let dropped = metric(&base, "tether_webhooks_dropped_total");
    assert!(dropped > 0, "900 events, a queue of 2: some must drop");
    // What was queued times out one by one; then every event is counted
    // once, failed or dropped.
    wait_until(30, "every event accounted for", || {
        metric(&base, "tether_webhooks_failed_total")
            + metric(&base, "tether_webhooks_dropped_total")
            == 900
    });
    assert!(metric(&base, "tether_webhooks_failed_total") >= 1);
    assert_eq!(metric(&base, "tether_hooks_queue_depth"), 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn batched_events_arrive_as_arrays_and_are_all_counted() {
    if !have_peers("batched_events_arrive_as_arrays_and_are_all_counted") {
        return;
    }
    // One thread, a receiver that takes a second per POST: the events queue
    // behind the first one and leave together.
    let hooks = HookServer::start("hooks-batch", r#"{"*": {"delay_ms": 1000}}"#, Some("k"));
    let (rt, tether, api, base) = start_with_api(&format!(
        "[webhooks]\nurl = \"{}\"\nevents = [\"registration.added\"]\nthreads = 1\nbatch = 100\nsecret = \"k\"\n",
        hooks.url("/events")
    ));
    let dir = TempDir::new("hooks-batch");
    let rows: Vec<String> = (0..30).map(|i| format!("b{i};60;60")).collect();
    register(&dir, tether, &rows);
    wait_until(60, "all 30 events delivered", || {
        metric(&base, "tether_webhooks_delivered_total") == 30
    });
    let got = hooks.requests();
    let mut aors = Vec::new();
    for r in &got {
        assert_eq!(r["signature_ok"], true, "the array is what is signed: {r}");
        let batch = body(r);
        let events = batch.as_array().expect("a JSON array when batching");
        assert!(!events.is_empty());
        for e in events {
            assert_eq!(e["event"], "registration.added");
            aors.push(e["aor"].as_str().unwrap().to_owned());
        }
    }
    aors.sort();
    aors.dedup();
    assert_eq!(aors.len(), 30, "each event once");
    assert!(
        got.len() < 30,
        "some POSTs carried several events: {}",
        got.len()
    );
    api.shutdown();
    rt.shutdown().unwrap();
}
