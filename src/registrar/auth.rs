//! SIP digest authentication for REGISTER (401) and for requests a proxy
//! challenges (407), RFC 3261 §22 and RFC 7616: stateless nonces
//! (timestamp and HMAC), MD5 and SHA-256, `qop=auth`, stale detection and
//! `nc` replay protection. Credentials are HA1 hashes, so the server never
//! holds a password.
//!

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::sip::digest::{self, Algorithm, Hex, ResponseInput};
use crate::sip::writer::Writer;
use crate::sip::{AuthParams, Checked, HeaderName, Message, Uri};

/// HA1 hashes per user for one realm, loaded from a file.
///
/// File format: one user per line, `username:realm:md5_ha1[:sha256_ha1]`
/// (the first three fields are `htdigest`'s format). `#` starts a comment.
/// Lines for other realms are ignored. Make the hashes with
/// `printf '%s' 'user:realm:password' | md5sum` and `| sha256sum`.
#[derive(Debug, Default)]
pub struct Credentials {
    users: hashbrown::HashMap<Box<str>, UserHashes>,
}

#[derive(Debug, Clone, Copy)]
struct UserHashes {
    md5: Hex,
    sha256: Option<Hex>,
}

impl Credentials {
    /// Parses the file's text; errors name the line and what is wrong with it.
    pub fn parse(text: &str, realm: &str) -> Result<Credentials, String> {
        let mut users = hashbrown::HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split(':').collect();
            let bad = |what: &str| {
                format!(
                    "line {}: {what} (want username:realm:md5_ha1[:sha256_ha1])",
                    n + 1
                )
            };
            if !(3..=4).contains(&fields.len()) || fields[0].is_empty() {
                return Err(bad("wrong number of fields"));
            }
            if fields[1] != realm {
                continue;
            }
            let md5 = Hex::from_hex(fields[2], Algorithm::Md5)
                .ok_or_else(|| bad("md5_ha1 is not 32 hex digits"))?;
            let sha256 = match fields.get(3) {
                Some(h) => Some(
                    Hex::from_hex(h, Algorithm::Sha256)
                        .ok_or_else(|| bad("sha256_ha1 is not 64 hex digits"))?,
                ),
                None => None,
            };
            users.insert(fields[0].into(), UserHashes { md5, sha256 });
        }
        Ok(Credentials { users })
    }

    pub fn load(path: &Path, realm: &str) -> Result<Credentials, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Credentials::parse(&text, realm).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Builds credentials from plain passwords (tests and load generators).
    pub fn from_passwords<'a>(
        realm: &str,
        users: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Credentials {
        Credentials {
            users: users
                .into_iter()
                .map(|(u, p)| {
                    let h = UserHashes {
                        md5: digest::ha1(Algorithm::Md5, u, realm, p),
                        sha256: Some(digest::ha1(Algorithm::Sha256, u, realm, p)),
                    };
                    (u.into(), h)
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    fn ha1(&self, user: &str, alg: Algorithm) -> Option<Hex> {
        let h = self.users.get(user)?;
        match alg {
            Algorithm::Md5 => Some(h.md5),
            Algorithm::Sha256 => h.sha256,
        }
    }
}

/// What the authenticator decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Authenticated as this username.
    Authenticated(&'a str),
    /// Send a 401 (or, for [`Challenge::Proxy`], 407) challenge; `stale`
    /// when the nonce was merely old or reused.
    Challenge { stale: bool },
    /// Credentials were checked and are wrong (403). No detail is disclosed.
    Forbidden,
    /// The Authorization header is malformed (400).
    Malformed,
}

/// Which header pair a challenge uses (RFC 3261 §22.3): a registrar or UAS
/// answers 401 with WWW-Authenticate and reads Authorization; a proxy answers
/// 407 with Proxy-Authenticate and reads Proxy-Authorization. The nonces,
/// realm, credentials and `nc` records are the same for both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Www,
    Proxy,
}

impl Challenge {
    /// The status code of the challenge response.
    pub fn status(self) -> u16 {
        match self {
            Challenge::Www => 401,
            Challenge::Proxy => 407,
        }
    }

    /// The header carrying the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            Challenge::Www => "WWW-Authenticate",
            Challenge::Proxy => "Proxy-Authenticate",
        }
    }
}

/// Per-core authenticator: a shared nonce secret and credentials, and a
/// core-local record of the highest `nc` seen per nonce.
pub struct Authenticator {
    realm: Arc<str>,
    creds: Arc<Credentials>,
    secret: [u8; 32],
    nonce_ttl: u64,
    /// nonce hash -> (highest nc seen, nonce timestamp). A client's requests
    /// come from one source address, so they reach one core: a per-core
    /// record is enough for replay protection.
    nc_seen: hashbrown::HashMap<u64, (u32, u64)>,
    hasher: foldhash::fast::FixedState,
    last_purge: u64,
    algorithms: Vec<Algorithm>,
    serial: std::cell::Cell<u64>,
}

type HmacSha256 = Hmac<Sha256>;

/// Nonce = 16 hex digits of issue time (s) + 16 of a per-challenge serial +
/// 24 of HMAC(secret, time, serial, realm). The serial makes every challenge's
/// nonce unique, so `nc` replay tracking per nonce never confuses two clients
/// challenged in the same second.
const NONCE_LEN: usize = 56;

impl Authenticator {
    /// An authenticator offering SHA-256 then MD5 (see [`Authenticator::with_algorithms`]).
    pub fn new(
        realm: Arc<str>,
        creds: Arc<Credentials>,
        secret: [u8; 32],
        nonce_ttl: u64,
    ) -> Authenticator {
        Authenticator::with_algorithms(
            realm,
            creds,
            secret,
            nonce_ttl,
            vec![Algorithm::Sha256, Algorithm::Md5],
        )
    }

    /// Starts this core's nonce serials apart from every other core's.
    pub fn for_core(self, core: u16) -> Authenticator {
        let start = self.serial.get() ^ (u64::from(core) << 48);
        self.serial.set(start);
        self
    }

    /// An authenticator offering and accepting `algorithms`, in that order of preference.
    pub fn with_algorithms(
        realm: Arc<str>,
        creds: Arc<Credentials>,
        secret: [u8; 32],
        nonce_ttl: u64,
        algorithms: Vec<Algorithm>,
    ) -> Authenticator {
        Authenticator {
            realm,
            creds,
            secret,
            nonce_ttl,
            nc_seen: hashbrown::HashMap::new(),
            hasher: foldhash::fast::FixedState::with_seed(u64::from_le_bytes(
                secret[..8].try_into().unwrap_or([0; 8]),
            )),
            last_purge: 0,
            algorithms,
            // Distinct starting points per core, so cores never issue the same serial.
            serial: std::cell::Cell::new(u64::from_le_bytes(
                secret[8..16].try_into().unwrap_or([0; 8]),
            )),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// The nonce MAC covers the client's address: a nonce is only good from
    /// the address it was issued to. A client's packets from one address all
    /// reach one core, so the per-core `nc` record then stops every replay;
    /// a replay from elsewhere fails the MAC on whatever core it lands.
    fn mac(&self, ts: u64, serial: u64, source: SocketAddr) -> [u8; 12] {
        let mut m =
            <HmacSha256 as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(&ts.to_be_bytes());
        m.update(&serial.to_be_bytes());
        match source {
            SocketAddr::V4(a) => m.update(&a.ip().octets()),
            SocketAddr::V6(a) => m.update(&a.ip().octets()),
        }
        m.update(&source.port().to_be_bytes());
        m.update(self.realm.as_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&full[..12]);
        out
    }

    /// A fresh nonce for time `now_secs`, good only from `source`.
    pub fn nonce(&self, now_secs: u64, source: SocketAddr) -> [u8; NONCE_LEN] {
        let serial = self.serial.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.serial.set(serial);
        let mut out = [0u8; NONCE_LEN];
        hex_into(&now_secs.to_be_bytes(), &mut out[..16]);
        hex_into(&serial.to_be_bytes(), &mut out[16..32]);
        hex_into(&self.mac(now_secs, serial, source), &mut out[32..]);
        out
    }

    /// `Some(issue time)` when the nonce is one of ours (whatever its age).
    fn nonce_time(&self, nonce: &str, source: SocketAddr) -> Option<u64> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        let ts = u64::from_str_radix(nonce.get(..16)?, 16).ok()?;
        let serial = u64::from_str_radix(nonce.get(16..32)?, 16).ok()?;
        let mut want = [0u8; 24];
        hex_into(&self.mac(ts, serial, source), &mut want);
        let got = nonce.as_bytes()[32..].iter();
        let diff = want.iter().zip(got).fold(0u8, |a, (x, y)| a | (x ^ y));
        (diff == 0).then_some(ts)
    }

    /// Checks a request's Authorization header, as `validate` parsed it
    /// (and the Request-URI the digest must name).
    pub fn check<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        source: SocketAddr,
        now_secs: u64,
    ) -> Verdict<'m> {
        self.check_as(Challenge::Www, msg, checked, source, now_secs)
    }

    /// Checks the credentials header `which` names: Authorization, or
    /// Proxy-Authorization. The digest's method is the request's (INVITE for
    /// an INVITE) and its `uri` must name the Request-URI.
    pub fn check_as<'m>(
        &mut self,
        which: Challenge,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        source: SocketAddr,
        now_secs: u64,
    ) -> Verdict<'m> {
        self.purge(now_secs);
        let first = match which {
            Challenge::Www => &checked.authorization,
            Challenge::Proxy => &checked.proxy_authorization,
        };
        let ours;
        let creds = match first {
            // Proxies in a chain each add credentials for their own realm
            // (RFC 3261 §22.3): when the first is another realm's, look for
            // ours among the rest (which `validate` did not parse).
            Some(a) if which == Challenge::Proxy && a.get("realm") != Some(&*self.realm) => {
                ours = msg
                    .header_values(HeaderName::ProxyAuthorization)
                    .skip(1)
                    .filter_map(|v| AuthParams::parse(v, "Proxy-Authorization").ok())
                    .find(|a| a.is_digest() && a.get("realm") == Some(&*self.realm));
                ours.as_ref().or(first.as_ref())
            }
            _ => first.as_ref(),
        };
        match creds {
            Some(a) if a.is_digest() => {
                self.check_digest(msg, a, checked.request_uri.as_ref(), source, now_secs)
            }
            _ => Verdict::Challenge { stale: false },
        }
    }

    fn check_digest<'m>(
        &mut self,
        msg: &Message<'m>,
        a: &AuthParams<'m>,
        request_uri: Option<&Uri<'_>>,
        source: SocketAddr,
        now_secs: u64,
    ) -> Verdict<'m> {
        let (Some(user), Some(nonce), Some(uri), Some(resp)) = (
            a.get("username"),
            a.get("nonce"),
            a.get("uri"),
            a.get("response"),
        ) else {
            return Verdict::Malformed;
        };
        if a.get("realm") != Some(&*self.realm) {
            // Credentials for another realm: challenge for ours.
            return Verdict::Challenge { stale: false };
        }
        let Some(alg) =
            Algorithm::parse(a.get("algorithm")).filter(|al| self.algorithms.contains(al))
        else {
            return Verdict::Challenge { stale: false };
        };
        let Some(issued) = self.nonce_time(nonce, source) else {
            // Not our nonce, or not issued to this address (forged, replayed from
            // elsewhere, a NAT rebinding, or a secret change): a new challenge.
            return Verdict::Challenge { stale: false };
        };
        let qop = match a.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => match (a.get("nc"), a.get("cnonce")) {
                (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                _ => return Verdict::Malformed,
            },
            Some(_) => return Verdict::Malformed,
        };
        // RFC 2617 §3.2.2.5: the digest must be for this request's URI, or a
        // response captured for another target could be replayed here.
        if !same_target(uri, request_uri) {
            return Verdict::Malformed;
        }
        let method = msg.method().map_or("", |m| m.as_str());
        let Some(ha1) = self.creds.ha1(user, alg) else {
            return Verdict::Forbidden;
        };
        let expected = digest::response(
            alg,
            &ha1,
            &ResponseInput {
                method,
                uri,
                nonce,
                qop_auth: qop,
            },
        );
        if !expected.matches(resp) {
            return Verdict::Forbidden;
        }
        // Right password. Now freshness: an old nonce, or a replayed nc, is stale.
        if now_secs.saturating_sub(issued) > self.nonce_ttl || issued > now_secs + 5 {
            return Verdict::Challenge { stale: true };
        }
        let nc = match qop {
            Some((nc, _)) => match u32::from_str_radix(nc, 16) {
                Ok(v) if nc.len() == 8 => v,
                _ => return Verdict::Malformed,
            },
            // Without qop there is no counter: the nonce is good for one use.
            None => u32::MAX,
        };
        let key = std::hash::BuildHasher::hash_one(&self.hasher, nonce);
        match self.nc_seen.get_mut(&key) {
            Some((seen, _)) if nc <= *seen || *seen == u32::MAX => {
                return Verdict::Challenge { stale: true }
            }
            Some((seen, _)) => *seen = nc,
            None => {
                self.nc_seen.insert(key, (nc, issued));
            }
        }
        Verdict::Authenticated(user)
    }

    /// Drops replay records for nonces that have expired anyway.
    fn purge(&mut self, now_secs: u64) {
        if now_secs < self.last_purge + 10 {
            return;
        }
        self.last_purge = now_secs;
        let ttl = self.nonce_ttl;
        self.nc_seen
            .retain(|_, (_, issued)| now_secs.saturating_sub(*issued) <= ttl);
    }

    /// Adds the WWW-Authenticate challenges, SHA-256 first as RFC 8760 prefers.
    pub fn write_challenge(
        &self,
        w: &mut Writer<'_>,
        stale: bool,
        now_secs: u64,
        source: SocketAddr,
    ) {
        self.write_challenge_as(Challenge::Www, w, stale, now_secs, source);
    }

    /// Adds the challenges in the header `which` names (WWW-Authenticate
    /// or Proxy-Authenticate), one per algorithm, SHA-256 first.
    pub fn write_challenge_as(
        &self,
        which: Challenge,
        w: &mut Writer<'_>,
        stale: bool,
        now_secs: u64,
        source: SocketAddr,
    ) {
        let nonce = self.nonce(now_secs, source);
        let nonce = std::str::from_utf8(&nonce).unwrap_or("");
        let stale = if stale { ", stale=true" } else { "" };
        for &alg in &self.algorithms {
            w.header_parts(
                which.challenge_header(),
                &[
                    "Digest realm=\"",
                    &self.realm,
                    "\", nonce=\"",
                    nonce,
                    "\", algorithm=",
                    alg.as_str(),
                    ", qop=\"auth\"",
                    stale,
                ],
            );
        }
    }
}

/// The digest `uri` names the Request-URI: the same text, or the same
/// scheme, user, host and port written differently (case, default port).
fn same_target(digest_uri: &str, request_uri: Option<&Uri<'_>>) -> bool {
    if digest_uri == request_uri.map_or("", |u| u.raw) {
        return true;
    }
    // The Request-URI was parsed by `validate`; only the digest's is parsed here.
    match (Uri::parse(digest_uri), request_uri) {
        (Ok(a), Some(b)) => {
            let host = |u: &Uri<'_>| u.host.map(|h| h.to_string().to_ascii_lowercase());
            a.scheme == b.scheme
                && a.user == b.user
                && host(&a) == host(b)
                && a.port.unwrap_or(5060) == b.port.unwrap_or(5060)
        }
        _ => false,
    }
}

fn hex_into(raw: &[u8], out: &mut [u8]) {
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = b"0123456789abcdef"[usize::from(b >> 4)];
        out[2 * i + 1] = b"0123456789abcdef"[usize::from(b & 0xf)];
    }
}

/// A correct `Authorization:` line (realm `tether`, qop=auth) for tests.
#[cfg(test)]
pub(crate) fn authorization_header(
    alg: Algorithm,
    user: &str,
    pass: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
) -> String {
    let v = digest::authorization(&digest::Answer {
        alg,
        username: user,
        password: pass,
        realm: "tether",
        nonce,
        opaque: None,
        method: "REGISTER",
        uri,
        qop_auth: Some((nc, "0a4f113b")),
    });
    format!("Authorization: {v}\r\n")
}

#[cfg(test)]
mod tests;
