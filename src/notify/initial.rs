//! The job's request to one binding: a contact-me NOTIFY (inside the
//! binding's subscription dialog when it has one) or a wake-up INVITE,
//! routed along the binding's Path.

use std::fmt::Write as _;

use super::subscription::Subscriptions;
use super::{Job, Kind, NotifyConfig};
use crate::registrar::ContactView;
use crate::sip::ids::{Id, IdGen};
use crate::sip::writer::{self, RequestHead};
use crate::sip::{HeaderName, Method};

/// What every request of one job to one device shares.
pub(super) struct RequestContext<'a> {
    pub cfg: &'a NotifyConfig,
    /// `host:port` and our URI per listen socket.
    pub local_ids: &'a [(String, String)],
    pub job: &'a Job,
    pub aor: &'a str,
    pub branch: &'a Id,
    pub now: u64,
}

/// Reused text buffers for the per-request strings.
#[derive(Default)]
pub(super) struct Strings {
    aor_uri: String,
    call_id: String,
    state: String,
}

/// The job's NOTIFY or INVITE for one binding, into `out`.
pub(super) fn write_request(
    ctx: &RequestContext<'_>,
    view: &ContactView,
    ids: &mut IdGen,
    subscriptions: &mut Subscriptions,
    strings: &mut Strings,
    out: &mut Vec<u8>,
) {
    let (sent_by, us) = ctx
        .local_ids
        .get(usize::from(view.local))
        .map_or(("0.0.0.0:5060", "sip:tether@0.0.0.0:5060"), |(a, b)| {
            (a.as_str(), b.as_str())
        });
    let routes = path_routes(view.path.as_deref());
    let route_refs: smallvec::SmallVec<[&str; 2]> = routes.iter().map(|s| &s[..]).collect();
    let (method, content_type) = match ctx.job.spec.kind {
        Kind::ContactMe => (Method::Notify, ctx.cfg.content_type.as_str()),
        Kind::WakeInvite => (Method::Invite, ctx.cfg.wake_content_type.as_str()),
    };
    // A device that subscribed gets the NOTIFY inside its subscription's dialog.
    let sub = match ctx.job.spec.kind {
        Kind::ContactMe if !subscriptions.is_empty() => {
            subscriptions.next_notify(&view.binding, ctx.now)
        }
        _ => None,
    };
    strings.aor_uri.clear();
    strings.aor_uri.push_str("sip:");
    strings.aor_uri.push_str(ctx.aor);
    let tag = ids.tag();
    strings.call_id.clear();
    strings.call_id.push_str(&ids.call_id());
    strings.call_id.push_str("@tether");
    let head = match &sub {
        Some(s) => RequestHead {
            method,
            uri: &s.contact,
            transport: "UDP",
            sent_by,
            branch: ctx.branch,
            from_uri: &s.local_uri,
            from_tag: &s.local_tag,
            to_uri: &s.remote_uri,
            to_tag: Some(&s.remote_tag),
            call_id: &s.call_id,
            cseq: s.cseq,
            max_forwards: 70,
            contact: Some(us),
            routes: &route_refs,
        },
        None => RequestHead {
            method,
            uri: &view.contact,
            transport: "UDP",
            sent_by,
            branch: ctx.branch,
            from_uri: us,
            from_tag: &tag,
            to_uri: &strings.aor_uri,
            to_tag: None,
            call_id: &strings.call_id,
            cseq: 1,
            max_forwards: 70,
            contact: (method == Method::Invite).then_some(us),
            routes: &route_refs,
        },
    };
    let mut w = writer::request(out, &head);
    if method == Method::Notify {
        w.header(HeaderName::Event, &ctx.cfg.event);
        if let Some(s) = &sub {
            strings.state.clear();
            let _ = write!(strings.state, "active;expires={}", s.remaining_s);
            w.header(HeaderName::SubscriptionState, &strings.state);
        }
    }
    w.finish(Some((content_type, &ctx.job.body)));
}

/// The URIs of a binding's Path (RFC 3327), in order, as the request's
/// route set: `<sip:p1;lr>, <sip:p2;lr>` → `["sip:p1;lr", "sip:p2;lr"]`.
fn path_routes(path: Option<&str>) -> smallvec::SmallVec<[String; 2]> {
    let mut out = smallvec::SmallVec::new();
    let Some(mut rest) = path else { return out };
    while let Some(a) = rest.find('<') {
        let Some(b) = rest[a..].find('>') else { break };
        out.push(rest[a + 1..a + b].to_owned());
        rest = &rest[a + b + 1..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::path_routes;

    #[test]
    fn a_path_becomes_the_route_set_in_order() {
        let r = path_routes(Some("<sip:p1.example.net;lr>, <sip:p2.example.net;lr>"));
        assert_eq!(&r[..], ["sip:p1.example.net;lr", "sip:p2.example.net;lr"]);
        assert!(path_routes(None).is_empty());
        assert!(path_routes(Some("<sip:unclosed")).is_empty());
    }
}
