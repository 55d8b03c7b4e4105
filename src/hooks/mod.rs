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

use std::sync::Arc;

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
