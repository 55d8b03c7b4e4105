//! The RTP relay (issue 14) end to end: the `tether` binary as registrar,
//! proxy and media anchor between small UAs written here on std UDP
//! sockets (SIP over UDP following Record-Route, SDP, RTP and RTCP).
//!
//! Each test starts its own tether on free ports with its own
//! `media.ports` block, registers its UAs, places calls and checks what
//! each party saw on the wire: the SDP rewritten to tether's address and
//! relay ports, every RTP/RTCP packet relayed byte-identical both ways and
//! from the port the receiver sends to (symmetric RTP), nothing relayed
//! after the call ends, and the API's and metrics' view of it. No timing
//! assertions: waits are bounded and generous, assertions are on counts and
//! content. tether is killed by its PID (and namespaces deleted) on drop,
//! also when a test fails.
//!
//! The NAT test needs root and `ip netns`/iptables (CI has them); without
//! them it reports itself skipped, and fails under `CI=true`.

mod common;

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::netns::{self, Bed};

use common::TempDir;

const DOMAIN: &str = "tether.test";
const TOKEN: &str = "media-relay-token-0123456";
/// Ports in each test's `media.ports` block.
const BLOCK: u16 = 40;

// ---------------------------------------------------------------- tether

/// How to run one tether.
struct Opts<'a> {
    mode: &'a str,
    workers: usize,
    /// Ports of the test's block in `media.ports`; `None` = all of it.
    ports: Option<u16>,
    /// More `[media]` lines.
    media: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            mode: "always",
            workers: 2,
            ports: None,
            media: "",
        }
    }
}

/// A `media.ports` block of this test's own, below the kernel's ephemeral
/// range (where the UAs' sockets live), claimed with a lock file so that
/// parallel tests (threads or nextest processes) never share one; a lock
/// left by a dead process is taken over.
struct Block {
    first: u16,
    lock: PathBuf,
}

impl Block {
    fn claim() -> Block {
        static N: AtomicU32 = AtomicU32::new(0);
        const SLOTS: u32 = 400;
        let start = std::process::id().wrapping_mul(7) + N.fetch_add(1, Ordering::Relaxed);
        for k in 0..SLOTS * 2 {
            let slot = (start + k) % SLOTS;
            let lock = std::env::temp_dir().join(format!("tether-media-ports-{slot}.lock"));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock);
            match file {
                Ok(mut f) => {
                    use std::io::Write as _;
                    let _ = write!(f, "{}", std::process::id());
                    return Block {
                        first: 16_000 + slot as u16 * BLOCK,
                        lock,
                    };
                }
                Err(_) => {
                    let owner = std::fs::read_to_string(&lock).unwrap_or_default();
                    let dead = owner
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
                    if dead {
                        let _ = std::fs::remove_file(&lock);
                    }
                }
            }
        }
        panic!("no free media port block");
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// tether as a child process (killed by PID on drop), in network namespace
/// `ns` when given.
struct Tether {
    child: Child,
    sip: SocketAddr,
    api: String,
    ns: Option<String>,
    ports: (u16, u16),
    log: PathBuf,
    _dir: TempDir,
    _block: Block,
}

impl Tether {
    fn start(o: Opts<'_>) -> Tether {
        let sip: SocketAddr = format!("127.0.0.1:{}", common::free_udp_port())
            .parse()
            .unwrap();
        let api = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        Self::start_at(o, sip, api, None)
    }

    fn start_at(o: Opts<'_>, sip: SocketAddr, api: SocketAddr, ns: Option<&str>) -> Tether {
        let dir = TempDir::new("media-relay");
        let block = Block::claim();
        let ports = (block.first, block.first + o.ports.unwrap_or(BLOCK) - 1);
        let cfg = dir.file(
            "tether.toml",
            &format!(
                "[sip]\nlisten = [\"{sip}\"]\n[runtime]\nworkers = {}\n\
[registrar]\ndomains = [\"{DOMAIN}\"]\n[keepalive]\ninterval_ms = 0\n\
[api]\nlisten = \"{api}\"\nclients = [{{ name = \"t\", token = \"{TOKEN}\" }}]\n\
[media]\nmode = \"{}\"\nports = \"{}-{}\"\n{}\n",
                o.workers, o.mode, ports.0, ports.1, o.media
            ),
        );
        let log = dir.0.join("tether.log");
        let mut cmd = match ns {
            Some(ns) => netns::in_ns(ns, &[env!("CARGO_BIN_EXE_tether")]),
            None => Command::new(env!("CARGO_BIN_EXE_tether")),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&cfg)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the tether binary");
        let t = Tether {
            child,
            sip,
            api: format!("http://{api}"),
            ns: ns.map(str::to_owned),
            ports,
            log,
            _dir: dir,
            _block: block,
        };
        let up = common::wait_for(Duration::from_secs(15), || {
            t.http_opt("/healthz").is_some_and(|(s, _)| s == 200)
        });
        assert!(up, "tether did not come up{}", t.log_tail());
        t
    }

    fn http_opt(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("{}{path}", self.api);
        let get = move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut r = agent
                .get(&url)
                .header("Authorization", &format!("Bearer {TOKEN}"))
                .call()
                .ok()?;
            let body = r.body_mut().read_to_string().ok()?;
            Some((r.status().as_u16(), body))
        };
        match &self.ns {
            Some(ns) => netns::within(ns, get),
            None => get(),
        }
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = self
            .http_opt(path)
            .unwrap_or_else(|| panic!("GET {path} failed{}", self.log_tail()));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// A counter or gauge summed over the cores.
    fn metric(&self, name: &str) -> u64 {
        let m = self.get("/metrics");
        m.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{m}"))
    }

    /// Waits (bounded) until metric `name` reaches `at_least`.
    fn wait_metric(&self, name: &str, at_least: u64) -> u64 {
        let mut v = 0;
        let ok = common::wait_for(Duration::from_secs(10), || {
            v = self.metric(name);
            v >= at_least
        });
        assert!(
            ok,
            "{name} = {v}, expected at least {at_least}{}",
            self.log_tail()
        );
        v
    }

    /// `GET /v1/calls` as JSON.
    fn calls(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/v1/calls")).unwrap()
    }

    fn in_range(&self, port: u16) -> bool {
        (self.ports.0..=self.ports.1).contains(&port)
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("\n-------- tether log\n{}", lines[from..].join("\n"))
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- SIP

/// A SIP message as the UAs read it: header names lower-case and in full.
#[derive(Clone, Debug)]
struct Msg {
    first: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Msg {
    fn parse(b: &[u8]) -> Option<Msg> {
        let end = b.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&b[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let first = lines.next()?.to_owned();
        let mut headers = Vec::new();
        for l in lines {
            let (n, v) = l.split_once(':')?;
            let n = n.trim().to_ascii_lowercase();
            let n = match n.as_str() {
                "v" => "via",
                "f" => "from",
                "t" => "to",
                "i" => "call-id",
                "m" => "contact",
                "l" => "content-length",
                "c" => "content-type",
                other => other,
            };
            headers.push((n.to_owned(), v.trim().to_owned()));
        }
        Some(Msg {
            first,
            headers,
            body: b[end + 4..].to_vec(),
        })
    }

    fn status(&self) -> Option<u16> {
        let rest = self.first.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    fn method(&self) -> Option<&str> {
        (self.status().is_none()).then(|| self.first.split(' ').next().unwrap_or(""))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn hdr(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.text()))
    }

    /// Every value of a header that may be comma-joined (Via, Record-Route).
    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| split_commas(v))
            .collect()
    }

    fn cseq(&self) -> (u32, String) {
        let v = self.hdr("cseq");
        let (n, m) = v.split_once(' ').unwrap_or((v, ""));
        (n.trim().parse().unwrap_or(0), m.trim().to_owned())
    }

    /// Identifies this message among retransmissions.
    fn key(&self) -> String {
        let branch = self.all("via").first().cloned().unwrap_or_default();
        format!(
            "{}|{}|{}|{}",
            self.get("call-id").unwrap_or(""),
            self.get("cseq").unwrap_or(""),
            self.status()
                .map_or_else(|| self.method().unwrap_or("").to_owned(), |s| s.to_string()),
            branch
        )
    }

    fn text(&self) -> String {
        let mut s = self.first.clone();
        for (n, v) in &self.headers {
            s.push_str(&format!("\n{n}: {v}"));
        }
        s.push_str("\n\n");
        s.push_str(&String::from_utf8_lossy(&self.body));
        s
    }
}

/// Splits at commas outside `<...>` and quotes.
fn split_commas(v: &str) -> Vec<String> {
    let (mut out, mut cur, mut angle, mut quote) = (Vec::new(), String::new(), false, false);
    for ch in v.chars() {
        match ch {
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            '"' => quote = !quote,
            ',' if !angle && !quote => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// The URI inside `<...>`, or the value up to its parameters.
fn uri_of(v: &str) -> String {
    match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_owned(),
        _ => v.split(';').next().unwrap_or(v).trim().to_owned(),
    }
}

/// A dialog as one UA sees it.
#[derive(Clone, Debug)]
struct Dialog {
    call_id: String,
    /// Our From (as a UAC) or To (as a UAS), with our tag.
    local: String,
    remote: String,
    /// The other party's Contact URI.
    target: String,
    /// Route headers for our requests, in order.
    routes: Vec<String>,
    cseq: u32,
}

/// A call placed by a UA, until its final response.
struct Invite {
    call_id: String,
    from: String,
    to: String,
    cseq: u32,
    via: String,
}

/// A user agent on one UDP socket, sending every request to tether.
struct Ua {
    user: String,
    sock: UdpSocket,
    addr: SocketAddr,
    proxy: SocketAddr,
    pending: VecDeque<Msg>,
    consumed: HashSet<String>,
    /// First lines of everything received, for failure messages.
    seen: Vec<String>,
    n: u32,
}

impl Ua {
    fn new(user: &str, ip: IpAddr, proxy: SocketAddr) -> Ua {
        let sock = UdpSocket::bind((ip, 0)).unwrap();
        let addr = sock.local_addr().unwrap();
        Ua {
            user: user.to_owned(),
            sock,
            addr,
            proxy,
            pending: VecDeque::new(),
            consumed: HashSet::new(),
            seen: Vec::new(),
            n: 0,
        }
    }

    fn id(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}{}{}", self.user, self.n, std::process::id())
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.addr)
    }

    fn send(&self, text: &str) {
        self.sock.send_to(text.as_bytes(), self.proxy).unwrap();
    }

    /// A request to tether with our Via, and Content-* for `body`.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        method: &str,
        ruri: &str,
        routes: &[String],
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        body: Option<&str>,
    ) -> String {
        let branch = format!("z9hG4bK{}", self.id("b"));
        let via = format!("SIP/2.0/UDP {};branch={branch};rport", self.addr);
        self.request_via(method, ruri, routes, from, to, call_id, cseq, body, &via);
        via
    }

    #[allow(clippy::too_many_arguments)]
    fn request_via(
        &mut self,
        method: &str,
        ruri: &str,
        routes: &[String],
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        body: Option<&str>,
        via: &str,
    ) {
        let mut m = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: {}\r\n",
            self.contact()
        );
        for r in routes {
            m.push_str(&format!("Route: {r}\r\n"));
        }
        match body {
            Some(b) => m.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&m);
    }

    /// The next message matching `pred` (earlier non-matching ones are kept
    /// for later); retransmissions of consumed messages are ignored and
    /// OPTIONS answered.
    fn expect(&mut self, what: &str, secs: u64, pred: impl Fn(&Msg) -> bool) -> Msg {
        self.try_expect(secs, pred).unwrap_or_else(|| {
            panic!(
                "{}: no {what} within {secs} s; received: {:#?}; pending: {:#?}",
                self.user,
                self.seen,
                self.pending.iter().map(Msg::text).collect::<Vec<_>>()
            )
        })
    }

    fn try_expect(&mut self, secs: u64, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        if let Some(i) = self.pending.iter().position(&pred) {
            let m = self.pending.remove(i).unwrap();
            self.consumed.insert(m.key());
            return Some(m);
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Some(m) = Msg::parse(&buf[..n]) else {
                continue;
            };
            self.seen.push(m.first.clone());
            if self.consumed.contains(&m.key()) {
                continue;
            }
            if m.method() == Some("OPTIONS") {
                self.respond(&m, 200, "OK", None, None);
                continue;
            }
            if pred(&m) {
                self.consumed.insert(m.key());
                return Some(m);
            }
            self.pending.push_back(m);
        }
    }

    /// A response to `req` (Via, From, To, Call-ID, CSeq and Record-Route
    /// copied); `tag` is added to To when it has none.
    fn respond(&self, req: &Msg, code: u16, reason: &str, tag: Option<&str>, body: Option<&str>) {
        let mut m = format!("SIP/2.0 {code} {reason}\r\n");
        for v in req.all("via") {
            m.push_str(&format!("Via: {v}\r\n"));
        }
        let to = req.hdr("to");
        let to = match tag {
            Some(t) if !to.contains(";tag=") => format!("{to};tag={t}"),
            _ => to.to_owned(),
        };
        m.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            req.hdr("from"),
            req.hdr("call-id"),
            req.hdr("cseq")
        ));
        for rr in req.all("record-route") {
            m.push_str(&format!("Record-Route: {rr}\r\n"));
        }
        if code > 100 && code < 300 {
            m.push_str(&format!("Contact: {}\r\n", self.contact()));
        }
        match body {
            Some(b) => m.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&m);
    }

    fn register(&mut self) {
        let call_id = self.id("reg");
        let aor = format!("<sip:{}@{DOMAIN}>", self.user);
        let from = format!("{aor};tag={}", self.id("t"));
        for attempt in 0..10 {
            self.request(
                "REGISTER",
                &format!("sip:{DOMAIN}"),
                &[],
                &from,
                &aor,
                &call_id,
                attempt + 1,
                None,
            );
            if let Some(r) = self.try_expect(1, |m| {
                m.get("call-id") == Some(call_id.as_str()) && m.status().is_some_and(|s| s >= 200)
            }) {
                assert_eq!(r.status(), Some(200), "REGISTER: {}", r.text());
                return;
            }
        }
        panic!("{}: REGISTER never answered", self.user);
    }

    /// Sends an INVITE to `callee`@DOMAIN.
    fn invite(&mut self, callee: &str, sdp: Option<&str>) -> Invite {
        let call_id = self.id("call");
        let tag = self.id("t");
        let from = format!("<sip:{}@{DOMAIN}>;tag={tag}", self.user);
        let to = format!("<sip:{callee}@{DOMAIN}>");
        let via = self.request(
            "INVITE",
            &format!("sip:{callee}@{DOMAIN}"),
            &[],
            &from,
            &to,
            &call_id,
            1,
            sdp,
        );
        Invite {
            call_id,
            from,
            to,
            cseq: 1,
            via,
        }
    }

    /// The INVITE's final response (non-2xx ones are ACKed).
    fn final_response(&mut self, inv: &Invite) -> Msg {
        let cid = inv.call_id.clone();
        let r = self.expect("final response to the INVITE", 10, |m| {
            m.get("call-id") == Some(cid.as_str())
                && m.status().is_some_and(|s| s >= 200)
                && m.cseq().1 == "INVITE"
        });
        if r.status() != Some(200) {
            self.request_via(
                "ACK",
                &format!("sip:x@{DOMAIN}"),
                &[],
                &inv.from,
                r.hdr("to"),
                &inv.call_id,
                inv.cseq,
                None,
                &inv.via,
            );
        }
        r
    }

    /// The dialog a 2xx to our INVITE made.
    fn uac_dialog(inv: &Invite, ok: &Msg) -> Dialog {
        let _ = &inv.to;
        let mut routes = ok.all("record-route");
        routes.reverse();
        Dialog {
            call_id: inv.call_id.clone(),
            local: inv.from.clone(),
            remote: ok.hdr("to").to_owned(),
            target: uri_of(ok.hdr("contact")),
            routes,
            cseq: inv.cseq,
        }
    }

    fn ack(&mut self, d: &Dialog, body: Option<&str>) {
        let (routes, local, remote) = (d.routes.clone(), d.local.clone(), d.remote.clone());
        self.request(
            "ACK", &d.target, &routes, &local, &remote, &d.call_id, d.cseq, body,
        );
    }

    /// The next new INVITE (not a re-INVITE of a dialog we know).
    fn expect_request(&mut self, method: &str, call_id: Option<&str>) -> Msg {
        let method = method.to_owned();
        let cid = call_id.map(str::to_owned);
        self.expect(&format!("{method} request"), 10, |m| {
            m.method() == Some(method.as_str())
                && cid.as_deref().is_none_or(|c| m.get("call-id") == Some(c))
        })
    }

    /// Answers a new INVITE with `code` (and our tag); 2xx return the dialog.
    fn answer(&mut self, inv: &Msg, code: u16, body: Option<&str>) -> Dialog {
        let tag = self.id("t");
        let reason = if code == 180 { "Ringing" } else { "OK" };
        self.respond(inv, code, reason, Some(&tag), body);
        Dialog {
            call_id: inv.hdr("call-id").to_owned(),
            local: format!("{};tag={tag}", inv.hdr("to")),
            remote: inv.hdr("from").to_owned(),
            target: uri_of(inv.hdr("contact")),
            routes: inv.all("record-route"),
            cseq: 100,
        }
    }

    /// Sends a request in dialog `d` (CSeq incremented).
    fn in_dialog(&mut self, d: &mut Dialog, method: &str, body: Option<&str>) {
        d.cseq += 1;
        let (routes, local, remote) = (d.routes.clone(), d.local.clone(), d.remote.clone());
        self.request(
            method, &d.target, &routes, &local, &remote, &d.call_id, d.cseq, body,
        );
    }

    /// The final response to our in-dialog request of `d`.
    fn dialog_response(&mut self, d: &Dialog) -> Msg {
        let (cid, cseq) = (d.call_id.clone(), d.cseq);
        self.expect("final response in dialog", 10, |m| {
            m.get("call-id") == Some(cid.as_str())
                && m.status().is_some_and(|s| s >= 200)
                && m.cseq().0 == cseq
        })
    }

    /// Answers an in-dialog request of `d` that arrives next.
    fn answer_in_dialog(&mut self, d: &Dialog, method: &str, body: Option<&str>) -> Msg {
        let req = self.expect_request(method, Some(&d.call_id.clone()));
        self.respond(&req, 200, "OK", None, body);
        req
    }
}

// ---------------------------------------------------------------- SDP and RTP

/// An RTP socket and the RTCP one at the next port.
struct Media {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Media {
    fn new(ip: IpAddr) -> Media {
        for _ in 0..200 {
            let rtp = UdpSocket::bind((ip, 0)).unwrap();
            let p = rtp.local_addr().unwrap().port();
            if p == u16::MAX {
                continue;
            }
            if let Ok(rtcp) = UdpSocket::bind((ip, p + 1)) {
                return Media { rtp, rtcp };
            }
        }
        panic!("no adjacent UDP port pair on {ip}");
    }

    fn port(&self) -> u16 {
        self.rtp.local_addr().unwrap().port()
    }
}

/// An SDP offering/answering `streams` (media, port, direction) at `ip`.
fn sdp(ip: IpAddr, streams: &[(&str, u16, &str)]) -> String {
    let mut s = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n");
    for (media, port, dir) in streams {
        let pt = if *media == "video" { 96 } else { 0 };
        s.push_str(&format!("m={media} {port} RTP/AVP {pt}\r\n"));
        if *media == "video" {
            s.push_str("a=rtpmap:96 H264/90000\r\n");
        } else {
            s.push_str("a=rtpmap:0 PCMU/8000\r\n");
        }
        s.push_str(&format!("a={dir}\r\n"));
    }
    s
}

/// One `m=` line as received: media, connection address, port, direction.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    media: String,
    addr: Option<IpAddr>,
    port: u16,
    dir: String,
}

impl Seen {
    fn to(&self) -> SocketAddr {
        SocketAddr::new(self.addr.expect("a connection address"), self.port)
    }
    fn rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.addr.expect("a connection address"), self.port + 1)
    }
}

fn streams(body: &[u8]) -> Vec<Seen> {
    let text = String::from_utf8_lossy(body);
    let mut session_c = None;
    let mut out: Vec<Seen> = Vec::new();
    for l in text.lines() {
        let l = l.trim_end();
        if let Some(v) = l.strip_prefix("c=") {
            let ip = v.split(' ').nth(2).and_then(|a| a.parse().ok());
            match out.last_mut() {
                Some(s) => s.addr = ip,
                None => session_c = ip,
            }
        } else if let Some(v) = l.strip_prefix("m=") {
            let mut f = v.split(' ');
            out.push(Seen {
                media: f.next().unwrap_or("").to_owned(),
                port: f.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                addr: session_c,
                dir: "sendrecv".into(),
            });
        } else if let Some(a) = l.strip_prefix("a=") {
            if let Some(s) = out.last_mut() {
                if ["sendrecv", "sendonly", "recvonly", "inactive"].contains(&a) {
                    s.dir = a.to_owned();
                }
            }
        }
    }
    out
}

/// RTP packet `seq` of stream `ssrc`, with a payload that uses every byte
/// value and differs per packet.
fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160u32).map(|i| (i as u8).wrapping_mul(seq as u8 | 1) ^ (ssrc as u8)));
    p
}

/// An RTCP sender report of `ssrc` (28 bytes), numbered by `n`.
fn rtcp(ssrc: u32, n: u32) -> Vec<u8> {
    let mut p = vec![0x80, 200, 0, 6];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&n.to_be_bytes());
    p.extend_from_slice(&[0xab; 16]);
    p
}

/// Sends `packets` from `from` to `to`, pausing briefly every 16 so that
/// loopback buffers never overflow.
fn send_all(from: &UdpSocket, to: SocketAddr, packets: &[Vec<u8>]) {
    for (i, p) in packets.iter().enumerate() {
        from.send_to(p, to).unwrap();
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Reads datagrams on `sock` until `n` arrived or `secs` passed.
fn recv_n(sock: &UdpSocket, n: usize, secs: u64) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok((len, src)) = sock.recv_from(&mut buf) {
            out.push((buf[..len].to_vec(), src));
        }
    }
    out
}

/// Discards whatever is queued on `sock`.
fn drain(sock: &UdpSocket) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_nonblocking(false).unwrap();
}

/// Sends `n` RTP packets from `from` to `to` and asserts that `rx` got
/// every one, byte-identical, from `relay` (tether's port facing the receiver).
fn relays(
    what: &str,
    from: &UdpSocket,
    to: SocketAddr,
    rx: &UdpSocket,
    relay: SocketAddr,
    ssrc: u32,
) {
    let sent: Vec<Vec<u8>> = (1..=20).map(|s| rtp(ssrc, s)).collect();
    send_all(from, to, &sent);
    let got = recv_n(rx, sent.len(), 10);
    let mut payloads: Vec<Vec<u8>> = got.iter().map(|(p, _)| p.clone()).collect();
    payloads.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(
        payloads.len(),
        want.len(),
        "{what}: {} of {} RTP packets relayed",
        payloads.len(),
        want.len()
    );
    assert!(
        payloads == want,
        "{what}: relayed RTP differs from what was sent"
    );
    assert!(
        got.iter().all(|(_, src)| *src == relay),
        "{what}: RTP came from {:?}, not from the relay port {relay}",
        got.iter().map(|(_, s)| *s).collect::<HashSet<_>>()
    );
}

/// The same for three RTCP reports.
fn relays_rtcp(what: &str, from: &UdpSocket, to: SocketAddr, rx: &UdpSocket, ssrc: u32) {
    let sent: Vec<Vec<u8>> = (1..=3).map(|n| rtcp(ssrc, n)).collect();
    send_all(from, to, &sent);
    let got: Vec<Vec<u8>> = recv_n(rx, 3, 10).into_iter().map(|(p, _)| p).collect();
    assert_eq!(got, sent, "{what}: RTCP relayed as sent");
}

// ---------------------------------------------------------------- calls

/// A call set up through tether: both dialogs and the SDP each side saw.
struct Call {
    a: Dialog,
    b: Dialog,
    /// The offer as B received it.
    offer: Vec<Seen>,
    /// The answer as A received it.
    answer: Vec<Seen>,
}

/// A calls B (registered as `callee`) offering `a_sdp`; B rings, answers
/// with `b_sdp`; A ACKs. Early offer only.
fn call(a: &mut Ua, b: &mut Ua, callee: &str, a_sdp: &str, b_sdp: &str) -> Call {
    let inv = a.invite(callee, Some(a_sdp));
    let req = b.expect_request("INVITE", Some(&inv.call_id));
    b.answer(&req, 180, None);
    let bd = b.answer(&req, 200, Some(b_sdp));
    let ok = a.final_response(&inv);
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    let ad = Ua::uac_dialog(&inv, &ok);
    a.ack(&ad, None);
    b.expect_request("ACK", Some(&inv.call_id));
    Call {
        a: ad,
        b: bd,
        offer: streams(&req.body),
        answer: streams(&ok.body),
    }
}

/// A hangs up.
fn hang_up(a: &mut Ua, b: &mut Ua, call: &mut Call) {
    a.in_dialog(&mut call.a, "BYE", None);
    b.answer_in_dialog(&call.b, "BYE", None);
    let r = a.dialog_response(&call.a);
    assert_eq!(r.status(), Some(200), "BYE: {}", r.text());
}

impl Call {
    /// The first stream's relay addresses: (the one B was offered, which B
    /// sends to; the one A got in the answer, which A sends to).
    fn first(&self) -> (Seen, Seen) {
        (self.offer[0].clone(), self.answer[0].clone())
    }
}

/// An SDP with one `sendrecv` audio stream at `ip`:`port`.
fn audio(ip: IpAddr, port: u16) -> String {
    sdp(ip, &[("audio", port, "sendrecv")])
}

/// [`call`] with one `sendrecv` audio stream each: A's at `at_a`, B's at `at_b`.
fn audio_call(
    a: &mut Ua,
    b: &mut Ua,
    callee: &str,
    at_a: (IpAddr, u16),
    at_b: (IpAddr, u16),
) -> Call {
    call(a, b, callee, &audio(at_a.0, at_a.1), &audio(at_b.0, at_b.1))
}

/// Alice at `ipa` and bob at `ipb`, both registered with `t`.
fn alice_and_bob(t: &Tether, ipa: IpAddr, ipb: IpAddr) -> (Ua, Ua) {
    let mut a = Ua::new("alice", ipa, t.sip);
    let mut b = Ua::new("bob", ipb, t.sip);
    a.register();
    b.register();
    (a, b)
}

/// [`relays`] A→B then B→A (`ssrc` for each), labels suffixed by `what`;
/// each party's media socket sends to the relay address it was given.
fn relays_both_ways(what: &str, a: (&UdpSocket, &Seen), b: (&UdpSocket, &Seen), ssrc: (u32, u32)) {
    let ((a_rtp, to_a), (b_rtp, to_b)) = (a, b);
    relays(
        &format!("A→B{what}"),
        a_rtp,
        to_a.to(),
        b_rtp,
        to_b.to(),
        ssrc.0,
    );
    relays(
        &format!("B→A{what}"),
        b_rtp,
        to_b.to(),
        a_rtp,
        to_a.to(),
        ssrc.1,
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The media of the one call in `GET /v1/calls` with Call-ID `cid`.
fn call_media(t: &Tether, cid: &str) -> serde_json::Value {
    let v = t.calls();
    v["calls"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["call_id"] == cid))
        .map(|c| c["media"].clone())
        .unwrap_or_else(|| panic!("call {cid} not in {v}"))
}

// ---------------------------------------------------------------- tests

#[test]
fn a_call_between_registered_uas_is_anchored_and_relayed_both_ways() {
    let t = Tether::start(Opts::default());
    let (ipa, ipb) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let tether_ip = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, ipa, ipb);
    let (ma, mb) = (Media::new(ipa), Media::new(ipb));
    let mut c = audio_call(&mut a, &mut b, "bob", (ipa, ma.port()), (ipb, mb.port()));

    // Each side sees tether's address and a relay port, never the other party's.
    assert_eq!(c.offer.len(), 1, "{:?}", c.offer);
    assert_eq!(c.answer.len(), 1, "{:?}", c.answer);
    let (to_b, to_a) = c.first();
    for (who, s) in [("B's offer", &to_b), ("A's answer", &to_a)] {
        assert_eq!(s.addr, Some(tether_ip), "{who} names tether: {s:?}");
        assert!(t.in_range(s.port), "{who} names a relay port: {s:?}");
    }
    assert_ne!(to_b.port, ma.port());
    assert_ne!(to_a.port, mb.port());
    assert_ne!(to_a.port, to_b.port, "each party has its own relay port");

    // RTP both ways, byte-identical, from the port each side sends to.
    relays_both_ways("", (&ma.rtp, &to_a), (&mb.rtp, &to_b), (0xA, 0xB));
    // RTCP on port+1, both ways.
    relays_rtcp("A→B RTCP", &ma.rtcp, to_a.rtcp(), &mb.rtcp, 0xA);
    relays_rtcp("B→A RTCP", &mb.rtcp, to_b.rtcp(), &ma.rtcp, 0xB);

    // The API sees both legs' packets; leg 0 faces A (the port A sends to).
    let media = call_media(&t, &c.a.call_id);
    let legs = &media[0]["legs"];
    assert_eq!(legs[0]["local_port"], to_a.port, "{media}");
    assert_eq!(legs[1]["local_port"], to_b.port, "{media}");
    for (i, who) in [(0, "A"), (1, "B")] {
        assert_eq!(legs[i]["packets"], 20, "{who}'s RTP counted: {media}");
        assert_eq!(legs[i]["rtcp_packets"], 3, "{who}'s RTCP counted: {media}");
        assert_eq!(legs[i]["lost"], 0, "{media}");
    }
    assert_eq!(
        legs[0]["latched"],
        ma.rtp.local_addr().unwrap().to_string(),
        "{media}"
    );
    assert!(t.wait_metric("tether_media_packets_total", 46) >= 46);

    // After the BYE's 200 nothing more is relayed.
    hang_up(&mut a, &mut b, &mut c);
    drain(&mb.rtp);
    drain(&ma.rtp);
    send_all(&ma.rtp, to_a.to(), &[rtp(0xA, 100), rtp(0xA, 101)]);
    send_all(&mb.rtp, to_b.to(), &[rtp(0xB, 100), rtp(0xB, 101)]);
    assert!(
        recv_n(&mb.rtp, 1, 1).is_empty(),
        "A's RTP relayed after the BYE"
    );
    assert!(
        recv_n(&ma.rtp, 1, 1).is_empty(),
        "B's RTP relayed after the BYE"
    );
    t.wait_metric("tether_media_dropped_source_total", 4);
    let mut sessions = u64::MAX;
    common::wait_for(Duration::from_secs(5), || {
        sessions = t.metric("tether_media_sessions");
        sessions == 0
    });
    assert_eq!(sessions, 0, "the BYE ended the media session");

    // A second call gets other ports (the first call's are in quarantine).
    let c2 = audio_call(&mut a, &mut b, "bob", (ipa, ma.port()), (ipb, mb.port()));
    let used = [to_a.port, to_b.port];
    assert!(
        !used.contains(&c2.offer[0].port) && !used.contains(&c2.answer[0].port),
        "second call on fresh ports: {:?} {:?} vs {used:?}",
        c2.offer,
        c2.answer
    );
    relays(
        "second call A→B",
        &ma.rtp,
        c2.answer[0].to(),
        &mb.rtp,
        c2.offer[0].to(),
        0xC,
    );
    assert_eq!(t.wait_metric("tether_media_calls_anchored_total", 2), 2);
}

#[test]
fn symmetric_rtp_sends_media_back_where_a_party_sends_from() {
    // mode "nat": A's SDP names 127.0.0.2, its signalling comes from
    // 127.0.0.1 (a NATed party); B's SDP names its own IP but another port
    // than the one it sends from.
    let t = Tether::start(Opts {
        mode: "nat",
        ..Opts::default()
    });
    let lo = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, lo, lo);
    let decoy_a = Media::new(ip("127.0.0.2"));
    let decoy_b = Media::new(lo);
    let (ma, mb) = (Media::new(lo), Media::new(lo));
    let c = audio_call(
        &mut a,
        &mut b,
        "bob",
        (ip("127.0.0.2"), decoy_a.port()),
        (lo, decoy_b.port()),
    );
    let (to_b, to_a) = c.first();
    assert!(
        t.in_range(to_b.port) && t.in_range(to_a.port),
        "anchored: {to_b:?} {to_a:?}"
    );

    // A speaks first: B has sent nothing yet, so its SDP address gets it.
    relays(
        "A→B before B spoke",
        &ma.rtp,
        to_a.to(),
        &decoy_b.rtp,
        to_b.to(),
        0xA,
    );
    // B answers from another port: A gets it where A sends from, not at
    // the address in its SDP.
    relays("B→A", &mb.rtp, to_b.to(), &ma.rtp, to_a.to(), 0xB);
    // And now B gets A's media where B sends from.
    relays(
        "A→B after B spoke",
        &ma.rtp,
        to_a.to(),
        &mb.rtp,
        to_b.to(),
        0xC,
    );
    assert!(
        recv_n(&decoy_a.rtp, 1, 1).is_empty(),
        "nothing goes to the address A's SDP named"
    );
    assert!(
        recv_n(&decoy_b.rtp, 1, 1).is_empty(),
        "nothing more goes to B's SDP address once B spoke"
    );
    let media = call_media(&t, &c.a.call_id);
    let legs = &media[0]["legs"];
    assert_eq!(
        legs[0]["signalled"],
        format!("127.0.0.2:{}", decoy_a.port()),
        "{media}"
    );
    assert_eq!(
        legs[0]["latched"],
        ma.rtp.local_addr().unwrap().to_string(),
        "{media}"
    );
    assert_eq!(
        legs[1]["latched"],
        mb.rtp.local_addr().unwrap().to_string(),
        "{media}"
    );
}

#[test]
fn late_offer_in_the_200_and_answer_in_the_ack_are_both_anchored() {
    let t = Tether::start(Opts::default());
    let (ipa, ipb) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let (mut a, mut b) = alice_and_bob(&t, ipa, ipb);
    let (ma, mb) = (Media::new(ipa), Media::new(ipb));
    let inv = a.invite("bob", None);
    let req = b.expect_request("INVITE", Some(&inv.call_id));
    assert!(req.body.is_empty(), "no SDP invented: {}", req.text());
    b.answer(&req, 200, Some(&audio(ipb, mb.port())));
    let ok = a.final_response(&inv);
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    let offer = streams(&ok.body);
    assert_eq!(offer.len(), 1, "{}", ok.text());
    assert_eq!(offer[0].addr, Some(ip("127.0.0.1")), "{}", ok.text());
    assert!(t.in_range(offer[0].port), "{}", ok.text());
    let ad = Ua::uac_dialog(&inv, &ok);
    a.ack(&ad, Some(&audio(ipa, ma.port())));
    let ack = b.expect_request("ACK", Some(&inv.call_id));
    let answer = streams(&ack.body);
    assert_eq!(
        answer.len(),
        1,
        "the ACK's answer reaches B: {}",
        ack.text()
    );
    assert_eq!(answer[0].addr, Some(ip("127.0.0.1")), "{}", ack.text());
    assert!(t.in_range(answer[0].port), "{}", ack.text());
    assert_ne!(answer[0].port, offer[0].port);
    // A sends to the port in the offer it got, B to the one in its answer.
    relays_both_ways("", (&ma.rtp, &offer[0]), (&mb.rtp, &answer[0]), (0xA, 0xB));
}

/// A re-INVITE from `x` offering `sdp_x`, answered by `y` with `sdp_y`,
/// ACKed: (the offer as `y` got it, the answer as `x` got it).
fn reinvite(
    x: (&mut Ua, &mut Dialog, &str),
    y: (&mut Ua, &Dialog, &str),
) -> (Vec<Seen>, Vec<Seen>) {
    let ((ux, dx, sx), (uy, dy, sy)) = (x, y);
    ux.in_dialog(dx, "INVITE", Some(sx));
    let req = uy.answer_in_dialog(dy, "INVITE", Some(sy));
    let ok = ux.dialog_response(dx);
    assert_eq!(ok.status(), Some(200), "{}", ok.text());
    ux.ack(dx, None);
    uy.expect_request("ACK", Some(&dy.call_id));
    (streams(&req.body), streams(&ok.body))
}

#[test]
fn re_invites_hold_resume_add_video_and_remove_it() {
    let t = Tether::start(Opts::default());
    let (ipa, ipb) = (ip("127.0.0.2"), ip("127.0.0.3"));
    let (mut a, mut b) = alice_and_bob(&t, ipa, ipb);
    let (ma, mb) = (Media::new(ipa), Media::new(ipb));
    let (va, vb) = (Media::new(ipa), Media::new(ipb));
    let mut c = audio_call(&mut a, &mut b, "bob", (ipa, ma.port()), (ipb, mb.port()));
    let (to_b, to_a) = c.first();
    let cid = c.a.call_id.clone();
    relays("A→B", &ma.rtp, to_a.to(), &mb.rtp, to_b.to(), 1);

    macro_rules! from_a {
        ($a_streams:expr, $b_streams:expr $(,)?) => {
            reinvite(
                (&mut a, &mut c.a, &sdp(ipa, $a_streams)),
                (&mut b, &c.b, &sdp(ipb, $b_streams)),
            )
        };
    }

    // Hold: same ports, direction passed through.
    let (offer, answer) = from_a!(
        &[("audio", ma.port(), "sendonly")],
        &[("audio", mb.port(), "recvonly")],
    );
    assert_eq!(
        (offer[0].port, offer[0].dir.as_str()),
        (to_b.port, "sendonly")
    );
    assert_eq!(
        (answer[0].port, answer[0].dir.as_str()),
        (to_a.port, "recvonly")
    );
    relays(
        "A→B on hold (sendonly)",
        &ma.rtp,
        to_a.to(),
        &mb.rtp,
        to_b.to(),
        2,
    );

    // Resume.
    let (offer, answer) = from_a!(
        &[("audio", ma.port(), "sendrecv")],
        &[("audio", mb.port(), "sendrecv")],
    );
    assert_eq!(
        (offer[0].port, offer[0].dir.as_str()),
        (to_b.port, "sendrecv")
    );
    assert_eq!(
        (answer[0].port, answer[0].dir.as_str()),
        (to_a.port, "sendrecv")
    );
    relays("B→A resumed", &mb.rtp, to_b.to(), &ma.rtp, to_a.to(), 3);

    // The callee puts the call on hold itself: its SDP is party 1's.
    let (offer, answer) = reinvite(
        (
            &mut b,
            &mut c.b,
            &sdp(ipb, &[("audio", mb.port(), "sendonly")]),
        ),
        (&mut a, &c.a, &sdp(ipa, &[("audio", ma.port(), "recvonly")])),
    );
    assert_eq!(
        (offer[0].port, offer[0].dir.as_str()),
        (to_a.port, "sendonly")
    );
    assert_eq!(
        (answer[0].port, answer[0].dir.as_str()),
        (to_b.port, "recvonly")
    );
    relays("B→A, B holding", &mb.rtp, to_b.to(), &ma.rtp, to_a.to(), 9);

    // Video added: audio keeps its ports, video gets new relay ports.
    let (offer, answer) = from_a!(
        &[
            ("audio", ma.port(), "sendrecv"),
            ("video", va.port(), "sendrecv"),
        ],
        &[
            ("audio", mb.port(), "sendrecv"),
            ("video", vb.port(), "sendrecv"),
        ],
    );
    assert_eq!(offer.len(), 2, "{offer:?}");
    assert_eq!(answer.len(), 2, "{answer:?}");
    assert_eq!((offer[0].port, answer[0].port), (to_b.port, to_a.port));
    let (vto_b, vto_a) = (offer[1].clone(), answer[1].clone());
    for s in [&vto_b, &vto_a] {
        assert_eq!(s.media, "video");
        assert_eq!(s.addr, Some(ip("127.0.0.1")));
        assert!(t.in_range(s.port), "{s:?}");
        assert!(
            ![to_a.port, to_b.port].contains(&s.port),
            "video on new ports: {s:?}"
        );
    }
    assert_ne!(vto_a.port, vto_b.port);
    relays_both_ways(" (video)", (&va.rtp, &vto_a), (&vb.rtp, &vto_b), (4, 5));
    relays("audio still A→B", &ma.rtp, to_a.to(), &mb.rtp, to_b.to(), 6);
    let media = call_media(&t, &cid);
    assert_eq!(media.as_array().map(Vec::len), Some(2), "{media}");
    assert_eq!(media[1]["media"], "video", "{media}");

    // Video removed (port 0): it stays 0 on both sides; audio unchanged.
    let (offer, answer) = from_a!(
        &[("audio", ma.port(), "sendrecv"), ("video", 0, "sendrecv")],
        &[("audio", mb.port(), "sendrecv"), ("video", 0, "sendrecv")],
    );
    assert_eq!(offer[1].port, 0, "{offer:?}");
    assert_eq!(answer[1].port, 0, "{answer:?}");
    assert_eq!((offer[0].port, answer[0].port), (to_b.port, to_a.port));
    relays(
        "audio after video removed",
        &mb.rtp,
        to_b.to(),
        &ma.rtp,
        to_a.to(),
        7,
    );
    send_all(&va.rtp, vto_a.to(), &[rtp(8, 1)]);
    assert!(
        recv_n(&vb.rtp, 1, 1).is_empty(),
        "video is not relayed once B's side of it is port 0"
    );
    hang_up(&mut a, &mut b, &mut c);
}

#[test]
fn bad_sdp_and_bad_packets_are_refused_and_a_flood_starves_nobody() {
    let t = Tether::start(Opts::default());
    let lo = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, lo, lo);
    let mut cu = Ua::new("carol", lo, t.sip);
    let mut d = Ua::new("dave", lo, t.sip);
    for u in [&mut cu, &mut d] {
        u.register();
    }

    // An SDP tether cannot anchor: 488 with a Warning, nothing reaches B.
    let bad = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 media.example\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n";
    let inv = a.invite("bob", Some(bad));
    let r = a.final_response(&inv);
    assert_eq!(r.status(), Some(488), "{}", r.text());
    let warning = r
        .get("warning")
        .unwrap_or_else(|| panic!("no Warning: {}", r.text()));
    assert!(
        warning.starts_with("399 ") && warning.contains("not an IP literal"),
        "{warning}"
    );
    assert!(
        b.try_expect(1, |m| m.method() == Some("INVITE")).is_none(),
        "the bad INVITE was forwarded"
    );

    let (ma, mb, mc, md) = (
        Media::new(lo),
        Media::new(lo),
        Media::new(lo),
        Media::new(lo),
    );
    let c1 = audio_call(&mut a, &mut b, "bob", (lo, ma.port()), (lo, mb.port()));
    let c2 = audio_call(&mut cu, &mut d, "dave", (lo, mc.port()), (lo, md.port()));
    let (to_b, to_a) = c1.first();
    relays("A→B", &ma.rtp, to_a.to(), &mb.rtp, to_b.to(), 1);

    // Malformed RTP: too short, and version 1.
    let mut v1 = rtp(1, 99);
    v1[0] = 0x40;
    send_all(&ma.rtp, to_a.to(), &[vec![0x80, 0, 0, 1], v1]);
    // Well-formed RTP from a stranger to A's latched port.
    let stranger = UdpSocket::bind("127.0.0.9:0").unwrap();
    send_all(&stranger, to_a.to(), &[rtp(0x5, 1), rtp(0x5, 2)]);
    assert!(recv_n(&mb.rtp, 1, 1).is_empty(), "bad packets relayed to B");
    t.wait_metric("tether_media_dropped_malformed_total", 2);
    t.wait_metric("tether_media_dropped_source_total", 2);

    // A flood to A's relay port (from A, so it is relayed: the most work)
    // while C's stream runs and E registers.
    const FLOOD: usize = 50_000;
    const STREAM: usize = 200;
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let mut registered_mid_flood = false;
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            let pkt = rtp(0xF, 1);
            for i in 0..FLOOD {
                let _ = ma.rtp.send_to(&pkt, to_a.to());
                progress.store(i + 1, Ordering::Relaxed);
            }
        });
        let receiver = s.spawn(|| recv_n(&md.rtp, STREAM, 20));
        // C's packets are spread over the flood.
        for i in 0..STREAM {
            let at = 1000 + i * (FLOOD - 2000) / STREAM;
            let deadline = Instant::now() + Duration::from_secs(20);
            while progress.load(Ordering::Relaxed) < at && Instant::now() < deadline {
                std::thread::yield_now();
            }
            mc.rtp
                .send_to(&rtp(0xC, i as u16 + 1), c2.answer[0].to())
                .unwrap();
            if i == STREAM / 2 {
                // Mid-flood, a new device registers.
                let mut e = Ua::new("erin", lo, t.sip);
                e.register();
                registered_mid_flood = progress.load(Ordering::Relaxed) < FLOOD;
            }
        }
        receiver.join().unwrap()
    });
    let want: HashSet<Vec<u8>> = (1..=STREAM as u16).map(|i| rtp(0xC, i)).collect();
    assert!(
        got.iter().all(|(p, _)| want.contains(p)),
        "C's stream arrives intact"
    );
    assert!(
        got.len() * 2 > STREAM,
        "during the flood the other call still got most of its packets: {} of {STREAM}",
        got.len()
    );
    // The flood was relayed too, as far as the machine kept up.
    let relayed = t.wait_metric("tether_media_packets_total", 1000);
    eprintln!(
        "flood: {} of {STREAM} packets of the other call delivered; {relayed} packets relayed \
         in all; REGISTER answered while the flood ran: {registered_mid_flood}",
        got.len()
    );
}

#[test]
fn without_free_ports_the_next_invite_gets_503() {
    let t = Tether::start(Opts {
        workers: 1,
        // Two pairs: one stream of one call.
        ports: Some(4),
        ..Opts::default()
    });
    let lo = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, lo, lo);
    let (ma, mb) = (Media::new(lo), Media::new(lo));
    let (sa, sb) = (audio(lo, ma.port()), audio(lo, mb.port()));
    let c = call(&mut a, &mut b, "bob", &sa, &sb);
    assert!(t.in_range(c.offer[0].port) && t.in_range(c.answer[0].port));
    let inv = a.invite("bob", Some(&sa));
    let r = a.final_response(&inv);
    assert_eq!(r.status(), Some(503), "{}", r.text());
    assert!(
        b.try_expect(1, |m| m.method() == Some("INVITE")).is_none(),
        "the INVITE without ports was forwarded"
    );
    assert_eq!(t.wait_metric("tether_media_ports_exhausted_total", 1), 1);
    relays(
        "the first call still relays",
        &ma.rtp,
        c.answer[0].to(),
        &mb.rtp,
        c.offer[0].to(),
        1,
    );
}

#[test]
fn a_call_without_media_is_ended_with_a_bye_to_both_parties() {
    let t = Tether::start(Opts {
        media: "timeout_s = 2",
        ..Opts::default()
    });
    let lo = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, lo, lo);
    let c = audio_call(&mut a, &mut b, "bob", (lo, 40_000), (lo, 40_002));
    let bye_a = a.answer_in_dialog(&c.a, "BYE", None);
    let bye_b = b.answer_in_dialog(&c.b, "BYE", None);
    for (who, bye) in [("A", &bye_a), ("B", &bye_b)] {
        assert!(
            bye.first.starts_with("BYE sip:"),
            "{who} got tether's BYE: {}",
            bye.text()
        );
    }
    assert_eq!(t.wait_metric("tether_media_timeouts_total", 1), 1);
    let mut calls = 1;
    common::wait_for(Duration::from_secs(5), || {
        calls = t.calls()["total"].as_u64().unwrap_or(1);
        calls == 0
    });
    assert_eq!(calls, 0, "the dialog ended");
    assert_eq!(t.metric("tether_media_timeouts_total"), 1, "reported once");
}

#[test]
fn both_parties_behind_nats_talk_only_through_the_relay() {
    if let Some(why) = cannot_netns() {
        common::skip("media_relay netns", &why);
        return;
    }
    let bed = Bed::new("m");
    let sip: SocketAddr = format!("{}:5060", netns::WAN_ADDR).parse().unwrap();
    let t = Tether::start_at(
        Opts {
            mode: "nat",
            ..Opts::default()
        },
        sip,
        "127.0.0.1:8080".parse().unwrap(),
        Some(&bed.wan),
    );
    let ua_ip = ip(netns::UA);
    let (mut a, ma) = netns::within(&bed.lan[0], || {
        (Ua::new("alice", ua_ip, sip), Media::new(ua_ip))
    });
    let (mut b, mb) = netns::within(&bed.lan[1], || {
        (Ua::new("bob", ua_ip, sip), Media::new(ua_ip))
    });
    a.register();
    b.register();
    let c = audio_call(
        &mut a,
        &mut b,
        "bob",
        (ua_ip, ma.port()),
        (ua_ip, mb.port()),
    );
    let (to_b, to_a) = c.first();
    for s in [&to_b, &to_a] {
        assert_eq!(s.addr, Some(sip.ip()), "the SDP names tether: {s:?}");
        assert!(t.in_range(s.port), "{s:?}");
    }
    // Until a party has sent, its SDP (private) address is all tether
    // knows, and it is unreachable from `wan`: both open their NAT first.
    for i in 0..3 {
        ma.rtp.send_to(&rtp(0xA0, i), to_a.to()).unwrap();
        mb.rtp.send_to(&rtp(0xB0, i), to_b.to()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    drain(&ma.rtp);
    drain(&mb.rtp);
    relays_both_ways(
        " across both NATs",
        (&ma.rtp, &to_a),
        (&mb.rtp, &to_b),
        (0xA, 0xB),
    );
    let media = call_media(&t, &c.a.call_id);
    let legs = &media[0]["legs"];
    for (i, nat) in [(0, "10.0.1.1"), (1, "10.0.2.1")] {
        assert_eq!(
            legs[i]["signalled"]
                .as_str()
                .and_then(|s| s.split(':').next()),
            Some(netns::UA),
            "{media}"
        );
        assert_eq!(
            legs[i]["latched"]
                .as_str()
                .and_then(|s| s.split(':').next()),
            Some(nat),
            "party {i} latched at its NAT's public address: {media}"
        );
    }
}

/// Why the NAT test cannot run here, if it cannot.
fn cannot_netns() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    for (tool, args) in [
        ("ip", &["netns", "list"][..]),
        ("iptables", &["--version"][..]),
    ] {
        match Command::new(tool).args(args).output() {
            Ok(o) if o.status.success() => {}
            _ => return Some(format!("`{tool} {}` unavailable", args.join(" "))),
        }
    }
    None
}

#[test]
fn rejected_and_cancelled_calls_release_their_relay_ports() {
    let t = Tether::start(Opts::default());
    let lo = ip("127.0.0.1");
    let (mut a, mut b) = alice_and_bob(&t, lo, lo);
    let offer = audio(lo, 40_000);

    // Busy.
    let inv = a.invite("bob", Some(&offer));
    let req = b.expect_request("INVITE", Some(&inv.call_id));
    b.answer(&req, 180, None);
    let tag = b.id("t");
    b.respond(&req, 486, "Busy Here", Some(&tag), None);
    let r = a.final_response(&inv);
    assert_eq!(r.status(), Some(486), "{}", r.text());

    // Cancelled while ringing.
    let inv = a.invite("bob", Some(&offer));
    let req = b.expect_request("INVITE", Some(&inv.call_id));
    b.answer(&req, 180, None);
    let ruri = format!("sip:bob@{DOMAIN}");
    let (from, to, cid, via) = (
        inv.from.clone(),
        inv.to.clone(),
        inv.call_id.clone(),
        inv.via.clone(),
    );
    a.request_via("CANCEL", &ruri, &[], &from, &to, &cid, 1, None, &via);
    let cancel = b.expect_request("CANCEL", Some(&inv.call_id));
    b.respond(&cancel, 200, "OK", None, None);
    let tag = b.id("t");
    b.respond(&req, 487, "Request Terminated", Some(&tag), None);
    let r = a.final_response(&inv);
    assert_eq!(r.status(), Some(487), "{}", r.text());

    // Answered, then hung up by the callee.
    let mut c = call(&mut a, &mut b, "bob", &offer, &audio(lo, 40_002));
    b.in_dialog(&mut c.b, "BYE", None);
    a.answer_in_dialog(&c.a, "BYE", None);
    let r = b.dialog_response(&c.b);
    assert_eq!(r.status(), Some(200), "{}", r.text());

    assert_eq!(t.wait_metric("tether_media_calls_anchored_total", 3), 3);
    let mut left = (u64::MAX, u64::MAX);
    common::wait_for(Duration::from_secs(10), || {
        left = (
            t.metric("tether_media_sessions"),
            t.metric("tether_media_port_pairs_in_use"),
        );
        left == (0, 0)
    });
    assert_eq!(
        left,
        (0, 0),
        "sessions and port pairs left over{}",
        t.log_tail()
    );
}
