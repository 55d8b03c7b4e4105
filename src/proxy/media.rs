//! Media anchoring in the proxy (issue 14): which calls are anchored,
//! and the SDP of their offers and answers rewritten to the relay's
//! ports as they pass — INVITE, 18x/2xx, ACK (late offer), re-INVITE,
//! UPDATE and PRACK alike. The offer/answer roles do not matter here: an
//! SDP from party `p` names where `p` receives (leg `p`), and the copy
//! sent on names leg `1 - p`'s ports.

use std::net::IpAddr;

use super::calls::{Role, Target};
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::media::table::{MediaError, PartySdp, SessionId};
use crate::media::Mode;
use crate::sip::Checked;
use crate::sip::{HeaderName, Message, Method};

/// A status code and reason that refuse a request.
pub(super) type Refusal = (u16, &'static str);
/// A new call's session and the offer to send on (`None`: late offer).
pub(super) type Anchored = (CallMedia, Option<Vec<u8>>);

/// A transaction's part in its call's media.
#[derive(Debug, Clone, Copy)]
pub struct CallMedia {
    pub id: SessionId,
    /// The party that sent the request (0 = the dialog's caller).
    pub party: u8,
    /// The session ends with the transaction unless a dialog takes it.
    pub owns: bool,
}

/// Whether a message carries SDP: `Some(Ok)` it does, `Some(Err)` a body
/// of another kind, `None` no body.
pub(super) fn sdp_body<'a>(msg: &Message<'a>) -> Option<Result<&'a [u8], &'static str>> {
    if msg.body.is_empty() {
        return None;
    }
    let ct = msg.header(HeaderName::ContentType).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/sdp") {
        Some(Ok(msg.body))
    } else if mime.len() >= 10 && mime[..10].eq_ignore_ascii_case("multipart/") {
        Some(Err("multipart bodies cannot be anchored"))
    } else {
        Some(Err("body is not application/sdp"))
    }
}

/// Methods whose body may be an SDP offer or answer (RFC 3264, 3262, 3311).
pub(super) fn carries_offer(m: Option<Method<'_>>) -> bool {
    matches!(
        m,
        Some(Method::Invite | Method::Update | Method::Ack | Method::Prack)
    )
}

/// The IP of a URI's host, when it is a literal.
fn uri_ip(uri: &str) -> Option<IpAddr> {
    let u = crate::sip::Uri::parse(super::forward::uri_of(uri)).ok()?;
    match u.host? {
        crate::sip::Host::V4(a) => Some(a.into()),
        crate::sip::Host::V6(a) => Some(a.into()),
        crate::sip::Host::Name(_) => None,
    }
}

impl Proxy {
    /// For a new INVITE: whether to anchor, and if so the session and the
    /// offer to send on. `Err((code, reason))` answers the INVITE.
    pub(super) fn anchor_invite(
        &mut self,
        msg: &Message<'_>,
        contact: Option<&str>,
        src_ip: IpAddr,
        targets: &[Target],
        cx: &mut Ctx<'_>,
    ) -> Result<Option<Anchored>, Refusal> {
        if !targets.is_empty() && targets.iter().all(super::cluster::is_peer_target) {
            // Another node of the cluster takes it: the owner anchors what
            // needs anchoring (it sees the caller's SDP address against
            // ours), and two relays in a row would only add a hop.
            return Ok(None);
        }
        let body = match sdp_body(msg) {
            Some(Err(why)) if self.cfg.media != Mode::Never => return Err((488, why)),
            Some(Ok(b)) => Some(b),
            _ => None,
        };
        let anchor = match self.cfg.media {
            Mode::Never => false,
            Mode::Always => true,
            Mode::Nat => {
                let offer = body.and_then(|b| crate::media::sdp::parse(b).ok());
                let sdp_ip = offer.as_ref().and_then(|s| {
                    s.streams
                        .iter()
                        .find(|st| st.port != 0)
                        .and_then(|st| st.addr)
                });
                // An offer with ICE candidates traverses NATs by itself, and
                // anchoring would strip its ICE (which WebRTC profiles need).
                let ice = offer
                    .as_ref()
                    .is_some_and(|s| s.streams.iter().any(|st| st.port != 0 && st.ice));
                let caller = sdp_ip.is_some_and(|ip| ip != src_ip)
                    || contact.and_then(uri_ip).is_some_and(|ip| ip != src_ip);
                let callee = targets.iter().any(|t| {
                    t.uri
                        .as_deref()
                        .and_then(uri_ip)
                        .is_some_and(|ip| ip != t.to.remote().ip())
                });
                !ice && (caller || callee)
            }
        };
        if !anchor {
            return Ok(None);
        }
        let id = cx.media.create(0);
        let offer = match self.anchor_body(msg, id, 0, src_ip, cx) {
            Ok(offer) => offer,
            Err(e) => {
                cx.media.end(cx.now, id);
                return Err(e);
            }
        };
        self.stats.media_anchored += 1;
        let m = CallMedia {
            id,
            party: 0,
            owns: true,
        };
        Ok(Some((m, offer)))
    }

    /// An SDP from `party` of session `id` in a message passing through:
    /// the rewritten body, `Ok(None)` when there is nothing to rewrite.
    pub(super) fn anchor_body(
        &mut self,
        msg: &Message<'_>,
        id: SessionId,
        party: u8,
        src_ip: IpAddr,
        cx: &mut Ctx<'_>,
    ) -> Result<Option<Vec<u8>>, Refusal> {
        let body = match sdp_body(msg) {
            None => return Ok(None),
            Some(Err(why)) => return Err((488, why)),
            Some(Ok(b)) => b,
        };
        let mut out = Vec::new();
        cx.media
            .apply_sdp(
                cx.now,
                id,
                &PartySdp::new(usize::from(party), body, Some(src_ip)),
                &mut out,
            )
            .map_err(media_error)?;
        Ok(Some(out))
    }

    /// A response's SDP, rewritten for the sender of the request; the
    /// response passes unchanged (and is counted) when it cannot be
    /// anchored, since a response cannot be refused.
    pub(super) fn anchor_response(
        &mut self,
        msg: &Message<'_>,
        media: Option<CallMedia>,
        src_ip: IpAddr,
        cx: &mut Ctx<'_>,
    ) -> Option<Vec<u8>> {
        let m = media?;
        match self.anchor_body(msg, m.id, 1 - m.party, src_ip, cx) {
            Ok(b) => b,
            Err((_, why)) => {
                self.stats.media_unanchored += 1;
                tracing::debug!(why, "response SDP passed without anchoring");
                None
            }
        }
    }

    /// Whether dialog `owner` (an owner tag) still exists.
    pub fn owns_media(&self, owner: u64) -> bool {
        let (slot, nonce) = owner_dialog(owner);
        self.dialogs.get(slot, nonce).is_some()
    }

    /// A call's media stopped for `media.timeout_s`: BYE both parties.
    pub fn on_media_timeout(&mut self, owner: u64, cx: &mut Ctx<'_>) {
        let (slot, nonce) = owner_dialog(owner);
        if self.dialogs.get(slot, nonce).is_none() {
            return;
        }
        self.stats.media_timeouts += 1;
        self.bye_both(slot, nonce, "media timeout", cx);
    }
}

impl Proxy {
    /// The media part of a new transaction: the session and the body its
    /// branches send, or the answer that refuses it.
    pub(super) fn call_media(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        role: Role,
        targets: &[Target],
        cx: &mut Ctx<'_>,
    ) -> Result<(Option<CallMedia>, Option<Vec<u8>>), Refusal> {
        let method = msg.method();
        match role {
            Role::CreatesDialog if method == Some(Method::Invite) => {
                let contact = checked
                    .contacts
                    .first()
                    .and_then(|c| c.contact.addr())
                    .map(|a| a.uri_raw);
                let m = self.anchor_invite(msg, contact, src.remote().ip(), targets, cx)?;
                Ok(m.map_or((None, None), |(m, b)| (Some(m), b)))
            }
            Role::InDialog { slot, nonce, .. } if carries_offer(method) => {
                let Some(d) = self.dialogs.get(slot, nonce) else {
                    return Ok((None, None));
                };
                let Some(id) = d.media else {
                    return Ok((None, None));
                };
                let party = u8::from(*d.caller.tag != *checked.from.tag().unwrap_or(""));
                let body = self.anchor_body(msg, id, party, src.remote().ip(), cx)?;
                Ok((
                    Some(CallMedia {
                        id,
                        party,
                        owns: false,
                    }),
                    body,
                ))
            }
            _ => Ok((None, None)),
        }
    }

    /// A call that waited for its targets (the routing webhook's answer, or
    /// a held call's wake-up) took its media decision without them: in
    /// `media.mode = "nat"` a target behind a NAT anchors it now; in
    /// `"always"` a call that waited for its cluster owner (not anchored:
    /// the owner anchors) and went elsewhere is anchored now. `false`
    /// when the call was answered instead (no relay port, an offer that
    /// cannot be anchored).
    pub(super) fn media_for_targets(
        &mut self,
        slot: u32,
        nonce: u32,
        targets: &[Target],
        cx: &mut Ctx<'_>,
    ) -> bool {
        if self.cfg.media == Mode::Never {
            return true;
        }
        let Some(call) = self
            .calls
            .get(slot, nonce)
            .filter(|c| c.invite && c.media.is_none())
        else {
            return true;
        };
        let (request, src, role) = (call.request.clone(), call.src, call.role);
        let Ok(msg) = crate::sip::parse(&request) else {
            return true;
        };
        let Ok(checked) = msg.validate() else {
            return true;
        };
        match self.call_media(&msg, &checked, src, role, targets, cx) {
            Ok((media, body)) => {
                if let Some(c) = self.calls.get_mut(slot, nonce) {
                    c.media = media;
                    if let Some(b) = body {
                        c.body = Some(b.into_boxed_slice());
                    }
                }
                true
            }
            Err((code, _)) => {
                let reason = if code == 503 {
                    "Service Unavailable"
                } else {
                    "Not Acceptable Here"
                };
                self.finish_parked(slot, nonce, code, reason, cx);
                false
            }
        }
    }

    /// Answers a request whose media cannot be anchored: 488 with a
    /// Warning naming the reason, or 503 when the relay is out of ports.
    pub(super) fn refuse_media(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        code: u16,
        why: &'static str,
        cx: &mut Ctx<'_>,
    ) {
        if msg.method() == Some(Method::Ack) {
            return;
        }
        if code == 503 {
            self.stats.overloaded += 1;
            return self.reply(msg, checked, src, 503, "Service Unavailable", None, cx);
        }
        let tag = self.ids.tag();
        let sent_by = self.sent_by(src.local()).to_owned();
        let mut w = crate::sip::writer::response_to_checked(
            &mut self.buf,
            msg,
            checked,
            code,
            "Not Acceptable Here",
            Some(&tag),
            Some(src.remote()),
        );
        let warning = format!("399 {sent_by} \"{why}\"");
        w.header_named("Warning", &warning);
        w.finish(None);
        Self::send(cx.out, &self.buf, src);
    }
}

/// The dialog slot and nonce an owner tag of [`owner_tag`] names.
fn owner_dialog(owner: u64) -> (u32, u32) {
    ((owner >> 32) as u32, owner as u32)
}

/// The dialog slot and nonce as a media session's owner tag.
pub(super) fn owner_tag(slot: u32, nonce: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(nonce)
}

fn media_error(e: MediaError) -> (u16, &'static str) {
    match e {
        MediaError::NoPorts => (503, "No Relay Ports"),
        MediaError::Sdp(r) => (488, r),
        MediaError::Gone => (481, "Media Session Gone"),
    }
}
