//! RFC 4475 (SIP torture test messages): every message of section 3, byte for
//! byte in `tests/fixtures/rfc4475/`, with what tether must make of it.
//! Valid messages parse to the values the RFC gives; invalid ones are
//! rejected with the error a `400` would carry.

use std::path::Path;

use tether::sip::{self, HeaderName, Message, Method, ParseError, ParseError::*, StartLine};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rfc4475")
        .join(format!("{name}.sip"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest() -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475/MANIFEST.toml");
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// Parse and validate, as a server does before acting on a message.
fn check(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    let m = sip::parse(bytes)?;
    m.validate()?;
    Ok(m)
}

/// What tether must answer for each message the RFC calls invalid (3.1.2)
/// and for the semantic tests (3.2-3.4) it rejects at parse level.
const REJECTED: &[(&str, ParseError)] = &[
    ("badinv01", BadHeader("Via")),
    (
        "clerr",
        BodyTooShort {
            declared: 9999,
            actual: 154,
        },
    ),
    ("ncl", BadHeader("Content-Length")),
    ("scalar02", BadHeader("CSeq")),
    ("scalarlg", BadHeader("CSeq")),
    ("quotbal", BadHeader("To")),
    ("ltgtruri", BadRequestUri),
    ("lwsruri", BadRequestUri),
    ("lwsstart", BadStartLine),
    ("trws", BadStartLine),
    ("escruri", BadRequestUri),
    ("baddate", BadHeader("Date")),
    ("regbadct", BadHeader("Contact")),
    ("badaspec", BadHeader("To")),
    // The archived copy has no empty line after the headers; see baddn_display_name below.
    ("baddn", Truncated),
    ("badvers", BadVersion),
    ("mismatch01", CSeqMethodMismatch),
    ("mismatch02", CSeqMethodMismatch),
    ("bigcode", BadStatusCode),
    ("mcl01", ConflictingContentLength),
    // 3.3.1: a request missing required headers gets 400.
    ("insuf", MissingHeader("From")),
    // 3.3.9: multiple values in single-value headers.
    ("multi01", DuplicateHeader("CSeq")),
];

/// Messages that are well formed: parse and validation succeed; what to do
/// with them is up to the application layer (unknown scheme, Require …).
const ACCEPTED: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

#[test]
fn every_fixture_is_classified() {
    let m = manifest();
    let mut names: Vec<_> = m.keys().cloned().collect();
    names.sort();
    for name in &names {
        let known = ACCEPTED.contains(&name.as_str()) || REJECTED.iter().any(|(n, _)| n == name);
        assert!(known, "{name} has no expectation");
    }
    assert_eq!(names.len(), ACCEPTED.len() + REJECTED.len());
    // The RFC's own split: every 3.1.1 message is accepted, every 3.1.2 one rejected.
    for (name, entry) in &m {
        match entry["kind"].as_str().unwrap() {
            "valid" => assert!(ACCEPTED.contains(&name.as_str()), "{name}"),
            "invalid" => assert!(REJECTED.iter().any(|(n, _)| n == name), "{name}"),
            _ => {}
        }
    }
}

#[test]
fn invalid_messages_are_rejected_with_the_right_error() {
    for (name, want) in REJECTED {
        let bytes = fixture(name);
        let got = check(&bytes).map(|_| ());
        assert_eq!(got, Err(*want), "{name}");
        // The reason is fit for a status line: printable, no CR/LF.
        assert!(want.reason().bytes().all(|c| (0x20..0x7f).contains(&c)));
    }
}

#[test]
fn valid_messages_parse_to_the_rfc_values() {
    let manifest = manifest();
    for name in ACCEPTED {
        let bytes = fixture(name);
        let m = check(&bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let entry = manifest[*name].as_table().unwrap();
        if let Some(method) = entry.get("method").and_then(|v| v.as_str()) {
            assert_eq!(m.method().map(|m| m.as_str()), Some(method), "{name}");
        }
        if let Some(status) = entry.get("status").and_then(|v| v.as_integer()) {
            assert_eq!(m.status().map(i64::from), Some(status), "{name}");
        }
        if let Some(uri) = entry.get("request_uri").and_then(|v| v.as_str()) {
            assert_eq!(m.request_uri_raw(), Some(uri), "{name}");
        }
        if let Some(call_id) = entry.get("call_id").and_then(|v| v.as_str()) {
            assert_eq!(m.call_id().unwrap(), call_id, "{name}");
        }
        if let Some(cseq) = entry.get("cseq").and_then(|v| v.as_str()) {
            let (seq, method) = cseq.split_once(' ').unwrap();
            let got = m.cseq().unwrap();
            assert_eq!(got.seq, seq.parse::<u32>().unwrap(), "{name}");
            assert_eq!(got.method.as_str(), method, "{name}");
        }
        if let Some(cl) = entry.get("content_length").and_then(|v| v.as_integer()) {
            assert_eq!(m.content_length().map(|v| v as i64), Some(cl), "{name}");
            assert_eq!(m.body.len() as i64, cl, "{name}");
        }
    }
}

#[test]
fn wsinv_folding_escapes_and_odd_whitespace() {
    let bytes = fixture("wsinv");
    let m = check(&bytes).unwrap();
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.branch(), Some("390skdjuw"));
    assert_eq!(via.rport(), None);
    assert_eq!(via.sent_by, "192.0.2.2");
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(m.to().unwrap().uri().user, Some("vivekg"));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.header(HeaderName::Subject), Some(""));
    assert!(m.header_by_name("UnknownHeaderWithUnusualValue").is_some());
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.is("application", "sdp"));
    assert_eq!(m.contacts().count(), 1);
}

#[test]
fn intmeth_extension_method_and_unusual_tokens() {
    let bytes = fixture("intmeth");
    let m = check(&bytes).unwrap();
    let Some(Method::Extension(name)) = m.method() else {
        panic!("extension method expected")
    };
    assert_eq!(name, "!interesting-Method0123456789_*+`.%indeed'~");
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(
        ruri.password,
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(m.top_via().unwrap().transport, "TCP");
    assert_eq!(m.from().unwrap().tag(), Some("_token~1'+`*%!-."));
}

#[test]
fn escapes_stay_escaped_and_decode_on_request() {
    let bytes = fixture("esc01");
    let m = check(&bytes).unwrap();
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user, Some("sips%3Auser%40example.com"));
    assert_eq!(
        &*sip::scan::unescape(ruri.user.unwrap()).unwrap(),
        b"sips:user@example.com"
    );
    let bytes = fixture("escnull");
    let m = check(&bytes).unwrap();
    let contacts: Vec<_> = m.contacts().map(Result::unwrap).collect();
    assert_eq!(contacts.len(), 2);
    let user = contacts[0].addr().unwrap().uri().user.unwrap();
    assert!(sip::scan::unescape(user).unwrap().contains(&0));
}

#[test]
fn dblreq_trailing_bytes_after_content_length_are_discarded() {
    let bytes = fixture("dblreq");
    let m = check(&bytes).unwrap();
    assert!(m.body.is_empty());
    assert!(m.trailing > 0);
}

#[test]
fn transports_and_semicolon_uri() {
    let bytes = fixture("transports");
    let m = check(&bytes).unwrap();
    let t: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(t.len(), 5);
    assert!(t.contains(&"SCTP") && t.contains(&"TLS") && t.contains(&"UNKNOWN"));
    let bytes = fixture("semiuri");
    let m = check(&bytes).unwrap();
    let ruri = m.request_uri().unwrap().unwrap();
    assert_eq!(ruri.user, Some("user;par=u%40example.net"));
}

#[test]
fn noreason_and_unreason_status_lines() {
    let bytes = fixture("noreason");
    let m = check(&bytes).unwrap();
    assert!(matches!(
        m.start,
        StartLine::Response {
            code: 100,
            reason: ""
        }
    ));
    let bytes = fixture("unreason");
    let m = check(&bytes).unwrap();
    let StartLine::Response { code: 200, reason } = m.start else {
        panic!()
    };
    assert!(!reason.is_ascii(), "UTF-8 reason phrase kept");
}

#[test]
fn mpart01_binary_body_is_kept_whole() {
    let bytes = fixture("mpart01");
    let m = check(&bytes).unwrap();
    assert_eq!(m.body.len(), 553);
    assert!(m.content_type().unwrap().unwrap().is("multipart", "mixed"));
}

#[test]
fn baddn_display_name_is_rejected_once_the_header_section_ends() {
    let mut bytes = fixture("baddn");
    bytes.extend_from_slice(b"\r\n");
    assert_eq!(check(&bytes).map(|_| ()), Err(BadHeader("From")));
}

#[test]
fn cparam_and_contact_parameters() {
    let bytes = fixture("cparam01");
    let m = check(&bytes).unwrap();
    let c = m.contacts().next().unwrap().unwrap();
    // In addr-spec form the parameters belong to the header, not the URI.
    assert!(!c.addr().unwrap().params().is_empty());
    let bytes = fixture("cparam02");
    let m = check(&bytes).unwrap();
    assert!(m.contacts().next().unwrap().unwrap().addr().is_some());
}
