//! Requests through the proxy: matching retransmissions, ACK and CANCEL
//! to their transaction (RFC 3261 §17.2.3, §9.2), the checks of §16.3,
//! routing (§16.4–16.6: the location directory, the upstream, the dialog's
//! flow token) and the branches.

use std::hash::BuildHasher;
use std::net::SocketAddr;

use smallvec::SmallVec;

use super::calls::{Branch, Call, Role, Target};
use super::forward::{self, Rewrite};
use super::server::ServerTransaction;
use super::token::FlowToken;
use super::{Ctx, Handoff, Proxy};
use crate::addr::PathKey;
use crate::nat::PathState;
use crate::registrar::{canonical_aor, ContactView};
use crate::sip::uri::{split_host_port, Host, Scheme, Uri};
use crate::sip::Checked;
use crate::sip::{writer, HeaderName, Message, Method, StartLine};
use crate::timer::Timer;
use crate::transaction::{ClientTransaction, Kind};

/// Our Via branches: magic cookie, "tp", then core, slot, nonce, branch
/// index and loop hash in hex.
pub(super) const BRANCH_PREFIX: &str = "z9hG4bKtp";
/// Branches of what we send without a transaction (a 2xx's ACK, our BYE).
pub(super) const STATELESS_PREFIX: &str = "z9hG4bKtx";

/// Timer `what` values: 0 the server transaction, then per branch `i`.
pub(super) const CLIENT: u8 = 1;
pub(super) const CANCEL: u8 = 64;
pub(super) const TIMER_C: u8 = 128;

/// What a branch id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BranchId {
    pub core: u16,
    pub slot: u32,
    pub nonce: u32,
    pub index: u8,
    pub loop_hash: u32,
}

impl BranchId {
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{BRANCH_PREFIX}{:x}-{:x}-{:x}-{:x}-{:x}",
            self.core, self.slot, self.nonce, self.index, self.loop_hash
        );
    }

    pub fn parse(b: &str) -> Option<BranchId> {
        let mut it = b.strip_prefix(BRANCH_PREFIX)?.split('-');
        let mut next = || u32::from_str_radix(it.next()?, 16).ok();
        let id = BranchId {
            core: u16::try_from(next()?).ok()?,
            slot: next()?,
            nonce: next()?,
            index: u8::try_from(next()?).ok()?,
            loop_hash: next()?,
        };
        it.next().is_none().then_some(id)
    }
}

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

fn hash_of(s: &str) -> u64 {
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
        if challenged && !self.trusted(src.remote().ip()) {
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
                Verdict::Forbidden => (403, "Forbidden", false),
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

    fn is_our_sent_by(&self, s: &str) -> bool {
        let Ok((host, port)) = split_host_port(s) else {
            return false;
        };
        self.sent_by.iter().any(|ours| match split_host_port(ours) {
            Ok((h, p)) => {
                p.unwrap_or(5060) == port.unwrap_or(5060)
                    && (h == host || matches!(h, Host::V4(a) if a.is_unspecified()))
            }
            Err(_) => false,
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
        if let Some(t) = u.user.and_then(FlowToken::decode_unverified) {
            return (true, Some(t));
        }
        let ours = u.host.is_some_and(|h| {
            let hp = match u.port {
                Some(p) => format!("{h}:{p}"),
                None => format!("{h}"),
            };
            self.is_our_sent_by(&hp)
        });
        (ours, None)
    }

    /// Our Route values on top of the request: how many, and the token.
    fn our_routes(&self, msg: &Message<'_>) -> (usize, Option<FlowToken>, Option<String>) {
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
            false,
            cx,
        );
    }

    /// A request outside any dialog: to a served user's bindings, or upstream.
    #[allow(clippy::too_many_arguments)]
    fn out_of_dialog(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        authenticated: bool,
        cx: &mut Ctx<'_>,
    ) {
        let (pop, _, foreign) = self.our_routes(msg);
        let trusted = self.trusted(src.remote().ip());
        let mut targets: SmallVec<[Target; 2]> = SmallVec::new();
        if let Some(route) = foreign {
            // A preloaded Route to someone else: only the trusted core may
            // steer us (a device must not make us a relay to a third party).
            let to = (trusted).then(|| numeric_target(&route)).flatten();
            let Some(to) = to else {
                self.stats.refused += 1;
                return self.reply(msg, checked, src, 403, "Route Not Allowed", None, cx);
            };
            targets.push(upstream_target(to, None));
        } else {
            let Some(ruri) = checked.request_uri else {
                return;
            };
            match self.locate(&ruri, cx.now) {
                Located::Bindings(found) => {
                    let reachable: SmallVec<[ContactView; 2]> = found
                        .into_iter()
                        .filter(ContactView::is_reachable)
                        .collect();
                    if reachable.is_empty() {
                        return self.reply(
                            msg,
                            checked,
                            src,
                            480,
                            "Temporarily Unavailable",
                            None,
                            cx,
                        );
                    }
                    targets = self.fork_targets(reachable);
                }
                Located::NotFound => {
                    return self.reply(msg, checked, src, 404, "Not Found", None, cx);
                }
                Located::Elsewhere => {
                    let registered = matches!(
                        cx.keepalive.state(&src),
                        PathState::RegistrationOnly | PathState::DialogAndRegistration
                    );
                    if !trusted && !registered && !authenticated {
                        // No open relay: only the core, authenticated and
                        // registered devices reach other domains.
                        self.stats.refused += 1;
                        return self.reply(msg, checked, src, 403, "Relaying Denied", None, cx);
                    }
                    let Some(&primary) = self.cfg.upstream.first() else {
                        return self.reply(msg, checked, src, 404, "Not Found", None, cx);
                    };
                    targets.push(upstream_target(primary, Some(0)));
                }
            }
        }
        let method = msg.method().unwrap_or(Method::Options);
        let role = if matches!(method, Method::Invite | Method::Subscribe) {
            Role::CreatesDialog
        } else {
            Role::Plain
        };
        let strip_auth = authenticated;
        self.start_call(
            msg, checked, raw, src, id, role, pop, targets, strip_auth, cx,
        );
    }

    /// A Request-URI without a user, naming a domain we serve or our own
    /// address: the request is for tether, not for someone behind it.
    fn addressed_to_us(&self, ruri: &Uri<'_>) -> bool {
        let (None, Some(host), Scheme::Sip | Scheme::Sips) = (ruri.user, ruri.host, ruri.scheme)
        else {
            return false;
        };
        let hp = match ruri.port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        self.cfg.domains.is_empty() || self.serves(host) || self.is_our_sent_by(&hp)
    }

    fn serves(&self, host: Host<'_>) -> bool {
        self.cfg.domains.iter().any(|d| match host {
            Host::Name(h) => d.eq_ignore_ascii_case(h),
            other => **d == *other.to_string(),
        })
    }

    /// Where a Request-URI leads.
    fn locate(&self, ruri: &Uri<'_>, now: u64) -> Located {
        let (Some(host), Scheme::Sip | Scheme::Sips) = (ruri.host, ruri.scheme) else {
            return Located::Elsewhere;
        };
        let served = self.cfg.domains.is_empty() || self.serves(host);
        if !served {
            return Located::Elsewhere;
        }
        let Some(user) = ruri.user else {
            return if self.cfg.domains.is_empty() {
                Located::Elsewhere
            } else {
                Located::NotFound
            };
        };
        let found = self
            .dir
            .lookup(&canonical_aor(user, host), (now / 1000) as u32);
        if !found.is_empty() {
            Located::Bindings(Box::new(found))
        } else if self.cfg.domains.is_empty() {
            // Serving "any domain": an unknown user may live upstream.
            Located::Elsewhere
        } else {
            Located::NotFound
        }
    }

    /// Bindings as branches: highest q first, one group per q value
    /// (RFC 3261 §16.6: parallel within a group, groups in sequence).
    fn fork_targets(&self, mut found: SmallVec<[ContactView; 2]>) -> SmallVec<[Target; 2]> {
        found.sort_by_key(|c| std::cmp::Reverse(c.q.unwrap_or(1000)));
        let mut group = 0u16;
        let mut last_q = None;
        found
            .into_iter()
            .take(self.cfg.max_forks)
            .map(|c| {
                let q = c.q.unwrap_or(1000);
                if last_q.is_some_and(|l| l != q) {
                    group += 1;
                }
                last_q = Some(q);
                Target {
                    to: PathKey::new(c.local, c.source),
                    uri: Some(c.contact),
                    path: c.path,
                    device_core: Some(c.binding.core),
                    group,
                    upstream: None,
                }
            })
            .collect()
    }

    /// Creates the proxy transaction and starts the first group's branches.
    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        role: Role,
        pop: usize,
        mut targets: SmallVec<[Target; 2]>,
        strip_auth: bool,
        cx: &mut Ctx<'_>,
    ) {
        let invite = msg.method() == Some(Method::Invite);
        // A dialog's own requests (BYE above all) are never refused for
        // their source's share: that would leave the call up.
        let in_dialog = matches!(role, Role::InDialog { .. });
        let full = self.calls.len() >= self.cfg.max_transactions
            || (!in_dialog && self.calls.from_source(&src) >= self.cfg.max_per_source)
            || (role == Role::CreatesDialog && self.dialogs.len() >= self.cfg.max_dialogs);
        if full {
            self.stats.overloaded += 1;
            return self.reply(msg, checked, src, 503, "Service Unavailable", None, cx);
        }
        let kind = if invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let server = ServerTransaction::start(kind, cx.now, &self.cfg.timers);
        let first_group = targets.first().map_or(0, |t| t.group);
        let later: SmallVec<[Target; 2]> = targets
            .iter()
            .filter(|t| t.group != first_group)
            .cloned()
            .collect();
        targets.retain(|t| t.group == first_group);
        let call = Call {
            nonce: 0,
            via_key: hash_of(&id),
            via_id: id.into(),
            invite,
            role,
            server,
            server_timer: None,
            src,
            src_device: !self.trusted(src.remote().ip()),
            request: raw.into(),
            last_response: Vec::new(),
            branches: SmallVec::new(),
            later,
            best: None,
            answered: false,
            finished: false,
            cancelled: false,
            started: cx.now,
            pop,
            loop_hash: loop_hash(msg, checked),
            strip_auth,
            seed: (role == Role::CreatesDialog).then(|| {
                Box::new(super::calls::DialogSeed {
                    call_id: checked.call_id.into(),
                    from_tag: checked.from.tag().unwrap_or("").into(),
                    from_uri: checked.from.uri_raw.into(),
                    contact: checked
                        .contacts
                        .first()
                        .and_then(|c| c.contact.addr())
                        .map_or("", |a| a.uri_raw)
                        .into(),
                    cseq: checked.cseq.seq,
                })
            }),
        };
        let (slot, nonce) = self.calls.insert(call);
        self.stats.transactions += 1;
        if invite {
            // RFC 3261 §16.2: a stateful proxy answers 100 at once, so the
            // caller stops retransmitting while the branches ring.
            writer::response_to_checked(
                &mut self.buf,
                msg,
                checked,
                100,
                "Trying",
                None,
                Some(src.remote()),
            )
            .finish(None);
            Self::send(cx.out, &self.buf, src);
            let t = self.cfg.timers;
            if let Some(call) = self.calls.get_mut(slot, nonce) {
                call.server.on_response(100, cx.now, &t);
                call.last_response.clear();
                call.last_response.extend_from_slice(&self.buf);
            }
        }
        for t in targets {
            self.start_branch(slot, nonce, msg, t, cx);
        }
    }

    /// Sends one branch of transaction (slot, nonce): `msg` rewritten for
    /// `target`, as a client transaction.
    pub(super) fn start_branch(
        &mut self,
        slot: u32,
        nonce: u32,
        msg: &Message<'_>,
        target: Target,
        cx: &mut Ctx<'_>,
    ) {
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        let index = call.branches.len();
        if index >= usize::from(CANCEL - CLIENT) {
            return;
        }
        let mut branch = String::with_capacity(48);
        BranchId {
            core: self.core,
            slot,
            nonce,
            index: index as u8,
            loop_hash: call.loop_hash,
        }
        .write(&mut branch);
        let sent_by = self.sent_by(target.to.local()).to_owned();
        let rr = (call.role == Role::CreatesDialog).then(|| {
            let mut s = String::from("sip:");
            FlowToken {
                core: self.core,
                caller: call.src,
                callee: target.to,
            }
            .encode_keyed(&self.key, &mut s);
            s.push('@');
            s.push_str(&sent_by);
            s.push_str(";lr");
            s
        });
        let mut bytes = Vec::with_capacity(msg.body.len() + 1024);
        forward::request(
            &mut bytes,
            msg,
            &Rewrite {
                uri: target.uri.as_deref(),
                sent_by: &sent_by,
                branch: &branch,
                record_route: rr.as_deref(),
                pop_routes: call.pop,
                push_routes: target.path.as_deref().unwrap_or(""),
                strip_proxy_auth: call.strip_auth,
                source: Some(call.src.remote()),
            },
        );
        let invite = call.invite;
        let kind = if invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        let (tx, out) = ClientTransaction::start(kind, cx.now, &self.cfg.timers);
        Self::send(cx.out, &bytes, target.to);
        let i = index as u8;
        let timer = out.next_deadline.map(|at| {
            cx.timers.arm(
                at,
                Timer::Proxy {
                    slot,
                    what: CLIENT + i,
                    nonce,
                },
            )
        });
        let timer_c = invite.then(|| {
            cx.timers.arm(
                cx.now + self.cfg.timer_c_ms,
                Timer::Proxy {
                    slot,
                    what: TIMER_C + i,
                    nonce,
                },
            )
        });
        self.stats.branches += 1;
        if let Some(call) = self.calls.get_mut(slot, nonce) {
            call.branches.push(Branch {
                tx,
                timer,
                timer_c,
                target,
                bytes,
                done: false,
                provisional: false,
                cancel_wanted: false,
                cancel: None,
            });
        }
    }
}

/// Where the location service sends a request.
enum Located {
    Bindings(Box<SmallVec<[ContactView; 2]>>),
    NotFound,
    /// Another domain (or a user the served-any-domain node does not know).
    Elsewhere,
}

fn upstream_target(to: SocketAddr, which: Option<u8>) -> Target {
    Target {
        to: PathKey::new(0, to),
        uri: None,
        path: None,
        device_core: None,
        group: 0,
        upstream: which,
    }
}

/// `sip:10.0.0.5:5060;lr` → 10.0.0.5:5060 (tether resolves no names).
fn numeric_target(uri: &str) -> Option<SocketAddr> {
    let u = Uri::parse(uri).ok()?;
    let port = u.port.unwrap_or(5060);
    match u.host? {
        Host::V4(a) => Some(SocketAddr::from((a, port))),
        Host::V6(a) => Some(SocketAddr::from((a, port))),
        Host::Name(_) => None,
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
