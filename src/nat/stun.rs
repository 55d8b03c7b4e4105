//! STUN Binding (RFC 5389) on the SIP port: RFC 5626 clients send Binding
//! requests as keepalives and to learn their public address. Sans-IO.

use std::net::SocketAddr;

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// True when a datagram is a STUN message: SIP never starts with a byte
/// below 0x40, STUN always does, and carries the magic cookie (RFC 5389 §6).
pub fn is_stun(d: &[u8]) -> bool {
    d.len() >= HEADER_LEN
        && d[0] & 0xC0 == 0
        && u32::from_be_bytes([d[4], d[5], d[6], d[7]]) == MAGIC_COOKIE
        && usize::from(u16::from_be_bytes([d[2], d[3]])) + HEADER_LEN == d.len()
}

/// Writes the success response to a Binding request from `src` into `out`
/// (XOR-MAPPED-ADDRESS = `src`). Returns `false` for any other STUN message,
/// which is ignored.
pub fn binding_response(req: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
    if !is_stun(req) || u16::from_be_bytes([req[0], req[1]]) != BINDING_REQUEST {
        return false;
    }
    let txid = &req[8..20];
    out.clear();
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&[0, 0]); // length, patched below
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(txid);
    let xport = src.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match src {
        SocketAddr::V4(a) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&xport.to_be_bytes());
            let x = u32::from(*a.ip()) ^ MAGIC_COOKIE;
            out.extend_from_slice(&x.to_be_bytes());
        }
        SocketAddr::V6(a) => {
            out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
            out.extend_from_slice(&20u16.to_be_bytes());
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&xport.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            key[4..].copy_from_slice(txid);
            for (o, k) in a.ip().octets().iter().zip(key) {
                out.push(o ^ k);
            }
        }
    }
    let len = (out.len() - HEADER_LEN) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    true
}

/// Reads XOR-MAPPED-ADDRESS from a Binding success response (for tests and
/// the load generator).
pub fn mapped_address(resp: &[u8]) -> Option<SocketAddr> {
    if !is_stun(resp) || u16::from_be_bytes([resp[0], resp[1]]) != BINDING_SUCCESS {
        return None;
    }
    let mut i = HEADER_LEN;
    while i + 4 <= resp.len() {
        let typ = u16::from_be_bytes([resp[i], resp[i + 1]]);
        let len = usize::from(u16::from_be_bytes([resp[i + 2], resp[i + 3]]));
        let v = resp.get(i + 4..i + 4 + len)?;
        if typ == XOR_MAPPED_ADDRESS && len >= 8 {
            let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
            return match v[1] {
                0x01 => {
                    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC_COOKIE;
                    Some(SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
                }
                0x02 if len >= 20 => {
                    let mut key = [0u8; 16];
                    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                    key[4..].copy_from_slice(&resp[8..20]);
                    let mut ip = [0u8; 16];
                    for (j, b) in ip.iter_mut().enumerate() {
                        *b = v[4 + j] ^ key[j];
                    }
                    Some(SocketAddr::from((std::net::Ipv6Addr::from(ip), port)))
                }
                _ => None,
            };
        }
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        let mut r = vec![0x00, 0x01, 0x00, 0x00];
        r.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        r.extend_from_slice(&[7u8; 12]);
        r
    }

    #[test]
    fn binding_request_gets_the_source_back_xored() {
        for src in ["203.0.113.9:40312", "[2001:db8::9]:5062"] {
            let src: SocketAddr = src.parse().unwrap();
            let mut out = Vec::new();
            assert!(binding_response(&request(), src, &mut out));
            assert_eq!(&out[8..20], &[7u8; 12], "transaction id echoed");
            assert_eq!(mapped_address(&out), Some(src));
        }
    }

    #[test]
    fn sip_and_garbage_are_not_stun() {
        assert!(!is_stun(b"OPTIONS sip:x SIP/2.0\r\n\r\n"));
        assert!(!is_stun(&[0u8; 20]));
        let mut bad_len = request();
        bad_len[3] = 4;
        assert!(!is_stun(&bad_len));
        let mut out = Vec::new();
        let mut indication = request();
        indication[1] = 0x11;
        assert!(!binding_response(
            &indication,
            "127.0.0.1:1".parse().unwrap(),
            &mut out
        ));
    }
}
