//! The client side, for the load generator driving tether or a real
//! rtpengine: requests as Kamailio's module words them, and replies read.

use super::bencode::{self, Value};
use super::{open, ParseError};

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

/// A request about one call: its command, Call-ID and the tags given.
fn call_request(
    cookie: &[u8],
    command: &[u8],
    call_id: &[u8],
    from_tag: Option<&[u8]>,
    to_tag: Option<&[u8]>,
    out: &mut Vec<u8>,
) {
    request_begin(cookie, command, out);
    bencode::put_pair_bytes(out, b"call-id", call_id);
    for (key, tag) in [(&b"from-tag"[..], from_tag), (b"to-tag", to_tag)] {
        if let Some(t) = tag {
            bencode::put_pair_bytes(out, key, t);
        }
    }
}

/// `ping`. The cookie must not contain a space (the client picks it).
pub fn encode_ping(cookie: &[u8], out: &mut Vec<u8>) {
    request_begin(cookie, b"ping", out);
    bencode::end(out);
}

/// `offer` of the caller's SDP. `flags` are the words a Kamailio script
/// passes to `rtpengine_offer`, sent the way Kamailio's module sends them:
/// `key=value` becomes a key (`ICE=remove` → `"ICE": "remove"`;
/// `address-family=IP4` → `"address family"`; `delete-delay=N` an
/// integer), `replace-X` goes to the `replace` list, `rtcp-mux-X` to the
/// `rtcp-mux` list, a transport (`RTP/AVP`, `RTP/SAVPF`, ...) to
/// `transport-protocol`, any other word to the `flags` list
/// (`trust-address`).
pub fn encode_offer(
    cookie: &[u8],
    call_id: &[u8],
    from_tag: &[u8],
    sdp: &[u8],
    flags: &[&str],
    out: &mut Vec<u8>,
) {
    call_request(cookie, b"offer", call_id, Some(from_tag), None, out);
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
    call_request(
        cookie,
        b"answer",
        call_id,
        Some(from_tag),
        Some(to_tag),
        out,
    );
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
    call_request(cookie, b"delete", call_id, Some(from_tag), to_tag, out);
    put_flags(flags, out);
    bencode::end(out);
}

/// `query` of a call's statistics.
pub fn encode_query(cookie: &[u8], call_id: &[u8], from_tag: Option<&[u8]>, out: &mut Vec<u8>) {
    call_request(cookie, b"query", call_id, from_tag, None, out);
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
