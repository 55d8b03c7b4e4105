//! Registration authorization against real peers: SIPp registering with
//! capability tokens (seed 002, `Authorization: Bearer <JWT>`), the tokens
//! made here with the secrets tether is given; and SIPp registering while
//! tether asks an HTTP service (seed 003, `auth.mode = "http"`), played by
//! `tests/fixtures/hookserver.py`. The HTTP test needs the side threads
//! that make the POSTs (branch `hooks`).

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::hookserver::{have_python, HookServer};
use common::{sipp_ok, start, TempDir};
use tether::registrar::token::{mint, sign_parts, Claims};

const CURRENT: &str = "the current token secret, 32+ bytes";
const PREVIOUS: &str = "the previous token secret, rotating";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(secret: &str, sub: &str, scopes: &[&str], exp: u64, nbf: Option<u64>) -> String {
    mint(
        secret.as_bytes(),
        &Claims {
            sub: sub.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            exp,
            nbf,
        },
    )
}

/// Digest mode with token secrets: a REGISTER with a good token must get
/// its 200 without the 401 round trip (SIPp fails a call on an unexpected
/// 401); a bad one gets 403 with the reason.
#[test]
fn sipp_registers_with_bearer_tokens_and_bad_tokens_get_403() {
    let test = "sipp_registers_with_bearer_tokens_and_bad_tokens_get_403";
    if !common::have_tools(test, &[("sipp", "-v", "sip-tester")]) {
        return;
    }
    let dir = TempDir::new("sipp-bearer");
    // Nobody has a password: only tokens can register.
    let creds = dir.file("users", "# no digest users\n");
    let (rt, addr) = start(&format!(
        "[auth]\nmode = \"digest\"\ncredentials = \"{}\"\nalgorithms = [\"MD5\"]\n\
         [auth.token]\nsecrets = [\"{CURRENT}\", \"{PREVIOUS}\"]\n",
        creds.display()
    ));
    let exp = unix_now() + 600;
    let n = 200;
    // Half the devices hold tokens of the previous secret (rotation), half
    // register a scoped contact.
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let user = format!("user{i:05}");
            let aor = format!("{user}@127.0.0.1");
            let secret = if i % 2 == 0 { CURRENT } else { PREVIOUS };
            let (scopes, params): (&[&str], &str) = if i % 4 < 2 {
                (&["mobile"], "scope=mobile")
            } else {
                // No scope: any other parameter.
                (&[""], "app=sipp")
            };
            format!("{user};{};{params}", token(secret, &aor, scopes, exp, None))
        })
        .collect();
    sipp_ok(&dir, "register_bearer.xml", &rows, n, 200, addr, &[]);
    assert_eq!(rt.directory().aor_count(), n);

    // Each refusal once, from users not registered yet.
    let aor = |i: usize| format!("user{i:05}@127.0.0.1");
    let now = unix_now();
    let bad: Vec<(String, &str, &str)> = vec![
        (
            token(CURRENT, &aor(0), &["*"], exp, None),
            "scope=mobile",
            "Token For Another AOR",
        ),
        (
            token(CURRENT, &aor(1001), &["web"], exp, None),
            "scope=mobile",
            "Token Scope Not Allowed",
        ),
        (
            token(CURRENT, &aor(1002), &["*"], now - 1, None),
            "app=sipp",
            "Token Expired",
        ),
        (
            token(CURRENT, &aor(1003), &["*"], exp, Some(now + 300)),
            "app=sipp",
            "Token Not Yet Valid",
        ),
        (
            token(
                "somebody else's secret, 32 bytes",
                &aor(1004),
                &["*"],
                exp,
                None,
            ),
            "app=sipp",
            "Bad Token Signature",
        ),
        (
            sign_parts(
                CURRENT.as_bytes(),
                br#"{"alg":"none"}"#,
                format!(r#"{{"sub":"{}","scopes":["*"],"exp":{exp}}}"#, aor(1005)).as_bytes(),
            ),
            "app=sipp",
            "Token Algorithm Not Allowed",
        ),
    ];
    let rows: Vec<String> = bad
        .iter()
        .enumerate()
        .map(|(i, (t, params, _))| format!("user{:05};{t};{params}", 1000 + i))
        .collect();
    let log = dir.0.join("refused.messages");
    let log_arg = log.to_string_lossy().into_owned();
    sipp_ok(
        &dir,
        "register_bearer_refused.xml",
        &rows,
        rows.len(),
        50,
        addr,
        &["-trace_msg", "-message_file", &log_arg],
    );
    assert_eq!(
        rt.directory().aor_count(),
        n,
        "no refused device registered"
    );
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    for (_, _, reason) in &bad {
        assert!(
            trace.contains(&format!("SIP/2.0 403 {reason}")),
            "{reason} not in the trace"
        );
    }
    assert!(!trace.contains(CURRENT) && !trace.contains(PREVIOUS));
    rt.shutdown().unwrap();
}

/// A tether in `auth.mode = "http"` asking `url`, with these more
/// `[auth.http]` lines.
fn http_tether(url: &str, more: &str) -> (tether::runtime::Runtime, std::net::SocketAddr) {
    start(&format!(
        "[auth]\nmode = \"http\"\n[auth.http]\nurl = \"{url}\"\n{more}"
    ))
}

/// Users `{prefix}NNNNN` with an opaque token each (no secrets here: the
/// service judges them).
fn http_rows(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i:05};opaque-{prefix}-{i}"))
        .collect()
}

/// SIPp registers; tether POSTs each new registration to the service and
/// waits for it; refreshes within `cache_s` do not ask; a 403 from the
/// service, or no answer in time (`on_timeout` both ways), decides the
/// REGISTER's answer.
#[test]
fn sipp_registrations_authorized_by_an_http_service() {
    let test = "sipp_registrations_authorized_by_an_http_service";
    if !common::have_tools(test, &[("sipp", "-v", "sip-tester")]) || !have_python(test) {
        return;
    }
    let hs = HookServer::start(
        "regauth-http",
        r#"{"/yes": {"status": 200}, "/no": {"status": 403},
            "/slow": {"status": 200, "delay_ms": 3000}, "/fail": {"status": 500},
            "*": {"status": 404}}"#,
        None,
    );
    let dir = TempDir::new("sipp-http-auth");

    // The service says yes: 50 devices register (then refresh, spared).
    let (rt, addr) = http_tether(&hs.url("/yes"), "timeout_ms = 2000\n");
    let n = 50;
    sipp_ok(
        &dir,
        "register_http.xml",
        &http_rows("yes", n),
        n,
        50,
        addr,
        &[],
    );
    assert_eq!(rt.directory().aor_count(), n);
    let asked = hs.wait_requests(n, 10);
    assert_eq!(
        asked.len(),
        n,
        "one callout per device: the refreshes were cached"
    );
    let body: serde_json::Value = serde_json::from_str(asked[0]["body"].as_str().unwrap()).unwrap();
    let aor = body["aor"].as_str().unwrap();
    assert!(
        aor.starts_with("yes") && aor.ends_with("@127.0.0.1"),
        "{body}"
    );
    let user = aor.split('@').next().unwrap();
    let i: usize = user.trim_start_matches("yes").parse().unwrap();
    assert_eq!(body["token"], format!("opaque-yes-{i}"));
    assert_eq!(body["user_agent"], "SIPp");
    assert!(body["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(body["contact"]
        .as_str()
        .unwrap()
        .starts_with(&format!("sip:{user}@127.0.0.1:")));
    rt.shutdown().unwrap();

    // The service says no, or does not answer in time.
    let refused = |url: &str, more: &str, prefix: &str, want: &str| {
        let (rt, addr) = http_tether(url, more);
        let name = format!("{prefix}.messages");
        let log = dir.0.join(&name);
        let log_arg = log.to_string_lossy().into_owned();
        sipp_ok(
            &dir,
            "register_http_refused.xml",
            &http_rows(prefix, 5),
            5,
            5,
            addr,
            &["-trace_msg", "-message_file", &log_arg],
        );
        let trace = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(trace.matches(want).count(), 5, "{prefix}: {want}");
        assert_eq!(rt.directory().aor_count(), 0, "{prefix}");
        rt.shutdown().unwrap();
    };
    refused(&hs.url("/no"), "", "no", "SIP/2.0 403 Forbidden");
    refused(
        &hs.url("/slow"),
        "timeout_ms = 300\non_timeout = \"reject\"\n",
        "slow",
        "SIP/2.0 503 Service Unavailable",
    );
    refused(&hs.url("/missing"), "", "gone", "SIP/2.0 403 Forbidden");
    // The service failing (500) or not there (connection refused) is no
    // answer: on_timeout = "reject" gives 503 and a retry later.
    refused(
        &hs.url("/fail"),
        "",
        "fail",
        "SIP/2.0 503 Service Unavailable",
    );
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/auth", dead.local_addr().unwrap());
    drop(dead);
    refused(&dead_url, "", "dead", "SIP/2.0 503 Service Unavailable");

    // No answer in time with on_timeout = "accept": registered anyway.
    let (rt, addr) = http_tether(
        &hs.url("/slow"),
        "timeout_ms = 300\non_timeout = \"accept\"\n",
    );
    sipp_ok(
        &dir,
        "register_http.xml",
        &http_rows("late", 3),
        3,
        3,
        addr,
        &[],
    );
    assert_eq!(rt.directory().aor_count(), 3);
    rt.shutdown().unwrap();
}
