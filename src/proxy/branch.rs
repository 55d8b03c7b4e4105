//! Starting a proxy transaction and its branches (RFC 3261 §16.6): the
//! 100 Trying, the rewritten request per target as a client transaction,
//! our Via branch (which names core, slot and nonce, so a response finds
//! its transaction from any core) and the Record-Route flow token.

use smallvec::SmallVec;

use super::calls::{Branch, Call, Role, Target};
use super::forward::{self, Rewrite};
use super::request::{hash_of, loop_hash};
use super::server::ServerTransaction;
use super::token::FlowToken;
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::sip::Checked;
use crate::sip::{writer, Message, Method};
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

impl Proxy {
    /// Creates the proxy transaction and starts the first group's branches.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_call(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        role: Role,
        pop: usize,
        mut targets: SmallVec<[Target; 2]>,
        media_hint: &[Target],
        strip_auth: bool,
        cx: &mut Ctx<'_>,
    ) -> Option<(u32, u32)> {
        let invite = msg.method() == Some(Method::Invite);
        // A dialog's own requests (BYE above all) are never refused for
        // their source's share: that would leave the call up.
        let in_dialog = matches!(role, Role::InDialog { .. });
        let full = self.calls.len() >= self.cfg.max_transactions
            || (!in_dialog && self.calls.from_source(&src) >= self.cfg.max_per_source)
            || (role == Role::CreatesDialog && self.dialogs.len() >= self.cfg.max_dialogs);
        if full {
            self.stats.overloaded += 1;
            self.reply(msg, checked, src, 503, "Service Unavailable", None, cx);
            return None;
        }
        let kind = if invite {
            Kind::Invite
        } else {
            Kind::NonInvite
        };
        // No targets yet (a held call): the media decision looks at where
        // the call is likely to go, the sleeping device's bindings.
        let for_media = if targets.is_empty() {
            media_hint
        } else {
            &targets[..]
        };
        let (media, body) = match self.call_media(msg, checked, src, role, for_media, cx) {
            Ok(m) => m,
            Err((code, why)) => {
                self.refuse_media(msg, checked, src, code, why, cx);
                return None;
            }
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
            src_device: !self.trusted_src(src.remote()),
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
            media,
            body: body.map(Vec::into_boxed_slice),
            parked: None,
            owner: None,
        };
        let (slot, nonce) = self.calls.insert(call);
        self.stats.transactions += 1;
        if invite && role == Role::CreatesDialog {
            self.call_event(crate::hooks::EventKind::CallInvite, msg, src.remote(), None);
        }
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
        Some((slot, nonce))
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
                body: call.body.as_deref(),
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
        let timer = out
            .next_deadline
            .map(|at| super::arm(cx.timers, at, slot, CLIENT + i, nonce));
        let timer_c = invite.then(|| {
            super::arm(
                cx.timers,
                cx.now + self.cfg.timer_c_ms,
                slot,
                TIMER_C + i,
                nonce,
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
