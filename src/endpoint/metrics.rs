//! A core's metric values: one exhaustive `match` over [`CoreMetric`], so a
//! metric declared in `crate::metrics` without a value here does not compile.

use super::Endpoint;
use crate::metrics::CoreMetric;

impl Endpoint {
    /// Fills `out` (indexed by [`CoreMetric`]) with this core's values.
    pub(super) fn metric_values(&self, out: &mut [u64]) {
        for (m, v) in CoreMetric::ALL.iter().zip(out.iter_mut()) {
            *v = self.metric(*m);
        }
    }

    /// One of this core's metric values.
    pub fn metric(&self, m: CoreMetric) -> u64 {
        use CoreMetric as M;
        let (c, r, k, n) = (
            &self.counters,
            &self.registrar.stats,
            &self.keepalive.stats,
            &self.notify.stats,
        );
        let p = &self.proxy.stats;
        let w = self.waiting.as_ref().map(|w| w.stats).unwrap_or_default();
        let by_state = |i: usize| self.keepalive.paths_by_state()[i];
        match m {
            M::Received => c.received,
            M::MalformedAnswered => c.malformed_answered,
            M::MalformedDropped => c.malformed_dropped,
            M::OversizeDropped => c.oversize_dropped,
            M::OversizeSendsDropped => self.transmits.oversize_dropped,
            M::StunRequests => c.stun_requests,
            M::CrlfPings => c.keepalive_pings,
            M::ResponsesReceived => c.responses_received,
            M::Bindings => self.registrar.local_bindings() as u64,
            M::Registered => r.registered,
            M::Refreshed => r.refreshed,
            M::Unregistered => r.unregistered,
            M::Expired => r.expired,
            M::Challenged => r.challenged,
            M::Forbidden => r.forbidden,
            M::TokenAccepted => r.token_accepted,
            M::TokenRejected => r.token_rejected,
            M::AuthHttpPending => self.waiting.as_ref().map_or(0, |w| w.pending() as u64),
            M::AuthHttpAuthorized => w.authorized,
            M::AuthHttpRejected => w.rejected,
            M::AuthHttpTimedOut => w.timed_out,
            M::AuthHttpFailed => w.failed,
            M::AuthHttpCached => r.http_cached,
            M::AuthHttpOverloaded => w.overloaded,
            M::AuthHttpRetransmissions => w.retransmissions,
            M::PathsRegistrationOnly => by_state(0),
            M::PathsDialogAndRegistration => by_state(1),
            M::PathsDialogOnly => by_state(2),
            M::PathsDead => self.keepalive.dead_paths(),
            M::Prompts => k.prompts,
            M::PromptRetransmissions => k.retransmissions,
            M::PromptsAnswered => k.answered,
            M::PromptsMissed => k.missed,
            M::PathsDeclaredDead => k.dead,
            M::JobsStarted => n.jobs_started,
            M::JobsFinished => n.jobs_finished,
            M::NotifySent => n.requests_sent,
            M::NotifyRetransmitted => n.retransmissions,
            M::NotifyDelivered => n.delivered,
            M::NotifyRejected => n.rejected,
            M::NotifyTimedOut => n.timed_out,
            M::NotifyNoBinding => n.no_binding,
            M::NotifyPathDead => n.path_dead,
            M::NotifyNotAccepted => n.not_accepted,
            M::NotifyCancelled => n.cancelled,
            M::NotifyChallengesAnswered => n.challenges_answered,
            M::NotifyInFlight => self.notify.in_flight() as u64,
            M::Subscriptions => self.notify.subscriptions.len() as u64,
            M::CallsAttempted => p.calls_attempted,
            M::CallsAnswered => p.calls_answered,
            M::CallsFailed3xx => p.calls_failed[0],
            M::CallsFailed4xx => p.calls_failed[1],
            M::CallsFailed5xx => p.calls_failed[2],
            M::CallsFailed6xx => p.calls_failed[3],
            M::CallsCancelled => p.calls_cancelled,
            M::ProxyBranches => p.branches,
            M::ProxyTransactions => p.transactions,
            M::ProxyTransactionsInFlight => self.proxy.transactions() as u64,
            M::Dialogs => self.proxy.dialogs() as u64,
            M::DialogsExpired => p.dialogs_expired,
            M::ProxyHandoffs => p.handoffs,
            M::ProxyUnmatched => p.unmatched,
            M::ProxyOverloaded => p.overloaded,
            M::ProxyLoops => p.loops,
            M::ProxyRefused => p.refused,
            M::MediaSessions => self.media.sessions() as u64,
            M::MediaPortPairs => self.media.pairs_in_use() as u64,
            M::MediaCallsAnchored => p.media_anchored,
            M::MediaPackets => self.media.stats.packets,
            M::MediaBytes => self.media.stats.bytes,
            M::MediaDroppedMalformed => self.media.stats.dropped_malformed,
            M::MediaDroppedSource => self.media.stats.dropped_source,
            M::MediaDroppedNoDestination => self.media.stats.dropped_no_destination,
            M::MediaRelatched => self.media.stats.relatched,
            M::MediaTimeouts => self.media.stats.timeouts,
            M::MediaPortsExhausted => self.media.stats.ports_exhausted,
            M::MediaPacketsLost => self.media.totals().0,
            M::CallsHeld => self.proxy.held_calls() as u64,
            M::HoldsStarted => p.held,
            M::HoldsWoken => p.hold_woken,
            M::HoldsBridged => p.bridged,
            M::HoldsTimedOut => p.hold_timed_out,
            M::BridgeRefused => p.bridge_refused,
            M::PushesSent => p.pushes_sent,
            M::PushesFailed => p.pushes_failed,
            M::RouteAsked => p.route_asked,
            M::RouteAnswered => p.route_answered,
            M::RouteDefaulted => p.route_defaulted,
            M::ClusterForwarded => p.cluster_forwarded,
            M::ClusterFromPeers => p.cluster_from_peers,
            M::ClusterWaited => p.cluster_waited,
            M::ClusterWaiting => self.proxy.owner_waiting() as u64,
            M::ClusterRetried => p.cluster_retried,
            M::ClusterLookupTimeouts => p.cluster_timeouts,
            M::ClusterFallbackUpstream => p.cluster_to_upstream,
            M::ClusterFallbackFailed => p.cluster_failed,
            M::ClusterBridgeForwarded => p.cluster_bridge_forwarded,
            M::BindingsPerSourceRefused => r.source_full,
            M::LimitedRegister
            | M::LimitedInvite
            | M::LimitedOther
            | M::LimitAnswered
            | M::LimitDropped
            | M::LimitSources
            | M::LimitEvictions
            | M::BlockedDropped
            | M::AuthFailures
            | M::BlocksStarted
            | M::BlockedSources => self.guard.metric(m),
        }
    }
}
