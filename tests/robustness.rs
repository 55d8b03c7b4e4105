//! Bad input loses nothing: 10,000 random, truncated and mutated datagrams
//! at a running tether, then a REGISTER still succeeds and the bindings
//! made before the storm are intact.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use tether::sip;

fn register(user: &str, port: u16, cseq: u32) -> Vec<u8> {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{user}{cseq};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag={cseq}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: {user}-call\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A small deterministic generator, so a failure replays exactly.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn exchange(sock: &UdpSocket, to: std::net::SocketAddr, msg: &[u8]) -> Vec<u8> {
    sock.send_to(msg, to).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        let m = sip::parse(&buf[..n]).unwrap();
        // Skip 400s still queued from the storm; take the answer to this request.
        if m.status() == Some(200) || m.status() == Some(423) {
            return buf[..n].to_vec();
        }
    }
}

#[test]
fn ten_thousand_bad_datagrams_then_register_works_and_nothing_is_lost() {
    let (rt, addr) = common::start("");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let port = sock.local_addr().unwrap().port();
    for u in 0..50 {
        let r = exchange(&sock, addr, &register(&format!("keep{u}"), port, 1));
        assert_eq!(sip::parse(&r).unwrap().status(), Some(200));
    }

    // The storm, from several sockets (so both workers get some).
    let senders: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let template = register("victim", port, 1);
    let mut rng = Lcg(0x7e7e);
    for i in 0..10_000usize {
        let d: Vec<u8> = match i % 4 {
            0 => (0..rng.next() % 1500).map(|_| rng.next() as u8).collect(),
            1 => template[..(rng.next() as usize % template.len())].to_vec(),
            2 => {
                let mut m = template.clone();
                for _ in 0..(1 + rng.next() % 8) {
                    let at = rng.next() as usize % m.len();
                    m[at] = rng.next() as u8;
                }
                m
            }
            _ => vec![b'A'; 9000 + (rng.next() % 50_000) as usize],
        };
        let _ = senders[i % senders.len()].send_to(&d, addr);
        // Pace the storm so the kernel queue, not tether, is not the limit being tested.
        if i % 500 == 499 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(300));

    let r = exchange(&sock, addr, &register("after", port, 1));
    assert_eq!(
        sip::parse(&r).unwrap().status(),
        Some(200),
        "{}",
        String::from_utf8_lossy(&r)
    );
    for u in 0..50 {
        assert_eq!(
            rt.directory()
                .lookup(&format!("keep{u}@127.0.0.1"), 1)
                .len(),
            1,
            "keep{u} lost"
        );
    }
    assert_eq!(rt.directory().lookup("after@127.0.0.1", 1).len(), 1);
    rt.shutdown().expect("no worker panicked");
}
