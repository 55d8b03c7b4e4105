//! Requests through the proxy: matching retransmissions, ACK and CANCEL
//! to their transaction (RFC 3261 §17.2.3, §9.2), the checks of §16.3,
//! routing (§16.4–16.6: the location directory, the upstream, the dialog's
//! flow token) and the branches.

use std::hash::BuildHasher;

use super::branch::{BranchId, STATELESS_PREFIX};
use super::calls::{Role, Target};
use super::forward::{self, Rewrite};
use super::token::FlowToken;
use super::{Ctx, Handoff, Proxy};
use crate::addr::PathKey;
use crate::sip::uri::{split_host_port, Host, Scheme, Uri};
use crate::sip::Checked;
use crate::sip::{writer, HeaderName, Message, Method, StartLine};

/// The transaction id of a request's top Via: branch and sent-by, with
/// the method class (an ACK and a CANCEL name their INVITE's).
fn via_id(checked: &Checked<'_>, invite_class: bool, method: Method<'_>) -> String {
    let via = &checked.top_via;
    let branch = via.branch().unwrap_or("");
    let class = if invite_class {
        "INVITE"
    } else {
        method.as_str()
    };
    let mut s = String::with_capacity(branch.len() + via.sent_by.len() + 8);
    s.push_str(class);
    s.push(' ');
    s.push_str(branch);
    s.push(' ');
    s.push_str(via.sent_by);
    if branch.is_empty() {
        // RFC 2543 peers: Call-ID and CSeq stand in for the branch.
        s.push(' ');
        s.push_str(checked.call_id);
        s.push(' ');
        s.push_str(&checked.cseq.seq.to_string());
    }
    s
}

pub(super) fn hash_of(s: &str) -> u64 {
    // 0 means "no key" in the table.
    foldhash::fast::FixedState::with_seed(7).hash_one(s) | 1
}

impl Proxy {
    /// A request of a method the proxy handles. Every answer (and every
    /// forwarded request) goes out through `cx.out`.
    pub fn on_request<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        raw: &[u8],
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) {
        let Some(method) = msg.method() else { return };
        match method {
            Method::Ack => return self.on_ack(msg, checked, raw, src, cx),
            Method::Cancel => return self.on_cancel(msg, checked, src, cx),
            _ => {}
        }
        let invite = method == Method::Invite;
        let id = via_id(checked, invite, method);
        if let Some((slot, nonce)) = self.calls.find(hash_of(&id), &id) {
            return self.on_retransmission(slot, nonce, cx);
        }
        if let Some((code, reason, unsupported)) = check(msg, checked) {
            return self.reply(msg, checked, src, code, reason, unsupported.as_deref(), cx);
        }
        if self.is_loop(msg, checked) {
            self.stats.loops += 1;
            return self.reply(msg, checked, src, 482, "Loop Detected", None, cx);
        }
        if checked.to.tag().is_some() {
            return self.in_dialog(msg, checked, raw, src, id, cx);
        }
        let challenged = matches!(method, Method::Invite | Method::Message | Method::Subscribe);
        let mut authenticated = false;
        if challenged && !self.trusted_src(src.remote()) {
            match self.authenticate(msg, checked, src, cx) {
                Some(true) => authenticated = true,
                Some(false) => return,
                None => {}
            }
        }
        if invite {
            self.stats.calls_attempted += 1;
        }
        if checked
            .request_uri
            .is_some_and(|u| self.addressed_to_us(&u))
        {
            // Not for a user: for tether itself, which answers only
            // REGISTER, OPTIONS and SUBSCRIBE.
            let (code, reason) = match method {
                Method::Extension(_) => (501, "Not Implemented"),
                _ => (405, "Method Not Allowed"),
            };
            return self.reply(msg, checked, src, code, reason, None, cx);
        }
        if matches!(
            method,
            Method::Bye | Method::Prack | Method::Update | Method::Info
        ) {
            // Methods that only exist inside a dialog.
            return self.no_such_transaction(msg, checked, src, cx);
        }
        self.out_of_dialog(msg, checked, raw, src, id, authenticated, cx);
    }

    /// RFC 3261 §22.3 with the registrar's stateless nonces: `None` when
    /// authentication is off, `Some(true)` when the request may go on,
    /// `Some(false)` when it was answered (407, 403 or 400).
    fn authenticate<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) -> Option<bool> {
        use crate::registrar::auth::{Challenge, Verdict};
        let now_secs = cx.now / 1000;
        let auth = cx.auth.as_deref_mut()?;
        let (code, reason, stale) =
            match auth.check_as(Challenge::Proxy, msg, checked, src.remote(), now_secs) {
                Verdict::Authenticated(_) => return Some(true),
                Verdict::Challenge { stale } => (407, "Proxy Authentication Required", stale),
                Verdict::Forbidden => {
                    self.stats.auth_failed += 1;
                    (403, "Forbidden", false)
                }
                Verdict::Malformed => (400, "Malformed Proxy-Authorization", false),
            };
        let tag = self.ids.tag();
        let mut w = writer::response_to_checked(
            &mut self.buf,
            msg,
            checked,
            code,
            reason,
            Some(&tag),
            Some(src.remote()),
        );
        if code == 407 {
            auth.write_challenge_as(Challenge::Proxy, &mut w, stale, now_secs, src.remote());
        }
        w.finish(None);
        Self::send(cx.out, &self.buf, src);
        if code == 403 {
            self.stats.refused += 1;
        }
        Some(false)
    }

    /// A retransmitted request: the server transaction answers it.
    fn on_retransmission(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if call.server.on_retransmission(cx.now).resend && !call.last_response.is_empty() {
            Self::send(cx.out, &call.last_response, call.src);
        }
    }

    /// ACK: for a non-2xx it ends its INVITE's server transaction here
    /// (hop by hop); for a 2xx it is an in-dialog request of its own.
    fn on_ack(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) {
        let id = via_id(checked, true, Method::Ack);
        if let Some((slot, nonce)) = self.calls.find(hash_of(&id), &id) {
            let t = self.cfg.timers;
            let Some(call) = self.calls.get_mut(slot, nonce) else {
                return;
            };
            let out = call.server.on_ack(cx.now, &t);
            if !out.pass_ack {
                self.arm_server(slot, nonce, out.next_deadline, cx);
                return;
            }
        }
        if checked.to.tag().is_some() {
            self.in_dialog(msg, checked, raw, src, id, cx);
        }
    }

    /// CANCEL (RFC 3261 §16.10): answered here, and every pending branch
    /// of its INVITE is CANCELled.
    fn on_cancel(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) {
        let id = via_id(checked, true, Method::Cancel);
        let Some((slot, nonce)) = self.calls.find(hash_of(&id), &id) else {
            return self.no_such_transaction(msg, checked, src, cx);
        };
        self.reply(msg, checked, src, 200, "OK", None, cx);
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if call.finished || call.answered || call.cancelled {
            return;
        }
        call.cancelled = true;
        call.later.clear();
        self.stats.calls_cancelled += 1;
        self.unpark(slot, nonce, cx);
        self.cancel_pending(slot, nonce, cx);
        self.maybe_finish(slot, nonce, cx);
    }

    /// `481`, counted: an in-dialog request or CANCEL matching nothing of
    /// ours; nothing is forwarded.
    fn no_such_transaction(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) {
        self.stats.unmatched += 1;
        self.reply(
            msg,
            checked,
            src,
            481,
            "Call/Transaction Does Not Exist",
            None,
            cx,
        );
    }

    /// Answers a request ourselves (stateless: a retransmission gets the
    /// same answer again).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reply(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        code: u16,
        reason: &str,
        unsupported: Option<&str>,
        cx: &mut Ctx<'_>,
    ) {
        if msg.method() == Some(Method::Ack) {
            return;
        }
        let tag = (code > 100).then(|| self.ids.tag());
        let mut w = writer::response_to_checked(
            &mut self.buf,
            msg,
            checked,
            code,
            reason,
            tag.as_deref(),
            Some(src.remote()),
        );
        if let Some(u) = unsupported {
            w.header(HeaderName::Unsupported, u);
        }
        if code == 503 {
            w.header_named("Retry-After", "5");
        }
        if code == 405 || code == 501 {
            w.header(HeaderName::Allow, crate::endpoint::ALLOW);
        }
        w.finish(None);
        Self::send(cx.out, &self.buf, src);
    }

    /// RFC 3261 §16.3 step 4: a Via of ours whose loop hash is this
    /// request's means it came back unchanged (a spiral changes the
    /// Request-URI, and so the hash).
    fn is_loop(&self, msg: &Message<'_>, checked: &Checked<'_>) -> bool {
        let h = loop_hash(msg, checked);
        msg.vias().filter_map(Result::ok).any(|v| {
            v.branch()
                .and_then(BranchId::parse)
                .is_some_and(|b| b.loop_hash == h && self.is_our_sent_by(v.sent_by))
        })
    }

    pub(super) fn is_our_sent_by(&self, s: &str) -> bool {
        split_host_port(s).is_ok_and(|(host, port)| self.is_ours(host, port))
    }

    /// `host:port` is one of our addresses (a wildcard listen address
    /// matches any host on its port). Compared parsed, without allocating:
    /// every Route and every Via of ours is checked with it.
    pub(super) fn is_ours(&self, host: Host<'_>, port: Option<u16>) -> bool {
        let port = port.unwrap_or(5060);
        self.ours.iter().any(|o| {
            o.port == port
                && match (o.ip, host) {
                    (Some(ip), _) if ip.is_unspecified() => true,
                    (Some(ip), Host::V4(a)) => ip == std::net::IpAddr::V4(a),
                    (Some(ip), Host::V6(a)) => ip == std::net::IpAddr::V6(a),
                    (None, Host::Name(n)) => o.name.eq_ignore_ascii_case(n),
                    _ => false,
                }
        })
    }

    /// A Route URI that names us: our flow token in its user part, or our
    /// address.
    fn route_token(&self, uri: &str) -> (bool, Option<FlowToken>) {
        let Ok(u) = Uri::parse(uri) else {
            return (false, None);
        };
        // Unverified on purpose: the token only names the core keeping the
        // dialog; where the request goes comes from that core's dialog (a
        // forged token gets a 481 there), so the HMAC is not worth its two
        // SHA-256 blocks per in-dialog request.
        let at_us = || u.host.is_some_and(|h| self.is_ours(h, u.port));
        if let Some(t) = u.user.and_then(FlowToken::decode_unverified) {
            // In a cluster every node's Record-Route carries such a token:
            // only one naming our address is ours. (Without a cluster the
            // address is not compared: one check less per in-dialog Route.)
            if self.cfg.cluster.is_none() || at_us() {
                return (true, Some(t));
            }
            return (false, None);
        }
        (at_us(), None)
    }

    /// Our Route values on top of the request: how many, and the token.
    pub(super) fn our_routes(
        &self,
        msg: &Message<'_>,
    ) -> (usize, Option<FlowToken>, Option<String>) {
        let mut pop = 0;
        let mut token = None;
        for v in forward::routes(msg) {
            let uri = forward::uri_of(v);
            match self.route_token(uri) {
                (true, t) => {
                    pop += 1;
                    token = token.or(t);
                }
                (false, _) => return (pop, token, Some(uri.to_owned())),
            }
        }
        (pop, token, None)
    }

    /// An in-dialog request: our Record-Route's token names the dialog's
    /// core; there, the dialog says which party it goes to.
    fn in_dialog(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        cx: &mut Ctx<'_>,
    ) {
        let ack = msg.method() == Some(Method::Ack);
        let (pop, token, _) = self.our_routes(msg);
        let Some(token) = token else {
            return self.no_such_transaction(msg, checked, src, cx);
        };
        if token.core != self.core {
            self.stats.handoffs += 1;
            self.handoffs.push(Handoff {
                core: token.core,
                local: src.local(),
                remote: src.remote(),
                bytes: raw.into(),
            });
            return;
        }
        let from_tag = checked.from.tag().unwrap_or("");
        let to_tag = checked.to.tag().unwrap_or("");
        let Some((dslot, dnonce)) = self.dialogs.find(checked.call_id, from_tag, to_tag) else {
            return self.no_such_transaction(msg, checked, src, cx);
        };
        let Some(d) = self.dialogs.get_mut(dslot, dnonce) else {
            return;
        };
        let (media, party) = (d.media, u8::from(*d.caller.tag != *from_tag));
        let (from, to) = if &*d.caller.tag == from_tag {
            (&mut d.caller, &d.callee)
        } else {
            (&mut d.callee, &d.caller)
        };
        from.cseq = from.cseq.max(checked.cseq.seq);
        let target = Target {
            to: to.path,
            uri: None,
            path: None,
            device_core: to.device_core,
            group: 0,
            upstream: None,
        };
        let bye = msg.method() == Some(Method::Bye);
        if bye {
            d.ending = true;
        }
        if ack {
            // The answer of a late offer (offer in the 2xx) rides in the ACK.
            let body = match media {
                Some(id) => match self.anchor_body(msg, id, party, src.remote().ip(), cx) {
                    Ok(b) => b,
                    Err(_) => {
                        self.stats.media_unanchored += 1;
                        None
                    }
                },
                None => None,
            };
            // A 2xx's ACK has no response: forwarded statelessly, with a
            // branch that is the same for its retransmissions.
            let mut branch = String::from(STATELESS_PREFIX);
            branch.push_str(&format!("{:x}", hash_of(&id)));
            let sent_by = self.sent_by(target.to.local()).to_owned();
            forward::request(
                &mut self.buf,
                msg,
                &Rewrite {
                    uri: None,
                    sent_by: &sent_by,
                    branch: &branch,
                    record_route: None,
                    pop_routes: pop,
                    push_routes: "",
                    strip_proxy_auth: false,
                    source: Some(src.remote()),
                    body: body.as_deref(),
                },
            );
            Self::send(cx.out, &self.buf, target.to);
            return;
        }
        let role = Role::InDialog {
            slot: dslot,
            nonce: dnonce,
            ends: bye,
        };
        self.start_call(
            msg,
            checked,
            raw,
            src,
            id,
            role,
            pop,
            smallvec::smallvec![target],
            &[],
            false,
            cx,
        );
    }
}

/// Request-URI, Call-ID, From tag and CSeq number: the same for a request
/// coming round again, different for a spiral (RFC 3261 §16.6 step 8).
pub(super) fn loop_hash(msg: &Message<'_>, checked: &Checked<'_>) -> u32 {
    let uri = match msg.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => "",
    };
    foldhash::fast::FixedState::with_seed(11).hash_one((
        uri,
        checked.call_id,
        checked.from.tag(),
        checked.cseq.seq,
    )) as u32
}

/// RFC 3261 §16.3: Proxy-Require tags we lack → 420 (Require is for the
/// UAS: a proxy passes it, or 100rel calls would fail at the edge), a
/// Request-URI scheme we cannot route → 416.
pub fn check(
    msg: &Message<'_>,
    checked: &Checked<'_>,
) -> Option<(u16, &'static str, Option<String>)> {
    if let Some(u) = checked.request_uri {
        if u.scheme == Scheme::Other {
            return Some((416, "Unsupported URI Scheme", None));
        }
    }
    let unknown: Vec<&str> = msg
        .tokens(HeaderName::ProxyRequire)
        .filter_map(Result::ok)
        .filter(|t| {
            !super::PROXY_SUPPORTED
                .iter()
                .any(|s| s.eq_ignore_ascii_case(t))
        })
        .collect();
    if !unknown.is_empty() {
        return Some((420, "Bad Extension", Some(unknown.join(", "))));
    }
    None
}
