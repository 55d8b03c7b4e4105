//! Digest authentication rule by rule: 401 and 407 challenges, MD5 and
//! SHA-256, stale nonces and nc replay.

use super::*;
use crate::sip::parse;

const SRC: &str = "198.51.100.7:5060";

fn check<'m>(a: &mut Authenticator, m: &crate::sip::Message<'m>, now: u64) -> Verdict<'m> {
    a.check(m, &m.validate().unwrap(), SRC.parse().unwrap(), now)
}

fn auth() -> Authenticator {
    let creds = Credentials::from_passwords("tether", [("alice", "s3cret")]);
    Authenticator::new("tether".into(), Arc::new(creds), [7; 32], 300)
}

fn register_with(authz: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:tether SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
From: <sip:alice@tether>;tag=1\r\nTo: <sip:alice@tether>\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\n{authz}\r\n"
    )
    .into_bytes()
}

fn authz(alg: Algorithm, user: &str, pass: &str, nonce: &str, nc: &str) -> String {
    authorization_header(alg, user, pass, "sip:tether", nonce, nc)
}

#[test]
fn no_credentials_gets_a_challenge() {
    let mut a = auth();
    let req = register_with("");
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1000),
        Verdict::Challenge { stale: false }
    );
}

#[test]
fn md5_and_sha256_both_authenticate() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    for (alg, nc) in [
        (Algorithm::Md5, "00000001"),
        (Algorithm::Sha256, "00000002"),
    ] {
        let req = register_with(&authz(alg, "alice", "s3cret", nonce, nc));
        assert_eq!(
            check(&mut a, &parse(&req).unwrap(), 1001),
            Verdict::Authenticated("alice"),
            "{alg:?}"
        );
    }
}

#[test]
fn wrong_password_and_unknown_user_are_forbidden() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let req = register_with(&authz(Algorithm::Md5, "alice", "wrong", nonce, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Forbidden
    );
    let req = register_with(&authz(Algorithm::Md5, "mallory", "x", nonce, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Forbidden
    );
}

#[test]
fn old_nonce_is_stale_and_replayed_nc_is_stale() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let req = register_with(&authz(Algorithm::Md5, "alice", "s3cret", nonce, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1400),
        Verdict::Challenge { stale: true }
    );
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Authenticated("alice")
    );
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1002),
        Verdict::Challenge { stale: true }
    );
}

#[test]
fn two_clients_challenged_in_the_same_second_do_not_collide() {
    let creds = Credentials::from_passwords("tether", [("alice", "s3cret"), ("bob", "pw")]);
    let mut a = Authenticator::new("tether".into(), Arc::new(creds), [7; 32], 300);
    let n1 = a.nonce(1000, SRC.parse().unwrap());
    let n2 = a.nonce(1000, SRC.parse().unwrap());
    assert_ne!(n1, n2);
    let n2 = std::str::from_utf8(&n2).unwrap().to_owned();
    let n1 = std::str::from_utf8(&n1).unwrap().to_owned();
    let req = register_with(&authz(Algorithm::Md5, "alice", "s3cret", &n1, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1000),
        Verdict::Authenticated("alice")
    );
    let req = register_with(&authz(Algorithm::Md5, "alice", "s3cret", &n2, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1000),
        Verdict::Authenticated("alice")
    );
}

#[test]
fn a_nonce_is_only_good_from_the_address_it_was_issued_to() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let req = register_with(&authz(Algorithm::Md5, "alice", "s3cret", nonce, "00000001"));
    let m = parse(&req).unwrap();
    // A replay from another address (landing on another core) is re-challenged.
    let elsewhere = "203.0.113.66:40000".parse().unwrap();
    assert_eq!(
        a.check(&m, &m.validate().unwrap(), elsewhere, 1001),
        Verdict::Challenge { stale: false }
    );
    assert_eq!(check(&mut a, &m, 1001), Verdict::Authenticated("alice"));
}

#[test]
fn a_digest_for_another_uri_is_refused() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let other = authorization_header(
        Algorithm::Md5,
        "alice",
        "s3cret",
        "sip:elsewhere",
        nonce,
        "00000001",
    );
    let req = register_with(&other);
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Malformed
    );
    // The same target written with a different case and an explicit default port is fine.
    let same = authorization_header(
        Algorithm::Md5,
        "alice",
        "s3cret",
        "sip:TETHER:5060",
        nonce,
        "00000001",
    );
    let req = register_with(&same);
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Authenticated("alice")
    );
}

#[test]
fn cores_issue_different_nonces() {
    let creds = Arc::new(Credentials::from_passwords("tether", [("alice", "s3cret")]));
    let a = Authenticator::new("tether".into(), creds.clone(), [7; 32], 300).for_core(0);
    let b = Authenticator::new("tether".into(), creds, [7; 32], 300).for_core(1);
    let src = SRC.parse().unwrap();
    assert_ne!(a.nonce(1000, src), b.nonce(1000, src));
}

#[test]
fn forged_nonce_is_rechallenged() {
    let mut a = auth();
    let mut forged = a.nonce(1000, SRC.parse().unwrap());
    forged[55] = if forged[55] == b'0' { b'1' } else { b'0' };
    let forged = std::str::from_utf8(&forged).unwrap();
    let req = register_with(&authz(
        Algorithm::Md5,
        "alice",
        "s3cret",
        forged,
        "00000001",
    ));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Challenge { stale: false }
    );
}

fn invite_with(extra: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@tether SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\n\
From: <sip:alice@tether>;tag=1\r\nTo: <sip:bob@tether>\r\nCall-ID: i\r\nCSeq: 2 INVITE\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A credentials line as a client computes it for the INVITE above
/// (uri the Request-URI), `header` and `method` as given.
fn invite_authz(
    header: &str,
    method: &str,
    alg: Algorithm,
    realm: &str,
    nonce: &str,
    nc: &str,
) -> String {
    let v = digest::authorization(&digest::Answer {
        alg,
        username: "alice",
        password: "s3cret",
        realm,
        nonce,
        opaque: None,
        method,
        uri: "sip:bob@tether",
        qop_auth: Some((nc, "0a4f113b")),
    });
    format!("{header}: {v}\r\n")
}

fn proxy_authz(alg: Algorithm, realm: &str, nonce: &str, nc: &str) -> String {
    invite_authz("Proxy-Authorization", "INVITE", alg, realm, nonce, nc)
}

fn check_proxy<'m>(a: &mut Authenticator, m: &Message<'m>, now: u64) -> Verdict<'m> {
    let src = SRC.parse().unwrap();
    a.check_as(Challenge::Proxy, m, &m.validate().unwrap(), src, now)
}

/// The nonce of the first challenge `write_challenge_as` writes.
fn challenge_nonce(a: &Authenticator, which: Challenge, now: u64) -> (String, String) {
    let mut buf = Vec::new();
    let mut w = Writer::response(&mut buf, which.status(), "Challenge");
    a.write_challenge_as(which, &mut w, false, now, SRC.parse().unwrap());
    w.finish(None);
    let text = String::from_utf8(buf).unwrap();
    let line = text.lines().nth(1).unwrap();
    let (_, value) = line.split_once(": ").unwrap();
    let nonce = AuthParams::parse(value, "x")
        .unwrap()
        .get("nonce")
        .unwrap()
        .to_owned();
    (text, nonce)
}

#[test]
fn a_407_round_trip_authenticates_an_invite_with_md5_and_sha256() {
    let mut a = auth();
    let (text, nonce) = challenge_nonce(&a, Challenge::Proxy, 1000);
    assert!(text.starts_with("SIP/2.0 407 "), "{text}");
    assert_eq!(
        text.matches("\r\nProxy-Authenticate: Digest realm=\"tether\", nonce=")
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains("WWW-Authenticate"), "{text}");
    for (alg, nc) in [
        (Algorithm::Md5, "00000001"),
        (Algorithm::Sha256, "00000002"),
    ] {
        let req = invite_with(&proxy_authz(alg, "tether", &nonce, nc));
        assert_eq!(
            check_proxy(&mut a, &parse(&req).unwrap(), 1001),
            Verdict::Authenticated("alice"),
            "{alg:?}"
        );
    }
    // HA2 takes the request's method: a digest made for REGISTER fails.
    let wrong = invite_authz(
        "Proxy-Authorization",
        "REGISTER",
        Algorithm::Md5,
        "tether",
        &nonce,
        "00000003",
    );
    let req = invite_with(&wrong);
    assert_eq!(
        check_proxy(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Forbidden
    );
}

#[test]
fn the_www_challenge_is_unchanged_by_the_proxy_variant() {
    let a = auth();
    let (text, _) = challenge_nonce(&a, Challenge::Www, 1000);
    assert_eq!(
        text.matches("\r\nWWW-Authenticate: Digest realm=\"tether\", nonce=")
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("algorithm=SHA-256, qop=\"auth\"\r\n"),
        "{text}"
    );
    assert!(!text.contains("Proxy-Authenticate"), "{text}");
}

#[test]
fn proxy_credentials_for_another_realm_get_a_challenge() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let req = invite_with(&proxy_authz(Algorithm::Md5, "elsewhere", nonce, "00000001"));
    assert_eq!(
        check_proxy(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Challenge { stale: false }
    );
    // Behind another proxy's credentials, ours are still found (§22.3).
    let other = proxy_authz(Algorithm::Md5, "elsewhere", nonce, "00000001");
    let ours = proxy_authz(Algorithm::Md5, "tether", nonce, "00000001");
    let req = invite_with(&format!("{other}{ours}"));
    assert_eq!(
        check_proxy(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Authenticated("alice")
    );
}

#[test]
fn authorization_is_not_proxy_authorization() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let www = invite_authz(
        "Authorization",
        "INVITE",
        Algorithm::Md5,
        "tether",
        nonce,
        "00000001",
    );
    let req = invite_with(&www);
    let m = parse(&req).unwrap();
    assert_eq!(
        check_proxy(&mut a, &m, 1001),
        Verdict::Challenge { stale: false }
    );
    // And the other way round: a registrar's check ignores Proxy-Authorization.
    let req = invite_with(&proxy_authz(Algorithm::Md5, "tether", nonce, "00000001"));
    assert_eq!(
        check(&mut a, &parse(&req).unwrap(), 1001),
        Verdict::Challenge { stale: false }
    );
}

#[test]
fn proxy_auth_detects_a_stale_nonce_and_a_replayed_nc() {
    let mut a = auth();
    let nonce = a.nonce(1000, SRC.parse().unwrap());
    let nonce = std::str::from_utf8(&nonce).unwrap();
    let req = invite_with(&proxy_authz(Algorithm::Sha256, "tether", nonce, "00000001"));
    let m = parse(&req).unwrap();
    assert_eq!(
        check_proxy(&mut a, &m, 1400),
        Verdict::Challenge { stale: true }
    );
    assert_eq!(
        check_proxy(&mut a, &m, 1001),
        Verdict::Authenticated("alice")
    );
    assert_eq!(
        check_proxy(&mut a, &m, 1002),
        Verdict::Challenge { stale: true }
    );
    // The nc record is shared: the same nonce and nc in an Authorization is a replay too.
    let www = invite_authz(
        "Authorization",
        "INVITE",
        Algorithm::Sha256,
        "tether",
        nonce,
        "00000001",
    );
    assert_eq!(
        check(&mut a, &parse(&invite_with(&www)).unwrap(), 1002),
        Verdict::Challenge { stale: true }
    );
}

#[test]
fn credentials_file_errors_name_the_line() {
    let ok = "# comment\nalice:tether:0123456789abcdef0123456789abcdef\nbob:other:0123456789abcdef0123456789abcdef\n";
    assert_eq!(Credentials::parse(ok, "tether").unwrap().len(), 1);
    let err = Credentials::parse("alice:tether:xyz\n", "tether").unwrap_err();
    assert!(err.contains("line 1") && err.contains("md5_ha1"), "{err}");
}
