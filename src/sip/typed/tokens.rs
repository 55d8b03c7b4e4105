//! Token lists (option tags, methods, event packages) and the Event header.

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{find_top_level, is_token_str, trim, ParamList};

/// Event header (RFC 6665): package name and parameters such as `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub package: &'a str,
    pub params: ParamList<'a>,
}

impl<'a> Event<'a> {
    pub fn parse(v: &'a str) -> Result<Event<'a>, ParseError> {
        const BAD: ParseError = ParseError::BadHeader("Event");
        let (pkg, params) = match find_top_level(v, b';').map_err(|_| BAD)? {
            Some(i) => (trim(&v[..i]), &v[i + 1..]),
            None => (trim(v), ""),
        };
        if !is_token_str(pkg) {
            return Err(BAD);
        }
        Ok(Event {
            package: pkg,
            params: ParamList::parse(params).map_err(|_| BAD)?,
        })
    }

    /// The `id` parameter.
    pub fn id(&self) -> Option<&'a str> {
        self.params.get("id").flatten()
    }
}

/// Typed accessors of the token-list headers and Event.
impl<'a> Message<'a> {
    pub fn event(&self) -> Result<Option<Event<'a>>, ParseError> {
        self.singleton(HeaderName::Event)?
            .map(Event::parse)
            .transpose()
    }

    /// Option tags of Supported, Require, Proxy-Require, Unsupported, or
    /// event packages of Allow-Events, methods of Allow.
    pub fn tokens(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.list(name).map(move |r| {
            r.and_then(|t| {
                if is_token_str(t) {
                    Ok(t)
                } else {
                    Err(ParseError::BadHeader(name.as_str()))
                }
            })
        })
    }
}
