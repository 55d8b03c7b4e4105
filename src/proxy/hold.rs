//! INVITEs that wait on their core with no branch (seeds 002, 003).
//!
//! - **Held** (seed 002, in the style of RFC 8599): the callee has no
//!   reachable binding but can be woken: a binding carrying push
//!   parameters (a push POSTed to `push.gateways`), or a reachable binding
//!   of the same id in another scope that opted in to contact-me (a
//!   contact-me NOTIFY from its core's fan-out engine). The caller gets
//!   `180`; the INVITE is forwarded as soon as the device registers (any
//!   core's registrar tells this one through [`HoldIndex`]) or calls back
//!   to the bridge URI with the token the wake-up carried; `480` after
//!   `push.hold_ms`; a CANCEL ends the hold.
//! - **Routing** (seed 003): with `proxy.route_url` set, an INVITE waits
//!   for the routing webhook's targets, or its default route when the
//!   webhook fails or is late.
//!
//! Either way the transaction is an ordinary [`super::calls::Call`] with
//! no branch yet and a [`Parked`] reason; its deadline is timer
//! [`WAIT`]. Nothing blocks: the answers arrive as commands.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use smallvec::SmallVec;

use super::calls::Target;
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::hold::push::PushParams;
use crate::hold::token::{BridgeKeys, Held, TokenError};
use crate::hooks::Answer;
use crate::registrar::ContactView;
use crate::sip::{self, writer, Checked, HeaderName, Message, Method};
use crate::timer::TimerHandle;

/// Timer `what` of a parked call (above every branch's timers).
pub(super) const WAIT: u8 = 255;

/// Contact-me wake-ups one held call sends at most.
const MAX_NOTIFIED: usize = 4;

/// Why a call waits.
#[derive(Debug)]
pub enum Park {
    /// For its callee to wake. `target` is what the INVITE asked for
    /// (`aor` or `aor:scope`), looked up again when the device registers.
    Hold {
        target: Box<str>,
        aor: Box<str>,
        /// Wake-ups that may still work (pushes sent + contact-me jobs).
        wakes: u8,
    },
    /// For the routing webhook.
    Route,
    /// For the owner lookup of the AOR hashed `aor` (`[cluster]`).
    Owner { aor: u64 },
}

#[derive(Debug)]
pub struct Parked {
    pub why: Park,
    pub timer: Option<TimerHandle>,
}

/// The `[push]` settings the proxy uses.
pub struct HoldSettings {
    pub hold_ms: u64,
    /// `pn-provider` → push gateway URL.
    pub gateways: Vec<(Box<str>, Arc<str>)>,
    pub push_timeout_ms: u64,
    /// Request-URI user prefix of the bridge URI.
    pub prefix: Box<str>,
    pub keys: Arc<BridgeKeys>,
    pub node: u32,
    pub token_ttl_s: u64,
    /// Held calls per core; more get `480` at once.
    pub max_held: usize,
    /// Body labels of the contact-me NOTIFY.
    pub labels: crate::notify::Labels,
    /// Which AORs have held calls, on any core.
    pub index: Arc<HoldIndex>,
}

impl std::fmt::Debug for HoldSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldSettings")
            .field("hold_ms", &self.hold_ms)
            .field("gateways", &self.gateways)
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .field("max_held", &self.max_held)
            .finish_non_exhaustive()
    }
}

/// `proxy.route_url`.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub url: Arc<str>,
    pub timeout_ms: u64,
}

/// Which AORs have held calls, shared by every core: a counting filter,
/// so that a REGISTER looks at one atomic (two when something is held)
/// and takes no lock. A false positive costs one wasted command.
pub struct HoldIndex {
    cells: Box<[AtomicU32]>,
    held: AtomicUsize,
}

const INDEX_CELLS: usize = 1 << 14;

impl Default for HoldIndex {
    fn default() -> Self {
        HoldIndex {
            cells: (0..INDEX_CELLS).map(|_| AtomicU32::new(0)).collect(),
            held: AtomicUsize::new(0),
        }
    }
}

impl HoldIndex {
    fn cell(&self, aor: &str) -> &AtomicU32 {
        let h = super::request::hash_of(aor) as usize;
        &self.cells[h % INDEX_CELLS]
    }

    fn add(&self, aor: &str) {
        self.cell(aor).fetch_add(1, Ordering::Relaxed);
        self.held.fetch_add(1, Ordering::Release);
    }

    fn remove(&self, aor: &str) {
        self.cell(aor).fetch_sub(1, Ordering::Relaxed);
        self.held.fetch_sub(1, Ordering::Release);
    }

    /// Whether any call is held on any core (one load: the REGISTER path
    /// asks this before it spends anything on the AOR).
    pub fn any(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Whether some core may hold a call for `aor` (canonical form).
    pub fn maybe_held(&self, aor: &str) -> bool {
        self.any() && self.cell(aor).load(Ordering::Relaxed) > 0
    }
}

/// How a held callee can be woken.
#[derive(Default)]
pub(super) struct WakePlan {
    pushes: SmallVec<[(Arc<str>, PushParams); 1]>,
    notify: SmallVec<[ContactView; 1]>,
    /// The callee's bindings as they were (unreachable): where the call
    /// will likely go once woken, for the media decision at hold time.
    pub(super) sleeping: SmallVec<[Target; 1]>,
}

impl WakePlan {
    pub(super) fn is_empty(&self) -> bool {
        self.pushes.is_empty() && self.notify.is_empty()
    }
}

/// (slot, nonce) in a callout id.
pub(super) fn pack(slot: u32, nonce: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(nonce)
}

pub(super) fn unpack(id: u64) -> (u32, u32) {
    ((id >> 32) as u32, id as u32)
}

impl Proxy {
    /// How the callee of `target` (`aor` or `aor:scope`), whose bindings
    /// `found` are all unreachable, can be woken; `None` when holding is off.
    pub(super) fn wake_plan(
        &self,
        aor: &str,
        scoped: bool,
        found: &[ContactView],
        now: u64,
    ) -> Option<WakePlan> {
        let h = self.cfg.hold.as_ref()?;
        let mut plan = WakePlan::default();
        for c in found {
            let Some(p) = PushParams::from_contact(&c.contact) else {
                continue;
            };
            match h
                .gateways
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&p.provider))
            {
                Some((_, url)) => plan.pushes.push((url.clone(), p)),
                None => tracing::debug!(
                    provider = %p.provider,
                    "binding has push parameters for a provider with no push.gateways entry"
                ),
            }
        }
        if scoped {
            // The same id in other scopes (seed 002): one that is reachable
            // and takes contact-me can be told to call back.
            plan.notify = self
                .dir
                .lookup(aor, (now / 1000) as u32)
                .into_iter()
                .filter(|c| c.is_reachable() && c.accepts_contact_me())
                .filter(|c| !found.iter().any(|f| f.binding == c.binding))
                .take(MAX_NOTIFIED)
                .collect();
        }
        if !plan.is_empty() {
            plan.sleeping = found
                .iter()
                .map(|c| super::route::binding_target(c.clone(), 0))
                .collect();
        }
        Some(plan)
    }

    /// Parks the new INVITE (slot, nonce) until its callee wakes: `180`
    /// to the caller, the wake-ups sent, the hold deadline armed.
    pub(super) fn hold(
        &mut self,
        slot: u32,
        nonce: u32,
        target: &str,
        aor: &str,
        plan: WakePlan,
        cx: &mut Ctx<'_>,
    ) {
        let Some(h) = self.cfg.hold.clone() else {
            return;
        };
        if self.held_calls >= h.max_held {
            tracing::warn!(max = h.max_held, "push.max_held reached: call not held");
            return self.finish_parked(slot, nonce, 480, "Temporarily Unavailable", cx);
        }
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        let (src, request) = (call.src, call.request.clone());
        let Ok(req) = sip::parse(&request) else {
            return;
        };
        // 180 at once: the caller's phone rings while the device wakes.
        let tag = self.ids.tag();
        writer::response_to(
            &mut self.buf,
            &req,
            180,
            "Ringing",
            Some(&tag),
            Some(src.remote()),
        )
        .finish(None);
        Self::send(cx.out, &self.buf, src);
        let t = self.cfg.timers;
        let timer = super::arm(cx.timers, cx.now + h.hold_ms, slot, WAIT, nonce);
        if let Some(call) = self.calls.get_mut(slot, nonce) {
            call.server.on_response(180, cx.now, &t);
            call.last_response.clear();
            call.last_response.extend_from_slice(&self.buf);
            call.parked = Some(Box::new(Parked {
                why: Park::Hold {
                    target: target.into(),
                    aor: aor.into(),
                    wakes: (plan.pushes.len() + plan.notify.len()).min(255) as u8,
                },
                timer: Some(timer),
            }));
        }
        h.index.add(aor);
        self.held.entry(aor.into()).or_default().push((slot, nonce));
        self.held_calls += 1;
        self.stats.held += 1;
        let token = self.bridge_token(&h, slot, nonce, cx.now);
        let bridge_uri =
            crate::hold::token::bridge_uri(&h.prefix, &token, self.sent_by(src.local()));
        let from = req.header(HeaderName::From).unwrap_or_default().to_owned();
        let call_id = req
            .header(HeaderName::CallId)
            .unwrap_or_default()
            .to_owned();
        for (url, p) in &plan.pushes {
            let body = crate::hold::push::PushBody::new(
                p,
                aor,
                &call_id,
                &from,
                &bridge_uri,
                &token,
                h.hold_ms,
            );
            let id = pack(slot, nonce);
            self.http
                .push(body.callout(url, self.core, id, h.push_timeout_ms));
            self.stats.pushes_sent += 1;
        }
        for c in &plan.notify {
            self.contact_me(&h, c, slot, &bridge_uri, cx);
        }
        tracing::info!(
            %aor, %call_id, pushes = plan.pushes.len(), notified = plan.notify.len(),
            "call held: callee unreachable, waking it"
        );
    }

    pub(super) fn parked_mut(&mut self, slot: u32, nonce: u32) -> Option<&mut Park> {
        self.calls
            .get_mut(slot, nonce)?
            .parked
            .as_mut()
            .map(|p| &mut p.why)
    }

    /// A sealed token naming this core's call (slot, nonce).
    fn bridge_token(&mut self, h: &HoldSettings, slot: u32, nonce: u32, now: u64) -> String {
        let expires = self.unix_secs(now) + h.token_ttl_s;
        let held = Held {
            core: self.core,
            slot,
            nonce,
            expires,
        };
        h.keys.seal(&held, self.aead_nonce())
    }

    /// A 96-bit AEAD nonce: a keyed hash of a per-core counter, so that no
    /// two tokens of any core, node or restart share one (the key is
    /// shared across nodes; a plain counter would repeat).
    fn aead_nonce(&mut self) -> [u8; 12] {
        use sha2::Digest;
        self.nonces += 1;
        let mut d = sha2::Sha256::new();
        d.update(self.nonce_secret);
        d.update(self.nonces.to_le_bytes());
        let out = d.finalize();
        let mut n = [0u8; 12];
        n.copy_from_slice(&out[..12]);
        n
    }

    fn unix_secs(&self, now: u64) -> u64 {
        (self.unix_epoch_ms + now) / 1000
    }

    /// A contact-me NOTIFY (seed 000) to binding `c`, sent by the fan-out
    /// engine of the core owning its path, telling it where to call back.
    fn contact_me(
        &mut self,
        h: &HoldSettings,
        c: &ContactView,
        slot: u32,
        bridge_uri: &str,
        cx: &mut Ctx<'_>,
    ) {
        use crate::notify::{Created, Device, Job, JobPart, JobSpec, Kind as JobKind, ServerAddr};
        let ours = self.sent_by(c.local).to_owned();
        let (host, port) = match ours.rsplit_once(':') {
            Some((h, p)) => (
                h.trim_matches(['[', ']']).to_owned(),
                p.parse().unwrap_or(5060),
            ),
            None => (ours.clone(), 5060),
        };
        self.job_ids += 1;
        let spec = JobSpec {
            kind: JobKind::ContactMe,
            request_id: slot.to_string(),
            server: ServerAddr { host, port },
            path: Some(bridge_uri.to_owned()),
            time_slot: None,
            protocol: Some("sip".into()),
            credentials_ref: None,
            callback_url: None,
            rate: None,
            targets: vec![c.contact.to_string()],
            owner: "held-call".into(),
        };
        let body = crate::notify::contact_me_body(&spec, &h.labels);
        let device = Device {
            target: 0,
            aor: Arc::from(c.contact.as_ref()),
            binding: c.binding,
            instance: c.instance.clone(),
        };
        // Ids of held-call jobs have the top bit set: never an API job's.
        let id = (1 << 63) | (u64::from(self.core) << 40) | self.job_ids;
        let job = Job::new(
            id,
            spec,
            body.into_bytes().into(),
            vec![device],
            Vec::new(),
            1,
            Created {
                unix_ms: self.unix_epoch_ms + cx.now,
                at: cx.now,
            },
        );
        self.jobs.push((
            c.binding.core,
            JobPart {
                job: Arc::new(job),
                devices: vec![0],
            },
        ));
    }

    /// Ends a call's wait: its deadline cancelled, its hold unlisted.
    pub(super) fn unpark(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) -> Option<Park> {
        let p = self.calls.get_mut(slot, nonce)?.parked.take()?;
        if let Some(t) = p.timer {
            cx.timers.cancel(t);
        }
        match &p.why {
            Park::Hold { aor, .. } => self.unlist(aor, slot, nonce),
            Park::Owner { aor } => self.unlist_owner(*aor, slot, nonce),
            Park::Route => {}
        }
        Some(p.why)
    }

    pub(super) fn unlist(&mut self, aor: &str, slot: u32, nonce: u32) {
        if let Some(h) = self.cfg.hold.as_ref() {
            h.index.remove(aor);
        }
        self.held_calls = self.held_calls.saturating_sub(1);
        if let Some(v) = self.held.get_mut(aor) {
            v.retain(|e| *e != (slot, nonce));
            if v.is_empty() {
                self.held.remove(aor);
            }
        }
    }

    /// Sends the waiting call (slot, nonce) to `targets`: the first
    /// forking group now, the others after it.
    pub(super) fn release_to(
        &mut self,
        slot: u32,
        nonce: u32,
        mut targets: SmallVec<[Target; 2]>,
        cx: &mut Ctx<'_>,
    ) {
        self.unpark(slot, nonce, cx);
        if !self.media_for_targets(slot, nonce, &targets, cx) {
            return;
        }
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        let first = targets.first().map_or(0, |t| t.group);
        call.later = targets
            .iter()
            .filter(|t| t.group != first)
            .cloned()
            .collect();
        targets.retain(|t| t.group == first);
        let request = call.request.clone();
        let Ok(msg) = sip::parse(&request) else {
            return;
        };
        for t in targets {
            self.start_branch(slot, nonce, &msg, t, cx);
        }
        self.maybe_finish(slot, nonce, cx);
    }

    /// Answers the waiting call (slot, nonce) with `code` itself.
    pub(super) fn finish_parked(
        &mut self,
        slot: u32,
        nonce: u32,
        code: u16,
        reason: &str,
        cx: &mut Ctx<'_>,
    ) {
        self.unpark(slot, nonce, cx);
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return;
        };
        let request = call.request.clone();
        let src = call.src;
        let Ok(req) = sip::parse(&request) else {
            return;
        };
        let tag = self.ids.tag();
        let mut bytes = Vec::with_capacity(512);
        let mut w = writer::response_to(
            &mut bytes,
            &req,
            code,
            reason,
            Some(&tag),
            Some(src.remote()),
        );
        if code == 503 {
            w.header_named("Retry-After", "5");
        }
        w.finish(None);
        if let Some(call) = self.calls.get_mut(slot, nonce) {
            call.best = Some((code, bytes));
        }
        self.maybe_finish(slot, nonce, cx);
    }

    /// Timer [`WAIT`]: a hold ran out (`480`), or the routing webhook is
    /// late (the default route).
    pub(super) fn on_wait_timer(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        if let Some(p) = self
            .calls
            .get_mut(slot, nonce)
            .and_then(|c| c.parked.as_mut())
        {
            p.timer = None;
        }
        match self.parked_mut(slot, nonce) {
            Some(Park::Hold { .. }) => {
                self.stats.hold_timed_out += 1;
                self.finish_parked(slot, nonce, 480, "Temporarily Unavailable", cx);
            }
            Some(Park::Route) => {
                self.stats.route_defaulted += 1;
                self.default_route(slot, nonce, true, cx);
            }
            Some(Park::Owner { .. }) => self.on_owner_timeout(slot, nonce, cx),
            None => {}
        }
    }

    /// A device of `aor` registered (on any core): held calls for it go
    /// to its bindings if they are reachable now.
    pub fn on_registered(&mut self, aor: &str, cx: &mut Ctx<'_>) {
        let Some(waiting) = self.held.get(aor).cloned() else {
            return;
        };
        for (slot, nonce) in waiting {
            let Some(Park::Hold { target, .. }) = self.parked_mut(slot, nonce) else {
                continue;
            };
            let target = target.to_string();
            let reachable: SmallVec<[ContactView; 2]> = self
                .dir
                .lookup(&target, (cx.now / 1000) as u32)
                .into_iter()
                .filter(ContactView::is_reachable)
                .collect();
            if reachable.is_empty() {
                continue;
            }
            self.stats.hold_woken += 1;
            tracing::info!(%aor, "held call forwarded: the device registered");
            let targets = self.fork_targets(reachable);
            self.release_to(slot, nonce, targets, cx);
        }
    }

    /// A push gateway answered (or not): a failed push that was the last
    /// wake-up left ends the hold at once.
    pub fn on_push_answer(&mut self, a: &Answer, cx: &mut Ctx<'_>) {
        let (slot, nonce) = unpack(a.id);
        let ok = (200..300).contains(&a.status);
        if ok {
            self.stats.pushes_delivered += 1;
        } else {
            self.stats.pushes_failed += 1;
            tracing::warn!(status = a.status, "push gateway did not take the push");
        }
        let Some(Park::Hold { wakes, .. }) = self.parked_mut(slot, nonce) else {
            return;
        };
        if !ok {
            *wakes = wakes.saturating_sub(1);
            if *wakes == 0 {
                self.finish_parked(slot, nonce, 480, "Temporarily Unavailable", cx);
            }
        }
    }

    /// A request to the bridge URI: the device woken for held call
    /// (slot, nonce) calls back with its token. The held INVITE goes to
    /// it over the flow the call-back came on; the call-back itself is
    /// answered `200` (non-INVITE) or `487` with a Reason saying it was
    /// bridged (INVITE: the device gets the call as the held INVITE).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bridge(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        token: &str,
        cx: &mut Ctx<'_>,
    ) {
        let Some(h) = self.cfg.hold.clone() else {
            return;
        };
        let held = match h.keys.open(token, self.unix_secs(cx.now)) {
            Ok(held) => held,
            Err(TokenError::WrongNode(node)) if self.node_addr(node).is_some() => {
                // Held on another node of the cluster: the call-back goes there.
                return self.bridge_to_node(msg, checked, raw, src, id, node, cx);
            }
            Err(e) => {
                self.stats.bridge_refused += 1;
                let why = match e {
                    TokenError::Expired => "Bridge Token Expired",
                    TokenError::WrongNode { .. } => "Bridge Token For Another Node",
                    _ => "Bridge Token Invalid",
                };
                tracing::info!(source = %src.remote(), error = ?e, "bridge call-back refused");
                return self.reply(msg, checked, src, 403, why, None, cx);
            }
        };
        if held.core != self.core {
            self.stats.handoffs += 1;
            self.handoffs.push(super::Handoff {
                core: held.core,
                local: src.local(),
                remote: src.remote(),
                bytes: raw.into(),
            });
            return;
        }
        let (slot, nonce) = (held.slot, held.nonce);
        let holding = matches!(self.parked_mut(slot, nonce), Some(Park::Hold { .. }));
        if !holding {
            // Bridged already (a replay), answered, cancelled or timed out.
            self.stats.bridge_refused += 1;
            return self.reply(msg, checked, src, 403, "Held Call Gone", None, cx);
        }
        // The call-back's Contact, or (none, as in baresip's OPTIONS) the
        // held INVITE's own Request-URI: the device answers to its AOR,
        // while a bare `sip:host:port` names no user it would accept.
        let uri = checked
            .contacts
            .first()
            .and_then(|c| c.contact.addr())
            .map(|a| a.uri_raw.into());
        // A call-back another node forwarded: the held INVITE goes back
        // through that node, which sends it over the device's flow.
        let path = self.peer_flow_route(msg, src);
        let target = Target {
            to: src,
            uri,
            path,
            device_core: None,
            group: 0,
            upstream: None,
        };
        self.stats.bridged += 1;
        tracing::info!(source = %src.remote(), "held call bridged to the device calling back");
        self.release_to(slot, nonce, SmallVec::from_iter([target]), cx);
        if msg.method() == Some(Method::Invite) {
            let tag = self.ids.tag();
            let mut w = writer::response_to_checked(
                &mut self.buf,
                msg,
                checked,
                487,
                "Request Terminated",
                Some(&tag),
                Some(src.remote()),
            );
            w.header_named(
                "Reason",
                "SIP;cause=200;text=\"bridged into the held call\"",
            );
            w.finish(None);
            Self::send(cx.out, &self.buf, src);
        } else {
            self.reply(msg, checked, src, 200, "OK", None, cx);
        }
    }

    /// Whether a Request-URI user part is a bridge URI's.
    pub fn is_bridge_user(&self, user: &str) -> bool {
        self.bridge_user(user).is_some()
    }

    /// The bridge token in a Request-URI user part, if it is one.
    pub(super) fn bridge_user<'u>(&self, user: &'u str) -> Option<&'u str> {
        let h = self.cfg.hold.as_ref()?;
        // Not `token_in_user`: a user with our prefix and a mangled token
        // is a call-back all the same, and gets a clear 403.
        user.strip_prefix(&*h.prefix)
    }
}
