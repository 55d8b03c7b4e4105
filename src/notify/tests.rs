//! The fan-out engine on a fake clock: bytes out, responses in, outcomes
//! asserted. No sockets.

use std::net::SocketAddr;
use std::sync::Arc;

use super::*;
use crate::registrar::{flags, AorRecord, BindingRef, ContactView, Decision, Directory};
use crate::sip::digest;
use crate::sip::{self, writer, HeaderName, Method};

mod subscribe;

const DEVICE: &str = "198.51.100.7:40123";

/// Jobs are created at the engines' time 0.
const CREATED: Created = Created {
    unix_ms: 1_700_000_000_000,
    at: 0,
};

fn dev_addr() -> SocketAddr {
    DEVICE.parse().unwrap()
}

fn directory(flag: u8) -> Arc<Directory> {
    let d = Arc::new(Directory::new());
    d.update("7546658000@example.net", |_| {
        let mut r = AorRecord::default();
        r.contacts.push(ContactView {
            binding: BindingRef {
                core: 0,
                slot: 3,
                gen: 1,
            },
            contact: "sip:7546658000@192.168.1.20:5060".into(),
            expires_at: 3600,
            source: dev_addr(),
            flags: flag,
            instance: Some("urn:uuid:dev-1".into()),
            ..ContactView::default()
        });
        Decision::Replace(r, ())
    });
    d
}

fn spec(kind: Kind) -> JobSpec {
    JobSpec {
        kind,
        request_id: "10210".into(),
        server: ServerAddr {
            host: "132.143.12.14".into(),
            port: 18443,
        },
        path: None,
        time_slot: None,
        protocol: None,
        credentials_ref: Some("cred-7".into()),
        callback_url: None,
        rate: None,
        targets: vec!["7546658000@example.net".into()],
        owner: "as1".into(),
    }
}

/// An engine with a wheel of its own, standing in for the endpoint whose
/// one wheel the engine shares with the core's other state machines: the
/// calls that arm timers get it passed, and `tick` dispatches what fires.
pub(super) struct Eng {
    e: Engine,
    t: crate::timer::Timers,
}

impl std::ops::Deref for Eng {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.e
    }
}

impl std::ops::DerefMut for Eng {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.e
    }
}

impl Eng {
    pub(super) fn new(
        cfg: Arc<NotifyConfig>,
        dir: Arc<Directory>,
        local_addrs: Vec<SocketAddr>,
        rate: u32,
        seed: u64,
    ) -> Eng {
        Eng {
            e: Engine::new(cfg, dir, local_addrs, rate, seed),
            t: crate::timer::Timers::new(0),
        }
    }

    pub(super) fn start(&mut self, part: JobPart, rate: Option<u32>, now: u64) {
        self.e.start(part, rate, now, &mut self.t)
    }

    pub(super) fn on_response(&mut self, msg: &sip::Message<'_>, branch: &str, now: u64) -> bool {
        self.e.on_response(msg, branch, now, &mut self.t)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe(
        &mut self,
        msg: &sip::Message<'_>,
        checked: &sip::Checked<'_>,
        src: SocketAddr,
        local: u8,
        now: u64,
        tag: &str,
        out: &mut Vec<u8>,
    ) -> SubscribeAnswer {
        self.e
            .subscribe(msg, checked, src, local, now, tag, out, &mut self.t)
    }

    pub(super) fn next_deadline(&self, _now: u64) -> Option<u64> {
        self.t.next_deadline()
    }

    /// Every timer due at `now`, as the endpoint hands them out.
    pub(super) fn tick(&mut self, now: u64) {
        use crate::timer::Timer;
        while let Some(timer) = self.t.poll(now) {
            match timer {
                Timer::Transaction { slot, nonce } => {
                    self.e.on_timer(slot, nonce, now, &mut self.t)
                }
                Timer::Pace => self.e.on_pace(now, &mut self.t),
                Timer::Subscriptions => self.e.on_sweep(now, &mut self.t),
                other => panic!("not the engine's timer: {other:?}"),
            }
        }
    }
}

/// Feeds a response to the engine as the dispatcher does (top Via branch
/// parsed by the caller).
fn respond(e: &mut Eng, msg: &sip::Message<'_>, now: u64) -> bool {
    let via = msg.top_via().unwrap();
    e.on_response(msg, via.branch().unwrap(), now)
}

struct Rig {
    engine: Eng,
    job: Arc<Job>,
    now: u64,
}

impl Rig {
    fn new(kind: Kind, flag: u8, cfg: NotifyConfig) -> Rig {
        let dir = directory(flag);
        let s = spec(kind);
        let (devices, unmatched) = resolve::resolve(&dir, &s.targets, kind, 10);
        let body = match kind {
            Kind::ContactMe => contact_me_body(&s, &cfg.labels),
            Kind::WakeInvite => wake_body(&s, &cfg.labels),
        };
        let job = Arc::new(Job::new(
            1,
            s,
            body.into_bytes().into(),
            devices,
            unmatched,
            1,
            CREATED,
        ));
        let mut engine = Eng::new(
            Arc::new(cfg),
            dir,
            vec!["192.0.2.1:5060".parse().unwrap()],
            1000,
            9,
        );
        engine.start(
            JobPart {
                job: job.clone(),
                devices: vec![0],
            },
            None,
            1000,
        );
        Rig {
            engine,
            job,
            now: 1000,
        }
    }

    /// Advances the clock to `to` and returns what was sent meanwhile.
    fn run_to(&mut self, to: u64) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        loop {
            self.engine.tick(self.now);
            self.engine.drain_outbound(&mut |b, addr, local| {
                assert_eq!((addr, local), (dev_addr(), 0));
                sent.push(b.to_vec());
            });
            match self.engine.next_deadline(self.now) {
                Some(d) if d <= to && d > self.now => self.now = d,
                _ => break,
            }
        }
        self.now = to;
        self.engine.tick(to);
        self.engine
            .drain_outbound(&mut |b, _, _| sent.push(b.to_vec()));
        sent
    }

    /// Feeds a response to `req` and returns what the engine sent in reply.
    fn answer(&mut self, req: &[u8], code: u16, extra: &[(&str, &str)]) -> Vec<Vec<u8>> {
        let m = sip::parse(req).unwrap();
        let mut buf = Vec::new();
        let mut w = writer::response_to(&mut buf, &m, code, "X", Some("devtag"), None);
        for (n, v) in extra {
            w.header_named(n, v);
        }
        w.finish(None);
        let resp = sip::parse(&buf).unwrap();
        assert!(respond(&mut self.engine, &resp, self.now));
        let mut sent = Vec::new();
        self.engine
            .drain_outbound(&mut |b, _, _| sent.push(b.to_vec()));
        sent
    }
}

fn method_of(b: &[u8]) -> Method<'_> {
    sip::parse(b).unwrap().method().unwrap()
}

#[test]
fn contact_me_notify_carries_seed_000_headers_and_body_and_200_delivers() {
    let mut r = Rig::new(Kind::ContactMe, flags::CONTACT_ME, NotifyConfig::default());
    let sent = r.run_to(1000);
    assert_eq!(sent.len(), 1);
    let m = sip::parse(&sent[0]).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(m.method(), Some(Method::Notify));
    assert_eq!(
        m.request_uri_raw(),
        Some("sip:7546658000@192.168.1.20:5060"),
        "Request-URI is the registered contact"
    );
    assert_eq!(
        m.header(HeaderName::Event),
        Some("application-server-contact-me")
    );
    assert_eq!(
        m.header(HeaderName::ContentType),
        Some("application/application-server-contact-me")
    );
    assert_eq!(c.to.uri().raw, "sip:7546658000@example.net");
    assert_eq!(
        m.body,
        b"RequestID=10210\r\napplication_server_ip_addr=132.143.12.14\r\napplication_server_ip_port=18443\r\n"
    );
    assert_eq!(r.job.outcome(0), Outcome::InFlight);
    assert!(r.answer(&sent[0], 200, &[]).is_empty());
    assert_eq!(r.job.outcome(0), Outcome::Delivered(200));
    assert!(r.job.is_finished());
    assert_eq!(r.engine.finished.len(), 1);
    // Freed at once; a duplicate 200 misses and is counted, not applied.
    assert_eq!(r.engine.in_flight(), 0);
    assert!(r.answer(&sent[0], 200, &[]).is_empty());
    assert_eq!(r.engine.stats.stray_responses, 1);
    assert_eq!(r.job.outcome(0), Outcome::Delivered(200), "still delivered");
}

#[test]
fn unanswered_notify_retransmits_on_timer_e_and_times_out_at_timer_f() {
    let mut r = Rig::new(Kind::ContactMe, flags::CONTACT_ME, NotifyConfig::default());
    let first = r.run_to(1000);
    let mut times = Vec::new();
    for t in (1250..=34_000).step_by(250) {
        for b in r.run_to(t) {
            assert_eq!(b, first[0], "a retransmission is byte-identical");
            times.push(t);
        }
    }
    assert_eq!(
        &times[..5],
        &[1500, 2500, 4500, 8500, 12_500],
        "T1 doubling to T2"
    );
    assert_eq!(r.job.outcome(0), Outcome::TimedOut);
    assert_eq!(r.engine.stats.timed_out, 1);
    assert_eq!(r.engine.in_flight(), 0);
}

#[test]
fn a_device_challenge_is_answered_once_with_valid_credentials() {
    let cfg = NotifyConfig {
        credentials: Some(("tether".into(), "s3cret".into())),
        ..NotifyConfig::default()
    };
    let mut r = Rig::new(Kind::ContactMe, flags::CONTACT_ME, cfg);
    let sent = r.run_to(1000);
    let retry = r.answer(
        &sent[0],
        401,
        &[(
            "WWW-Authenticate",
            "Digest realm=\"dev\", nonce=\"abc123\", qop=\"auth\", algorithm=MD5",
        )],
    );
    assert_eq!(retry.len(), 1);
    let m = sip::parse(&retry[0]).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(c.cseq.seq, 2);
    let a = c.authorization.unwrap();
    assert_eq!(a.get("username"), Some("tether"));
    assert_eq!(a.get("uri"), Some("sip:7546658000@192.168.1.20:5060"));
    let ha1 = digest::ha1(digest::Algorithm::Md5, "tether", "dev", "s3cret");
    let want = digest::response(
        digest::Algorithm::Md5,
        &ha1,
        &digest::ResponseInput {
            method: "NOTIFY",
            uri: "sip:7546658000@192.168.1.20:5060",
            nonce: "abc123",
            qop_auth: Some((a.get("nc").unwrap(), a.get("cnonce").unwrap())),
        },
    );
    assert_eq!(a.get("response"), Some(want.as_str()));
    assert_eq!(m.body, sip::parse(&sent[0]).unwrap().body, "same body");
    // A second challenge is an outcome, not a loop.
    assert!(r
        .answer(
            &retry[0],
            401,
            &[("WWW-Authenticate", "Digest realm=\"dev\", nonce=\"n2\"")]
        )
        .is_empty());
    assert_eq!(r.job.outcome(0), Outcome::Rejected(401));
    assert_eq!(r.engine.stats.challenges_answered, 1);
}

#[test]
fn wake_invite_486_is_delivered_and_acked_on_the_same_branch() {
    let mut r = Rig::new(Kind::WakeInvite, flags::SDP, NotifyConfig::default());
    let sent = r.run_to(1000);
    let inv = sip::parse(&sent[0]).unwrap();
    assert_eq!(inv.method(), Some(Method::Invite));
    assert_eq!(
        inv.header(HeaderName::ContentType),
        Some("application/vnd.tether.bootstrap")
    );
    assert!(std::str::from_utf8(inv.body)
        .unwrap()
        .contains("credentials_ref=cred-7\r\n"));
    assert!(inv.header(HeaderName::Contact).is_some());
    let out = r.answer(&sent[0], 486, &[]);
    assert_eq!(out.len(), 1);
    let ack = sip::parse(&out[0]).unwrap();
    let c = ack.validate().unwrap();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(
        c.top_via.branch(),
        inv.top_via().unwrap().branch(),
        "ACK of a non-2xx is part of the INVITE transaction"
    );
    assert_eq!(c.to.tag(), Some("devtag"));
    assert_eq!(r.job.outcome(0), Outcome::Delivered(486));
    // A retransmitted 486 is ACKed again and changes nothing.
    assert_eq!(method_of(&r.answer(&sent[0], 486, &[])[0]), Method::Ack);
    assert_eq!(r.engine.stats.delivered, 1);
}

#[test]
fn wake_invite_200_gets_ack_then_bye_so_no_dialog_is_left() {
    let mut r = Rig::new(Kind::WakeInvite, flags::SDP, NotifyConfig::default());
    let sent = r.run_to(1000);
    let out = r.answer(&sent[0], 200, &[("Contact", "<sip:dev@192.168.1.20:5062>")]);
    assert_eq!(out.len(), 2);
    let (ack, bye) = (sip::parse(&out[0]).unwrap(), sip::parse(&out[1]).unwrap());
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.request_uri_raw(), Some("sip:dev@192.168.1.20:5062"));
    assert_ne!(
        ack.top_via().unwrap().branch(),
        sip::parse(&sent[0]).unwrap().top_via().unwrap().branch(),
        "the 2xx ACK is its own transaction"
    );
    assert_eq!(bye.method(), Some(Method::Bye));
    let bc = bye.validate().unwrap();
    assert_eq!(bc.cseq.seq, 2);
    assert_eq!(bc.to.tag(), Some("devtag"));
    assert_eq!(r.job.outcome(0), Outcome::Delivered(200));
    assert!(r.answer(&out[1], 200, &[]).is_empty());
    // The answered INVITE lingers to re-ACK a retransmitted 2xx for T4 (not
    // Timer M's 32 s: that held every answered device's slot, capping jobs).
    assert_eq!(r.engine.in_flight(), 1);
    let again = r.answer(&sent[0], 200, &[("Contact", "<sip:dev@192.168.1.20:5062>")]);
    assert_eq!(
        again.len(),
        1,
        "a retransmitted 2xx is ACKed again, no second BYE"
    );
    assert_eq!(method_of(&again[0]), Method::Ack);
    r.run_to(1000 + 5_100);
    assert_eq!(r.engine.in_flight(), 0, "INVITE and BYE transactions ended");
}

#[test]
fn a_ringing_wake_invite_is_cancelled_after_ring_ms() {
    let cfg = NotifyConfig {
        ring_ms: 2000,
        ..NotifyConfig::default()
    };
    let mut r = Rig::new(Kind::WakeInvite, flags::SDP, cfg);
    let sent = r.run_to(1000);
    assert!(r.answer(&sent[0], 180, &[]).is_empty());
    assert_eq!(r.job.outcome(0), Outcome::Delivered(180));
    assert!(
        r.run_to(2999).is_empty(),
        "no INVITE retransmission after a 180"
    );
    let cancel = r.run_to(3000);
    assert_eq!(cancel.len(), 1);
    let c = sip::parse(&cancel[0]).unwrap();
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_eq!(
        c.top_via().unwrap().branch(),
        sip::parse(&sent[0]).unwrap().top_via().unwrap().branch()
    );
    assert!(r.answer(&cancel[0], 200, &[]).is_empty());
    let ack = r.answer(&sent[0], 487, &[]);
    assert_eq!(method_of(&ack[0]), Method::Ack);
    assert_eq!(
        r.job.outcome(0),
        Outcome::Delivered(487),
        "the latest answer's code"
    );
}

#[test]
fn devices_that_cannot_take_it_are_reported_not_sent_to() {
    for (flag, want) in [
        (0, Outcome::NotAccepted),
        (flags::CONTACT_ME | flags::UNREACHABLE, Outcome::PathDead),
    ] {
        let mut r = Rig::new(Kind::ContactMe, flag, NotifyConfig::default());
        assert!(r.run_to(1000).is_empty());
        assert_eq!(r.job.outcome(0), want);
        assert!(r.job.is_finished());
    }
    // The binding went away between the API call and its turn.
    let mut r = Rig::new(Kind::ContactMe, flags::CONTACT_ME, NotifyConfig::default());
    r.engine
        .directory()
        .remove_binding("7546658000@example.net", r.job.devices[0].binding);
    assert!(r.run_to(1000).is_empty());
    assert_eq!(r.job.outcome(0), Outcome::NoBinding);
}

/// A job of `n` copies of the one device (pacing and cancelling are about
/// counts, not addresses), started on an engine with `node_rate`.
fn copies(n: u32, node_rate: u32, job_rate: Option<u32>) -> (Arc<Job>, Eng) {
    let dir = directory(flags::CONTACT_ME);
    let s = spec(Kind::ContactMe);
    let base = resolve::resolve(&dir, &s.targets, Kind::ContactMe, 10).0;
    let devices: Vec<_> = (0..n).map(|_| base[0].clone()).collect();
    let job = Arc::new(Job::new(2, s, Box::default(), devices, vec![], 1, CREATED));
    let mut e = Eng::new(
        Arc::new(NotifyConfig::default()),
        dir,
        vec!["192.0.2.1:5060".parse().unwrap()],
        node_rate,
        1,
    );
    e.start(
        JobPart {
            job: job.clone(),
            devices: (0..n).collect(),
        },
        job_rate,
        0,
    );
    (job, e)
}

#[test]
fn pacing_spreads_a_job_over_time() {
    let (_job, mut e) = copies(500, 100_000, Some(10_000));
    let mut sent_at = Vec::new();
    for now in 0..=40u64 {
        e.tick(now);
        e.drain_outbound(&mut |_, _, _| sent_at.push(now));
    }
    // 10,000/s: a 10 ms burst (100) then 10 per ms.
    assert_eq!(sent_at.iter().filter(|&&t| t == 0).count(), 100);
    assert_eq!(sent_at.len(), 100 + 40 * 10);
}

#[test]
fn cancelling_a_job_settles_what_was_not_sent() {
    let (job, mut e) = copies(50, 1000, None);
    e.tick(0); // 10 ms burst at 1000/s: 10 sent
    job.cancel();
    e.tick(1);
    let c = job.counts();
    assert_eq!((c.in_flight, c.cancelled), (10, 40));
}

#[test]
fn late_or_forged_answers_do_not_match() {
    let mut r = Rig::new(Kind::ContactMe, flags::CONTACT_ME, NotifyConfig::default());
    let sent = r.run_to(1000);
    let text = String::from_utf8_lossy(&sent[0]).into_owned();
    let branch = sip::parse(&sent[0])
        .unwrap()
        .top_via()
        .unwrap()
        .branch()
        .unwrap()
        .to_owned();
    // Same slot, wrong nonce: a guess or an answer to a freed slot.
    let last = if branch.ends_with('0') { "1" } else { "0" };
    let forged_branch = format!("{}{last}", &branch[..branch.len() - 1]);
    let forged = text.replace(&branch, &forged_branch);
    let m = sip::parse(forged.as_bytes()).unwrap();
    let mut buf = Vec::new();
    writer::response_to(&mut buf, &m, 200, "OK", Some("x"), None).finish(None);
    assert!(respond(&mut r.engine, &sip::parse(&buf).unwrap(), 1001));
    assert_eq!(r.job.outcome(0), Outcome::InFlight);
    assert_eq!(r.engine.stats.stray_responses, 1);
}

#[test]
fn an_indirect_device_is_reached_through_its_path_route() {
    let dir = Arc::new(Directory::new());
    dir.update("indirect@example.net", |_| {
        let mut r = AorRecord::default();
        r.contacts.push(ContactView {
            binding: BindingRef {
                core: 0,
                slot: 1,
                gen: 1,
            },
            contact: "sip:indirect@10.9.9.9:5060".into(),
            expires_at: 3600,
            // The REGISTER came from the edge proxy, which is where requests go.
            source: dev_addr(),
            path: Some("<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>".into()),
            flags: flags::CONTACT_ME,
            ..ContactView::default()
        });
        Decision::Replace(r, ())
    });
    let mut s = spec(Kind::ContactMe);
    s.targets = vec!["indirect@example.net".into()];
    s.server = ServerAddr {
        host: "2001:db8::7".into(),
        port: 443,
    };
    let (devices, _) = resolve::resolve(&dir, &s.targets, Kind::ContactMe, 10);
    let body = contact_me_body(&s, &crate::notify::Labels::default());
    let job = Arc::new(Job::new(
        5,
        s,
        body.into_bytes().into(),
        devices,
        vec![],
        1,
        CREATED,
    ));
    let mut e = Eng::new(
        Arc::new(NotifyConfig::default()),
        dir,
        vec!["192.0.2.1:5060".parse().unwrap()],
        1000,
        3,
    );
    e.start(
        JobPart {
            job,
            devices: vec![0],
        },
        None,
        0,
    );
    e.tick(0);
    let mut sent = Vec::new();
    e.drain_outbound(&mut |b, to, _| sent.push((b.to_vec(), to)));
    let (bytes, to) = &sent[0];
    assert_eq!(
        *to,
        dev_addr(),
        "sent to the proxy the REGISTER came through"
    );
    let m = sip::parse(bytes).unwrap();
    let routes: Vec<_> = m.header_values(HeaderName::Route).collect();
    assert_eq!(
        routes,
        vec!["<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>"]
    );
    assert_eq!(m.request_uri_raw(), Some("sip:indirect@10.9.9.9:5060"));
    // An IPv6 application server is written as the seed's hostport line.
    assert_eq!(m.body, b"RequestID=10210\r\n[2001:db8::7]:443\r\n");
}
