//! Calls across the nodes of a cluster (issue 18): SIPp devices register
//! at one tether and are called through another, which finds the owner in
//! Redis Cluster (the 3-master bed) and forwards the call to it over SIP.
//! Three tethers run in this process, each on its own loopback port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::redis_bed::{have_redis, Cluster};
use common::{expect_sipp_ok, free_udp_port, metric, spawn_sipp, wait_metric, wait_until, TempDir};
use tether::config::Config;
use tether::runtime::Runtime;

const DOMAIN: &str = "tether.test";

/// One node: its runtime, SIP address, API (kept alive) and API base URL.
struct Node {
    _rt: Runtime,
    sip: SocketAddr,
    _api: tether::api::http::Api,
    base: String,
}

/// Node `id` of the cluster on `bed`, listening on a port of its own
/// (which it advertises); `extra` is appended TOML (no `[cluster]`,
/// `[proxy]` keys go in `proxy`).
fn node(bed: &Cluster, id: u32, proxy: &str) -> Node {
    let port = free_udp_port();
    let seeds: Vec<String> = bed.urls().iter().map(|u| format!("{u:?}")).collect();
    let toml = format!(
        "[sip]\nlisten = [\"127.0.0.1:{port}\"]\n[runtime]\nworkers = 1\n\
[api]\nlisten = \"127.0.0.1:0\"\nclients = [{{ name = \"as1\", token = \"{}\" }}]\n\
[registrar]\ndomains = [\"{DOMAIN}\"]\n[keepalive]\ninterval_ms = 0\n[media]\nmode = \"never\"\n\
[proxy]\n{proxy}\n[push]\nnode = {id}\n\
[cluster]\nenabled = true\nnode = {id}\nredis = [{}]\nadvertise = \"127.0.0.1:{port}\"\n\
heartbeat_ms = 200\nheartbeat_ttl_ms = 1000\nbuckets = 16\ntimeout_ms = 300\n\
lookup_cache_ms = 60000\nlookup_timeout_ms = 1000\n",
        common::API_TOKEN,
        seeds.join(", ")
    );
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let rt = Runtime::start(&cfg).expect("tether starts");
    let sip = rt.local_addrs[0];
    let api = tether::api::http::Api::start(cfg.api_listen().unwrap(), &cfg, rt.control())
        .expect("api starts");
    let base = format!("http://{}", api.addr);
    Node {
        _rt: rt,
        sip,
        _api: api,
        base,
    }
}

/// A scenario of tests/sipp/proxy with its keys filled in.
fn scenario(name: &str, callee: &str, contact_port: u16) -> String {
    let xml = std::fs::read_to_string(common::scenario(&format!("proxy/{name}"))).unwrap();
    xml.replace("[callee]", callee)
        .replace("[domain]", DOMAIN)
        .replace("[contact_port]", &contact_port.to_string())
}

/// Registers (or with `expires` 0 removes) `callee` at `at` from
/// 127.0.0.1:`port`, naming that port in its Contact.
fn register(dir: &TempDir, name: &str, at: SocketAddr, callee: &str, port: u16, expires: u32) {
    let xml = scenario("register.xml", callee, port)
        .replace("Expires: 3600", &format!("Expires: {expires}"));
    let child = spawn_sipp(dir, name, &xml, port, 1, Some(at));
    expect_sipp_ok(dir, name, child, 30);
}

/// Whether something is bound to 127.0.0.1:`port` (UDP), from
/// /proc/net/udp so the probe cannot take the port itself.
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// A SIPp callee answering one call on `port`, listening once this returns.
fn callee(dir: &TempDir, name: &str, port: u16) -> std::process::Child {
    let child = spawn_sipp(
        dir,
        name,
        &scenario("uas_answer.xml", "carol", 0),
        port,
        1,
        None,
    );
    wait_until(10, &format!("sipp {name} listening on {port}"), || {
        udp_bound(port)
    });
    child
}

/// A SIPp caller placing one call to `callee` through `via`.
fn call(dir: &TempDir, name: &str, via: SocketAddr, callee: &str) -> std::process::Child {
    let xml = scenario("uac_call.xml", callee, 0);
    spawn_sipp(dir, name, &xml, free_udp_port(), 1, Some(via))
}

/// Every node has written its heartbeat and read the others' (the node
/// list is read once per heartbeat interval, 200 ms here).
fn settle(nodes: &[&Node]) {
    for n in nodes {
        wait_until(10, "a heartbeat", || {
            metric(&n.base, "tether_cluster_heartbeats_total") >= 2
        });
    }
    std::thread::sleep(Duration::from_millis(800));
}

/// carol registers at node B and is called through node A: A looks her
/// owner up, forwards the INVITE to B, B sends it over her path; the call
/// is answered and the caller's BYE reaches her through both. Then she
/// moves to node C: A's cached owner (B) answers 404, A drops it, looks
/// her up once more and the call reaches her at C.
#[test]
fn a_call_crosses_nodes_and_follows_the_device_when_it_moves() {
    if !have_redis("a_call_crosses_nodes_and_follows_the_device_when_it_moves") {
        return;
    }
    let bed = Cluster::start("xcall");
    let (a, b, c) = (node(&bed, 1, ""), node(&bed, 2, ""), node(&bed, 3, ""));
    settle(&[&a, &b, &c]);
    let dir = TempDir::new("xcall");
    let port = free_udp_port();
    register(&dir, "reg-b", b.sip, "carol", port, 3600);
    wait_metric(&b.base, "tether_cluster_owned", 1);
    let uas = callee(&dir, "uas-b", port);
    let uac = call(&dir, "uac-1", a.sip, "carol");
    expect_sipp_ok(&dir, "uac-1", uac, 30);
    expect_sipp_ok(&dir, "uas-b", uas, 30);
    wait_metric(&a.base, "tether_cluster_calls_forwarded_total", 1);
    wait_metric(&a.base, "tether_cluster_calls_waited_total", 1);
    wait_metric(&b.base, "tether_cluster_calls_from_peers_total", 1);
    wait_metric(&a.base, "tether_calls_answered_total", 1);
    wait_metric(&b.base, "tether_calls_answered_total", 1);
    wait_metric(&a.base, "tether_dialogs", 0);
    wait_metric(&b.base, "tether_dialogs", 0);

    // carol moves from B to C; A still has B cached.
    register(&dir, "unreg-b", b.sip, "carol", port, 0);
    register(&dir, "reg-c", c.sip, "carol", port, 3600);
    wait_metric(&b.base, "tether_cluster_owned", 0);
    wait_metric(&c.base, "tether_cluster_owned", 1);
    let uas = callee(&dir, "uas-c", port);
    let uac = call(&dir, "uac-2", a.sip, "carol");
    expect_sipp_ok(&dir, "uac-2", uac, 30);
    expect_sipp_ok(&dir, "uas-c", uas, 30);
    wait_metric(&a.base, "tether_cluster_owner_retries_total", 1);
    wait_metric(&a.base, "tether_cluster_calls_forwarded_total", 3);
    wait_metric(&c.base, "tether_cluster_calls_from_peers_total", 1);
    wait_metric(&a.base, "tether_cluster_fallback_upstream_total", 0);
}

/// Redis stopped: node A cannot look carol's owner up and sends the call
/// to its upstream (a SIPp callee); node B, without an upstream, answers a
/// call for A's device 480. Both counted in `/metrics`.
#[test]
fn with_redis_down_calls_for_another_nodes_devices_go_upstream_or_get_480() {
    if !have_redis("with_redis_down_calls_for_another_nodes_devices_go_upstream_or_get_480") {
        return;
    }
    let mut bed = Cluster::start("xdown");
    let up_port = free_udp_port();
    let a = node(&bed, 1, &format!("upstream = [\"127.0.0.1:{up_port}\"]"));
    let b = node(&bed, 2, "");
    settle(&[&a, &b]);
    let dir = TempDir::new("xdown");
    let port = free_udp_port();
    register(&dir, "reg-b", b.sip, "carol", port, 3600);
    wait_metric(&b.base, "tether_cluster_owned", 1);
    register(&dir, "reg-a", a.sip, "dave", free_udp_port(), 3600);
    wait_metric(&a.base, "tether_cluster_owned", 1);
    bed.stop();
    let upstream = callee(&dir, "upstream", up_port);
    let uac = call(&dir, "uac", a.sip, "carol");
    expect_sipp_ok(&dir, "uac", uac, 30);
    expect_sipp_ok(&dir, "upstream", upstream, 30);
    wait_metric(&a.base, "tether_cluster_fallback_upstream_total", 1);
    wait_metric(&a.base, "tether_cluster_calls_forwarded_total", 0);
    assert!(metric(&a.base, "tether_cluster_lookup_errors_total") >= 1);

    let xml = scenario("invite_404.xml", "dave", 0).replace("response=\"404\"", "response=\"480\"");
    let uac = spawn_sipp(&dir, "uac-480", &xml, free_udp_port(), 1, Some(b.sip));
    expect_sipp_ok(&dir, "uac-480", uac, 30);
    wait_metric(&b.base, "tether_cluster_fallback_failed_total", 1);
}
