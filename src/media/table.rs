//! One core's media sessions, its relay ports, and the per-packet decision.
//!
//! A session (a call) has streams (its m= lines); a stream has two legs,
//! leg `p` facing party `p` (0 = the offerer of the first offer, the
//! caller). Each leg owns an RTP/RTCP port pair on this node: party `p`
//! sends to leg `p`'s ports, and what arrives there leaves from the other
//! leg's ports towards the other party. The runtime binds the sockets; this
//! table only knows them by index (`sock`, the RTCP socket is `sock + 1`)
//! and asks for more pairs as its free list runs low.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::rtp::{self, Reception};
use super::sdp;

const NONE: u32 = u32::MAX;
/// Free pairs below which the table asks the runtime for more (at least
/// this, or a quarter of those open), and how many (at least this, or
/// half of those open): a node that relays little holds few sockets, a
/// busy one grows ahead of a burst of calls.
/// The runtime tops the pool up after every datagram, so the low water
/// covers the most one SDP can take: 16 new streams × 2 legs × 2 pairs.
const LOW_WATER: usize = 64;
const CHUNK: usize = 64;
/// Consecutive packets from one new source that move a silent latch.
const RELATCH_PACKETS: u8 = 3;
/// Sessions looked at per sweep, and how often a sweep runs (ms): a few
/// nanoseconds each, so a core with up to this many is swept whole every
/// second, and one with more at this many per second.
const SWEEP_BATCH: usize = 65_536;
const SWEEP_EVERY_MS: u64 = 1000;
/// Streams one session may have.
const MAX_STREAMS: usize = 16;

/// The settings the table runs with.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Written into rewritten SDP.
    pub addr: IpAddr,
    pub relatch_ms: u64,
    /// 0 = media never times out.
    pub timeout_ms: u64,
    pub quarantine_ms: u64,
    /// Pairs this core may open at most (its share of `media.ports`).
    pub max_pairs: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            addr: IpAddr::from([127, 0, 0, 1]),
            relatch_ms: 2000,
            timeout_ms: 60_000,
            quarantine_ms: 5000,
            max_pairs: 2500,
        }
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the packet unchanged from socket `sock` to `to`.
    Forward {
        sock: u32,
        to: SocketAddr,
    },
    Drop,
}

/// A session, by slot and generation (a freed slot's old id matches nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId {
    pub slot: u32,
    pub gen: u32,
}

/// Why an SDP could not be anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaError {
    /// No free port pair on this core (→ 503).
    NoPorts,
    /// The body is not SDP we can anchor (→ 488 with this reason).
    Sdp(&'static str),
    /// The session ended meanwhile.
    Gone,
}

impl MediaError {
    pub fn reason(&self) -> &'static str {
        match self {
            MediaError::NoPorts => "No Relay Ports",
            MediaError::Sdp(r) => r,
            MediaError::Gone => "Media Session Ended",
        }
    }
}

/// Counters of one core's relay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub dropped_malformed: u64,
    /// From a source that is not (or not yet) the latched party.
    pub dropped_source: u64,
    /// The other party's address is not known yet (no answer, port 0).
    pub dropped_no_destination: u64,
    pub relatched: u64,
    pub sessions_started: u64,
    pub sessions_ended: u64,
    pub timeouts: u64,
    pub ports_exhausted: u64,
}

/// What `GET /v1/calls` shows of one leg (the media one party sent).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LegInfo {
    pub local_port: u16,
    pub signalled: Option<SocketAddr>,
    pub latched: Option<SocketAddr>,
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    pub lost: u64,
    pub jitter_ms: f64,
}

/// One stream of a session, both legs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    pub media: String,
    pub legs: [LegInfo; 2],
}

struct Sock {
    port: u16,
    leg: u32,
}

#[derive(Default)]
struct Leg {
    /// The RTP socket of this leg's pair.
    sock: u32,
    session: u32,
    /// The other leg of the stream.
    peer: u32,
    /// Where the SDP of this leg's party says it receives (RTP, RTCP).
    signalled: [Option<SocketAddr>; 2],
    /// Latch from any source (the party is NATed) or only from the signalled IP.
    any_source: bool,
    latched: [Option<SocketAddr>; 2],
    last_rx: [u64; 2],
    candidate: [Option<(SocketAddr, u8)>; 2],
    clock_rate: u32,
    rx: Reception,
}

struct Stream {
    media: Box<str>,
    legs: [u32; 2],
}

struct Session {
    gen: u32,
    owner: u64,
    live: bool,
    streams: SmallVec<[Stream; 2]>,
    last_media_ms: u64,
    /// Media timeout counts from the answer on, and not while on hold.
    armed: bool,
    held: bool,
}

/// One core's media.
pub struct Table {
    cfg: TableConfig,
    socks: Vec<Sock>,
    /// Released pairs (RTP socket index) with the time they may be reused.
    free: VecDeque<(u64, u32)>,
    legs: Vec<Leg>,
    free_legs: Vec<u32>,
    sessions: Vec<Session>,
    free_sessions: Vec<u32>,
    live: usize,
    next_sweep: u64,
    sweep_at: usize,
    timed_out: VecDeque<(SessionId, u64)>,
    pub stats: Stats,
}

impl Table {
    pub fn new(cfg: TableConfig) -> Table {
        Table {
            cfg,
            socks: Vec::new(),
            free: VecDeque::new(),
            legs: Vec::new(),
            free_legs: Vec::new(),
            sessions: Vec::new(),
            free_sessions: Vec::new(),
            live: 0,
            next_sweep: 0,
            sweep_at: 0,
            timed_out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    /// Pairs the runtime should open now (0 = enough).
    pub fn wants_pairs(&self) -> usize {
        let opened = self.socks.len() / 2;
        if self.free.len() >= LOW_WATER.max(opened / 4) || opened >= self.cfg.max_pairs {
            return 0;
        }
        CHUNK.max(opened / 2).min(self.cfg.max_pairs - opened)
    }

    /// Pairs the runtime opened: RTP port `port` on socket index `sock`,
    /// RTCP on `sock + 1` and `port + 1`. Indices follow on from the
    /// last call (the runtime keeps its sockets in the same order).
    pub fn add_pairs(&mut self, ports: &[u16]) -> u32 {
        let first = self.socks.len() as u32;
        for &port in ports {
            let sock = self.socks.len() as u32;
            self.socks.push(Sock { port, leg: NONE });
            self.socks.push(Sock {
                port: port.wrapping_add(1),
                leg: NONE,
            });
            self.free.push_back((0, sock));
        }
        first
    }

    /// Socket count (both of each pair).
    pub fn sockets(&self) -> usize {
        self.socks.len()
    }

    /// Port pairs in use.
    pub fn pairs_in_use(&self) -> usize {
        self.socks.len() / 2 - self.free.len()
    }

    pub fn sessions(&self) -> usize {
        self.live
    }

    /// A new, empty session (streams come with its first SDP).
    pub fn create(&mut self, owner: u64) -> SessionId {
        self.stats.sessions_started += 1;
        self.live += 1;
        let s = Session {
            gen: 0,
            owner,
            live: true,
            streams: SmallVec::new(),
            last_media_ms: 0,
            armed: false,
            held: false,
        };
        match self.free_sessions.pop() {
            Some(slot) => {
                let old = &mut self.sessions[slot as usize];
                let gen = old.gen.wrapping_add(1);
                *old = Session { gen, ..s };
                SessionId { slot, gen }
            }
            None => {
                self.sessions.push(s);
                SessionId {
                    slot: self.sessions.len() as u32 - 1,
                    gen: 0,
                }
            }
        }
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions
            .get(id.slot as usize)
            .filter(|s| s.live && s.gen == id.gen)
    }

    pub fn exists(&self, id: SessionId) -> bool {
        self.session(id).is_some()
    }

    pub fn set_owner(&mut self, id: SessionId, owner: u64) {
        if let Some(s) = self
            .sessions
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.gen == id.gen)
        {
            s.owner = owner;
        }
    }

    /// Anchors an SDP that a party sent: its streams' addresses become
    /// that party's signalled addresses, and `out` receives the SDP to pass
    /// to the other party, naming the other legs' ports.
    pub fn apply_sdp(
        &mut self,
        now_ms: u64,
        id: SessionId,
        sdp_in: &PartySdp<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        let PartySdp {
            party,
            body,
            source,
            any_source,
            rewrite: opts,
        } = *sdp_in;
        let party = party.min(1);
        self.session(id).ok_or(MediaError::Gone)?;
        let parsed = sdp::parse(body).map_err(|e| MediaError::Sdp(e.reason))?;
        if parsed.streams.len() > MAX_STREAMS {
            return Err(MediaError::Sdp("too many media streams"));
        }
        // New streams need two pairs each; check before touching anything.
        let have = self.sessions[id.slot as usize].streams.len();
        let new = parsed.streams.len().saturating_sub(have);
        if self.ready_pairs(now_ms) < new * 2 {
            self.stats.ports_exhausted += 1;
            return Err(MediaError::NoPorts);
        }
        for s in parsed.streams.iter().skip(have) {
            let a = self.alloc_leg(now_ms, id.slot, s.clock_rate);
            let b = self.alloc_leg(now_ms, id.slot, s.clock_rate);
            self.legs[a as usize].peer = b;
            self.legs[b as usize].peer = a;
            self.sessions[id.slot as usize].streams.push(Stream {
                media: s.media.clone(),
                legs: [a, b],
            });
        }
        let mut anchors: SmallVec<[Option<sdp::Anchor>; 4]> = SmallVec::new();
        let mut held = true;
        for (i, s) in parsed.streams.iter().enumerate() {
            let st = &self.sessions[id.slot as usize].streams[i];
            let (mine, theirs) = (st.legs[party], st.legs[1 - party]);
            let leg = &mut self.legs[mine as usize];
            leg.clock_rate = s.clock_rate;
            if s.port == 0 {
                // A disabled stream (RFC 3264 §8.2): forget the latch too, or
                // the other party's packets would still reach this one.
                leg.signalled = [None, None];
                leg.latched = [None, None];
                leg.candidate = [None, None];
                anchors.push(None);
                continue;
            }
            let ip = s.addr.filter(|ip| !ip.is_unspecified());
            if ip.is_some() && s.direction == sdp::Direction::SendRecv {
                held = false;
            }
            leg.signalled = match ip {
                Some(ip) => {
                    // With rtcp-mux, RTCP shares the RTP port whatever a=rtcp
                    // says (browsers write `a=rtcp:9 IN IP4 0.0.0.0`).
                    let rtcp = match s.rtcp {
                        _ if s.rtcp_mux => SocketAddr::new(ip, s.port),
                        Some((p, a)) => {
                            SocketAddr::new(a.filter(|a| !a.is_unspecified()).unwrap_or(ip), p)
                        }
                        None => SocketAddr::new(ip, s.port.wrapping_add(1)),
                    };
                    [Some(SocketAddr::new(ip, s.port)), Some(rtcp)]
                }
                None => [None, None],
            };
            leg.any_source = any_source.unwrap_or(match (ip, source) {
                (Some(ip), Some(src)) => ip != src,
                _ => true,
            });
            let port = self.socks[self.legs[theirs as usize].sock as usize].port;
            anchors.push(Some(sdp::Anchor {
                rtp_port: port,
                rtcp_port: port.wrapping_add(1),
            }));
        }
        self.sessions[id.slot as usize].held = held;
        // RFC 2543 hold (c=0.0.0.0) would read as our address once
        // rewritten: say it the RFC 3264 way instead.
        let zero_hold = parsed
            .streams
            .iter()
            .filter(|s| s.port != 0)
            .all(|s| s.hold_zero_addr)
            && parsed.streams.iter().any(|s| s.port != 0);
        let rw = sdp::Rewrite {
            addr: self.cfg.addr,
            anchors: &anchors,
            strip_ice: opts.strip_ice,
            replace_origin: opts.replace_origin,
            direction: if zero_hold {
                Some(sdp::Direction::Inactive)
            } else {
                opts.direction
            },
        };
        out.clear();
        sdp::rewrite(body, &rw, out).map_err(|e| MediaError::Sdp(e.reason))
    }

    /// Media timeout runs from now on (the call was answered).
    pub fn arm(&mut self, now_ms: u64, id: SessionId) {
        if let Some(s) = self
            .sessions
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.gen == id.gen)
        {
            if !s.armed {
                s.armed = true;
                s.last_media_ms = s.last_media_ms.max(now_ms);
            }
        }
    }

    /// Ends a session: its pairs go to quarantine.
    pub fn end(&mut self, now_ms: u64, id: SessionId) {
        let Some(s) = self
            .sessions
            .get_mut(id.slot as usize)
            .filter(|s| s.live && s.gen == id.gen)
        else {
            return;
        };
        s.live = false;
        let streams = std::mem::take(&mut s.streams);
        for st in streams {
            for leg in st.legs {
                self.free_leg(now_ms, leg);
            }
        }
        self.free_sessions.push(id.slot);
        self.live -= 1;
        self.stats.sessions_ended += 1;
    }

    fn ready_pairs(&self, now_ms: u64) -> usize {
        // Quarantine is FIFO: the ready ones are at the front.
        self.free.iter().take_while(|(t, _)| *t <= now_ms).count()
    }

    fn alloc_leg(&mut self, now_ms: u64, session: u32, clock_rate: u32) -> u32 {
        let sock = match self.free.front() {
            Some(&(t, s)) if t <= now_ms => {
                self.free.pop_front();
                s
            }
            // apply_sdp checked there are enough.
            _ => unreachable!("alloc_leg without a ready pair"),
        };
        let leg = Leg {
            sock,
            session,
            peer: NONE,
            clock_rate,
            ..Leg::default()
        };
        let idx = match self.free_legs.pop() {
            Some(i) => {
                self.legs[i as usize] = leg;
                i
            }
            None => {
                self.legs.push(leg);
                self.legs.len() as u32 - 1
            }
        };
        self.socks[sock as usize].leg = idx;
        self.socks[sock as usize + 1].leg = idx;
        idx
    }

    fn free_leg(&mut self, now_ms: u64, leg: u32) {
        let sock = self.legs[leg as usize].sock;
        self.socks[sock as usize].leg = NONE;
        self.socks[sock as usize + 1].leg = NONE;
        self.legs[leg as usize].session = NONE;
        self.free_legs.push(leg);
        self.free.push_back((now_ms + self.cfg.quarantine_ms, sock));
    }

    /// When [`Table::sweep`] next has work.
    pub fn next_deadline(&self) -> Option<u64> {
        (self.live > 0 && self.cfg.timeout_ms > 0).then_some(self.next_sweep)
    }

    /// Looks for sessions without media for `timeout_ms`; they are reported
    /// by [`Table::poll_timed_out`] (their owner ends them).
    pub fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.next_sweep || self.cfg.timeout_ms == 0 {
            return;
        }
        self.next_sweep = now_ms + SWEEP_EVERY_MS;
        let n = self.sessions.len();
        for _ in 0..n.min(SWEEP_BATCH) {
            self.sweep_at = if self.sweep_at + 1 >= n {
                0
            } else {
                self.sweep_at + 1
            };
            let s = &mut self.sessions[self.sweep_at];
            if s.live
                && s.armed
                && !s.held
                && now_ms.saturating_sub(s.last_media_ms) >= self.cfg.timeout_ms
            {
                // Reported once; the owner ends it (or it is reported again a timeout later).
                s.last_media_ms = now_ms;
                self.stats.timeouts += 1;
                self.timed_out.push_back((
                    SessionId {
                        slot: self.sweep_at as u32,
                        gen: s.gen,
                    },
                    s.owner,
                ));
            }
        }
    }

    /// A session whose media stopped, with its owner tag.
    pub fn poll_timed_out(&mut self) -> Option<(SessionId, u64)> {
        self.timed_out.pop_front()
    }

    /// The streams of a session, for the API.
    pub fn info(&self, id: SessionId) -> Vec<StreamInfo> {
        let Some(s) = self.session(id) else {
            return Vec::new();
        };
        s.streams
            .iter()
            .map(|st| StreamInfo {
                media: st.media.to_string(),
                legs: st.legs.map(|l| self.leg_info(l)),
            })
            .collect()
    }

    fn leg_info(&self, l: u32) -> LegInfo {
        let leg = &self.legs[l as usize];
        LegInfo {
            local_port: self.socks[leg.sock as usize].port,
            signalled: leg.signalled[0],
            latched: leg.latched[0],
            packets: leg.rx.packets,
            bytes: leg.rx.bytes,
            rtcp_packets: leg.rx.rtcp_packets,
            lost: leg.rx.lost(),
            jitter_ms: leg.rx.jitter_ms(leg.clock_rate),
        }
    }

    /// Sums over the live sessions' legs: packets lost, and the largest jitter (ms).
    pub fn totals(&self) -> (u64, f64) {
        let mut lost = 0;
        let mut jitter: f64 = 0.0;
        for leg in self.legs.iter().filter(|l| l.session != NONE) {
            lost += leg.rx.lost();
            jitter = jitter.max(leg.rx.jitter_ms(leg.clock_rate));
        }
        (lost, jitter)
    }
}

/// An SDP one party of a session sent.
#[derive(Debug, Clone, Copy)]
pub struct PartySdp<'a> {
    /// 0 = the party that made the first offer, 1 = the other.
    pub party: usize,
    pub body: &'a [u8],
    /// Where its signalling came from.
    pub source: Option<IpAddr>,
    /// Latch from any source (a NATed party); `None` decides per stream
    /// from whether the SDP's address is `source`.
    pub any_source: Option<bool>,
    pub rewrite: Rewrite,
}

impl<'a> PartySdp<'a> {
    /// Party `party`'s SDP with the default rewrite.
    pub fn new(party: usize, body: &'a [u8], source: Option<IpAddr>) -> PartySdp<'a> {
        PartySdp {
            party,
            body,
            source,
            any_source: None,
            rewrite: Rewrite::default(),
        }
    }
}

/// How SDP is rewritten besides addresses and ports.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub strip_ice: bool,
    pub replace_origin: bool,
    /// Force every stream's direction (the `ng` direction flags).
    pub direction: Option<sdp::Direction>,
}

impl Default for Rewrite {
    fn default() -> Self {
        Rewrite {
            strip_ice: true,
            replace_origin: false,
            direction: None,
        }
    }
}

mod relay;
#[cfg(test)]
mod tests;
