//! tether as a cluster on Redis Cluster: the 3-master test bed, ownership
//! records published by the registrar, the backlog across a Redis outage.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::redis_bed::{have_redis, Cluster};
use common::{metric, post_job, start_with_api, wait_for, wait_job, wait_metric, wait_until};
use tether::cluster::keys::bucket_key;
use tether::cluster::lookup::{OwnerQuery, Remote, Resolver};
use tether::cluster::{Owner, RecordId};
use tether::endpoint::Command;

/// The bed itself: three masters, every slot served, a key written through
/// one master readable through the cluster.
#[test]
fn redis_bed_is_a_working_cluster() {
    if !have_redis("redis_bed_is_a_working_cluster") {
        return;
    }
    let mut bed = Cluster::start("bed");
    let info = bed.cli(0, &["cluster", "info"]);
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
    assert!(info.contains("cluster_size:3"), "{info}");
    // -c follows MOVED, so the key lands on whichever master owns its slot.
    assert_eq!(bed.cli(1, &["-c", "set", "bed:k", "v"]).trim(), "OK");
    assert_eq!(bed.cli(2, &["-c", "get", "bed:k"]).trim(), "v");
    bed.stop();
    assert_eq!(bed.cli(0, &["ping"]).trim(), "", "a stopped master answers");
    bed.restart();
    assert_eq!(bed.cli(0, &["ping"]).trim(), "PONG");
}

/// Few buckets, so that `sweep_s = 1` sweeps them all every second cheaply.
const BUCKETS: u32 = 16;

/// `[cluster]` for node `node` of the bed, with short intervals for a test.
fn cluster_toml(bed: &Cluster, node: u32, advertise: &str) -> String {
    let seeds: Vec<String> = bed.urls().iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[registrar]\nmin_expires = 1\n[push]\nnode = {node}\n[cluster]\nenabled = true\nnode = {node}\nredis = [{}]\n\
advertise = \"{advertise}\"\nheartbeat_ms = 200\nheartbeat_ttl_ms = 1000\nrenew_s = 30\nbuckets = {BUCKETS}\nsweep_s = 1\ntimeout_ms = 300\n",
        seeds.join(", ")
    )
}

/// REGISTERs `user` from `sock` at `to` (`expires` 0 removes it); with
/// `instance`, the Contact carries `+sip.instance`. Asserts the 200.
fn register(sock: &UdpSocket, to: SocketAddr, user: &str, instance: Option<&str>, expires: u32) {
    register_with(sock, to, user, instance, expires, "");
}

/// [`register`] with `extra` header lines (each ending in CRLF).
fn register_with(
    sock: &UdpSocket,
    to: SocketAddr,
    user: &str,
    instance: Option<&str>,
    expires: u32,
    extra: &str,
) {
    let port = sock.local_addr().unwrap().port();
    let inst = instance.map_or(String::new(), |i| format!(";+sip.instance=\"<{i}>\""));
    let branch = format!("z9hG4bK{user}{expires}{port}{}", rand_tag());
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: {user}-{port}\r\nCSeq: {} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>{inst}\r\n\
{extra}Expires: {expires}\r\nContent-Length: 0\r\n\r\n",
        rand_tag() % 100_000 + 1
    );
    sock.send_to(msg.as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer to REGISTER");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 200"), "{text}");
}

/// A number that differs from call to call (CSeqs must grow per Call-ID).
fn rand_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// The record of `id` as Redis holds it now (`None` when Redis does not
/// answer).
fn record(bed: &Cluster, id: RecordId) -> Option<Option<Owner>> {
    let client = redis::cluster::ClusterClient::new(bed.urls()).ok()?;
    let mut conn = client.get_connection().ok()?;
    let v: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(bucket_key(id.aor, BUCKETS))
        .arg(&id.field()[..])
        .query(&mut conn)
        .ok()?;
    Some(v.map(|v| Owner::parse(&v).expect("a well-formed record")))
}

fn wait_record(bed: &Cluster, id: RecordId, what: &str, want: impl Fn(Option<Owner>) -> bool) {
    let mut last = None;
    let ok = wait_for(Duration::from_secs(15), || {
        last = record(bed, id);
        last.is_some_and(&want)
    });
    assert!(ok, "{what}: record is {last:?}\n{}", bed.logs());
}

/// Two nodes on the bed: a REGISTER publishes its ownership record (read
/// back with the redis crate), a refresh inside the slack writes nothing,
/// an unregister and an expiry delete it, an expired record of a dead
/// node is swept, a device that
/// moved keeps its new node's record when the old node lets go, and a
/// Redis outage is caught up from the backlog (records lost with Redis's
/// data written again). `/metrics` shows each step. Owner lookups find
/// the owning node's address, and nothing once that node stops. A write
/// Redis refuses outright is counted and not retried.
#[test]
fn ownership_records_follow_the_registrar_across_a_redis_outage() {
    if !have_redis("ownership_records_follow_the_registrar_across_a_redis_outage") {
        return;
    }
    let mut bed = Cluster::start("own");
    let (rt_a, a, _api_a, base_a) = start_with_api(&cluster_toml(&bed, 1, "127.0.0.1:5601"));
    let (rt_b, b, _api_b, base_b) = start_with_api(&cluster_toml(&bed, 2, "127.0.0.1:5602"));

    // Heartbeats and the node list.
    wait_until(10, "both heartbeats", || {
        bed.cli(0, &["-c", "get", "tether:node:1"]).trim() == "127.0.0.1:5601"
            && bed.cli(0, &["-c", "get", "tether:node:2"]).trim() == "127.0.0.1:5602"
    });
    let nodes = bed.cli(0, &["-c", "hgetall", "tether:nodes"]);
    assert!(
        nodes.contains("127.0.0.1:5601") && nodes.contains("127.0.0.1:5602"),
        "{nodes}"
    );
    assert_eq!(metric(&base_a, "tether_cluster_redis_up"), 1);

    // A REGISTER at A publishes {node 1, its core, expiry + slack}.
    let alice = client_socket();
    register(&alice, a, "alice", None, 600);
    let contact = format!("sip:alice@127.0.0.1:{}", alice.local_addr().unwrap().port());
    let alice_id = RecordId::for_contact("alice@127.0.0.1", None, None, &contact);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    wait_record(&bed, alice_id, "alice at node 1", |r| {
        r.is_some_and(|o| o.node == 1 && o.core < 2 && o.expiry >= t0 + 600)
    });
    let ttl: i64 = bed
        .cli(0, &["-c", "ttl", &bucket_key(alice_id.aor, BUCKETS)])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl >= 600, "bucket TTL {ttl} does not cover the binding");
    assert!(metric(&base_a, "tether_cluster_writes_total") >= 1);
    assert_eq!(metric(&base_a, "tether_cluster_owned"), 1);

    // A refresh Redis already covers (records carry 2 * renew_s = 60 s of
    // slack) writes nothing.
    let writes = metric(&base_a, "tether_cluster_writes_total");
    register(&alice, a, "alice", None, 600);
    wait_until(5, "the refresh coalesced", || {
        metric(&base_a, "tether_cluster_coalesced_total") >= 1
    });
    assert_eq!(metric(&base_a, "tether_cluster_writes_total"), writes);

    // An unregister deletes it.
    register(&alice, a, "alice", None, 0);
    wait_record(&bed, alice_id, "alice deleted", |r| r.is_none());
    wait_metric(&base_a, "tether_cluster_deletes_total", 1);

    // An expiry deletes it too.
    let erin = client_socket();
    register(&erin, a, "erin", None, 2);
    let erin_id = RecordId::for_contact(
        "erin@127.0.0.1",
        None,
        None,
        &format!("sip:erin@127.0.0.1:{}", erin.local_addr().unwrap().port()),
    );
    wait_record(&bed, erin_id, "erin at node 1", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    wait_record(&bed, erin_id, "erin expired", |r| r.is_none());
    wait_metric(&base_a, "tether_cluster_deletes_total", 2);

    // A device moving from A to B: B tells A, which drops its binding;
    // B's record stays when A is told to let go again.
    let carol_a = client_socket();
    let carol_b = client_socket();
    let inst = "urn:uuid:00000000-0000-0000-0000-00000000ca01";
    let carol_id = RecordId::for_contact("carol@127.0.0.1", Some(inst), None, "");
    register(&carol_a, a, "carol", Some(inst), 600);
    wait_record(&bed, carol_id, "carol at node 1", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    register(&carol_b, b, "carol", Some(inst), 600);
    wait_record(&bed, carol_id, "carol at node 2", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    wait_metric(&base_a, "tether_cluster_evicted_total", 1);
    assert_eq!(metric(&base_b, "tether_cluster_notices_total"), 1);
    register(&carol_a, a, "carol", Some(inst), 0);
    assert_eq!(metric(&base_a, "tether_cluster_deletes_total"), 2);
    assert_eq!(
        record(&bed, carol_id).flatten().map(|o| o.node),
        Some(2),
        "node 1 deleted node 2's record"
    );

    // A record left by a node that died is swept once past its expiry;
    // live ones stay.
    let ghost = RecordId::for_contact("ghost@127.0.0.1", Some("urn:uuid:ghost"), None, "");
    {
        let client = redis::cluster::ClusterClient::new(bed.urls()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("HSET")
            .arg(bucket_key(ghost.aor, BUCKETS))
            .arg(&ghost.field()[..])
            .arg("9:0:1000")
            .query(&mut conn)
            .unwrap();
    }
    assert!(record(&bed, ghost).flatten().is_some());
    wait_record(&bed, ghost, "the expired record swept", |r| r.is_none());
    // The sweeper counts after Redis answered: the record can be gone first.
    wait_until(5, "a sweep counted", || {
        metric(&base_a, "tether_cluster_swept_total")
            + metric(&base_b, "tether_cluster_swept_total")
            >= 1
    });
    assert_eq!(record(&bed, carol_id).flatten().map(|o| o.node), Some(2));

    // Redis down: the nodes keep serving and keep a backlog.
    let bob = client_socket();
    let bob_id = RecordId::for_contact(
        "bob@127.0.0.1",
        None,
        None,
        &format!("sip:bob@127.0.0.1:{}", bob.local_addr().unwrap().port()),
    );
    register(&bob, b, "bob", None, 600);
    wait_record(&bed, bob_id, "bob at node 2", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    bed.stop();
    wait_metric(&base_a, "tether_cluster_redis_up", 0);
    let dave = client_socket();
    register(&dave, a, "dave", None, 600);
    let dave_id = RecordId::for_contact(
        "dave@127.0.0.1",
        None,
        None,
        &format!("sip:dave@127.0.0.1:{}", dave.local_addr().unwrap().port()),
    );
    wait_until(5, "dave in A's backlog", || {
        metric(&base_a, "tether_cluster_backlog") >= 1
    });
    assert!(metric(&base_a, "tether_cluster_errors_total") >= 1);

    // Redis back (empty): the backlog and every owned record are written.
    bed.restart();
    wait_record(&bed, dave_id, "dave after the outage", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    wait_record(&bed, bob_id, "bob rewritten after the outage", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    wait_record(&bed, carol_id, "carol rewritten after the outage", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    wait_metric(&base_a, "tether_cluster_backlog", 0);
    wait_metric(&base_a, "tether_cluster_redis_up", 1);
    assert_eq!(record(&bed, alice_id), Some(None));
    assert!(metric(&base_b, "tether_cluster_writes_total") >= 3);

    // The owner lookup: bob's device is on node 2, at its advertised address.
    let mut look = Lookups::start(&bed);
    let owners = look.ask("bob@127.0.0.1");
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].owner.node, 2);
    assert_eq!(owners[0].device, bob_id.device);
    assert_eq!(&*owners[0].addr, "127.0.0.1:5602");
    assert!(look.ask("nobody@127.0.0.1").is_empty());
    assert_eq!(metric(&base_a, "tether_cluster_redis_up"), 1);
    // The node list the cores get (the proxy trusts and routes by it).
    look.wait_nodes(&[(1, "127.0.0.1:5601", true), (2, "127.0.0.1:5602", true)]);

    // Node 2 stops (deleting its heartbeat key): its records own nothing.
    rt_b.shutdown().unwrap();
    wait_until(10, "node 2's heartbeat key to go", || {
        bed.cli(0, &["-c", "exists", "tether:node:2"]).trim() == "0"
    });
    wait_until(5, "bob to have no live owner", || {
        look.ask("bob@127.0.0.1").is_empty()
    });
    look.wait_nodes(&[(1, "127.0.0.1:5601", true), (2, "127.0.0.1:5602", false)]);

    // Redis refusing a write outright (a key of the wrong type where a
    // bucket should be) is counted, not retried, and not an outage.
    let frank = client_socket();
    let frank_bucket = bucket_key(
        tether::cluster::keys::stable_hash(b"frank@127.0.0.1"),
        BUCKETS,
    );
    bed.cli(0, &["-c", "del", &frank_bucket]);
    assert_eq!(
        bed.cli(0, &["-c", "set", &frank_bucket, "not a hash"])
            .trim(),
        "OK"
    );
    let errors = metric(&base_a, "tether_cluster_errors_total");
    register(&frank, a, "frank", None, 600);
    wait_until(5, "the refused write counted", || {
        metric(&base_a, "tether_cluster_errors_total") > errors
    });
    wait_metric(&base_a, "tether_cluster_backlog", 0);
    assert_eq!(metric(&base_a, "tether_cluster_redis_up"), 1);
    rt_a.shutdown().unwrap();
}

/// The owner lookup thread with one core's inbox, outside a runtime.
struct Lookups {
    tx: crossbeam_channel::Sender<OwnerQuery>,
    rx: crossbeam_channel::Receiver<Command>,
    /// The last node list the thread handed the core.
    nodes: Option<tether::cluster::lookup::Nodes>,
    _resolver: Resolver,
    _poll: mio::Poll,
}

impl Lookups {
    fn start(bed: &Cluster) -> Lookups {
        let poll = mio::Poll::new().unwrap();
        let waker = std::sync::Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (ctx, crx) = crossbeam_channel::bounded(16);
        let (tx, qrx) = crossbeam_channel::bounded(16);
        let toml = cluster_toml(bed, 1, "127.0.0.1:5601");
        let cfg = tether::config::Config::from_toml(&toml).unwrap();
        let resolver = Resolver::start(
            &cfg.cluster,
            qrx,
            vec![tether::runtime::Inbox::new(ctx, waker)],
            std::sync::Arc::default(),
        )
        .unwrap();
        Lookups {
            tx,
            rx: crx,
            nodes: None,
            _resolver: resolver,
            _poll: poll,
        }
    }

    /// The live owners of `aor` (the lookup must succeed).
    fn ask(&mut self, aor: &str) -> Vec<Remote> {
        self.tx
            .send(OwnerQuery {
                core: 0,
                aor: aor.into(),
            })
            .unwrap();
        loop {
            match self.rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Command::ClusterOwners(a)) => {
                    assert_eq!(a.aor, tether::cluster::keys::stable_hash(aor.as_bytes()));
                    return a.owners.expect("Redis answered the lookup");
                }
                // The thread also hands the cores the node list.
                Ok(Command::ClusterNodes(n)) => self.nodes = Some(n),
                other => panic!("no owner answer: {other:?}"),
            }
        }
    }

    /// Waits (at most 10 s) for a node list as `want` says: (id, address, live).
    fn wait_nodes(&mut self, want: &[(u32, &str, bool)]) {
        let matches = |n: &tether::cluster::lookup::Nodes| {
            n.len() == want.len()
                && n.iter().zip(want).all(|(n, (id, a, live))| {
                    n.id == *id && n.addr == Some(a.parse().unwrap()) && n.live == *live
                })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.nodes.as_ref().is_some_and(matches) {
            assert!(
                std::time::Instant::now() < deadline,
                "node list {:?}, want {want:?}",
                self.nodes
            );
            if let Ok(Command::ClusterNodes(n)) = self.rx.recv_timeout(Duration::from_millis(200)) {
                self.nodes = Some(n);
            }
        }
    }
}

/// With `[persist]` on too, the bindings a node restores at start are
/// published again: Redis lost the record while the node was down (here a
/// FLUSHALL), and the restarted node writes it back without the device
/// registering again. A restored binding whose device registered at another
/// node meanwhile is dropped, and that node's record and binding stay.
#[test]
fn bindings_restored_from_disk_are_published_again() {
    if !have_redis("bindings_restored_from_disk_are_published_again") {
        return;
    }
    let bed = Cluster::start("restore");
    let dir = common::TempDir::new("cluster-persist");
    let toml = format!(
        "{}[persist]\nenabled = true\ndir = \"{}\"\n",
        cluster_toml(&bed, 1, "127.0.0.1:5611"),
        dir.0.display()
    );
    let inst = "urn:uuid:00000000-0000-0000-0000-00000000d0a1";
    let id = RecordId::for_contact("dora@127.0.0.1", Some(inst), None, "");
    let (rt, a, api, _) = start_with_api(&toml);
    register(&client_socket(), a, "dora", Some(inst), 300);
    wait_record(&bed, id, "dora's record", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    api.shutdown();
    rt.shutdown().unwrap();
    for i in 0..3 {
        bed.cli(i, &["flushall"]);
    }
    assert_eq!(record(&bed, id), Some(None), "Redis lost the record");
    let (rt, _, api, _) = start_with_api(&toml);
    wait_record(&bed, id, "dora's record published after the restart", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    api.shutdown();
    rt.shutdown().unwrap();

    // While node 1 is down, dora registers at node 2: node 1's notice
    // waits in Redis for it. Without that notice (deleted here), node 1
    // restarting from disk still does not take dora back: its restored
    // binding finds node 2's live record, keeps it, and drops its own.
    let (rt_b, b, api_b, base_b) = start_with_api(&cluster_toml(&bed, 2, "127.0.0.1:5612"));
    register(&client_socket(), b, "dora", Some(inst), 300);
    wait_record(&bed, id, "dora at node 2", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    wait_metric(&base_b, "tether_cluster_notices_total", 1);
    assert_eq!(bed.cli(0, &["-c", "del", "tether:evict:1"]).trim(), "1");
    let (rt, _, api, base) = start_with_api(&toml);
    wait_metric(&base, "tether_cluster_evicted_total", 1);
    // Counted when sent: the core drops it a moment later.
    wait_until(5, "dora gone from node 1's registrations", || {
        bindings(&base, "dora@127.0.0.1") == 0
    });
    assert_eq!(metric(&base, "tether_cluster_owned"), 0);
    assert_eq!(record(&bed, id).flatten().map(|o| o.node), Some(2));
    assert_eq!(bindings(&base_b, "dora@127.0.0.1"), 1);
    assert_eq!(metric(&base_b, "tether_cluster_evicted_total"), 0);
    api.shutdown();
    rt.shutdown().unwrap();
    api_b.shutdown();
    rt_b.shutdown().unwrap();
}

/// `[cluster]` plus fast keepalive prompts, for the moving-device test
/// (misses never declare a path dead: the test answers prompts only while
/// it reads the device's socket).
fn moving_toml(bed: &Cluster, node: u32, advertise: &str) -> String {
    format!(
        "{}[keepalive]\ninterval_ms = 500\njitter_ms = 100\ntimeout_ms = 300\nmax_misses = 100\n",
        cluster_toml(bed, node, advertise)
    )
}

/// The bindings node `api` lists for `aor`.
fn bindings(api: &str, aor: &str) -> usize {
    let v = common::get_json(&format!("{api}/v1/registrations/{aor}"));
    v["bindings"].as_array().map_or(0, Vec::len)
}

/// Reads what reaches `sock` for `ms`, answering every request 200 (the
/// keepalive's OPTIONS, a job's NOTIFY); returns the request lines.
fn serve_device(sock: &UdpSocket, ms: u64) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < deadline {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let first = text.lines().next().unwrap_or("").to_owned();
        if first.starts_with("SIP/2.0") {
            continue;
        }
        // The 200 copies the request's dialog headers.
        let mut resp = String::from("SIP/2.0 200 OK\r\n");
        for l in text.split("\r\n").skip(1) {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"].contains(&name.as_str())
            {
                resp.push_str(l);
                resp.push_str("\r\n");
            }
        }
        resp.push_str("Content-Length: 0\r\n\r\n");
        sock.send_to(resp.as_bytes(), from).unwrap();
        seen.push(first);
    }
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    seen
}

/// A device registered at node A re-registers at node B while A lives:
/// B's write tells A (a notice in Redis), A drops its binding within a few
/// heartbeats (gone from its registrations, its NAT path no longer
/// prompted), and a contact-me job posted to each node reaches the device
/// once, over B.
#[test]
fn a_device_that_moves_to_another_node_is_dropped_by_the_old_one() {
    if !have_redis("a_device_that_moves_to_another_node_is_dropped_by_the_old_one") {
        return;
    }
    let bed = Cluster::start("move");
    let (rt_a, a, api_a, base_a) = start_with_api(&moving_toml(&bed, 1, "127.0.0.1:5621"));
    let (rt_b, b, api_b, base_b) = start_with_api(&moving_toml(&bed, 2, "127.0.0.1:5622"));
    let accept = "Accept: application/application-server-contact-me\r\n";
    let inst = "urn:uuid:00000000-0000-0000-0000-0000000e0a01";
    let id = RecordId::for_contact("erin@127.0.0.1", Some(inst), None, "");
    let aor = "erin@127.0.0.1";

    // At A: registered, published, and its path prompted.
    let dev_a = client_socket();
    register_with(&dev_a, a, "erin", Some(inst), 600, accept);
    wait_record(&bed, id, "erin at node 1", |r| {
        r.is_some_and(|o| o.node == 1)
    });
    assert_eq!(bindings(&base_a, aor), 1);
    let heard = serve_device(&dev_a, 1500);
    assert!(heard.iter().any(|l| l.starts_with("OPTIONS")), "{heard:?}");

    // The device moves to B (a new NAT binding, so another source port).
    let dev_b = client_socket();
    register_with(&dev_b, b, "erin", Some(inst), 600, accept);
    wait_record(&bed, id, "erin at node 2", |r| {
        r.is_some_and(|o| o.node == 2)
    });
    wait_metric(&base_b, "tether_cluster_notices_total", 1);
    wait_metric(&base_a, "tether_cluster_evicted_total", 1);
    wait_until(5, "erin gone from A's registrations", || {
        bindings(&base_a, aor) == 0
    });
    assert_eq!(bindings(&base_b, aor), 1);
    assert_eq!(metric(&base_a, "tether_cluster_owned"), 0);
    // B's record stays: A's removal deletes only records naming A.
    assert_eq!(record(&bed, id).flatten().map(|o| o.node), Some(2));
    wait_metric(&base_a, "tether_nat_paths_registration_only", 0);

    // A prompts it no more: a few keepalive intervals of silence at A's
    // side (whatever was in flight at the drop is read first).
    serve_device(&dev_a, 500);
    let heard = serve_device(&dev_a, 1500);
    assert!(heard.is_empty(), "A still prompts the device: {heard:?}");

    // A contact-me job at each node: A has no binding, B delivers once.
    let body = format!(
        r#"{{"targets": ["{aor}"], "kind": "contact-me", "request_id": "7",
        "application_server_addr": "127.0.0.1", "application_server_port": 8443}}"#
    );
    let job = |base: &str| post_job(base, &body);
    let id_a = job(&base_a);
    let v = wait_job(&base_a, &id_a, 10);
    assert_eq!(v["counts"]["no_binding"], 1, "{v}");
    let id_b = job(&base_b);
    let seen = serve_device(&dev_b, 1500);
    let v = wait_job(&base_b, &id_b, 10);
    assert_eq!(v["counts"]["delivered"], 1, "{v}");
    let notifies = seen.iter().filter(|l| !l.starts_with("OPTIONS")).count();
    assert_eq!(notifies, 1, "{seen:?}");
    assert!(serve_device(&dev_a, 300).is_empty());

    api_a.shutdown();
    api_b.shutdown();
    rt_a.shutdown().unwrap();
    rt_b.shutdown().unwrap();
}
