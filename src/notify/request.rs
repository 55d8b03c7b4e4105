//! Requests derived from one tether already sent: the ACK of a non-2xx, the
//! CANCEL of a ringing INVITE, the ACK and BYE after a 2xx, and the retry
//! that answers a digest challenge. The original is our own writer's output,
//! so its lines have a known shape and can be copied and edited by name.

use crate::sip::writer::push_u32;

// Byte scans (memchr) rather than `str` patterns: a wake-up job derives an
// ACK and a BYE per device, and `str::split("\r\n")`'s two-way searcher was
// ~10% of a job's CPU.
fn split(stored: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(stored, b"\r\n\r\n") {
        Some(i) => (&stored[..i], &stored[i + 4..]),
        None => (stored, &[]),
    }
}

/// The header block's lines, without their CRLF.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn name_of(line: &[u8]) -> &[u8] {
    let end = memchr::memchr(b':', line).unwrap_or(line.len());
    line[..end].trim_ascii()
}

/// The Request-URI of a request we wrote.
pub fn request_uri(stored: &[u8]) -> &str {
    let first = lines(split(stored).0).next().unwrap_or_default();
    let uri = first.split(|&b| b == b' ').nth(1).unwrap_or_default();
    std::str::from_utf8(uri).unwrap_or("")
}

/// A Via line with its branch replaced.
fn push_via(out: &mut Vec<u8>, line: &[u8], branch: Option<&str>) {
    match (branch, memchr::memmem::find(line, b";branch=")) {
        (Some(b), Some(i)) => {
            let rest = &line[i + 8..];
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            out.extend_from_slice(&line[..i + 8]);
            out.extend_from_slice(b.as_bytes());
            out.extend_from_slice(&rest[end..]);
        }
        _ => out.extend_from_slice(line),
    }
    out.extend_from_slice(b"\r\n");
}

/// How to derive a bodiless request from `stored`.
pub struct Derived<'a> {
    pub method: &'a str,
    /// Request-URI; the original's when `None`.
    pub uri: Option<&'a str>,
    /// New branch; the original's when `None` (ACK of a non-2xx, CANCEL).
    pub branch: Option<&'a str>,
    /// Whole To header value (with the answer's tag); the original's when `None`.
    pub to: Option<&'a str>,
    pub cseq: u32,
}

/// Writes `d` into `out`: Via, Route, Max-Forwards, From and Call-ID as in
/// the original; RFC 3261 §17.1.1.3 (ACK) and §9.1 (CANCEL).
pub fn derive(stored: &[u8], d: &Derived<'_>, out: &mut Vec<u8>) {
    let (head, _) = split(stored);
    out.clear();
    out.extend_from_slice(d.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(d.uri.unwrap_or_else(|| request_uri(stored)).as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\n");
    for line in lines(head).skip(1) {
        match name_of(line) {
            b"Via" => push_via(out, line, d.branch),
            b"Route" | b"Max-Forwards" | b"From" | b"Call-ID" => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
            b"To" => {
                match d.to {
                    Some(to) => {
                        out.extend_from_slice(b"To: ");
                        out.extend_from_slice(to.as_bytes());
                    }
                    None => out.extend_from_slice(line),
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"CSeq: ");
    push_u32(out, d.cseq);
    out.push(b' ');
    out.extend_from_slice(d.method.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

/// A line of a request we wrote, as its in-dialog requests reuse it.
enum Kept<'a> {
    /// The top Via, split around its branch value.
    Via(&'a [u8], &'a [u8]),
    /// Route, Max-Forwards, From or Call-ID: copied as is.
    Copied(&'a [u8]),
    /// Where the To line stood (the answer's To takes its place).
    To,
}

/// What the ACK and the BYE after a 2xx take from the INVITE we wrote,
/// read in one pass over its head (the per-device cost of a wake-up job:
/// [`derive`] scanned the whole INVITE once for each of them and again
/// for its CSeq).
pub struct Dialog<'a> {
    uri: &'a [u8],
    lines: smallvec::SmallVec<[Kept<'a>; 8]>,
    /// The INVITE's CSeq number.
    pub cseq: u32,
}

impl<'a> Dialog<'a> {
    pub fn of(stored: &'a [u8]) -> Dialog<'a> {
        let (head, _) = split(stored);
        let mut it = lines(head);
        let first = it.next().unwrap_or_default();
        let uri = first.split(|&b| b == b' ').nth(1).unwrap_or_default();
        let mut d = Dialog {
            uri,
            lines: smallvec::SmallVec::new(),
            cseq: 1,
        };
        for line in it {
            match name_of(line) {
                b"Via" => d.lines.push(match memchr::memmem::find(line, b";branch=") {
                    Some(i) => {
                        let rest = &line[i + 8..];
                        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
                        Kept::Via(&line[..i + 8], &rest[end..])
                    }
                    None => Kept::Copied(line),
                }),
                b"Route" | b"Max-Forwards" | b"From" | b"Call-ID" => {
                    d.lines.push(Kept::Copied(line));
                }
                b"To" => d.lines.push(Kept::To),
                b"CSeq" => d.cseq = cseq_value(line).unwrap_or(1),
                _ => {}
            }
        }
        d
    }

    /// Writes a bodiless in-dialog request into `out`, as [`derive`] would
    /// with `uri` (the INVITE's when `None`), `branch`, `to` and `cseq`.
    pub fn write(
        &self,
        method: &str,
        uri: Option<&str>,
        branch: &str,
        to: &str,
        cseq: u32,
        out: &mut Vec<u8>,
    ) {
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(uri.map_or(self.uri, str::as_bytes));
        out.extend_from_slice(b" SIP/2.0\r\n");
        for l in &self.lines {
            match *l {
                Kept::Via(pre, post) => {
                    out.extend_from_slice(pre);
                    out.extend_from_slice(branch.as_bytes());
                    out.extend_from_slice(post);
                }
                Kept::Copied(line) => out.extend_from_slice(line),
                Kept::To => {
                    out.extend_from_slice(b"To: ");
                    out.extend_from_slice(to.as_bytes());
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"CSeq: ");
        push_u32(out, cseq);
        out.push(b' ');
        out.extend_from_slice(method.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    }
}

/// The number of a `CSeq: n METHOD` line.
fn cseq_value(line: &[u8]) -> Option<u32> {
    let v = line.split(|&b| b == b':').nth(1)?.trim_ascii_start();
    let n = v.split(|&b| b == b' ').next()?;
    std::str::from_utf8(n).ok()?.parse().ok()
}

/// The original with a new branch, CSeq number `cseq` and one more header
/// (`Authorization` or `Proxy-Authorization`), body unchanged (RFC 3261 §22.2).
pub fn with_header(
    stored: &[u8],
    branch: &str,
    cseq: u32,
    name: &str,
    value: &str,
    out: &mut Vec<u8>,
) {
    let (head, body) = split(stored);
    out.clear();
    let mut lines = lines(head);
    out.extend_from_slice(lines.next().unwrap_or_default());
    out.extend_from_slice(b"\r\n");
    for line in lines {
        match name_of(line) {
            b"Via" => push_via(out, line, Some(branch)),
            b"CSeq" => {
                let method = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
                out.extend_from_slice(b"CSeq: ");
                push_u32(out, cseq);
                out.push(b' ');
                out.extend_from_slice(method);
                out.extend_from_slice(b"\r\n");
            }
            _ => {
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// The CSeq number of a request we wrote.
pub fn cseq(stored: &[u8]) -> u32 {
    let (head, _) = split(stored);
    lines(head)
        .find(|l| name_of(l) == b"CSeq")
        .and_then(cseq_value)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{self, HeaderName};

    const INVITE: &[u8] = b"INVITE sip:dev@10.0.0.2:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnt1;rport\r\n\
Route: <sip:edge.example.net;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:tether@192.0.2.1:5060>;tag=f1\r\n\
To: <sip:dev@example.net>\r\n\
Call-ID: c1@tether\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:tether@192.0.2.1:5060>\r\n\
Content-Type: application/x\r\n\
Content-Length: 3\r\n\r\nabc";

    #[test]
    fn ack_of_a_non_2xx_keeps_the_branch_and_takes_the_answer_to_tag() {
        let mut out = Vec::new();
        derive(
            INVITE,
            &Derived {
                method: "ACK",
                uri: None,
                branch: None,
                to: Some("<sip:dev@example.net>;tag=u9"),
                cseq: 1,
            },
            &mut out,
        );
        let m = sip::parse(&out).unwrap();
        let c = m.validate().unwrap();
        assert_eq!(m.method(), Some(sip::Method::Ack));
        assert_eq!(c.top_via.branch(), Some("z9hG4bKnt1"));
        assert_eq!(m.to().unwrap().tag(), Some("u9"));
        assert_eq!(m.header(HeaderName::CSeq), Some("1 ACK"));
        assert_eq!(
            m.header(HeaderName::Route),
            Some("<sip:edge.example.net;lr>")
        );
        assert!(m.body.is_empty());
    }

    #[test]
    fn one_pass_dialog_writes_what_derive_writes() {
        let d = Dialog::of(INVITE);
        assert_eq!(d.cseq, 1);
        let to = "<sip:dev@example.net>;tag=u9";
        for (method, uri, cseq) in [("ACK", Some("sip:dev@10.0.0.9:5062"), 1), ("BYE", None, 2)] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            derive(
                INVITE,
                &Derived {
                    method,
                    uri,
                    branch: Some("z9hG4bKnew"),
                    to: Some(to),
                    cseq,
                },
                &mut a,
            );
            d.write(method, uri, "z9hG4bKnew", to, cseq, &mut b);
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn auth_retry_has_new_branch_cseq_and_header_and_same_body() {
        let mut out = Vec::new();
        with_header(
            INVITE,
            "z9hG4bKnt2",
            2,
            "Authorization",
            "Digest x=1",
            &mut out,
        );
        let m = sip::parse(&out).unwrap();
        let c = m.validate().unwrap();
        assert_eq!(c.top_via.branch(), Some("z9hG4bKnt2"));
        assert_eq!(m.header(HeaderName::CSeq), Some("2 INVITE"));
        assert_eq!(m.header(HeaderName::Authorization), Some("Digest x=1"));
        assert_eq!(m.body, b"abc");
        assert_eq!(cseq(&out), 2);
        assert_eq!(request_uri(&out), "sip:dev@10.0.0.2:5060");
    }
}
