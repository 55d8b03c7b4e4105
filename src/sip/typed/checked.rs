//! [`Message::validate`] and the view it returns, [`Checked`]: the headers
//! every element reads, parsed once (our `Repr`, in smoltcp's sense).

use smallvec::SmallVec;

use super::{is_sip_date, AuthParams, CSeq, Contact, MediaType, NameAddr, Via};
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
            let contact = c?;
            let (expires, q, reg_id) = contact.registration()?;
            contacts.push(CheckedContact {
                expires,
                q,
                reg_id,
                contact,
            });
        }
        for r in self
            .routes()
            .chain(self.record_routes())
            .chain(self.paths())
        {
            r?;
        }
        let mut announced = Announced::default();
        for a in self.accept() {
            announced.0 |= Announced::of_media(&a?);
        }
        let mut require = SmallVec::new();
        // In this order, so a message with several bad lists names the same one.
        for name in [
            HeaderName::Supported,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::AllowEvents,
            HeaderName::Allow,
        ] {
            for t in self.tokens(name) {
                let t = t?;
                match name {
                    HeaderName::Require => require.push(t),
                    HeaderName::AllowEvents if t.eq_ignore_ascii_case(CONTACT_ME) => {
                        announced.0 |= Announced::ALLOWS_CONTACT_ME_EVENTS;
                    }
                    _ => {}
                }
            }
        }
        let authorization = self.authorization()?;
        let proxy_authorization = self.proxy_authorization()?;
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
            require,
            announced,
            authorization,
            proxy_authorization,
        })
    }
}

/// The headers every element reads, parsed once by [`Message::validate`].
///
/// About 1.6 KB on a 64-bit target, returned and passed by value on every
/// request: a new field should be a small value (a number, a flag, a slice),
/// not a list that grows with the message.
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
    pub contacts: SmallVec<[CheckedContact<'a>; 2]>,
    /// The option tags of Require, in order (a registrar answers 420 with
    /// the ones it does not support).
    pub require: SmallVec<[&'a str; 2]>,
    /// What Accept and Allow-Events announce that tether acts on.
    pub announced: Announced,
    pub authorization: Option<AuthParams<'a>>,
    /// The first Proxy-Authorization (120 bytes, as `authorization`): a proxy
    /// reads it on every request it challenges with 407.
    pub proxy_authorization: Option<AuthParams<'a>>,
}

/// One Contact element with the registration parameters `validate` parsed
/// from it (each `None` when absent, and for `*`).
#[derive(Debug, Clone)]
pub struct CheckedContact<'a> {
    pub contact: Contact<'a>,
    /// [`Contact::expires`].
    pub expires: Option<u32>,
    /// [`Contact::q`], in thousandths.
    pub q: Option<u16>,
    /// [`Contact::reg_id`].
    pub reg_id: Option<u32>,
}

/// The `application-server-contact-me` media subtype and event package.
const CONTACT_ME: &str = "application-server-contact-me";

/// The media types and event packages tether acts on, as Accept and
/// Allow-Events announce them, recognised while `validate` checks those
/// lists. Flags rather than the lists themselves: a UA's Accept or
/// Allow-Events can run to many elements, which `Checked` would then carry
/// (or allocate for) on every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Announced(u8);

impl Announced {
    /// Accept lists `application/sdp`.
    pub const ACCEPTS_SDP: u8 = 1;
    /// Accept lists `application/application-server-contact-me`.
    pub const ACCEPTS_CONTACT_ME: u8 = 2;
    /// Allow-Events lists the `application-server-contact-me` package.
    pub const ALLOWS_CONTACT_ME_EVENTS: u8 = 4;

    /// Whether every bit of `flags` (the constants above) is set.
    pub fn has(self, flags: u8) -> bool {
        self.0 & flags == flags
    }

    fn of_media(m: &MediaType<'_>) -> u8 {
        if !m.top.eq_ignore_ascii_case("application") {
            0
        } else if m.sub.eq_ignore_ascii_case("sdp") {
            Announced::ACCEPTS_SDP
        } else if m.sub.eq_ignore_ascii_case(CONTACT_ME) {
            Announced::ACCEPTS_CONTACT_ME
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse;

    fn register(extra: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\n\
CSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn validate_hands_back_what_it_parsed() {
        let req = register(
            "Contact: <sip:a@10.0.0.1>;expires=60;q=0.5;reg-id=2, <sip:a@10.0.0.2>\r\n\
Require: path, foo\r\nAllow-Events: presence\r\n\
Accept: text/plain;x=\"a,application/sdp\", application/application-server-contact-me\r\n",
        );
        let m = parse(&req).unwrap();
        let c = m.validate().unwrap();
        let params = |i: usize| {
            let e: &CheckedContact<'_> = &c.contacts[i];
            (e.expires, e.q, e.reg_id)
        };
        assert_eq!(params(0), (Some(60), Some(500), Some(2)));
        // One pass reads what the three accessors read: the first of each name.
        let req1 = register("Contact: <sip:a@10.0.0.1>;Expires=60;q=1;expires=x;REG-ID=7;q=0\r\n");
        let m1 = parse(&req1).unwrap();
        let c1 = m1.contacts().next().unwrap().unwrap();
        let one = (c1.expires().unwrap(), c1.q().unwrap(), c1.reg_id().unwrap());
        assert_eq!(one, (Some(60), Some(1000), Some(7)));
        assert_eq!(c1.registration(), Ok(one));
        let bad = register("Contact: <sip:a@10.0.0.1>;q=2\r\n");
        let m2 = parse(&bad).unwrap();
        assert_eq!(m2.validate().unwrap_err(), ParseError::BadHeader("Contact"));
        assert_eq!(params(1), (None, None, None));
        assert_eq!(c.require.as_slice(), ["path", "foo"]);
        // The quoted comma is inside a parameter, not a second element.
        assert!(!c.announced.has(Announced::ACCEPTS_SDP));
        assert!(c.announced.has(Announced::ACCEPTS_CONTACT_ME));
        assert!(!c.announced.has(Announced::ALLOWS_CONTACT_ME_EVENTS));

        let req = register(
            "Accept: Application / SDP\r\nAllow-Events: dialog, Application-Server-Contact-Me\r\n",
        );
        let m = parse(&req).unwrap();
        let c = m.validate().unwrap();
        assert!(c.contacts.is_empty() && c.require.is_empty());
        let both = Announced::ACCEPTS_SDP | Announced::ALLOWS_CONTACT_ME_EVENTS;
        assert!(c.announced.has(both));
        assert!(!c.announced.has(Announced::ACCEPTS_CONTACT_ME));
    }
}
