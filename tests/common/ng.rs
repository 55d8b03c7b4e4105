//! The ng control protocol from a test's side, and the RTP a test sends
//! through the relay it set up.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// Sends `req` to `to` and returns the first datagram back, resending up
/// to 3 times, each waiting the socket's read timeout (UDP may lose one).
pub fn ng_call(sock: &UdpSocket, to: SocketAddr, req: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        sock.send_to(req, to).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            buf.truncate(n);
            return buf;
        }
    }
    panic!("no ng reply from {to}");
}

/// An RTP packet: sequence `seq`, a payload derived from `tag` and `seq`
/// so that a changed or swapped packet shows.
pub fn rtp(seq: u16, tag: u8) -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, tag];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend((0..160u16).map(|i| (i as u8) ^ tag ^ seq as u8));
    p
}

/// Packets arriving on `s` within `secs`, until `want` of them.
pub fn collect(s: &UdpSocket, want: usize, secs: u64) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 2048];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while got.len() < want && Instant::now() < end {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            got.push((buf[..n].to_vec(), from));
        }
    }
    got
}
