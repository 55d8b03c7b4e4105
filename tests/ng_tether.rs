//! tether as an rtpengine: the `ng` control protocol on `media.ng_listen`
//! sets up a call, and RTP/RTCP sent by two parties (plain UDP sockets on
//! loopback) crosses the relay both ways, unchanged, from the ports the
//! rewritten SDPs named, to wherever each party really sends from.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::free_udp_port;
use common::ng::{collect, ng_call, rtp};
use tether::media::ng;
use tether::media::sdp;

#[test]
fn an_ng_call_relays_rtp_and_rtcp_both_ways() {
    let ng_port = free_udp_port();
    let (rt, _) = common::start(&format!(
        "[media]\nng_listen = \"127.0.0.1:{ng_port}\"\nports = \"43000-43999\"\naddress = \"127.0.0.1\"\n"
    ));
    let ng_addr: SocketAddr = format!("127.0.0.1:{ng_port}").parse().unwrap();
    let ctl = UdpSocket::bind("127.0.0.1:0").unwrap();
    ctl.set_read_timeout(Some(Duration::from_secs(2))).unwrap();

    // A says it receives on a port it never sends from (NATed): the relay
    // must answer it where it really sends from.
    let a_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a_rtcp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b_rtcp = UdpSocket::bind(("127.0.0.1", b_rtp.local_addr().unwrap().port() + 1))
        .unwrap_or_else(|_| UdpSocket::bind("127.0.0.1:0").unwrap());
    let b_port = b_rtp.local_addr().unwrap().port();
    let b_rtcp_port = b_rtcp.local_addr().unwrap().port();
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 9 RTP/AVP 0\r\na=rtcp:11\r\n";
    let answer = format!(
        "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {b_port} RTP/AVP 0\r\na=rtcp:{b_rtcp_port}\r\n"
    );
    let mut req = Vec::new();
    ng::encode_ping(b"p1", &mut req);
    let r = ng_call(&ctl, ng_addr, &req);
    assert_eq!(ng::parse_reply(&r).unwrap().result, b"pong");

    req.clear();
    ng::encode_offer(
        b"o1",
        b"call-ng-1",
        b"ta",
        offer.as_bytes(),
        &["trust-address"],
        &mut req,
    );
    let r = ng_call(&ctl, ng_addr, &req);
    let rep = ng::parse_reply(&r).unwrap();
    assert!(rep.is_ok(), "{}", String::from_utf8_lossy(&r));
    let to_b = sdp::parse(rep.sdp.unwrap()).unwrap();
    let relay_for_b = to_b.streams[0].port;
    assert_eq!(to_b.streams[0].addr, Some("127.0.0.1".parse().unwrap()));
    assert!((43000..44000).contains(&relay_for_b));

    req.clear();
    ng::encode_answer(
        b"a1",
        b"call-ng-1",
        b"ta",
        b"tb",
        answer.as_bytes(),
        &[],
        &mut req,
    );
    let r = ng_call(&ctl, ng_addr, &req);
    let rep = ng::parse_reply(&r).unwrap();
    assert!(rep.is_ok(), "{}", String::from_utf8_lossy(&r));
    let to_a = sdp::parse(rep.sdp.unwrap()).unwrap();
    let relay_for_a = to_a.streams[0].port;
    assert_ne!(relay_for_a, relay_for_b);

    // A speaks first (latching its real source), B answers; 50 each way.
    let relay_a: SocketAddr = (
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
        relay_for_a,
    )
        .into();
    let relay_b: SocketAddr = (
        "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
        relay_for_b,
    )
        .into();
    for seq in 0..50u16 {
        a_rtp.send_to(&rtp(seq, 0xa), relay_a).unwrap();
    }
    let at_b = collect(&b_rtp, 50, 5);
    assert!(at_b.len() >= 45, "B got {} of 50", at_b.len());
    for (pkt, from) in &at_b {
        assert_eq!(
            *from, relay_b,
            "B hears the relay from the port its SDP named"
        );
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        assert_eq!(pkt, &rtp(seq, 0xa), "payload unchanged");
    }
    for seq in 0..50u16 {
        b_rtp.send_to(&rtp(seq, 0xb), relay_b).unwrap();
    }
    let at_a = collect(&a_rtp, 50, 5);
    assert!(
        at_a.len() >= 45,
        "A got {} of 50 back on its real port",
        at_a.len()
    );
    assert!(at_a
        .iter()
        .all(|(p, from)| *from == relay_a && p[11] == 0xb));

    // RTCP on the next ports, both ways.
    let rtcp = [0x81, 200, 0, 6, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0];
    a_rtcp
        .send_to(&rtcp, (relay_a.ip(), relay_for_a + 1))
        .unwrap();
    let got = collect(&b_rtcp, 1, 5);
    assert_eq!(got.len(), 1, "B's RTCP port gets A's report");
    assert_eq!(got[0].0, rtcp);
    b_rtcp
        .send_to(&rtcp, (relay_b.ip(), relay_for_b + 1))
        .unwrap();
    assert_eq!(
        collect(&a_rtcp, 1, 5).len(),
        1,
        "A's RTCP comes back to its real port"
    );

    // Query reports the packets; a stranger's packets are dropped.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    for seq in 0..10u16 {
        stranger.send_to(&rtp(seq, 0xee), relay_b).unwrap();
    }
    assert!(
        collect(&a_rtp, 1, 1).is_empty(),
        "a stranger never reaches A"
    );

    // `list` names the call whichever of the two cores answers it.
    for i in 0..4u8 {
        req.clear();
        ng::encode_list(&[b'l', b'0' + i], 32, &mut req);
        let from = UdpSocket::bind("127.0.0.1:0").unwrap();
        from.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = ng_call(&from, ng_addr, &req);
        assert!(
            String::from_utf8_lossy(&r).contains("call-ng-1"),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }

    req.clear();
    ng::encode_query(b"q1", b"call-ng-1", None, &mut req);
    let r = ng_call(&ctl, ng_addr, &req);
    let rep = ng::parse_reply(&r).unwrap();
    assert!(rep.is_ok());
    assert!(String::from_utf8_lossy(&r).contains("packets"));

    req.clear();
    ng::encode_delete(b"d1", b"call-ng-1", b"ta", None, &[], &mut req);
    let rep_bytes = ng_call(&ctl, ng_addr, &req);
    assert!(ng::parse_reply(&rep_bytes).unwrap().is_ok());
    // After delete nothing is forwarded.
    for seq in 100..110u16 {
        a_rtp.send_to(&rtp(seq, 0xa), relay_a).unwrap();
    }
    assert!(
        collect(&b_rtp, 1, 1).is_empty(),
        "deleted call relays nothing"
    );

    // Garbage gets an error reply under its cookie.
    let r = ng_call(&ctl, ng_addr, b"zz d7:command4:hulae");
    assert_eq!(ng::parse_reply(&r).unwrap().result, b"error");
    rt.shutdown().unwrap();
}
