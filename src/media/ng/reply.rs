//! The server's replies: `pong`, `ok` (with the rewritten SDP), errors,
//! `list`, and the statistics of `query` and `delete` in rtpengine's layout.

use std::io::Write as _;
use std::net::SocketAddr;

use super::bencode;

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
