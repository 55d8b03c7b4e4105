//! Routing to the owner node (issue 18) on a fake clock: the lookup thread
//! is a channel the test reads questions from, its answers go in as
//! `Command::ClusterOwners`, the node list as `Command::ClusterNodes`.

use super::*;
use crate::cluster::keys::stable_hash;
use crate::cluster::lookup::{Node, OwnerAnswer, OwnerCache, OwnerQuery, Remote};
use crate::cluster::Owner;
use crate::endpoint::Command;
use crate::metrics::CoreMetric as M;
use crate::proxy::cluster::ClusterRoute;

const CALLER: &str = "10.0.0.1:5061";
/// Node 2, which owns carol.
const NODE2: &str = "192.0.2.2:5060";
const UPSTREAM: &str = "198.51.100.1:5060";
const TIMEOUT_MS: u64 = 500;

/// Node 1 (us, at `TETHER`), node 2; `ttl_ms` is the owner cache's.
fn cluster_net(upstream: bool, ttl_ms: u64) -> (Net, crossbeam_channel::Receiver<OwnerQuery>) {
    let section = ProxySection {
        upstream: if upstream {
            vec![addr(UPSTREAM)]
        } else {
            vec![]
        },
        ..ProxySection::default()
    };
    let n = Net::build_with(0, section, Arc::new(Directory::new()), None, |cfg| {
        cfg.cluster = Some(ClusterRoute {
            node: 1,
            advertise: TETHER.into(),
            timeout_ms: TIMEOUT_MS,
            max_waiting: 2,
        });
    });
    let (tx, rx) = crossbeam_channel::bounded(16);
    let mut n = n.with_owners(OwnerCache::new(0, Some(tx), ttl_ms, 100));
    let nodes = vec![node(1, TETHER), node(2, NODE2)];
    n.ep.handle_command(n.now, Command::ClusterNodes(nodes.into()));
    (n, rx)
}

fn node(id: u32, a: &str) -> Node {
    Node {
        id,
        addr: Some(addr(a)),
        live: true,
    }
}

fn owned_by(node: u32, a: &str) -> Vec<Remote> {
    vec![Remote {
        device: 7,
        owner: Owner {
            node,
            core: 0,
            expiry: u64::MAX,
        },
        addr: a.into(),
    }]
}

fn answer_owners(n: &mut Net, aor: &str, owners: Option<Vec<Remote>>) -> Vec<Sent> {
    let a = OwnerAnswer {
        aor: stable_hash(aor.as_bytes()),
        owners,
    };
    n.ep.handle_command(n.now, Command::ClusterOwners(a));
    n.drain()
}

fn asked(rx: &crossbeam_channel::Receiver<OwnerQuery>) -> Vec<String> {
    rx.try_iter().map(|q| q.aor.to_string()).collect()
}

#[test]
fn a_call_for_another_nodes_user_waits_for_its_owner_and_is_looked_up_once_more_when_stale() {
    let (mut n, rx) = cluster_net(false, 2000);
    let out = n.send(CALLER, &invite("carol", "x1", ""));
    assert_eq!(out.len(), 1, "only the 100 while the owner is looked up");
    assert_eq!(status(&out[0].0), 100);
    assert_eq!(asked(&rx), ["carol@example.com"]);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 1);

    let out = answer_owners(&mut n, "carol@example.com", Some(owned_by(2, NODE2)));
    let fwd = one_to(&out, NODE2);
    let m = sip::parse(&fwd).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(m.request_uri_raw(), Some("sip:carol@example.com"));
    assert_eq!(c.max_forwards, Some(69));
    let route: Vec<_> = super::super::forward::routes(&m).collect();
    assert_eq!(route, ["<sip:192.0.2.2:5060;lr;tether-node=1>"]);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 0);

    // The owner no longer has her: the cache entry goes, Redis is asked
    // again; the caller hears nothing of the first 404.
    let out = n.send(NODE2, &answer(&fwd, 404, "n2", "sip:x@192.0.2.2"));
    assert!(
        out.iter().all(|(_, to)| *to != addr(CALLER)),
        "no final yet: {out:#?}"
    );
    assert_eq!(asked(&rx), ["carol@example.com"]);
    // Node 2 still holds the record: tried once more, then its 404 stands.
    let out = answer_owners(&mut n, "carol@example.com", Some(owned_by(2, NODE2)));
    let fwd2 = one_to(&out, NODE2);
    assert_ne!(
        sip::parse(&fwd2).unwrap().top_via().unwrap().branch(),
        m.top_via().unwrap().branch()
    );
    let out = n.send(NODE2, &answer(&fwd2, 404, "n2", "sip:x@192.0.2.2"));
    assert_eq!(status(&one_to(&out, CALLER)), 404);
    assert!(asked(&rx).is_empty(), "looked up once more only");
    assert_eq!(n.ep.metric(M::ClusterWaited), 2);
    assert_eq!(n.ep.metric(M::ClusterForwarded), 2);
    assert_eq!(n.ep.metric(M::ClusterRetried), 1);

    // Known now: the next call goes to node 2 at once, asking nobody.
    let out = n.send(CALLER, &invite("carol", "x2", ""));
    one_to(&out, NODE2);
    assert!(asked(&rx).is_empty());
}

#[test]
fn a_lookup_that_fails_or_is_late_takes_the_upstream_or_480_and_the_wait_is_bounded() {
    // No upstream: 480 at lookup_timeout_ms, and a late answer changes nothing.
    let (mut n, rx) = cluster_net(false, 2000);
    n.send(CALLER, &invite("carol", "t1", ""));
    assert!(n.advance(n.now + TIMEOUT_MS - 1).is_empty());
    let out = n.advance(n.now + 1);
    assert_eq!(status(&one_to(&out, CALLER)), 480);
    assert_eq!(n.ep.metric(M::ClusterLookupTimeouts), 1);
    assert_eq!(n.ep.metric(M::ClusterFallbackFailed), 1);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 0);
    assert_eq!(asked(&rx).len(), 1);
    let late = answer_owners(&mut n, "carol@example.com", Some(owned_by(2, NODE2)));
    assert!(late.is_empty(), "{late:#?}");

    // With an upstream: Redis not answering sends the call there.
    let (mut n, rx) = cluster_net(true, 2000);
    n.send(CALLER, &invite("dave", "u1", ""));
    let out = answer_owners(&mut n, "dave@example.com", None);
    one_to(&out, UPSTREAM);
    assert_eq!(n.ep.metric(M::ClusterFallbackUpstream), 1);
    assert_eq!(asked(&rx).len(), 1);

    // At most two wait (lookup_waiting): the third goes upstream at once;
    // a CANCEL ends a wait.
    let (mut n, rx) = cluster_net(true, 2000);
    let first = invite("e1", "w1", "");
    n.send(CALLER, &first);
    n.send(CALLER, &invite("e2", "w2", ""));
    let out = n.send(CALLER, &invite("e3", "w3", ""));
    one_to(&out, UPSTREAM);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 2);
    assert_eq!(asked(&rx).len(), 3);
    let cancel = String::from_utf8(first)
        .unwrap()
        .replace("INVITE sip", "CANCEL sip")
        .replace("1 INVITE", "1 CANCEL");
    let out = n.send(CALLER, cancel.as_bytes());
    let codes: Vec<u16> = out.iter().map(|(b, _)| status(b)).collect();
    assert_eq!(codes, [200, 487]);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 1);
    // No other node owns e2: routed as without a cluster (404 here).
    let out = answer_owners(&mut n, "e2@example.com", Some(vec![]));
    assert_eq!(status(&one_to(&out, CALLER)), 404);
    assert_eq!(n.ep.metric(M::ClusterWaiting), 0);
}

#[test]
fn a_record_naming_this_node_is_not_followed_and_nothing_is_forwarded_to_ourselves() {
    let (mut n, rx) = cluster_net(false, 2000);
    n.send(CALLER, &invite("carol", "s1", ""));
    assert_eq!(asked(&rx).len(), 1);
    // Redis says we own her (stale), at our own address: 404 as without a cluster.
    let out = answer_owners(&mut n, "carol@example.com", Some(owned_by(1, TETHER)));
    assert_eq!(status(&one_to(&out, CALLER)), 404);
    // Another node id at our address: not followed either.
    n.send(CALLER, &invite("carl", "s2", ""));
    assert_eq!(asked(&rx).len(), 1);
    let out = answer_owners(&mut n, "carl@example.com", Some(owned_by(3, TETHER)));
    assert_eq!(status(&one_to(&out, CALLER)), 404);
    // Known now (nobody else): answered at once, nobody asked.
    let out = n.send(CALLER, &invite("carol", "s3", ""));
    assert_eq!(status(&out[0].0), 404);
    assert!(asked(&rx).is_empty());
    assert_eq!(n.ep.metric(M::ClusterForwarded), 0);
}

#[test]
fn only_a_peer_at_its_own_address_can_mark_a_request_as_routed_by_the_cluster() {
    let (mut n, rx) = cluster_net(false, 2000);
    n.register("bob", "10.0.0.2:5062", "10.0.0.2:5062");
    let mark = "Route: <sip:192.0.2.1:5060;lr;tether-node=2>\r\n";
    // From node 2: to bob's binding; a user we lack is 404 at once (the
    // routing node looks up again), never looked up here.
    let out = n.send(NODE2, &invite("bob", "p1", mark));
    let fwd = one_to(&out, "10.0.0.2:5062");
    let m = sip::parse(&fwd).unwrap();
    assert_eq!(
        super::super::forward::routes(&m).count(),
        0,
        "our Route popped"
    );
    let out = n.send(NODE2, &invite("zed", "p2", mark));
    assert_eq!(status(&out.last().unwrap().0), 404);
    assert!(asked(&rx).is_empty());
    assert_eq!(n.ep.metric(M::ClusterFromPeers), 2);
    // The same marker from anyone else is ignored: the cluster is asked.
    let out = n.send(CALLER, &invite("zed", "p3", mark));
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(asked(&rx), ["zed@example.com"]);
    // A marker naming another node than the sender is ignored too.
    let wrong = "Route: <sip:192.0.2.1:5060;lr;tether-node=3>\r\n";
    n.send(NODE2, &invite("yan", "p4", wrong));
    assert_eq!(asked(&rx), ["yan@example.com"]);
}

#[test]
fn a_call_to_another_node_is_not_anchored_here_the_owner_anchors_it() {
    use crate::media::table::{Table, TableConfig};
    let (mut n, rx) = cluster_net(true, 2000);
    let dir = n.dir.clone();
    let mut cfg = ProxyConfig::from_section(
        &ProxySection {
            upstream: vec![addr(UPSTREAM)],
            ..ProxySection::default()
        },
        &["example.com".to_string()],
        Default::default(),
    );
    cfg.media = crate::media::Mode::Nat;
    cfg.cluster = Some(ClusterRoute {
        node: 1,
        advertise: TETHER.into(),
        timeout_ms: TIMEOUT_MS,
        max_waiting: 2,
    });
    let mut proxy = Proxy::new(0, Arc::new(cfg), dir, [3; 32], &[addr(TETHER)], 9);
    proxy.set_cluster_nodes(vec![node(1, TETHER), node(2, NODE2)].into());
    let table = Table::new(TableConfig {
        addr: "192.0.2.1".parse().unwrap(),
        max_pairs: 4,
        ..Default::default()
    });
    let ep = std::mem::replace(&mut n.ep, Net::with(ProxySection::default()).ep);
    n.ep = ep.with_proxy(proxy).with_media(table);
    n.ep.media_opened(&[40000, 40002, 40004, 40006]);
    // The caller is behind a NAT (its SDP names a private address).
    let natted = |branch: &str, user: &str| {
        let body = "v=0\r\no=- 1 1 IN IP4 192.168.0.9\r\ns=-\r\nc=IN IP4 192.168.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        String::from_utf8(invite(user, branch, ""))
            .unwrap()
            .replace(
                "Content-Length: 4\r\n\r\nv=0\n",
                &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
            )
            .into_bytes()
    };
    // To node 2: not anchored here (node 2 anchors what needs it) …
    n.send(CALLER, &natted("m1", "carol"));
    let out = answer_owners(&mut n, "carol@example.com", Some(owned_by(2, NODE2)));
    let fwd = one_to(&out, NODE2);
    assert!(
        text(&fwd).contains("c=IN IP4 192.168.0.9"),
        "{}",
        text(&fwd)
    );
    assert_eq!(n.ep.media().sessions(), 0);
    // … but upstream, when the lookup fails, as any call.
    n.send(CALLER, &natted("m2", "dave"));
    assert_eq!(asked(&rx).len(), 2);
    let out = answer_owners(&mut n, "dave@example.com", None);
    let up = one_to(&out, UPSTREAM);
    assert!(!text(&up).contains("c=IN IP4 192.168.0.9"), "{}", text(&up));
    assert_eq!(n.ep.media().sessions(), 1);
}

/// A core of node `id` at `at` holding calls (`[push]`, node `id`, the
/// bridge keys every node shares).
fn holding_node(id: u32, at: &str) -> (Net, crossbeam_channel::Receiver<OwnerQuery>) {
    use crate::proxy::hold::HoldSettings;
    let n = Net::build_with(
        0,
        ProxySection::default(),
        Arc::new(Directory::new()),
        None,
        |cfg| {
            cfg.advertise = Some(at.into());
            cfg.hold = Some(Arc::new(HoldSettings {
                keys: Arc::new(crate::hold::token::BridgeKeys::new(id, &[(1, [7u8; 32])])),
                node: id,
                ..super::hold::hold_settings()
            }));
            cfg.cluster = Some(ClusterRoute {
                node: id,
                advertise: at.into(),
                timeout_ms: TIMEOUT_MS,
                max_waiting: 2,
            });
        },
    );
    let (tx, rx) = crossbeam_channel::bounded(16);
    let mut n = n.with_owners(OwnerCache::new(0, Some(tx), 2000, 100));
    n.ep.set_unix_epoch(1_800_000_000_000);
    let nodes = vec![node(1, TETHER), node(2, NODE2)];
    n.ep.handle_command(n.now, Command::ClusterNodes(nodes.into()));
    (n, rx)
}

/// A call held on node 2; the woken device calls back through node 1
/// (its token names node 2): node 1 forwards the call-back to node 2 with
/// the device's flow, node 2 bridges the held INVITE back through node 1,
/// which sends it over that flow.
#[test]
fn a_bridge_call_back_reaching_another_node_is_forwarded_to_the_node_holding_the_call() {
    let (mut a, _) = holding_node(1, TETHER);
    let (mut b, _) = holding_node(2, NODE2);
    super::hold::asleep_bob(&mut b);
    let push = super::hold::hold_call(&mut b, "h1");
    let uri = push["bridge_uri"].as_str().unwrap().to_owned();
    let phone = "198.51.100.9:5070";
    let callback = format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKcb1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=cb\r\nTo: <{uri}>\r\nCall-ID: cb-1\r\n\
CSeq: 1 OPTIONS\r\nContact: <sip:bob@10.0.0.2:5062>\r\nContent-Length: 0\r\n\r\n"
    );
    let out = a.send(phone, callback.as_bytes());
    let fwd = one_to(&out, NODE2);
    assert!(
        text(&fwd).contains(";tether-node=1;tether-flow="),
        "{}",
        text(&fwd)
    );
    assert_eq!(a.ep.metric(M::ClusterBridgeForwarded), 1);

    // Node 2 bridges: the held INVITE goes to node 1 with node 1's flow as
    // its Route, the call-back is answered (through node 1).
    let out = b.send(TETHER, &fwd);
    assert_eq!(b.ep.metric(M::HoldsBridged), 1);
    let held = out
        .iter()
        .find(|(m, to)| *to == addr(TETHER) && text(m).starts_with("INVITE "))
        .expect("the held INVITE, to node 1")
        .0
        .clone();
    assert!(
        text(&held).contains("@192.0.2.1:5060;lr>"),
        "{}",
        text(&held)
    );
    let ok = out
        .iter()
        .find(|(m, _)| sip::parse(m).unwrap().status() == Some(200))
        .expect("the call-back's 200")
        .0
        .clone();
    let out = a.send(NODE2, &ok);
    assert_eq!(status(&one_to(&out, phone)), 200);

    // Node 1 sends the held INVITE over the device's flow.
    let out = a.send(NODE2, &held);
    let to_phone = one_to(&out, phone);
    assert!(text(&to_phone).starts_with("INVITE sip:bob@10.0.0.2:5062 "));
    // The same Route from anyone but a peer steers nothing.
    let mut a2 = holding_node(1, TETHER).0;
    let out = a2.send("203.0.113.66:5060", &held);
    assert!(out.iter().all(|(_, to)| *to != addr(phone)), "{out:#?}");
}
