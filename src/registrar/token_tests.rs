//! Capability tokens on REGISTER (seed 002), through the registrar, on a
//! fake clock (runtime seconds and the wall time they stand for).

use std::sync::Arc;

use super::auth::{Authenticator, Credentials};
use super::token::{mint, sign_parts, Claims, TokenKeys};
use super::*;
use crate::sip::{self, ids::IdGen};

const KEY: &str = "current secret, 32 bytes or more!";
const OLD: &str = "previous secret, still accepted..";
/// Wall time (Unix s) at runtime second 0.
const UNIX0: u64 = 1_800_000_000;

struct Reg {
    reg: Registrar,
    ids: IdGen,
    out: Vec<u8>,
}

fn registrar(digest: bool) -> Reg {
    let auth = digest.then(|| {
        let creds = Credentials::from_passwords("tether", [("alice", "s3cret")]);
        Authenticator::new("tether".into(), Arc::new(creds), [3; 32], 300)
    });
    let reg = Registrar::new(
        0,
        Arc::new(Policy::default()),
        Arc::new(Directory::new()),
        auth,
    )
    .with_tokens(Some(Arc::new(TokenKeys::new([KEY, OLD]))));
    Reg {
        reg,
        ids: IdGen::new(1),
        out: Vec::new(),
    }
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

/// A REGISTER for alice@example.com with `token` and these Contact lines.
fn register(token: &str, contacts: &str, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKt{cseq}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f\r\nTo: <sip:alice@example.com>\r\n\
Call-ID: tok1\r\nCSeq: {cseq} REGISTER\r\nAuthorization: Bearer {token}\r\n{contacts}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

impl Reg {
    /// Status, reason and Warning of the answer at runtime second `now`.
    fn send(&mut self, req: &[u8], now: u32) -> (u16, String, Option<String>) {
        let m = sip::parse(req).unwrap();
        let checked = m.validate().unwrap();
        let at = Arrival {
            source: "203.0.113.7:40001".parse().unwrap(),
            local: 0,
            now_secs: now,
            now_unix: UNIX0 + u64::from(now),
        };
        let outcome = self
            .reg
            .register(&m, &checked, at, &mut self.out, &mut self.ids);
        assert_eq!(outcome, Outcome::Answered);
        let r = sip::parse(&self.out).unwrap();
        let sip::StartLine::Response { code, reason } = r.start else {
            panic!("not a response");
        };
        let warning = r.header_by_name("Warning").map(str::to_owned);
        (code, reason.to_owned(), warning)
    }
}

const MOBILE: &str = "Contact: <sip:alice@10.0.0.2:5060>;scope=mobile\r\n";
const PLAIN: &str = "Contact: <sip:alice@10.0.0.2:5061>\r\n";

#[test]
fn a_valid_token_registers_without_a_digest_round_trip() {
    for digest in [false, true] {
        let mut r = registrar(digest);
        let t = token(KEY, "alice@example.com", &["mobile"], UNIX0 + 600, None);
        assert_eq!(
            r.send(&register(&t, MOBILE, 1), 10).0,
            200,
            "digest {digest}"
        );
        assert_eq!(r.reg.stats.token_accepted, 1);
        assert_eq!(r.reg.stats.challenged, 0);
        assert_eq!(r.reg.local_bindings(), 1);
    }
}

#[test]
fn each_refusal_is_a_403_that_says_which_check_failed() {
    let good = |scopes: &[&str]| token(KEY, "alice@example.com", scopes, UNIX0 + 600, None);
    let both = format!("{MOBILE}{PLAIN}");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            token(KEY, "bob@example.com", &["*"], UNIX0 + 600, None),
            MOBILE,
            "Token For Another AOR",
        ),
        (good(&["web"]), MOBILE, "Token Scope Not Allowed"),
        // A contact without a scope needs "" or "*".
        (good(&["mobile"]), PLAIN, "Token Scope Not Allowed"),
        // One contact out of scope refuses the whole REGISTER.
        (good(&["mobile"]), &both, "Token Scope Not Allowed"),
        // `Contact: *` removes every scope's bindings: only "*" may.
        (
            good(&["mobile", ""]),
            "Contact: *\r\nExpires: 0\r\n",
            "Token Scope Not Allowed",
        ),
        (
            token(KEY, "alice@example.com", &["*"], UNIX0 + 10, None),
            MOBILE,
            "Token Expired",
        ),
        (
            token(
                KEY,
                "alice@example.com",
                &["*"],
                UNIX0 + 600,
                Some(UNIX0 + 60),
            ),
            MOBILE,
            "Token Not Yet Valid",
        ),
        (
            token(
                "a stranger's secret, 32 bytes long",
                "alice@example.com",
                &["*"],
                UNIX0 + 600,
                None,
            ),
            MOBILE,
            "Bad Token Signature",
        ),
        (
            sign_parts(
                KEY.as_bytes(),
                br#"{"alg":"none"}"#,
                br#"{"sub":"alice@example.com","scopes":["*"],"exp":1900000000}"#,
            ),
            MOBILE,
            "Token Algorithm Not Allowed",
        ),
        ("bm90LmEuand0".into(), MOBILE, "Malformed Token"),
    ];
    let mut r = registrar(false);
    for (i, (t, contacts, reason)) in cases.iter().enumerate() {
        let (code, got, warning) = r.send(&register(t, contacts, i as u32 + 1), 10);
        assert_eq!((code, got.as_str()), (403, *reason), "case {i}");
        let warning = warning.unwrap();
        assert!(warning.starts_with("399 tether \""), "{warning}");
        assert!(
            !String::from_utf8_lossy(&r.out).contains("secret"),
            "nothing of the keys leaks"
        );
    }
    assert_eq!(r.reg.stats.token_rejected, cases.len() as u64);
    assert_eq!(r.reg.local_bindings(), 0);
}

#[test]
fn scopes_match_contacts_and_star_allows_any() {
    let mut r = registrar(false);
    let t = token(KEY, "alice@EXAMPLE.com", &["mobile", ""], UNIX0 + 600, None);
    assert_eq!(
        r.send(&register(&t, &format!("{MOBILE}{PLAIN}"), 1), 10).0,
        200
    );
    let any = token(KEY, "alice@example.com", &["*"], UNIX0 + 600, None);
    // Quoted, and in another case: the scope the binding is stored with.
    let web = "Contact: <sip:alice@10.0.0.3:5060>;scope=\"Web\"\r\n";
    let web_only = token(KEY, "alice@example.com", &["web"], UNIX0 + 600, None);
    assert_eq!(r.send(&register(&web_only, web, 2), 10).0, 200);
    assert_eq!(r.reg.local_bindings(), 3);
    // A scope that is no token registers unscoped, so it needs "".
    let odd = "Contact: <sip:alice@10.0.0.4:5060>;scope=\"a b\"\r\n";
    let mobile_only = token(KEY, "alice@example.com", &["mobile"], UNIX0 + 600, None);
    assert_eq!(
        r.send(&register(&mobile_only, odd, 3), 10).1,
        "Token Scope Not Allowed"
    );
    assert_eq!(
        r.send(&register(&any, "Contact: *\r\nExpires: 0\r\n", 4), 10)
            .0,
        200
    );
    assert_eq!(r.reg.local_bindings(), 0);
}

#[test]
fn expiry_follows_the_wall_clock_passed_in() {
    let mut r = registrar(false);
    let t = token(KEY, "alice@example.com", &["*"], UNIX0 + 100, None);
    assert_eq!(r.send(&register(&t, MOBILE, 1), 99).0, 200);
    assert_eq!(r.send(&register(&t, MOBILE, 2), 100).1, "Token Expired");
}

#[test]
fn rotation_accepts_the_previous_secret() {
    let mut r = registrar(false);
    let t = token(OLD, "alice@example.com", &["*"], UNIX0 + 600, None);
    assert_eq!(r.send(&register(&t, MOBILE, 1), 10).0, 200);
}

#[test]
fn without_token_secrets_a_bearer_is_no_credential_for_digest() {
    let mut r = registrar(true);
    r.reg.tokens = None;
    let t = token(KEY, "alice@example.com", &["*"], UNIX0 + 600, None);
    assert_eq!(r.send(&register(&t, MOBILE, 1), 10).0, 401);
}
