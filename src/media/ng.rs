//! rtpengine's `ng` control protocol: the message layer, both sides.
//!
//! A datagram is `<cookie> <bencoded dictionary>`; the reply repeats the
//! cookie (which is how the client matches replies and how the server spots
//! retransmissions). Requests name their `command`; replies carry `result`
//! (`ok`, `pong` or `error` with `error-reason`, optionally `warning`).
//!
//! Server side (tether answering Kamailio's or OpenSIPS's `rtpengine`
//! module): [`parse`] turns a datagram into a [`Request`] borrowing from it,
//! and the `write_*` functions append replies. Client side (the load
//! generator driving tether or a real rtpengine): the `encode_*` functions
//! append requests and [`parse_reply`] reads replies.
//!
//! Keys are matched the way rtpengine matches them, with a space and a
//! hyphen equivalent (`received from` = `received-from`); case is ignored
//! too, which only makes us accept more (`call-ID`). Keys we do not act on
//! are ignored, as rtpengine ignores keys it does not know. JSON dictionaries
//! (which rtpengine also accepts) are answered with an error: the modules
//! send bencode.
//!
//! Nothing here touches a socket or a clock: times in replies are UNIX
//! seconds the caller passes in.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use super::bencode::{self, Value};

/// Why a datagram could not be taken as a request (or a reply). `cookie` is
/// set when the datagram had one: the server then answers
/// `{"result":"error","error-reason":reason}` under it; without a cookie
/// there is nothing to answer (rtpengine drops such datagrams too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError<'a> {
    pub cookie: Option<&'a [u8]>,
    pub reason: &'static str,
}

impl std::fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason)
    }
}

impl std::error::Error for ParseError<'_> {}

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Ping,
    Offer(Params<'a>),
    Answer(Params<'a>),
    Delete(Params<'a>),
    Query(Params<'a>),
    /// Active call-ids, at most `limit` (rtpengine's default 32).
    List {
        limit: u32,
    },
    /// Any other command (recording, DTMF, media playback, ...): answered
    /// with an error by the server.
    Unknown(&'a [u8]),
}

/// IP4 or IP6, as the protocol spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    Ip4,
    Ip6,
}

impl AddressFamily {
    fn parse(s: &[u8]) -> Option<AddressFamily> {
        if s.eq_ignore_ascii_case(b"IP4") {
            Some(AddressFamily::Ip4)
        } else if s.eq_ignore_ascii_case(b"IP6") {
            Some(AddressFamily::Ip6)
        } else {
            None
        }
    }
}

/// The signalling message's source address (`received-from`), which
/// rtpengine uses in place of SDP addresses it does not trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedFrom {
    pub family: AddressFamily,
    pub addr: IpAddr,
}

/// The keys of an offer, answer, delete or query that tether acts on, all
/// borrowed from the datagram. Empty tags count as absent (Kamailio leaves
/// them out rather than sending them empty, but other clients may not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params<'a> {
    /// Never empty: [`parse`] rejects a request without one.
    pub call_id: &'a [u8],
    pub from_tag: Option<&'a [u8]>,
    pub to_tag: Option<&'a [u8]>,
    pub via_branch: Option<&'a [u8]>,
    pub sdp: Option<&'a [u8]>,
    pub received_from: Option<ReceivedFrom>,
    /// `address family`: the family wanted in the rewritten SDP.
    pub address_family: Option<AddressFamily>,
    /// `transport-protocol`, e.g. `RTP/AVP`.
    pub transport_protocol: Option<&'a [u8]>,
    /// The `flags` list (`trust-address`, `symmetric`, `asymmetric`,
    /// `strict-source`, `fast`, `fatal`, ...), as sent.
    pub flags: Vec<&'a [u8]>,
    /// The `replace` list: `origin`, `session-connection`, ...
    pub replace: Vec<&'a [u8]>,
    /// The `direction` list: two interface names.
    pub direction: Vec<&'a [u8]>,
    /// The `rtcp-mux` list: `offer`, `require`, `demux`, `accept`, `reject`.
    pub rtcp_mux: Vec<&'a [u8]>,
    /// `ICE`: a string (`remove`, `force`, ...) or a list of them.
    pub ice: Vec<&'a [u8]>,
    /// `rtpp-flags`: the module's flag string left for the daemon to parse
    /// (newer Kamailio). Kept raw; tether does not interpret it yet.
    pub rtpp_flags: Option<&'a [u8]>,
    /// `delete delay` in seconds (delete only).
    pub delete_delay: Option<i64>,
}

impl Params<'_> {
    /// Whether the `flags` list holds `name`, with rtpengine's spelling
    /// rules (`trust address` = `trust-address`).
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| key_is(f, name))
    }

    /// Whether the `replace` list holds `what` (`origin`, `session-connection`).
    pub fn replaces(&self, what: &str) -> bool {
        self.replace.iter().any(|f| key_is(f, what))
    }
}

/// The protocol's key comparison: a space equals a hyphen; ASCII case is
/// ignored.
fn key_is(key: &[u8], want: &str) -> bool {
    fn norm(b: u8) -> u8 {
        if b == b' ' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        }
    }
    key.len() == want.len()
        && key
            .iter()
            .zip(want.bytes())
            .all(|(&a, b)| norm(a) == norm(b))
}

/// `<cookie> <payload>`: the cookie is everything before the first space
/// and must not be empty.
fn split_cookie(datagram: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = datagram.iter().position(|&b| b == b' ')?;
    if sp == 0 {
        return None;
    }
    Some((&datagram[..sp], &datagram[sp + 1..]))
}

/// The cookie and the decoded dictionary of a datagram, either direction.
fn open(datagram: &[u8]) -> Result<(&[u8], Value<'_>), ParseError<'_>> {
    let Some((cookie, payload)) = split_cookie(datagram) else {
        return Err(ParseError {
            cookie: None,
            reason: "Invalid NG data (no cookie)",
        });
    };
    let err = |reason| ParseError {
        cookie: Some(cookie),
        reason,
    };
    match payload.first() {
        None => return Err(err("Invalid data (no payload)")),
        Some(b'{') => return Err(err("JSON is not supported, use bencode")),
        Some(b'd') => {}
        Some(_) => return Err(err("Invalid NG data format")),
    }
    match bencode::decode(payload) {
        Ok(v @ Value::Dict(_)) => Ok((cookie, v)),
        _ => Err(err("Could not decode bencode dictionary")),
    }
}

/// Parses one request datagram (server side).
pub fn parse(datagram: &[u8]) -> Result<(&[u8], Request<'_>), ParseError<'_>> {
    let (cookie, dict) = open(datagram)?;
    let err = |reason| ParseError {
        cookie: Some(cookie),
        reason,
    };
    // `open` only returns dictionaries.
    let pairs = dict.as_dict().unwrap_or(&[]);
    let command = pairs
        .iter()
        .find(|(k, _)| key_is(k, "command"))
        .map(|(_, v)| v);
    let Some(command) = command else {
        return Err(err("Dictionary contains no key \"command\""));
    };
    let Some(command) = command.as_bytes() else {
        return Err(err("Key \"command\" is not a string"));
    };
    let is = |name: &str| command.eq_ignore_ascii_case(name.as_bytes());
    let request = if is("ping") {
        Request::Ping
    } else if is("offer") {
        Request::Offer(params(pairs, Need::OfferAnswer).map_err(err)?)
    } else if is("answer") {
        Request::Answer(params(pairs, Need::Answer).map_err(err)?)
    } else if is("delete") {
        Request::Delete(params(pairs, Need::CallId).map_err(err)?)
    } else if is("query") {
        Request::Query(params(pairs, Need::CallId).map_err(err)?)
    } else if is("list") {
        let limit = match pairs
            .iter()
            .find(|(k, _)| key_is(k, "limit"))
            .map(|(_, v)| v)
        {
            None => 32,
            Some(Value::Int(n)) => *n,
            // rtpengine takes the limit as an integer or a decimal string.
            Some(Value::Bytes(s)) => std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| err("invalid limit"))?,
            Some(_) => return Err(err("invalid limit")),
        };
        if limit < 0 {
            return Err(err("invalid limit, must be >= 0"));
        }
        Request::List {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        }
    } else {
        Request::Unknown(command)
    };
    Ok((cookie, request))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    CallId,
    OfferAnswer,
    Answer,
}

/// A string, or a list of strings, as a list (rtpengine accepts a lone
/// string where it takes a list of flags).
fn string_list<'a>(v: &Value<'a>, out: &mut Vec<&'a [u8]>) -> Result<(), ()> {
    match v {
        Value::Bytes(b) => out.push(*b),
        Value::List(items) => {
            for item in items {
                out.push(item.as_bytes().ok_or(())?);
            }
        }
        _ => return Err(()),
    }
    Ok(())
}

fn non_empty(s: &[u8]) -> Option<&[u8]> {
    (!s.is_empty()).then_some(s)
}

fn params<'a>(pairs: &[(&'a [u8], Value<'a>)], need: Need) -> Result<Params<'a>, &'static str> {
    let mut p = Params::default();
    for (k, v) in pairs {
        let k: &[u8] = k;
        // A string-valued key; a wrong type is the client's bug, said plainly.
        let string = |reason| v.as_bytes().ok_or(reason);
        if key_is(k, "call-id") {
            p.call_id = string("call-id is not a string")?;
        } else if key_is(k, "from-tag") {
            p.from_tag = non_empty(string("from-tag is not a string")?);
        } else if key_is(k, "to-tag") {
            p.to_tag = non_empty(string("to-tag is not a string")?);
        } else if key_is(k, "via-branch") {
            p.via_branch = non_empty(string("via-branch is not a string")?);
        } else if key_is(k, "sdp") {
            p.sdp = Some(string("sdp is not a string")?);
        } else if key_is(k, "received-from") {
            p.received_from = Some(received_from(v).ok_or("invalid received-from")?);
        } else if key_is(k, "address-family") {
            let s = string("invalid address family")?;
            p.address_family = Some(AddressFamily::parse(s).ok_or("invalid address family")?);
        } else if key_is(k, "transport-protocol") {
            p.transport_protocol = Some(string("transport-protocol is not a string")?);
        } else if key_is(k, "flags") {
            string_list(v, &mut p.flags).map_err(|()| "invalid flags list")?;
        } else if key_is(k, "replace") {
            string_list(v, &mut p.replace).map_err(|()| "invalid replace list")?;
        } else if key_is(k, "direction") {
            string_list(v, &mut p.direction).map_err(|()| "invalid direction list")?;
        } else if key_is(k, "rtcp-mux") {
            string_list(v, &mut p.rtcp_mux).map_err(|()| "invalid rtcp-mux list")?;
        } else if key_is(k, "ICE") {
            string_list(v, &mut p.ice).map_err(|()| "invalid ICE value")?;
        } else if key_is(k, "rtpp-flags") || k == b"rtpp_flags" {
            p.rtpp_flags = Some(string("rtpp-flags is not a string")?);
        } else if key_is(k, "delete-delay") {
            p.delete_delay = Some(match v {
                Value::Int(n) => *n,
                Value::Bytes(s) => std::str::from_utf8(s)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or("invalid delete delay")?,
                _ => return Err("invalid delete delay"),
            });
        }
    }
    if p.call_id.is_empty() {
        return Err("No call-id in message");
    }
    if matches!(need, Need::OfferAnswer | Need::Answer) {
        if p.sdp.is_none() {
            return Err("No SDP body in message");
        }
        if p.from_tag.is_none() {
            return Err("No from-tag in message");
        }
    }
    if need == Need::Answer && p.to_tag.is_none() {
        return Err("No to-tag in message");
    }
    Ok(p)
}

/// `["IP4", "192.0.2.1"]`; the family must match the address.
fn received_from(v: &Value) -> Option<ReceivedFrom> {
    let [family, addr] = v.as_list()? else {
        return None;
    };
    let family = AddressFamily::parse(family.as_bytes()?)?;
    let addr: IpAddr = std::str::from_utf8(addr.as_bytes()?).ok()?.parse().ok()?;
    match (family, addr) {
        (AddressFamily::Ip4, IpAddr::V4(_)) | (AddressFamily::Ip6, IpAddr::V6(_)) => {
            Some(ReceivedFrom { family, addr })
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Server replies.

/// Starts a reply: the cookie, a space, an open dictionary.
fn reply_begin(cookie: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(cookie);
    out.push(b' ');
    bencode::dict_begin(out);
}

/// `{"result":"pong"}`.
pub fn write_pong(cookie: &[u8], out: &mut Vec<u8>) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"pong");
    bencode::end(out);
}

/// `{"result":"ok"}` with the rewritten SDP (offer, answer) and a warning
/// if there is one.
pub fn write_ok(cookie: &[u8], sdp: Option<&[u8]>, warning: Option<&str>, out: &mut Vec<u8>) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"ok");
    if let Some(w) = warning {
        bencode::put_pair_bytes(out, b"warning", w.as_bytes());
    }
    if let Some(sdp) = sdp {
        bencode::put_pair_bytes(out, b"sdp", sdp);
    }
    bencode::end(out);
}

/// `{"result":"error","error-reason":reason}`; the protocol wants no other
/// keys in an error.
pub fn write_error(cookie: &[u8], reason: &str, out: &mut Vec<u8>) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"error");
    bencode::put_pair_bytes(out, b"error-reason", reason.as_bytes());
    bencode::end(out);
}

/// `{"result":"ok","calls":[call-id, ...]}`.
pub fn write_list<'c>(
    cookie: &[u8],
    call_ids: impl IntoIterator<Item = &'c [u8]>,
    out: &mut Vec<u8>,
) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"ok");
    bencode::put_bytes(out, b"calls");
    bencode::list_begin(out);
    for id in call_ids {
        bencode::put_bytes(out, id);
    }
    bencode::end(out);
    bencode::end(out);
}

/// Counters of one packet stream (one direction of RTP or RTCP on one leg's
/// port), as the relay keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Packets and bytes received on this stream's port.
    pub packets: u64,
    pub bytes: u64,
    /// Packets dropped (bad source, unparseable, no destination yet).
    pub errors: u64,
    /// Packets lost per RTP sequence numbers (cumulative).
    pub lost: u64,
    /// Interarrival jitter in milliseconds (RFC 3550 §6.4.1).
    pub jitter_ms: u32,
    /// When the last packet arrived, UNIX seconds; 0 if none yet.
    pub last_packet: u64,
}

/// One packet stream of a media section: the local port, where packets go
/// (the latched endpoint) and what the SDP said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub local_port: u16,
    /// The latched (or signalled) peer address packets are sent to.
    pub endpoint: Option<SocketAddr>,
    /// The address the party's SDP advertised.
    pub advertised: Option<SocketAddr>,
    /// The first SSRC seen on this stream.
    pub ssrc: Option<u32>,
    pub stats: StreamStats,
}

/// One SDP media section of one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaInfo<'a> {
    /// 1-based, in SDP order.
    pub index: u32,
    /// `audio`, `video`, ...
    pub media_type: &'a [u8],
    /// `RTP/AVP`, ...
    pub protocol: &'a [u8],
    pub rtp: StreamInfo,
    /// Absent with rtcp-mux (RTCP then counts in `rtp`).
    pub rtcp: Option<StreamInfo>,
}

/// One party of the call, known by its SIP tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegInfo<'a> {
    /// May be empty for the side that has not signalled its tag yet.
    pub tag: &'a [u8],
    /// UNIX seconds.
    pub created: u64,
    /// The other party's tag, once the answer is in.
    pub in_dialogue_with: Option<&'a [u8]>,
    pub medias: &'a [MediaInfo<'a>],
}

/// What `query` (and `delete`, unless `fast`) reports about a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryInfo<'a> {
    /// UNIX seconds.
    pub created: u64,
    /// The last offer/answer/..., UNIX seconds.
    pub last_signal: u64,
    pub legs: &'a [LegInfo<'a>],
}

/// rtpengine's query reply: `created`, `last signal`, `SSRC`, `tags` (per
/// tag: `tag`, `created`, `in dialogue with`, `medias` → `streams` with
/// `local port`, `endpoint`, `advertised endpoint`, `last packet`, `SSRC`,
/// `flags`, `stats` {`packets`, `bytes`, `errors`}) and `totals` {`RTP`,
/// `RTCP`}. These are the keys Kamailio's `$rtpstat` and OpenSIPS's
/// `$rtpstat`/`$rtpquery` read (`totals`, `tags` → `medias` → `streams` →
/// `SSRC`, `SSRC` → ...) and rtpengine-ctl prints. The per-SSRC entry has
/// rtpengine's `bytes`, `packets` and `cumulative loss`, plus `jitter` (ms),
/// which is ours: rtpengine reports jitter only inside MOS blocks, which
/// tether does not compute.
pub fn write_query(cookie: &[u8], info: &QueryInfo, out: &mut Vec<u8>) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"ok");
    write_stats_body(info, out);
    bencode::end(out);
}

/// `delete`'s reply: `ok`, a warning if the call was not found (rtpengine
/// answers ok with a warning unless the client asked for `fatal`), and the
/// call's statistics unless the client asked for `fast` (pass `None`).
pub fn write_delete(
    cookie: &[u8],
    stats: Option<&QueryInfo>,
    warning: Option<&str>,
    out: &mut Vec<u8>,
) {
    reply_begin(cookie, out);
    bencode::put_pair_bytes(out, b"result", b"ok");
    if let Some(w) = warning {
        bencode::put_pair_bytes(out, b"warning", w.as_bytes());
    }
    if let Some(info) = stats {
        write_stats_body(info, out);
    }
    bencode::end(out);
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn put_stats(key: &[u8], packets: u64, bytes: u64, errors: u64, out: &mut Vec<u8>) {
    bencode::put_bytes(out, key);
    bencode::dict_begin(out);
    bencode::put_pair_int(out, b"packets", clamp(packets));
    bencode::put_pair_int(out, b"bytes", clamp(bytes));
    bencode::put_pair_int(out, b"errors", clamp(errors));
    bencode::end(out);
}

/// `{"family":"IPv4","address":"192.0.2.1","port":4000}`, empty when not
/// known (as rtpengine writes it).
fn put_endpoint(key: &[u8], ep: Option<SocketAddr>, out: &mut Vec<u8>) {
    bencode::put_bytes(out, key);
    bencode::dict_begin(out);
    if let Some(ep) = ep {
        let family: &[u8] = if ep.is_ipv4() { b"IPv4" } else { b"IPv6" };
        bencode::put_pair_bytes(out, b"family", family);
        // An IPv6 address prints in at most 45 bytes; no allocation.
        let mut buf = [0u8; 64];
        let mut cur = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(cur, "{}", ep.ip());
        let n = usize::try_from(cur.position()).unwrap_or(0);
        bencode::put_pair_bytes(out, b"address", buf.get(..n).unwrap_or_default());
        bencode::put_pair_int(out, b"port", i64::from(ep.port()));
    }
    bencode::end(out);
}

fn put_stream(s: &StreamInfo, rtcp: bool, out: &mut Vec<u8>) {
    bencode::dict_begin(out);
    bencode::put_pair_int(out, b"local port", i64::from(s.local_port));
    put_endpoint(b"endpoint", s.endpoint, out);
    put_endpoint(b"advertised endpoint", s.advertised, out);
    bencode::put_pair_int(out, b"last packet", clamp(s.stats.last_packet));
    if let Some(ssrc) = s.ssrc {
        bencode::put_pair_int(out, b"SSRC", i64::from(ssrc));
    }
    bencode::put_bytes(out, b"flags");
    bencode::list_begin(out);
    bencode::put_bytes(out, if rtcp { b"RTCP" } else { b"RTP" });
    if s.endpoint.is_some() {
        bencode::put_bytes(out, b"filled");
    }
    bencode::end(out);
    put_stats(
        b"stats",
        s.stats.packets,
        s.stats.bytes,
        s.stats.errors,
        out,
    );
    bencode::end(out);
}

fn write_stats_body(info: &QueryInfo, out: &mut Vec<u8>) {
    bencode::put_pair_int(out, b"created", clamp(info.created));
    bencode::put_pair_int(out, b"last signal", clamp(info.last_signal));

    let medias = || info.legs.iter().flat_map(|l| l.medias.iter());

    bencode::put_bytes(out, b"SSRC");
    bencode::dict_begin(out);
    for m in medias() {
        let Some(ssrc) = m.rtp.ssrc else { continue };
        let mut key = [0u8; 10];
        let mut cur = std::io::Cursor::new(&mut key[..]);
        let _ = write!(cur, "{ssrc}");
        let n = usize::try_from(cur.position()).unwrap_or(0);
        bencode::put_bytes(out, key.get(..n).unwrap_or_default());
        let s = &m.rtp.stats;
        bencode::dict_begin(out);
        bencode::put_pair_int(out, b"bytes", clamp(s.bytes));
        bencode::put_pair_int(out, b"packets", clamp(s.packets));
        bencode::put_pair_int(out, b"cumulative loss", clamp(s.lost));
        bencode::put_pair_int(out, b"jitter", i64::from(s.jitter_ms));
        bencode::end(out);
    }
    bencode::end(out);

    bencode::put_bytes(out, b"tags");
    bencode::dict_begin(out);
    for leg in info.legs {
        bencode::put_bytes(out, leg.tag);
        bencode::dict_begin(out);
        bencode::put_pair_bytes(out, b"tag", leg.tag);
        bencode::put_pair_int(out, b"created", clamp(leg.created));
        if let Some(peer) = leg.in_dialogue_with {
            bencode::put_pair_bytes(out, b"in dialogue with", peer);
        }
        bencode::put_bytes(out, b"medias");
        bencode::list_begin(out);
        for m in leg.medias {
            bencode::dict_begin(out);
            bencode::put_pair_int(out, b"index", i64::from(m.index));
            bencode::put_pair_bytes(out, b"type", m.media_type);
            bencode::put_pair_bytes(out, b"protocol", m.protocol);
            bencode::put_bytes(out, b"streams");
            bencode::list_begin(out);
            put_stream(&m.rtp, false, out);
            if let Some(rtcp) = &m.rtcp {
                put_stream(rtcp, true, out);
            }
            bencode::end(out);
            bencode::put_bytes(out, b"flags");
            bencode::list_begin(out);
            bencode::put_bytes(out, b"initialized");
            if m.rtcp.is_none() {
                bencode::put_bytes(out, b"rtcp-mux");
            }
            bencode::end(out);
            bencode::end(out);
        }
        bencode::end(out);
        bencode::end(out);
    }
    bencode::end(out);

    let (mut rtp, mut rtcp) = ([0u64; 3], [0u64; 3]);
    for m in medias() {
        let add = |t: &mut [u64; 3], s: &StreamStats| {
            t[0] = t[0].saturating_add(s.packets);
            t[1] = t[1].saturating_add(s.bytes);
            t[2] = t[2].saturating_add(s.errors);
        };
        add(&mut rtp, &m.rtp.stats);
        if let Some(r) = &m.rtcp {
            add(&mut rtcp, &r.stats);
        }
    }
    bencode::put_bytes(out, b"totals");
    bencode::dict_begin(out);
    put_stats(b"RTP", rtp[0], rtp[1], rtp[2], out);
    put_stats(b"RTCP", rtcp[0], rtcp[1], rtcp[2], out);
    bencode::end(out);
}

// ---------------------------------------------------------------------------
// Client side.

/// How one Kamailio-style flag word is sent.
enum FlagWord<'f> {
    /// `key=value` → a dictionary entry (`ICE=remove` → `"ICE": "remove"`).
    Pair(&'f str, &'f str),
    /// `replace-origin` → `"replace": ["origin"]`.
    Replace(&'f str),
    /// `rtcp-mux-demux` → `"rtcp-mux": ["demux"]`.
    RtcpMux(&'f str),
    /// `RTP/AVP` → `"transport-protocol": "RTP/AVP"`.
    Transport(&'f str),
    /// Anything else → the `flags` list (`trust-address`).
    Plain(&'f str),
}

const TRANSPORTS: [&str; 6] = [
    "RTP/AVP",
    "RTP/SAVP",
    "RTP/AVPF",
    "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
];

fn flag_word(flag: &str) -> FlagWord<'_> {
    if let Some((k, v)) = flag.split_once('=') {
        FlagWord::Pair(k, v)
    } else if let Some(what) = flag.strip_prefix("replace-") {
        FlagWord::Replace(what)
    } else if let Some(what) = flag.strip_prefix("rtcp-mux-") {
        FlagWord::RtcpMux(what)
    } else if TRANSPORTS.contains(&flag) {
        FlagWord::Transport(flag)
    } else {
        FlagWord::Plain(flag)
    }
}

/// Writes `flags` the way Kamailio's module turns its flag string into
/// keys, so the load generator can pass the same words a Kamailio script
/// would (`trust-address replace-origin replace-session-connection
/// ICE=remove RTP/AVP`): see [`FlagWord`]. `address-family=IP4` is sent
/// under rtpengine's spelling `address family`; `delete-delay=N` as an
/// integer. Empty words are skipped.
fn put_flags(flags: &[&str], out: &mut Vec<u8>) {
    let words = || flags.iter().filter(|f| !f.is_empty()).map(|f| flag_word(f));
    for w in words() {
        match w {
            FlagWord::Pair("address-family", v) => {
                bencode::put_pair_bytes(out, b"address family", v.as_bytes())
            }
            FlagWord::Pair("delete-delay", v) => match v.parse::<i64>() {
                Ok(n) => bencode::put_pair_int(out, b"delete-delay", n),
                Err(_) => bencode::put_pair_bytes(out, b"delete-delay", v.as_bytes()),
            },
            FlagWord::Pair(k, v) => bencode::put_pair_bytes(out, k.as_bytes(), v.as_bytes()),
            FlagWord::Transport(t) => {
                bencode::put_pair_bytes(out, b"transport-protocol", t.as_bytes())
            }
            _ => {}
        }
    }
    put_list(
        b"flags",
        || {
            words().filter_map(|w| match w {
                FlagWord::Plain(f) => Some(f),
                _ => None,
            })
        },
        out,
    );
    put_list(
        b"replace",
        || {
            words().filter_map(|w| match w {
                FlagWord::Replace(f) => Some(f),
                _ => None,
            })
        },
        out,
    );
    put_list(
        b"rtcp-mux",
        || {
            words().filter_map(|w| match w {
                FlagWord::RtcpMux(f) => Some(f),
                _ => None,
            })
        },
        out,
    );
}

/// A list of strings under `key`, left out when empty (as Kamailio does).
fn put_list<'f, I: Iterator<Item = &'f str>>(key: &[u8], items: impl Fn() -> I, out: &mut Vec<u8>) {
    if items().next().is_none() {
        return;
    }
    bencode::put_bytes(out, key);
    bencode::list_begin(out);
    for item in items() {
        bencode::put_bytes(out, item.as_bytes());
    }
    bencode::end(out);
}

fn request_begin(cookie: &[u8], command: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(cookie);
    out.push(b' ');
    bencode::dict_begin(out);
    bencode::put_pair_bytes(out, b"command", command);
}

/// `ping`. The cookie must not contain a space (the client picks it).
pub fn encode_ping(cookie: &[u8], out: &mut Vec<u8>) {
    request_begin(cookie, b"ping", out);
    bencode::end(out);
}

/// `offer` of the caller's SDP; `flags` are Kamailio-style words (see
/// [`put_flags`]' rules: `trust-address`, `replace-origin`, `ICE=remove`,
/// `RTP/AVP`, ...).
pub fn encode_offer(
    cookie: &[u8],
    call_id: &[u8],
    from_tag: &[u8],
    sdp: &[u8],
    flags: &[&str],
    out: &mut Vec<u8>,
) {
    request_begin(cookie, b"offer", out);
    bencode::put_pair_bytes(out, b"call-id", call_id);
    bencode::put_pair_bytes(out, b"from-tag", from_tag);
    put_flags(flags, out);
    bencode::put_pair_bytes(out, b"sdp", sdp);
    bencode::end(out);
}

/// `answer` of the callee's SDP. `from_tag` and `to_tag` are the dialog's
/// (the caller's From tag, the callee's To tag), as Kamailio sends them for
/// a reply.
pub fn encode_answer(
    cookie: &[u8],
    call_id: &[u8],
    from_tag: &[u8],
    to_tag: &[u8],
    sdp: &[u8],
    flags: &[&str],
    out: &mut Vec<u8>,
) {
    request_begin(cookie, b"answer", out);
    bencode::put_pair_bytes(out, b"call-id", call_id);
    bencode::put_pair_bytes(out, b"from-tag", from_tag);
    bencode::put_pair_bytes(out, b"to-tag", to_tag);
    put_flags(flags, out);
    bencode::put_pair_bytes(out, b"sdp", sdp);
    bencode::end(out);
}

/// `delete` of a call (or of one branch with `to_tag`); `flags` as for
/// offers (`fast` skips the statistics in the reply).
pub fn encode_delete(
    cookie: &[u8],
    call_id: &[u8],
    from_tag: &[u8],
    to_tag: Option<&[u8]>,
    flags: &[&str],
    out: &mut Vec<u8>,
) {
    request_begin(cookie, b"delete", out);
    bencode::put_pair_bytes(out, b"call-id", call_id);
    bencode::put_pair_bytes(out, b"from-tag", from_tag);
    if let Some(t) = to_tag {
        bencode::put_pair_bytes(out, b"to-tag", t);
    }
    put_flags(flags, out);
    bencode::end(out);
}

/// `query` of a call's statistics.
pub fn encode_query(cookie: &[u8], call_id: &[u8], from_tag: Option<&[u8]>, out: &mut Vec<u8>) {
    request_begin(cookie, b"query", out);
    bencode::put_pair_bytes(out, b"call-id", call_id);
    if let Some(t) = from_tag {
        bencode::put_pair_bytes(out, b"from-tag", t);
    }
    bencode::end(out);
}

/// `list` of at most `limit` active call-ids.
pub fn encode_list(cookie: &[u8], limit: u32, out: &mut Vec<u8>) {
    request_begin(cookie, b"list", out);
    bencode::put_pair_int(out, b"limit", i64::from(limit));
    bencode::end(out);
}

/// A reply as the client sees it: the common keys pulled out, the whole
/// dictionary kept for the rest (`calls`, `totals`, `tags`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub cookie: &'a [u8],
    /// `ok`, `pong`, `error` (rtpengine also knows `load limit`).
    pub result: &'a [u8],
    pub sdp: Option<&'a [u8]>,
    pub error_reason: Option<&'a [u8]>,
    pub warning: Option<&'a [u8]>,
    pub dict: Value<'a>,
}

impl Reply<'_> {
    /// `ok` or `pong`.
    pub fn is_ok(&self) -> bool {
        self.result == b"ok" || self.result == b"pong"
    }
}

/// Parses a reply datagram (client side).
pub fn parse_reply(datagram: &[u8]) -> Result<Reply<'_>, ParseError<'_>> {
    let (cookie, dict) = open(datagram)?;
    let string = |key: &[u8]| dict.get(key).and_then(Value::as_bytes);
    let Some(result) = string(b"result") else {
        return Err(ParseError {
            cookie: Some(cookie),
            reason: "reply has no result",
        });
    };
    Ok(Reply {
        cookie,
        result,
        sdp: string(b"sdp"),
        error_reason: string(b"error-reason"),
        warning: string(b"warning"),
        dict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<len>:<s>`, written by hand so the tests do not trust our encoder.
    fn s(x: &str) -> String {
        format!("{}:{}", x.len(), x)
    }

    const SDP: &str = "v=0\r\no=- 1545997027 1 IN IP4 192.168.1.10\r\ns=-\r\n\
        c=IN IP4 192.168.1.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 8 101\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    /// An offer as Kamailio's module builds it for
    /// `rtpengine_offer("trust-address replace-origin replace-session-connection ICE=remove RTP/AVP via-branch=1")`,
    /// in its key order.
    fn kamailio_offer() -> String {
        format!(
            "5323_1542_7 d{}{}{}{}{}l{}e{}l{}{}e{}{}{}{}{}{}{}l{}{}e{}{}{}{}e",
            s("sdp"),
            s(SDP),
            s("ICE"),
            s("remove"),
            s("flags"),
            s("trust-address"),
            s("replace"),
            s("origin"),
            s("session-connection"),
            s("transport-protocol"),
            s("RTP/AVP"),
            s("call-id"),
            s("a84b4c76e66710@pc33.example.com"),
            s("via-branch"),
            s("z9hG4bK776asdhds"),
            s("received-from"),
            s("IP4"),
            s("192.168.1.10"),
            s("from-tag"),
            s("1928301774"),
            s("command"),
            s("offer"),
        )
    }

    #[test]
    fn parses_a_kamailio_offer() {
        let d = kamailio_offer();
        let (cookie, req) = parse(d.as_bytes()).unwrap();
        assert_eq!(cookie, b"5323_1542_7");
        let Request::Offer(p) = req else {
            panic!("not an offer: {req:?}")
        };
        assert_eq!(p.call_id, b"a84b4c76e66710@pc33.example.com");
        assert_eq!(p.from_tag, Some(&b"1928301774"[..]));
        assert_eq!(p.to_tag, None);
        assert_eq!(p.via_branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(p.sdp, Some(SDP.as_bytes()));
        assert_eq!(
            p.received_from,
            Some(ReceivedFrom {
                family: AddressFamily::Ip4,
                addr: "192.168.1.10".parse().unwrap()
            })
        );
        assert_eq!(p.transport_protocol, Some(&b"RTP/AVP"[..]));
        assert_eq!(p.ice, vec![&b"remove"[..]]);
        assert!(p.has_flag("trust-address"));
        assert!(p.has_flag("trust address"));
        assert!(!p.has_flag("symmetric"));
        assert!(p.replaces("origin") && p.replaces("session connection"));
        assert!(p.rtcp_mux.is_empty() && p.direction.is_empty());
    }

    #[test]
    fn parses_answer_delete_query_list_ping() {
        let answer = format!(
            "c2 d{}{}{}{}{}{}{}{}{}{}{}l{}{}e{}{}e",
            s("sdp"),
            s(SDP),
            s("call-id"),
            s("cid"),
            s("from-tag"),
            s("ft"),
            s("to-tag"),
            s("tt"),
            s("rtcp-mux"),
            "l5:demux6:accepte",
            s("direction"),
            s("priv"),
            s("pub"),
            s("command"),
            s("answer"),
        );
        let (_, req) = parse(answer.as_bytes()).unwrap();
        let Request::Answer(p) = req else { panic!() };
        assert_eq!(p.to_tag, Some(&b"tt"[..]));
        assert_eq!(p.rtcp_mux, vec![&b"demux"[..], b"accept"]);
        assert_eq!(p.direction, vec![&b"priv"[..], b"pub"]);

        let del =
            "c3 d7:command6:delete7:call-id3:cid8:from-tag2:ft12:delete delayi0e5:flagsl4:fastee";
        let (_, req) = parse(del.as_bytes()).unwrap();
        let Request::Delete(p) = req else { panic!() };
        assert_eq!(p.delete_delay, Some(0));
        assert!(p.has_flag("fast"));

        // Space spelling of keys, and a query needing only a call-id.
        let q = "c4 d7:command5:query7:call id3:cide";
        let (_, req) = parse(q.as_bytes()).unwrap();
        assert!(matches!(
            req,
            Request::Query(Params {
                call_id: b"cid",
                ..
            })
        ));

        assert_eq!(
            parse(b"c5 d7:command4:pinge").unwrap(),
            (&b"c5"[..], Request::Ping)
        );
        assert_eq!(
            parse(b"c6 d7:command4:liste").unwrap().1,
            Request::List { limit: 32 }
        );
        assert_eq!(
            parse(b"c6 d7:command4:list5:limiti5ee").unwrap().1,
            Request::List { limit: 5 }
        );
        assert_eq!(
            parse(b"c6 d7:command4:list5:limit3:100e").unwrap().1,
            Request::List { limit: 100 }
        );
        assert_eq!(
            parse(b"c6 d7:command4:list5:limiti-1ee")
                .unwrap_err()
                .reason,
            "invalid limit, must be >= 0"
        );
    }

    #[test]
    fn unknown_command_is_not_an_error() {
        let (cookie, req) = parse(b"k d7:command15:start recordinge").unwrap();
        assert_eq!(cookie, b"k");
        assert_eq!(req, Request::Unknown(b"start recording"));
    }

    #[test]
    fn errors_keep_the_cookie_when_there_is_one() {
        fn reason(d: &[u8]) -> ParseError<'_> {
            parse(d).map(|_| ()).unwrap_err()
        }
        let e = reason(b"ck d7:command5:offer8:from-tag1:a3:sdp3:v=0e");
        assert_eq!(
            e,
            ParseError {
                cookie: Some(b"ck"),
                reason: "No call-id in message"
            }
        );
        let e = reason(b"ck d7:command5:offer7:call-id1:c8:from-tag1:ae");
        assert_eq!(e.reason, "No SDP body in message");
        let e = reason(b"ck d7:command5:offer7:call-id1:c3:sdp3:v=0e");
        assert_eq!(e.reason, "No from-tag in message");
        let e = reason(b"ck d7:command6:answer7:call-id1:c8:from-tag1:a3:sdp3:v=0e");
        assert_eq!(e.reason, "No to-tag in message");
        let e = reason(b"ck d7:command6:delete8:from-tag1:ae");
        assert_eq!(e.reason, "No call-id in message");
        assert_eq!(
            reason(b"ck d3:foo3:bare").reason,
            "Dictionary contains no key \"command\""
        );
        assert_eq!(
            reason(b"ck d7:commandi1ee").reason,
            "Key \"command\" is not a string"
        );
        assert_eq!(reason(b"ck li1ee").reason, "Invalid NG data format");
        assert_eq!(
            reason(b"ck d7:command").reason,
            "Could not decode bencode dictionary"
        );
        assert_eq!(
            reason(b"ck {\"command\":\"ping\"}").reason,
            "JSON is not supported, use bencode"
        );
        assert_eq!(reason(b"ck ").reason, "Invalid data (no payload)");
        assert_eq!(reason(b"ck ").cookie, Some(&b"ck"[..]));
        // Wrong types and bad addresses of keys we act on.
        let e = reason(b"ck d7:command5:query7:call-id1:c13:received-froml3:IP49:not-an-ipee");
        assert_eq!(e.reason, "invalid received-from");
        let e = reason(b"ck d7:command5:query7:call-id1:c13:received-froml3:IP43:::1ee");
        assert_eq!(e.reason, "invalid received-from");
        let e = reason(b"ck d7:command5:query7:call-id1:c5:flagsli1eee");
        assert_eq!(e.reason, "invalid flags list");
        let e = reason(b"ck d7:command5:query7:call-idi1ee");
        assert_eq!(e.reason, "call-id is not a string");
        // No cookie: nothing to answer.
        assert_eq!(reason(b"d7:command4:pinge").cookie, None);
        assert_eq!(reason(b" d7:command4:pinge").cookie, None);
        assert_eq!(reason(b"").cookie, None);
    }

    #[test]
    fn ipv6_received_from_and_address_family() {
        let d = "c d7:command5:query7:call-id1:c13:received-froml3:IP611:2001:db8::1e14:address family3:IP6e";
        let (_, Request::Query(p)) = parse(d.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            p.received_from.unwrap().addr,
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(p.address_family, Some(AddressFamily::Ip6));
    }

    #[test]
    fn server_replies() {
        let mut out = Vec::new();
        write_pong(b"c1", &mut out);
        assert_eq!(out, b"c1 d6:result4:ponge");
        out.clear();
        write_ok(b"c2", Some(b"v=0\r\n"), None, &mut out);
        assert_eq!(out, b"c2 d6:result2:ok3:sdp5:v=0\r\ne");
        out.clear();
        write_error(b"c3", "Unknown call-id", &mut out);
        assert_eq!(
            out,
            b"c3 d6:result5:error12:error-reason15:Unknown call-ide"
        );
        out.clear();
        write_list(b"c4", [&b"a"[..], b"bc"], &mut out);
        assert_eq!(out, b"c4 d6:result2:ok5:callsl1:a2:bcee");
        out.clear();
        write_delete(
            b"c5",
            None,
            Some("Call-ID not found or tags didn't match"),
            &mut out,
        );
        let r = parse_reply(&out).unwrap();
        assert!(r.is_ok());
        assert_eq!(
            r.warning,
            Some(&b"Call-ID not found or tags didn't match"[..])
        );
    }

    fn sample_stream(port: u16, packets: u64, ssrc: Option<u32>) -> StreamInfo {
        StreamInfo {
            local_port: port,
            endpoint: Some("192.0.2.7:4000".parse().unwrap()),
            advertised: Some("[2001:db8::7]:4000".parse().unwrap()),
            ssrc,
            stats: StreamStats {
                packets,
                bytes: packets * 172,
                errors: 1,
                lost: 3,
                jitter_ms: 4,
                last_packet: 1_700_000_100,
            },
        }
    }

    #[test]
    fn query_reply_has_rtpengines_shape() {
        let a_medias = [MediaInfo {
            index: 1,
            media_type: b"audio",
            protocol: b"RTP/AVP",
            rtp: sample_stream(41000, 100, Some(0xdead_beef)),
            rtcp: Some(sample_stream(41001, 2, None)),
        }];
        let b_medias = [MediaInfo {
            index: 1,
            media_type: b"audio",
            protocol: b"RTP/AVP",
            rtp: sample_stream(41002, 50, None),
            rtcp: None,
        }];
        let legs = [
            LegInfo {
                tag: b"ft",
                created: 1_700_000_000,
                in_dialogue_with: Some(b"tt"),
                medias: &a_medias,
            },
            LegInfo {
                tag: b"tt",
                created: 1_700_000_001,
                in_dialogue_with: Some(b"ft"),
                medias: &b_medias,
            },
        ];
        let info = QueryInfo {
            created: 1_700_000_000,
            last_signal: 1_700_000_001,
            legs: &legs,
        };
        let mut out = Vec::new();
        write_query(b"q1", &info, &mut out);
        let r = parse_reply(&out).unwrap();
        assert!(r.is_ok());
        let d = &r.dict;
        assert_eq!(
            d.get(b"created").and_then(Value::as_int),
            Some(1_700_000_000)
        );
        assert_eq!(
            d.get(b"last signal").and_then(Value::as_int),
            Some(1_700_000_001)
        );
        let totals = d.get(b"totals").unwrap();
        let rtp = totals.get(b"RTP").unwrap();
        assert_eq!(rtp.get(b"packets").and_then(Value::as_int), Some(150));
        assert_eq!(rtp.get(b"bytes").and_then(Value::as_int), Some(150 * 172));
        assert_eq!(rtp.get(b"errors").and_then(Value::as_int), Some(2));
        let rtcp = totals.get(b"RTCP").unwrap();
        assert_eq!(rtcp.get(b"packets").and_then(Value::as_int), Some(2));
        let tag = d.get(b"tags").unwrap().get(b"ft").unwrap();
        assert_eq!(tag.get(b"tag").and_then(Value::as_bytes), Some(&b"ft"[..]));
        assert_eq!(
            tag.get(b"in dialogue with").and_then(Value::as_bytes),
            Some(&b"tt"[..])
        );
        let media = &tag.get(b"medias").and_then(Value::as_list).unwrap()[0];
        assert_eq!(
            media.get(b"type").and_then(Value::as_bytes),
            Some(&b"audio"[..])
        );
        let streams = media.get(b"streams").and_then(Value::as_list).unwrap();
        assert_eq!(streams.len(), 2);
        assert_eq!(
            streams[0].get(b"local port").and_then(Value::as_int),
            Some(41000)
        );
        let ep = streams[0].get(b"endpoint").unwrap();
        assert_eq!(
            ep.get(b"family").and_then(Value::as_bytes),
            Some(&b"IPv4"[..])
        );
        assert_eq!(
            ep.get(b"address").and_then(Value::as_bytes),
            Some(&b"192.0.2.7"[..])
        );
        assert_eq!(ep.get(b"port").and_then(Value::as_int), Some(4000));
        let adv = streams[0].get(b"advertised endpoint").unwrap();
        assert_eq!(
            adv.get(b"address").and_then(Value::as_bytes),
            Some(&b"2001:db8::7"[..])
        );
        let stats = streams[0].get(b"stats").unwrap();
        assert_eq!(stats.get(b"packets").and_then(Value::as_int), Some(100));
        assert_eq!(
            streams[0].get(b"SSRC").and_then(Value::as_int),
            Some(0xdead_beef)
        );
        assert_eq!(
            streams[1].get(b"flags").and_then(Value::as_list).unwrap()[0],
            Value::Bytes(b"RTCP")
        );
        let ssrc = d.get(b"SSRC").unwrap().get(b"3735928559").unwrap();
        assert_eq!(
            ssrc.get(b"cumulative loss").and_then(Value::as_int),
            Some(3)
        );
        assert_eq!(ssrc.get(b"jitter").and_then(Value::as_int), Some(4));

        // delete carries the same statistics.
        out.clear();
        write_delete(b"d1", Some(&info), None, &mut out);
        let r = parse_reply(&out).unwrap();
        assert!(r.dict.get(b"totals").is_some() && r.warning.is_none());
    }

    #[test]
    fn client_requests_parse_back() {
        let flags = [
            "trust-address",
            "replace-origin",
            "replace-session-connection",
            "ICE=remove",
            "RTP/AVP",
            "rtcp-mux-demux",
            "address-family=IP4",
            "",
        ];
        let mut out = Vec::new();
        encode_offer(b"b_1", b"call-1", b"tagA", SDP.as_bytes(), &flags, &mut out);
        let (cookie, req) = parse(&out).unwrap();
        assert_eq!(cookie, b"b_1");
        let Request::Offer(p) = req else { panic!() };
        assert_eq!(p.call_id, b"call-1");
        assert_eq!(p.from_tag, Some(&b"tagA"[..]));
        assert_eq!(p.sdp, Some(SDP.as_bytes()));
        assert_eq!(p.flags, vec![&b"trust-address"[..]]);
        assert_eq!(p.replace, vec![&b"origin"[..], b"session-connection"]);
        assert_eq!(p.ice, vec![&b"remove"[..]]);
        assert_eq!(p.transport_protocol, Some(&b"RTP/AVP"[..]));
        assert_eq!(p.rtcp_mux, vec![&b"demux"[..]]);
        assert_eq!(p.address_family, Some(AddressFamily::Ip4));
        // rtpengine's spelling of the address family key.
        let v = bencode::decode(&out[4..]).unwrap();
        assert!(v.get(b"address family").is_some());

        out.clear();
        encode_answer(
            b"b_2",
            b"call-1",
            b"tagA",
            b"tagB",
            b"v=0\r\n",
            &["trust-address"],
            &mut out,
        );
        let (_, Request::Answer(p)) = parse(&out).unwrap() else {
            panic!()
        };
        assert_eq!(p.to_tag, Some(&b"tagB"[..]));

        out.clear();
        encode_delete(
            b"b_3",
            b"call-1",
            b"tagA",
            None,
            &["fast", "delete-delay=0"],
            &mut out,
        );
        let (_, Request::Delete(p)) = parse(&out).unwrap() else {
            panic!()
        };
        assert!(p.has_flag("fast"));
        assert_eq!(p.delete_delay, Some(0));

        out.clear();
        encode_query(b"b_4", b"call-1", Some(b"tagA"), &mut out);
        let (_, Request::Query(p)) = parse(&out).unwrap() else {
            panic!()
        };
        assert_eq!(p.from_tag, Some(&b"tagA"[..]));

        out.clear();
        encode_ping(b"b_5", &mut out);
        assert_eq!(out, b"b_5 d7:command4:pinge");

        out.clear();
        encode_list(b"b_6", 7, &mut out);
        assert_eq!(parse(&out).unwrap().1, Request::List { limit: 7 });
    }

    #[test]
    fn parse_reply_reads_rtpengine_replies() {
        let r = parse_reply(b"5323_1 d6:result4:ponge").unwrap();
        assert_eq!(r.cookie, b"5323_1");
        assert!(r.is_ok());
        let r = parse_reply(b"x d6:result5:error12:error-reason15:Unknown call-ide").unwrap();
        assert!(!r.is_ok());
        assert_eq!(r.error_reason, Some(&b"Unknown call-id"[..]));
        let r = parse_reply(b"x d3:sdp3:v=06:result2:oke").unwrap();
        assert_eq!(r.sdp, Some(&b"v=0"[..]));
        let e = parse_reply(b"x d3:sdp3:v=0e").unwrap_err();
        assert_eq!(e.reason, "reply has no result");
        assert_eq!(parse_reply(b"nocookie").unwrap_err().cookie, None);
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Random and mutated datagrams: parse, parse_reply and bencode::decode
    /// return (Ok or Err) and never panic. Bounded: a fixed count.
    #[test]
    fn no_panic_on_mutated_datagrams() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seeds: Vec<Vec<u8>> = vec![kamailio_offer().into_bytes()];
        let mut out = Vec::new();
        encode_answer(
            b"s",
            b"c",
            b"f",
            b"t",
            SDP.as_bytes(),
            &["ICE=remove", "RTP/AVP"],
            &mut out,
        );
        seeds.push(out.clone());
        out.clear();
        write_list(b"s", [&b"a"[..]], &mut out);
        seeds.push(out.clone());
        seeds.push(b"c d7:command4:list5:limiti5ee".to_vec());
        let alphabet = b"ilde:0123456789- abx";
        for round in 0..30_000 {
            let mut d = if round % 10 == 0 {
                (0..rng.below(64))
                    .map(|_| alphabet[rng.below(alphabet.len())])
                    .collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(d.len() + 1);
                match rng.below(5) {
                    0 if at < d.len() => d[at] = alphabet[rng.below(alphabet.len())],
                    1 if at < d.len() => d[at] = rng.next() as u8,
                    2 => d.truncate(at),
                    3 => d.insert(at.min(d.len()), alphabet[rng.below(alphabet.len())]),
                    _ if at < d.len() => {
                        d.remove(at);
                    }
                    _ => {}
                }
            }
            let _ = parse(&d);
            let _ = parse_reply(&d);
            let _ = bencode::decode(&d);
        }
    }
}
