//! The stateful proxy (RFC 3261 §16, §17.2): calls and other requests
//! reach registered devices over their NAT paths, or the upstream core.
//!
//! One [`Proxy`] per core, inside the endpoint, sans-IO like the rest:
//! requests and responses in, datagrams out through the endpoint's
//! `Transmits`, deadlines on the core's wheel as [`Timer::Proxy`] and
//! [`Timer::Dialog`].
//!
//! Where state lives, and why no lock is needed:
//! - A **proxy transaction** (the server transaction towards the sender
//!   and its client branches) lives on the core that received the request:
//!   the sender's retransmissions, ACK and CANCEL come from the same source
//!   and so reach the same core. Our Via branch names that core; a
//!   response the kernel hands to another core (it hashes the responder's
//!   address) is passed to the owner through the inboxes ([`Handoff`]).
//! - A **dialog** lives on the core that proxied its INVITE. Our
//!   Record-Route carries a [`token::FlowToken`] naming that core and both
//!   parties' NAT paths; an in-dialog request reaching another core is
//!   handed off to the owner, which sends it over the other party's path
//!   whatever its Contact says (RFC 5626 §5.3).
//! - A dialog's start and end are told to the core owning each party's
//!   NAT path ([`PathNote`]), which moves the path through seed 004's
//!   dialog states and keeps prompting it while the call lasts.

pub mod branch;
pub mod calls;
pub mod cluster;
pub mod config;
pub mod dialogs;
pub mod forward;
pub mod hold;
pub mod media;
mod request;
mod response;
mod route;
mod route_hook;
pub mod server;
mod timers;
pub mod token;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::addr::{Cidr, PathKey};
use crate::endpoint::Transmits;
use crate::nat::Keepalive;
use crate::registrar::Directory;
use crate::sip;
use crate::sip::ids::IdGen;
use crate::timer::{Timer, Timers};

pub use calls::Calls;
pub use config::ProxySection;
pub use dialogs::Dialogs;
pub use request::check;

/// Option tags tether's proxy understands in Proxy-Require (none: it
/// implements no proxy extension).
pub const PROXY_SUPPORTED: &[&str] = &[];

/// The proxy's settings, resolved from `[proxy]` and `[registrar]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Domains served from the location directory; empty = any domain
    /// with a registered user.
    pub domains: Vec<Box<str>>,
    /// Primary and fallback upstream.
    pub upstream: Vec<SocketAddr>,
    pub trusted: Vec<Cidr>,
    /// `host:port` for our Via and Record-Route; `None` = the listen address.
    pub advertise: Option<String>,
    pub timer_c_ms: u64,
    /// 0 = no limit.
    pub max_call_ms: u64,
    pub max_transactions: usize,
    /// Transactions one source path may have in flight (flood fairness).
    pub max_per_source: u32,
    pub max_dialogs: usize,
    pub max_forks: usize,
    pub timers: crate::transaction::Timers,
    /// Whether devices must authenticate (then untrusted requests to other
    /// domains need a registration on their path).
    pub auth: bool,
    /// When calls are anchored at the relay (`media.mode`).
    pub media: crate::media::Mode,
    /// Held calls and the bridge (`[push]`); `None` = calls to asleep
    /// devices get `480`.
    pub hold: Option<Arc<hold::HoldSettings>>,
    /// The routing webhook (`proxy.route_url`).
    pub route: Option<hold::RouteSettings>,
    /// Routing to the node owning the callee (`[cluster]` on).
    pub cluster: Option<cluster::ClusterRoute>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig::from_section(&ProxySection::default(), &[], Default::default())
    }
}

impl ProxyConfig {
    pub fn from_section(
        s: &ProxySection,
        domains: &[String],
        timers: crate::transaction::Timers,
    ) -> ProxyConfig {
        ProxyConfig {
            domains: domains.iter().map(|d| d.as_str().into()).collect(),
            upstream: s.upstream.clone(),
            trusted: s.trusted_networks(),
            advertise: (!s.advertise.is_empty()).then(|| s.advertise.clone()),
            timer_c_ms: s.timer_c_s * 1000,
            max_call_ms: s.max_call_s * 1000,
            max_transactions: s.max_transactions,
            max_per_source: (s.max_transactions / 4).clamp(1, 1000) as u32,
            max_dialogs: s.max_dialogs,
            max_forks: s.max_forks,
            timers,
            auth: false,
            // `Setup` sets `media.mode`; a bare proxy (tests) relays signalling only.
            media: crate::media::Mode::Never,
            hold: None,
            route: (!s.route_url.is_empty()).then(|| hold::RouteSettings {
                url: s.route_url.as_str().into(),
                timeout_ms: s.route_timeout_ms,
            }),
            cluster: None,
        }
    }
}

/// Counters of one core's proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Out-of-dialog INVITEs taken (routed or answered).
    pub calls_attempted: u64,
    /// INVITEs whose first 2xx was forwarded.
    pub calls_answered: u64,
    /// INVITEs ended with a final response of class 3, 4, 5, 6.
    pub calls_failed: [u64; 4],
    /// INVITEs CANCELled by their caller.
    pub calls_cancelled: u64,
    /// Branches started (forks).
    pub branches: u64,
    /// Requests of any method proxied (transactions created).
    pub transactions: u64,
    pub dialogs_started: u64,
    pub dialogs_ended: u64,
    /// Dialogs ended by `proxy.max_call_s`.
    pub dialogs_expired: u64,
    /// Datagrams passed to the core owning their transaction or dialog.
    pub handoffs: u64,
    /// In-dialog requests and CANCELs matching nothing (481).
    pub unmatched: u64,
    /// Requests refused because a table was full or a source over its share (503).
    pub overloaded: u64,
    /// Loops detected (482).
    pub loops: u64,
    /// Requests refused for their Route, relay or policy (403).
    pub refused: u64,
    /// Requests whose digest credentials were wrong (403): counted
    /// against their source by the limits.
    pub auth_failed: u64,
    /// Calls whose media the relay anchors.
    pub media_anchored: u64,
    /// Response SDP passed on unanchored (it could not be parsed).
    pub media_unanchored: u64,
    /// Calls ended for `media.timeout_s` without media.
    pub media_timeouts: u64,
    /// INVITEs held for an asleep callee.
    pub held: u64,
    /// Held calls forwarded because the device registered.
    pub hold_woken: u64,
    /// Held calls bridged to a device calling back with its token.
    pub bridged: u64,
    /// Held calls answered `480` at `push.hold_ms`.
    pub hold_timed_out: u64,
    /// Bridge call-backs refused (bad, expired or replayed token).
    pub bridge_refused: u64,
    pub pushes_sent: u64,
    pub pushes_delivered: u64,
    pub pushes_failed: u64,
    /// INVITEs that asked the routing webhook.
    pub route_asked: u64,
    /// … and took its answer.
    pub route_answered: u64,
    /// … and took the default route (no answer, late, unusable).
    pub route_defaulted: u64,
    /// Requests forwarded to the node owning their callee (`[cluster]`).
    pub cluster_forwarded: u64,
    /// Requests another node routed here.
    pub cluster_from_peers: u64,
    /// Requests that waited for an owner lookup.
    pub cluster_waited: u64,
    /// Requests looked up once more after the owner's 404/480.
    pub cluster_retried: u64,
    /// Owner lookups late past `cluster.lookup_timeout_ms`.
    pub cluster_timeouts: u64,
    /// No owner could be looked up: sent upstream, or answered 480.
    pub cluster_to_upstream: u64,
    pub cluster_failed: u64,
    /// Bridge call-backs forwarded to the node holding the call.
    pub cluster_bridge_forwarded: u64,
}

/// A datagram for another core: the transaction or dialog it belongs to
/// lives there.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub core: u16,
    pub local: u8,
    pub remote: SocketAddr,
    pub bytes: Box<[u8]>,
}

/// A dialog started or ended on a path another core (or this one) owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNote {
    pub core: u16,
    pub path: PathKey,
    pub started: bool,
}

/// What the proxy borrows from its endpoint for one input.
pub struct Ctx<'e> {
    pub now: u64,
    pub timers: &'e mut Timers,
    pub out: &'e mut Transmits,
    pub keepalive: &'e mut Keepalive,
    /// The registrar's digest authenticator, in `auth.mode = "digest"`.
    pub auth: Option<&'e mut crate::registrar::auth::Authenticator>,
    /// This core's media relay table.
    pub media: &'e mut crate::media::Table,
    /// `[cluster]`: this core's owner lookups.
    pub owners: &'e mut crate::cluster::lookup::OwnerCache,
}

/// One core's stateful proxy.
pub struct Proxy {
    core: u16,
    cfg: Arc<ProxyConfig>,
    dir: Arc<Directory>,
    /// Authenticates our flow tokens.
    key: token::TokenKey,
    /// `host:port` we write in Via and Record-Route, per listen socket.
    sent_by: Vec<String>,
    /// The same, parsed once, to recognise our own Vias and Routes.
    ours: Vec<Ours>,
    calls: Calls,
    dialogs: Dialogs,
    ids: IdGen,
    buf: Vec<u8>,
    /// For handoffs and path notes: drained by the endpoint.
    pub handoffs: Vec<Handoff>,
    pub path_notes: Vec<PathNote>,
    /// Contact-me jobs for held calls, for the core owning each binding.
    pub jobs: Vec<(u16, crate::notify::JobPart)>,
    /// Callouts and webhooks: drained by the endpoint.
    pub http: Vec<crate::hooks::Request>,
    /// Held calls per canonical AOR.
    held: hashbrown::HashMap<Box<str>, smallvec::SmallVec<[(u32, u32); 1]>>,
    held_calls: usize,
    job_ids: u64,
    /// For AEAD nonces of bridge tokens.
    nonce_secret: [u8; 32],
    nonces: u64,
    /// Wall-clock ms at the runtime clock's zero (token expiries), from
    /// the runtime.
    unix_epoch_ms: u64,
    /// Call events for `webhooks.url` (seed 003).
    hooks: Arc<crate::hooks::EventHooks>,
    /// Routing to the owner node: the node list, the waiting requests.
    cluster: cluster::ClusterState,
    pub stats: Stats,
}

impl Proxy {
    pub fn new(
        core: u16,
        cfg: Arc<ProxyConfig>,
        dir: Arc<Directory>,
        key: [u8; 32],
        local_addrs: &[SocketAddr],
        seed: u64,
    ) -> Proxy {
        let sent_by: Vec<String> = local_addrs
            .iter()
            .map(|a| cfg.advertise.clone().unwrap_or_else(|| a.to_string()))
            .collect();
        // Our cluster address too: another node's Route names it.
        let ours = sent_by
            .iter()
            .map(String::as_str)
            .chain(cfg.cluster.as_ref().map(|c| c.advertise.as_str()))
            .filter_map(Ours::parse)
            .collect();
        Proxy {
            core,
            ours,
            cfg,
            dir,
            key: token::TokenKey::new(&key),
            sent_by,
            calls: Calls::default(),
            dialogs: Dialogs::default(),
            ids: IdGen::new(seed),
            buf: Vec::with_capacity(4096),
            handoffs: Vec::new(),
            path_notes: Vec::new(),
            jobs: Vec::new(),
            http: Vec::new(),
            held: Default::default(),
            held_calls: 0,
            job_ids: 0,
            nonce_secret: {
                use sha2::Digest;
                let mut d = sha2::Sha256::new();
                d.update(key);
                d.update(seed.to_le_bytes());
                d.update(core.to_le_bytes());
                d.finalize().into()
            },
            nonces: 0,
            unix_epoch_ms: 0,
            hooks: crate::hooks::EventHooks::off(),
            cluster: Default::default(),
            stats: Stats::default(),
        }
    }

    /// Proxy transactions in flight on this core.
    pub fn transactions(&self) -> usize {
        self.calls.len()
    }

    /// The wall clock at the runtime clock's zero (the runtime tells).
    pub fn set_unix_epoch(&mut self, unix_ms: u64) {
        self.unix_epoch_ms = unix_ms;
    }

    /// Sends the call events `[webhooks]` asks for.
    pub fn with_event_hooks(mut self, hooks: Arc<crate::hooks::EventHooks>) -> Proxy {
        self.set_event_hooks(hooks);
        self
    }

    pub fn set_event_hooks(&mut self, hooks: Arc<crate::hooks::EventHooks>) {
        self.hooks = hooks;
    }

    /// Queues call event `kind` made by `msg` (a request of the caller's,
    /// or a response to it) when `webhooks.events` lists it.
    fn call_event(
        &mut self,
        kind: crate::hooks::EventKind,
        msg: &sip::Message<'_>,
        caller: SocketAddr,
        reason: Option<crate::hooks::EndReason>,
    ) {
        if !self.hooks.wants(kind) {
            return;
        }
        let mut ev = crate::hooks::CallEvent::from_message(kind, msg, caller, self.core);
        ev.reason = reason;
        self.http.extend(self.hooks.call(&ev, Some(msg)));
    }

    /// Which AORs have held calls on any core (`None`: holding is off).
    pub fn hold_index(&self) -> Option<&hold::HoldIndex> {
        self.cfg.hold.as_ref().map(|h| &*h.index)
    }

    /// Calls held for an asleep callee on this core.
    pub fn held_calls(&self) -> usize {
        self.held_calls
    }

    /// Dialogs this core keeps.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    /// The dialogs of this core, for `GET /v1/calls`.
    pub fn dialog_list(&self, now: u64, media: &crate::media::Table) -> Vec<CallInfo> {
        self.dialogs
            .iter()
            .map(|d| CallInfo {
                call_id: d.call_id.to_string(),
                caller: d.caller.aor.to_string(),
                callee: d.callee.aor.to_string(),
                caller_path: d.caller.path.remote(),
                callee_path: d.callee.path.remote(),
                core: self.core,
                duration_ms: now.saturating_sub(d.started),
                media: d.media.map(|id| media.info(id)).unwrap_or_default(),
            })
            .collect()
    }

    /// The state of every transaction in flight, for a test's failure message.
    #[cfg(test)]
    pub(crate) fn describe_calls(&self) -> Vec<String> {
        self.calls
            .iter()
            .map(|c| {
                let b: Vec<String> = c
                    .branches
                    .iter()
                    .map(|b| {
                        format!(
                            "{:?} done={} prov={} cw={} cancel={:?} t={} c={}",
                            b.tx.state(),
                            b.done,
                            b.provisional,
                            b.cancel_wanted,
                            b.cancel.as_ref().map(|c| c.tx.state()),
                            b.timer.is_some(),
                            b.timer_c.is_some()
                        )
                    })
                    .collect();
                format!(
                    "invite={} role={:?} server={:?} timer={} finished={} answered={} cancelled={} branches={b:?}",
                    c.invite,
                    c.role,
                    c.server.state(),
                    c.server_timer.is_some(),
                    c.finished,
                    c.answered,
                    c.cancelled
                )
            })
            .collect()
    }

    fn sent_by(&self, local: u8) -> &str {
        self.sent_by
            .get(usize::from(local))
            .or(self.sent_by.first())
            .map_or("0.0.0.0:5060", String::as_str)
    }

    /// Whether `ip` is in `proxy.trusted`.
    fn trusted(&self, ip: std::net::IpAddr) -> bool {
        self.cfg.trusted.iter().any(|c| c.contains(ip))
    }

    /// Sends `bytes` over `path`.
    fn send(out: &mut Transmits, bytes: &[u8], path: PathKey) {
        out.push(bytes, path.remote(), path.local());
    }

    /// Tells the owner of `path` that a dialog started or ended on it.
    fn note_path(&mut self, core: u16, path: PathKey, started: bool, cx: &mut Ctx<'_>) {
        if core == self.core {
            if started {
                cx.keepalive.dialog_started(path, cx.now, cx.timers);
            } else {
                cx.keepalive.dialog_ended(path, cx.now, cx.timers);
            }
        } else {
            self.path_notes.push(PathNote {
                core,
                path,
                started,
            });
        }
    }

    /// A due timer of ours.
    pub fn on_timer(&mut self, t: Timer, cx: &mut Ctx<'_>) {
        match t {
            Timer::Proxy { slot, what, nonce } => self.on_call_timer(slot, what, nonce, cx),
            Timer::Dialog { slot, nonce } => self.on_dialog_timer(slot, nonce, cx),
            _ => {}
        }
    }
}

/// Arms deadline `what` (server, a branch, its CANCEL, its Timer C; see
/// `branch::CLIENT`) of the proxy transaction (slot, nonce) at `at`.
fn arm(timers: &mut Timers, at: u64, slot: u32, what: u8, nonce: u32) -> crate::timer::TimerHandle {
    timers.arm(at, Timer::Proxy { slot, what, nonce })
}

/// One of our addresses: an IP or a name, and a port.
#[derive(Debug, Clone)]
struct Ours {
    ip: Option<std::net::IpAddr>,
    name: Box<str>,
    port: u16,
}

impl Ours {
    fn parse(s: &str) -> Option<Ours> {
        let (host, port) = crate::sip::uri::split_host_port(s).ok()?;
        let ip = match host {
            crate::sip::Host::V4(a) => Some(a.into()),
            crate::sip::Host::V6(a) => Some(a.into()),
            crate::sip::Host::Name(_) => None,
        };
        Some(Ours {
            ip,
            name: host.to_string().into(),
            port: port.unwrap_or(5060),
        })
    }
}

/// One dialog in flight, as `GET /v1/calls` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallInfo {
    pub call_id: String,
    pub caller: String,
    pub callee: String,
    pub caller_path: SocketAddr,
    pub callee_path: SocketAddr,
    pub core: u16,
    pub duration_ms: u64,
    /// The anchored streams, with both parties' packet statistics (empty:
    /// media not anchored).
    pub media: Vec<crate::media::table::StreamInfo>,
}
