//! The registrar against a real peer: SIPp (Debian `sip-tester`) over
//! loopback, with tether running in-process so the tests can read the
//! location directory afterwards.

mod common;

use common::{sipp_ok, start, TempDir};

fn users(n: usize, password: &str) -> Vec<String> {
    (0..n).map(|i| format!("user{i:05};{password}")).collect()
}

#[test]
fn twenty_thousand_users_at_2000_per_second_all_registered() {
    let (rt, addr) = start("");
    let dir = TempDir::new("sipp-reg");
    // -t un: one socket per call, so the users arrive from 20,000 source
    // ports (distinct NAT paths) spread over both workers.
    sipp_ok(
        &dir,
        "register.xml",
        &users(20_000, "x"),
        20_000,
        2_000,
        addr,
        &["-t", "un"],
    );
    assert_eq!(rt.directory().aor_count(), 20_000);
    let c = &rt.directory().lookup("user01234@127.0.0.1", 1)[0];
    assert!(c.contact.starts_with("sip:user01234@127.0.0.1:"));
    rt.shutdown().unwrap();
}

#[test]
fn unregister_with_expires_zero_removes_the_binding() {
    let (rt, addr) = start("");
    let dir = TempDir::new("sipp-unreg");
    sipp_ok(
        &dir,
        "register_unregister.xml",
        &users(200, "x"),
        200,
        200,
        addr,
        &[],
    );
    assert_eq!(rt.directory().aor_count(), 0);
    rt.shutdown().unwrap();
}

#[test]
fn contact_star_removes_every_binding() {
    let (rt, addr) = start("");
    let dir = TempDir::new("sipp-star");
    sipp_ok(
        &dir,
        "register_star.xml",
        &users(100, "x"),
        100,
        100,
        addr,
        &[],
    );
    assert_eq!(rt.directory().aor_count(), 0);
    rt.shutdown().unwrap();
}

#[test]
fn too_brief_gets_423_and_min_expires_is_accepted() {
    let (rt, addr) = start("[registrar]\nmin_expires = 120\n");
    let dir = TempDir::new("sipp-423");
    sipp_ok(
        &dir,
        "register_brief.xml",
        &users(50, "x"),
        50,
        50,
        addr,
        &[],
    );
    assert_eq!(rt.directory().aor_count(), 50);
    let c = &rt.directory().lookup("user00007@127.0.0.1", 0)[0];
    // Registered for the Min-Expires the 423 named: 120 s from when it arrived
    // (expiry times are seconds on the runtime clock, which started just before).
    assert!(
        (120..=130).contains(&c.expires_at),
        "expires_at {}",
        c.expires_at
    );
    rt.shutdown().unwrap();
}

/// HA1 lines for `user00000..user{n}` with password `pw{i}`.
fn credentials(n: usize) -> String {
    use tether::sip::digest::{ha1, Algorithm};
    (0..n)
        .map(|i| {
            let (u, p) = (format!("user{i:05}"), format!("pw{i}"));
            format!(
                "{u}:tether:{}:{}\n",
                ha1(Algorithm::Md5, &u, "tether", &p).as_str(),
                ha1(Algorithm::Sha256, &u, "tether", &p).as_str()
            )
        })
        .collect()
}

fn auth_config(dir: &TempDir, n: usize) -> String {
    let creds = dir.file("users", &credentials(n));
    // SIPp 3.6 answers only the first challenge and knows only MD5.
    format!(
        "[auth]\nenabled = true\ncredentials = \"{}\"\nalgorithms = [\"MD5\"]\n",
        creds.display()
    )
}

#[test]
fn digest_md5_challenge_and_response() {
    let dir = TempDir::new("sipp-auth");
    let (rt, addr) = start(&auth_config(&dir, 300));
    let rows: Vec<String> = (0..300)
        .map(|i| format!("user{i:05};[authentication username=user{i:05} password=pw{i}]"))
        .collect();
    sipp_ok(&dir, "register_auth.xml", &rows, 300, 300, addr, &[]);
    assert_eq!(rt.directory().aor_count(), 300);
    rt.shutdown().unwrap();
}

#[test]
fn wrong_password_gets_403_and_registers_nothing() {
    let dir = TempDir::new("sipp-403");
    let (rt, addr) = start(&auth_config(&dir, 50));
    let rows: Vec<String> = (0..50)
        .map(|i| format!("user{i:05};[authentication username=user{i:05} password=not-pw{i}]"))
        .collect();
    sipp_ok(&dir, "register_badpass.xml", &rows, 50, 50, addr, &[]);
    assert_eq!(rt.directory().aor_count(), 0);
    rt.shutdown().unwrap();
}

/// SHA-256 (and MD5) digest against an independent client: a Python script
/// using hashlib, sharing no code with tether. SIPp 3.6 cannot do SHA-256.
#[test]
fn digest_sha256_and_md5_with_an_independent_client() {
    let dir = TempDir::new("py-digest");
    let creds = dir.file("users", &credentials(2));
    let (rt, addr) = start(&format!(
        "[auth]\nenabled = true\ncredentials = \"{}\"\n",
        creds.display()
    ));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/digest_client.py");
    let run = |user: &str, pass: &str, alg: &str| {
        let out = std::process::Command::new("python3")
            .args([
                script,
                "127.0.0.1",
                &addr.port().to_string(),
                user,
                pass,
                alg,
            ])
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(run("user00000", "pw0", "SHA-256"), "200");
    assert_eq!(run("user00001", "pw1", "MD5"), "200");
    assert_eq!(run("user00001", "wrong", "SHA-256"), "403");
    assert_eq!(rt.directory().aor_count(), 2);
    rt.shutdown().unwrap();
}
