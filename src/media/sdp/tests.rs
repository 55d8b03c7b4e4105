//! SDP parsing and rewriting against real offers (SIPp, baresip 1.0, a
//! browser), every refusal, and a no-panic mutation loop.
//!
//! Nearly 800 lines on purpose, all about one function pair: most of it is
//! the captured SDP bodies the assertions read against, which are clearer
//! beside their tests than in a fixtures folder.

use super::*;

/// SIPp's built-in `uac` scenario body, its keywords filled in.
const SIPP_UAC: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// An offer captured from baresip 1.0.0 (Debian's baresip-core, `rtcp_mux
/// yes`): it writes `a=rtcp-mux`, no `a=rtcp`.
const BARESIP: &str = "v=0\r\n\
o=- 99453669 818644542 IN IP4 192.0.2.2\r\n\
s=-\r\n\
c=IN IP4 192.0.2.2\r\n\
t=0 0\r\n\
a=tool:baresip 1.0.0\r\n\
m=audio 14902 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
a=label:1\r\n\
a=rtcp-rsize\r\n\
a=ssrc:1016615946 cname:sip:bs@127.0.0.1\r\n\
a=rtcp-mux\r\n\
a=minptime:20\r\n\
a=ptime:20\r\n";

/// Shaped like a browser's offer after gathering: no session-level c=,
/// ICE per stream, `a=rtcp:9 IN IP4 0.0.0.0`, rtcp-mux, audio and video.
const WEBRTC: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream\r\n\
m=audio 54400 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 203.0.113.5\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54400 typ host generation 0\r\n\
a=candidate:842163049 1 udp 1686052607 203.0.113.5 54400 typ srflx raddr 192.168.0.196 rport 54400 generation 0\r\n\
a=end-of-candidates\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:1E:15:54:39:0C:06:8B:ED:96:86:00:39\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\n\
a=msid:stream audio0\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:3510681183 cname:tlnAqOydZXgnEjVG\r\n\
m=video 54402 UDP/TLS/RTP/SAVPF 96 97\r\n\
c=IN IP4 203.0.113.5\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54402 typ host generation 0\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 D1:2C:BE:AD:C4:F6:64:5C:25:16:11:9C:AF:E7:0F:73:79:36:4E:9C:1E:15:54:39:0C:06:8B:ED:96:86:00:39\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n";

/// Session-level c= and direction, one stream overriding both, a rejected
/// stream without any c=... except the session's, an explicit a=rtcp.
const MIXED: &str = "v=0\r\n\
o=alice 2890844526 2890844527 IN IP4 host.example.com\r\n\
s=call\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
a=recvonly\r\n\
m=audio 49170 RTP/AVP 96\r\n\
a=rtpmap:96 L16/16000\r\n\
a=rtcp:53020 IN IP4 198.51.100.9\r\n\
m=video 0 RTP/AVP 31\r\n\
m=audio 49180 RTP/SAVP 8\r\n\
c=IN IP4 198.51.100.2\r\n\
a=rtcp:49181\r\n\
a=sendonly\r\n";

const RELAY: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse_str(s: &str) -> Result<Session, SdpError> {
    parse(s.as_bytes())
}

fn reason(s: &str) -> &'static str {
    parse_str(s).unwrap_err().reason
}

fn rewrite_str(s: &str, rw: &Rewrite) -> Result<String, SdpError> {
    let mut out = Vec::new();
    rewrite(s.as_bytes(), rw, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

fn anchors(n: usize, base: u16) -> Vec<Option<Anchor>> {
    (0..n)
        .map(|i| {
            let p = base + 2 * i as u16;
            Some(Anchor {
                rtp_port: p,
                rtcp_port: p + 1,
            })
        })
        .collect()
}

fn plain(addr: IpAddr, anchors: &[Option<Anchor>]) -> Rewrite<'_> {
    Rewrite {
        addr,
        anchors,
        strip_ice: false,
        replace_origin: false,
        direction: None,
    }
}

fn body_lines(s: &str) -> Vec<&str> {
    s.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Rewrites with anchors on every live stream and checks what must change
/// did and everything else is byte-identical.
fn round_trip(input: &str, addr: IpAddr) -> String {
    let before = parse_str(input).unwrap();
    let anchors: Vec<_> = anchors(before.streams.len(), 30000)
        .into_iter()
        .zip(&before.streams)
        .map(|(a, s)| a.filter(|_| s.port != 0))
        .collect();
    let out = rewrite_str(input, &plain(addr, &anchors)).unwrap();
    assert!(out.ends_with("\r\n"));
    assert!(!out.replace("\r\n", "").contains('\n'), "bare LF in output");
    let after = parse_str(&out).unwrap();
    assert_eq!(after.origin_addr, before.origin_addr);
    assert_eq!(after.streams.len(), before.streams.len());
    for ((b, a), anchor) in before.streams.iter().zip(&after.streams).zip(&anchors) {
        match anchor {
            Some(an) => assert_eq!(a.port, an.rtp_port),
            None => assert_eq!(a.port, b.port),
        }
        assert_eq!(a.addr, b.addr.map(|_| addr));
        match (b.rtcp, anchor) {
            (Some((_, had)), Some(an)) => {
                assert_eq!(a.rtcp, Some((an.rtcp_port, had.map(|_| addr))))
            }
            _ => assert_eq!(a.rtcp, b.rtcp),
        }
        assert_eq!(
            (
                &a.media,
                &a.proto,
                a.rtcp_mux,
                a.direction,
                a.clock_rate,
                a.ice
            ),
            (
                &b.media,
                &b.proto,
                b.rtcp_mux,
                b.direction,
                b.clock_rate,
                b.ice
            )
        );
    }
    let (li, lo) = (body_lines(input), body_lines(&out));
    assert_eq!(li.len(), lo.len());
    for (i, o) in li.iter().zip(&lo) {
        if i.starts_with("c=") {
            assert!(o.starts_with("c=IN IP") && o.ends_with(&addr.to_string()));
        } else if i.starts_with("m=") || i.starts_with("a=rtcp:") {
            assert_eq!(i.split(' ').count(), o.split(' ').count(), "{i} -> {o}");
        } else {
            assert_eq!(i, o);
        }
    }
    out
}

#[test]
fn sipp_uac_offer() {
    let s = parse_str(SIPP_UAC).unwrap();
    assert_eq!(s.origin_addr, Some(ip("127.0.0.1")));
    assert_eq!(
        s.streams,
        vec![Stream {
            media: "audio".into(),
            port: 6000,
            proto: "RTP/AVP".into(),
            addr: Some(ip("127.0.0.1")),
            rtcp: None,
            rtcp_mux: false,
            direction: Direction::SendRecv,
            hold_zero_addr: false,
            clock_rate: 8000,
            ice: false,
        }]
    );
    let out = round_trip(SIPP_UAC, RELAY);
    assert_eq!(
        out,
        "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.100\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n"
    );
}

#[test]
fn baresip_offer() {
    let s = parse_str(BARESIP).unwrap();
    let st = &s.streams[..];
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].port, &*st[0].proto), (14902, "RTP/AVP"));
    assert_eq!(st[0].addr, Some(ip("192.0.2.2")));
    assert!(st[0].rtcp_mux);
    assert_eq!(st[0].rtcp, None);
    assert_eq!(st[0].direction, Direction::SendRecv);
    assert_eq!(st[0].clock_rate, 8000);
    assert!(!st[0].ice);
    let out = round_trip(BARESIP, RELAY);
    // No a=rtcp invented: our RTCP port is the default rtp+1.
    assert!(!out.contains("a=rtcp:"));
    assert!(out.contains("\r\na=rtcp-mux\r\n"));
}

#[test]
fn webrtc_offer() {
    let s = parse_str(WEBRTC).unwrap();
    assert_eq!(s.streams.len(), 2);
    let (a, v) = (&s.streams[0], &s.streams[1]);
    assert_eq!((&*a.media, a.port, a.clock_rate), ("audio", 54400, 48000));
    assert_eq!((&*v.media, v.port, v.clock_rate), ("video", 54402, 90000));
    for st in &s.streams {
        assert_eq!(&*st.proto, "UDP/TLS/RTP/SAVPF");
        assert_eq!(st.addr, Some(ip("203.0.113.5")));
        assert_eq!(st.rtcp, Some((9, Some(ip("0.0.0.0")))));
        assert!(st.rtcp_mux && st.ice && !st.hold_zero_addr);
    }
    let out = round_trip(WEBRTC, RELAY);
    assert!(out.contains("\r\na=rtcp:30001 IN IP4 192.0.2.100\r\n"));
    assert!(out.contains("\r\na=rtcp:30003 IN IP4 192.0.2.100\r\n"));
    assert!(out.contains("\r\nm=video 30002 UDP/TLS/RTP/SAVPF 96 97\r\n"));
}

#[test]
fn strip_ice_removes_every_ice_line_only() {
    let an = anchors(2, 40000);
    let rw = Rewrite {
        strip_ice: true,
        ..plain(RELAY, &an)
    };
    let session_ice = WEBRTC.replace(
        "a=extmap-allow-mixed\r\n",
        "a=extmap-allow-mixed\r\na=ice-lite\r\na=ice-options:ice2\r\n",
    );
    assert!(parse_str(&session_ice).unwrap().streams[1].ice);
    let out = rewrite_str(&session_ice, &rw).unwrap();
    for attr in ICE_ATTRS {
        assert!(!out.contains(&format!("a={attr}")), "{attr} left");
    }
    let kept: Vec<_> = body_lines(&session_ice)
        .into_iter()
        .filter(|l| !l.starts_with("a=candidate") && !l.starts_with("a=ice-"))
        .filter(|l| *l != "a=end-of-candidates")
        .collect();
    assert_eq!(body_lines(&out).len(), kept.len());
    let s = parse_str(&out).unwrap();
    assert!(s.streams.iter().all(|st| !st.ice && st.rtcp_mux));
    assert!(out.contains("a=fingerprint:sha-256 D1:2C"));
}

#[test]
fn ice_alone_is_detected() {
    let body = SIPP_UAC.to_owned() + "a=ice-ufrag:abcd\r\n";
    assert!(parse_str(&body).unwrap().streams[0].ice);
    let body = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n");
    assert!(parse_str(&body).unwrap().streams[0].ice);
}

#[test]
fn mixed_levels() {
    let s = parse_str(MIXED).unwrap();
    // An FQDN in o= is legal; it just yields no address.
    assert_eq!(s.origin_addr, None);
    let st = &s.streams;
    assert_eq!(st.len(), 3);
    assert_eq!(st[0].addr, Some(ip("198.51.100.1")));
    assert_eq!(st[0].direction, Direction::RecvOnly);
    assert_eq!(st[0].clock_rate, 16000);
    assert_eq!(st[0].rtcp, Some((53020, Some(ip("198.51.100.9")))));
    assert_eq!((st[1].port, st[1].clock_rate), (0, 90000));
    assert_eq!(st[1].addr, Some(ip("198.51.100.1")));
    assert_eq!(st[2].addr, Some(ip("198.51.100.2")));
    assert_eq!(st[2].direction, Direction::SendOnly);
    assert_eq!(st[2].rtcp, Some((49181, None)));
    let out = round_trip(MIXED, RELAY);
    assert!(out.contains("\r\nm=video 0 RTP/AVP 31\r\n"));
    assert!(out.contains("\r\na=rtcp:30001 IN IP4 192.0.2.100\r\n"));
    assert!(out.contains("\r\na=rtcp:30005\r\n"));
}

#[test]
fn rejected_stream_needs_no_address() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\n\
m=audio 4000 RTP/AVP 8\r\nc=IN IP4 10.0.0.1\r\n";
    let s = parse_str(body).unwrap();
    assert_eq!(s.streams[0].addr, None);
    assert!(!s.streams[0].hold_zero_addr);
    assert_eq!(s.streams[1].addr, Some(ip("10.0.0.1")));
    let an = [
        None,
        Some(Anchor {
            rtp_port: 5000,
            rtcp_port: 5001,
        }),
    ];
    let out = rewrite_str(body, &plain(RELAY, &an)).unwrap();
    assert!(out.contains("\r\nm=video 0 RTP/AVP 96\r\nm=audio 5000 RTP/AVP 8\r\n"));
    // Given an anchor anyway, a rejected stream stays rejected.
    let out = rewrite_str(body, &plain(RELAY, &anchors(2, 5000))).unwrap();
    assert!(out.contains("\r\nm=video 0 RTP/AVP 96\r\nm=audio 5002 RTP/AVP 8\r\n"));
    round_trip(body, RELAY);
}

#[test]
fn hold_forms() {
    let sendonly = SIPP_UAC.to_owned() + "a=sendonly\r\n";
    let st = &parse_str(&sendonly).unwrap().streams[0];
    assert_eq!(
        (st.direction, st.hold_zero_addr),
        (Direction::SendOnly, false)
    );

    let inactive = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
    let st = &parse_str(&inactive).unwrap().streams[0];
    assert_eq!(st.direction, Direction::Inactive);

    // RFC 2543 hold: reported, the direction attribute untouched.
    let zero = SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let st = &parse_str(&zero).unwrap().streams[0];
    assert_eq!(
        (st.direction, st.hold_zero_addr),
        (Direction::SendRecv, true)
    );
    assert_eq!(st.addr, Some(ip("0.0.0.0")));
    // The media-level address decides.
    let media_level = zero.clone() + "c=IN IP4 10.1.1.1\r\n";
    assert!(!parse_str(&media_level).unwrap().streams[0].hold_zero_addr);
    for b in [&sendonly, &inactive, &zero, &media_level] {
        round_trip(b, RELAY);
    }
}

#[test]
fn ipv6() {
    let body = "v=0\r\n\
o=- 1 1 IN IP6 2001:db8::1\r\n\
s=-\r\n\
c=IN IP6 2001:db8::1\r\n\
t=0 0\r\n\
m=audio 7078 RTP/AVP 9\r\n\
a=rtcp:7079 IN IP6 2001:db8::1\r\n";
    let s = parse_str(body).unwrap();
    assert_eq!(s.origin_addr, Some(ip("2001:db8::1")));
    assert_eq!(s.streams[0].addr, Some(ip("2001:db8::1")));
    assert_eq!(s.streams[0].clock_rate, 8000);
    let relay6 = ip("2001:db8:ffff::100");
    let out = round_trip(body, relay6);
    assert!(out.contains("\r\nc=IN IP6 2001:db8:ffff::100\r\n"));
    assert!(out.contains("\r\na=rtcp:30001 IN IP6 2001:db8:ffff::100\r\n"));
    // And a v4 body through a v6 relay, and the reverse.
    let out = round_trip(SIPP_UAC, relay6);
    assert!(out.contains("\r\nc=IN IP6 2001:db8:ffff::100\r\n"));
    let out = round_trip(body, RELAY);
    assert!(out.contains("\r\nc=IN IP4 192.0.2.100\r\n"));
}

#[test]
fn lf_only_input_gives_crlf_output() {
    let lf = WEBRTC.replace("\r\n", "\n");
    assert_eq!(parse_str(&lf).unwrap(), parse_str(WEBRTC).unwrap());
    let an = anchors(2, 30000);
    let out_lf = rewrite_str(&lf, &plain(RELAY, &an)).unwrap();
    let out_crlf = rewrite_str(WEBRTC, &plain(RELAY, &an)).unwrap();
    assert_eq!(out_lf, out_crlf);
    // Mixed endings and a missing final one.
    let mixed = SIPP_UAC.replacen("\r\n", "\n", 3);
    let mixed = mixed.strip_suffix("\r\n").unwrap();
    let an = anchors(1, 30000);
    assert_eq!(
        rewrite_str(mixed, &plain(RELAY, &an)).unwrap(),
        rewrite_str(SIPP_UAC, &plain(RELAY, &an)).unwrap()
    );
}

#[test]
fn clock_rates() {
    let rate = |m: &str, extra: &str| {
        let body = format!("v=0\r\nc=IN IP4 10.0.0.1\r\nm={m}\r\n{extra}");
        parse_str(&body).unwrap().streams[0].clock_rate
    };
    assert_eq!(rate("audio 1 RTP/AVP 9 0", ""), 8000); // G722's RTP clock
    assert_eq!(rate("audio 1 RTP/AVP 6", ""), 16000);
    assert_eq!(rate("audio 1 RTP/AVP 10", ""), 44100);
    assert_eq!(rate("video 1 RTP/AVP 34", ""), 90000);
    assert_eq!(rate("audio 1 RTP/AVP 96", ""), 8000);
    // Only the first format's rtpmap counts.
    assert_eq!(
        rate("audio 1 RTP/AVP 0 96", "a=rtpmap:96 opus/48000/2\r\n"),
        8000
    );
    assert_eq!(
        rate("audio 1 RTP/AVP 96 0", "a=rtpmap:96 opus/48000/2\r\n"),
        48000
    );
    // An rtpmap overrides the static table; a malformed one is ignored.
    assert_eq!(
        rate("audio 1 RTP/AVP 0", "a=rtpmap:0 PCMU/16000\r\n"),
        16000
    );
    assert_eq!(rate("audio 1 RTP/AVP 96", "a=rtpmap:96 opus\r\n"), 8000);
    assert_eq!(rate("audio 1 RTP/AVP 96", "a=rtpmap:96 x/0\r\n"), 8000);
    assert_eq!(rate("application 1 TCP/MSRP *", ""), 8000);
}

#[test]
fn port_count_of_one_is_fine_and_kept() {
    let body = SIPP_UAC.replace("m=audio 6000 ", "m=audio 6000/1 ");
    assert_eq!(parse_str(&body).unwrap().streams[0].port, 6000);
    let an = anchors(1, 30000);
    let out = rewrite_str(&body, &plain(RELAY, &an)).unwrap();
    assert!(out.contains("\r\nm=audio 30000/1 RTP/AVP 0\r\n"));
}

#[test]
fn rewrite_origin() {
    let (one, three) = (anchors(1, 30000), anchors(3, 30000));
    let rw = Rewrite {
        replace_origin: true,
        ..plain(RELAY, &one)
    };
    let out = rewrite_str(SIPP_UAC, &rw).unwrap();
    assert!(out.starts_with("v=0\r\no=user1 53655765 2353687637 IN IP4 192.0.2.100\r\n"));
    assert_eq!(parse_str(&out).unwrap().origin_addr, Some(RELAY));
    let rw6 = Rewrite {
        addr: ip("::1"),
        anchors: &three,
        ..rw
    };
    let out = rewrite_str(MIXED, &rw6).unwrap();
    assert!(out.contains("\r\no=alice 2890844526 2890844527 IN IP6 ::1\r\n"));
    // Not asked: o= kept.
    let out = rewrite_str(SIPP_UAC, &plain(RELAY, &one)).unwrap();
    assert!(out.contains("\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"));
}

#[test]
fn rewrite_direction() {
    let an = anchors(3, 30000);
    let rw = Rewrite {
        direction: Some(Direction::Inactive),
        ..plain(RELAY, &an)
    };
    // MIXED: session-level recvonly goes, stream 0 gains one at its end,
    // the rejected stream none, stream 2's sendonly is replaced in place.
    let out = rewrite_str(MIXED, &rw).unwrap();
    assert!(!out.contains("recvonly") && !out.contains("sendonly"));
    assert!(out.contains("a=rtcp:30001 IN IP4 192.0.2.100\r\na=inactive\r\nm=video 0"));
    assert!(out.contains("m=video 0 RTP/AVP 31\r\nm=audio"));
    assert!(out.ends_with("a=rtcp:30005\r\na=inactive\r\n"));
    let s = parse_str(&out).unwrap();
    assert_eq!(s.streams[0].direction, Direction::Inactive);
    assert_eq!(s.streams[2].direction, Direction::Inactive);

    // Replaced in place; a duplicate goes; a rejected stream keeps its own.
    let body = SIPP_UAC.to_owned()
        + "a=sendrecv\r\na=ptime:20\r\na=sendonly\r\nm=video 0 RTP/AVP 31\r\na=recvonly\r\n";
    let an = [an[0], None];
    let rw = Rewrite {
        direction: Some(Direction::SendOnly),
        ..plain(RELAY, &an)
    };
    let out = rewrite_str(&body, &rw).unwrap();
    assert!(out.contains(
        "PCMU/8000\r\na=sendonly\r\na=ptime:20\r\nm=video 0 RTP/AVP 31\r\na=recvonly\r\n"
    ));
    assert_eq!(out.matches("a=sendonly").count(), 1);

    // None keeps what is there.
    let rw = plain(RELAY, &an);
    let out = rewrite_str(&body, &rw).unwrap();
    assert!(out.contains("a=sendrecv\r\na=ptime:20\r\na=sendonly\r\n"));
}

#[test]
fn rewrite_appends_and_leaves_out_alone_on_error() {
    let an = anchors(1, 30000);
    let mut out = b"INVITE ...\r\n\r\n".to_vec();
    rewrite(SIPP_UAC.as_bytes(), &plain(RELAY, &an), &mut out).unwrap();
    assert!(out.starts_with(b"INVITE ...\r\n\r\nv=0\r\n"));
    let before = out.clone();
    let two = anchors(2, 30000);
    let e = rewrite(SIPP_UAC.as_bytes(), &plain(RELAY, &two), &mut out).unwrap_err();
    assert_eq!(e.reason, "anchor count does not match m= lines");
    let e = rewrite(b"v=0\r\nm=x", &plain(RELAY, &an), &mut out).unwrap_err();
    assert_eq!(e.reason, "malformed m= line");
    // Fails in the writing pass, after parse accepted the body.
    let bad_o = SIPP_UAC.replace(" IN IP4 127.0.0.1\r\ns=", " IN IP4\r\ns=");
    assert_eq!(parse_str(&bad_o).unwrap().origin_addr, None);
    let rw = Rewrite {
        replace_origin: true,
        ..plain(RELAY, &an)
    };
    let e = rewrite(bad_o.as_bytes(), &rw, &mut out).unwrap_err();
    assert_eq!(e.reason, "malformed o= line");
    assert_eq!(out, before);
}

#[test]
fn errors() {
    let with_c = |c: &str| SIPP_UAC.replace("c=IN IP4 127.0.0.1", c);
    let with_m = |m: &str| SIPP_UAC.replace("m=audio 6000 RTP/AVP 0", m);
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty body"),
        ("\r\n\r\n".into(), "empty body"),
        ("v=1\r\n".into(), "missing or invalid v=0 line"),
        (SIPP_UAC[5..].into(), "missing or invalid v=0 line"),
        (" v=0\r\n".into(), "missing or invalid v=0 line"),
        (
            with_m("m=audio 6000/2 RTP/AVP 0"),
            "port count not supported",
        ),
        (
            with_m("m=audio 6000/ RTP/AVP 0"),
            "port count not supported",
        ),
        (with_m("m=audio abc RTP/AVP 0"), "m= port is not a number"),
        (with_m("m=audio 65536 RTP/AVP 0"), "m= port is not a number"),
        (with_m("m=audio +600 RTP/AVP 0"), "m= port is not a number"),
        (with_m("m=audio 6000 RTP/AVP"), "malformed m= line"),
        (with_m("m="), "malformed m= line"),
        (with_c("c=ATM NSAP 47.0005"), "unsupported network type"),
        (with_c("c=IN IPX 10.0.0.1"), "unsupported address type"),
        (
            with_c("c=IN IP4 host.example.com"),
            "connection address is not an IP literal",
        ),
        (
            with_c("c=IN IP4 ::1"),
            "connection address does not match its address type",
        ),
        (
            with_c("c=IN IP4 224.2.1.1/127"),
            "multicast connection address not supported",
        ),
        (
            with_c("c=IN IP6 ff0e::101"),
            "multicast connection address not supported",
        ),
        (with_c("c=IN IP4"), "malformed c= line"),
        (with_c("c=IN IP4 10.0.0.1 x"), "malformed c= line"),
        (with_c("s2=x"), "malformed SDP line"),
        (with_c("t=0 0"), "no connection address for a stream"),
        (
            SIPP_UAC.to_owned() + "c=IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.2\r\n",
            "duplicate c= line",
        ),
        (
            SIPP_UAC.to_owned() + "a=rtcp:x\r\n",
            "malformed a=rtcp line",
        ),
        (SIPP_UAC.to_owned() + "a=rtcp\r\n", "malformed a=rtcp line"),
        (
            SIPP_UAC.to_owned() + "a=rtcp:9 IN IP4\r\n",
            "malformed a=rtcp line",
        ),
        (
            SIPP_UAC.to_owned() + "a=rtcp:9 IN IP4 rtcp.example.com\r\n",
            "connection address is not an IP literal",
        ),
        (
            SIPP_UAC.to_owned() + &"m=audio 0 RTP/AVP 0\r\n".repeat(16),
            "too many media streams",
        ),
        (
            SIPP_UAC.to_owned() + &"a=x\r\n".repeat(MAX_BODY / 5),
            "SDP body too large",
        ),
    ];
    for (body, want) in &cases {
        assert_eq!(reason(body), *want, "{body:?}");
        let an = anchors(1, 30000);
        let mut out = Vec::new();
        let got = rewrite(body.as_bytes(), &plain(RELAY, &an), &mut out);
        assert_eq!(got.unwrap_err().reason, *want);
        assert!(out.is_empty());
    }
    assert_eq!(
        parse(b"v=0\r\ns=\xff\r\n").unwrap_err().reason,
        "SDP is not UTF-8"
    );
    // The limits themselves are accepted.
    let sixteen = SIPP_UAC.to_owned() + &"m=audio 0 RTP/AVP 0\r\n".repeat(15);
    assert_eq!(parse_str(&sixteen).unwrap().streams.len(), 16);
    let mut big = SIPP_UAC.to_owned();
    big.push_str("a=");
    big.push_str(&"x".repeat(MAX_BODY - big.len() - 2));
    big.push_str("\r\n");
    assert_eq!(big.len(), MAX_BODY);
    assert!(parse_str(&big).is_ok());
}

#[test]
fn error_display_is_the_reason() {
    assert_eq!(reason("").to_string(), "empty body");
    assert_eq!(parse_str("").unwrap_err().to_string(), "empty body");
}

use crate::media::test_rng::Rng;

/// Bytes that matter to the grammar, so mutations hit interesting paths.
const SPICE: &[u8] = b" /:=\r\n0123456789.IPNmcoa\xff\x00-";

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.below(8) {
        0 => input.truncate(rng.below(len + 1)),
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = SPICE[rng.below(SPICE.len())];
        }
        2 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.next() as u8;
        }
        3 => {
            let i = rng.below(len + 1);
            input.insert(i, SPICE[rng.below(SPICE.len())]);
        }
        4 if len > 0 => {
            let i = rng.below(len);
            input.remove(i);
        }
        // Line-level: delete, duplicate or swap lines.
        _ => {
            let mut lines: Vec<Vec<u8>> = input
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if lines.is_empty() {
                return;
            }
            let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
            match rng.below(3) {
                0 => {
                    lines.remove(i);
                }
                1 => {
                    let l = lines[i].clone();
                    lines.insert(j, l);
                }
                _ => lines.swap(i, j),
            }
            *input = lines.concat();
        }
    }
}

/// Whatever parse accepts, rewrite accepts with matching anchors, and the
/// result parses to the same streams at our ports and address.
fn check_no_panic(input: &[u8], rng: &mut Rng) -> bool {
    let parsed = parse(input);
    let parsed_ok = parsed.is_ok();
    let n = parsed.as_ref().map_or(rng.below(4), |s| s.streams.len());
    let an: Vec<_> = anchors(n, 20000)
        .into_iter()
        .map(|a| a.filter(|_| rng.below(4) != 0))
        .collect();
    let rw = Rewrite {
        addr: if rng.below(2) == 0 { RELAY } else { ip("::1") },
        anchors: &an,
        strip_ice: rng.below(2) == 0,
        replace_origin: false,
        direction: [None, Some(Direction::Inactive)][rng.below(2)],
    };
    let mut out = Vec::new();
    let r = rewrite(input, &rw, &mut out);
    if let Ok(before) = parsed {
        r.unwrap_or_else(|e| panic!("parse ok, rewrite {e}: {input:?}"));
        let after = parse(&out).unwrap_or_else(|e| panic!("reparse {e}: {out:?}"));
        assert_eq!(after.streams.len(), before.streams.len());
        for ((a, b), an) in after.streams.iter().zip(&before.streams).zip(&an) {
            let want = an.filter(|_| b.port != 0).map_or(b.port, |an| an.rtp_port);
            assert_eq!(a.port, want);
            assert_eq!(a.addr, b.addr.map(|_| rw.addr));
        }
    } else {
        assert!(r.is_err() && out.is_empty());
    }
    let _ = rewrite(
        input,
        &Rewrite {
            replace_origin: true,
            ..rw
        },
        &mut out,
    );
    parsed_ok
}

#[test]
fn no_panic_on_mangled_input() {
    let seeds = [SIPP_UAC, BARESIP, WEBRTC, MIXED];
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        // Every truncation.
        for cut in 0..=seed.len() {
            check_no_panic(&seed.as_bytes()[..cut], &mut rng);
        }
    }
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut input = seeds[rng.below(seeds.len())].as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        accepted += usize::from(check_no_panic(&input, &mut rng));
    }
    // The round-trip property is only worth something if mutants pass.
    assert!(accepted > 2_000, "only {accepted} mutants parsed");
    // Pure noise, biased towards the grammar's bytes.
    for _ in 0..2_000 {
        let mut input = b"v=0\n".to_vec();
        for _ in 0..rng.below(200) {
            input.push(SPICE[rng.below(SPICE.len())]);
        }
        check_no_panic(&input, &mut rng);
    }
}
