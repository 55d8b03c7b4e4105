//! Call and registration events for `webhooks.url` (seed 003: "triggering
//! the callback resource upon detecting the signaling event"). Sans-IO: a
//! core builds a [`Request`] from what it has at hand and queues it; the
//! side threads send it.
//!
//! ## For the state machine that emits them
//!
//! One [`EventHooks`] per node (`Arc`, shared by the cores), built from
//! `[webhooks]` by [`EventHooks::new`]. Check [`EventHooks::wants`] first:
//! it is one load and a mask, so an event nobody subscribed to costs
//! nothing more. Then build the event and push the request onto the core's
//! HTTP outbox (the registrar's `http`, the endpoint's `http`):
//!
//! ```ignore
//! // An INVITE received (source = where it came from):
//! if hooks.wants(EventKind::CallInvite) {
//!     let ev = CallEvent::from_message(EventKind::CallInvite, &msg, source, core);
//!     http.extend(hooks.call(&ev, Some(&msg)));
//! }
//! // A 180 or a 200 to it: the response at hand, the INVITE's Request-URI kept.
//! let ev = CallEvent::from_message(EventKind::CallRinging, &resp, source, core)
//!     .with_request_uri(invite_ruri);
//! // The end: from the BYE (or CANCEL, or the final failure), or, with no
//! // message (Timer C, max_call_s, media timeout), from what the dialog kept.
//! let ev = CallEvent {
//!     reason: Some(EndReason::Timeout),
//!     ..CallEvent::new(EventKind::CallEnded, call_id, from, to, source, core)
//! };
//! http.extend(hooks.call(&ev, None));
//! ```
//!
//! The body is one JSON object; `headers` holds the configured
//! `webhooks.headers` found in the message passed (absent ones are left
//! out):
//!
//! ```json
//! {"event":"call.answered","core":1,"call_id":"a84b4c76e66710","from":"<sip:alice@example.com>;tag=1928",
//!  "to":"<sip:bob@example.com>;tag=a6c8","request_uri":"sip:bob@example.com","source":"192.0.2.4:5060",
//!  "code":200,"reason":null,"headers":{"X-Account":"42"}}
//! {"event":"registration.added","core":0,"aor":"alice@example.com","contact":"sip:alice@192.0.2.4:5060",
//!  "source":"192.0.2.4:5060","expires":3600,"user_agent":"baresip","instance":"urn:uuid:…","headers":{}}
//! ```

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::{Kind, Request};
use crate::config::WebhookConfig;
use crate::sip::{HeaderName, Message};

/// What happened. The names are those of `webhooks.events` and of the
/// JSON's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// An INVITE that starts a call was received.
    CallInvite,
    /// A 18x to it.
    CallRinging,
    /// A 2xx to it: the call is up.
    CallAnswered,
    /// The call is over (BYE, CANCEL, a final failure, or a timeout).
    CallEnded,
    /// A REGISTER made a new binding.
    RegistrationAdded,
    /// A REGISTER renewed a binding.
    RegistrationRefreshed,
    /// A REGISTER removed a binding (`Expires: 0`, `Contact: *`, or the
    /// device came back over another path).
    RegistrationRemoved,
    /// A binding ran out.
    RegistrationExpired,
}

impl EventKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [EventKind; 8] = [
        EventKind::CallInvite,
        EventKind::CallRinging,
        EventKind::CallAnswered,
        EventKind::CallEnded,
        EventKind::RegistrationAdded,
        EventKind::RegistrationRefreshed,
        EventKind::RegistrationRemoved,
        EventKind::RegistrationExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CallInvite => "call.invite",
            EventKind::CallRinging => "call.ringing",
            EventKind::CallAnswered => "call.answered",
            EventKind::CallEnded => "call.ended",
            EventKind::RegistrationAdded => "registration.added",
            EventKind::RegistrationRefreshed => "registration.refreshed",
            EventKind::RegistrationRemoved => "registration.removed",
            EventKind::RegistrationExpired => "registration.expired",
        }
    }

    /// The kind a `webhooks.events` name stands for.
    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }

    fn is_call(self) -> bool {
        matches!(
            self,
            EventKind::CallInvite
                | EventKind::CallRinging
                | EventKind::CallAnswered
                | EventKind::CallEnded
        )
    }
}

/// Why a call ended (`call.ended`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A party hung up.
    Bye,
    /// The caller gave up before an answer.
    Cancel,
    /// A final non-2xx answer ended the attempt (its code in `code`).
    Failure,
    /// Nobody answered in time, or the call outlived its limit.
    Timeout,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Bye => "bye",
            EndReason::Cancel => "cancel",
            EndReason::Failure => "failure",
            EndReason::Timeout => "timeout",
        }
    }
}

/// The facts of one call event. Strings are borrowed from the message or
/// the dialog at hand; nothing is copied until [`EventHooks::call`]
/// writes the JSON.
#[derive(Debug, Clone, Copy)]
pub struct CallEvent<'a> {
    pub kind: EventKind,
    pub call_id: &'a str,
    /// The From and To header values as received (tags included).
    pub from: &'a str,
    pub to: &'a str,
    /// The INVITE's Request-URI; a response has none of its own.
    pub request_uri: Option<&'a str>,
    /// Where the message that made the event came from.
    pub source: SocketAddr,
    /// The core that handled it.
    pub core: u16,
    /// The status code: 18x, 2xx, or the final failure's.
    pub code: Option<u16>,
    /// For `call.ended`.
    pub reason: Option<EndReason>,
}

impl<'a> CallEvent<'a> {
    /// An event with the identifying fields only.
    pub fn new(
        kind: EventKind,
        call_id: &'a str,
        from: &'a str,
        to: &'a str,
        source: SocketAddr,
        core: u16,
    ) -> CallEvent<'a> {
        CallEvent {
            kind,
            call_id,
            from,
            to,
            request_uri: None,
            source,
            core,
            code: None,
            reason: None,
        }
    }

    /// An event from the message that made it: Call-ID, From and To from
    /// its headers (empty when missing), its Request-URI when it is a
    /// request, its status code when it is a response.
    pub fn from_message(
        kind: EventKind,
        msg: &Message<'a>,
        source: SocketAddr,
        core: u16,
    ) -> CallEvent<'a> {
        CallEvent {
            request_uri: msg.request_uri_raw(),
            code: msg.status(),
            ..CallEvent::new(
                kind,
                msg.header(HeaderName::CallId).unwrap_or(""),
                msg.header(HeaderName::From).unwrap_or(""),
                msg.header(HeaderName::To).unwrap_or(""),
                source,
                core,
            )
        }
    }

    pub fn with_request_uri(self, uri: &'a str) -> CallEvent<'a> {
        CallEvent {
            request_uri: Some(uri),
            ..self
        }
    }

    pub fn with_code(self, code: u16) -> CallEvent<'a> {
        CallEvent {
            code: Some(code),
            ..self
        }
    }

    pub fn with_reason(self, reason: EndReason) -> CallEvent<'a> {
        CallEvent {
            reason: Some(reason),
            ..self
        }
    }
}

/// The facts of one registration event.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationEvent<'a> {
    pub kind: EventKind,
    /// The address-of-record, `user@host`.
    pub aor: &'a str,
    /// The Contact URI as registered.
    pub contact: &'a str,
    /// The NAT path the binding was registered over.
    pub source: SocketAddr,
    /// Seconds the binding has left; 0 once removed or expired.
    pub expires: u32,
    /// The REGISTER's User-Agent (none for an expiry).
    pub user_agent: Option<&'a str>,
    /// RFC 5626 `+sip.instance` (or the configured device id).
    pub instance: Option<&'a str>,
    pub core: u16,
}

/// The node's event subscription: where events go, which, and which SIP
/// headers they carry.
#[derive(Debug, Default)]
pub struct EventHooks {
    url: Option<Arc<str>>,
    /// One bit per [`EventKind`]; 0 when there is no `url`.
    wanted: u8,
    headers: Box<[Box<str>]>,
}

impl EventHooks {
    /// No events at all (the default).
    pub fn off() -> Arc<EventHooks> {
        Arc::new(EventHooks::default())
    }

    /// From a checked `[webhooks]` section (unknown event names are
    /// refused by [`WebhookConfig::check`] and skipped here).
    pub fn new(cfg: &WebhookConfig) -> EventHooks {
        if cfg.url.is_empty() {
            return EventHooks::default();
        }
        EventHooks {
            url: Some(cfg.url.as_str().into()),
            wanted: cfg
                .events
                .iter()
                .filter_map(|e| EventKind::parse(e))
                .fold(0, |m, k| m | k.bit()),
            headers: cfg.headers.iter().map(|h| h.as_str().into()).collect(),
        }
    }

    /// Whether `kind` events are sent: check this before building one.
    #[inline]
    pub fn wants(&self, kind: EventKind) -> bool {
        self.wanted & kind.bit() != 0
    }

    /// Whether any event is sent.
    pub fn any(&self) -> bool {
        self.wanted != 0
    }

    /// The webhook for a call event, with the configured headers found in
    /// `msg`; `None` when `ev.kind` is not wanted or is no call event.
    pub fn call(&self, ev: &CallEvent<'_>, msg: Option<&Message<'_>>) -> Option<Request> {
        if !ev.kind.is_call() || !self.wants(ev.kind) {
            return None;
        }
        #[derive(Serialize)]
        struct Json<'a> {
            event: &'static str,
            core: u16,
            call_id: &'a str,
            from: &'a str,
            to: &'a str,
            request_uri: Option<&'a str>,
            source: SocketAddr,
            code: Option<u16>,
            reason: Option<&'static str>,
            headers: Headers<'a>,
        }
        self.request(&Json {
            event: ev.kind.as_str(),
            core: ev.core,
            call_id: ev.call_id,
            from: ev.from,
            to: ev.to,
            request_uri: ev.request_uri,
            source: ev.source,
            code: ev.code,
            reason: ev.reason.map(EndReason::as_str),
            headers: Headers(&self.headers, msg),
        })
    }

    /// The webhook for a registration event, with the configured headers
    /// found in `msg` (the REGISTER; none for an expiry); `None` when
    /// `ev.kind` is not wanted or is no registration event.
    pub fn registration(
        &self,
        ev: &RegistrationEvent<'_>,
        msg: Option<&Message<'_>>,
    ) -> Option<Request> {
        if ev.kind.is_call() || !self.wants(ev.kind) {
            return None;
        }
        #[derive(Serialize)]
        struct Json<'a> {
            event: &'static str,
            core: u16,
            aor: &'a str,
            contact: &'a str,
            source: SocketAddr,
            expires: u32,
            user_agent: Option<&'a str>,
            instance: Option<&'a str>,
            headers: Headers<'a>,
        }
        self.request(&Json {
            event: ev.kind.as_str(),
            core: ev.core,
            aor: ev.aor,
            contact: ev.contact,
            source: ev.source,
            expires: ev.expires,
            user_agent: ev.user_agent,
            instance: ev.instance,
            headers: Headers(&self.headers, msg),
        })
    }

    fn request(&self, body: &impl Serialize) -> Option<Request> {
        let url = self.url.clone()?;
        // Sized for a typical event, so it is written without regrowing.
        let mut out = Vec::with_capacity(512);
        // Borrowed strings and numbers: serialization cannot fail.
        serde_json::to_writer(&mut out, body).ok()?;
        Some(Request {
            url,
            body: out,
            kind: Kind::Webhook,
        })
    }
}

/// The configured header names and a message: serialized as an object of
/// the headers present, repeated lines joined with ", ".
struct Headers<'a>(&'a [Box<str>], Option<&'a Message<'a>>);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if let Some(msg) = self.1 {
            for name in self.0.iter() {
                if let Some(v) = header_value(msg, name) {
                    map.serialize_entry(&**name, &v)?;
                }
            }
        }
        map.end()
    }
}

/// Every value of header `name` (compact forms too), joined with ", ".
fn header_value<'m>(msg: &Message<'m>, name: &str) -> Option<Cow<'m, str>> {
    let kind = HeaderName::from_wire(name);
    let mut values = msg
        .headers()
        .filter(|h| {
            h.name == kind && (kind != HeaderName::Other || h.raw_name.eq_ignore_ascii_case(name))
        })
        .map(|h| h.value);
    let first = values.next()?;
    match values.next() {
        None => Some(Cow::Borrowed(first)),
        Some(second) => {
            let mut all = format!("{first}, {second}");
            for v in values {
                all.push_str(", ");
                all.push_str(v);
            }
            Some(Cow::Owned(all))
        }
    }
}

#[cfg(test)]
mod tests;
