//! `tether bench rtp` end to end, through the built binary: against the
//! real rtpengine (Debian `rtpengine-daemon`, userspace only, calls set up
//! over ng), and against a tiny latching relay in the test for the
//! fixed-port mode. Both check that packets came through both ways on
//! every stream with no payload changed; no timing is asserted.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::free_udp_port;
use common::rtpengine::{have_rtpengine, Daemon};

/// Media ports of this test's rtpengine (other tests use other ranges).
const PORT_MIN: u16 = 42000;
const PORT_MAX: u16 = 42999;

/// Runs `tether bench rtp ARGS --json` and returns its report.
fn bench_rtp(args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["bench", "rtp", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tether bench rtp failed: {stderr}");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (report, stderr)
}

fn num(r: &serde_json::Value, key: &str) -> u64 {
    r[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {r}"))
}

/// A `--calls 5` report: every call set up and deleted, every one of the
/// 20 flows (5 calls × 2 streams × 2 directions) got packets through, none
/// changed or from a stranger. `context` goes in the failure messages.
fn assert_five_calls_all_through(r: &serde_json::Value, context: &str) {
    assert_eq!(num(r, "calls_set_up"), 5, "{context}");
    assert_eq!(num(r, "flows"), 20, "5 calls × 2 streams × 2 directions");
    assert!(num(r, "received") > 0, "{context}");
    assert_eq!(num(r, "corrupted"), 0, "{context}");
    assert_eq!(num(r, "foreign"), 0, "{context}");
    assert_eq!(
        num(&r["spread"], "silent"),
        0,
        "every flow got through: {context}"
    );
    assert_eq!(num(r, "calls_deleted"), 5, "{context}");
}

#[test]
fn rtp_through_rtpengine_every_stream_both_ways_payloads_intact() {
    if !have_rtpengine("rtp_through_rtpengine_every_stream_both_ways_payloads_intact") {
        return;
    }
    let ng_port = free_udp_port();
    let daemon = Daemon::start("rtpengine-bench", ng_port, (PORT_MIN, PORT_MAX));
    // rtpengine takes a moment to listen; the generator resends its offers
    // for a few seconds, which covers that.
    std::thread::sleep(Duration::from_millis(300));
    let ng = format!("127.0.0.1:{ng_port}");
    let pid = daemon.child.id().to_string();
    let plot = daemon.dir.0.join("rtp.svg");
    let (r, stderr) = bench_rtp(&[
        "--ng",
        &ng,
        "--calls",
        "5",
        "--seconds",
        "2",
        "--server-pid",
        &pid,
        "--plot",
        plot.to_str().unwrap(),
    ]);
    let context = format!("{r:#}\n{stderr}\nrtpengine log:\n{}", daemon.log());
    assert_five_calls_all_through(&r, &context);
    assert!(r["server_cpu_us_per_packet"].as_f64().is_some());
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("forwarded (received) /s"));
}

/// A one-pair latching relay: what arrives on side A goes out of side B to
/// the last source seen on B, and the other way round (the C floor's logic).
fn tiny_relay(stop: Arc<AtomicBool>) -> (u16, std::thread::JoinHandle<u64>) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let base = a.local_addr().unwrap().port();
    // Side B is base + 1; take another pair if that port is busy.
    let b = match UdpSocket::bind(("127.0.0.1", base + 1)) {
        Ok(b) => b,
        Err(_) => return tiny_relay(stop),
    };
    for s in [&a, &b] {
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    }
    let t = std::thread::spawn(move || {
        let mut peers: [Option<SocketAddr>; 2] = [None, None];
        let mut buf = [0u8; 2048];
        let mut forwarded = 0;
        let socks = [a, b];
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            for side in 0..2 {
                while let Ok((n, from)) = socks[side].recv_from(&mut buf) {
                    peers[side] = Some(from);
                    if let Some(to) = peers[side ^ 1] {
                        if socks[side ^ 1].send_to(&buf[..n], to).is_ok() {
                            forwarded += 1;
                        }
                    }
                }
            }
        }
        forwarded
    });
    (base, t)
}

#[test]
fn rtp_through_a_fixed_port_relay() {
    let stop = Arc::new(AtomicBool::new(false));
    let (base, relay) = tiny_relay(stop.clone());
    let fixed = format!("127.0.0.1:{base}");
    let (r, stderr) = bench_rtp(&[
        "--fixed",
        &fixed,
        "--pairs",
        "1",
        "--calls",
        "2",
        "--pps",
        "20",
        "--payload",
        "100",
        "--seconds",
        "1",
    ]);
    stop.store(true, Ordering::Relaxed);
    let forwarded = relay.join().unwrap();
    assert_eq!(num(&r, "flows"), 8, "{stderr}");
    assert_eq!(num(&r, "sent"), 160, "8 flows × 20 pps × 1 s");
    // Until both sides have sent, a latching relay has nowhere to send.
    assert!(num(&r, "received") > 100, "{r:#}");
    assert_eq!(num(&r, "received"), forwarded, "{r:#}");
    assert_eq!(num(&r, "corrupted"), 0);
    assert_eq!(r["payload_bytes"], 100);
    assert!(r["relay"].as_str().unwrap().starts_with("fixed 127.0.0.1:"));
}

#[test]
fn rtp_refuses_a_payload_too_short_for_the_stamp() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "bench",
            "rtp",
            "--fixed",
            "127.0.0.1:40000",
            "--payload",
            "10",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("payload must be"));
}

/// The same load through tether's own relay, set up over its `ng` door.
#[test]
fn rtp_through_tether_every_stream_both_ways_payloads_intact() {
    let ng_port = free_udp_port();
    let (rt, _) = common::start(&format!(
        "[media]\nng_listen = \"127.0.0.1:{ng_port}\"\nports = \"44000-44999\"\naddress = \"127.0.0.1\"\n"
    ));
    let ng = format!("127.0.0.1:{ng_port}");
    let pid = std::process::id().to_string();
    let (r, stderr) = bench_rtp(&[
        "--ng",
        &ng,
        "--calls",
        "5",
        "--seconds",
        "2",
        "--server-pid",
        &pid,
    ]);
    assert_five_calls_all_through(&r, &format!("{r:#}\n{stderr}"));
    rt.shutdown().unwrap();
}
