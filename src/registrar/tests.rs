//! Registrar rules, one test each, on a fake clock.
//! About 1,100 lines on purpose: one test per RFC 3261 §10.3 rule, per
//! directory behaviour and per authorization path, sharing one small
//! harness (`Bench`); split by topic they would each need its copy.

use std::net::SocketAddr;
use std::sync::Arc;

use super::auth::{Authenticator, Credentials};
use super::*;
use crate::sip::digest::Algorithm;
use crate::sip::{self, ids::IdGen, HeaderName};

const SRC: &str = "203.0.113.7:40001";

/// Wall time (Unix s) at the fake runtime clock's zero.
const UNIX0: u64 = 1_800_000_000;

struct Bench {
    reg: Registrar,
    dir: Arc<Directory>,
    ids: IdGen,
    out: Vec<u8>,
    /// The core's wheel, as the endpoint keeps it for the registrar.
    timers: crate::timer::Timers,
    /// The NAT path table, as far as the registrar sees it: keys by index.
    paths: Vec<crate::addr::PathKey>,
    /// What the path table heard, in order: (path, binding added or gone).
    path_log: Vec<(crate::addr::PathKey, bool)>,
}

fn bench_with(policy: Policy, auth: Option<Authenticator>) -> Bench {
    let dir = Arc::new(Directory::new());
    Bench {
        reg: Registrar::new(0, Arc::new(policy), dir.clone(), auth),
        dir,
        ids: IdGen::new(1),
        out: Vec::new(),
        timers: crate::timer::Timers::new(0),
        paths: Vec::new(),
        path_log: Vec::new(),
    }
}

fn bench() -> Bench {
    bench_with(Policy::default(), None)
}

/// A REGISTER for `user` with the given extra header lines.
fn register(user: &str, call_id: &str, cseq: u32, extra: &str) -> Vec<u8> {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{cseq}{call_id};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f{cseq}\r\nTo: <sip:{user}@example.com>\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

impl Bench {
    /// Sends a REGISTER at `now` from `src`; returns the parsed response's status and the raw bytes.
    fn send_from(&mut self, req: &[u8], now: u32, src: &str) -> (u16, Vec<u8>) {
        let r = self.send_unsynced(req, now, src);
        self.sync_paths();
        r
    }

    /// [`Bench::send_from`] without handing the path events on.
    fn send_unsynced(&mut self, req: &[u8], now: u32, src: &str) -> (u16, Vec<u8>) {
        let m = sip::parse(req).unwrap();
        let checked = m.validate().unwrap();
        let at = Arrival {
            source: src.parse().unwrap(),
            local: 0,
            now_secs: now,
            now_unix: UNIX0 + u64::from(now),
        };
        self.reg
            .register(&m, &checked, at, &mut self.out, &mut self.ids);
        let resp = sip::parse(&self.out).unwrap();
        resp.validate().unwrap();
        (resp.status().unwrap(), self.out.clone())
    }

    fn send(&mut self, req: &[u8], now: u32) -> (u16, Vec<u8>) {
        self.send_from(req, now, SRC)
    }

    /// A registrar on another core, sharing this one's directory.
    fn other_core(&self, core: u16) -> Bench {
        Bench {
            reg: Registrar::new(core, Arc::new(Policy::default()), self.dir.clone(), None),
            dir: self.dir.clone(),
            ids: IdGen::new(u64::from(core) + 1),
            out: Vec::new(),
            timers: crate::timer::Timers::new(0),
            paths: Vec::new(),
            path_log: Vec::new(),
        }
    }

    /// Hands the registrar's path events to a stand-in of the endpoint's
    /// path table, which names each path by its index, as the endpoint does.
    fn sync_paths(&mut self) {
        use super::PathEvent;
        for e in std::mem::take(&mut self.reg.path_events) {
            match e {
                PathEvent::Uses {
                    key,
                    slot,
                    gen,
                    was,
                } => {
                    if let Some(w) = was {
                        let old = self.paths[w as usize];
                        if old == key {
                            continue;
                        }
                        self.path_log.push((old, false));
                    }
                    self.path_log.push((key, true));
                    let i = match self.paths.iter().position(|p| *p == key) {
                        Some(i) => i,
                        None => {
                            self.paths.push(key);
                            self.paths.len() - 1
                        }
                    };
                    self.reg.set_path(slot, gen, i as u32);
                }
                PathEvent::Left { path, .. } => {
                    self.path_log.push((self.paths[path as usize], false));
                }
            }
        }
    }

    /// Arms what the registrar asked for on the wheel.
    fn arm_expiries(&mut self) {
        for (at, slot, gen) in self.reg.expiry_arms.drain(..) {
            self.timers
                .arm(at, crate::timer::Timer::Expiry { slot, gen });
        }
    }

    /// When the wheel says to look next (seconds, rounded up).
    fn next_expiry(&mut self) -> Option<u32> {
        self.arm_expiries();
        self.timers
            .next_deadline()
            .map(|ms| ms.div_ceil(1000) as u32)
    }

    /// Hands the registrar every expiry timer due at `now_secs`, as the
    /// endpoint does; returns how many bindings expired.
    fn expire(&mut self, now_secs: u32) -> usize {
        let mut n = 0;
        loop {
            self.arm_expiries();
            let Some(t) = self.timers.poll(u64::from(now_secs) * 1000) else {
                return n;
            };
            let crate::timer::Timer::Expiry { slot, gen } = t else {
                panic!("only expiry timers here: {t:?}");
            };
            n += usize::from(self.reg.on_expiry(slot, gen, now_secs));
        }
    }
}

fn contact_expiries(resp: &[u8]) -> Vec<(String, u32)> {
    let m = sip::parse(resp).unwrap();
    m.contacts()
        .map(|c| {
            let c = c.unwrap();
            (
                c.addr().unwrap().uri_raw.to_owned(),
                c.expires().unwrap().unwrap(),
            )
        })
        .collect()
}

#[test]
fn new_binding_records_source_and_nat() {
    let mut b = bench();
    let (code, resp) = b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2:5060>\r\n"),
        100,
    );
    assert_eq!(code, 200);
    assert_eq!(
        contact_expiries(&resp),
        vec![("sip:alice@10.0.0.2:5060".into(), 3600)]
    );
    let found = b.dir.lookup("alice@example.com", 100);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, SRC.parse::<SocketAddr>().unwrap());
    assert!(
        found[0].is_nated(),
        "contact 10.0.0.2:5060 is not the source"
    );
    assert_eq!(found[0].expires_at, 3700);
    assert_eq!(b.reg.local_bindings(), 1);
    // The 200 carries rport/received for the client's own NAT discovery.
    let via = sip::parse(&resp).unwrap().top_via().unwrap().rport();
    assert_eq!(via, Some(Some(40001)));
}

#[test]
fn contact_matching_the_source_is_not_nated() {
    let mut b = bench();
    b.send(
        &register("bob", "c1", 1, "Contact: <sip:bob@203.0.113.7:40001>\r\n"),
        0,
    );
    assert!(!b.dir.lookup("bob@example.com", 0)[0].is_nated());
}

#[test]
fn refresh_updates_expiry_and_keeps_the_binding() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 600\r\n",
        ),
        0,
    );
    let before = b.dir.lookup("alice@example.com", 0)[0].binding;
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            2,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 900\r\n",
        ),
        300,
    );
    assert_eq!(code, 200);
    assert_eq!(contact_expiries(&resp)[0].1, 900);
    let after = b.dir.lookup("alice@example.com", 300);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].binding, before);
    assert_eq!(b.reg.stats.refreshed, 1);
}

#[test]
fn same_call_id_needs_a_higher_cseq_and_an_equal_one_is_a_retransmission() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            5,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 600\r\n",
        ),
        0,
    );
    let before = b.dir.lookup("alice@example.com", 1);
    // The same REGISTER again (its 200 was lost): 200 again, nothing changes.
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            5,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 900\r\n",
        ),
        1,
    );
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&resp).contains(";expires=599"));
    assert_eq!(b.dir.lookup("alice@example.com", 1), before);
    let (code, resp) = b.send(
        &register("alice", "c1", 4, "Contact: <sip:alice@10.0.0.2>\r\n"),
        1,
    );
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&resp).starts_with("SIP/2.0 400 Out of Order CSeq"));
    // A different Call-ID may come with any CSeq.
    assert_eq!(
        b.send(
            &register("alice", "c2", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
            1
        )
        .0,
        200
    );
}

#[test]
fn expires_zero_removes_and_contact_param_beats_header() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>;expires=120\r\nExpires: 3000\r\n",
        ),
        0,
    );
    assert_eq!(b.dir.lookup("alice@example.com", 0)[0].expires_at, 120);
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            2,
            "Contact: <sip:alice@10.0.0.2>;expires=0\r\n",
        ),
        10,
    );
    assert_eq!(code, 200);
    assert!(contact_expiries(&resp).is_empty());
    assert!(b.dir.lookup("alice@example.com", 10).is_empty());
    assert_eq!(b.dir.aor_count(), 0);
    assert_eq!(b.reg.local_bindings(), 0);
}

#[test]
fn star_removes_all_only_with_expires_zero_and_alone() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>, <sip:alice@10.0.0.3>\r\n",
        ),
        0,
    );
    assert_eq!(b.dir.lookup("alice@example.com", 0).len(), 2);
    assert_eq!(
        b.send(
            &register("alice", "c9", 1, "Contact: *\r\nExpires: 30\r\n"),
            1
        )
        .0,
        400
    );
    assert_eq!(
        b.send(&register("alice", "c9", 1, "Contact: *\r\n"), 1).0,
        400
    );
    assert_eq!(
        b.send(
            &register(
                "alice",
                "c9",
                1,
                "Contact: *, <sip:alice@10.0.0.4>\r\nExpires: 0\r\n"
            ),
            1
        )
        .0,
        400
    );
    assert_eq!(b.dir.lookup("alice@example.com", 1).len(), 2);
    let (code, resp) = b.send(
        &register("alice", "c9", 1, "Contact: *\r\nExpires: 0\r\n"),
        1,
    );
    assert_eq!(code, 200);
    assert!(contact_expiries(&resp).is_empty());
    assert!(b.dir.lookup("alice@example.com", 1).is_empty());
    assert_eq!(b.reg.local_bindings(), 0);
}

#[test]
fn star_respects_cseq_ordering() {
    let mut b = bench();
    b.send(
        &register("alice", "c1", 7, "Contact: <sip:alice@10.0.0.2>\r\n"),
        0,
    );
    assert_eq!(
        b.send(
            &register("alice", "c1", 7, "Contact: *\r\nExpires: 0\r\n"),
            1
        )
        .0,
        400
    );
    assert_eq!(
        b.send(
            &register("alice", "c1", 8, "Contact: *\r\nExpires: 0\r\n"),
            1
        )
        .0,
        200
    );
}

#[test]
fn too_brief_gets_423_with_min_expires_and_long_is_clamped() {
    let mut b = bench();
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 30\r\n",
        ),
        0,
    );
    assert_eq!(code, 423);
    assert_eq!(
        sip::parse(&resp).unwrap().header(HeaderName::MinExpires),
        Some("60")
    );
    assert!(b.dir.lookup("alice@example.com", 0).is_empty());
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            2,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 999999\r\n",
        ),
        0,
    );
    assert_eq!(code, 200);
    assert_eq!(contact_expiries(&resp)[0].1, 7200);
}

#[test]
fn query_lists_current_contacts() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>;expires=100\r\n",
        ),
        0,
    );
    let (code, resp) = b.send(&register("alice", "c2", 1, ""), 40);
    assert_eq!(code, 200);
    assert_eq!(
        contact_expiries(&resp),
        vec![("sip:alice@10.0.0.2".into(), 60)]
    );
    let (_, resp) = b.send(&register("nobody", "c3", 1, ""), 40);
    assert!(contact_expiries(&resp).is_empty());
}

#[test]
fn contact_limit_per_aor() {
    let mut b = bench_with(
        Policy {
            max_contacts: 2,
            ..Policy::default()
        },
        None,
    );
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>, <sip:alice@10.0.0.3>\r\n",
        ),
        0,
    );
    let (code, _) = b.send(
        &register("alice", "c2", 1, "Contact: <sip:alice@10.0.0.4>\r\n"),
        0,
    );
    assert_eq!(code, 403);
    assert_eq!(b.dir.lookup("alice@example.com", 0).len(), 2);
    assert_eq!(b.reg.local_bindings(), 2, "the reserved slot was released");
}

const INSTANCE: &str = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";

/// The Contact line of alice's device (INSTANCE) flow `reg_id` from `host`.
fn flow(host: &str, reg_id: u32) -> String {
    format!("Contact: <sip:alice@{host}>;{INSTANCE};reg-id={reg_id}\r\n")
}

#[test]
fn same_instance_replaces_its_old_binding() {
    let mut b = bench();
    b.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 0);
    // New address, new Call-ID (the device rebooted): the instance identifies it.
    let (code, resp) = b.send(&register("alice", "c2", 1, &flow("10.9.9.9", 1)), 5);
    assert_eq!(code, 200);
    let contacts = contact_expiries(&resp);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].0, "sip:alice@10.9.9.9");
    let dev = b
        .dir
        .device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        .unwrap();
    assert_eq!(&*dev.aor, "alice@example.com");
    assert_eq!(dev.binding, b.dir.lookup("alice@example.com", 5)[0].binding);
    assert_eq!(b.reg.local_bindings(), 1);
    // The 200 echoes instance and reg-id (RFC 5626 §6).
    let m = sip::parse(&resp).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.reg_id().unwrap(), Some(1));
    assert!(c.instance().unwrap().ends_with("000A95A0E128"));
}

#[test]
fn same_instance_different_reg_id_are_two_flows() {
    let mut b = bench();
    b.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 0);
    b.send(&register("alice", "c2", 1, &flow("10.0.0.2", 2)), 0);
    assert_eq!(b.dir.lookup("alice@example.com", 0).len(), 2);
}

#[test]
fn device_id_param_names_devices_without_instance() {
    let policy = Policy {
        device_id_param: Some("device-id".into()),
        ..Policy::default()
    };
    let mut b = bench_with(policy, None);
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>;device-id=ab12\r\n",
        ),
        0,
    );
    assert_eq!(&*b.dir.device("ab12").unwrap().aor, "alice@example.com");
}

#[test]
fn expiry_on_a_fake_clock_with_lazy_rearm() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            &format!("Contact: <sip:alice@10.0.0.2>;{INSTANCE}\r\nExpires: 60\r\n"),
        ),
        0,
    );
    // The wheel reports when to look next: never later than the expiry.
    assert!(b.next_expiry().is_some_and(|t| t <= 60));
    b.send(
        &register(
            "alice",
            "c1",
            2,
            &format!("Contact: <sip:alice@10.0.0.2>;{INSTANCE}\r\nExpires: 60\r\n"),
        ),
        50,
    );
    assert_eq!(b.expire(60), 0, "refreshed at 50, so not expired at 60");
    assert!(
        b.next_expiry().is_some_and(|t| t > 60 && t <= 110),
        "re-armed from the refreshed expiry"
    );
    assert_eq!(b.expire(109), 0);
    assert_eq!(b.dir.lookup("alice@example.com", 100).len(), 1);
    assert_eq!(b.expire(110), 1);
    assert!(b.dir.lookup("alice@example.com", 110).is_empty());
    assert_eq!(b.dir.aor_count(), 0);
    assert!(b
        .dir
        .device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        .is_none());
    assert_eq!(b.reg.local_bindings(), 0);
    assert_eq!(b.reg.stats.expired, 1);
}

#[test]
fn shorter_refresh_expires_earlier() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 3600\r\n",
        ),
        0,
    );
    b.send(
        &register(
            "alice",
            "c1",
            2,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 60\r\n",
        ),
        10,
    );
    assert_eq!(b.expire(70), 1);
    assert!(b.dir.lookup("alice@example.com", 70).is_empty());
}

#[test]
fn lookups_never_return_expired_contacts_even_before_the_sweep() {
    let mut b = bench();
    b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>\r\nExpires: 60\r\n",
        ),
        0,
    );
    assert!(b.dir.lookup("alice@example.com", 60).is_empty());
}

#[test]
fn path_is_kept_and_echoed() {
    let mut b = bench();
    let (code, resp) = b.send(
        &register("alice", "c1", 1, "Supported: path\r\nPath: <sip:edge1.example.net;lr>\r\nContact: <sip:alice@10.0.0.2>\r\n"),
        0,
    );
    assert_eq!(code, 200);
    assert_eq!(
        sip::parse(&resp).unwrap().header(HeaderName::Path),
        Some("<sip:edge1.example.net;lr>")
    );
    assert_eq!(
        b.dir.lookup("alice@example.com", 0)[0].path.as_deref(),
        Some("<sip:edge1.example.net;lr>")
    );
}

#[test]
fn accept_and_allow_events_mark_contact_me_devices() {
    let mut b = bench();
    b.send(
        &register("dev", "c1", 1, "Accept: application/sdp, application/application-server-contact-me\r\nContact: <sip:dev@10.0.0.2>\r\n"),
        0,
    );
    b.send(
        &register(
            "old",
            "c1",
            1,
            "Allow-Events: application-server-contact-me\r\nContact: <sip:old@10.0.0.2>\r\n",
        ),
        0,
    );
    b.send(
        &register("plain", "c1", 1, "Contact: <sip:plain@10.0.0.2>\r\n"),
        0,
    );
    let dev = &b.dir.lookup("dev@example.com", 0)[0];
    assert!(dev.accepts_contact_me());
    assert!(dev.flags & flags::SDP != 0);
    assert!(b.dir.lookup("old@example.com", 0)[0].accepts_contact_me());
    assert!(!b.dir.lookup("plain@example.com", 0)[0].accepts_contact_me());
}

#[test]
fn scopes_partition_the_namespace() {
    let mut b = bench();
    b.send(
        &register("foo", "c1", 1, "Contact: <sip:foo@10.0.0.2>;scope=mobile, <sip:foo@10.0.0.3>;scope=web, <sip:foo@10.0.0.4>\r\n"),
        0,
    );
    assert_eq!(b.dir.lookup("foo@example.com", 0).len(), 3);
    let mobile = b.dir.lookup("foo@example.com:mobile", 0);
    assert_eq!(mobile.len(), 1);
    assert_eq!(&*mobile[0].contact, "sip:foo@10.0.0.2");
    assert_eq!(b.dir.lookup("foo@example.com:web", 0).len(), 1);
}

#[test]
fn a_device_that_moves_core_is_taken_over_and_the_old_owner_told() {
    let mut a = bench();
    let mut c = a.other_core(1);
    let dir = a.dir.clone();
    a.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 0);
    let old = dir.lookup("alice@example.com", 0)[0].binding;
    assert_eq!(old.core, 0);
    // The NAT rebinding moved the device's source; the kernel hashed it to core 1.
    c.send_from(
        &register("alice", "c1", 2, &flow("10.0.0.2", 1)),
        1,
        "203.0.113.7:50000",
    );
    let now = dir.lookup("alice@example.com", 1);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].binding.core, 1);
    assert_eq!(
        dir.device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
            .unwrap()
            .binding
            .core,
        1
    );
    assert_eq!(c.reg.outbox, vec![old]);
    a.reg.forget(old);
    assert_eq!(a.reg.local_bindings(), 0);
    // The old owner's timer fires later and finds nothing to remove.
    assert_eq!(a.expire(10_000), 0);
    assert_eq!(dir.lookup("alice@example.com", 2).len(), 1);
}

#[test]
fn domains_and_require() {
    let policy = Policy {
        domains: vec!["example.com".into()],
        ..Policy::default()
    };
    let mut b = bench_with(policy, None);
    let other = String::from_utf8(register(
        "alice",
        "c1",
        1,
        "Contact: <sip:alice@10.0.0.2>\r\n",
    ))
    .unwrap()
    .replace("REGISTER sip:example.com", "REGISTER sip:other.org");
    assert_eq!(b.send(other.as_bytes(), 0).0, 404);
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            1,
            "Require: path, foo\r\nContact: <sip:alice@10.0.0.2>\r\n",
        ),
        0,
    );
    assert_eq!(code, 420);
    assert_eq!(
        sip::parse(&resp).unwrap().header(HeaderName::Unsupported),
        Some("foo")
    );
}

fn authz(alg: Algorithm, user: &str, pass: &str, nonce: &str, nc: &str) -> String {
    super::auth::authorization_header(alg, user, pass, "sip:example.com", nonce, nc)
}

fn nonce_of(resp: &[u8], alg: &str) -> String {
    let m = sip::parse(resp).unwrap();
    let challenge = m
        .header_values(HeaderName::WwwAuthenticate)
        .map(|v| sip::AuthParams::parse(v, "WWW-Authenticate").unwrap())
        .find(|a| a.get("algorithm") == Some(alg))
        .unwrap();
    challenge.get("nonce").unwrap().to_owned()
}

fn auth_bench() -> Bench {
    let creds = Credentials::from_passwords("tether", [("alice", "s3cret"), ("bob", "hunter2")]);
    bench_with(
        Policy::default(),
        Some(Authenticator::new(
            "tether".into(),
            Arc::new(creds),
            [9; 32],
            300,
        )),
    )
}

#[test]
fn digest_challenge_then_register_with_md5_and_sha256() {
    for alg in [Algorithm::Md5, Algorithm::Sha256] {
        let mut b = auth_bench();
        let (code, resp) = b.send(
            &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
            100,
        );
        assert_eq!(code, 401);
        assert!(b.dir.lookup("alice@example.com", 100).is_empty());
        let nonce = nonce_of(&resp, alg.as_str());
        let extra = format!(
            "{}Contact: <sip:alice@10.0.0.2>\r\n",
            authz(alg, "alice", "s3cret", &nonce, "00000001")
        );
        assert_eq!(
            b.send(&register("alice", "c1", 2, &extra), 101).0,
            200,
            "{alg:?}"
        );
        assert_eq!(b.dir.lookup("alice@example.com", 101).len(), 1);
    }
}

#[test]
fn wrong_password_is_403_and_registers_nothing() {
    let mut b = auth_bench();
    let (_, resp) = b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        100,
    );
    let nonce = nonce_of(&resp, "MD5");
    let extra = format!(
        "{}Contact: <sip:alice@10.0.0.2>\r\n",
        authz(Algorithm::Md5, "alice", "guess", &nonce, "00000001")
    );
    let (code, resp) = b.send(&register("alice", "c1", 2, &extra), 101);
    assert_eq!(code, 403);
    assert!(sip::parse(&resp)
        .unwrap()
        .header(HeaderName::WwwAuthenticate)
        .is_none());
    assert!(b.dir.lookup("alice@example.com", 101).is_empty());
    assert_eq!(b.reg.stats.forbidden, 1);
}

#[test]
fn users_may_register_only_their_own_aor() {
    let mut b = auth_bench();
    let (_, resp) = b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        100,
    );
    let nonce = nonce_of(&resp, "MD5");
    // bob's valid credentials on alice's AOR.
    let extra = format!(
        "{}Contact: <sip:bob@10.0.0.2>\r\n",
        authz(Algorithm::Md5, "bob", "hunter2", &nonce, "00000001")
    );
    assert_eq!(b.send(&register("alice", "c1", 2, &extra), 101).0, 403);
}

#[test]
fn stale_nonce_gets_a_fresh_challenge_marked_stale() {
    let mut b = auth_bench();
    let (_, resp) = b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        100,
    );
    let nonce = nonce_of(&resp, "MD5");
    let extra = format!(
        "{}Contact: <sip:alice@10.0.0.2>\r\n",
        authz(Algorithm::Md5, "alice", "s3cret", &nonce, "00000001")
    );
    let (code, resp) = b.send(&register("alice", "c1", 2, &extra), 1000);
    assert_eq!(code, 401);
    let m = sip::parse(&resp).unwrap();
    let c = sip::AuthParams::parse(
        m.header(HeaderName::WwwAuthenticate).unwrap(),
        "WWW-Authenticate",
    )
    .unwrap();
    assert_eq!(c.get("stale"), Some("true"));
}

#[test]
fn the_same_contact_twice_in_one_register_is_one_binding() {
    let mut b = bench();
    let (code, resp) = b.send(
        &register(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.2>, <sip:alice@10.0.0.2>;expires=120\r\n",
        ),
        0,
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    let found = b.dir.lookup("alice@example.com", 0);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expires_at, 120, "the later listing wins");
    assert_eq!(b.reg.local_bindings(), 1);
}

#[test]
fn a_binding_whose_path_is_not_named_yet_changes_its_queued_event() {
    use super::PathEvent;
    use crate::addr::PathKey;
    let mut b = bench();
    let req = |cseq| register("alice", "c1", cseq, "Contact: <sip:alice@10.0.0.2>\r\n");
    b.send_unsynced(&req(1), 0, "203.0.113.7:40000");
    // A refresh over another mapping before the path table heard of the
    // binding: still one event, with the new key.
    b.send_unsynced(&req(2), 1, "203.0.113.7:41000");
    let binding = b.dir.lookup("alice@example.com", 1)[0].binding;
    let new = PathKey::new(0, "203.0.113.7:41000".parse().unwrap());
    assert_eq!(
        b.reg.path_events,
        vec![PathEvent::Uses {
            key: new,
            slot: binding.slot,
            gen: binding.gen,
            was: None
        }]
    );
    // Gone before it was handed on: the path table hears nothing at all.
    assert!(b.reg.evict(binding));
    assert_eq!(b.reg.path_events, vec![]);
    b.sync_paths();
    assert_eq!(b.path_log, vec![]);
}

#[test]
fn a_refresh_from_a_new_nat_mapping_moves_the_binding_to_that_path() {
    use crate::addr::PathKey;
    let mut b = bench();
    b.send_from(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        0,
        "203.0.113.7:40000",
    );
    b.path_log.clear();
    // The same mapping: the binding stays on its path.
    b.send_from(
        &register("alice", "c1", 2, "Contact: <sip:alice@10.0.0.2>\r\n"),
        5,
        "203.0.113.7:40000",
    );
    assert_eq!(b.path_log, vec![]);
    b.send_from(
        &register("alice", "c1", 3, "Contact: <sip:alice@10.0.0.2>\r\n"),
        10,
        "203.0.113.7:41000",
    );
    let old = PathKey::new(0, "203.0.113.7:40000".parse().unwrap());
    let new = PathKey::new(0, "203.0.113.7:41000".parse().unwrap());
    assert_eq!(b.path_log, vec![(old, false), (new, true)]);
    assert_eq!(
        b.dir.lookup("alice@example.com", 10)[0].source,
        "203.0.113.7:41000".parse().unwrap()
    );
    // The registrar now names the new path: it is the one the binding
    // leaves when it goes.
    let binding = b.dir.lookup("alice@example.com", 10)[0].binding;
    b.path_log.clear();
    assert!(b.reg.evict(binding));
    b.sync_paths();
    assert_eq!(b.path_log, vec![(new, false)]);
}

#[test]
fn removing_one_flow_of_a_device_keeps_the_device_reachable_by_the_other() {
    let mut b = bench();
    b.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 0);
    b.send(&register("alice", "c2", 1, &flow("10.0.0.3", 2)), 0);
    b.send(
        &register(
            "alice",
            "c2",
            2,
            &format!("Contact: <sip:alice@10.0.0.3>;{INSTANCE};reg-id=2;expires=0\r\n"),
        ),
        1,
    );
    let dev = b
        .dir
        .device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        .expect("still known");
    assert_eq!(dev.binding, b.dir.lookup("alice@example.com", 1)[0].binding);
}

#[test]
fn a_refresh_keeps_the_subscription_opt_in() {
    let mut b = bench();
    let reg = |cseq| {
        register(
            "sub",
            "c9",
            cseq,
            "Contact: <sip:sub@10.0.0.2>\r\nExpires: 600\r\n",
        )
    };
    b.send(&reg(1), 0);
    let before = b.dir.lookup("sub@example.com", 1)[0].clone();
    assert!(!before.accepts_contact_me());
    // SUBSCRIBE opt-in (set by the fan-out engine on this core).
    assert!(crate::registrar::set_contact_flag(
        &b.dir,
        "sub@example.com",
        before.binding,
        flags::SUBSCRIBED,
        true
    ));
    b.send(&reg(2), 10);
    let after = &b.dir.lookup("sub@example.com", 11)[0];
    assert_eq!(after.binding, before.binding);
    assert!(
        after.accepts_contact_me(),
        "the refresh did not drop the opt-in"
    );
}

/// The device index follows a device's latest flow: when one RFC 5626 flow
/// re-registers through a new NAT mapping that lands on another core, the
/// device is found there, not at its other, older flow.
#[test]
fn a_device_is_found_at_the_flow_that_moved_last() {
    let mut first = bench();
    let mut second = first.other_core(1);
    let dir = first.dir.clone();
    let req = |call_id, cseq, reg_id| register("alice", call_id, cseq, &flow("10.0.0.2", reg_id));
    assert_eq!(first.send(&req("c1", 1, 1), 0).0, 200);
    assert_eq!(first.send(&req("c2", 1, 2), 0).0, 200);
    let moved = second.send_from(&req("c1", 2, 1), 1, "203.0.113.7:50000");
    assert_eq!(moved.0, 200);
    assert_eq!(dir.lookup("alice@example.com", 1).len(), 2);
    let dev = dir
        .device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        .unwrap();
    assert_eq!((dev.binding.core, &*dev.aor), (1, "alice@example.com"));
}

#[test]
fn a_contact_removed_and_listed_again_in_one_register_is_checked_once() {
    // Step 7 compares each stored binding with the request once, at its
    // first mention: a later mention of the same contact in the same request
    // must not make the request look like its own retransmission.
    let mut b = bench();
    b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        0,
    );
    let again = register(
        "alice",
        "c1",
        2,
        "Contact: <sip:alice@10.0.0.2>;expires=0, <sip:alice@10.0.0.2>;expires=300\r\n",
    );
    let (code, resp) = b.send(&again, 10);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&resp));
    let found = b.dir.lookup("alice@example.com", 10);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expires_at, 310, "removed, then registered anew");
    assert_eq!(found[0].cseq, 2);
    assert_eq!(b.reg.local_bindings(), 1);
    // The same request again is a retransmission: 200, nothing changes.
    let (code, resp) = b.send(&again, 11);
    assert_eq!(code, 200);
    assert_eq!(
        contact_expiries(&resp),
        vec![("sip:alice@10.0.0.2".to_owned(), 299)]
    );
    assert_eq!(b.dir.lookup("alice@example.com", 11), found);
    // An older CSeq of that Call-ID is refused and changes nothing either.
    let (code, _) = b.send(
        &register("alice", "c1", 1, "Contact: <sip:alice@10.0.0.2>\r\n"),
        12,
    );
    assert_eq!(code, 400);
    assert_eq!(b.dir.lookup("alice@example.com", 12), found);
}

#[test]
fn cseq_ordering_is_judged_before_the_contact_limit() {
    // RFC 3261 §10.3 step 7 fails a request whose Call-ID comes with a CSeq
    // not above the stored one, whatever else it asks for; the contact limit
    // is local policy, applied to the requests that pass. A request that
    // repeats the stored Call-ID and CSeq is answered as the retransmission
    // it says it is (the current bindings, nothing changed).
    let mut b = bench_with(
        Policy {
            max_contacts: 1,
            ..Policy::default()
        },
        None,
    );
    b.send(
        &register("alice", "c1", 5, "Contact: <sip:alice@10.0.0.2>\r\n"),
        0,
    );
    let before = b.dir.lookup("alice@example.com", 1);
    let two = "Contact: <sip:alice@10.0.0.9>, <sip:alice@10.0.0.2>\r\n";
    let (code, resp) = b.send(&register("alice", "c1", 4, two), 1);
    assert_eq!(code, 400);
    assert!(String::from_utf8_lossy(&resp).starts_with("SIP/2.0 400 Out of Order CSeq"));
    let (code, resp) = b.send(&register("alice", "c1", 5, two), 1);
    assert_eq!(code, 200);
    assert_eq!(
        contact_expiries(&resp),
        vec![("sip:alice@10.0.0.2".to_owned(), 3599)]
    );
    let (code, _) = b.send(&register("alice", "c1", 6, two), 1);
    assert_eq!(code, 403, "a higher CSeq passes step 7 and meets the limit");
    assert_eq!(b.dir.lookup("alice@example.com", 1), before);
    assert_eq!(b.reg.local_bindings(), 1);
}

mod events;

#[test]
fn a_binding_another_node_took_over_is_dropped_like_an_unregister() {
    let mut b = bench();
    b.send(&register("alice", "c1", 1, &flow("10.0.0.2", 1)), 0);
    let binding = b.dir.lookup("alice@example.com", 0)[0].binding;
    b.path_log.clear();
    // Another core's binding, or this one's on a stale generation: nothing.
    assert!(!b.reg.evict(BindingRef { core: 1, ..binding }));
    assert!(!b.reg.evict(BindingRef {
        gen: binding.gen + 1,
        ..binding
    }));
    assert_eq!(b.reg.local_bindings(), 1);
    assert!(b.reg.evict(binding));
    assert!(b.dir.lookup("alice@example.com", 1).is_empty());
    assert!(b
        .dir
        .device("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        .is_none());
    assert_eq!(b.reg.local_bindings(), 0);
    // Its NAT path is one binding lighter: keepalive stops with the last.
    b.sync_paths();
    let gone: Vec<bool> = b.path_log.iter().map(|e| e.1).collect();
    assert_eq!(gone, vec![false]);
    // Twice is once; its expiry timer later finds nothing.
    assert!(!b.reg.evict(binding));
    assert_eq!(b.expire(10_000), 0);
}
