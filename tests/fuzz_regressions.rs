//! Replays every input the fuzzer ever found troublesome and the hand-made
//! nasty datagrams (fuzz/regressions/), plus the RFC 4475 corpus, through the
//! same entry point the fuzz target uses: none may panic. Then the
//! regressions go to a running tether, and each is judged by what the codec
//! makes of it: a request that does not parse or validate is answered 400
//! (505 for a bad version) with the codec's reason, or dropped and counted.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use tether::sip::{self, Limits, ParseError};

/// The files of `dir` (README aside), by name, so failures name them.
fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn replay_dir(dir: &Path) -> usize {
    let files = inputs(dir);
    for (_, bytes) in &files {
        sip::fuzz_entry(bytes);
        // Every prefix too: truncation is the commonest corruption on the wire.
        for cut in (0..bytes.len()).step_by(7) {
            sip::fuzz_entry(&bytes[..cut]);
        }
    }
    files.len()
}

fn regressions() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions")
}

#[test]
fn fuzz_regressions_do_not_panic() {
    let n = replay_dir(&regressions());
    assert!(
        n > 0,
        "fuzz/regressions/ holds no input: this test would pass on nothing \
(see fuzz/regressions/README.md for how inputs get there)"
    );
}

#[test]
fn torture_corpus_and_its_prefixes_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(replay_dir(&root.join("tests/fixtures/rfc4475")) >= 49);
}

/// What the codec makes of a datagram, with tether's parser limits.
#[derive(Debug)]
enum Verdict {
    Stun,
    /// Nothing but line ends: an RFC 5626 CRLF keepalive ping.
    Ping,
    /// A response that splits into start line and headers.
    Response,
    /// A request that parses and validates.
    Valid,
    /// Anything else (a request or not) that fails to parse or validate.
    Invalid(ParseError),
}

fn verdict(bytes: &[u8], limits: &Limits) -> Verdict {
    if tether::nat::stun::is_stun(bytes) {
        return Verdict::Stun;
    }
    match sip::parse_with(bytes, limits) {
        Err(ParseError::Empty) => Verdict::Ping,
        Err(e) => Verdict::Invalid(e),
        Ok(m) if m.status().is_some() => Verdict::Response,
        Ok(m) => match m.validate() {
            Ok(_) => Verdict::Valid,
            Err(e) => Verdict::Invalid(e),
        },
    }
}

/// The node's counters from `/metrics`.
fn metrics(base: &str) -> std::collections::HashMap<String, u64> {
    let (status, text) = common::http("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

#[test]
fn each_regression_is_answered_400_or_dropped_and_counted() {
    let files = inputs(&regressions());
    assert!(!files.is_empty(), "fuzz/regressions/ holds no input");
    let limits = tether::config::Config::default().limits();
    let (rt, addr, api, base) = common::start_with_api("");
    let m0 = metrics(&base);
    // One socket per input, so every answer is known by what it answers.
    let socks: Vec<UdpSocket> = files
        .iter()
        .map(|(name, bytes)| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.send_to(bytes, addr)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            s
        })
        .collect();
    let delta = |m: &std::collections::HashMap<String, u64>, k: &str| {
        m.get(k).copied().unwrap_or(0) - m0.get(k).copied().unwrap_or(0)
    };
    // Workers publish their counters about once a second.
    let mut m1 = m0.clone();
    common::wait_until(10, "tether to count every datagram", || {
        m1 = metrics(&base);
        delta(&m1, "tether_datagrams_received_total") >= files.len() as u64
    });
    std::thread::sleep(Duration::from_millis(100));

    let (mut stun, mut pings, mut responses, mut answered, mut unanswered) = (0, 0, 0, 0, 0);
    let mut buf = vec![0u8; 65536];
    for ((name, bytes), sock) in files.iter().zip(&socks) {
        sock.set_nonblocking(true).unwrap();
        let reply = sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec());
        let shown = || String::from_utf8_lossy(reply.as_deref().unwrap_or(b"(none)")).into_owned();
        let v = verdict(bytes, &limits);
        // Printed by the test runner only when the test fails.
        eprintln!("{name}: {v:?} -> {}", shown().lines().next().unwrap_or(""));
        match v {
            Verdict::Stun => stun += 1,
            Verdict::Ping => {
                pings += 1;
                assert_eq!(
                    reply.as_deref(),
                    Some(&b"\r\n"[..]),
                    "{name}: a ping gets a pong"
                );
            }
            Verdict::Response => {
                responses += 1;
                assert!(
                    reply.is_none(),
                    "{name}: a response is never answered: {}",
                    shown()
                );
            }
            Verdict::Valid => {
                let status = reply.as_deref().and_then(|r| sip::parse(r).ok()?.status());
                assert!(
                    status.is_some_and(|c| c >= 200),
                    "{name}: a valid request gets a final response: {}",
                    shown()
                );
            }
            Verdict::Invalid(e) => match &reply {
                None => unanswered += 1,
                Some(r) => {
                    answered += 1;
                    let m = sip::parse(r).unwrap_or_else(|pe| {
                        panic!("{name}: the answer does not parse ({pe:?}): {}", shown())
                    });
                    let sip::StartLine::Response { code, reason } = m.start else {
                        panic!("{name}: answered with a request: {}", shown());
                    };
                    assert!(
                        code == 400 || code == 505,
                        "{name}: {e:?} must get 400 (505 for a version), got {}",
                        shown()
                    );
                    assert_eq!(
                        reason,
                        e.reason(),
                        "{name}: the answer names the codec's reason"
                    );
                }
            },
        }
    }
    assert_eq!(
        delta(&m1, "tether_datagrams_received_total"),
        files.len() as u64
    );
    assert_eq!(delta(&m1, "tether_stun_requests_total"), stun);
    assert_eq!(delta(&m1, "tether_crlf_pings_total"), pings);
    assert_eq!(delta(&m1, "tether_responses_received_total"), responses);
    assert_eq!(
        delta(&m1, "tether_malformed_answered_total"),
        answered,
        "every 400/505 sent is counted"
    );
    assert_eq!(
        delta(&m1, "tether_malformed_dropped_total") + delta(&m1, "tether_oversize_dropped_total"),
        unanswered,
        "every invalid datagram left unanswered is a counted drop"
    );
    assert!(answered > 0 && unanswered > 0, "both outcomes exercised");
    api.shutdown();
    rt.shutdown().expect("no worker panicked");
}
