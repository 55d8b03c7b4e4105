//! Registration authorization against real peers: SIPp registering with
//! capability tokens (seed 002, `Authorization: Bearer <JWT>`), the tokens
//! made here with the secrets tether is given.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{sipp, sipp_errors, start, TempDir};
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
    let out = sipp(&dir, "register_bearer.xml", &rows, n, 200, addr, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        sipp_errors(&dir, "register_bearer.xml")
    );
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
    let out = sipp(
        &dir,
        "register_bearer_refused.xml",
        &rows,
        rows.len(),
        50,
        addr,
        &["-trace_msg", "-message_file", &log_arg],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        sipp_errors(&dir, "register_bearer_refused.xml")
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
