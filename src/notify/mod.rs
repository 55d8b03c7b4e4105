//! Contact-me and wake-up fan-out (seeds 000, 001, 002).
//!
//! An application server asks for a job ([`JobSpec`]); the control thread
//! resolves its targets against the location directory ([`resolve`]) and
//! hands each core the devices it owns; each core's [`Engine`] sends the
//! NOTIFYs or INVITEs at the paced rate as RFC 3261 client transactions and
//! writes every device's outcome into the shared [`Job`] record, which the
//! API reads without locks.

mod body;
mod engine;
mod followup;
mod initial;
mod job;
mod pace;
mod request;
pub mod resolve;
mod run;
mod subscription;
#[cfg(test)]
mod tests;
mod txn;

pub use body::{contact_me_body, wake_body};
pub use engine::{Engine, Stats};
#[cfg(test)]
pub(crate) use job::sample;
pub use job::{Counts, Created, Device, Job, JobPart, JobSpec, Kind, Outcome, ServerAddr};
pub use subscription::SubscribeAnswer;

use crate::transaction::Timers;

/// How the fan-out behaves, from the `[notify]` configuration section.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyConfig {
    /// Event package of contact-me requests (seed 000).
    pub event: String,
    /// Content type of the contact-me body; also what a REGISTER's `Accept`
    /// must list for a device to opt in.
    pub content_type: String,
    /// Content type of the wake-up INVITE's bootstrap body (seed 001).
    pub wake_content_type: String,
    /// Body labels (seed 000 defaults).
    pub labels: Labels,
    /// Requests per second this node sends, over all jobs and cores.
    pub rate: u32,
    /// Transactions in flight per core; pacing waits when reached.
    pub max_in_flight: usize,
    /// How long a wake-up INVITE may ring before tether CANCELs it (ms).
    pub ring_ms: u64,
    /// Answer a device's 401/407 challenge once with these.
    pub credentials: Option<(String, String)>,
    /// Subscription lifetimes (SUBSCRIBE opt-in), seconds.
    pub min_subscription: u32,
    pub max_subscription: u32,
    pub timers: Timers,
}

/// Labels of the label=value body lines (`[notify.labels]`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Labels {
    pub request_id: String,
    pub address: String,
    pub port: String,
    pub path: String,
    pub time_slot: String,
    pub protocol: String,
    pub credentials: String,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            request_id: "RequestID".into(),
            address: "application_server_ip_addr".into(),
            port: "application_server_ip_port".into(),
            path: "application_server_path".into(),
            time_slot: "callback_time_slot".into(),
            protocol: "callback_protocol".into(),
            credentials: "credentials_ref".into(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            event: "application-server-contact-me".into(),
            content_type: "application/application-server-contact-me".into(),
            wake_content_type: "application/vnd.tether.bootstrap".into(),
            labels: Labels::default(),
            rate: 50_000,
            max_in_flight: 100_000,
            ring_ms: 32_000,
            credentials: None,
            min_subscription: 60,
            max_subscription: 7200,
            timers: Timers::default(),
        }
    }
}
