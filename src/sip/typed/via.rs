//! Via (RFC 3261 §20.42) with its RFC 3581 `rport`.

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{
    find_byte, find_top_level, is_lws, is_token_str, parse_u64, trim, ParamList,
};
use crate::sip::uri::{split_host_port, BadUri, Host};

/// A Via header value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP/2.0` with any inner LWS removed is what valid messages carry.
    pub protocol_version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS` …
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// The sent-by exactly as written (host and port).
    pub sent_by: &'a str,
    /// The via-params, parsed.
    pub params: ParamList<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via element (already split at top-level commas).
    pub fn parse(v: &'a str) -> Result<Via<'a>, ParseError> {
        const BAD: ParseError = ParseError::BadHeader("Via");
        let (head, params) = match find_top_level(v, b';').map_err(|_| BAD)? {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, ""),
        };
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH allows LWS.
        let hb = head.as_bytes();
        let s1 = find_byte(b'/', hb).ok_or(BAD)?;
        let s2 = s1 + 1 + find_byte(b'/', &hb[s1 + 1..]).ok_or(BAD)?;
        let name = trim(&head[..s1]);
        let version = trim(&head[s1 + 1..s2]);
        let rest = trim(&head[s2 + 1..]);
        let t_end = rest.bytes().position(is_lws).ok_or(BAD)?;
        let transport = &rest[..t_end];
        let sent_by = trim(&rest[t_end..]);
        if !name.eq_ignore_ascii_case("SIP") || !is_token_str(version) || !is_token_str(transport) {
            return Err(BAD);
        }
        let (host, port) = split_sent_by(sent_by).map_err(|_| BAD)?;
        let params = ParamList::parse(params).map_err(|_| BAD)?;
        let protocol_version = if version == "2.0" { "SIP/2.0" } else { version };
        Ok(Via {
            protocol_version,
            transport,
            host,
            port,
            sent_by,
            params,
        })
    }

    pub fn params(&self) -> &ParamList<'a> {
        &self.params
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `rport` (RFC 3581): `None` if absent, `Some(None)` when asked for,
    /// `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(parse_u64).and_then(|p| u16::try_from(p).ok()))
    }
}

/// sent-by = host [ COLON port ], where COLON may carry LWS.
fn split_sent_by(s: &str) -> Result<(Host<'_>, Option<u16>), BadUri> {
    if s.starts_with('[') {
        let close = find_byte(b']', s.as_bytes()).ok_or(BadUri)?;
        let (host, _) = split_host_port(&s[..=close])?;
        let rest = trim(&s[close + 1..]);
        if rest.is_empty() {
            return Ok((host, None));
        }
        let port = trim(rest.strip_prefix(':').ok_or(BadUri)?);
        return Ok((host, Some(parse_port(port)?)));
    }
    match find_byte(b':', s.as_bytes()) {
        Some(c) => {
            let (host, _) = split_host_port(trim(&s[..c]))?;
            Ok((host, Some(parse_port(trim(&s[c + 1..]))?)))
        }
        None => split_host_port(s),
    }
}

fn parse_port(p: &str) -> Result<u16, BadUri> {
    parse_u64(p)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(BadUri)
}

/// Typed Via accessors.
impl<'a> Message<'a> {
    /// Every Via element, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list(HeaderName::Via).map(|r| r.and_then(Via::parse))
    }

    /// The topmost Via (the one a response is routed by).
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))
    }
}
