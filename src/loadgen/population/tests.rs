//! The population on a fake clock: bytes in, bytes out, no sockets.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use super::*;

pub(super) const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5060);
pub(super) const MS: u64 = 1_000;

/// A datagram the population sent.
#[derive(Debug, Clone)]
pub(super) struct Sent {
    pub socket: usize,
    pub src: Ipv4Addr,
    pub dst: SocketAddrV4,
    pub bytes: Vec<u8>,
}

impl Sent {
    pub fn msg(&self) -> sip::Message<'_> {
        sip::parse(&self.bytes).expect("the generator writes valid SIP")
    }

    pub fn cseq(&self) -> u32 {
        self.msg().cseq().unwrap().seq
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.msg().header_by_name(name).map(str::to_owned)
    }
}

pub(super) fn config(endpoints: u32) -> LoadConfig {
    LoadConfig {
        target: SERVER,
        endpoints,
        rate: 0,
        duration: Duration::from_secs(600),
        hold: Duration::from_secs(60),
        source_base: Ipv4Addr::new(127, 1, 0, 1),
        ports: 2,
        ..LoadConfig::default()
    }
}

pub(super) fn population(cfg: &LoadConfig) -> Population {
    let ports = (0..cfg.ports).map(|j| 40_000 + j).collect();
    Population::new(cfg, ports)
}

pub(super) fn drain(p: &mut Population) -> Vec<Sent> {
    let mut out = Vec::new();
    while let Some(t) = p.poll_transmit() {
        out.push(Sent {
            socket: t.socket,
            src: t.src,
            dst: t.dst,
            bytes: t.bytes.to_vec(),
        });
    }
    out
}

/// Time passes to `now`; what was sent.
pub(super) fn tick(p: &mut Population, now: u64) -> Vec<Sent> {
    p.handle_timeout(now);
    drain(p)
}

/// The server answers `req` with `code` (plus `extra` header lines) at
/// `now`; what the population sent in return.
pub(super) fn answer(
    p: &mut Population,
    now: u64,
    req: &Sent,
    code: u16,
    extra: &[(&str, &str)],
) -> Vec<Sent> {
    let mut buf = Vec::new();
    let m = req.msg();
    let mut w = sip::writer::response_to(&mut buf, &m, code, "Answer", Some("srv"), None);
    for (name, value) in extra {
        w.header_named(name, value);
    }
    w.finish(None);
    p.handle_datagram(now, req.socket, req.src, SERVER, &buf);
    drain(p)
}

/// A request from the server to endpoint socket `socket`, address `local`.
fn request(
    p: &mut Population,
    now: u64,
    socket: usize,
    local: Ipv4Addr,
    method: &str,
    extra: &str,
) -> Vec<Sent> {
    let text = format!(
        "{method} sip:u@{local} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsrv{method}\r\n\
Max-Forwards: 70\r\nFrom: <sip:tether@127.0.0.1>;tag=t1\r\nTo: <sip:u@{local}>\r\n\
Call-ID: srv-{method}\r\nCSeq: 7 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    p.handle_datagram(now, socket, local, SERVER, text.as_bytes());
    drain(p)
}

pub(super) fn summary(p: Population) -> Summary {
    p.summary(Measured::default())
}

#[test]
fn each_endpoint_registers_from_its_own_address_and_socket() {
    let mut p = population(&config(3));
    let sent = tick(&mut p, 0);
    assert_eq!(sent.len(), 3);
    let froms: Vec<_> = sent.iter().map(|s| (s.socket, s.src)).collect();
    let base = Ipv4Addr::new(127, 1, 0, 1);
    let next = Ipv4Addr::new(127, 1, 0, 2);
    assert_eq!(froms, [(0, base), (1, base), (0, next)]);
    assert!(sent.iter().all(|s| s.dst == SERVER && s.cseq() == 1));
    let via = sent[1].header("Via").unwrap();
    assert!(via.contains("127.1.0.1:40001;branch=z9hG4bKlg1x1"), "{via}");
    assert_eq!(sent[2].header("Call-ID").unwrap(), "lg2@127.1.0.2");
}

#[test]
fn unanswered_register_is_retransmitted_on_t1_doubling_then_given_up() {
    let mut p = population(&config(1));
    let first = tick(&mut p, 0);
    assert_eq!(first.len(), 1);
    let mut at = Vec::new();
    // Run the clock in 10 ms steps up to 20 s.
    for now in (10 * MS..20_000 * MS).step_by(10_000) {
        for s in tick(&mut p, now) {
            assert_eq!(
                s.bytes, first[0].bytes,
                "a retransmission is the same request"
            );
            at.push(now / MS);
        }
        if p.poll_event() == Some(Event::Settled) {
            assert_eq!(now / MS, 15_500, "given up one interval after the 4th");
            break;
        }
    }
    assert_eq!(at, [500, 1_500, 3_500, 7_500]);
    tick(&mut p, 15_510 * MS);
    assert!(p.is_finished(), "the register scenario ends once settled");
    let s = summary(p);
    assert_eq!((s.registered, s.failed, s.timeouts), (0, 1, 1));
    assert_eq!(s.retransmissions, 4);
}

#[test]
fn a_provisional_response_slows_retransmissions_to_t2() {
    let mut p = population(&config(1));
    let reg = tick(&mut p, 0).remove(0);
    assert!(answer(&mut p, 100 * MS, &reg, 100, &[]).is_empty());
    assert!(
        tick(&mut p, 500 * MS).is_empty(),
        "no T1 retransmission after 100 Trying"
    );
    assert!(tick(&mut p, 8_090 * MS).is_empty());
    assert_eq!(
        tick(&mut p, 8_100 * MS).len(),
        1,
        "T2 after the provisional"
    );
}

#[test]
fn answered_registers_settle_with_their_latency_and_the_run_ends() {
    let mut p = population(&config(2));
    let regs = tick(&mut p, 0);
    for (k, r) in regs.iter().enumerate() {
        assert!(answer(&mut p, (3 + k as u64) * MS, r, 200, &[]).is_empty());
    }
    // A retransmitted 200 is not counted again.
    answer(&mut p, 6 * MS, &regs[0], 200, &[]);
    assert!(tick(&mut p, 10 * MS).is_empty());
    assert_eq!(p.poll_event(), Some(Event::Settled));
    tick(&mut p, 11 * MS);
    assert!(p.is_finished());
    let s = summary(p);
    assert_eq!((s.registered, s.failed, s.retransmissions), (2, 0, 0));
    assert_eq!(s.codes.get(&200), Some(&2));
    // HDR histograms report the top of a value's bucket (2 µs wide here).
    assert!(
        (3_000..=3_001).contains(&s.latency_us.p50),
        "{:?}",
        s.latency_us
    );
    assert!(
        (4_000..=4_001).contains(&s.latency_us.max),
        "{:?}",
        s.latency_us
    );
    assert_eq!(s.timeline[0].sent, 2);
    assert_eq!(s.timeline[0].ok, 2);
}

#[test]
fn the_rate_paces_registers_and_the_window_caps_them() {
    let cfg = LoadConfig {
        rate: 1_000,
        window: 3,
        ..config(10)
    };
    let mut p = population(&cfg);
    assert!(tick(&mut p, 0).is_empty());
    assert_eq!(tick(&mut p, 2 * MS).len(), 2);
    assert_eq!(p.poll_timeout(2 * MS), 3 * MS, "more are due soon");
    assert_eq!(tick(&mut p, 5 * MS).len(), 1, "the window holds 3");
    assert_eq!(p.poll_timeout(5 * MS), 25 * MS);
}

#[test]
fn a_challenge_is_answered_with_credentials_and_a_stale_one_is_ignored() {
    let cfg = LoadConfig {
        password: Some("pw{i}".into()),
        ..config(1)
    };
    let mut p = population(&cfg);
    let reg = tick(&mut p, 0).remove(0);
    let challenge = [(
        "WWW-Authenticate",
        "Digest realm=\"tether\", nonce=\"abc\", qop=\"auth\", algorithm=MD5",
    )];
    let again = answer(&mut p, MS, &reg, 401, &challenge);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].cseq(), 2);
    let auth = again[0].header("Authorization").expect("credentials");
    assert!(
        auth.contains("username=\"u0\"") && auth.contains("nonce=\"abc\""),
        "{auth}"
    );
    assert!(
        answer(&mut p, 2 * MS, &reg, 401, &challenge).is_empty(),
        "a retransmitted 401 for CSeq 1 starts no second round"
    );
    assert!(answer(&mut p, 3 * MS, &again[0], 200, &[]).is_empty());
    let s = summary(p);
    assert_eq!((s.registered, s.challenges), (1, 1));
    assert!(
        (3_000..=3_001).contains(&s.latency_us.p50),
        "from the first REGISTER: {:?}",
        s.latency_us
    );
}

#[test]
fn a_keepalive_prompt_is_answered_from_the_prompted_address_and_dead_ones_stay_silent() {
    let cfg = LoadConfig {
        scenario: Scenario::Keepalive,
        dead_share: 0.5,
        ..config(4)
    };
    let mut p = population(&cfg);
    for r in tick(&mut p, 0) {
        answer(&mut p, MS, &r, 200, &[]);
    }
    // Endpoint 3: socket 1 on the second address.
    let local = Ipv4Addr::new(127, 1, 0, 2);
    let ans = request(&mut p, 2 * MS, 1, local, "OPTIONS", "");
    assert_eq!(ans.len(), 1);
    let (a, m) = (&ans[0], ans[0].msg());
    assert_eq!((a.socket, a.src, a.dst), (1, local, SERVER));
    assert_eq!(m.status(), Some(200));
    assert_eq!(a.header("Call-ID").unwrap(), "srv-OPTIONS");
    // Endpoint 0 is among the dead half; an ACK is never answered.
    assert!(request(
        &mut p,
        3 * MS,
        0,
        Ipv4Addr::new(127, 1, 0, 1),
        "OPTIONS",
        ""
    )
    .is_empty());
    assert!(request(&mut p, 4 * MS, 1, local, "ACK", "").is_empty());
    let s = summary(p);
    assert_eq!(s.requests_received.get("OPTIONS"), Some(&2));
    assert_eq!(s.requests_received.get("ACK"), Some(&1));
    assert_eq!((s.requests_answered, s.endpoints_prompted), (1, 2));
}

#[test]
fn a_device_challenges_the_server_then_accepts_its_credentials() {
    let cfg = LoadConfig {
        answer: 401,
        device_password: "device".into(),
        ..config(1)
    };
    let mut p = population(&cfg);
    let local = Ipv4Addr::new(127, 1, 0, 1);
    let ans = request(&mut p, MS, 0, local, "NOTIFY", "");
    assert_eq!(ans[0].msg().status(), Some(401));
    assert!(ans[0]
        .header("WWW-Authenticate")
        .unwrap()
        .contains("tether-bench"));
    let wrong =
        "Authorization: Digest username=\"x\", realm=\"tether-bench\", nonce=\"b3nchn0nce\", \
uri=\"sip:u@127.1.0.1\", response=\"00000000000000000000000000000000\"\r\n";
    let ans = request(&mut p, 2 * MS, 0, local, "NOTIFY", wrong);
    assert_eq!(ans[0].msg().status(), Some(403));
    assert_eq!(summary(p).device_challenges, 1);
}

#[test]
fn bindings_are_refreshed_at_80_percent_of_the_granted_expiry() {
    let cfg = LoadConfig {
        scenario: Scenario::Keepalive,
        refresh: true,
        ..config(1)
    };
    let mut p = population(&cfg);
    let reg = tick(&mut p, 0).remove(0);
    answer(&mut p, MS, &reg, 200, &[("Expires", "10")]);
    assert!(tick(&mut p, 8_000 * MS).is_empty());
    let refresh = tick(&mut p, 8_001 * MS);
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].cseq(), 2);
    assert_eq!(refresh[0].header("Call-ID").unwrap(), "lg0@127.1.0.1");
    answer(&mut p, 8_002 * MS, &refresh[0], 200, &[("Expires", "10")]);
    let s = summary(p);
    assert_eq!((s.registered, s.refreshed), (1, 1));
}

#[test]
fn the_unregister_phase_sends_expires_zero_once_everything_settled() {
    let cfg = LoadConfig {
        unregister: true,
        ..config(2)
    };
    let mut p = population(&cfg);
    for r in tick(&mut p, 0) {
        answer(&mut p, MS, &r, 200, &[]);
    }
    assert!(tick(&mut p, 2 * MS).is_empty());
    assert_eq!(p.poll_event(), Some(Event::Settled));
    let gone = tick(&mut p, 3 * MS);
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|g| g.cseq() == 2));
    assert_eq!(gone[0].header("Expires").unwrap(), "0");
    assert!(!p.is_finished());
    for g in &gone {
        answer(&mut p, 4 * MS, g, 200, &[]);
    }
    tick(&mut p, 5 * MS);
    assert_eq!(p.poll_event(), Some(Event::Settled));
    tick(&mut p, 6 * MS);
    assert!(p.is_finished());
    let s = summary(p);
    assert_eq!((s.registered, s.unregistered), (2, 2));
}

#[test]
fn the_run_ends_at_its_duration_whatever_is_in_flight() {
    let cfg = LoadConfig {
        duration: Duration::from_secs(1),
        ..config(1)
    };
    let mut p = population(&cfg);
    tick(&mut p, 0);
    tick(&mut p, 999 * MS);
    assert!(!p.is_finished());
    tick(&mut p, 1_000 * MS);
    assert!(p.is_finished());
}

#[test]
fn a_soak_ends_after_its_hold_only_once_its_last_job_is_over_refreshing_meanwhile() {
    let cfg = LoadConfig {
        scenario: Scenario::Soak,
        hold: Duration::from_secs(1),
        job: Some(crate::loadgen::job::JobPlan {
            api: "http://127.0.0.1:1".into(),
            token: String::new(),
            kind: "contact-me".into(),
            probes: 0,
            rate: None,
            target: SERVER,
            domain: "127.0.0.1".into(),
        }),
        ..config(1)
    };
    let mut p = population(&cfg);
    let reg = tick(&mut p, 0).remove(0);
    answer(&mut p, MS, &reg, 200, &[("Expires", "2")]);
    tick(&mut p, 2 * MS);
    assert_eq!(p.poll_event(), Some(Event::Settled));
    tick(&mut p, 1_002 * MS);
    assert_eq!(p.poll_event(), Some(Event::HoldOver));
    assert!(!p.is_finished(), "a job may still be in flight");
    // Bindings are still refreshed (at 80% of 2 s) while the job runs.
    let refresh = tick(&mut p, 1_601 * MS);
    assert_eq!(refresh.len(), 1);
    answer(&mut p, 1_602 * MS, &refresh[0], 200, &[("Expires", "2")]);
    p.job_finished();
    tick(&mut p, 1_603 * MS);
    assert!(p.is_finished(), "nothing in flight and the jobs are over");
    assert_eq!(summary(p).refreshed, 1);
}

/// A server request to endpoint socket `socket`, address `local`, sent by `from`.
fn request_from(p: &mut Population, now: u64, socket: usize, local: Ipv4Addr, from: SocketAddrV4) {
    let text = format!(
        "NOTIFY sip:u@{local} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKsrv{now}\r\n\
Max-Forwards: 70\r\nFrom: <sip:tether@127.0.0.1>;tag=t1\r\nTo: <sip:u@{local}>\r\n\
Call-ID: srv-{now}\r\nCSeq: 7 NOTIFY\r\nContent-Length: 0\r\n\r\n"
    );
    p.handle_datagram(now, socket, local, from, text.as_bytes());
    drain(p);
}

/// What `node` answers a keepalive: the Binding success of our request.
fn stun_answer(req: &Sent) -> Vec<u8> {
    let mut b = req.bytes.clone();
    b[..2].copy_from_slice(&0x0101u16.to_be_bytes());
    b
}

#[test]
fn several_nodes_share_the_endpoints_count_duplicates_and_fail_over() {
    let nodes = [
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5061),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5062),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5063),
    ];
    let cfg = LoadConfig {
        targets: nodes.to_vec(),
        scenario: Scenario::Keepalive,
        failover: Duration::from_millis(1000),
        ..config(6)
    };
    let mut p = population(&cfg);
    let sent = tick(&mut p, 0);
    let (probes, regs): (Vec<Sent>, Vec<Sent>) = sent
        .into_iter()
        .partition(|s| crate::nat::stun::is_stun(&s.bytes));
    assert_eq!(probes.len(), 3, "a keepalive to each node");
    let to: Vec<SocketAddrV4> = regs.iter().map(|s| s.dst).collect();
    assert_eq!(
        to,
        [nodes[0], nodes[1], nodes[2], nodes[0], nodes[1], nodes[2]]
    );
    for r in &regs {
        answer(&mut p, MS, r, 200, &[]);
    }
    // Endpoint 0 (socket 0, first address) prompted by its node, then by
    // another within the window: one duplicate; its own node again: none.
    let base = cfg.source_base;
    request_from(&mut p, 2 * MS, 0, base, nodes[0]);
    request_from(&mut p, 3 * MS, 0, base, nodes[0]);
    request_from(&mut p, 4 * MS, 0, base, nodes[1]);
    // Endpoint 2 (socket 0, second address) prompted by node 3 before it dies.
    let second = Ipv4Addr::from(u32::from(base) + 1);
    request_from(&mut p, 5 * MS, 0, second, nodes[2]);
    // Nodes 1 and 2 answer their keepalives; node 3 falls silent.
    let mut moved = Vec::new();
    for now in (250 * MS..=1_500 * MS).step_by(250 * MS as usize) {
        for s in tick(&mut p, now) {
            if crate::nat::stun::is_stun(&s.bytes) {
                if s.dst != nodes[2] {
                    p.handle_datagram(now, s.socket, s.src, s.dst, &stun_answer(&s));
                }
            } else {
                moved.push(s);
            }
        }
    }
    // Endpoints 2 and 5 registered at node 3; they register again at 1 and 2.
    let again: Vec<SocketAddrV4> = moved.iter().map(|s| s.dst).collect();
    assert_eq!(again, [nodes[0], nodes[1]], "{moved:?}");
    for r in &moved {
        answer(&mut p, 1_600 * MS, r, 200, &[]);
    }
    // Prompted by its new node: the node it left is not a duplicate.
    request_from(&mut p, 1_700 * MS, 0, second, nodes[0]);
    let s = summary(p);
    assert_eq!(s.duplicate_prompts, 1);
    let n: Vec<(u64, u64, u64, u64)> = s
        .nodes
        .iter()
        .map(|n| (n.endpoints, n.ok, n.moved_away, n.duplicate_prompts))
        .collect();
    assert_eq!(n, [(3, 3, 0, 0), (3, 3, 0, 1), (0, 2, 2, 0)]);
    assert!(s.nodes[2].went_down_ms.is_some());
}

#[test]
fn a_generator_that_stalled_does_not_fail_every_node_over() {
    let nodes = [
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5061),
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5062),
    ];
    let cfg = LoadConfig {
        targets: nodes.to_vec(),
        scenario: Scenario::Keepalive,
        failover: Duration::from_millis(1000),
        ..config(4)
    };
    let mut p = population(&cfg);
    for r in tick(&mut p, 0)
        .iter()
        .filter(|s| !crate::nat::stun::is_stun(&s.bytes))
    {
        answer(&mut p, MS, r, 200, &[]);
    }
    // Nothing is read for 5 s (the generator itself was starved): both
    // nodes look silent at once, and nobody moves.
    for now in (250 * MS..=5_000 * MS).step_by(250 * MS as usize) {
        let sent = tick(&mut p, now);
        assert!(
            sent.iter().all(|s| crate::nat::stun::is_stun(&s.bytes)),
            "a REGISTER went out at {now}"
        );
    }
    let s = summary(p);
    assert!(s
        .nodes
        .iter()
        .all(|n| n.moved_away == 0 && n.went_down_ms.is_none()));
}
