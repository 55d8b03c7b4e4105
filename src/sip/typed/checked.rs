//! [`Message::validate`] and the view it returns, [`Checked`]: the headers
//! every element reads, parsed once (our `Repr`, in smoltcp's sense).

use smallvec::SmallVec;

use super::{is_sip_date, AuthParams, CSeq, Contact, NameAddr, Via};
use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::{Message, StartLine};
use crate::sip::uri::Uri;

impl<'a> Message<'a> {
    /// Checks what every element must check before acting on a message
    /// (RFC 3261 §8.2, §16.3): the mandatory headers exist once each and
    /// parse, the Request-URI parses, CSeq's method matches, and the other
    /// headers tether reads follow their grammar. Returns the values every
    /// element then reads, so nothing is parsed twice.
    pub fn validate(&self) -> Result<Checked<'a>, ParseError> {
        let cseq = self.cseq()?;
        let mut request_uri = None;
        let mut max_forwards = None;
        if let StartLine::Request { method, .. } = self.start {
            let ruri = self.request_uri().expect("request")?;
            // A Request-URI carries no URI headers (RFC 3261 §19.1.5).
            if !ruri.headers().is_empty() {
                return Err(ParseError::BadRequestUri);
            }
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
            max_forwards = self.max_forwards()?;
            request_uri = Some(ruri);
        }
        let mut vias = self.vias();
        let top_via = vias
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))?;
        for via in vias {
            via?;
        }
        let from = self.from()?;
        let to = self.to()?;
        let call_id = self.call_id()?;
        let expires = self.expires()?;
        self.content_type()?;
        self.event()?;
        if let Some(date) = self.singleton(HeaderName::Date)? {
            if !is_sip_date(date) {
                return Err(ParseError::BadHeader("Date"));
            }
        }
        let mut contacts = SmallVec::new();
        for c in self.contacts() {
            let c = c?;
            c.expires()?;
            c.q()?;
            c.reg_id()?;
            contacts.push(c);
        }
        for r in self
            .routes()
            .chain(self.record_routes())
            .chain(self.paths())
        {
            r?;
        }
        for a in self.accept() {
            a?;
        }
        for name in [
            HeaderName::Supported,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::AllowEvents,
            HeaderName::Allow,
        ] {
            for t in self.tokens(name) {
                t?;
            }
        }
        let authorization = self.authorization()?;
        self.proxy_authorization()?;
        self.www_authenticate()?;
        self.proxy_authenticate()?;
        Ok(Checked {
            request_uri,
            top_via,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            expires,
            contacts,
            authorization,
        })
    }
}

/// The headers every element reads, parsed once by [`Message::validate`].
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    /// `None` for responses.
    pub request_uri: Option<Uri<'a>>,
    pub top_via: Via<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub max_forwards: Option<u8>,
    pub expires: Option<u32>,
    pub contacts: SmallVec<[Contact<'a>; 2]>,
    pub authorization: Option<AuthParams<'a>>,
}
