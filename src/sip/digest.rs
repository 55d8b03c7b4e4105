//! HTTP digest maths for SIP (RFC 7616 as used by RFC 3261 §22): HA1, HA2 and
//! the response, for MD5 and SHA-256, `qop=auth` or none. Pure functions.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// A digest algorithm tether offers and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// Parses the `algorithm` parameter; absent means MD5 (RFC 7616 §3.3).
    pub fn parse(v: Option<&str>) -> Option<Algorithm> {
        match v {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Length of a hex digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        }
    }
}

/// A hex digest, stored inline (64 hex digits at most).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Hex {
    bytes: [u8; 64],
    len: u8,
}

impl Hex {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// Parses a lowercase or uppercase hex string of the algorithm's length.
    pub fn from_hex(s: &str, alg: Algorithm) -> Option<Hex> {
        if s.len() != alg.hex_len() || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let mut h = Hex {
            bytes: [0; 64],
            len: s.len() as u8,
        };
        for (d, c) in h.bytes.iter_mut().zip(s.bytes()) {
            *d = c.to_ascii_lowercase();
        }
        Some(h)
    }

    /// Compares with a hex string from the wire in constant time (no early exit).
    pub fn matches(&self, other: &str) -> bool {
        let a = &self.bytes[..usize::from(self.len)];
        let b = other.as_bytes();
        if a.len() != b.len() {
            return false;
        }
        a.iter()
            .zip(b)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y.to_ascii_lowercase()))
            == 0
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn to_hex(raw: &[u8]) -> Hex {
    let mut h = Hex {
        bytes: [0; 64],
        len: (raw.len() * 2) as u8,
    };
    for (i, b) in raw.iter().enumerate() {
        h.bytes[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
        h.bytes[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 0xf)];
    }
    h
}

/// Hashes `parts` joined by `:`.
fn hash_joined(alg: Algorithm, parts: &[&[u8]]) -> Hex {
    fn feed<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> Hex {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p);
        }
        to_hex(&d.finalize())
    }
    match alg {
        Algorithm::Md5 => feed(Md5::new(), parts),
        Algorithm::Sha256 => feed(Sha256::new(), parts),
    }
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> Hex {
    hash_joined(
        alg,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
}

/// The parameters of an Authorization header that enter the response.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `Some((nc, cnonce))` with `qop=auth`; `None` for the RFC 2069 form.
    pub qop_auth: Option<(&'a str, &'a str)>,
}

/// The expected `response` value given HA1.
pub fn response(alg: Algorithm, ha1: &Hex, input: &ResponseInput<'_>) -> Hex {
    let ha2 = hash_joined(alg, &[input.method.as_bytes(), input.uri.as_bytes()]);
    match input.qop_auth {
        Some((nc, cnonce)) => hash_joined(
            alg,
            &[
                ha1.as_str().as_bytes(),
                input.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                b"auth",
                ha2.as_str().as_bytes(),
            ],
        ),
        None => hash_joined(
            alg,
            &[
                ha1.as_str().as_bytes(),
                input.nonce.as_bytes(),
                ha2.as_str().as_bytes(),
            ],
        ),
    }
}

/// What a client needs to answer a challenge (RFC 7616 §3.4).
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub alg: Algorithm,
    pub username: &'a str,
    pub password: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub opaque: Option<&'a str>,
    pub method: &'a str,
    pub uri: &'a str,
    /// `Some((nc, cnonce))` when the challenge offered `qop=auth`.
    pub qop_auth: Option<(&'a str, &'a str)>,
}

/// The value of an `Authorization`/`Proxy-Authorization` header answering a
/// challenge: `Digest username=…, realm=…, nonce=…, uri=…, response=…, …`.
pub fn authorization(a: &Answer<'_>) -> String {
    let ha1 = ha1(a.alg, a.username, a.realm, a.password);
    let r = response(
        a.alg,
        &ha1,
        &ResponseInput {
            method: a.method,
            uri: a.uri,
            nonce: a.nonce,
            qop_auth: a.qop_auth,
        },
    );
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        a.username,
        a.realm,
        a.nonce,
        a.uri,
        r.as_str(),
        a.alg.as_str()
    );
    if let Some((nc, cnonce)) = a.qop_auth {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = a.opaque {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2617 §3.5 example (MD5, qop=auth).
    #[test]
    fn rfc2617_example() {
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        let r = response(
            Algorithm::Md5,
            &h,
            &ResponseInput {
                method: "GET",
                uri: "/dir/index.html",
                nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
                qop_auth: Some(("00000001", "0a4f113b")),
            },
        );
        assert_eq!(r.as_str(), "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1 example (SHA-256, qop=auth).
    #[test]
    fn rfc7616_sha256_example() {
        let h = ha1(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let r = response(
            Algorithm::Sha256,
            &h,
            &ResponseInput {
                method: "GET",
                uri: "/dir/index.html",
                nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                qop_auth: Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
            },
        );
        assert_eq!(
            r.as_str(),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn hex_compare_is_case_insensitive_and_length_checked() {
        let h = Hex::from_hex("ABCDEF0123456789abcdef0123456789", Algorithm::Md5).unwrap();
        assert!(h.matches("abcdef0123456789ABCDEF0123456789"));
        assert!(!h.matches("abcdef0123456789abcdef012345678"));
        assert!(Hex::from_hex("xyz", Algorithm::Md5).is_none());
        assert_eq!(Algorithm::parse(Some("sha-256")), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse(Some("SHA-512-256")), None);
    }
}
