//! The flow token in the user part of tether's Record-Route URI (RFC 5626
//! §5.3, as an edge proxy). It names the core that owns the dialog and both
//! parties' NAT paths, so an in-dialog request finds its way back without
//! per-dialog state, and it carries a truncated HMAC so that a forged Route
//! cannot make tether send to a third party.
//!
//! Bytes: version, core (u16 BE), then caller and callee each as local
//! socket index, family (4 or 6), IP bytes, port (u16 BE); then
//! HMAC-SHA256(key, all of that) truncated to 10 bytes. Text:
//! base64url without padding, whose alphabet (`A-Z a-z 0-9 - _`) is legal
//! unescaped in a SIP URI user part.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::addr::PathKey;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
/// 80 bits: forging takes ~2^80 tries online, each one a request tether
/// rejects.
const MAC_LEN: usize = 10;
/// local, family, IPv6 address, port.
const MAX_PATH_LEN: usize = 1 + 1 + 16 + 2;
const MAX_BYTES: usize = 1 + 2 + 2 * MAX_PATH_LEN + MAC_LEN;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Which core owns a dialog and the NAT paths to its two parties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowToken {
    pub core: u16,
    pub caller: PathKey,
    pub callee: PathKey,
}

impl FlowToken {
    /// The longest encoding (two IPv6 paths), in characters.
    pub const MAX_LEN: usize = encoded_len(MAX_BYTES);

    /// Appends the token, authenticated with `key`, to `out`.
    pub fn encode(&self, key: &[u8; 32], out: &mut String) {
        self.encode_keyed(&TokenKey::new(key), out);
    }

    /// The token in `s` if it is well formed and authenticated with `key`.
    pub fn decode(s: &str, key: &[u8; 32]) -> Option<FlowToken> {
        FlowToken::decode_keyed(s, &TokenKey::new(key))
    }

    /// [`FlowToken::encode`] with a key prepared once.
    pub fn encode_keyed(&self, key: &TokenKey, out: &mut String) {
        let mut buf = [0u8; MAX_BYTES];
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(&[VERSION]);
        put(&self.core.to_be_bytes());
        for path in [self.caller, self.callee] {
            put(&[path.local()]);
            match path {
                PathKey::V4(_) => match path.remote() {
                    SocketAddr::V4(a) => {
                        put(&[4]);
                        put(&a.ip().octets());
                        put(&a.port().to_be_bytes());
                    }
                    SocketAddr::V6(_) => unreachable!("a V4 key has an IPv4 remote"),
                },
                PathKey::V6 { ip, port, .. } => {
                    put(&[6]);
                    put(&ip);
                    put(&port.to_be_bytes());
                }
            }
        }
        let tag = mac(key, &buf[..n]).finalize().into_bytes();
        buf[n..n + MAC_LEN].copy_from_slice(&tag[..MAC_LEN]);
        n += MAC_LEN;
        base64url_encode(&buf[..n], out);
    }

    /// [`FlowToken::decode`] with a key prepared once.
    pub fn decode_keyed(s: &str, key: &TokenKey) -> Option<FlowToken> {
        FlowToken::decode_with(s, Some(key))
    }

    /// The token's fields, well formed but with its MAC not checked: for a
    /// proxy that only reads which core keeps the dialog and takes every
    /// destination from that core's dialog state, so that a forged token
    /// can at most send a request to a core that answers 481.
    pub fn decode_unverified(s: &str) -> Option<FlowToken> {
        FlowToken::decode_with(s, None)
    }

    fn decode_with(s: &str, key: Option<&TokenKey>) -> Option<FlowToken> {
        let mut buf = [0u8; MAX_BYTES];
        let n = base64url_decode(s.as_bytes(), &mut buf)?;
        let bytes = &buf[..n];
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return None;
        }
        let core = u16::from_be_bytes(r.take()?);
        let caller = r.path()?;
        let callee = r.path()?;
        // Exactly the MAC must remain (the families fix the body length).
        let body_len = n.checked_sub(MAC_LEN)?;
        if r.0.len() != MAC_LEN {
            return None;
        }
        if let Some(key) = key {
            mac(key, &bytes[..body_len])
                .verify_truncated_left(&bytes[body_len..])
                .ok()?;
        }
        Some(FlowToken {
            core,
            caller,
            callee,
        })
    }
}

/// A token key with HMAC's inner and outer pads hashed once: each token
/// then costs two SHA-256 blocks instead of four (a proxy encodes one per
/// branch and decodes one per in-dialog request).
#[derive(Clone)]
pub struct TokenKey(HmacSha256);

impl TokenKey {
    pub fn new(key: &[u8; 32]) -> TokenKey {
        TokenKey(<HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }
}

fn mac(key: &TokenKey, body: &[u8]) -> HmacSha256 {
    let mut m = key.0.clone();
    m.update(body);
    m
}

/// Reads the token's fields front to back; `None` when bytes run out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }

    fn path(&mut self) -> Option<PathKey> {
        let local = self.u8()?;
        match self.u8()? {
            4 => {
                let ip = Ipv4Addr::from(self.take::<4>()?);
                let port = u16::from_be_bytes(self.take()?);
                Some(PathKey::new(
                    local,
                    SocketAddr::V4(SocketAddrV4::new(ip, port)),
                ))
            }
            6 => {
                // Built directly, not through `PathKey::new`, so that the
                // decoded key is the encoded one even for a mapped address.
                let ip = self.take::<16>()?;
                let port = u16::from_be_bytes(self.take()?);
                Some(PathKey::V6 { local, ip, port })
            }
            _ => None,
        }
    }
}

/// Characters for `n` bytes, unpadded.
const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

fn base64url_encode(bytes: &[u8], out: &mut String) {
    out.reserve(encoded_len(bytes.len()));
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    for chunk in bytes.chunks(3) {
        let mut v = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            v |= u32::from(b) << (16 - 8 * i);
        }
        // 1 byte → 2 characters, 2 → 3, 3 → 4.
        for i in 0..=chunk.len() {
            out.push(sym(v >> (18 - 6 * i)));
        }
    }
}

fn sextet(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes into `buf`, returning the byte count. Refuses anything longer
/// than `buf`, any character outside the alphabet, a length no encoding
/// has, and unused low bits that are not zero (so each token has exactly
/// one spelling).
fn base64url_decode(s: &[u8], buf: &mut [u8]) -> Option<usize> {
    if s.len() > encoded_len(buf.len()) || s.len() % 4 == 1 {
        return None;
    }
    let mut n = 0;
    for chunk in s.chunks(4) {
        let mut v = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            v |= sextet(c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        // The bits below the last whole byte must be zero.
        if v & ((1 << (24 - 8 * bytes)) - 1) != 0 {
            return None;
        }
        for i in 0..bytes {
            *buf.get_mut(n)? = (v >> (16 - 8 * i)) as u8;
            n += 1;
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn key(local: u8, addr: &str) -> PathKey {
        PathKey::new(local, addr.parse().unwrap())
    }

    fn samples() -> Vec<FlowToken> {
        let v4a = key(0, "198.51.100.7:5060");
        let v4b = key(3, "203.0.113.250:61000");
        let v6a = key(1, "[2001:db8::7]:5062");
        let v6b = key(255, "[2001:db8:ffff:1:2:3:4:5]:65535");
        vec![
            FlowToken {
                core: 0,
                caller: v4a,
                callee: v4b,
            },
            FlowToken {
                core: 65535,
                caller: v6a,
                callee: v6b,
            },
            FlowToken {
                core: 3,
                caller: v4a,
                callee: v6b,
            },
            FlowToken {
                core: 17,
                caller: v6a,
                callee: v4b,
            },
            FlowToken {
                core: 1,
                caller: key(0, "0.0.0.0:0"),
                callee: key(0, "[::]:0"),
            },
        ]
    }

    fn encoded(t: &FlowToken, key: &[u8; 32]) -> String {
        let mut s = String::new();
        t.encode(key, &mut s);
        s
    }

    /// A token over arbitrary body bytes with a valid MAC, to reach the
    /// structural checks past authentication.
    fn sealed(body: &[u8]) -> String {
        let mut bytes = body.to_vec();
        bytes
            .extend_from_slice(&mac(&TokenKey::new(&KEY), body).finalize().into_bytes()[..MAC_LEN]);
        let mut s = String::new();
        base64url_encode(&bytes, &mut s);
        s
    }

    #[test]
    fn tokens_round_trip_v4_v6_and_mixed() {
        for t in samples() {
            let s = encoded(&t, &KEY);
            assert_eq!(FlowToken::decode(&s, &KEY), Some(t), "{s}");
            assert!(s.len() <= FlowToken::MAX_LEN);
        }
        let longest = encoded(&samples()[1], &KEY);
        assert_eq!(longest.len(), FlowToken::MAX_LEN, "two IPv6 paths");
        assert_eq!(FlowToken::MAX_LEN, 71);
        assert_eq!(encoded(&samples()[0], &KEY).len(), 39, "two IPv4 paths");
    }

    #[test]
    fn encode_appends() {
        let t = samples()[0];
        let mut s = String::from("sip:");
        t.encode(&KEY, &mut s);
        assert_eq!(FlowToken::decode(&s[4..], &KEY), Some(t));
    }

    #[test]
    fn output_is_uri_user_safe() {
        for t in samples() {
            let s = encoded(&t, &KEY);
            assert!(s
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        }
    }

    #[test]
    fn every_character_change_is_rejected() {
        for t in samples() {
            let s = encoded(&t, &KEY);
            for i in 0..s.len() {
                for &c in ALPHABET.iter().chain(b"=+/.~%\0 ") {
                    if c == s.as_bytes()[i] {
                        continue;
                    }
                    let mut b = s.clone().into_bytes();
                    b[i] = c;
                    let forged = String::from_utf8(b).unwrap();
                    assert_eq!(FlowToken::decode(&forged, &KEY), None, "{forged}");
                }
            }
        }
    }

    #[test]
    fn every_bit_flip_of_the_bytes_is_rejected() {
        for t in samples() {
            let mut buf = [0u8; MAX_BYTES];
            let n = base64url_decode(encoded(&t, &KEY).as_bytes(), &mut buf).unwrap();
            for i in 0..n {
                for bit in 0..8 {
                    let mut b = buf[..n].to_vec();
                    b[i] ^= 1 << bit;
                    let mut s = String::new();
                    base64url_encode(&b, &mut s);
                    assert_eq!(FlowToken::decode(&s, &KEY), None, "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn truncations_and_extensions_are_rejected() {
        for t in samples() {
            let s = encoded(&t, &KEY);
            for len in 0..s.len() {
                assert_eq!(FlowToken::decode(&s[..len], &KEY), None, "{len}");
                assert_eq!(FlowToken::decode(&s[s.len() - len..], &KEY), None, "{len}");
            }
            for extra in ["A", "AA", "AAA", "AAAA"] {
                assert_eq!(FlowToken::decode(&format!("{s}{extra}"), &KEY), None);
            }
        }
    }

    #[test]
    fn a_different_key_rejects() {
        let mut other = KEY;
        other[31] ^= 1;
        for t in samples() {
            assert_eq!(FlowToken::decode(&encoded(&t, &KEY), &other), None);
            assert_eq!(FlowToken::decode(&encoded(&t, &other), &other), Some(t));
        }
    }

    #[test]
    fn authenticated_but_malformed_bodies_are_rejected() {
        let v4 = [0, 4, 192, 0, 2, 1, 0x13, 0xc4];
        let body = |version: u8, fam: u8| {
            let mut b = vec![version, 0, 1];
            b.extend_from_slice(&v4);
            b.extend_from_slice(&[0, fam, 192, 0, 2, 2, 0x13, 0xc4]);
            b
        };
        assert!(
            FlowToken::decode(&sealed(&body(1, 4)), &KEY).is_some(),
            "the control"
        );
        assert_eq!(
            FlowToken::decode(&sealed(&body(2, 4)), &KEY),
            None,
            "version"
        );
        assert_eq!(
            FlowToken::decode(&sealed(&body(0, 4)), &KEY),
            None,
            "version"
        );
        for fam in [0, 5, 6, 46, 255] {
            assert_eq!(
                FlowToken::decode(&sealed(&body(1, fam)), &KEY),
                None,
                "family {fam}"
            );
        }
        let mut long = body(1, 4);
        long.push(0);
        assert_eq!(
            FlowToken::decode(&sealed(&long), &KEY),
            None,
            "trailing byte"
        );
        assert_eq!(
            FlowToken::decode(&sealed(&[1, 0, 1]), &KEY),
            None,
            "no paths"
        );
        assert_eq!(FlowToken::decode(&sealed(&[]), &KEY), None, "empty");
    }

    #[test]
    fn non_canonical_spellings_are_rejected() {
        // 39 characters = 29 bytes: the last character carries 2 unused bits.
        let s = encoded(&samples()[0], &KEY);
        let last = s.as_bytes()[s.len() - 1];
        let v = sextet(last).unwrap();
        for low in 1..4 {
            let mut b = s.clone().into_bytes();
            b[s.len() - 1] = ALPHABET[(v ^ low) as usize];
            let forged = String::from_utf8(b).unwrap();
            assert_eq!(FlowToken::decode(&forged, &KEY), None);
        }
    }

    #[test]
    fn base64url_matches_known_vectors() {
        // RFC 4648 §10 vectors, unpadded, plus the two URL-safe symbols.
        let cases: [(&[u8], &str); 8] = [
            (b"", ""),
            (b"f", "Zg"),
            (b"fo", "Zm8"),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg"),
            (b"fooba", "Zm9vYmE"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xfb, 0xff, 0xbf], "-_-_"),
        ];
        for (bytes, text) in cases {
            let mut s = String::new();
            base64url_encode(bytes, &mut s);
            assert_eq!(s, text);
            let mut buf = [0u8; 8];
            let n = base64url_decode(text.as_bytes(), &mut buf).unwrap();
            assert_eq!(&buf[..n], bytes);
        }
    }

    #[test]
    fn random_strings_never_panic() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid = encoded(&samples()[2], &KEY).into_bytes();
        for round in 0..20_000 {
            let len = (next() % 90) as usize;
            let bytes: Vec<u8> = match round % 3 {
                // Alphabet only: exercises the structure and MAC checks.
                0 => (0..len).map(|_| ALPHABET[(next() % 64) as usize]).collect(),
                // A valid token with a few random alphabet changes.
                1 => {
                    let mut b = valid.clone();
                    for _ in 0..1 + next() % 3 {
                        let i = (next() as usize) % b.len();
                        b[i] = ALPHABET[(next() % 64) as usize];
                    }
                    b
                }
                // Any ASCII.
                _ => (0..len).map(|_| (next() % 128) as u8).collect(),
            };
            let s = String::from_utf8(bytes).unwrap();
            if let Some(t) = FlowToken::decode(&s, &KEY) {
                // Only the untouched token can pass.
                assert_eq!(s.as_bytes(), &valid[..], "{t:?}");
            }
        }
        // Non-ASCII text too.
        for s in ["é", "Zm9v€", "\u{10ffff}", &"A".repeat(1000)] {
            assert_eq!(FlowToken::decode(s, &KEY), None);
        }
    }
}
