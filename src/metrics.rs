//! Per-core counters published for the metrics endpoint. A worker counts
//! in plain integers and copies them into its [`CoreSnapshot`] a few times a
//! second (relaxed stores, off the per-packet path); a scrape sums the
//! snapshots. Every metric is declared once, in `core_metrics!`: the
//! endpoint fills values by [`CoreMetric`], `/metrics` and the stats log
//! line read names from [`CORE`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A metric's name, help and type.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    /// Its key in the worker's stats log line.
    pub log: &'static str,
    pub help: &'static str,
    /// Counter (monotonic) or gauge.
    pub counter: bool,
}

/// Declares every per-core metric once: its variant of [`CoreMetric`], its
/// kind, its Prometheus name, its key in the stats log line and its help.
/// The endpoint fills values with an exhaustive `match` on [`CoreMetric`],
/// so a metric added here without a value does not compile.
macro_rules! core_metrics {
    ($($variant:ident: $kind:ident $name:literal, $log:literal, $help:literal;)*) => {
        /// Names a per-core metric; `as usize` is its index in [`CORE`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum CoreMetric { $($variant),* }

        impl CoreMetric {
            /// Every metric, in [`CORE`] order.
            pub const ALL: &'static [CoreMetric] = &[$(CoreMetric::$variant),*];
        }

        /// Every per-core metric, in snapshot order.
        pub const CORE: &[Desc] = &[$(core_metrics!(@desc $kind $name, $log, $help)),*];
    };
    (@desc counter $name:literal, $log:literal, $help:literal) => {
        Desc { name: $name, log: $log, help: $help, counter: true }
    };
    (@desc gauge $name:literal, $log:literal, $help:literal) => {
        Desc { name: $name, log: $log, help: $help, counter: false }
    };
}

core_metrics! {
    Received: counter "tether_datagrams_received_total", "received",
        "UDP datagrams received on the SIP port.";
    MalformedAnswered: counter "tether_malformed_answered_total", "malformed_answered",
        "Malformed requests answered 400/505.";
    MalformedDropped: counter "tether_malformed_dropped_total", "malformed_dropped",
        "Malformed datagrams dropped without an answer.";
    OversizeDropped: counter "tether_oversize_dropped_total", "oversize_dropped",
        "Datagrams over sip.max_datagram, dropped.";
    OversizeSendsDropped: counter "tether_oversize_sends_dropped_total", "oversize_sends_dropped",
        "Datagrams tether would have sent over sip.max_datagram (e.g. a 200 listing many long Contacts), dropped.";
    StunRequests: counter "tether_stun_requests_total", "stun",
        "STUN Binding requests answered on the SIP port.";
    CrlfPings: counter "tether_crlf_pings_total", "crlf_pings",
        "CRLF keepalive pings received.";
    ResponsesReceived: counter "tether_responses_received_total", "responses_received",
        "SIP responses received.";
    Bindings: gauge "tether_bindings", "bindings",
        "Registered bindings owned by this node.";
    Registered: counter "tether_registrations_total", "registered",
        "New bindings registered.";
    Refreshed: counter "tether_refreshes_total", "refreshed",
        "Bindings refreshed.";
    Unregistered: counter "tether_unregistrations_total", "unregistered",
        "Bindings removed by the client.";
    Expired: counter "tether_expirations_total", "expired",
        "Bindings that expired.";
    Challenged: counter "tether_auth_challenges_total", "challenged",
        "REGISTERs challenged with 401.";
    Forbidden: counter "tether_auth_forbidden_total", "forbidden",
        "REGISTERs refused with 403.";
    TokenAccepted: counter "tether_auth_token_accepted_total", "token_accepted",
        "REGISTERs let in by a valid capability token (Authorization: Bearer).";
    TokenRejected: counter "tether_auth_token_rejected_total", "token_rejected",
        "REGISTERs refused 403 for their capability token (signature, alg, expiry, AOR or scope).";
    AuthHttpPending: gauge "tether_auth_http_pending", "auth_http_pending",
        "REGISTERs waiting on the authorization service (auth.mode = http).";
    AuthHttpAuthorized: counter "tether_auth_http_authorized_total", "auth_http_authorized",
        "Authorization callouts answered 2xx: the REGISTER went on.";
    AuthHttpRejected: counter "tether_auth_http_rejected_total", "auth_http_rejected",
        "Authorization callouts answered 4xx: the REGISTER got 403.";
    AuthHttpTimedOut: counter "tether_auth_http_timed_out_total", "auth_http_timed_out",
        "Authorization callouts without an answer within auth.http.timeout_ms (auth.http.on_timeout applied).";
    AuthHttpFailed: counter "tether_auth_http_failed_total", "auth_http_failed",
        "Authorization callouts answered 5xx or another unusable status (auth.http.on_timeout applied).";
    AuthHttpCached: counter "tether_auth_http_cached_total", "auth_http_cached",
        "REGISTERs let in without a callout: bindings the service authorized within auth.http.cache_s.";
    AuthHttpOverloaded: counter "tether_auth_http_overloaded_total", "auth_http_overloaded",
        "REGISTERs answered 503 because auth.http.max_pending were waiting on the service.";
    AuthHttpRetransmissions: counter "tether_auth_http_retransmissions_total", "auth_http_retransmissions",
        "Retransmissions of a REGISTER waiting on the service, answered 100 Trying again.";
    PathsRegistrationOnly: gauge "tether_nat_paths_registration_only", "paths_registration_only",
        "NAT paths carrying only registrations (seed 004).";
    PathsDialogAndRegistration: gauge "tether_nat_paths_dialog_and_registration", "paths_dialog_and_registration",
        "NAT paths carrying dialogs and registrations.";
    PathsDialogOnly: gauge "tether_nat_paths_dialog_only", "paths_dialog_only",
        "NAT paths carrying only dialogs.";
    PathsDead: gauge "tether_nat_paths_dead", "paths_dead",
        "NAT paths whose keepalive prompts went unanswered.";
    Prompts: counter "tether_keepalive_prompts_total", "prompts",
        "Keepalive OPTIONS prompts sent.";
    PromptRetransmissions: counter "tether_keepalive_retransmissions_total", "prompts_retransmitted",
        "Keepalive prompts retransmitted.";
    PromptsAnswered: counter "tether_keepalive_answered_total", "prompts_answered",
        "Keepalive prompts answered.";
    PromptsMissed: counter "tether_keepalive_missed_total", "prompts_missed",
        "Keepalive prompts unanswered (misses).";
    PathsDeclaredDead: counter "tether_keepalive_paths_declared_dead_total", "paths_declared_dead",
        "NAT paths declared dead.";
    JobsStarted: counter "tether_notify_jobs_started_total", "jobs_started",
        "Fan-out job parts started on a core.";
    JobsFinished: counter "tether_notify_jobs_finished_total", "jobs_finished",
        "Fan-out jobs finished.";
    NotifySent: counter "tether_notify_requests_sent_total", "notify_sent",
        "Contact-me NOTIFYs and wake-up INVITEs sent (first sends).";
    NotifyRetransmitted: counter "tether_notify_retransmissions_total", "notify_retransmitted",
        "Fan-out requests retransmitted (Timer A/E).";
    NotifyDelivered: counter "tether_notify_delivered_total", "notify_delivered",
        "Devices that answered (2xx to NOTIFY, any answer to INVITE).";
    NotifyRejected: counter "tether_notify_rejected_total", "notify_rejected",
        "Devices that refused a NOTIFY with a final non-2xx.";
    NotifyTimedOut: counter "tether_notify_timed_out_total", "notify_timed_out",
        "Devices that never answered (Timer B/F).";
    NotifyNoBinding: counter "tether_notify_no_binding_total", "notify_no_binding",
        "Job devices whose binding was gone at send time.";
    NotifyPathDead: counter "tether_notify_path_dead_total", "notify_path_dead",
        "Job devices skipped because their NAT path is dead.";
    NotifyNotAccepted: counter "tether_notify_not_accepted_total", "notify_not_accepted",
        "Job devices that did not opt in to the event package.";
    NotifyCancelled: counter "tether_notify_cancelled_total", "notify_cancelled",
        "Job devices not sent to because the job was cancelled.";
    NotifyChallengesAnswered: counter "tether_notify_challenges_answered_total", "notify_challenges_answered",
        "Device digest challenges answered.";
    NotifyInFlight: gauge "tether_notify_in_flight", "notify_in_flight",
        "Client transactions in flight.";
    Subscriptions: gauge "tether_subscriptions", "subscriptions",
        "Active contact-me subscriptions (SUBSCRIBE opt-in).";
    CallsAttempted: counter "tether_calls_attempted_total", "calls",
        "Out-of-dialog INVITEs taken by the proxy.";
    CallsAnswered: counter "tether_calls_answered_total", "answered",
        "INVITEs whose first 2xx the proxy forwarded.";
    CallsFailed3xx: counter "tether_calls_failed_3xx_total", "failed_3xx",
        "INVITEs ended with a 3xx final response.";
    CallsFailed4xx: counter "tether_calls_failed_4xx_total", "failed_4xx",
        "INVITEs ended with a 4xx final response (486, 487, 404, 480 …).";
    CallsFailed5xx: counter "tether_calls_failed_5xx_total", "failed_5xx",
        "INVITEs ended with a 5xx final response.";
    CallsFailed6xx: counter "tether_calls_failed_6xx_total", "failed_6xx",
        "INVITEs ended with a 6xx final response.";
    CallsCancelled: counter "tether_calls_cancelled_total", "cancelled",
        "INVITEs CANCELled by their caller.";
    ProxyBranches: counter "tether_proxy_branches_total", "branches",
        "Branches the proxy started (forks; divide by calls for forks per call).";
    ProxyTransactions: counter "tether_proxy_transactions_total", "proxied",
        "Requests of any method the proxy forwarded statefully.";
    ProxyTransactionsInFlight: gauge "tether_proxy_transactions", "txns",
        "Proxy transactions in flight.";
    Dialogs: gauge "tether_dialogs", "dialogs",
        "Dialogs in flight.";
    DialogsExpired: counter "tether_dialogs_expired_total", "dialogs_expired",
        "Dialogs ended with a BYE of tether's at proxy.max_call_s.";
    ProxyHandoffs: counter "tether_proxy_handoffs_total", "handoffs",
        "Datagrams handed to the core owning their transaction or dialog.";
    ProxyUnmatched: counter "tether_proxy_unmatched_total", "unmatched",
        "In-dialog requests and CANCELs matching nothing (481).";
    ProxyOverloaded: counter "tether_proxy_overloaded_total", "overloaded",
        "Requests refused with 503: a table full or a source over its share.";
    ProxyLoops: counter "tether_proxy_loops_total", "loops",
        "Requests refused with 482 Loop Detected.";
    ProxyRefused: counter "tether_proxy_refused_total", "refused",
        "Requests refused with 403: foreign Route or relaying denied.";
    MediaSessions: gauge "tether_media_sessions", "media_sessions",
        "Media sessions anchored at the relay (proxy calls and ng).";
    MediaPortPairs: gauge "tether_media_port_pairs_in_use", "media_pairs",
        "Relay RTP/RTCP port pairs held by live sessions.";
    MediaCallsAnchored: counter "tether_media_calls_anchored_total", "media_anchored",
        "Calls whose media the proxy anchored at the relay.";
    MediaPackets: counter "tether_media_packets_total", "media_packets",
        "RTP and RTCP packets relayed.";
    MediaBytes: counter "tether_media_bytes_total", "media_bytes",
        "RTP and RTCP bytes relayed.";
    MediaDroppedMalformed: counter "tether_media_dropped_malformed_total", "media_malformed",
        "Packets on relay ports dropped as not RTP/RTCP (short, wrong version, truncated).";
    MediaDroppedSource: counter "tether_media_dropped_source_total", "media_wrong_source",
        "Packets on relay ports dropped for their source (not the latched party, or a port not in use).";
    MediaDroppedNoDestination: counter "tether_media_dropped_no_destination_total", "media_no_destination",
        "Packets dropped because the other party's address is not known yet.";
    MediaRelatched: counter "tether_media_relatched_total", "media_relatched",
        "Parties re-latched to a new source after media.relatch_ms of silence.";
    MediaTimeouts: counter "tether_media_timeouts_total", "media_timeouts",
        "Media sessions without packets for media.timeout_s (their calls were ended).";
    MediaPortsExhausted: counter "tether_media_ports_exhausted_total", "media_no_ports",
        "Offers refused (503) because the core had no free relay port pair.";
    MediaPacketsLost: gauge "tether_media_packets_lost", "media_lost",
        "Packets lost (from RTP sequence numbers) over the live sessions.";
    CallsHeld: gauge "tether_calls_held", "held",
        "INVITEs held now for a callee being woken (push or contact-me).";
    HoldsStarted: counter "tether_holds_total", "holds",
        "INVITEs held for an unreachable callee that could be woken.";
    HoldsWoken: counter "tether_holds_woken_total", "holds_woken",
        "Held calls forwarded because the device registered again.";
    HoldsBridged: counter "tether_holds_bridged_total", "holds_bridged",
        "Held calls forwarded to a device calling back to the bridge URI.";
    HoldsTimedOut: counter "tether_holds_timed_out_total", "holds_timed_out",
        "Held calls answered 480 at push.hold_ms.";
    BridgeRefused: counter "tether_bridge_refused_total", "bridge_refused",
        "Bridge call-backs refused 403 (bad, expired or replayed token).";
    PushesSent: counter "tether_pushes_sent_total", "pushes_sent",
        "Push requests POSTed to push.gateways for held calls.";
    PushesFailed: counter "tether_pushes_failed_total", "pushes_failed",
        "Push requests the gateway did not accept (non-2xx or no answer).";
    RouteAsked: counter "tether_route_webhook_asked_total", "route_asked",
        "INVITEs that asked proxy.route_url where to go.";
    RouteAnswered: counter "tether_route_webhook_answered_total", "route_answered",
        "Routing webhook answers taken (targets or a reject).";
    RouteDefaulted: counter "tether_route_webhook_defaulted_total", "route_defaulted",
        "INVITEs routed by the location service: the webhook failed, was late or unusable.";
    ClusterForwarded: counter "tether_cluster_calls_forwarded_total", "cluster_forwarded",
        "Requests forwarded to the node owning their callee (issue 18).";
    ClusterFromPeers: counter "tether_cluster_calls_from_peers_total", "cluster_from_peers",
        "Requests another node of the cluster routed here.";
    ClusterWaited: counter "tether_cluster_calls_waited_total", "cluster_waited",
        "Requests that waited for an owner lookup (not in the core's cache).";
    ClusterWaiting: gauge "tether_cluster_calls_waiting", "cluster_waiting",
        "Requests waiting for an owner lookup now.";
    ClusterRetried: counter "tether_cluster_owner_retries_total", "cluster_retried",
        "Requests the owner answered 404/480 (stale ownership): looked up once more.";
    ClusterLookupTimeouts: counter "tether_cluster_lookup_timeouts_total", "cluster_lookup_timeouts",
        "Owner lookups not answered within cluster.lookup_timeout_ms.";
    ClusterFallbackUpstream: counter "tether_cluster_fallback_upstream_total", "cluster_to_upstream",
        "Requests sent to proxy.upstream because no owner could be looked up (Redis unreachable, late, or too many waiting).";
    ClusterFallbackFailed: counter "tether_cluster_fallback_failed_total", "cluster_failed",
        "Requests answered 480 because no owner could be looked up and no proxy.upstream is set.";
    ClusterBridgeForwarded: counter "tether_cluster_bridge_forwarded_total", "cluster_bridge_forwarded",
        "Bridge call-backs forwarded to the node holding their call.";
    LimitedRegister: counter "tether_limit_register_limited_total", "limited_register",
        "REGISTERs over their source's limits.register_rate (answered 503 or dropped).";
    LimitedInvite: counter "tether_limit_invite_limited_total", "limited_invite",
        "INVITEs over their source's limits.invite_rate (answered 503 or dropped).";
    LimitedOther: counter "tether_limit_other_limited_total", "limited_other",
        "Other requests over their source's limits.other_rate (answered 503 or dropped).";
    LimitAnswered: counter "tether_limit_answered_total", "limit_answered",
        "Requests over a limit answered 503 with Retry-After (limits.action = reject; one a second per source).";
    LimitDropped: counter "tether_limit_dropped_total", "limit_dropped",
        "Requests over a limit dropped without an answer.";
    LimitSources: gauge "tether_limit_sources", "limit_sources",
        "Source addresses the rate limits track (at most limits.sources per core).";
    LimitEvictions: counter "tether_limit_evictions_total", "limit_evictions",
        "Tracked sources pushed out of a full table by new ones.";
    BlockedDropped: counter "tether_blocked_dropped_total", "blocked_dropped",
        "Datagrams dropped because their source is blocked.";
    AuthFailures: counter "tether_auth_failures_total", "auth_failures",
        "Authentication failures counted against their source (wrong digest, refused token, authorization service's no).";
    BlocksStarted: counter "tether_blocks_total", "blocks",
        "Sources blocked for limits.block_s after limits.auth_failures failures.";
    BlockedSources: gauge "tether_blocked_sources", "blocked_sources",
        "Sources blocked now.";
    BindingsPerSourceRefused: counter "tether_limit_bindings_refused_total", "bindings_refused",
        "REGISTERs refused 403: their source address holds limits.max_bindings_per_source bindings.";
}

/// One core's published values.
#[derive(Debug)]
pub struct CoreSnapshot {
    values: Box<[AtomicU64]>,
}

impl Default for CoreSnapshot {
    fn default() -> Self {
        CoreSnapshot {
            values: CORE.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl CoreSnapshot {
    /// Copies a core's counters (in [`CORE`] order).
    pub fn publish(&self, values: &[u64]) {
        for (cell, v) in self.values.iter().zip(values) {
            cell.store(*v, Ordering::Relaxed);
        }
    }

    pub fn get(&self, i: usize) -> u64 {
        self.values.get(i).map_or(0, |v| v.load(Ordering::Relaxed))
    }
}

/// Renders counters and gauges kept as atomics by side threads (webhooks,
/// persistence, cluster): rows of (name, help, value, is a counter).
pub fn render_atomic_rows(
    out: &mut String,
    rows: &[(&'static str, &'static str, &AtomicU64, bool)],
) {
    for &(name, help, v, counter) in rows {
        let d = Desc {
            name,
            log: "",
            help,
            counter,
        };
        render(out, &d, v.load(Ordering::Relaxed));
    }
}

/// Appends one metric in the Prometheus text format (0.0.4).
pub fn render(out: &mut String, d: &Desc, value: u64) {
    let kind = if d.counter { "counter" } else { "gauge" };
    let _ = writeln!(out, "# HELP {} {}", d.name, d.help);
    let _ = writeln!(out, "# TYPE {} {kind}", d.name);
    let _ = writeln!(out, "{} {value}", d.name);
}

/// `key=value` pairs of one core's values (in [`CORE`] order) for its stats
/// log line.
pub fn log_line(values: &[u64]) -> String {
    let mut out = String::with_capacity(CORE.len() * 24);
    for (d, v) in CORE.iter().zip(values) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{}={v}", d.log);
    }
    out
}

/// The node's per-core metrics, summed over `cores`.
pub fn render_cores(out: &mut String, cores: &[std::sync::Arc<CoreSnapshot>]) {
    for (i, d) in CORE.iter().enumerate() {
        let sum = cores.iter().map(|c| c.get(i)).sum();
        render(out, d, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::HashSet::new();
        for d in CORE {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(d.counter, d.name.ends_with("_total"), "{}", d.name);
            assert!(seen.insert(d.log), "log key {} twice", d.log);
        }
    }

    #[test]
    fn snapshots_sum_across_cores() {
        let a = std::sync::Arc::new(CoreSnapshot::default());
        let b = std::sync::Arc::new(CoreSnapshot::default());
        let mut v = vec![0; CORE.len()];
        v[0] = 5;
        a.publish(&v);
        v[0] = 7;
        b.publish(&v);
        let mut out = String::new();
        render_cores(&mut out, &[a, b]);
        assert!(
            out.contains("\ntether_datagrams_received_total 12\n"),
            "{out}"
        );
    }

    #[test]
    fn variants_index_the_table() {
        assert_eq!(CoreMetric::ALL.len(), CORE.len());
        for (i, m) in CoreMetric::ALL.iter().enumerate() {
            assert_eq!(*m as usize, i);
        }
        let mut v = vec![0; CORE.len()];
        v[CoreMetric::Bindings as usize] = 3;
        assert!(log_line(&v).contains(" bindings=3 "));
    }
}
