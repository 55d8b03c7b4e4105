//! The SIP the simulated endpoints write and read: REGISTER requests
//! (pieces joined without `fmt`, once per REGISTER sent), the credentials
//! answering a registrar's challenge, and what they read back from
//! responses (whose endpoint, which CSeq, the granted expiry).

use std::net::Ipv4Addr;

use crate::sip::writer::Decimal;
use crate::sip::{self, HeaderName};

/// What every endpoint's REGISTER shares (from the run's configuration).
#[derive(Debug, Clone)]
pub(crate) struct RegisterTemplate {
    /// Domain of the Request-URI and the AORs.
    pub domain: String,
    /// Give the Contact an RFC 5626 `+sip.instance` and `reg-id=1`.
    pub instance: bool,
    /// Extra Contact parameters.
    pub contact_params: String,
}

impl RegisterTemplate {
    /// Appends the REGISTER of endpoint `i` (user `u<i>`, Call-ID
    /// `lg<i>@<ip>`, branch `z9hG4bKlg<i>x<cseq>`) sent from `ip:port`;
    /// `auth` is a whole Authorization line or empty.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        msg: &mut Vec<u8>,
        i: u32,
        ip: Ipv4Addr,
        port: u16,
        cseq: u16,
        auth: &[u8],
        expires: u32,
    ) {
        let expires = Decimal::new(expires);
        let d = self.domain.as_bytes();
        let id = Decimal::new(i);
        let id = id.as_str().as_bytes();
        let port = Decimal::new(u32::from(port));
        let port = port.as_str().as_bytes();
        let mut ipbuf = [0u8; 15];
        let ip = ipv4_text(ip, &mut ipbuf);
        // The endpoint number as the last 12 digits of its instance UUID.
        let mut instance = *b"000000000000";
        let mut v = i;
        for d in instance.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        let cseq = Decimal::new(u32::from(cseq));
        let cseq = cseq.as_str().as_bytes();
        for part in [
            b"REGISTER sip:".as_slice(),
            d,
            b" SIP/2.0\r\nVia: SIP/2.0/UDP ",
            ip,
            b":",
            port,
            b";branch=z9hG4bKlg",
            id,
            b"x",
            cseq,
            b";rport\r\nMax-Forwards: 70\r\nFrom: <sip:u",
            id,
            b"@",
            d,
            b">;tag=lg",
            id,
            b"\r\nTo: <sip:u",
            id,
            b"@",
            d,
            b">\r\nCall-ID: lg",
            id,
            b"@",
            ip,
            b"\r\nCSeq: ",
            cseq,
            b" REGISTER\r\n",
            auth,
            b"Contact: <sip:u",
            id,
            b"@",
            ip,
            b":",
            port,
            b">",
            if self.instance {
                b";+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-"
            } else {
                b""
            },
            if self.instance { &instance[..] } else { b"" },
            if self.instance { b">\";reg-id=1" } else { b"" },
            self.contact_params.as_bytes(),
            b"\r\nExpires: ",
            expires.as_str().as_bytes(),
            b"\r\nAccept: application/sdp, application/application-server-contact-me\r\n\
User-Agent: tether-bench\r\nContent-Length: 0\r\n\r\n",
        ] {
            msg.extend_from_slice(part);
        }
    }
}

/// The endpoint a response is for: `i` from its Call-ID `lg<i>@…`.
pub(crate) fn endpoint_of(resp: &sip::Message<'_>) -> Option<u32> {
    resp.header(HeaderName::CallId)
        .and_then(|c| c.strip_prefix("lg"))
        .and_then(|c| c.split('@').next())
        .and_then(|c| c.parse::<u32>().ok())
}

/// The CSeq number of a response, if it starts with one. Only the digits
/// are read (not the method, not whether the header repeats): this runs
/// for every response, and a wrong number only makes it stale.
pub(crate) fn cseq_of(m: &sip::Message<'_>) -> Option<u32> {
    let v = m.header(HeaderName::CSeq)?.trim_start().as_bytes();
    let digits = v.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 {
        return None;
    }
    v[..digits].iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

/// The expiry the server granted in a 200 to REGISTER: the first Contact's
/// `expires`, else the Expires header.
pub(crate) fn granted_expires(resp: &sip::Message<'_>) -> Option<u32> {
    resp.contacts()
        .filter_map(Result::ok)
        .find_map(|c| c.expires().ok().flatten())
        .or_else(|| resp.expires().ok().flatten())
}

/// The Authorization line answering a 401 for endpoint `i` (user `u<i>`,
/// password `pattern` with `{i}` replaced), for the first challenge whose
/// algorithm is MD5 or SHA-256, in the server's order of preference.
pub(crate) fn answer_challenge(
    resp: &sip::Message<'_>,
    i: u32,
    pattern: &str,
    domain: &str,
) -> Option<String> {
    use crate::sip::digest::{self, Algorithm, ResponseInput};
    let (alg, ch) = resp
        .header_values(HeaderName::WwwAuthenticate)
        .filter_map(|v| sip::AuthParams::parse(v, "WWW-Authenticate").ok())
        .filter(|c| c.is_digest())
        .find_map(|c| Algorithm::parse(c.get("algorithm")).map(|a| (a, c)))?;
    let (realm, nonce) = (ch.get("realm")?, ch.get("nonce")?);
    let user = format!("u{i}");
    let password = pattern.replace("{i}", &i.to_string());
    let uri = format!("sip:{domain}");
    let cnonce = format!("{:08x}", i.wrapping_mul(2_654_435_761));
    let qop = ch
        .get("qop")
        .is_some_and(|q| q.split(',').any(|x| x.trim() == "auth"));
    let ha1 = digest::ha1(alg, &user, realm, &password);
    let input = ResponseInput {
        method: "REGISTER",
        uri: &uri,
        nonce,
        qop_auth: qop.then_some(("00000001", cnonce.as_str())),
    };
    let r = digest::response(alg, &ha1, &input);
    let qop_part = if qop {
        format!(", qop=auth, nc=00000001, cnonce=\"{cnonce}\"")
    } else {
        String::new()
    };
    Some(format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{}\", algorithm={}{qop_part}\r\n",
        r.as_str(),
        alg.as_str()
    ))
}

/// Dotted-quad text of an address into a stack buffer.
fn ipv4_text(ip: Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut n = 0;
    for (k, o) in ip.octets().iter().enumerate() {
        if k > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let d = Decimal::new(u32::from(*o));
        let d = d.as_str().as_bytes();
        buf[n..n + d.len()].copy_from_slice(d);
        n += d.len();
    }
    &buf[..n]
}

pub(crate) fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        _ => "Answer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(cseq: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.1.0.1:5060;branch=z9hG4bKlg7x3\r\n\
From: <sip:u7@d>;tag=lg7\r\nTo: <sip:u7@d>;tag=s\r\nCall-ID: lg7@127.1.0.1\r\n\
CSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn the_endpoint_and_cseq_of_a_response() {
        let r = response("3 REGISTER");
        let m = sip::parse(&r).unwrap();
        assert_eq!((endpoint_of(&m), cseq_of(&m)), (Some(7), Some(3)));
        for bad in ["REGISTER", "99999999999 REGISTER"] {
            let r = response(bad);
            if let Ok(m) = sip::parse(&r) {
                assert_eq!(cseq_of(&m), None, "{bad}");
            }
        }
        let r = response("4294967295 REGISTER");
        assert_eq!(cseq_of(&sip::parse(&r).unwrap()), Some(u32::MAX));
    }
}
