//! Setting the calls up and tearing them down over rtpengine's `ng`
//! protocol, sans-IO: the generator's SDP for both parties, the offer and
//! answer of each call with a window of requests in flight, retransmission
//! of unanswered requests (same cookie: the relay answers a repeat from its
//! cache), and the relay's addresses read from the SDP it returns.
//!
//! The wire format is the crate's `ng` codec, behind [`NgCodec`] so the
//! machine can be driven by a fake relay in tests.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The `ng` messages the generator sends and the replies it reads.
pub trait NgCodec {
    fn offer(&self, cookie: &str, call_id: &str, from_tag: &str, sdp: &str) -> Vec<u8>;
    fn answer(
        &self,
        cookie: &str,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
    ) -> Vec<u8>;
    fn delete(&self, cookie: &str, call_id: &str, from_tag: &str) -> Vec<u8>;
    /// A reply's cookie and outcome: the SDP it carries (offer, answer),
    /// `None` (delete), or the relay's error reason.
    fn reply(&self, msg: &[u8]) -> Result<(String, Result<Option<String>, String>), String>;
}

/// Media per call: audio and video.
pub const MEDIA: usize = 2;

/// The SDP a party of the generator offers or answers: `c=` 127.0.0.1,
/// an audio (PCMU) and a video (H264) stream on its RTP ports.
pub fn party_sdp(session: u64, ports: [u16; MEDIA]) -> String {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=tether-bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n\
m=video {} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendrecv\r\n",
        ports[0], ports[1]
    )
}

/// The RTP address of each `m=` line of `sdp`, in order: its port with the
/// media's `c=` address, or the session's.
pub fn media_addrs(sdp: &str) -> Result<Vec<SocketAddrV4>, String> {
    let conn = |line: &str| -> Result<Ipv4Addr, String> {
        let mut f = line.split_whitespace();
        match (f.next(), f.next(), f.next()) {
            (Some("IN"), Some("IP4"), Some(a)) => {
                // Multicast TTL suffixes (a/ttl) are not ours to handle.
                a.split('/')
                    .next()
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("bad c= address: {line}"))
            }
            _ => Err(format!("not an IPv4 c= line: {line}")),
        }
    };
    let mut session: Option<Ipv4Addr> = None;
    // Per m= line: its port and its own c= address, if any.
    let mut media: Vec<(u16, Option<Ipv4Addr>)> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(rest) = line.strip_prefix("m=") {
            let port = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| format!("bad m= line: {line}"))?;
            media.push((port, None));
        } else if let Some(rest) = line.strip_prefix("c=") {
            let ip = conn(rest)?;
            match media.last_mut() {
                Some(m) => m.1 = Some(ip),
                None => session = Some(ip),
            }
        }
    }
    media
        .into_iter()
        .map(|(port, ip)| {
            ip.or(session)
                .map(|ip| SocketAddrV4::new(ip, port))
                .ok_or_else(|| "an m= line without a c= address".to_owned())
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting to send or for the reply of the offer, then the answer.
    Offer,
    Answer,
    Ready,
    Failed,
    Deleting,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Answer,
    Delete,
}

/// A request in flight.
struct Pending {
    call: usize,
    kind: Kind,
    bytes: Vec<u8>,
    sent_ms: u64,
    tries: u32,
}

/// The calls' control state: which request goes out next, and where each
/// party must send its media.
pub struct Control<C: NgCodec> {
    codec: C,
    tag: String,
    /// Each call's parties' SDP ports: [A, B] × media.
    ports: Vec<[[u16; MEDIA]; 2]>,
    phase: Vec<Phase>,
    /// Where each party sends: [A, B] × media (A's come from the answer's
    /// reply, B's from the offer's).
    pub dest: Vec<[[Option<SocketAddrV4>; MEDIA]; 2]>,
    pending: HashMap<String, Pending>,
    /// Requests to send (call, kind), in order.
    queue: std::collections::VecDeque<(usize, Kind)>,
    window: usize,
    retry_ms: u64,
    max_tries: u32,
    next_cookie: u64,
    /// First failure reason, for the report.
    pub first_error: Option<String>,
    pub errors: u64,
    pub timeouts: u64,
    pub retransmissions: u64,
    /// Replies read (any cookie): none at all means nobody is listening.
    replies: u64,
}

impl<C: NgCodec> Control<C> {
    /// `ports[c]` are call c's generator ports; `tag` makes call-ids unique
    /// to this run (a relay may hold calls of an earlier one).
    pub fn new(codec: C, tag: &str, ports: Vec<[[u16; MEDIA]; 2]>, window: usize) -> Self {
        let n = ports.len();
        Control {
            codec,
            tag: tag.to_owned(),
            ports,
            phase: vec![Phase::Offer; n],
            dest: vec![[[None; MEDIA]; 2]; n],
            pending: HashMap::new(),
            queue: (0..n).map(|c| (c, Kind::Offer)).collect(),
            window: window.max(1),
            retry_ms: 1_000,
            max_tries: 4,
            next_cookie: 0,
            first_error: None,
            errors: 0,
            timeouts: 0,
            retransmissions: 0,
            replies: 0,
        }
    }

    fn call_id(&self, c: usize) -> String {
        format!("tb-{}-{c}", self.tag)
    }

    /// The next datagram to send at `now_ms`: a retransmission that is due,
    /// or a new request if the window allows.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Vec<u8>> {
        let mut expired = None;
        let mut resend = None;
        for (cookie, p) in &mut self.pending {
            if now_ms < p.sent_ms + self.retry_ms {
                continue;
            }
            if p.tries >= self.max_tries {
                expired = Some(cookie.clone());
                break;
            }
            p.tries += 1;
            p.sent_ms = now_ms;
            resend = Some(p.bytes.clone());
            break;
        }
        if let Some(cookie) = expired {
            if let Some(p) = self.pending.remove(&cookie) {
                self.timeouts += 1;
                self.fail(p.call, p.kind, "no reply".into());
            }
            if self.replies == 0 {
                // Nothing ever answered: the relay is not there. Give up on
                // every call now rather than a window of them at a time.
                self.abandon("the relay never answered");
                return None;
            }
            return self.poll_transmit(now_ms);
        }
        if resend.is_some() {
            self.retransmissions += 1;
            return resend;
        }
        if self.pending.len() >= self.window {
            return None;
        }
        let (c, kind) = self.queue.pop_front()?;
        let cookie = format!("{}_{}", self.tag, self.next_cookie);
        self.next_cookie += 1;
        let call_id = self.call_id(c);
        let (from, to) = (format!("a{c}"), format!("b{c}"));
        let bytes = match kind {
            Kind::Offer => {
                let sdp = party_sdp(2 * c as u64 + 1, self.ports[c][0]);
                self.codec.offer(&cookie, &call_id, &from, &sdp)
            }
            Kind::Answer => {
                let sdp = party_sdp(2 * c as u64 + 2, self.ports[c][1]);
                self.codec.answer(&cookie, &call_id, &from, &to, &sdp)
            }
            Kind::Delete => self.codec.delete(&cookie, &call_id, &from),
        };
        self.pending.insert(
            cookie,
            Pending {
                call: c,
                kind,
                bytes: bytes.clone(),
                sent_ms: now_ms,
                tries: 1,
            },
        );
        Some(bytes)
    }

    fn fail(&mut self, c: usize, kind: Kind, why: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("call {c} {kind:?}: {why}"));
        }
        self.phase[c] = match kind {
            // A call whose delete failed is left to the relay's own timeout.
            Kind::Delete => Phase::Deleted,
            _ => Phase::Failed,
        };
    }

    /// Fails every call not yet set up or deleted, and sends nothing more.
    fn abandon(&mut self, why: &str) {
        self.queue.clear();
        let pending: Vec<(usize, Kind)> = self
            .pending
            .drain()
            .map(|(_, p)| (p.call, p.kind))
            .collect();
        for (c, kind) in pending {
            self.fail(c, kind, why.into());
        }
        for c in 0..self.phase.len() {
            match self.phase[c] {
                Phase::Offer | Phase::Answer => self.fail(c, Kind::Offer, why.into()),
                Phase::Deleting => self.fail(c, Kind::Delete, why.into()),
                _ => {}
            }
        }
    }

    /// A datagram from the relay.
    pub fn handle_reply(&mut self, msg: &[u8]) {
        let (cookie, outcome) = match self.codec.reply(msg) {
            Ok(r) => r,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(format!("bad reply: {e}"));
                return;
            }
        };
        self.replies += 1;
        // A reply to a retransmission that was already answered: ignore.
        let Some(p) = self.pending.remove(&cookie) else {
            return;
        };
        let (c, kind) = (p.call, p.kind);
        let sdp = match outcome {
            Err(e) => return self.fail(c, kind, e),
            Ok(sdp) => sdp,
        };
        match kind {
            Kind::Delete => self.phase[c] = Phase::Deleted,
            Kind::Offer | Kind::Answer => {
                let addrs = match sdp.as_deref().map(media_addrs) {
                    Some(Ok(a)) if a.len() == MEDIA => a,
                    Some(Ok(a)) => return self.fail(c, kind, format!("{} m= lines", a.len())),
                    Some(Err(e)) => return self.fail(c, kind, e),
                    None => return self.fail(c, kind, "no sdp in reply".into()),
                };
                // The offer's SDP goes to B: it names where B sends.
                let side = usize::from(kind == Kind::Offer);
                for (m, a) in addrs.into_iter().enumerate() {
                    self.dest[c][side][m] = Some(a);
                }
                if kind == Kind::Offer {
                    self.phase[c] = Phase::Answer;
                    self.queue.push_back((c, Kind::Answer));
                } else {
                    self.phase[c] = Phase::Ready;
                }
            }
        }
    }

    /// Every call set up or given up on.
    pub fn setup_done(&self) -> bool {
        self.phase
            .iter()
            .all(|p| matches!(p, Phase::Ready | Phase::Failed))
    }

    pub fn ready(&self) -> usize {
        self.phase.iter().filter(|&&p| p == Phase::Ready).count()
    }

    /// Queues a delete for every call set up (or half set up); calls still
    /// being set up are given up on.
    pub fn begin_delete(&mut self) {
        self.queue.clear();
        self.pending.clear();
        for c in 0..self.phase.len() {
            if matches!(self.phase[c], Phase::Ready | Phase::Answer) {
                self.phase[c] = Phase::Deleting;
                self.queue.push_back((c, Kind::Delete));
            }
        }
    }

    pub fn delete_done(&self) -> bool {
        !self.phase.contains(&Phase::Deleting)
    }

    pub fn deleted(&self) -> usize {
        self.phase.iter().filter(|&&p| p == Phase::Deleted).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A text codec: "COOKIE VERB call from [to] | sdp"; replies "COOKIE ok|sdp" or "COOKIE err|why".
    struct Fake;

    impl NgCodec for Fake {
        fn offer(&self, cookie: &str, call: &str, from: &str, sdp: &str) -> Vec<u8> {
            format!("{cookie} offer {call} {from}|{sdp}").into_bytes()
        }
        fn answer(&self, cookie: &str, call: &str, from: &str, to: &str, sdp: &str) -> Vec<u8> {
            format!("{cookie} answer {call} {from} {to}|{sdp}").into_bytes()
        }
        fn delete(&self, cookie: &str, call: &str, from: &str) -> Vec<u8> {
            format!("{cookie} delete {call} {from}|").into_bytes()
        }
        fn reply(&self, msg: &[u8]) -> Result<(String, Result<Option<String>, String>), String> {
            let s = std::str::from_utf8(msg).map_err(|e| e.to_string())?;
            let (head, body) = s.split_once('|').ok_or("no |")?;
            let (cookie, word) = head.split_once(' ').ok_or("no word")?;
            let out = match word {
                "ok" if body.is_empty() => Ok(None),
                "ok" => Ok(Some(body.to_owned())),
                _ => Err(body.to_owned()),
            };
            Ok((cookie.to_owned(), out))
        }
    }

    /// The relay's side: rewrites the SDP's ports to 30000 + its own.
    fn relay(req: &[u8]) -> Vec<u8> {
        let s = std::str::from_utf8(req).unwrap();
        let (head, sdp) = s.split_once('|').unwrap();
        let cookie = head.split(' ').next().unwrap();
        if head.contains(" delete ") {
            return format!("{cookie} ok|").into_bytes();
        }
        let out: String = sdp
            .split("\r\n")
            .map(|l| match l.strip_prefix("m=") {
                Some(r) => {
                    let mut f: Vec<String> = r.split(' ').map(str::to_owned).collect();
                    f[1] = (30_000 + f[1].parse::<u32>().unwrap()).to_string();
                    format!("m={}\r\n", f.join(" "))
                }
                None if l.is_empty() => String::new(),
                None => format!("{l}\r\n"),
            })
            .collect();
        format!("{cookie} ok|{out}").into_bytes()
    }

    fn ports(calls: u16) -> Vec<[[u16; MEDIA]; 2]> {
        (0..calls)
            .map(|c| [[c * 10, c * 10 + 1], [c * 10 + 2, c * 10 + 3]])
            .collect()
    }

    #[test]
    fn calls_are_offered_answered_then_deleted_within_the_window() {
        let mut ctl = Control::new(Fake, "t", ports(5), 2);
        let mut sent = Vec::new();
        while !ctl.setup_done() {
            let mut batch = Vec::new();
            while let Some(m) = ctl.poll_transmit(0) {
                batch.push(m);
            }
            assert!(!batch.is_empty() && batch.len() <= 2, "window of 2");
            for m in &batch {
                ctl.handle_reply(&relay(m));
            }
            sent.extend(batch);
        }
        assert_eq!((ctl.ready(), ctl.errors), (5, 0));
        let text: Vec<String> = sent
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert!(
            text[0].starts_with("t_0 offer tb-t-0 a0|v=0"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("m=audio 0 RTP/AVP 0") && text[0].contains("m=video 1 "));
        let answer = text.iter().find(|t| t.contains(" answer tb-t-3 ")).unwrap();
        assert!(answer.contains(" a3 b3|") && answer.contains("m=audio 32 "));
        // A sends to what the answer's reply names, B to the offer's.
        let a = |p| Some(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        assert_eq!(
            ctl.dest[3],
            [[a(30_032), a(30_033)], [a(30_030), a(30_031)]]
        );
        ctl.begin_delete();
        while let Some(m) = ctl.poll_transmit(5) {
            assert!(String::from_utf8_lossy(&m).contains(" delete "));
            ctl.handle_reply(&relay(&m));
        }
        assert!(ctl.delete_done());
        assert_eq!(ctl.deleted(), 5);
    }

    #[test]
    fn unanswered_requests_are_resent_then_given_up_and_errors_fail_the_call() {
        let mut ctl = Control::new(Fake, "t", ports(2), 8);
        let first = ctl.poll_transmit(0).unwrap();
        let second = ctl.poll_transmit(0).unwrap();
        assert_eq!(ctl.poll_transmit(999), None, "nothing due yet");
        // Call 1's offer is refused.
        let cookie = String::from_utf8_lossy(&second)
            .split(' ')
            .next()
            .unwrap()
            .to_owned();
        ctl.handle_reply(format!("{cookie} error|Unsupported").as_bytes());
        // Call 0's offer goes unanswered: the same bytes again, 4 tries in all.
        for t in 1..4 {
            assert_eq!(ctl.poll_transmit(t * 1_000).as_ref(), Some(&first));
        }
        assert_eq!(ctl.poll_transmit(4_000), None);
        assert!(ctl.setup_done());
        assert_eq!((ctl.ready(), ctl.timeouts, ctl.retransmissions), (0, 1, 3));
        assert!(ctl.first_error.as_deref().unwrap().contains("Unsupported"));
        // Garbage from the relay is counted, never a panic.
        ctl.handle_reply(b"\xff\xfe");
        ctl.handle_reply(b"zz ok|");
        assert_eq!(ctl.errors, 3);
    }

    #[test]
    fn a_relay_that_never_answers_fails_every_call_at_the_first_timeout() {
        let mut ctl = Control::new(Fake, "t", ports(300), 4);
        while ctl.poll_transmit(0).is_some() {}
        for t in 1..4 {
            while ctl.poll_transmit(t * 1_000).is_some() {}
        }
        assert_eq!(ctl.poll_transmit(4_000), None);
        assert!(ctl.setup_done(), "all 300 given up on, not 4 at a time");
        assert_eq!(ctl.ready(), 0);
        assert_eq!(ctl.poll_transmit(9_000), None);
    }

    #[test]
    fn sdp_addresses_session_and_media_level() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30000 RTP/AVP 0\r\n\
m=video 30002/2 RTP/AVP 96\r\nc=IN IP4 127.0.0.2/127\r\n";
        let got = media_addrs(sdp).unwrap();
        assert_eq!(got[0], "127.0.0.1:30000".parse().unwrap());
        assert_eq!(got[1], "127.0.0.2:30002".parse().unwrap());
        assert!(media_addrs("m=audio 1 RTP/AVP 0\r\n").is_err(), "no c=");
        assert!(media_addrs("c=IN IP6 ::1\r\nm=audio 1 RTP/AVP 0\r\n").is_err());
        assert!(media_addrs("c=IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n").is_err());
        assert!(media_addrs("c=IN IP4 1.2.3.4\r\nm=audio\r\n").is_err());
        assert_eq!(media_addrs("v=0\r\n").unwrap(), vec![]);
    }

    #[test]
    fn party_sdp_reads_back() {
        let sdp = party_sdp(7, [4000, 4002]);
        let want: Vec<SocketAddrV4> = vec![
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:4002".parse().unwrap(),
        ];
        assert_eq!(media_addrs(&sdp).unwrap(), want);
    }
}
