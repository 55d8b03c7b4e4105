//! A fan-out job as every thread sees it: what was asked, which devices it
//! reached, and one atomic outcome word per device. Cores write outcomes,
//! the API reads them; neither takes a lock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::registrar::BindingRef;

/// What kind of request a job sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIP NOTIFY with the contact-me event package (seed 000).
    ContactMe,
    /// SIP INVITE carrying bootstrap data (seed 001).
    WakeInvite,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ContactMe => "contact-me",
            Kind::WakeInvite => "wake-invite",
        }
    }
}

/// The application server's address as given: an IPv4 or IPv6 literal or an FQDN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    /// True for an IPv4 literal (the seed's `application_server_ip_addr` form).
    pub fn is_ipv4(&self) -> bool {
        self.host.parse::<std::net::Ipv4Addr>().is_ok()
    }

    /// `host:port`, IPv6 in brackets (RFC 3261 hostport).
    pub fn hostport(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// What the application server asked for (validated by the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub kind: Kind,
    /// Decimal digits (seed 000: `RequestID = 1*DIGIT`).
    pub request_id: String,
    pub server: ServerAddr,
    pub path: Option<String>,
    pub time_slot: Option<String>,
    pub protocol: Option<String>,
    /// Wake-up only: a reference the device uses to fetch its credentials.
    pub credentials_ref: Option<String>,
    pub callback_url: Option<String>,
    /// Requests per second for this job (whole node); `None` = node rate.
    pub rate: Option<u32>,
    /// The targets as the caller wrote them.
    pub targets: Vec<String>,
    /// Which API token submitted it.
    pub owner: String,
}

/// A device the job reaches: one binding.
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Index into [`JobSpec::targets`] of the target that matched it.
    pub target: u32,
    pub aor: Arc<str>,
    pub binding: BindingRef,
    pub instance: Option<Arc<str>>,
}

/// A device's result. Stored as one `u32`: kind in the high half, SIP
/// status code in the low half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    /// Sent; no answer that settles it yet.
    InFlight,
    /// 2xx to a NOTIFY; any response to a wake-up INVITE.
    Delivered(u16),
    /// A final non-2xx to a NOTIFY (or a second challenge).
    Rejected(u16),
    /// No final response within Timer F/B.
    TimedOut,
    /// The binding was gone when its turn came.
    NoBinding,
    /// Its NAT path is dead (keepalive prompts unanswered): not sent.
    PathDead,
    /// The device did not opt in to the event package: not sent.
    NotAccepted,
    /// The job was cancelled before this device's turn.
    Cancelled,
}

impl Outcome {
    fn encode(self) -> u32 {
        let (k, code) = match self {
            Outcome::Pending => (0, 0),
            Outcome::InFlight => (1, 0),
            Outcome::Delivered(c) => (2, c),
            Outcome::Rejected(c) => (3, c),
            Outcome::TimedOut => (4, 0),
            Outcome::NoBinding => (5, 0),
            Outcome::PathDead => (6, 0),
            Outcome::NotAccepted => (7, 0),
            Outcome::Cancelled => (8, 0),
        };
        (k << 16) | u32::from(code)
    }

    fn decode(v: u32) -> Outcome {
        let code = (v & 0xffff) as u16;
        match v >> 16 {
            1 => Outcome::InFlight,
            2 => Outcome::Delivered(code),
            3 => Outcome::Rejected(code),
            4 => Outcome::TimedOut,
            5 => Outcome::NoBinding,
            6 => Outcome::PathDead,
            7 => Outcome::NotAccepted,
            8 => Outcome::Cancelled,
            _ => Outcome::Pending,
        }
    }

    /// Settled: the device needs nothing more from the job.
    pub fn is_final(self) -> bool {
        !matches!(self, Outcome::Pending | Outcome::InFlight)
    }

    /// The name the API reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::InFlight => "in_flight",
            Outcome::Delivered(_) => "delivered",
            Outcome::Rejected(_) => "rejected",
            Outcome::TimedOut => "timed_out",
            Outcome::NoBinding => "no_binding",
            Outcome::PathDead => "path_dead",
            Outcome::NotAccepted => "not_accepted",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub fn code(self) -> Option<u16> {
        match self {
            Outcome::Delivered(c) | Outcome::Rejected(c) => Some(c),
            _ => None,
        }
    }
}

/// Totals over a job's devices.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub targets: usize,
    pub devices: usize,
    pub unmatched_targets: usize,
    pub pending: usize,
    pub in_flight: usize,
    pub delivered: usize,
    pub rejected: usize,
    /// Rejections by status code, ascending.
    pub rejected_by_code: Vec<(u16, usize)>,
    pub timed_out: usize,
    pub no_binding: usize,
    pub path_dead: usize,
    pub not_accepted: usize,
    pub cancelled: usize,
}

/// When a job was created, on both clocks: the wall clock people read, and
/// the runtime's monotonic milliseconds that the cores' `now` counts. The
/// caller (the API thread) reads both; notify itself reads no clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Wall-clock milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// The runtime's clock (ms since its epoch), as the cores' `now`.
    pub at: u64,
}

/// `finished_at` of a job still running.
const RUNNING: u64 = u64::MAX;

/// A job shared by the API thread and the cores that run its parts.
#[derive(Debug)]
pub struct Job {
    pub id: u64,
    pub spec: JobSpec,
    /// The request body, the same for every device.
    pub body: Box<[u8]>,
    pub devices: Vec<Device>,
    /// Indices into `spec.targets` that matched no binding.
    pub unmatched: Vec<u32>,
    outcomes: Box<[AtomicU32]>,
    /// Requests put on the wire (first sends, not retransmissions).
    pub sent: AtomicU64,
    pub retransmissions: AtomicU64,
    cancelled: AtomicBool,
    parts_left: AtomicUsize,
    /// Wall-clock milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// [`Created::at`]: the runtime's clock at creation.
    created_at: u64,
    /// The runtime's clock when the last part finished; [`RUNNING`] before.
    finished_at: AtomicU64,
}

impl Job {
    pub fn new(
        id: u64,
        spec: JobSpec,
        body: Box<[u8]>,
        devices: Vec<Device>,
        unmatched: Vec<u32>,
        parts: usize,
        created: Created,
    ) -> Job {
        let outcomes = (0..devices.len()).map(|_| AtomicU32::new(0)).collect();
        Job {
            id,
            spec,
            body,
            devices,
            unmatched,
            outcomes,
            sent: AtomicU64::new(0),
            retransmissions: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            parts_left: AtomicUsize::new(parts),
            created_unix_ms: created.unix_ms,
            created_at: created.at,
            finished_at: AtomicU64::new(if parts == 0 { created.at } else { RUNNING }),
        }
    }

    pub fn outcome(&self, device: usize) -> Outcome {
        Outcome::decode(self.outcomes[device].load(Ordering::Acquire))
    }

    /// Records a device's outcome. A final outcome is never overwritten by
    /// a non-final one, and a delivered wake-up keeps its first code's kind.
    pub fn set_outcome(&self, device: usize, o: Outcome) {
        let cell = &self.outcomes[device];
        let cur = Outcome::decode(cell.load(Ordering::Acquire));
        if cur.is_final() && !o.is_final() {
            return;
        }
        cell.store(o.encode(), Ordering::Release);
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// A core finished its part at `now` (the runtime's clock); true for
    /// the last one (the job is done).
    pub fn part_done(&self, now: u64) -> bool {
        let last = self.parts_left.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            self.finished_at.store(now, Ordering::Release);
        }
        last
    }

    pub fn is_finished(&self) -> bool {
        self.finished_at.load(Ordering::Acquire) != RUNNING
    }

    /// Wall-clock milliseconds since the Unix epoch when the job finished
    /// (its creation's wall-clock time plus the runtime time it took); 0
    /// while running.
    pub fn finished_unix_ms(&self) -> u64 {
        match self.finished_at.load(Ordering::Acquire) {
            RUNNING => 0,
            at => self.created_unix_ms + at.saturating_sub(self.created_at),
        }
    }

    /// Totals, computed from the outcome words (a scan: cheap next to the job).
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            targets: self.spec.targets.len(),
            devices: self.devices.len(),
            unmatched_targets: self.unmatched.len(),
            ..Counts::default()
        };
        let mut by_code = std::collections::BTreeMap::new();
        for i in 0..self.devices.len() {
            match self.outcome(i) {
                Outcome::Pending => c.pending += 1,
                Outcome::InFlight => c.in_flight += 1,
                Outcome::Delivered(_) => c.delivered += 1,
                Outcome::Rejected(code) => {
                    c.rejected += 1;
                    *by_code.entry(code).or_insert(0) += 1;
                }
                Outcome::TimedOut => c.timed_out += 1,
                Outcome::NoBinding => c.no_binding += 1,
                Outcome::PathDead => c.path_dead += 1,
                Outcome::NotAccepted => c.not_accepted += 1,
                Outcome::Cancelled => c.cancelled += 1,
            }
        }
        c.rejected_by_code = by_code.into_iter().collect();
        c
    }
}

/// A job's share on one core: indices into [`Job::devices`].
#[derive(Debug, Clone)]
pub struct JobPart {
    pub job: Arc<Job>,
    pub devices: Vec<u32>,
}

/// A contact-me job's spec for one target, and a device it reached: for
/// the unit tests of the job and of the runs that carry it.
#[cfg(test)]
pub(crate) fn sample() -> (JobSpec, Device) {
    let spec = JobSpec {
        kind: Kind::ContactMe,
        request_id: "1".into(),
        server: ServerAddr {
            host: "192.0.2.1".into(),
            port: 1,
        },
        path: None,
        time_slot: None,
        protocol: None,
        credentials_ref: None,
        callback_url: None,
        rate: None,
        targets: vec!["a@x".into()],
        owner: "t".into(),
    };
    let dev = Device {
        target: 0,
        aor: "a@x".into(),
        binding: BindingRef::default(),
        instance: None,
    };
    (spec, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_final_ones_stick() {
        for o in [
            Outcome::Pending,
            Outcome::InFlight,
            Outcome::Delivered(180),
            Outcome::Rejected(603),
            Outcome::TimedOut,
            Outcome::NoBinding,
            Outcome::PathDead,
            Outcome::NotAccepted,
            Outcome::Cancelled,
        ] {
            assert_eq!(Outcome::decode(o.encode()), o);
        }
        let (spec, dev) = sample();
        let created = Created {
            unix_ms: 1_700_000_000_000,
            at: 500,
        };
        let job = Job::new(1, spec, Box::default(), vec![dev], vec![], 1, created);
        job.set_outcome(0, Outcome::InFlight);
        job.set_outcome(0, Outcome::Rejected(404));
        job.set_outcome(0, Outcome::InFlight);
        assert_eq!(job.outcome(0), Outcome::Rejected(404));
        let c = job.counts();
        assert_eq!(
            (c.rejected, c.rejected_by_code.clone()),
            (1, vec![(404, 1)])
        );
        assert!(!job.is_finished());
        assert_eq!(job.finished_unix_ms(), 0);
        assert!(job.part_done(2500));
        assert!(job.is_finished());
        assert_eq!(job.finished_unix_ms(), 1_700_000_002_000);
    }
}
