//! The endpoint on a faulty network, on a fake clock. A fault-injecting link
//! (smoltcp's `phy::FaultInjector` is the model) drops, duplicates, delays
//! and so reorders datagrams in both directions; simulated user agents
//! register with RFC 3261 retransmissions, answer keepalive prompts and
//! contact-me NOTIFYs. Registration, keepalive and a fan-out job are each
//! shown to end correctly under 10% loss and 10% duplication, and a device
//! that stops answering is shown to be declared dead: the faults are not so
//! mild that nothing could fail.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;

use tether::endpoint::{Command, Core, Endpoint, Event};
use tether::metrics::CoreMetric;
use tether::nat::{Keepalive, KeepaliveConfig};
use tether::notify::{Job, JobPart, JobSpec, Kind, NotifyConfig, Outcome};
use tether::registrar::{Directory, Policy, Registrar};
use tether::sip::{self, writer, Limits, Method};
use tether::transaction::{ClientTransaction, Kind as TxKind, Timers};

/// xorshift64*: deterministic faults from a seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `pct`/100.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
}

/// What the link does to each datagram.
#[derive(Clone, Copy)]
struct Faults {
    drop_pct: u64,
    dup_pct: u64,
    /// Each datagram (and each duplicate) is delayed 1..=max_delay_ms, so
    /// datagrams sent close together arrive out of order.
    max_delay_ms: u64,
}

struct Datagram {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

/// Datagrams in flight, by delivery time.
struct Link {
    faults: Faults,
    rng: Rng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    slots: Vec<Option<Datagram>>,
    seq: u64,
    dropped: u64,
    duplicated: u64,
}

impl Link {
    fn new(faults: Faults, seed: u64) -> Link {
        Link {
            faults,
            rng: Rng(seed | 1),
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            seq: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    fn send(&mut self, now: u64, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        if self.rng.chance(self.faults.drop_pct) {
            self.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.dup_pct) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.next() % self.faults.max_delay_ms.max(1);
            self.slots.push(Some(Datagram {
                from,
                to,
                bytes: bytes.to_vec(),
            }));
            self.queue
                .push(Reverse((now + delay, self.slots.len() as u64 - 1)));
            self.seq += 1;
        }
    }

    fn next_at(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    fn pop_due(&mut self, now: u64) -> Option<Datagram> {
        let Reverse((at, i)) = *self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.slots[i as usize].take()
    }
}

const SERVER: &str = "192.0.2.1:5060";

/// A simulated device: registers once, answers whatever tether sends it.
struct Ua {
    addr: SocketAddr,
    user: String,
    register: Vec<u8>,
    tx: Option<ClientTransaction>,
    registered: bool,
    /// Stops answering (a device that left the network).
    silent: bool,
    prompts: u64,
    notifies: u64,
}

impl Ua {
    fn new(i: u32) -> Ua {
        let addr = SocketAddr::from(([198, 51, 100, (i % 250) as u8 + 1], 5000 + i as u16));
        let user = format!("ua{i}");
        let register = format!(
            "REGISTER sip:t.example SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKreg{i};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@t.example>;tag=f{i}\r\nTo: <sip:{user}@t.example>\r\n\
Call-ID: reg{i}@sim\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{addr}>\r\n\
Expires: 3600\r\nAccept: application/sdp, application/application-server-contact-me\r\n\
Content-Length: 0\r\n\r\n"
        )
        .into_bytes();
        Ua {
            addr,
            user,
            register,
            tx: None,
            registered: false,
            silent: false,
            prompts: 0,
            notifies: 0,
        }
    }

    fn deadline(&self) -> Option<u64> {
        self.tx.as_ref().and_then(ClientTransaction::deadline)
    }
}

struct Sim {
    ep: Endpoint,
    dir: Arc<Directory>,
    link: Link,
    uas: Vec<Ua>,
    now: u64,
    timers: Timers,
    finished: Vec<Arc<Job>>,
}

impl Sim {
    fn new(n: u32, faults: Faults, seed: u64) -> Sim {
        let dir = Arc::new(Directory::new());
        let reg = Registrar::new(0, Arc::new(Policy::default()), dir.clone(), None);
        let ka = Keepalive::new(
            KeepaliveConfig {
                interval_ms: 20_000,
                jitter_ms: 2_000,
                ..KeepaliveConfig::default()
            },
            seed,
        );
        let addrs = vec![SERVER.parse().unwrap()];
        let notify = tether::notify::Engine::new(
            Arc::new(NotifyConfig::default()),
            dir.clone(),
            addrs.clone(),
            1000,
            seed,
        );
        Sim {
            ep: Endpoint::new(Limits::default(), seed, reg, ka, notify, addrs),
            dir,
            link: Link::new(faults, seed),
            uas: (0..n).map(Ua::new).collect(),
            now: 0,
            timers: Timers::default(),
            finished: Vec::new(),
        }
    }

    fn server() -> SocketAddr {
        SERVER.parse().unwrap()
    }

    /// Every device sends its REGISTER (retransmitted on Timer E).
    fn register_all(&mut self) {
        for i in 0..self.uas.len() {
            let (tx, _) = ClientTransaction::start(TxKind::NonInvite, self.now, &self.timers);
            let ua = &mut self.uas[i];
            ua.tx = Some(tx);
            let (addr, bytes) = (ua.addr, ua.register.clone());
            self.link.send(self.now, addr, Self::server(), &bytes);
        }
    }

    /// Runs the world until `until`, jumping from event to event.
    fn run_until(&mut self, until: u64) {
        loop {
            self.flush();
            let next = [
                self.link.next_at(),
                self.ep.poll_timeout(),
                self.uas.iter().filter_map(Ua::deadline).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => self.now = self.now.max(t),
                _ => {
                    self.now = until;
                    return;
                }
            }
            while let Some(d) = self.link.pop_due(self.now) {
                if d.to == Self::server() {
                    self.ep.handle_datagram(self.now, 0, d.from, &d.bytes);
                } else if let Some(i) = self.uas.iter().position(|u| u.addr == d.to) {
                    self.ua_receive(i, &d.bytes);
                }
            }
            if self.ep.poll_timeout().is_some_and(|t| t <= self.now) {
                self.ep.handle_timeout(self.now);
            }
            for i in 0..self.uas.len() {
                self.ua_timer(i);
            }
        }
    }

    /// Moves what the endpoint produced onto the link and into the record.
    fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            self.link.send(self.now, Self::server(), t.to, t.bytes);
        }
        while let Some(ev) = self.ep.poll_event() {
            match ev {
                Event::JobFinished(job) => self.finished.push(job),
                Event::Forget(b) => panic!("one core takes nothing over: {b:?}"),
                Event::JobPartFinished => {}
                Event::Handoff(h) => panic!("one core hands nothing off: {h:?}"),
                Event::PathNote(n) => panic!("one core notes its own paths: {n:?}"),
                Event::Calls(..) | Event::Blocks(..) => {}
                Event::Http(r) => panic!("no HTTP is configured here: {r:?}"),
                Event::Job(..) | Event::Registered(_) => panic!("nothing is held here"),
            }
        }
    }

    fn ua_timer(&mut self, i: usize) {
        let now = self.now;
        let ua = &mut self.uas[i];
        let Some(tx) = ua.tx.as_mut() else { return };
        if tx.deadline().is_none_or(|d| d > now) {
            return;
        }
        let out = tx.on_timer(now, &self.timers);
        if out.retransmit {
            let (addr, bytes) = (ua.addr, ua.register.clone());
            self.link.send(now, addr, Self::server(), &bytes);
        }
        assert!(!out.timed_out, "{}'s REGISTER timed out", ua.user);
        if out.terminated {
            ua.tx = None;
        }
    }

    fn ua_receive(&mut self, i: usize, bytes: &[u8]) {
        let now = self.now;
        let ua = &mut self.uas[i];
        let msg = sip::parse(bytes).expect("tether sends well-formed SIP");
        if let Some(code) = msg.status() {
            // The answer to our REGISTER.
            if let Some(tx) = ua.tx.as_mut() {
                let out = tx.on_response(code, now, &self.timers);
                if out.deliver == Some(200) {
                    ua.registered = true;
                }
                if out.terminated {
                    ua.tx = None;
                }
            }
            return;
        }
        match msg.method() {
            Some(Method::Options) => ua.prompts += 1,
            Some(Method::Notify) => ua.notifies += 1,
            m => panic!("unexpected request {m:?}"),
        }
        if ua.silent {
            return;
        }
        let mut out = Vec::new();
        writer::response_to(&mut out, &msg, 200, "OK", Some("ua"), None).finish(None);
        let addr = ua.addr;
        self.link.send(now, addr, Self::server(), &out);
    }

    fn metric(&self, m: CoreMetric) -> u64 {
        self.ep.metric(m)
    }
}

const LOSSY: Faults = Faults {
    drop_pct: 10,
    dup_pct: 10,
    max_delay_ms: 40,
};

#[test]
fn registration_under_loss_duplication_and_reordering() {
    let n = 300;
    let mut sim = Sim::new(n, LOSSY, 0x5eed_0001);
    sim.register_all();
    sim.run_until(40_000);
    assert!(
        sim.link.dropped > 0 && sim.link.duplicated > 0,
        "faults happened"
    );
    for ua in &sim.uas {
        assert!(ua.registered, "{} never saw its 200", ua.user);
        assert!(ua.tx.is_none(), "{}'s transaction is over", ua.user);
        let aor = format!("{}@t.example", ua.user);
        let found = sim.dir.lookup(&aor, 40);
        assert_eq!(found.len(), 1, "{aor}: one binding, duplicates merged");
    }
    // Retransmitted and duplicated REGISTERs refresh, never add a binding.
    assert_eq!(sim.metric(CoreMetric::Registered), u64::from(n));
    assert_eq!(sim.metric(CoreMetric::Bindings), u64::from(n));
    assert_eq!(sim.ep.paths(), n as usize);
}

#[test]
fn keepalive_under_loss_keeps_live_paths_and_finds_the_dead_one() {
    let n = 100;
    let mut sim = Sim::new(n, LOSSY, 0x5eed_0002);
    sim.register_all();
    sim.run_until(10_000);
    assert!(sim.uas.iter().all(|u| u.registered));
    // One device leaves the network: it hears prompts and answers none.
    sim.uas[7].silent = true;
    // Ten keepalive intervals.
    sim.run_until(10_000 + 10 * 20_000);
    let prompts: u64 = sim.uas.iter().map(|u| u.prompts).sum();
    assert!(
        prompts >= u64::from(n) * 8,
        "every path was prompted each interval: {prompts}"
    );
    assert!(sim.metric(CoreMetric::PromptsAnswered) > 0);
    assert!(
        sim.metric(CoreMetric::PromptsMissed) > 0,
        "some prompts were lost"
    );
    // Only the silent device's path died; loss alone never killed a path
    // (a prompt is retransmitted, and three misses in a row are needed).
    assert_eq!(sim.metric(CoreMetric::PathsDead), 1);
    assert_eq!(sim.metric(CoreMetric::PathsDeclaredDead), 1);
}

#[test]
fn fan_out_job_under_loss_reaches_every_device_once() {
    let n = 200;
    let mut sim = Sim::new(n, LOSSY, 0x5eed_0003);
    sim.register_all();
    sim.run_until(10_000);
    let targets: Vec<String> = sim
        .uas
        .iter()
        .map(|u| format!("{}@t.example", u.user))
        .collect();
    let spec = JobSpec {
        kind: Kind::ContactMe,
        request_id: "42".into(),
        server: tether::notify::ServerAddr {
            host: "203.0.113.9".into(),
            port: 5060,
        },
        path: None,
        time_slot: None,
        protocol: None,
        credentials_ref: None,
        callback_url: None,
        rate: None,
        targets,
        owner: "test".into(),
    };
    let (devices, unmatched) =
        tether::notify::resolve::resolve(&sim.dir, &spec.targets, Kind::ContactMe, 10);
    assert!(unmatched.is_empty());
    assert_eq!(devices.len(), n as usize);
    let body = tether::notify::contact_me_body(&spec, &Default::default());
    let idx: Vec<u32> = (0..devices.len() as u32).collect();
    let now = sim.now;
    let created = tether::notify::Created {
        unix_ms: 1_800_000_000_000,
        at: now,
    };
    let job = Arc::new(Job::new(
        1,
        spec,
        body.into_bytes().into(),
        devices,
        unmatched,
        1,
        created,
    ));
    sim.ep.handle_command(
        now,
        Command::Job(
            JobPart {
                job: job.clone(),
                devices: idx,
            },
            None,
        ),
    );
    sim.run_until(now + 40_000);
    assert_eq!(sim.finished.len(), 1, "the job finished on this core");
    assert!(
        job.finished_unix_ms() > created.unix_ms,
        "stamped from the fake clock"
    );
    for (i, ua) in sim.uas.iter().enumerate() {
        assert_eq!(job.outcome(i), Outcome::Delivered(200), "{}", ua.user);
        assert!(ua.notifies >= 1);
    }
    // Duplicated NOTIFYs and 200s are absorbed: each device counts once.
    assert_eq!(sim.metric(CoreMetric::NotifyDelivered), u64::from(n));
    assert_eq!(sim.metric(CoreMetric::NotifyTimedOut), 0);
    assert!(
        sim.metric(CoreMetric::NotifyRetransmitted) > 0,
        "loss forced retransmissions"
    );
}
