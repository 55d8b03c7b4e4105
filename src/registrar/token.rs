//! Capability tokens (seed 002): `Authorization: Bearer <token>` on a
//! REGISTER (RFC 8898's scheme) lets a device register without a digest
//! round trip. The token is a JWT (RFC 7519) in compact form, signed with
//! HMAC-SHA-256 (`alg` HS256, RFC 7518 §3.2) under one of
//! `auth.token.secrets`, with the claims:
//!
//! - `sub`: the AOR the device may register, `user@domain`;
//! - `scopes`: the scopes it may register contacts in: a Contact with
//!   `;scope=mobile` needs `"mobile"`, one without a scope needs `""`, and
//!   `"*"` allows any (seed 002's namespaces: `foo` and its `foo mobile`,
//!   `foo web` sub-scopes);
//! - `exp`, optional `nbf`: NumericDates (Unix seconds).
//!
//! Only HS256 is accepted: `none` and every other `alg` are refused before
//! anything else is read, so no header can choose how it is checked. The
//! signature is checked before any claim is believed. Verification needs
//! wall time; it is passed in (`now_unix`), never read here.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (bytes): a sane token is a few hundred; this
/// bounds the work and the allocations an attacker can ask for.
const MAX_TOKEN: usize = 4096;

/// Why a token was refused. Each is one 403 reason phrase and Warning text;
/// none says anything about the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts, not JSON, a claim missing or mistyped,
    /// or a `crit` header this verifier cannot honour.
    Malformed,
    /// `alg` is not HS256 (`none` included).
    Algorithm,
    /// The signature matches none of the configured secrets.
    Signature,
    /// `exp` has passed.
    Expired,
    /// `nbf` has not come yet.
    NotYetValid,
    /// `sub` is another AOR than the REGISTER's To.
    WrongAor,
    /// A contact's scope is not in `scopes`.
    Scope,
}

impl TokenError {
    /// The 403's reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "Malformed Token",
            TokenError::Algorithm => "Token Algorithm Not Allowed",
            TokenError::Signature => "Bad Token Signature",
            TokenError::Expired => "Token Expired",
            TokenError::NotYetValid => "Token Not Yet Valid",
            TokenError::WrongAor => "Token For Another AOR",
            TokenError::Scope => "Token Scope Not Allowed",
        }
    }

    /// The text of the 403's `Warning: 399 tether "…"` (RFC 3261 §20.43).
    pub fn warning(self) -> &'static str {
        match self {
            TokenError::Malformed => "bearer token is not a well-formed HS256 JWT with sub and exp",
            TokenError::Algorithm => "bearer token alg must be HS256",
            TokenError::Signature => "bearer token signature does not verify",
            TokenError::Expired => "bearer token has expired (exp)",
            TokenError::NotYetValid => "bearer token is not valid yet (nbf)",
            TokenError::WrongAor => "bearer token sub names another AOR than To",
            TokenError::Scope => "a Contact scope is not in the bearer token's scopes",
        }
    }
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The AOR, `user@domain`.
    pub sub: String,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub exp: u64,
    pub nbf: Option<u64>,
}

impl Claims {
    /// `sub` names `aor` (`user@host` with the host lowercased, as
    /// [`super::canonical_aor`] makes it): the user part exactly (RFC 3261
    /// §19.1.4), the host whatever its case.
    pub fn names(&self, aor: &str) -> bool {
        match (self.sub.rsplit_once('@'), aor.rsplit_once('@')) {
            (Some((su, sh)), Some((au, ah))) => su == au && sh.eq_ignore_ascii_case(ah),
            _ => false,
        }
    }

    /// A contact in `scope` (`""` for a contact without one) may register.
    /// Without case, as lookups match scopes (`foo@d:Mobile` reaches
    /// `scope=mobile`).
    pub fn allows(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "*" || s.eq_ignore_ascii_case(scope))
    }
}

/// The claims as the JSON may write them: NumericDates may have fractions.
#[derive(serde::Deserialize)]
struct RawClaims {
    sub: String,
    #[serde(default)]
    scopes: Vec<String>,
    exp: f64,
    #[serde(default)]
    nbf: Option<f64>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The secrets tokens are checked against: the first signs new tokens, the
/// others are still accepted, so a secret can be rotated with an overlap.
#[derive(Clone)]
pub struct TokenKeys {
    /// One keyed HMAC per secret, cloned per check (no re-keying).
    macs: Vec<HmacSha256>,
}

impl std::fmt::Debug for TokenKeys {
    // Never print a secret, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys({} secrets)", self.macs.len())
    }
}

impl TokenKeys {
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> TokenKeys {
        TokenKeys {
            macs: secrets
                .into_iter()
                .map(|s| HmacSha256::new_from_slice(s.as_ref()).expect("HMAC takes any key length"))
                .collect(),
        }
    }

    /// Checks `token` at `now_unix` (seconds): its form and algorithm, its
    /// signature under one of the secrets, then `exp` and `nbf`. The AOR and
    /// scopes are the caller's to check against the request
    /// ([`Claims::names`], [`Claims::allows`]).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN {
            return Err(TokenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_json(h64)?;
        // Exactly HS256, case and all (RFC 7515 §4.1.1: case-sensitive).
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        // RFC 7515 §4.1.11: an extension the verifier must understand.
        if header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        let sig = B64.decode(s64).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..h64.len() + 1 + p64.len()];
        let good = self.macs.iter().any(|m| {
            let mut m = m.clone();
            m.update(signed.as_bytes());
            // Constant time: a forger learns nothing from how long it took.
            m.verify_slice(&sig).is_ok()
        });
        if !good {
            return Err(TokenError::Signature);
        }
        let raw: RawClaims = decode_json(p64)?;
        let date = |d: f64| {
            (d.is_finite() && d >= 0.0)
                .then_some(d as u64)
                .ok_or(TokenError::Malformed)
        };
        let claims = Claims {
            sub: raw.sub,
            scopes: raw.scopes,
            exp: date(raw.exp)?,
            nbf: raw.nbf.map(date).transpose()?,
        };
        // RFC 7519 §4.1.4: not accepted on or after `exp`.
        if now_unix >= claims.exp {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| now_unix < nbf) {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// A token for `claims` signed with `secret` (HS256): for the tests, the
/// benches and operators' tooling; tether itself never issues tokens.
pub fn mint(secret: &[u8], claims: &Claims) -> String {
    let mut payload = serde_json::json!({
        "sub": claims.sub,
        "scopes": claims.scopes,
        "exp": claims.exp,
    });
    if let Some(nbf) = claims.nbf {
        payload["nbf"] = nbf.into();
    }
    sign_parts(
        secret,
        br#"{"alg":"HS256","typ":"JWT"}"#,
        payload.to_string().as_bytes(),
    )
}

/// `header.payload.signature` of raw JSON parts (tests build broken tokens
/// with it).
pub fn sign_parts(secret: &[u8], header: &[u8], payload: &[u8]) -> String {
    let mut t = B64.encode(header);
    t.push('.');
    t.push_str(&B64.encode(payload));
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(t.as_bytes());
    let sig = m.finalize().into_bytes();
    t.push('.');
    t.push_str(&B64.encode(sig));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OLD: &[u8] = b"an older secret, still accepted!";

    fn claims(exp: u64, nbf: Option<u64>) -> Claims {
        Claims {
            sub: "alice@example.com".into(),
            scopes: vec!["mobile".into(), "".into()],
            exp,
            nbf,
        }
    }

    fn keys() -> TokenKeys {
        TokenKeys::new([KEY, OLD])
    }

    #[test]
    fn a_good_token_verifies_and_names_its_aor_and_scopes() {
        let t = mint(KEY, &claims(NOW + 60, Some(NOW - 60)));
        let c = keys().verify(&t, NOW).unwrap();
        assert_eq!(c, claims(NOW + 60, Some(NOW - 60)));
        assert!(c.names("alice@example.com"));
        assert!(c.names("alice@EXAMPLE.com"), "hosts compare without case");
        assert!(!c.names("Alice@example.com"), "users compare exactly");
        assert!(!c.names("bob@example.com"));
        assert!(c.allows("mobile") && c.allows("MOBILE") && c.allows(""));
        assert!(!c.allows("web"));
        let any = Claims {
            scopes: vec!["*".into()],
            ..c
        };
        assert!(any.allows("web") && any.allows(""));
    }

    #[test]
    fn expiry_is_exclusive_and_nbf_inclusive() {
        let t = mint(KEY, &claims(NOW, None));
        assert_eq!(keys().verify(&t, NOW - 1).map(|c| c.exp), Ok(NOW));
        assert_eq!(keys().verify(&t, NOW), Err(TokenError::Expired));
        let t = mint(KEY, &claims(NOW + 100, Some(NOW + 10)));
        assert_eq!(keys().verify(&t, NOW + 9), Err(TokenError::NotYetValid));
        assert!(keys().verify(&t, NOW + 10).is_ok());
    }

    #[test]
    fn rotation_accepts_every_listed_secret_and_no_other() {
        let t = mint(OLD, &claims(NOW + 60, None));
        assert!(keys().verify(&t, NOW).is_ok());
        // The old secret dropped from the list: its tokens stop working.
        assert_eq!(
            TokenKeys::new([KEY]).verify(&t, NOW),
            Err(TokenError::Signature)
        );
        let stranger = mint(b"someone else's secret..........!", &claims(NOW + 60, None));
        assert_eq!(keys().verify(&stranger, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn only_hs256_and_never_none() {
        let payload = br#"{"sub":"alice@example.com","scopes":["*"],"exp":1900000000}"#;
        for header in [
            &br#"{"alg":"none"}"#[..],
            br#"{"alg":"None","typ":"JWT"}"#,
            br#"{"alg":"hs256"}"#,
            br#"{"alg":"HS512"}"#,
            br#"{"alg":"RS256"}"#,
        ] {
            let t = sign_parts(KEY, header, payload);
            assert_eq!(keys().verify(&t, NOW), Err(TokenError::Algorithm), "{t}");
        }
        // The classic `none` forgery: an empty signature.
        let t = sign_parts(KEY, br#"{"alg":"none"}"#, payload);
        let unsigned = &t[..t.rfind('.').unwrap() + 1];
        assert_eq!(keys().verify(unsigned, NOW), Err(TokenError::Algorithm));
        let crit = sign_parts(KEY, br#"{"alg":"HS256","crit":["exp"]}"#, payload);
        assert_eq!(keys().verify(&crit, NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn a_tampered_token_fails_its_signature() {
        let t = mint(KEY, &claims(NOW + 60, None));
        let (head, sig) = t.rsplit_once('.').unwrap();
        let (h, _) = head.split_once('.').unwrap();
        // Same header and signature, a payload granting every scope.
        let forged = B64.encode(br#"{"sub":"alice@example.com","scopes":["*"],"exp":1900000000}"#);
        let t2 = format!("{h}.{forged}.{sig}");
        assert_eq!(keys().verify(&t2, NOW), Err(TokenError::Signature));
        // One flipped signature character.
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(keys().verify(&bad, NOW), Err(TokenError::Signature));
    }

    #[test]
    fn malformed_tokens_are_named_malformed() {
        let sig = |p: &[u8]| sign_parts(KEY, br#"{"alg":"HS256"}"#, p);
        let cases = [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.e30.e30".into(),
            "e30.e30.e30".into(),
            "x".repeat(MAX_TOKEN + 1),
            // Signed, but the claims are wrong.
            sig(b"not json"),
            sig(br#"{"scopes":[],"exp":1900000000}"#),
            sig(br#"{"sub":"alice@example.com"}"#),
            sig(br#"{"sub":"a@b","exp":"tomorrow"}"#),
            sig(br#"{"sub":"a@b","exp":-5}"#),
            sig(br#"{"sub":"a@b","exp":1900000000,"scopes":"mobile"}"#),
        ];
        for t in &cases {
            assert_eq!(keys().verify(t, NOW), Err(TokenError::Malformed), "{t:.60}");
        }
        // A fractional NumericDate is a date.
        let t = sig(br#"{"sub":"a@b","exp":1900000000.5,"nbf":1.5}"#);
        assert_eq!(keys().verify(&t, NOW).map(|c| c.exp), Ok(1_900_000_000));
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let s = format!("{:?}", keys());
        assert!(!s.contains("0123456789") && s.contains("2 secrets"), "{s}");
    }
}
