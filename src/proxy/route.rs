//! Routing an out-of-dialog request (RFC 3261 §16.4–16.5): to the
//! bindings of a served user, forked by q-value groups, or to the upstream
//! proxy; a preloaded Route only from the trusted core.

use std::net::SocketAddr;

use smallvec::SmallVec;

use super::calls::{Role, Target};
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::nat::PathState;
use crate::registrar::{canonical_aor, ContactView};
use crate::sip::uri::{Host, Scheme, Uri};
use crate::sip::Checked;
use crate::sip::{Message, Method};

/// What the location service decided for an out-of-dialog request.
pub(super) enum Decision {
    /// Branches (forking groups in order), and how many of our Routes to pop.
    Targets(SmallVec<[Target; 2]>, usize),
    /// Answer it ourselves.
    Reply(u16, &'static str),
    /// An INVITE for a callee that is asleep but can be woken (`target`
    /// as looked up, `aor` its canonical id).
    Hold {
        target: String,
        aor: String,
        plan: Box<super::hold::WakePlan>,
    },
    /// A user another node of the cluster holds: to its owners, or (no
    /// targets) wait for the owner lookup of `aor`.
    Owner {
        aor: String,
        targets: SmallVec<[Target; 2]>,
        pop: usize,
    },
}

impl Proxy {
    /// A request outside any dialog: to a served user's bindings, or upstream.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn out_of_dialog(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        raw: &[u8],
        src: PathKey,
        id: String,
        authenticated: bool,
        cx: &mut Ctx<'_>,
    ) {
        let method = msg.method().unwrap_or(Method::Options);
        let invite = method == Method::Invite;
        if let Some(token) = checked
            .request_uri
            .and_then(|u| u.user)
            .and_then(|u| self.bridge_user(u))
        {
            return self.bridge(msg, checked, raw, src, id, token, cx);
        }
        let role = if matches!(method, Method::Invite | Method::Subscribe) {
            Role::CreatesDialog
        } else {
            Role::Plain
        };
        let (pop, _, foreign) = self.our_routes(msg);
        let owner_hint;
        // Seed 003: with the routing webhook the application decides where
        // the call goes; the INVITE waits for it on this core.
        // A call another node routed here asked that node's webhook already.
        let asks_webhook = invite
            && self.cfg.route.is_some()
            && foreign.is_none()
            && !(self.cfg.cluster.is_some() && self.routed_by_peer(msg, src));
        let mut owner = None;
        let (targets, pop, hold) = if asks_webhook {
            (SmallVec::new(), pop, None)
        } else {
            match self.decide(msg, checked, src, authenticated, (pop, foreign), true, cx) {
                Decision::Targets(targets, pop) => (targets, pop, None),
                Decision::Reply(code, reason) => {
                    return self.reply(msg, checked, src, code, reason, None, cx);
                }
                Decision::Hold { target, aor, plan } => {
                    (SmallVec::new(), pop, Some((target, aor, plan)))
                }
                Decision::Owner { aor, targets, pop } => {
                    // Started without branches; `send_to_owner` sends or parks it.
                    owner = Some((aor, targets));
                    (SmallVec::new(), pop, None)
                }
            }
        };
        let Some((slot, nonce)) = self.start_call(
            msg,
            checked,
            raw,
            src,
            id,
            role,
            pop,
            targets,
            match (&hold, &owner) {
                (Some(h), _) => &h.2.sleeping[..],
                (None, Some(_)) => {
                    owner_hint = [super::cluster::owner_hint()];
                    &owner_hint[..]
                }
                _ => &[][..],
            },
            authenticated,
            cx,
        ) else {
            return;
        };
        if asks_webhook {
            self.ask_route(slot, nonce, msg, checked, src, cx);
        } else if let Some((aor, targets)) = owner {
            self.send_to_owner(slot, nonce, &aor, targets, cx);
        } else if let Some((target, aor, plan)) = hold {
            self.hold(slot, nonce, &target, &aor, *plan, cx);
        }
    }

    /// Where an out-of-dialog request goes (RFC 3261 §16.5), by the
    /// location service and the relay policy; a user with no binding here
    /// asks the cluster when `cluster` (and `[cluster]` is on).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        authenticated: bool,
        (pop, foreign): (usize, Option<String>),
        cluster: bool,
        cx: &mut Ctx<'_>,
    ) -> Decision {
        let trusted = self.trusted_src(src.remote());
        // Another node routed it here: its user is ours or nobody's.
        let peer = self.cfg.cluster.is_some() && self.routed_by_peer(msg, src);
        if peer {
            self.stats.cluster_from_peers += 1;
        }
        let mut targets: SmallVec<[Target; 2]> = SmallVec::new();
        if let Some(route) = foreign {
            // A preloaded Route to someone else: only the trusted core may
            // steer us (a device must not make us a relay to a third party).
            let to = (trusted).then(|| numeric_target(&route)).flatten();
            let Some(to) = to else {
                self.stats.refused += 1;
                return Decision::Reply(403, "Route Not Allowed");
            };
            targets.push(upstream_target(to, None));
            return Decision::Targets(targets, pop);
        }
        if let Some(to) = self.peer_flow(msg, src) {
            // A held call bridged on the node that held it, back to the
            // device over the flow its call-back came on here.
            return Decision::Targets(SmallVec::from_iter([to]), pop);
        }
        let Some(ruri) = checked.request_uri else {
            return Decision::Reply(400, "Bad Request-URI");
        };
        match self.locate(&ruri, cx.now) {
            Located::Bindings(found) => {
                if found.iter().any(ContactView::is_reachable) {
                    let reachable = found.into_iter().filter(ContactView::is_reachable);
                    return Decision::Targets(self.fork_targets(reachable.collect()), pop);
                }
                if msg.method() == Some(Method::Invite) && self.cfg.hold.is_some() {
                    let (aor, target) = lookup_target(&ruri);
                    let scoped = aor != target;
                    if let Some(plan) = self.wake_plan(&aor, scoped, &found, cx.now) {
                        if !plan.is_empty() {
                            return Decision::Hold {
                                target,
                                aor,
                                plan: Box::new(plan),
                            };
                        }
                    }
                }
                Decision::Reply(480, "Temporarily Unavailable")
            }
            Located::NotFound | Located::Elsewhere if peer && ruri.user.is_some() => {
                // Stale ownership: the routing node looks up once more.
                Decision::Reply(404, "Not Found")
            }
            Located::NotFound if cluster && self.cfg.cluster.is_some() => {
                let (aor, _) = lookup_target(&ruri);
                self.owner_decision(&aor, pop, cx)
                    .unwrap_or(Decision::Reply(404, "Not Found"))
            }
            Located::NotFound => Decision::Reply(404, "Not Found"),
            Located::Elsewhere => {
                let registered = matches!(
                    cx.keepalive.state(&src),
                    PathState::RegistrationOnly | PathState::DialogAndRegistration
                );
                if !trusted && !registered && !authenticated {
                    // No open relay: only the core, authenticated and
                    // registered devices reach other domains (and, serving
                    // any domain, the cluster: its fallback is the upstream).
                    self.stats.refused += 1;
                    return Decision::Reply(403, "Relaying Denied");
                }
                if cluster
                    && self.cfg.cluster.is_some()
                    && ruri.user.is_some()
                    && self.cfg.domains.is_empty()
                {
                    // Serving any domain: a user unknown here may be another node's.
                    let (aor, _) = lookup_target(&ruri);
                    if let Some(d) = self.owner_decision(&aor, pop, cx) {
                        return d;
                    }
                }
                let Some(&primary) = self.cfg.upstream.first() else {
                    return Decision::Reply(404, "Not Found");
                };
                targets.push(upstream_target(primary, Some(0)));
                Decision::Targets(targets, pop)
            }
        }
    }

    /// A Request-URI without a user, naming a domain we serve or our own
    /// address: the request is for tether, not for someone behind it.
    pub(super) fn addressed_to_us(&self, ruri: &Uri<'_>) -> bool {
        let (None, Some(host), Scheme::Sip | Scheme::Sips) = (ruri.user, ruri.host, ruri.scheme)
        else {
            return false;
        };
        self.cfg.domains.is_empty() || self.serves(host) || self.is_ours(host, ruri.port)
    }

    fn serves(&self, host: Host<'_>) -> bool {
        self.cfg.domains.iter().any(|d| match host {
            Host::Name(h) => d.eq_ignore_ascii_case(h),
            other => **d == *other.to_string(),
        })
    }

    /// Where a Request-URI leads.
    pub(super) fn locate(&self, ruri: &Uri<'_>, now: u64) -> Located {
        let (Some(host), Scheme::Sip | Scheme::Sips) = (ruri.host, ruri.scheme) else {
            return Located::Elsewhere;
        };
        let served = self.cfg.domains.is_empty() || self.serves(host);
        if !served {
            return Located::Elsewhere;
        }
        if ruri.user.is_none() {
            return if self.cfg.domains.is_empty() {
                Located::Elsewhere
            } else {
                Located::NotFound
            };
        };
        let (_, target) = lookup_target(ruri);
        let found = self.dir.lookup(&target, (now / 1000) as u32);
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
    pub(super) fn fork_targets(
        &self,
        mut found: SmallVec<[ContactView; 2]>,
    ) -> SmallVec<[Target; 2]> {
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
                binding_target(c, group)
            })
            .collect()
    }
}

/// A branch to a registered binding, over its NAT path.
pub(super) fn binding_target(c: ContactView, group: u16) -> Target {
    let uri = match crate::hold::push::without_push_params(&c.contact) {
        Some(stripped) => stripped.into_boxed_str(),
        None => c.contact,
    };
    Target {
        to: PathKey::new(c.local, c.source),
        uri: Some(uri),
        path: c.path,
        device_core: Some(c.binding.core),
        group,
        upstream: None,
    }
}

/// The canonical AOR of a Request-URI, and what to look up: the AOR, or
/// `aor:scope` when the URI names a scope (`;scope=mobile`, seed 002).
pub(super) fn lookup_target(ruri: &Uri<'_>) -> (String, String) {
    let (Some(user), Some(host)) = (ruri.user, ruri.host) else {
        return (String::new(), String::new());
    };
    let aor = canonical_aor(user, host);
    match ruri.param("scope").flatten().filter(|s| !s.is_empty()) {
        Some(scope) => {
            let target = format!("{aor}:{scope}");
            (aor, target)
        }
        None => (aor.clone(), aor),
    }
}

/// Where the location service sends a request.
pub(super) enum Located {
    Bindings(Box<SmallVec<[ContactView; 2]>>),
    NotFound,
    /// Another domain (or a user the served-any-domain node does not know).
    Elsewhere,
}

pub(super) fn upstream_target(to: SocketAddr, which: Option<u8>) -> Target {
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
pub(super) fn numeric_target(uri: &str) -> Option<SocketAddr> {
    let u = Uri::parse(uri).ok()?;
    let port = u.port.unwrap_or(5060);
    match u.host? {
        Host::V4(a) => Some(SocketAddr::from((a, port))),
        Host::V6(a) => Some(SocketAddr::from((a, port))),
        Host::Name(_) => None,
    }
}
