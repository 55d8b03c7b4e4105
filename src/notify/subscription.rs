//! SUBSCRIBE opt-in to the contact-me package (seed 000, RFC 6665): a device
//! that cannot say `Accept: application/application-server-contact-me` in
//! its REGISTER subscribes instead. The subscription is bound to a
//! registered binding on the same NAT path, lives on the core that owns that
//! binding, and later contact-me NOTIFYs travel inside its dialog.
//!
//! [`Subscriptions`] is sans-IO: a SUBSCRIBE goes in with the directory and
//! `now`, its response is written out, and the NOTIFY that must follow comes
//! back for the engine to send as a housekeeping transaction.

use std::net::SocketAddr;
use std::sync::Arc;

use super::NotifyConfig;
use crate::registrar::{canonical_aor, flags, set_contact_flag, BindingRef, Directory};
use crate::sip::ids::Id;
use crate::sip::writer::{self, RequestHead};
use crate::sip::{Checked, HeaderName, Message, Method};

type Hasher = foldhash::fast::RandomState;

/// What [`super::Engine::subscribe`] did, for counters and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeAnswer {
    /// 200: subscribed or refreshed for this many seconds.
    Active(u32),
    /// 200 to `Expires: 0`: unsubscribed.
    Terminated,
    /// A 4xx was written (bad event, no binding, interval too brief …).
    Refused(u16),
}

/// One subscription's dialog, from tether's (the notifier's) side.
#[derive(Debug, Clone)]
struct Subscription {
    aor: Arc<str>,
    call_id: Box<str>,
    /// Our tag and URI (the SUBSCRIBE's To).
    local_tag: Box<str>,
    local_uri: Box<str>,
    /// The subscriber's From URI and tag, and the CSeq of its last SUBSCRIBE.
    remote_uri: Box<str>,
    remote_tag: Box<str>,
    remote_cseq: u32,
    /// Where in-dialog requests go (the SUBSCRIBE's Contact).
    contact: Box<str>,
    /// Our CSeq for the next NOTIFY.
    cseq: u32,
    expires_at_ms: u64,
}

/// The fields of an in-dialog NOTIFY.
#[derive(Debug, Clone)]
pub(super) struct DialogNotify {
    pub contact: Box<str>,
    pub local_uri: Box<str>,
    pub local_tag: Box<str>,
    pub remote_uri: Box<str>,
    pub remote_tag: Box<str>,
    pub call_id: Box<str>,
    pub cseq: u32,
    pub remaining_s: u64,
}

/// This core's subscriptions, by binding.
#[derive(Debug, Default)]
pub struct Subscriptions {
    map: hashbrown::HashMap<BindingRef, Subscription, Hasher>,
    next_sweep: u64,
}

/// What a SUBSCRIBE is judged against, and where and when it arrived.
pub(super) struct Context<'a> {
    pub cfg: &'a NotifyConfig,
    pub dir: &'a Directory,
    /// Our `host:port` on listen socket `local`.
    pub hostport: &'a str,
    /// Housekeeping transactions alive (each SUBSCRIBE costs a NOTIFY one).
    pub housekeeping: usize,
    pub src: SocketAddr,
    pub local: u8,
    pub now: u64,
}

/// The NOTIFY that follows a successful SUBSCRIBE at once, with the
/// subscription's state (RFC 6665 §4.2.1.2).
pub(super) struct InitialNotify {
    dialog: Subscription,
    state: String,
    event: String,
    sent_by: String,
    us: String,
}

impl InitialNotify {
    /// Writes it with `branch` into `buf`.
    pub fn write(&self, branch: &Id, buf: &mut Vec<u8>) {
        let sub = &self.dialog;
        let head = RequestHead {
            method: Method::Notify,
            uri: &sub.contact,
            transport: "UDP",
            sent_by: &self.sent_by,
            branch,
            from_uri: &sub.local_uri,
            from_tag: &sub.local_tag,
            to_uri: &sub.remote_uri,
            to_tag: Some(&sub.remote_tag),
            call_id: &sub.call_id,
            cseq: sub.cseq,
            max_forwards: 70,
            contact: Some(&self.us),
            routes: &[],
        };
        let mut w = writer::request(buf, &head);
        w.header(HeaderName::Event, &self.event);
        w.header(HeaderName::SubscriptionState, &self.state);
        w.finish(None);
    }
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// True when `b` holds a live subscription at `now` (ms).
    pub fn has(&self, b: &BindingRef, now: u64) -> bool {
        self.map.get(b).is_some_and(|s| s.expires_at_ms > now)
    }

    /// The next in-dialog NOTIFY for `b`, taking a CSeq number.
    pub(super) fn next_notify(&mut self, b: &BindingRef, now: u64) -> Option<DialogNotify> {
        let s = self.map.get_mut(b).filter(|s| s.expires_at_ms > now)?;
        s.cseq += 1;
        Some(DialogNotify {
            contact: s.contact.clone(),
            local_uri: s.local_uri.clone(),
            local_tag: s.local_tag.clone(),
            remote_uri: s.remote_uri.clone(),
            remote_tag: s.remote_tag.clone(),
            call_id: s.call_id.clone(),
            cseq: s.cseq,
            remaining_s: (s.expires_at_ms - now).div_ceil(1000),
        })
    }

    /// When [`Subscriptions::expire`] next has work: the next sweep, while
    /// any subscription lives.
    pub fn next_sweep(&self) -> Option<u64> {
        (!self.map.is_empty()).then_some(self.next_sweep)
    }

    /// Drops subscriptions past their expiry (checked once a second) and
    /// clears their bindings' SUBSCRIBED flag in `dir`.
    pub(super) fn expire(&mut self, now: u64, dir: &Directory) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + 1000;
        let mut expired = Vec::new();
        self.map.retain(|b, s| {
            let keep = s.expires_at_ms > now;
            if !keep {
                expired.push((s.aor.clone(), *b));
            }
            keep
        });
        for (aor, b) in expired {
            set_contact_flag(dir, &aor, b, flags::SUBSCRIBED, false);
        }
    }
}

impl Subscriptions {
    /// Handles a SUBSCRIBE (validated) that arrived as `ctx` says; writes
    /// the response into `out` (with our `tag` for a new dialog) and returns
    /// the NOTIFY that must follow a successful one.
    pub(super) fn subscribe(
        &mut self,
        ctx: &Context<'_>,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        tag: &str,
        out: &mut Vec<u8>,
    ) -> (SubscribeAnswer, Option<InitialNotify>) {
        let Context {
            cfg,
            dir,
            src,
            local,
            now,
            ..
        } = *ctx;
        let event = cfg.event.clone();
        let ok_event = matches!(msg.event(), Ok(Some(e)) if e.package.eq_ignore_ascii_case(&event));
        if !ok_event {
            let mut w = writer::response_to_checked(
                out,
                msg,
                checked,
                489,
                "Bad Event",
                Some(tag),
                Some(src),
            );
            w.header(HeaderName::AllowEvents, &event);
            w.finish(None);
            return (SubscribeAnswer::Refused(489), None);
        }
        let (min, max) = (cfg.min_subscription, cfg.max_subscription);
        let requested = checked.expires.unwrap_or(max.min(3600));
        if requested != 0 && requested < min {
            let mut w = writer::response_to_checked(
                out,
                msg,
                checked,
                423,
                "Interval Too Brief",
                Some(tag),
                Some(src),
            );
            w.header_u32(HeaderName::MinExpires, min);
            w.finish(None);
            return (SubscribeAnswer::Refused(423), None);
        }
        let expires = requested.min(max);
        let to_uri = checked.to.uri();
        let aor = match (to_uri.user, to_uri.host) {
            (Some(u), Some(h)) => canonical_aor(u, h),
            _ => String::new(),
        };
        let now_secs = (now / 1000) as u32;
        let found = dir.with_aor(&aor, |rec| {
            rec.and_then(|r| {
                r.contacts
                    .iter()
                    .find(|c| c.source == src && c.local == local && c.expires_at > now_secs)
                    .map(|c| c.binding)
            })
        });
        let Some(binding) = found else {
            writer::response_to_checked(
                out,
                msg,
                checked,
                404,
                "No Registration On This Path",
                Some(tag),
                Some(src),
            )
            .finish(None);
            return (SubscribeAnswer::Refused(404), None);
        };
        let Some(contact) = checked
            .contacts
            .first()
            .and_then(|c| c.contact.addr())
            .map(|a| a.uri().raw)
        else {
            writer::response_to_checked(
                out,
                msg,
                checked,
                400,
                "Missing Contact",
                Some(tag),
                Some(src),
            )
            .finish(None);
            return (SubscribeAnswer::Refused(400), None);
        };
        let aor: Arc<str> = aor.into();
        let cseq_in = checked.cseq.seq;
        // The same SUBSCRIBE again (its 200 was lost): the same 200, no new
        // dialog, no new NOTIFY.
        if let Some(s) = self
            .map
            .get(&binding)
            .filter(|s| *s.call_id == *checked.call_id && cseq_in <= s.remote_cseq)
        {
            let left = (s.expires_at_ms.saturating_sub(now) / 1000) as u32;
            let tag = s.local_tag.clone();
            let mut w =
                writer::response_to_checked(out, msg, checked, 200, "OK", Some(&tag), Some(src));
            w.header_u32(HeaderName::Expires, left);
            w.finish(None);
            return (SubscribeAnswer::Active(left), None);
        }
        // Each SUBSCRIBE costs a NOTIFY transaction: bounded per core.
        if ctx.housekeeping >= cfg.max_in_flight / 4 {
            let mut w = writer::response_to_checked(
                out,
                msg,
                checked,
                503,
                "Service Unavailable",
                Some(tag),
                Some(src),
            );
            w.header_named("Retry-After", "5");
            w.finish(None);
            return (SubscribeAnswer::Refused(503), None);
        }
        // A refresh carries our tag in To; anything else starts a new dialog.
        let existing = self
            .map
            .get(&binding)
            .filter(|s| checked.to.tag() == Some(&*s.local_tag) && *s.call_id == *checked.call_id);
        let local_tag: Box<str> = match existing {
            Some(s) => s.local_tag.clone(),
            None => tag.into(),
        };
        let cseq = existing.map_or(0, |s| s.cseq);
        let mut sub = Subscription {
            aor: aor.clone(),
            call_id: checked.call_id.into(),
            local_tag: local_tag.clone(),
            local_uri: to_uri.raw.into(),
            remote_uri: checked.from.uri().raw.into(),
            remote_tag: checked.from.tag().unwrap_or("").into(),
            remote_cseq: cseq_in,
            contact: contact.into(),
            cseq,
            expires_at_ms: now + u64::from(expires) * 1000,
        };
        let us = format!("sip:tether@{}", ctx.hostport);
        let mut w =
            writer::response_to_checked(out, msg, checked, 200, "OK", Some(&local_tag), Some(src));
        w.header_u32(HeaderName::Expires, expires);
        w.header_parts("Contact", &["<", &us, ">"]);
        w.finish(None);
        let answer = if expires == 0 {
            set_contact_flag(dir, &aor, binding, flags::SUBSCRIBED, false);
            self.map.remove(&binding);
            SubscribeAnswer::Terminated
        } else {
            set_contact_flag(dir, &aor, binding, flags::SUBSCRIBED, true);
            self.map.insert(binding, sub.clone());
            SubscribeAnswer::Active(expires)
        };
        // RFC 6665 §4.2.1.2: a NOTIFY follows at once, with the state.
        sub.cseq += 1;
        if let Some(s) = self.map.get_mut(&binding) {
            s.cseq = sub.cseq;
        }
        let state = if expires == 0 {
            "terminated;reason=timeout".to_owned()
        } else {
            format!("active;expires={expires}")
        };
        let notify = InitialNotify {
            dialog: sub,
            state,
            event,
            sent_by: ctx.hostport.to_owned(),
            us,
        };
        (answer, Some(notify))
    }
}
