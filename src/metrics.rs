//! Per-core counters published for the metrics endpoint. A worker counts
//! in plain integers and copies them into its [`CoreSnapshot`] a few times a
//! second (relaxed stores, off the per-packet path); a scrape sums the
//! snapshots. Names and help text live in one table, [`CORE`], in the order
//! [`crate::dispatch::Dispatcher::metric_values`] fills them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A metric's name, help and type.
#[derive(Debug, Clone, Copy)]
pub struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    /// Counter (monotonic) or gauge.
    pub counter: bool,
}

const fn c(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        counter: true,
    }
}

const fn g(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        help,
        counter: false,
    }
}

/// Every per-core metric, in snapshot order.
pub const CORE: &[Desc] = &[
    c(
        "tether_datagrams_received_total",
        "UDP datagrams received on the SIP port.",
    ),
    c(
        "tether_malformed_answered_total",
        "Malformed requests answered 400/505.",
    ),
    c(
        "tether_malformed_dropped_total",
        "Malformed datagrams dropped without an answer.",
    ),
    c(
        "tether_oversize_dropped_total",
        "Datagrams over sip.max_datagram, dropped.",
    ),
    c(
        "tether_stun_requests_total",
        "STUN Binding requests answered on the SIP port.",
    ),
    c("tether_crlf_pings_total", "CRLF keepalive pings received."),
    c("tether_responses_received_total", "SIP responses received."),
    g("tether_bindings", "Registered bindings owned by this node."),
    c("tether_registrations_total", "New bindings registered."),
    c("tether_refreshes_total", "Bindings refreshed."),
    c(
        "tether_unregistrations_total",
        "Bindings removed by the client.",
    ),
    c("tether_expirations_total", "Bindings that expired."),
    c(
        "tether_auth_challenges_total",
        "REGISTERs challenged with 401.",
    ),
    c("tether_auth_forbidden_total", "REGISTERs refused with 403."),
    g(
        "tether_nat_paths_registration_only",
        "NAT paths carrying only registrations (seed 004).",
    ),
    g(
        "tether_nat_paths_dialog_and_registration",
        "NAT paths carrying dialogs and registrations.",
    ),
    g(
        "tether_nat_paths_dialog_only",
        "NAT paths carrying only dialogs.",
    ),
    g(
        "tether_nat_paths_dead",
        "NAT paths whose keepalive prompts went unanswered.",
    ),
    c(
        "tether_keepalive_prompts_total",
        "Keepalive OPTIONS prompts sent.",
    ),
    c(
        "tether_keepalive_retransmissions_total",
        "Keepalive prompts retransmitted.",
    ),
    c(
        "tether_keepalive_answered_total",
        "Keepalive prompts answered.",
    ),
    c(
        "tether_keepalive_missed_total",
        "Keepalive prompts unanswered (misses).",
    ),
    c(
        "tether_keepalive_paths_declared_dead_total",
        "NAT paths declared dead.",
    ),
    c(
        "tether_notify_jobs_started_total",
        "Fan-out job parts started on a core.",
    ),
    c(
        "tether_notify_jobs_finished_total",
        "Fan-out jobs finished.",
    ),
    c(
        "tether_notify_requests_sent_total",
        "Contact-me NOTIFYs and wake-up INVITEs sent (first sends).",
    ),
    c(
        "tether_notify_retransmissions_total",
        "Fan-out requests retransmitted (Timer A/E).",
    ),
    c(
        "tether_notify_delivered_total",
        "Devices that answered (2xx to NOTIFY, any answer to INVITE).",
    ),
    c(
        "tether_notify_rejected_total",
        "Devices that refused a NOTIFY with a final non-2xx.",
    ),
    c(
        "tether_notify_timed_out_total",
        "Devices that never answered (Timer B/F).",
    ),
    c(
        "tether_notify_no_binding_total",
        "Job devices whose binding was gone at send time.",
    ),
    c(
        "tether_notify_path_dead_total",
        "Job devices skipped because their NAT path is dead.",
    ),
    c(
        "tether_notify_not_accepted_total",
        "Job devices that did not opt in to the event package.",
    ),
    c(
        "tether_notify_cancelled_total",
        "Job devices not sent to because the job was cancelled.",
    ),
    c(
        "tether_notify_challenges_answered_total",
        "Device digest challenges answered.",
    ),
    g("tether_notify_in_flight", "Client transactions in flight."),
    g(
        "tether_subscriptions",
        "Active contact-me subscriptions (SUBSCRIBE opt-in).",
    ),
];

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

/// Appends one metric in the Prometheus text format (0.0.4).
pub fn render(out: &mut String, d: &Desc, value: u64) {
    let kind = if d.counter { "counter" } else { "gauge" };
    let _ = writeln!(out, "# HELP {} {}", d.name, d.help);
    let _ = writeln!(out, "# TYPE {} {kind}", d.name);
    let _ = writeln!(out, "{} {value}", d.name);
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
            assert!(d.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert_eq!(d.counter, d.name.ends_with("_total"), "{}", d.name);
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
}
