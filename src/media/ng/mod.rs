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

use std::net::IpAddr;

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

mod client;
mod reply;
#[cfg(test)]
mod tests;

pub use client::*;
pub use reply::*;
