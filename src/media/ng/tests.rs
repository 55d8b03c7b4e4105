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

    let del = "c3 d7:command6:delete7:call-id3:cid8:from-tag2:ft12:delete delayi0e5:flagsl4:fastee";
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

use crate::media::test_rng::Rng;

/// Random and mutated datagrams: parse, parse_reply and bencode::decode
/// return (Ok or Err) and never panic. Bounded: a fixed count.
#[test]
fn no_panic_on_mutated_datagrams() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
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
