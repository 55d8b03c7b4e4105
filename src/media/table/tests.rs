use super::*;

const A_IP: &str = "192.0.2.10";
const B_IP: &str = "198.51.100.20";

fn sdp(ip: &str, port: u16, extra: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}"
    )
    .into_bytes()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

/// A table with `pairs` pairs on ports 40000.., socket indices 0...
fn table(pairs: u16) -> Table {
    let mut t = Table::new(TableConfig {
        addr: "203.0.113.1".parse().unwrap(),
        relatch_ms: 2000,
        timeout_ms: 60_000,
        quarantine_ms: 5000,
        max_pairs: usize::from(pairs),
    });
    let ports: Vec<u16> = (0..pairs).map(|i| 40000 + 2 * i).collect();
    t.add_pairs(&ports);
    t
}

/// The port the rewritten SDP names on its m= line.
fn port_of(body: &[u8]) -> u16 {
    sdp::parse(body).unwrap().streams[0].port
}

/// The socket index of a port (pairs are in port order from 40000).
fn sock_of(port: u16) -> u32 {
    u32::from(port - 40000)
}

/// A call: A offers from behind a NAT (signals from another IP), B answers.
fn call(t: &mut Table) -> (SessionId, u16, u16) {
    let id = t.create(7);
    let mut out = Vec::new();
    let nat_src: IpAddr = "203.0.113.77".parse().unwrap();
    t.apply_sdp(
        0,
        id,
        &PartySdp::new(0, &sdp(A_IP, 5000, ""), Some(nat_src)),
        &mut out,
    )
    .unwrap();
    let to_b = port_of(&out);
    assert!(String::from_utf8_lossy(&out).contains("c=IN IP4 203.0.113.1\r\n"));
    t.apply_sdp(
        0,
        id,
        &PartySdp::new(1, &sdp(B_IP, 6000, ""), Some(B_IP.parse().unwrap())),
        &mut out,
    )
    .unwrap();
    let to_a = port_of(&out);
    assert_ne!(to_a, to_b);
    (id, to_a, to_b)
}

#[test]
fn packets_cross_over_to_the_other_party_from_its_leg() {
    let mut t = table(8);
    let (_, a_port, b_port) = call(&mut t);
    // A (NATed) sends from its public mapping: latched, goes to B's SDP address.
    let a_pub = sa("203.0.113.77", 31000);
    let v = t.relay(1_000, sock_of(a_port), a_pub, &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            sock: sock_of(b_port),
            to: sa(B_IP, 6000)
        }
    );
    // B answers from its own port: back to A's latched mapping, not its SDP.
    let v = t.relay(2_000, sock_of(b_port), sa(B_IP, 6000), &rtp(1));
    assert_eq!(
        v,
        Verdict::Forward {
            sock: sock_of(a_port),
            to: a_pub
        }
    );
    // RTCP uses the pairs' second sockets, and B's RTCP goes to port+1.
    let v = t.relay(
        3_000,
        sock_of(a_port) + 1,
        sa("203.0.113.77", 31001),
        &[0x81, 200, 0, 1, 0, 0, 0, 0],
    );
    assert_eq!(
        v,
        Verdict::Forward {
            sock: sock_of(b_port) + 1,
            to: sa(B_IP, 6001)
        }
    );
    assert_eq!(t.stats.packets, 3);
}

#[test]
fn a_party_not_behind_nat_is_latched_only_from_its_signalled_ip() {
    let mut t = table(8);
    let (_, _, b_port) = call(&mut t);
    // B signalled from its SDP address: a stranger cannot take its leg…
    let v = t.relay(1_000, sock_of(b_port), sa("192.0.2.66", 6000), &rtp(1));
    assert_eq!(v, Verdict::Drop);
    assert_eq!(t.stats.dropped_source, 1);
    // …but B from another port of its IP can (symmetric RTP on the real port).
    let v = t.relay(2_000, sock_of(b_port), sa(B_IP, 6100), &rtp(1));
    assert!(matches!(v, Verdict::Forward { .. }));
}

#[test]
fn relatch_needs_silence_and_three_packets_from_the_new_source() {
    let mut t = table(8);
    let (_, a_port, _) = call(&mut t);
    let (old, new) = (sa("203.0.113.77", 31000), sa("203.0.113.88", 42000));
    let s = sock_of(a_port);
    assert!(matches!(
        t.relay(0, s, old, &rtp(1)),
        Verdict::Forward { .. }
    ));
    // A stray packet while the old source is alive: dropped, never latched.
    for i in 0..5 {
        assert_eq!(
            t.relay(100_000 + i * 20_000, s, new, &rtp(2)),
            Verdict::Drop
        );
    }
    assert!(matches!(
        t.relay(300_000, s, old, &rtp(3)),
        Verdict::Forward { .. }
    ));
    // The old source falls silent for relatch_ms: the third packet moves it.
    let later = 300_000 + 2_000_000;
    assert_eq!(t.relay(later, s, new, &rtp(4)), Verdict::Drop);
    assert_eq!(t.relay(later + 20_000, s, new, &rtp(5)), Verdict::Drop);
    assert!(matches!(
        t.relay(later + 40_000, s, new, &rtp(6)),
        Verdict::Forward { .. }
    ));
    assert_eq!(t.stats.relatched, 1);
    // And the old one is now the stranger.
    assert_eq!(t.relay(later + 60_000, s, old, &rtp(7)), Verdict::Drop);
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let mut t = table(8);
    let (_, a_port, _) = call(&mut t);
    let src = sa("203.0.113.77", 31000);
    assert_eq!(t.relay(0, sock_of(a_port), src, &[0x80; 5]), Verdict::Drop);
    assert_eq!(t.relay(0, sock_of(a_port), src, &[0x40; 40]), Verdict::Drop);
    assert_eq!(t.stats.dropped_malformed, 2);
    // A malformed packet does not latch anyone.
    assert!(matches!(
        t.relay(0, sock_of(a_port), src, &rtp(1)),
        Verdict::Forward { .. }
    ));
}

#[test]
fn no_destination_until_the_answer() {
    let mut t = table(8);
    let id = t.create(1);
    let mut out = Vec::new();
    t.apply_sdp(
        0,
        id,
        &PartySdp::new(0, &sdp(A_IP, 5000, ""), None),
        &mut out,
    )
    .unwrap();
    // A's leg is what B was told about; B has sent nothing and signalled nothing.
    let b_leg_port = port_of(&out);
    // B has not said where it is: nothing of its is latched yet.
    let v = t.relay(0, sock_of(b_leg_port), sa(B_IP, 6000), &rtp(1));
    assert_eq!(v, Verdict::Drop);
    assert_eq!(t.stats.dropped_source, 1);
    // A's own packets have nowhere to go yet.
    let a_leg_port = if b_leg_port == 40000 { 40002 } else { 40000 };
    assert_eq!(
        t.relay(0, sock_of(a_leg_port), sa(A_IP, 5000), &rtp(1)),
        Verdict::Drop
    );
    assert_eq!(t.stats.dropped_no_destination, 1);
}

#[test]
fn exhaustion_refuses_and_ending_quarantines_the_pairs() {
    let mut t = table(4);
    let (id, a_port, _) = call(&mut t);
    let (_id2, _, _) = call(&mut t);
    let id3 = t.create(3);
    let mut out = Vec::new();
    let r = t.apply_sdp(
        0,
        id3,
        &PartySdp::new(0, &sdp(A_IP, 5000, ""), None),
        &mut out,
    );
    assert_eq!(r, Err(MediaError::NoPorts));
    assert_eq!(t.stats.ports_exhausted, 1);
    t.end(10_000, id);
    assert_eq!(t.pairs_in_use(), 2);
    // A late packet to the old call's port goes nowhere.
    assert_eq!(
        t.relay(
            10_500_000,
            sock_of(a_port),
            sa("203.0.113.77", 31000),
            &rtp(9)
        ),
        Verdict::Drop
    );
    assert_eq!(
        t.apply_sdp(
            14_000,
            id3,
            &PartySdp::new(0, &sdp(A_IP, 5000, ""), None),
            &mut out
        ),
        Err(MediaError::NoPorts),
        "still in quarantine"
    );
    t.apply_sdp(
        15_000,
        id3,
        &PartySdp::new(0, &sdp(A_IP, 5000, ""), None),
        &mut out,
    )
    .unwrap();
    // The old id is gone for good.
    assert_eq!(
        t.apply_sdp(
            15_000,
            id,
            &PartySdp::new(0, &sdp(A_IP, 5000, ""), None),
            &mut out
        ),
        Err(MediaError::Gone)
    );
}

#[test]
fn the_pool_asks_for_more_pairs_as_it_runs_low() {
    let mut t = Table::new(TableConfig {
        max_pairs: 1000,
        ..Default::default()
    });
    assert_eq!(t.wants_pairs(), CHUNK);
    let ports: Vec<u16> = (0..CHUNK as u16).map(|i| 30000 + 2 * i).collect();
    t.add_pairs(&ports);
    assert_eq!(t.wants_pairs(), 0);
    // Calls take pairs: below a quarter free, half as many again.
    let mut out = Vec::new();
    for _ in 0..12 {
        let id = t.create(0);
        let body = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 0\r\n";
        t.apply_sdp(0, id, &PartySdp::new(0, body, None), &mut out)
            .unwrap();
    }
    assert_eq!(t.wants_pairs(), CHUNK);
    let mut t = Table::new(TableConfig {
        max_pairs: 10,
        ..Default::default()
    });
    assert_eq!(t.wants_pairs(), 10);
    t.add_pairs(&[30000; 10]);
    assert_eq!(t.wants_pairs(), 0);
}

#[test]
fn a_silent_answered_call_times_out_once_and_a_held_one_never() {
    let mut t = table(8);
    let (id, a_port, _) = call(&mut t);
    t.sweep(0);
    assert!(t.poll_timed_out().is_none(), "not armed before the answer");
    t.arm(1_000, id);
    t.relay(
        30_000_000,
        sock_of(a_port),
        sa("203.0.113.77", 31000),
        &rtp(1),
    );
    t.sweep(60_000);
    assert!(t.poll_timed_out().is_none(), "media 30 s ago");
    t.sweep(90_000);
    assert_eq!(t.poll_timed_out(), Some((id, 7)));
    assert!(t.poll_timed_out().is_none());
    // On hold (a=inactive both ways): no timeout.
    let (held, _, _) = call(&mut t);
    let mut out = Vec::new();
    t.apply_sdp(
        91_000,
        held,
        &PartySdp::new(0, &sdp(A_IP, 5000, "a=inactive\r\n"), None),
        &mut out,
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("a=inactive"));
    t.arm(91_000, held);
    t.sweep(500_000);
    let mut seen = Vec::new();
    while let Some((s, _)) = t.poll_timed_out() {
        seen.push(s);
    }
    assert!(!seen.contains(&held));
}

#[test]
fn streams_added_later_get_their_own_pairs_and_port_zero_is_kept() {
    let mut t = table(8);
    let (id, _, _) = call(&mut t);
    let two = b"v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    let mut out = Vec::new();
    t.apply_sdp(0, id, &PartySdp::new(0, two, None), &mut out)
        .unwrap();
    let s = sdp::parse(&out).unwrap();
    assert_eq!(s.streams.len(), 2);
    assert_ne!(s.streams[0].port, s.streams[1].port);
    assert_eq!(t.pairs_in_use(), 4);
    // The video stream removed (port 0) stays 0 in what is sent on.
    let removed = b"v=0\r\no=- 1 3 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n";
    t.apply_sdp(0, id, &PartySdp::new(0, removed, None), &mut out)
        .unwrap();
    assert_eq!(sdp::parse(&out).unwrap().streams[1].port, 0);
    let info = t.info(id);
    assert_eq!(info.len(), 2);
    assert_eq!(info[1].media, "video");
}

#[test]
fn unparsable_sdp_is_refused_with_a_reason_and_changes_nothing() {
    let mut t = table(8);
    let id = t.create(1);
    let mut out = Vec::new();
    let r = t.apply_sdp(0, id, &PartySdp::new(0, b"hello", None), &mut out);
    assert!(matches!(r, Err(MediaError::Sdp(_))));
    assert_eq!(t.pairs_in_use(), 0);
}

#[test]
fn loss_and_jitter_reach_the_leg_statistics() {
    let mut t = table(8);
    let (id, a_port, _) = call(&mut t);
    let src = sa("203.0.113.77", 31000);
    for seq in (1..=50u16).filter(|s| s % 10 != 0) {
        t.relay(u64::from(seq) * 20_000, sock_of(a_port), src, &rtp(seq));
    }
    let info = t.info(id);
    let a = &info[0].legs[0];
    assert_eq!(a.packets, 45);
    assert_eq!(a.lost, 4);
    assert_eq!(a.latched, Some(src));
    assert_eq!(t.totals().0, 4);
}

#[test]
fn a_stream_set_to_port_zero_stops_relaying_even_once_latched() {
    let mut t = table(8);
    let (id, a_port, b_port) = call(&mut t);
    let a_pub = sa("203.0.113.77", 31000);
    assert!(matches!(
        t.relay(1_000, sock_of(a_port), a_pub, &rtp(1)),
        Verdict::Forward { .. }
    ));
    assert!(matches!(
        t.relay(1_000, sock_of(b_port), sa(B_IP, 6000), &rtp(1)),
        Verdict::Forward { .. }
    ));
    // B disables the stream: A's packets no longer reach B's latched address.
    let mut out = Vec::new();
    t.apply_sdp(
        2_000,
        id,
        &PartySdp::new(1, &sdp(B_IP, 0, ""), Some(B_IP.parse().unwrap())),
        &mut out,
    )
    .unwrap();
    assert_eq!(port_of(&out), 0);
    assert_eq!(
        t.relay(3_000, sock_of(a_port), a_pub, &rtp(2)),
        Verdict::Drop
    );
    assert_eq!(t.stats.dropped_no_destination, 1);
}
