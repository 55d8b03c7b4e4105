//! What the memory benches share: their count argument, the process RSS,
//! and the REGISTER of a typical UA. Each bench uses what it needs of it.
#![allow(dead_code)]

/// The bench's count: the first numeric argument (`cargo bench --bench X -- N`),
/// else `default`.
pub fn count_arg(default: u32) -> u32 {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The process's resident set (bytes), from /proc.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The REGISTER of typical UA number `i`: RFC 5626 instance and reg-id, a
/// NATed Contact with `transport=udp`, an Accept with the contact-me type.
/// Written into `msg` (cleared first).
pub fn typical_register(msg: &mut Vec<u8>, i: u32) {
    use std::io::Write;
    msg.clear();
    let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    write!(
        msg,
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.{a}.{b}.{c}:5060;branch=z9hG4bK{i:x};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:u{i:07}@example.com>;tag={i:x}\r\nTo: <sip:u{i:07}@example.com>\r\n\
Call-ID: {i:08x}-reg@10.{a}.{b}.{c}\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:u{i:07}@10.{a}.{b}.{c}:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-{i:012x}>\";reg-id=1\r\n\
Expires: 3600\r\nAccept: application/sdp, application/application-server-contact-me\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("writing to a Vec cannot fail");
}
