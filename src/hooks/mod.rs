//! HTTP out of the cores (seeds 002, 003): webhooks and callouts.
//!
//! A core never waits on HTTP. It queues a [`Request`] as
//! [`crate::endpoint::Event::Http`]; the runtime hands it to the side
//! threads behind [`Hooks`]. A **webhook** (call and registration events,
//! job results) is fire-and-forget, retried with backoff. A **callout**
//! (registration authorization, the routing webhook, a push to a gateway)
//! is tried once, within its timeout, and its [`Answer`] goes back to the
//! asking core's inbox as [`crate::endpoint::Command::HttpAnswer`]. The
//! core keeps its own deadline for every callout, so a lost answer (queue
//! full, thread gone) costs a fallback, never a stuck transaction.
//!
//! [`dispatch`] runs the side threads; [`events`] builds the call and
//! registration events a core queues; [`sign`] is the signature both carry
//! when `webhooks.secret` is set.

pub mod dispatch;
pub mod events;
mod resolve;
pub mod sign;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use events::{CallEvent, EndReason, EventHooks, EventKind, RegistrationEvent};

/// What a callout's answer is for: the subsystem of the asking core that
/// waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// `auth.mode = "http"`: may this REGISTER register?
    Authorize,
    /// `proxy.route_url`: where does this INVITE go?
    Route,
    /// A push to a `push.gateways` entry for a held call.
    Push,
}

/// How a request is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Fire-and-forget: retried per `[webhooks]`, dropped and counted when
    /// the queue is full.
    Webhook,
    /// One attempt within `timeout_ms`; the answer goes back to `core`.
    Callout {
        core: u16,
        purpose: Purpose,
        id: u64,
        timeout_ms: u64,
    },
}

/// One HTTP POST of a JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: Arc<str>,
    /// JSON; signed with `webhooks.secret` when one is set.
    pub body: Vec<u8>,
    pub kind: Kind,
}

/// A callout's outcome, for the core that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub purpose: Purpose,
    pub id: u64,
    /// The HTTP status; 0 = no answer (timeout, refused, queue full).
    pub status: u16,
    /// The response body (bounded), for the routing webhook's targets.
    pub body: Box<[u8]>,
}

impl Answer {
    /// The answer for a callout that got none.
    pub fn none(purpose: Purpose, id: u64) -> Answer {
        Answer {
            purpose,
            id,
            status: 0,
            body: Box::default(),
        }
    }
}

/// The side threads' counters, shared with whoever enqueues (the workers,
/// the API) and shown in `/metrics`. Off the hot path: atomics are fine.
#[derive(Debug, Default)]
pub struct Stats {
    /// Webhooks answered 2xx.
    pub delivered: AtomicU64,
    /// Webhooks that failed every attempt.
    pub failed: AtomicU64,
    /// Webhooks not queued (the queue, or a thread's retry queue, was full).
    pub dropped: AtomicU64,
    /// Webhook attempts after the first.
    pub retried: AtomicU64,
    /// Callouts that got an HTTP answer (any status).
    pub callouts_answered: AtomicU64,
    /// Callouts that got none: refused, timed out, or not queued.
    pub callouts_failed: AtomicU64,
    /// Webhooks waiting in the threads' retry queues now.
    pub retry_waiting: AtomicU64,
}

/// The one way to hand a request to the side threads without blocking.
/// A webhook that does not fit is dropped and counted; a callout that does
/// not fit is counted failed and given back, for the caller to answer its
/// waiter at once.
pub fn enqueue(
    tx: &crossbeam_channel::Sender<Request>,
    stats: &Stats,
    req: Request,
) -> Result<(), Request> {
    let Err(e) = tx.try_send(req) else {
        return Ok(());
    };
    let req = e.into_inner();
    let n = match req.kind {
        Kind::Webhook => stats.dropped.fetch_add(1, Ordering::Relaxed) + 1,
        Kind::Callout { .. } => stats.callouts_failed.fetch_add(1, Ordering::Relaxed) + 1,
    };
    // One line per power of two: a flood is visible without flooding the log.
    if n.is_power_of_two() {
        tracing::warn!(
            total = n,
            "HTTP queue full: request not sent (raise webhooks.queue or webhooks.threads)"
        );
    }
    Err(req)
}

impl Stats {
    /// The counters, and `queued` (requests in the channel now), in the
    /// Prometheus text format.
    pub fn render(&self, out: &mut String, queued: usize) {
        use crate::metrics::{render, Desc};
        let rows = [
            (
                "tether_webhooks_delivered_total",
                "Webhooks (events, job results) answered 2xx.",
                &self.delivered,
            ),
            (
                "tether_webhooks_failed_total",
                "Webhooks that failed every attempt (webhooks.retries).",
                &self.failed,
            ),
            (
                "tether_webhooks_dropped_total",
                "Webhooks dropped: the queue or a thread's retry queue was full (webhooks.queue).",
                &self.dropped,
            ),
            (
                "tether_webhooks_retried_total",
                "Webhook attempts after a failed one.",
                &self.retried,
            ),
            (
                "tether_callouts_answered_total",
                "Callouts that got an HTTP answer (any status).",
                &self.callouts_answered,
            ),
            (
                "tether_callouts_failed_total",
                "Callouts that got no answer: refused, timed out or not queued.",
                &self.callouts_failed,
            ),
        ];
        crate::metrics::render_atomic_rows(out, &rows.map(|(n, h, v)| (n, h, v, true)));
        let gauges = [
            (
                "tether_hooks_queue_depth",
                "HTTP requests (webhooks, callouts) waiting for a side thread.",
                queued as u64,
            ),
            (
                "tether_webhooks_retry_waiting",
                "Webhooks waiting for their next attempt.",
                self.retry_waiting.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let d = Desc {
                name,
                log: "",
                help,
                counter: false,
            };
            render(out, &d, v);
        }
    }
}
