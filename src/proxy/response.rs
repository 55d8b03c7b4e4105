//! Responses from the branches (RFC 3261 §16.7): provisionals and every
//! 2xx forwarded at once, the best final chosen once all branches are
//! done, pending branches CANCELled, the upstream fallback on 503/408
//! (seed 003), and the dialogs a 2xx creates.
//!
//! Over 700 lines on purpose: one response path, from a branch's answer to
//! the final response, the dialog it creates and the call event it makes;
//! each step reads the transaction state the previous one left.

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::branch::{BranchId, CANCEL};
use super::calls::{Cancel, Role, Target};
use super::dialogs::{Dialog, Side};
use super::forward;
use super::{Ctx, Handoff, Proxy};
use crate::sip::{self, writer, Message};
use crate::timer::Timer;
use crate::transaction::{ClientTransaction, Kind, State};

impl Proxy {
    /// A response whose top Via branch is one of ours (`BranchId::parse`
    /// succeeded); `false` when it is not a proxy branch at all.
    pub fn on_response(
        &mut self,
        msg: &Message<'_>,
        branch: &str,
        raw: &[u8],
        local: u8,
        remote: SocketAddr,
        cx: &mut Ctx<'_>,
    ) -> bool {
        if branch.starts_with(super::branch::STATELESS_PREFIX) {
            return true; // an answer to a BYE of ours: nothing waits for it
        }
        let Some(id) = BranchId::parse(branch) else {
            return false;
        };
        if id.core != self.core {
            self.stats.handoffs += 1;
            self.handoffs.push(Handoff {
                core: id.core,
                local,
                remote,
                bytes: raw.into(),
            });
            return true;
        }
        let Some(code) = msg.status() else {
            return true;
        };
        let i = usize::from(id.index);
        let t = self.cfg.timers;
        let (slot, nonce) = (id.slot, id.nonce);
        if msg.cseq().is_ok_and(|c| c.method == sip::Method::Cancel) {
            self.on_cancel_response(slot, nonce, i, code, cx);
            return true;
        }
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return true;
        };
        let Some(b) = call.branches.get_mut(i) else {
            return true;
        };
        let out = b.tx.on_response(code, cx.now, &t);
        if let Some(h) = b.timer.take() {
            cx.timers.cancel(h);
        }
        b.timer = out
            .next_deadline
            .map(|at| super::arm(cx.timers, at, slot, super::branch::CLIENT + id.index, nonce));
        if out.ack {
            if let Ok(sent) = sip::parse(&b.bytes) {
                forward::ack(&mut self.buf, &sent, msg);
                Self::send(cx.out, &self.buf, b.target.to);
            }
        }
        let Some(code) = out.deliver else {
            self.maybe_remove(slot, nonce, cx);
            return true;
        };
        if out.repeated {
            // RFC 6026: a retransmitted 2xx goes on to the caller, whose
            // ACK ends it.
            let (media, src) = (call.media, call.src);
            let body = self.anchor_response(msg, media, remote.ip(), cx);
            forward::response_with(&mut self.buf, msg, body.as_deref());
            Self::send(cx.out, &self.buf, src);
            return true;
        }
        match code {
            100 => {
                // Any provisional, 100 too, makes the branch CANCELable
                // (RFC 3261 §9.1); only the others reset Timer C (§16.7).
                b.provisional = true;
                // A branch given up on (CANCEL wanted, or Timer C) that
                // rings now would ring for ever: CANCEL it.
                if (b.cancel_wanted || b.done) && b.cancel.is_none() {
                    self.send_cancel(slot, nonce, i, cx);
                }
            }
            101..=199 => {
                b.provisional = true;
                if let Some(h) = b.timer_c.take() {
                    cx.timers.cancel(h);
                    b.timer_c = Some(super::arm(
                        cx.timers,
                        cx.now + self.cfg.timer_c_ms,
                        slot,
                        super::branch::TIMER_C + id.index,
                        nonce,
                    ));
                }
                let cancel = (b.cancel_wanted || b.done) && b.cancel.is_none();
                let caller = (call.invite && call.role == Role::CreatesDialog).then_some(call.src);
                if cancel {
                    self.send_cancel(slot, nonce, i, cx);
                }
                if let Some(src) = caller {
                    self.call_event(
                        crate::hooks::EventKind::CallRinging,
                        msg,
                        src.remote(),
                        None,
                    );
                }
                self.pass_response(slot, nonce, code, msg, remote.ip(), cx);
            }
            200..=299 => {
                self.branch_done(slot, nonce, i, cx);
                let first = !self.calls.get(slot, nonce).is_some_and(|c| c.answered);
                if let Some(c) = self.calls.get_mut(slot, nonce) {
                    c.answered = true;
                    c.later.clear();
                }
                if let Some(c) = self.calls.get(slot, nonce).filter(|c| first && c.invite) {
                    self.stats.calls_answered += 1;
                    if c.role == Role::CreatesDialog {
                        let src = c.src.remote();
                        self.call_event(crate::hooks::EventKind::CallAnswered, msg, src, None);
                    }
                }
                self.on_success(slot, nonce, i, msg, cx);
                self.pass_response(slot, nonce, code, msg, remote.ip(), cx);
                self.cancel_pending(slot, nonce, cx);
            }
            _ => {
                self.branch_done(slot, nonce, i, cx);
                let fallback = self.fallback_for(slot, nonce, i, code);
                if let Some(to) = fallback {
                    self.restart_upstream(slot, nonce, to, cx);
                } else {
                    let mut bytes = Vec::new();
                    forward::response(&mut bytes, msg);
                    self.offer_best(slot, nonce, code, bytes);
                    if code >= 600 {
                        if let Some(c) = self.calls.get_mut(slot, nonce) {
                            c.later.clear();
                        }
                        self.cancel_pending(slot, nonce, cx);
                    }
                }
                self.maybe_finish(slot, nonce, cx);
            }
        }
        self.trim(slot, nonce);
        self.maybe_remove(slot, nonce, cx);
        true
    }

    /// Frees the bytes a transaction no longer needs while it lingers for
    /// its RFC 3261 timers (32 s): the request once it is answered, a
    /// branch's request once nothing can retransmit it, CANCEL it or ACK
    /// it, the last response once nothing will re-send it. At a thousand
    /// calls a second, the lingering transactions are most of the proxy's
    /// memory.
    pub(super) fn trim(&mut self, slot: u32, nonce: u32) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if !call.finished {
            return;
        }
        call.request = Box::default();
        call.best = None;
        call.later = SmallVec::new();
        if call.server.state() == super::server::State::Accepted {
            // RFC 6026: a 2xx is re-sent end to end, never by us.
            call.last_response = Vec::new();
        }
        let invite = call.invite;
        for b in &mut call.branches {
            let needed = match b.tx.state() {
                State::Calling | State::Proceeding => true,
                // An INVITE branch's non-2xx final is re-ACKed from it.
                State::Completed => invite,
                State::Accepted | State::Terminated => false,
            };
            if !needed {
                b.bytes = Vec::new();
            }
            if b.cancel.as_ref().is_some_and(|c| {
                c.tx.state() != State::Calling && c.tx.state() != State::Proceeding
            }) {
                if let Some(c) = b.cancel.as_mut() {
                    c.bytes = Vec::new();
                }
            }
        }
    }

    /// Forwards a provisional or 2xx to the sender through the server
    /// transaction.
    fn pass_response(
        &mut self,
        slot: u32,
        nonce: u32,
        code: u16,
        msg: &Message<'_>,
        from_ip: std::net::IpAddr,
        cx: &mut Ctx<'_>,
    ) {
        let t = self.cfg.timers;
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        // Every 2xx of an INVITE goes on, after the first too (§16.7 step 10).
        let another_2xx = call.invite && (200..300).contains(&code);
        if (call.finished && !another_2xx) || !call.server.accepts(code) {
            return;
        }
        let (media, invite) = (call.media, call.invite);
        let body = self.anchor_response(msg, media, from_ip, cx);
        if let Some(m) = media.filter(|_| invite && (200..300).contains(&code)) {
            cx.media.arm(cx.now, m.id);
        }
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        forward::response_with(&mut call.last_response, msg, body.as_deref());
        let out = call.server.on_response(code, cx.now, &t);
        Self::send(cx.out, &call.last_response, call.src);
        if code >= 200 {
            self.calls.finish(slot, nonce);
        }
        self.arm_server(slot, nonce, out.next_deadline, cx);
    }

    /// Keeps the better of the final responses (§16.7 step 6: a 6xx wins,
    /// else the lowest class; the first of a class stays).
    pub(super) fn offer_best(&mut self, slot: u32, nonce: u32, code: u16, bytes: Vec<u8>) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        let better = match &call.best {
            None => true,
            Some((old, _)) => {
                let (o, n) = (old / 100, code / 100);
                o != 6 && (n == 6 || n < o)
            }
        };
        if better {
            call.best = Some((code, bytes));
        }
    }

    /// Marks branch `i` as finished (its timer C is no longer needed).
    pub(super) fn branch_done(&mut self, slot: u32, nonce: u32, i: usize, cx: &mut Ctx<'_>) {
        if let Some(b) = self
            .calls
            .get_mut(slot, nonce)
            .and_then(|c| c.branches.get_mut(i))
        {
            b.done = true;
            if let Some(h) = b.timer_c.take() {
                cx.timers.cancel(h);
            }
        }
    }

    /// Seed 003: the primary upstream's 503 or 408 (or silence) sends the
    /// request to the fallback.
    pub(super) fn fallback_for(
        &self,
        slot: u32,
        nonce: u32,
        i: usize,
        code: u16,
    ) -> Option<SocketAddr> {
        let call = self.calls.get(slot, nonce)?;
        let b = call.branches.get(i)?;
        let fallback = *self.cfg.upstream.get(1)?;
        (b.target.upstream == Some(0)
            && matches!(code, 503 | 408)
            && !call.cancelled
            && !call.answered)
            .then_some(fallback)
    }

    pub(super) fn restart_upstream(
        &mut self,
        slot: u32,
        nonce: u32,
        to: SocketAddr,
        cx: &mut Ctx<'_>,
    ) {
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        let request = call.request.clone();
        let Ok(msg) = sip::parse(&request) else {
            return;
        };
        let target = super::route::upstream_target(to, Some(1));
        self.start_branch(slot, nonce, &msg, target, cx);
    }

    /// Once no branch is pending: the next forking group, or the best
    /// final response to the sender.
    pub(super) fn maybe_finish(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if call.pending() > 0 || call.finished || call.parked.is_some() {
            return;
        }
        if call.answered {
            return;
        }
        if !call.later.is_empty() && !call.cancelled {
            let group = call.later[0].group;
            let next: Vec<Target> = call
                .later
                .iter()
                .filter(|t| t.group == group)
                .cloned()
                .collect();
            call.later.retain(|t| t.group != group);
            let request = call.request.clone();
            if let Ok(msg) = sip::parse(&request) {
                for t in next {
                    self.start_branch(slot, nonce, &msg, t, cx);
                }
                return;
            }
        }
        if call.owner.is_some() && self.owner_retry(slot, nonce, cx) {
            return;
        }
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        let (code, mut bytes) = call.best.take().unwrap_or_default();
        if code == 0 {
            // Every branch timed out (or was cancelled before it rang).
            let (code, reason) = if call.cancelled {
                (487, "Request Terminated")
            } else {
                (408, "Request Timeout")
            };
            let request = call.request.clone();
            let Ok(req) = sip::parse(&request) else {
                return;
            };
            let tag = self.ids.tag();
            writer::response_to(
                &mut bytes,
                &req,
                code,
                reason,
                Some(&tag),
                Some(call.src.remote()),
            )
            .finish(None);
            return self.send_final(slot, nonce, code, bytes, cx);
        }
        self.send_final(slot, nonce, code, bytes, cx);
    }

    fn send_final(&mut self, slot: u32, nonce: u32, code: u16, bytes: Vec<u8>, cx: &mut Ctx<'_>) {
        let t = self.cfg.timers;
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if !call.server.accepts(code) {
            return;
        }
        let out = call.server.on_response(code, cx.now, &t);
        Self::send(cx.out, &bytes, call.src);
        call.last_response = bytes;
        // A failed call's relay ports are freed now, not when the
        // transaction ends (Timer D, 32 s on): else busy and cancelled
        // calls tie up the port range and new calls get 503.
        if call.invite && code >= 300 {
            if let Some(m) = call.media.take_if(|m| m.owns) {
                cx.media.end(cx.now, m.id);
            }
        }
        let (invite, role, cancelled, src) = (call.invite, call.role, call.cancelled, call.src);
        self.calls.finish(slot, nonce);
        if invite && code >= 300 && role == super::calls::Role::CreatesDialog {
            use crate::hooks::{EndReason, EventKind};
            if self.hooks.wants(EventKind::CallEnded) {
                let reason = match code {
                    _ if cancelled => EndReason::Cancel,
                    408 => EndReason::Timeout,
                    _ => EndReason::Failure,
                };
                let sent = self.calls.get(slot, nonce).map(|c| c.last_response.clone());
                if let Some(Ok(resp)) = sent.as_deref().map(sip::parse) {
                    self.call_event(EventKind::CallEnded, &resp, src.remote(), Some(reason));
                }
            }
        }
        if invite && code >= 300 {
            let class = usize::from(code / 100).clamp(3, 6) - 3;
            self.stats.calls_failed[class] += 1;
        }
        self.trim(slot, nonce);
        if let super::calls::Role::InDialog {
            slot: ds,
            nonce: dn,
            ..
        } = role
        {
            // RFC 5057: a 481 or 408 to an in-dialog request ends the dialog.
            if matches!(code, 481 | 408) {
                self.end_dialog(ds, dn, cx);
            }
        }
        self.arm_server(slot, nonce, out.next_deadline, cx);
    }

    /// (Re)arms the server transaction's timer.
    pub(super) fn arm_server(&mut self, slot: u32, nonce: u32, at: Option<u64>, cx: &mut Ctx<'_>) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if let Some(h) = call.server_timer.take() {
            cx.timers.cancel(h);
        }
        call.server_timer = at.map(|at| super::arm(cx.timers, at, slot, 0, nonce));
        self.maybe_remove(slot, nonce, cx);
    }

    /// CANCELs every branch still pending: at once when it has rung, when
    /// it does otherwise (RFC 3261 §9.1). A branch that never rang counts
    /// as terminated for the caller's answer.
    pub(super) fn cancel_pending(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        if !call.invite {
            return;
        }
        let mut now_cancel = Vec::new();
        for (i, b) in call.branches.iter_mut().enumerate() {
            if b.done || b.cancel.is_some() || b.cancel_wanted {
                continue;
            }
            if b.provisional {
                now_cancel.push(i);
            } else {
                b.cancel_wanted = true;
                b.done = true;
                if let Some(h) = b.timer_c.take() {
                    cx.timers.cancel(h);
                }
            }
        }
        for i in now_cancel {
            self.send_cancel(slot, nonce, i, cx);
        }
    }

    /// Sends a CANCEL for branch `i` as its own client transaction.
    pub(super) fn send_cancel(&mut self, slot: u32, nonce: u32, i: usize, cx: &mut Ctx<'_>) {
        let t = self.cfg.timers;
        let Some(b) = self
            .calls
            .get_mut(slot, nonce)
            .and_then(|c| c.branches.get_mut(i))
        else {
            return;
        };
        if b.cancel.is_some()
            || matches!(
                b.tx.state(),
                State::Completed | State::Accepted | State::Terminated
            )
        {
            return;
        }
        let Ok(sent) = sip::parse(&b.bytes) else {
            return;
        };
        let mut bytes = Vec::with_capacity(512);
        forward::cancel(&mut bytes, &sent);
        let (tx, out) = ClientTransaction::start(Kind::NonInvite, cx.now, &t);
        Self::send(cx.out, &bytes, b.target.to);
        let timer = out
            .next_deadline
            .map(|at| super::arm(cx.timers, at, slot, CANCEL + i as u8, nonce));
        b.cancel = Some(Cancel { tx, timer, bytes });
        // The branch's 487 is what the caller gets; should it never come,
        // Timer C now bounds the wait at 64·T1 (RFC 3261 §9.1).
        if let Some(h) = b.timer_c.take() {
            cx.timers.cancel(h);
        }
        b.timer_c = Some(super::arm(
            cx.timers,
            cx.now + t.timeout_ms,
            slot,
            super::branch::TIMER_C + i as u8,
            nonce,
        ));
    }

    /// A response to one of our CANCELs (its Via is the branch's).
    pub(super) fn on_cancel_response(
        &mut self,
        slot: u32,
        nonce: u32,
        i: usize,
        code: u16,
        cx: &mut Ctx<'_>,
    ) {
        let t = self.cfg.timers;
        let Some(c) = self
            .calls
            .get_mut(slot, nonce)
            .and_then(|c| c.branches.get_mut(i))
            .and_then(|b| b.cancel.as_mut())
        else {
            return;
        };
        let out = c.tx.on_response(code, cx.now, &t);
        if let Some(h) = c.timer.take() {
            cx.timers.cancel(h);
        }
        c.timer = out
            .next_deadline
            .map(|at| super::arm(cx.timers, at, slot, CANCEL + i as u8, nonce));
        self.maybe_remove(slot, nonce, cx);
    }

    /// Frees a transaction once its server side and every client side are over.
    pub(super) fn maybe_remove(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        let server_over = call.server.state() == super::server::State::Terminated;
        let branches_over = call.branches.iter().all(|b| {
            b.tx.state() == State::Terminated
                && b.cancel
                    .as_ref()
                    .is_none_or(|c| c.tx.state() == State::Terminated)
        });
        if !(server_over && branches_over) {
            return;
        }
        if let Some(call) = self.calls.remove(slot, nonce) {
            if let Some(p) = &call.parked {
                // Not reached (a final response unparks first); a hold
                // must never outlive its call in the index.
                match &p.why {
                    super::hold::Park::Hold { aor, .. } => self.unlist(aor, slot, nonce),
                    super::hold::Park::Owner { aor } => self.unlist_owner(*aor, slot, nonce),
                    super::hold::Park::Route => {}
                }
                if let Some(t) = p.timer {
                    cx.timers.cancel(t);
                }
            }
            if let Some(m) = call.media.filter(|m| m.owns) {
                cx.media.end(cx.now, m.id);
            }
            let handles = call
                .branches
                .iter()
                .flat_map(|b| [b.timer, b.timer_c, b.cancel.as_ref().and_then(|c| c.timer)])
                .chain([call.server_timer]);
            for h in handles.flatten() {
                cx.timers.cancel(h);
            }
        }
    }

    /// A 2xx: an INVITE or SUBSCRIBE starts a dialog; a BYE ends one.
    fn on_success(
        &mut self,
        slot: u32,
        nonce: u32,
        i: usize,
        resp: &Message<'_>,
        cx: &mut Ctx<'_>,
    ) {
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        match call.role {
            Role::CreatesDialog => {}
            Role::InDialog {
                slot: ds,
                nonce: dn,
                ends: true,
            } => {
                let src = call.src.remote();
                self.call_event(
                    crate::hooks::EventKind::CallEnded,
                    resp,
                    src,
                    Some(crate::hooks::EndReason::Bye),
                );
                return self.end_dialog(ds, dn, cx);
            }
            _ => return,
        }
        let Some(b) = call.branches.get(i) else {
            return;
        };
        let (Some(seed), Ok(to)) = (call.seed.as_deref(), resp.to()) else {
            return;
        };
        let contact_of = |m: &Message<'_>| -> Box<str> {
            m.contacts()
                .next()
                .and_then(Result::ok)
                .and_then(|c| c.addr().map(|a| a.uri_raw.into()))
                .unwrap_or_default()
        };
        let caller = Side {
            path: call.src,
            device_core: call.src_device.then_some(self.core),
            tag: seed.from_tag.clone(),
            contact: seed.contact.clone(),
            aor: seed.from_uri.clone(),
            cseq: seed.cseq,
        };
        let callee = Side {
            path: b.target.to,
            device_core: b.target.device_core,
            tag: to.tag().unwrap_or("").into(),
            contact: contact_of(resp),
            aor: to.uri_raw.into(),
            cseq: 0,
        };
        let media = call.media.filter(|m| m.owns).map(|m| m.id);
        let d = Dialog {
            call_id: seed.call_id.clone(),
            caller,
            callee,
            started: cx.now,
            timer: None,
            ending: false,
            media,
        };
        let notes = [
            d.caller.device_core.map(|c| (c, d.caller.path)),
            d.callee.device_core.map(|c| (c, d.callee.path)),
        ];
        let Some((ds, dn)) = self.dialogs.insert(d) else {
            return; // a second 2xx of the same dialog
        };
        self.stats.dialogs_started += 1;
        if let Some(id) = media {
            // The dialog owns the session now; a second fork's dialog relays none.
            cx.media.set_owner(id, super::media::owner_tag(ds, dn));
            if let Some(m) = self
                .calls
                .get_mut(slot, nonce)
                .and_then(|c| c.media.as_mut())
            {
                m.owns = false;
            }
        }
        if self.cfg.max_call_ms > 0 {
            let h = cx.timers.arm(
                cx.now + self.cfg.max_call_ms,
                Timer::Dialog {
                    slot: ds,
                    nonce: dn,
                },
            );
            if let Some(d) = self.dialogs.get_mut(ds, dn) {
                d.timer = Some(h);
            }
        }
        for (core, path) in notes.into_iter().flatten() {
            self.note_path(core, path, true, cx);
        }
    }

    /// Ends a dialog: its timer, its paths' dialog states.
    pub(super) fn end_dialog(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        let Some(d) = self.dialogs.remove(slot, nonce) else {
            return;
        };
        self.stats.dialogs_ended += 1;
        if let Some(h) = d.timer {
            cx.timers.cancel(h);
        }
        if let Some(id) = d.media {
            cx.media.end(cx.now, id);
        }
        for side in [&d.caller, &d.callee] {
            if let Some(core) = side.device_core {
                self.note_path(core, side.path, false, cx);
            }
        }
    }

    /// Writes a BYE of ours from `from` to `to` (`proxy.max_call_s`, media timeout).
    pub(super) fn write_bye(
        &mut self,
        call_id: &str,
        from: &Side,
        to: &Side,
        sent_by: &str,
        why: &str,
    ) {
        let mut branch = String::from(super::branch::STATELESS_PREFIX);
        branch.push_str(&format!("{:x}", self.ids.next_u64()));
        let head = writer::RequestHead {
            method: sip::Method::Bye,
            uri: if to.contact.is_empty() {
                &to.aor
            } else {
                &to.contact
            },
            transport: "UDP",
            sent_by,
            branch: &branch,
            from_uri: &from.aor,
            from_tag: &from.tag,
            to_uri: &to.aor,
            to_tag: Some(&to.tag),
            call_id,
            cseq: from.cseq.saturating_add(1),
            max_forwards: 70,
            contact: None,
            routes: &[],
        };
        let mut w = writer::request(&mut self.buf, &head);
        let reason = format!("SIP;cause=200;text=\"{why}\"");
        w.header_named("Reason", &reason);
        w.finish(None);
    }
}
