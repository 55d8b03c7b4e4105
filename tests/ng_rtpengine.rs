//! tether's ng client against the real rtpengine (Debian `rtpengine-daemon`):
//! the encoders and `parse_reply` that the load generator uses must speak
//! the protocol the way rtpengine understands it, so they are checked
//! against rtpengine itself rather than against our own server side.
//!
//! rtpengine runs in the foreground, userspace only (`table = -1`, no kernel
//! module), on 127.0.0.1 with a temporary config and a small media port
//! range; it is ended by PID when the test ends. One call goes through
//! ping, offer, answer, list, query and delete, plus an error reply.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::free_udp_port;
use common::rtpengine::{have_rtpengine, Daemon};
use tether::media::bencode::Value;
use tether::media::ng::{self, Reply};

const PORT_MIN: u16 = 41000;
const PORT_MAX: u16 = 41999;

/// Sends `req` and returns the reply carrying the same cookie, resending a
/// few times (UDP, and rtpengine may still be starting). Bounded: at most
/// `tries` sends of 200 ms each.
///
/// The socket is not connected: a connected one would turn the ICMP port
/// unreachable of a not-yet-listening rtpengine into errors.
fn exchange(sock: &UdpSocket, to: SocketAddr, req: &[u8], tries: u32) -> Option<Vec<u8>> {
    let cookie_len = req.iter().position(|&b| b == b' ')?;
    let cookie = &req[..cookie_len];
    let mut buf = vec![0u8; 65536];
    for _ in 0..tries {
        sock.send_to(req, to).ok()?;
        // Replies to earlier sends may still arrive; skip other cookies.
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from != to {
                continue;
            }
            let reply = &buf[..n];
            if reply.len() > cookie_len
                && &reply[..cookie_len] == cookie
                && reply[cookie_len] == b' '
            {
                return Some(reply.to_vec());
            }
        }
    }
    None
}

/// An `m=audio` port of `sdp`.
fn audio_port(sdp: &str) -> u16 {
    let line = sdp
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no m=audio in {sdp}"));
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn caller_sdp() -> String {
    "v=0\r\n\
     o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n\
     s=-\r\n\
     c=IN IP4 127.0.0.1\r\n\
     t=0 0\r\n\
     m=audio 30000 RTP/AVP 0 8 101\r\n\
     a=rtpmap:0 PCMU/8000\r\n\
     a=rtpmap:8 PCMA/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\n\
     a=fmtp:101 0-16\r\n\
     a=ptime:20\r\n\
     a=sendrecv\r\n"
        .to_string()
}

fn callee_sdp() -> String {
    "v=0\r\n\
     o=bob 2808844564 2808844564 IN IP4 127.0.0.1\r\n\
     s=-\r\n\
     c=IN IP4 127.0.0.1\r\n\
     t=0 0\r\n\
     m=audio 30002 RTP/AVP 0 101\r\n\
     a=rtpmap:0 PCMU/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\n\
     a=sendrecv\r\n"
        .to_string()
}

fn ok_reply<'a>(raw: &'a [u8], what: &str, d: &Daemon) -> Reply<'a> {
    let r = ng::parse_reply(raw).unwrap_or_else(|e| {
        panic!(
            "{what}: unparseable reply {e}: {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    assert!(
        r.is_ok(),
        "{what}: rtpengine said {:?} ({:?})\nrtpengine log:\n{}",
        String::from_utf8_lossy(r.result),
        r.error_reason.map(String::from_utf8_lossy),
        d.log()
    );
    r
}

/// The rewritten SDP: rtpengine's address (127.0.0.1) and a port of its range.
fn check_rewritten(sdp: &[u8], what: &str) -> u16 {
    let sdp = std::str::from_utf8(sdp).expect("SDP is text");
    assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{what}: {sdp}");
    let port = audio_port(sdp);
    assert!(
        (PORT_MIN..=PORT_MAX).contains(&port),
        "{what}: media port {port} not in rtpengine's range: {sdp}"
    );
    port
}

#[test]
fn ng_client_drives_real_rtpengine() {
    let test = "ng_client_drives_real_rtpengine";
    if !have_rtpengine(test) {
        return;
    }
    let ng_port = free_udp_port();
    let mut d = Daemon::start("rtpengine", ng_port, (PORT_MIN, PORT_MAX));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ng_addr = SocketAddr::from(([127, 0, 0, 1], ng_port));
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();

    // Ping until rtpengine is up (at most 15 s), then pong.
    ng::encode_ping(b"t_1", &mut out);
    let Some(raw) = exchange(&sock, ng_addr, &out, 75) else {
        let status = d.child.try_wait().ok().flatten();
        panic!(
            "no answer to ping on 127.0.0.1:{ng_port} (rtpengine exit status {status:?})\nrtpengine log:\n{}",
            d.log()
        );
    };
    let r = ng::parse_reply(&raw).unwrap();
    assert_eq!(r.cookie, b"t_1");
    assert_eq!(r.result, b"pong");

    let call_id = format!("ng-test-{}@127.0.0.1", std::process::id());
    let call_id = call_id.as_bytes();
    let flags = [
        "trust-address",
        "replace-origin",
        "replace-session-connection",
        "ICE=remove",
        "RTP/AVP",
    ];

    out.clear();
    ng::encode_offer(
        b"t_2",
        call_id,
        b"from-tag-a",
        caller_sdp().as_bytes(),
        &flags,
        &mut out,
    );
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to offer");
    let r = ok_reply(&raw, "offer", &d);
    let offer_port = check_rewritten(r.sdp.expect("offer reply has sdp"), "offer");
    assert_ne!(offer_port, 30000);

    out.clear();
    ng::encode_answer(
        b"t_3",
        call_id,
        b"from-tag-a",
        b"to-tag-b",
        callee_sdp().as_bytes(),
        &flags,
        &mut out,
    );
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to answer");
    let r = ok_reply(&raw, "answer", &d);
    let answer_port = check_rewritten(r.sdp.expect("answer reply has sdp"), "answer");
    assert_ne!(answer_port, offer_port, "each side gets its own port");

    out.clear();
    ng::encode_list(b"t_4", 100, &mut out);
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to list");
    let r = ok_reply(&raw, "list", &d);
    let calls = r
        .dict
        .get(b"calls")
        .and_then(Value::as_list)
        .expect("calls list");
    assert!(calls.contains(&Value::Bytes(call_id)), "{calls:?}");

    out.clear();
    ng::encode_query(b"t_5", call_id, None, &mut out);
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to query");
    let r = ok_reply(&raw, "query", &d);
    assert!(r.dict.get(b"created").and_then(Value::as_int).is_some());
    let tags = r.dict.get(b"tags").expect("tags in query reply");
    for tag in [&b"from-tag-a"[..], b"to-tag-b"] {
        let t = tags
            .get(tag)
            .unwrap_or_else(|| panic!("tag {:?} in {tags:?}", String::from_utf8_lossy(tag)));
        let medias = t.get(b"medias").and_then(Value::as_list).expect("medias");
        let streams = medias[0]
            .get(b"streams")
            .and_then(Value::as_list)
            .expect("streams");
        assert!(streams[0]
            .get(b"stats")
            .and_then(|s| s.get(b"packets"))
            .is_some());
    }
    let totals = r.dict.get(b"totals").expect("totals");
    assert!(totals.get(b"RTP").and_then(|t| t.get(b"bytes")).is_some());

    out.clear();
    // rtpengine keeps deleted calls 30 s by default; ask for none.
    ng::encode_delete(
        b"t_6",
        call_id,
        b"from-tag-a",
        None,
        &["delete-delay=0"],
        &mut out,
    );
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to delete");
    let r = ok_reply(&raw, "delete", &d);
    assert_eq!(r.warning, None, "the call existed");

    // The call is gone: a query now is an error with a reason.
    out.clear();
    ng::encode_query(b"t_7", call_id, None, &mut out);
    let raw = exchange(&sock, ng_addr, &out, 10).expect("reply to query after delete");
    let r = ng::parse_reply(&raw).unwrap();
    assert_eq!(r.result, b"error");
    assert!(r.error_reason.is_some_and(|e| !e.is_empty()));

    drop(d);
}
