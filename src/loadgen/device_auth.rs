//! Endpoints that authenticate the server (seed 000 lets a device challenge
//! a NOTIFY): `--answer 401` answers a request without credentials with a
//! digest challenge, and one with credentials with 200 when they are right
//! for the configured password, 403 when not.

use crate::sip::digest::{self, Algorithm, ResponseInput};
use crate::sip::Message;

const REALM: &str = "tether-bench";
const NONCE: &str = "b3nchn0nce";

/// The `WWW-Authenticate` value every endpoint sends.
pub const CHALLENGE: &str =
    "Digest realm=\"tether-bench\", nonce=\"b3nchn0nce\", qop=\"auth\", algorithm=MD5";

/// 401 (no credentials), 200 (right ones) or 403 (wrong ones).
pub fn verdict(m: &Message<'_>, password: &str) -> u16 {
    let Ok(Some(a)) = m.authorization() else {
        return 401;
    };
    let method = m.method().map(|x| x.as_str()).unwrap_or("");
    let (Some(user), Some(uri), Some(resp)) = (a.get("username"), a.get("uri"), a.get("response"))
    else {
        return 403;
    };
    if a.get("realm") != Some(REALM) || a.get("nonce") != Some(NONCE) {
        return 403;
    }
    let ha1 = digest::ha1(Algorithm::Md5, user, REALM, password);
    let qop = match (a.get("nc"), a.get("cnonce")) {
        (Some(nc), Some(cnonce)) => Some((nc, cnonce)),
        _ => None,
    };
    let want = digest::response(
        Algorithm::Md5,
        &ha1,
        &ResponseInput {
            method,
            uri,
            nonce: NONCE,
            qop_auth: qop,
        },
    );
    if want.matches(resp) {
        200
    } else {
        403
    }
}
