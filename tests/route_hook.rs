//! The routing webhook (`proxy.route_url`) with real peers: SIPp callers
//! and callees, the Python hook server (`tests/fixtures/hookserver.py`)
//! as the routing service. Its answer routes a call to a primary and a
//! fallback target, or rejects it; when it fails (500), answers after
//! `proxy.route_timeout_ms`, or refuses the connection, the call takes the
//! location service's route to the registered callee and is answered.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::hookserver::{have_python, HookServer};
use common::{
    expect_sipp_ok, free_udp_port, have_tools, scenario, spawn_sipp, start_with_api, wait_for,
    wait_metric, TempDir,
};

const DOMAIN: &str = "tether.test";

fn have_peers(test: &str) -> bool {
    have_python(test) && have_tools(test, &[("sipp", "-v", "sip-tester")])
}

/// A proxy scenario (`tests/sipp/proxy/<file>`) as SIPp `name` on `port`,
/// a client of `to` or (None) a server.
fn sipp(
    dir: &TempDir,
    name: &str,
    file: &str,
    port: u16,
    to: Option<SocketAddr>,
) -> std::process::Child {
    let xml = std::fs::read_to_string(scenario(&format!("proxy/{file}")))
        .unwrap()
        .replace("[callee]", "bob")
        .replace("[domain]", DOMAIN);
    spawn_sipp(dir, name, &xml, port, 1, to)
}

/// Registers bob@DOMAIN from `port` (where his SIPp UAS then listens):
/// tether sends to the address a REGISTER came from.
fn register_bob(tether: SocketAddr, port: u16) {
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    let msg = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKrb{port};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@{DOMAIN}>;tag=r1\r\nTo: <sip:bob@{DOMAIN}>\r\n\
Call-ID: rb-{port}\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{port}>\r\n\
Expires: 300\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), tether).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("tether answers the REGISTER");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
}

/// One call through a tether asking `route_url`: bob registered (his UAS
/// answers), the caller expects `caller_file`'s outcome; then the route
/// counters are as given (answered, defaulted).
fn one_call(route_url: &str, caller_file: &str, uas: &[(u16, &str)], counts: (u64, u64)) {
    let (rt, addr, api, base) = start_with_api(&format!(
        "[registrar]\ndomains = [\"{DOMAIN}\"]\n[keepalive]\ninterval_ms = 0\n\
[proxy]\nroute_url = \"{route_url}\"\nroute_timeout_ms = 500\n"
    ));
    let dir = TempDir::new("route-hook");
    let bob = free_udp_port();
    register_bob(addr, bob);
    let mut servers = vec![(
        "bob".to_string(),
        sipp(&dir, "bob", "uas_answer.xml", bob, None),
    )];
    for (port, file) in uas {
        let name = format!("uas{port}");
        servers.push((name.clone(), sipp(&dir, &name, file, *port, None)));
    }
    // The servers have bound their ports before the caller sends.
    let ports: Vec<u16> = std::iter::once(bob)
        .chain(uas.iter().map(|u| u.0))
        .collect();
    let bound = wait_for(Duration::from_secs(5), || {
        ports
            .iter()
            .all(|p| UdpSocket::bind(("127.0.0.1", *p)).is_err())
    });
    assert!(bound, "SIPp servers did not bind {ports:?}");
    let caller = sipp(&dir, "alice", caller_file, free_udp_port(), Some(addr));
    expect_sipp_ok(&dir, "alice", caller, 30);
    wait_metric(&base, "tether_route_webhook_answered_total", counts.0);
    wait_metric(&base, "tether_route_webhook_defaulted_total", counts.1);
    for (name, mut child) in servers {
        // Each took its one call, or was never called (bob, when routed elsewhere).
        if name == "bob" && counts.1 == 0 {
            let _ = child.kill();
            let _ = child.wait();
        } else {
            expect_sipp_ok(&dir, &name, child, 10);
        }
    }
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn the_routing_webhook_routes_to_primary_then_fallback_or_rejects() {
    if !have_peers("the_routing_webhook_routes_to_primary_then_fallback_or_rejects") {
        return;
    }
    let (busy, pbx) = (free_udp_port(), free_udp_port());
    let route = serde_json::json!({"targets": [
        {"uri": format!("sip:bob@127.0.0.1:{busy}")},
        {"uri": format!("sip:bob@127.0.0.1:{pbx}"), "fallback": true},
    ]});
    let rules = serde_json::json!({
        "/route": {"status": 200, "body": route.to_string()},
        "/reject": {"status": 200, "body": r#"{"reject": {"code": 404, "reason": "Not Here"}}"#},
    });
    let hs = HookServer::start("route-hook", &rules.to_string(), None);
    // The primary is busy (486): the fallback answers.
    one_call(
        &hs.url("/route"),
        "uac_call.xml",
        &[(busy, "uas_busy.xml"), (pbx, "uas_answer.xml")],
        (1, 0),
    );
    one_call(&hs.url("/reject"), "invite_404.xml", &[], (1, 0));
    // The service was asked with the call's facts.
    let asked = hs.wait_requests(2, 5);
    let body: serde_json::Value = serde_json::from_str(asked[0]["body"].as_str().unwrap()).unwrap();
    assert!(body.to_string().contains("bob"), "{body}");
}

#[test]
fn a_failed_late_or_refused_routing_webhook_takes_the_default_route() {
    if !have_peers("a_failed_late_or_refused_routing_webhook_takes_the_default_route") {
        return;
    }
    let rules = serde_json::json!({
        "/fail": {"status": 500},
        "/slow": {"status": 200, "delay_ms": 3000,
                  "body": r#"{"reject": {"code": 403, "reason": "Too Late"}}"#},
    });
    let hs = HookServer::start("route-hook-fail", &rules.to_string(), None);
    one_call(&hs.url("/fail"), "uac_call.xml", &[], (0, 1));
    one_call(&hs.url("/slow"), "uac_call.xml", &[], (0, 1));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}/route", dead.local_addr().unwrap());
    drop(dead);
    one_call(&refused, "uac_call.xml", &[], (0, 1));
}
