//! Routing to the owner (issue 18, seed 004: call control goes to the
//! proxy holding the path). A request for a user this node has no binding
//! for asks the core's [`OwnerCache`]; a node that owns one of its devices
//! gets the request over SIP, with a Route naming it and this node
//! (`;tether-node=<ours>`), and sends it over its own NAT path as a local
//! call. The owner trusts the request (no challenge, no relay check, no
//! second lookup) only when it comes from a node of the cluster's node
//! list at that node's address: a device cannot set the marker.
//!
//! A lookup not in the cache parks the request on its core (as a held call
//! waits, see `hold.rs`) until [`crate::endpoint::Command::ClusterOwners`]
//! answers, at most `cluster.lookup_timeout_ms` and at most
//! `cluster.lookup_waiting` requests per core. Redis unreachable, a late
//! answer or a full wait list send the request to `proxy.upstream`, or
//! answer `480` without one. An owner answering `404` (its binding is gone,
//! ownership was stale) or `408`/`503` (it died or fails) drops the cache
//! entry and the request is looked up once more.

use std::net::SocketAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::calls::{Role, Target};
use super::hold::{Park, Parked, WAIT};
use super::route::{upstream_target, Decision};
use super::token::FlowToken;
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::cluster::keys::{node_sip_addr, stable_hash};
use crate::cluster::lookup::{Lookup, Nodes, Remote};
use crate::sip::uri::Uri;
use crate::sip::Message;

/// The Route parameter naming the node that routed a request here.
pub const NODE_PARAM: &str = "tether-node";

/// Fallbacks are logged at most once per this long (ms), with their count.
const LOG_EVERY_MS: u64 = 10_000;

/// `[cluster]` as the proxy routes with it.
#[derive(Debug, Clone)]
pub struct ClusterRoute {
    /// This node's id.
    pub node: u32,
    /// This node's `cluster.advertise` (recognised as ours in Routes).
    pub advertise: String,
    pub timeout_ms: u64,
    /// Requests one core keeps waiting for lookups.
    pub max_waiting: usize,
}

/// A request routed by the cluster: what to look up again if its owner
/// turns out wrong.
#[derive(Debug)]
pub struct OwnerTry {
    /// The lookup key (canonical AOR).
    pub aor: Box<str>,
    /// Looked up once more already.
    pub retried: bool,
}

/// Whether a branch goes to another node of the cluster: one we built
/// (no Request-URI, device or upstream of its own) whose Route names us.
/// A device's binding always has its Contact as Request-URI, so a Path
/// it registered with the marker does not make it look like a peer.
pub(super) fn is_peer_target(t: &Target) -> bool {
    const MARK: &str = ";tether-node="; // `;{NODE_PARAM}=`
    t.uri.is_none()
        && t.device_core.is_none()
        && t.upstream.is_none()
        && t.path.as_deref().is_some_and(|p| p.contains(MARK))
}

/// Stands for the owner node a waiting request will likely go to, for the
/// media decision taken before its branches are known.
pub(super) fn owner_hint() -> Target {
    Target {
        to: PathKey::new(0, SocketAddr::from(([0, 0, 0, 0], 0))),
        uri: None,
        path: Some(format!("<sip:0.0.0.0;lr;{NODE_PARAM}=0>").into()),
        device_core: None,
        group: 0,
        upstream: None,
    }
}

/// One core's cluster routing state.
#[derive(Default)]
pub(super) struct ClusterState {
    /// The cluster's nodes (from the lookup thread).
    nodes: Option<Nodes>,
    /// AOR hash → requests waiting for its owners.
    waiting: hashbrown::HashMap<u64, SmallVec<[(u32, u32); 1]>>,
    waiting_calls: usize,
    /// Fallbacks not yet logged, and when the last line was written.
    unlogged: u64,
    logged_at: Option<u64>,
}

impl Proxy {
    /// The cluster's node list changed.
    pub fn set_cluster_nodes(&mut self, nodes: Nodes) {
        self.cluster.nodes = Some(nodes);
    }

    /// Requests waiting for an owner lookup on this core.
    pub fn owner_waiting(&self) -> usize {
        self.cluster.waiting_calls
    }

    /// The live node whose SIP address `addr` is (never this one). A node
    /// whose heartbeat expired is trusted no more: the node list keeps
    /// every node that ever joined.
    pub(super) fn peer_node(&self, addr: SocketAddr) -> Option<u32> {
        let me = self.cfg.cluster.as_ref()?.node;
        self.cluster
            .nodes
            .as_deref()?
            .iter()
            .find(|n| n.addr == Some(addr) && n.id != me && n.live)
            .map(|n| n.id)
    }

    /// Whether node `id` is live by the last node list (unknown: yes; the
    /// lookup thread already drops records of nodes without a heartbeat).
    fn node_live(&self, id: u32) -> bool {
        self.cluster
            .nodes
            .as_deref()
            .and_then(|l| l.iter().find(|n| n.id == id))
            .is_none_or(|n| n.live)
    }

    /// Whether a request comes from `proxy.trusted` or a cluster peer.
    pub(super) fn trusted_src(&self, addr: SocketAddr) -> bool {
        self.trusted(addr.ip()) || self.peer_node(addr).is_some()
    }

    /// A request another node routed here: it comes from that node's
    /// address and one of our Routes names it. Such a request is never
    /// looked up in the cluster again.
    pub(super) fn routed_by_peer(&self, msg: &Message<'_>, src: PathKey) -> bool {
        let Some(node) = self.peer_node(src.remote()) else {
            return false;
        };
        let wanted = node.to_string();
        super::forward::routes(msg).any(|v| {
            Uri::parse(super::forward::uri_of(v)).is_ok_and(|u| {
                u.host.is_some_and(|h| self.is_ours(h, u.port))
                    && u.param(NODE_PARAM).flatten() == Some(wanted.as_str())
            })
        })
    }

    /// Where the cluster sends a request for `aor`, which has no binding
    /// here; `None` when the cluster has no say (off, or no other node
    /// owns it) and the request goes on as without a cluster.
    pub(super) fn owner_decision(
        &mut self,
        aor: &str,
        pop: usize,
        cx: &mut Ctx<'_>,
    ) -> Option<Decision> {
        self.cfg.cluster.as_ref()?;
        match cx.owners.lookup(aor, cx.now) {
            Lookup::Known(owners) => {
                let targets = self.owner_targets(owners);
                (!targets.is_empty()).then(|| Decision::Owner {
                    aor: aor.into(),
                    targets,
                    pop,
                })
            }
            Lookup::Asked => Some(Decision::Owner {
                aor: aor.into(),
                targets: SmallVec::new(),
                pop,
            }),
            Lookup::Unavailable => Some(self.fallback_decision(pop, "owner lookup queue full", cx)),
        }
    }

    /// A branch per node owning some device of the AOR (each owner forks
    /// to its own devices), never this node.
    fn owner_targets(&self, owners: &[Remote]) -> SmallVec<[Target; 2]> {
        let Some(c) = self.cfg.cluster.as_ref() else {
            return SmallVec::new();
        };
        let mut out: SmallVec<[Target; 2]> = SmallVec::new();
        let mut nodes: SmallVec<[u32; 2]> = SmallVec::new();
        for r in owners {
            // A cached owner that died since: not called (its calls would
            // wait for Timer B); a lookup after the cache entry finds the
            // device's new node.
            if r.owner.node == c.node
                || nodes.contains(&r.owner.node)
                || !self.node_live(r.owner.node)
            {
                continue;
            }
            let Ok(addr) = node_sip_addr(&r.addr).parse::<SocketAddr>() else {
                continue;
            };
            // Compared with our own cluster address exactly: with a wildcard
            // listen address every peer on our port would look like us.
            if c.advertise.parse::<SocketAddr>() == Ok(addr) {
                continue;
            }
            nodes.push(r.owner.node);
            out.push(Target {
                to: PathKey::new(0, addr),
                uri: None,
                path: Some(format!("<sip:{addr};lr;{NODE_PARAM}={}>", c.node).into()),
                device_core: None,
                group: 0,
                upstream: None,
            });
        }
        out
    }

    /// No owner could be looked up: the upstream if there is one, else 480.
    fn fallback_decision(&mut self, pop: usize, why: &'static str, cx: &Ctx<'_>) -> Decision {
        self.log_fallback(why, cx.now);
        match self.cfg.upstream.first() {
            Some(&up) => {
                self.stats.cluster_to_upstream += 1;
                Decision::Targets(SmallVec::from_iter([upstream_target(up, Some(0))]), pop)
            }
            None => {
                self.stats.cluster_failed += 1;
                Decision::Reply(480, "Temporarily Unavailable")
            }
        }
    }

    /// One warning per burst of fallbacks, with how many it stands for.
    fn log_fallback(&mut self, why: &'static str, now: u64) {
        let s = &mut self.cluster;
        s.unlogged += 1;
        if s.logged_at
            .is_none_or(|t| now.saturating_sub(t) >= LOG_EVERY_MS)
        {
            tracing::warn!(
                why,
                requests = s.unlogged,
                upstream = !self.cfg.upstream.is_empty(),
                "cluster: callee's owner unknown; sent to proxy.upstream (480 without one)"
            );
            s.unlogged = 0;
            s.logged_at = Some(now);
        }
    }

    /// The new request (slot, nonce) was routed by the cluster: to
    /// `targets`, or (none) parked until its owner lookup answers.
    pub(super) fn send_to_owner(
        &mut self,
        slot: u32,
        nonce: u32,
        aor: &str,
        targets: SmallVec<[Target; 2]>,
        cx: &mut Ctx<'_>,
    ) {
        if let Some(call) = self.calls.get_mut(slot, nonce) {
            call.owner.get_or_insert_with(|| {
                Box::new(OwnerTry {
                    aor: aor.into(),
                    retried: false,
                })
            });
        }
        if targets.is_empty() {
            self.await_owner(slot, nonce, aor, cx);
        } else {
            self.stats.cluster_forwarded += 1;
            self.release_to(slot, nonce, targets, cx);
        }
    }

    /// Parks (slot, nonce) until the owners of `aor` are known.
    fn await_owner(&mut self, slot: u32, nonce: u32, aor: &str, cx: &mut Ctx<'_>) {
        let Some(c) = self.cfg.cluster.clone() else {
            return;
        };
        if self.cluster.waiting_calls >= c.max_waiting {
            return self.owner_fallback(slot, nonce, "too many requests waiting", cx);
        }
        let h = stable_hash(aor.as_bytes());
        let timer = super::arm(cx.timers, cx.now + c.timeout_ms, slot, WAIT, nonce);
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            cx.timers.cancel(timer);
            return;
        };
        call.parked = Some(Box::new(Parked {
            why: Park::Owner { aor: h },
            timer: Some(timer),
        }));
        self.cluster
            .waiting
            .entry(h)
            .or_default()
            .push((slot, nonce));
        self.cluster.waiting_calls += 1;
        self.stats.cluster_waited += 1;
    }

    /// A parked request stops waiting for AOR hash `aor` (unpark).
    pub(super) fn unlist_owner(&mut self, aor: u64, slot: u32, nonce: u32) {
        self.cluster.waiting_calls = self.cluster.waiting_calls.saturating_sub(1);
        if let Some(v) = self.cluster.waiting.get_mut(&aor) {
            v.retain(|e| *e != (slot, nonce));
            if v.is_empty() {
                self.cluster.waiting.remove(&aor);
            }
        }
    }

    /// The owners of AOR hash `aor` (`None`: Redis did not answer): the
    /// requests waiting for them go on.
    pub fn on_owners(&mut self, aor: u64, owners: Option<&[Remote]>, cx: &mut Ctx<'_>) {
        let Some(list) = self.cluster.waiting.get(&aor).cloned() else {
            return;
        };
        let targets = owners.map(|o| self.owner_targets(o));
        for (slot, nonce) in list {
            if !matches!(self.parked_mut(slot, nonce), Some(Park::Owner { .. })) {
                continue;
            }
            match &targets {
                None => self.owner_fallback(slot, nonce, "Redis did not answer", cx),
                Some(t) if t.is_empty() => {
                    // No other node owns it: routed as without a cluster.
                    self.drop_owner(slot, nonce);
                    self.unpark(slot, nonce, cx);
                    self.default_route(slot, nonce, false, cx);
                }
                Some(t) => {
                    self.stats.cluster_forwarded += 1;
                    self.release_to(slot, nonce, t.clone(), cx);
                }
            }
        }
    }

    /// Timer [`WAIT`] of a request waiting for its owner: too late.
    pub(super) fn on_owner_timeout(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) {
        self.stats.cluster_timeouts += 1;
        self.owner_fallback(slot, nonce, "owner lookup timed out", cx);
    }

    /// A waiting request whose owner could not be looked up: upstream, or 480.
    fn owner_fallback(&mut self, slot: u32, nonce: u32, why: &'static str, cx: &mut Ctx<'_>) {
        self.log_fallback(why, cx.now);
        self.drop_owner(slot, nonce);
        match self.cfg.upstream.first() {
            Some(&up) => {
                self.stats.cluster_to_upstream += 1;
                let t = SmallVec::from_iter([upstream_target(up, Some(0))]);
                self.release_to(slot, nonce, t, cx);
            }
            None => {
                self.stats.cluster_failed += 1;
                self.finish_parked(slot, nonce, 480, "Temporarily Unavailable", cx);
            }
        }
    }

    /// The request no longer goes to an owner: its answers are final.
    fn drop_owner(&mut self, slot: u32, nonce: u32) {
        if let Some(c) = self.calls.get_mut(slot, nonce) {
            c.owner = None;
        }
    }

    /// Every branch is done and the best answer is the owner's 404 (its
    /// binding is gone: ownership was stale), 408 or 503 (the node died or
    /// is failing). The cache entry goes and the request is looked up once
    /// more; `true` when it was (no final response yet). Not on 480: the
    /// owner answers it for a device it holds but cannot reach (a held call
    /// that timed out), and asking again would wake that device twice.
    pub(super) fn owner_retry(&mut self, slot: u32, nonce: u32, cx: &mut Ctx<'_>) -> bool {
        let Some(call) = self.calls.get_mut(slot, nonce) else {
            return false;
        };
        let code = call.best.as_ref().map(|b| b.0);
        let Some(o) = call.owner.as_mut() else {
            return false;
        };
        if o.retried || call.cancelled || call.answered || !matches!(code, Some(404 | 408 | 503)) {
            return false;
        }
        o.retried = true;
        let aor = Arc::<str>::from(&*o.aor);
        cx.owners.invalidate(&aor);
        self.stats.cluster_retried += 1;
        tracing::debug!(%aor, "cluster: owner answered {code:?}; looking it up again");
        let targets = match cx.owners.lookup(&aor, cx.now) {
            Lookup::Known(owners) => {
                let t = self.owner_targets(owners);
                if t.is_empty() {
                    // No other node owns it now: the owner's answer stands.
                    return false;
                }
                t
            }
            Lookup::Asked => SmallVec::new(),
            Lookup::Unavailable => return false,
        };
        if let Some(c) = self.calls.get_mut(slot, nonce) {
            c.best = None;
        }
        self.send_to_owner(slot, nonce, &aor, targets, cx);
        true
    }
}

/// The Route parameter carrying the device's flow with a bridge call-back
/// forwarded to the node holding the call (a [`FlowToken`] of the
/// forwarding node's).
pub const FLOW_PARAM: &str = "tether-flow";

impl Proxy {
    /// The live address of node `node` (never this one).
    pub(super) fn node_addr(&self, node: u32) -> Option<SocketAddr> {
        let me = self.cfg.cluster.as_ref()?.node;
        self.cluster
            .nodes
            .as_deref()?
            .iter()
            .find(|n| n.id == node && n.live && n.id != me)
            .and_then(|n| n.addr)
    }

    /// A bridge call-back whose token names node `node`: forwarded there
    /// with the device's flow (sealed with our flow key), so that the held
    /// INVITE comes back through us and over that flow.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bridge_to_node(
        &mut self,
        msg: &Message<'_>,
        checked: &crate::sip::Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        node: u32,
        cx: &mut Ctx<'_>,
    ) {
        let (Some(c), Some(addr)) = (self.cfg.cluster.as_ref(), self.node_addr(node)) else {
            return;
        };
        let to = PathKey::new(0, addr);
        let mut flow = String::with_capacity(FlowToken::MAX_LEN);
        FlowToken {
            core: self.core,
            caller: src,
            callee: to,
        }
        .encode_keyed(&self.key, &mut flow);
        let path = format!(
            "<sip:{addr};lr;{NODE_PARAM}={};{FLOW_PARAM}={flow}>",
            c.node
        );
        let target = Target {
            to,
            uri: None,
            path: Some(path.into()),
            device_core: None,
            group: 0,
            upstream: None,
        };
        let role = if msg.method() == Some(crate::sip::Method::Invite) {
            Role::CreatesDialog
        } else {
            Role::Plain
        };
        let (pop, _, _) = self.our_routes(msg);
        self.stats.cluster_bridge_forwarded += 1;
        tracing::info!(node, source = %src.remote(), "bridge call-back forwarded to the node holding the call");
        let targets = SmallVec::from_iter([target]);
        self.start_call(
            msg,
            checked,
            raw,
            src,
            id,
            role,
            pop,
            targets,
            &[],
            false,
            cx,
        );
    }

    /// A call-back a peer forwarded with its device's flow: the Route the
    /// held INVITE takes back to that peer.
    pub(super) fn peer_flow_route(&self, msg: &Message<'_>, src: PathKey) -> Option<Box<str>> {
        if !self.routed_by_peer(msg, src) {
            return None;
        }
        let flow = super::forward::routes(msg).find_map(|v| {
            let u = Uri::parse(super::forward::uri_of(v)).ok()?;
            u.param(FLOW_PARAM).flatten().map(str::to_owned)
        })?;
        Some(format!("<sip:{flow}@{};lr>", src.remote()).into())
    }

    /// A request from a peer whose Route is a flow token of ours (see
    /// [`Proxy::bridge_to_node`]): to the device over that flow. The token
    /// is verified: only tokens we sealed steer a request.
    pub(super) fn peer_flow(&self, msg: &Message<'_>, src: PathKey) -> Option<Target> {
        self.peer_node(src.remote())?;
        let t = super::forward::routes(msg).find_map(|v| {
            let u = Uri::parse(super::forward::uri_of(v)).ok()?;
            let ours = u.host.is_some_and(|h| self.is_ours(h, u.port));
            ours.then(|| FlowToken::decode_keyed(u.user?, &self.key))
                .flatten()
        })?;
        Some(Target {
            to: t.caller,
            uri: None,
            path: None,
            device_core: Some(t.core),
            group: 0,
            upstream: None,
        })
    }
}
