//! The routing webhook (seed 003's primary and fallback targets, made
//! dynamic): with `proxy.route_url` set, an out-of-dialog INVITE waits on
//! its core (as a parked call, see `hold.rs`) for the application's
//! targets or reject; no answer, a non-2xx, an unusable body or lateness
//! takes the default route, the location service.

use smallvec::SmallVec;

use super::calls::Target;
use super::hold::{pack, unpack, Park, Parked, WAIT};
use super::route::Decision;
use super::{Ctx, Proxy};
use crate::addr::PathKey;
use crate::hooks::{Answer, Kind, Purpose, Request};
use crate::registrar::ContactView;
use crate::sip::{self, Checked, Message};

impl Proxy {
    /// Parks the new INVITE (slot, nonce) for the routing webhook.
    pub(super) fn ask_route(
        &mut self,
        slot: u32,
        nonce: u32,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        src: PathKey,
        cx: &mut Ctx<'_>,
    ) {
        let Some(r) = self.cfg.route.clone() else {
            return;
        };
        let body = serde_json::json!({
            "call_id": checked.call_id,
            "from": checked.from.uri_raw,
            "to": checked.to.uri_raw,
            "request_uri": msg.request_uri_raw().unwrap_or_default(),
            "source": src.remote().to_string(),
            "core": self.core,
        })
        .to_string()
        .into_bytes();
        self.http.push(Request {
            url: r.url.clone(),
            body,
            kind: Kind::Callout {
                core: self.core,
                purpose: Purpose::Route,
                id: pack(slot, nonce),
                timeout_ms: r.timeout_ms,
            },
        });
        let timer = super::arm(cx.timers, cx.now + r.timeout_ms + 50, slot, WAIT, nonce);
        if let Some(call) = self.calls.get_mut(slot, nonce) {
            call.parked = Some(Box::new(Parked {
                why: Park::Route,
                timer: Some(timer),
            }));
        }
        self.stats.route_asked += 1;
    }

    /// The routing webhook answered: `{"targets": [{"uri": …, "fallback":
    /// bool}, …]}` or `{"reject": {"code": 486, "reason": …}}`; anything
    /// else (no answer, non-2xx, another body) takes the default route.
    pub fn on_route_answer(&mut self, a: &Answer, cx: &mut Ctx<'_>) {
        let (slot, nonce) = unpack(a.id);
        if !matches!(self.parked_mut(slot, nonce), Some(Park::Route)) {
            return; // Late: the default route was taken already.
        }
        let routed = (200..300)
            .contains(&a.status)
            .then(|| serde_json::from_slice::<RouteAnswer>(&a.body).ok())
            .flatten();
        match routed {
            Some(RouteAnswer {
                reject: Some(rj), ..
            }) if (300..700).contains(&rj.code) => {
                self.stats.route_answered += 1;
                let reason = rj.reason.as_deref().unwrap_or("Rejected By Routing");
                self.finish_parked(slot, nonce, rj.code, reason, cx);
            }
            Some(RouteAnswer { targets, .. }) if !targets.is_empty() => {
                let t = self.route_targets(&targets, cx.now);
                if t.is_empty() {
                    self.stats.route_answered += 1;
                    return self.finish_parked(slot, nonce, 480, "Temporarily Unavailable", cx);
                }
                self.stats.route_answered += 1;
                self.release_to(slot, nonce, t, cx);
            }
            _ => {
                if a.status != 0 {
                    tracing::warn!(
                        status = a.status,
                        "routing webhook answer unusable: default route"
                    );
                }
                self.stats.route_defaulted += 1;
                self.default_route(slot, nonce, true, cx);
            }
        }
    }

    /// The webhook's targets as branches: primaries in parallel, then the
    /// fallbacks (seed 003). A target naming a user we serve goes to its
    /// reachable bindings; a numeric one is sent to as is.
    fn route_targets(&self, list: &[RouteTarget], now: u64) -> SmallVec<[Target; 2]> {
        let mut out: SmallVec<[Target; 2]> = SmallVec::new();
        for rt in list.iter().take(self.cfg.max_forks) {
            let group = u16::from(rt.fallback);
            let Ok(uri) = crate::sip::uri::Uri::parse(&rt.uri) else {
                continue;
            };
            if let super::route::Located::Bindings(found) = self.locate(&uri, now) {
                out.extend(
                    found
                        .into_iter()
                        .filter(ContactView::is_reachable)
                        .map(|c| super::route::binding_target(c, group)),
                );
            } else if let Some(to) = super::route::numeric_target(&rt.uri) {
                let mut t = super::route::upstream_target(to, None);
                t.uri = Some(rt.uri.as_str().into());
                t.group = group;
                out.push(t);
            }
        }
        out.sort_by_key(|t| t.group);
        out
    }

    /// The route a waiting call takes without the webhook: the location
    /// service, as if no webhook were configured (and, unless `cluster` is
    /// false, the cluster's owner lookup).
    pub(super) fn default_route(&mut self, slot: u32, nonce: u32, cluster: bool, cx: &mut Ctx<'_>) {
        self.unpark(slot, nonce, cx);
        let Some(call) = self.calls.get(slot, nonce) else {
            return;
        };
        let (request, src, authenticated) = (call.request.clone(), call.src, call.strip_auth);
        let Ok(msg) = sip::parse(&request) else {
            return;
        };
        let Ok(checked) = msg.validate() else {
            return;
        };
        let (pop, _, foreign) = self.our_routes(&msg);
        match self.decide(
            &msg,
            &checked,
            src,
            authenticated,
            (pop, foreign),
            cluster,
            cx,
        ) {
            Decision::Targets(t, _) => self.release_to(slot, nonce, t, cx),
            Decision::Reply(code, reason) => self.finish_parked(slot, nonce, code, reason, cx),
            Decision::Hold { target, aor, plan } => {
                self.hold(slot, nonce, &target, &aor, *plan, cx)
            }
            Decision::Owner { aor, targets, .. } => {
                self.send_to_owner(slot, nonce, &aor, targets, cx)
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct RouteAnswer {
    #[serde(default)]
    targets: Vec<RouteTarget>,
    #[serde(default)]
    reject: Option<RouteReject>,
}

#[derive(serde::Deserialize)]
struct RouteTarget {
    uri: String,
    #[serde(default)]
    fallback: bool,
}

#[derive(serde::Deserialize)]
struct RouteReject {
    code: u16,
    #[serde(default)]
    reason: Option<String>,
}
