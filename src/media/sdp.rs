//! SDP (RFC 8866; offer/answer RFC 3264): the parsing and rewriting the
//! relay needs to anchor a call's media.
//!
//! Pure functions over a body: [`parse`] reads what the relay needs per
//! `m=` line (where the party wants media, its RTCP port, direction, clock
//! rate, ICE), [`rewrite`] writes our address and anchored ports into it.
//! Only the lines the relay must change are rebuilt; every other line leaves
//! byte-identical and in order, so codecs, crypto and the rest of the
//! negotiation pass through untouched.
//!
//! Strict where a wrong guess would misroute media (connection addresses
//! must be IP literals, unicast, one port per stream), lenient elsewhere
//! (unknown lines and attributes are kept, a malformed `a=rtpmap` only
//! loses its clock rate). Every failure is an [`SdpError`] whose reason fits
//! a SIP 488 reason phrase; no input panics.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Largest body accepted (bigger ones are not calls we want to anchor).
pub const MAX_BODY: usize = 64 * 1024;
/// Most `m=` lines accepted in one body.
pub const MAX_STREAMS: usize = 16;

/// A stream's direction attribute (RFC 3264 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The attribute name, as written after `a=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attr(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// One `m=` line and what applies to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// "audio", "video", ...
    pub media: Box<str>,
    /// 0 = rejected or removed stream.
    pub port: u16,
    /// "RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", ...
    pub proto: Box<str>,
    /// Effective connection address: media-level `c=`, else session-level.
    /// `None` only for port-0 streams.
    pub addr: Option<IpAddr>,
    /// `a=rtcp` (RFC 3605): port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    /// `a=rtcp-mux` (RFC 5761).
    pub rtcp_mux: bool,
    /// Media-level attribute, else session-level, else sendrecv.
    pub direction: Direction,
    /// The effective address is 0.0.0.0 (or ::): the RFC 2543 way of
    /// putting a call on hold. Reported apart from `direction`, which says
    /// only what the attributes say.
    pub hold_zero_addr: bool,
    /// Of the first payload format: its `a=rtpmap`, else RFC 3551's static
    /// table, else 8000.
    pub clock_rate: u32,
    /// Any ICE attribute at media or session level.
    pub ice: bool,
}

/// A parsed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The `o=` line's address when it is an IP literal.
    pub origin_addr: Option<IpAddr>,
    /// In `m=` order.
    pub streams: Vec<Stream>,
}

/// Why a body was refused; `reason` suits a SIP 488 reason phrase or
/// Warning text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdpError {
    pub reason: &'static str,
}

impl fmt::Display for SdpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for SdpError {}

const fn err(reason: &'static str) -> SdpError {
    SdpError { reason }
}

/// The relay's RTP/RTCP ports for one anchored stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub rtp_port: u16,
    pub rtcp_port: u16,
}

/// What [`rewrite`] changes.
#[derive(Clone, Copy, Debug)]
pub struct Rewrite<'a> {
    /// The relay's address, written into every `c=` line.
    pub addr: IpAddr,
    /// Per `m=` line, in order; `None` leaves that line's port as is (for
    /// port-0 streams, which stay port 0 even when given one). Its length
    /// must equal the number of `m=` lines.
    pub anchors: &'a [Option<Anchor>],
    /// Remove ICE attributes at session and media level: the relay is the
    /// media endpoint now, the party's candidates are unreachable to the
    /// other side.
    pub strip_ice: bool,
    /// Also write `addr` into the `o=` line (the rest of `o=` kept).
    pub replace_origin: bool,
    /// When `Some`, every stream with a non-zero port gets exactly this
    /// direction attribute (replacing its own, session-level ones dropped);
    /// `None` keeps them.
    pub direction: Option<Direction>,
}

/// ICE attributes (RFC 8839, RFC 8445) that `strip_ice` removes.
const ICE_ATTRS: &[&str] = &[
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "end-of-candidates",
    "remote-candidates",
    "ice-pacing",
];

fn is_ice(name: &str) -> bool {
    ICE_ATTRS.contains(&name)
}

/// Size and encoding checks shared by both entry points.
fn body_text(body: &[u8]) -> Result<&str, SdpError> {
    if body.len() > MAX_BODY {
        return Err(err("SDP body too large"));
    }
    let text = std::str::from_utf8(body).map_err(|_| err("SDP is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(err("empty body"));
    }
    Ok(text)
}

/// The body's lines, CRLF or bare LF ended, blank ones skipped (a trailing
/// line end leaves one; some stacks add more).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

/// `<type>=<value>`.
fn split_line(line: &str) -> Result<(u8, &str), SdpError> {
    match line.as_bytes() {
        // Both bytes are ASCII, so 2 is a char boundary.
        [t, b'=', ..] if t.is_ascii_alphabetic() => Ok((*t, &line[2..])),
        _ => Err(err("malformed SDP line")),
    }
}

/// Space-separated fields (runs of spaces tolerated).
fn fields(v: &str) -> impl Iterator<Item = &str> {
    v.split(' ').filter(|f| !f.is_empty())
}

/// `a=<name>[:<value>]`.
fn split_attr(v: &str) -> (&str, Option<&str>) {
    match v.split_once(':') {
        Some((name, value)) => (name.trim_end(), Some(value)),
        None => (v.trim_end(), None),
    }
}

/// `<nettype> <addrtype> <address>` as in `c=` and `a=rtcp`.
fn parse_addr(net: &str, addr_type: &str, addr: &str) -> Result<IpAddr, SdpError> {
    if net != "IN" {
        return Err(err("unsupported network type"));
    }
    if addr.contains('/') {
        return Err(err("multicast connection address not supported"));
    }
    let ip = match addr_type {
        "IP4" => addr.parse::<Ipv4Addr>().map(IpAddr::V4),
        "IP6" => addr.parse::<Ipv6Addr>().map(IpAddr::V6),
        _ => return Err(err("unsupported address type")),
    };
    let ip = ip.map_err(|_| {
        if addr.parse::<IpAddr>().is_ok() {
            err("connection address does not match its address type")
        } else {
            err("connection address is not an IP literal")
        }
    })?;
    if ip.is_multicast() {
        return Err(err("multicast connection address not supported"));
    }
    Ok(ip)
}

fn parse_c(v: &str) -> Result<IpAddr, SdpError> {
    let mut f = fields(v);
    match (f.next(), f.next(), f.next(), f.next()) {
        (Some(net), Some(at), Some(addr), None) => parse_addr(net, at, addr),
        _ => Err(err("malformed c= line")),
    }
}

/// A port made of digits only (`u16::from_str` would take a `+`).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
fn parse_rtcp(v: &str) -> Result<(u16, Option<IpAddr>), SdpError> {
    let mut f = fields(v);
    let port = f
        .next()
        .and_then(parse_port)
        .ok_or(err("malformed a=rtcp line"))?;
    match (f.next(), f.next(), f.next(), f.next()) {
        (None, ..) => Ok((port, None)),
        (Some(net), Some(at), Some(addr), None) => Ok((port, Some(parse_addr(net, at, addr)?))),
        _ => Err(err("malformed a=rtcp line")),
    }
}

/// What the relay reads from an `m=` line.
struct MLine<'a> {
    media: &'a str,
    port: u16,
    /// Byte range of the port digits within the value, for rewriting.
    port_at: (usize, usize),
    proto: &'a str,
    first_fmt: &'a str,
}

/// Byte offset of `part` within `whole`; `part` must be a subslice of it.
fn offset_in(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// `<media> <port>[/<count>] <proto> <fmt> ...`.
fn parse_m(v: &str) -> Result<MLine<'_>, SdpError> {
    let mut f = fields(v);
    let (Some(media), Some(port_field), Some(proto), Some(first_fmt)) =
        (f.next(), f.next(), f.next(), f.next())
    else {
        return Err(err("malformed m= line"));
    };
    let port_str = match port_field.split_once('/') {
        Some((port, count)) => {
            if count != "1" {
                return Err(err("port count not supported"));
            }
            port
        }
        None => port_field,
    };
    let port = parse_port(port_str).ok_or(err("m= port is not a number"))?;
    let start = offset_in(v, port_str);
    Ok(MLine {
        media,
        port,
        port_at: (start, start + port_str.len()),
        proto,
        first_fmt,
    })
}

/// The clock rate from `a=rtpmap:<pt> <encoding>/<rate>[/<params>]` if it
/// describes `pt`.
fn rtpmap_rate(value: &str, pt: &str) -> Option<u32> {
    let (map_pt, rest) = value.split_once(' ')?;
    if map_pt != pt {
        return None;
    }
    let rate = rest.trim().split('/').nth(1)?;
    rate.parse().ok().filter(|&r| r != 0)
}

/// RFC 3551 §6's static payload types.
fn static_rate(pt: &str) -> Option<u32> {
    Some(match pt.parse::<u8>().ok()? {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8000,
        6 => 16000,
        10 | 11 => 44100,
        16 => 11025,
        17 => 22050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90000,
        _ => return None,
    })
}

/// A stream being read; finished when the next `m=` or the end comes.
struct Pending<'a> {
    m: MLine<'a>,
    addr: Option<IpAddr>,
    rtcp: Option<(u16, Option<IpAddr>)>,
    rtcp_mux: bool,
    direction: Option<Direction>,
    rate: Option<u32>,
    ice: bool,
}

/// Session-level state a stream falls back on.
#[derive(Default)]
struct SessionLevel {
    addr: Option<IpAddr>,
    direction: Option<Direction>,
    ice: bool,
}

impl Pending<'_> {
    fn finish(self, s: &SessionLevel) -> Result<Stream, SdpError> {
        let addr = self.addr.or(s.addr);
        if self.m.port != 0 && addr.is_none() {
            return Err(err("no connection address for a stream"));
        }
        Ok(Stream {
            media: self.m.media.into(),
            port: self.m.port,
            proto: self.m.proto.into(),
            addr,
            rtcp: self.rtcp,
            rtcp_mux: self.rtcp_mux,
            direction: self
                .direction
                .or(s.direction)
                .unwrap_or(Direction::SendRecv),
            hold_zero_addr: addr.is_some_and(|a| a.is_unspecified()),
            clock_rate: self
                .rate
                .or_else(|| static_rate(self.m.first_fmt))
                .unwrap_or(8000),
            ice: self.ice || s.ice,
        })
    }
}

/// Reads what the relay needs from an SDP body.
pub fn parse(body: &[u8]) -> Result<Session, SdpError> {
    let text = body_text(body)?;
    let mut it = lines(text);
    if it.next() != Some("v=0") {
        return Err(err("missing or invalid v=0 line"));
    }
    let mut origin_addr = None;
    let mut sess = SessionLevel::default();
    let mut sess_c_seen = false;
    let mut cur: Option<Pending> = None;
    let mut streams = Vec::new();
    for line in it {
        let (t, v) = split_line(line)?;
        match t {
            b'o' if cur.is_none() => {
                let mut f = fields(v).skip(3);
                if let (Some(net), Some(at), Some(addr)) = (f.next(), f.next(), f.next()) {
                    // An FQDN here is legal and harmless: the origin only
                    // names the session.
                    origin_addr = parse_addr(net, at, addr).ok();
                }
            }
            b'm' => {
                if let Some(p) = cur.take() {
                    streams.push(p.finish(&sess)?);
                }
                if streams.len() >= MAX_STREAMS {
                    return Err(err("too many media streams"));
                }
                cur = Some(Pending {
                    m: parse_m(v)?,
                    addr: None,
                    rtcp: None,
                    rtcp_mux: false,
                    direction: None,
                    rate: None,
                    ice: false,
                });
            }
            b'c' => {
                let addr = parse_c(v)?;
                // Two at one level would make the stream's address a guess.
                let dup = match cur.as_mut() {
                    Some(p) => p.addr.replace(addr).is_some(),
                    None => std::mem::replace(&mut sess_c_seen, true),
                };
                if dup {
                    return Err(err("duplicate c= line"));
                }
                if cur.is_none() {
                    sess.addr = Some(addr);
                }
            }
            b'a' => {
                let (name, value) = split_attr(v);
                let dir = Direction::from_attr(name);
                let ice = is_ice(name);
                match cur.as_mut() {
                    None => {
                        sess.direction = dir.or(sess.direction);
                        sess.ice |= ice;
                    }
                    Some(p) => {
                        p.direction = dir.or(p.direction);
                        p.ice |= ice;
                        match (name, value) {
                            ("rtcp", Some(value)) => p.rtcp = Some(parse_rtcp(value)?),
                            ("rtcp", None) => return Err(err("malformed a=rtcp line")),
                            ("rtcp-mux", _) => p.rtcp_mux = true,
                            ("rtpmap", Some(value)) if p.rate.is_none() => {
                                p.rate = rtpmap_rate(value, p.m.first_fmt);
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(p) = cur.take() {
        streams.push(p.finish(&sess)?);
    }
    Ok(Session {
        origin_addr,
        streams,
    })
}

fn ip_type(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes `body` with our address and anchored ports into `out` (appended;
/// on error `out` is left as it was). Lines are written CRLF-ended; blank
/// lines are dropped.
pub fn rewrite(body: &[u8], rw: &Rewrite, out: &mut Vec<u8>) -> Result<(), SdpError> {
    let start = out.len();
    let r = rewrite_into(body, rw, out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn rewrite_into(body: &[u8], rw: &Rewrite, out: &mut Vec<u8>) -> Result<(), SdpError> {
    // Validate it all first, so a refused body writes nothing half-done.
    let session = parse(body)?;
    if rw.anchors.len() != session.streams.len() {
        return Err(err("anchor count does not match m= lines"));
    }
    let text = body_text(body)?;
    out.reserve(text.len() + 64);
    let (ty, addr) = (ip_type(rw.addr), rw.addr);
    // The current stream's index, anchor and whether it still owes the
    // direction attribute `rw.direction` asks for.
    let mut idx: Option<usize> = None;
    let mut anchor: Option<Anchor> = None;
    let mut owes_dir = false;
    for line in lines(text) {
        let (t, v) = split_line(line)?;
        match t {
            b'm' => {
                if owes_dir {
                    push_dir(out, rw.direction);
                }
                let i = idx.map_or(0, |i| i + 1);
                idx = Some(i);
                let m = parse_m(v)?;
                // A rejected stream stays rejected (RFC 3264 §6): an anchor
                // would give it a port and no address.
                anchor = rw.anchors.get(i).copied().flatten().filter(|_| m.port != 0);
                owes_dir = rw.direction.is_some() && m.port != 0;
                match anchor {
                    Some(a) => {
                        let (from, to) = m.port_at;
                        let (head, tail) = (v.get(..from), v.get(to..));
                        let (Some(head), Some(tail)) = (head, tail) else {
                            return Err(err("malformed m= line"));
                        };
                        let _ = write!(out, "m={head}{}{tail}\r\n", a.rtp_port);
                    }
                    None => push_line(out, line),
                }
            }
            b'c' => {
                let _ = write!(out, "c=IN {ty} {addr}\r\n");
            }
            b'o' if rw.replace_origin && idx.is_none() => {
                let mut f = fields(v);
                match (f.next(), f.next(), f.next(), f.nth(2), f.next()) {
                    (Some(user), Some(id), Some(ver), Some(_), None) => {
                        let _ = write!(out, "o={user} {id} {ver} IN {ty} {addr}\r\n");
                    }
                    _ => return Err(err("malformed o= line")),
                }
            }
            b'a' => {
                let (name, value) = split_attr(v);
                if rw.strip_ice && is_ice(name) {
                    continue;
                }
                if rw.direction.is_some() && Direction::from_attr(name).is_some() {
                    match idx {
                        // Each live stream gets its own; a session-level one
                        // would only restate or contradict it.
                        None => {}
                        Some(_) if owes_dir => {
                            push_dir(out, rw.direction);
                            owes_dir = false;
                        }
                        // A port-0 stream keeps its own; extra copies in a
                        // live stream go.
                        Some(i) if session.streams.get(i).is_some_and(|s| s.port == 0) => {
                            push_line(out, line);
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                match (name, value, anchor, idx) {
                    ("rtcp", Some(value), Some(a), Some(_)) => {
                        let _ = write!(out, "a=rtcp:{}", a.rtcp_port);
                        if parse_rtcp(value)?.1.is_some() {
                            let _ = write!(out, " IN {ty} {addr}");
                        }
                        out.extend_from_slice(b"\r\n");
                    }
                    _ => push_line(out, line),
                }
            }
            _ => push_line(out, line),
        }
    }
    if owes_dir {
        push_dir(out, rw.direction);
    }
    Ok(())
}

fn push_dir(out: &mut Vec<u8>, dir: Option<Direction>) {
    if let Some(d) = dir {
        let _ = write!(out, "a={}\r\n", d.as_str());
    }
}

#[cfg(test)]
mod tests;
