//! `[proxy]`: where calls for other domains go, who is trusted, and the
//! limits that keep a flood from growing the tables without bound.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::addr::Cidr;
use crate::config::ConfigError;

/// The `[proxy]` section as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Requests for domains tether does not serve go here: a primary and
    /// an optional fallback (seed 003), as "ip:port".
    pub upstream: Vec<SocketAddr>,
    /// Networks whose requests are neither challenged nor limited to
    /// tether's own domains (the carrier's core), CIDR.
    pub trusted: Vec<String>,
    /// The address tether writes in its Via and Record-Route, as
    /// "host:port"; empty = the first listen address.
    pub advertise: String,
    /// Timer C (RFC 3261 §16.6): how long an INVITE branch may ring (s).
    pub timer_c_s: u64,
    /// A dialog lasting longer is ended with a BYE to both parties (s); 0 = never.
    pub max_call_s: u64,
    /// Proxy transactions in flight per core; more get 503.
    pub max_transactions: usize,
    /// Dialogs per core; calls beyond get 503.
    pub max_dialogs: usize,
    /// Branches one request is forked to at most.
    pub max_forks: usize,
    /// The routing webhook (seed 003): an out-of-dialog INVITE waits for
    /// this URL's targets; "" = the location service alone.
    pub route_url: String,
    /// How long an INVITE waits for the routing webhook before its
    /// default route (ms).
    pub route_timeout_ms: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            upstream: Vec::new(),
            trusted: Vec::new(),
            advertise: String::new(),
            timer_c_s: 180,
            max_call_s: 14_400,
            max_transactions: 100_000,
            max_dialogs: 200_000,
            max_forks: 10,
            route_url: String::new(),
            route_timeout_ms: 2000,
        }
    }
}

impl ProxySection {
    /// Range checks; errors name the key and the fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.upstream.len() > 2 {
            return Err(ConfigError::Invalid {
                key: "proxy.upstream",
                fix: "give a primary and at most one fallback, e.g. [\"10.0.0.5:5060\", \"10.0.0.6:5060\"]".into(),
            });
        }
        for t in &self.trusted {
            if Cidr::parse(t).is_none() {
                return Err(ConfigError::Invalid {
                    key: "proxy.trusted",
                    fix: format!("{t:?} is not a network; write e.g. \"10.0.0.0/8\""),
                });
            }
        }
        if !self.advertise.is_empty() && !valid_hostport(&self.advertise) {
            return Err(ConfigError::Invalid {
                key: "proxy.advertise",
                fix: format!(
                    "{:?} is not host:port; write e.g. \"203.0.113.10:5060\"",
                    self.advertise
                ),
            });
        }
        if !(1..=3600).contains(&self.timer_c_s) {
            return Err(ConfigError::Invalid {
                key: "proxy.timer_c_s",
                fix: format!(
                    "{} is out of range; use 1..=3600 (RFC 3261 asks for more than 180)",
                    self.timer_c_s
                ),
            });
        }
        for (key, v) in [
            ("proxy.max_transactions", self.max_transactions),
            ("proxy.max_dialogs", self.max_dialogs),
        ] {
            if !(1..=crate::timer::MAX_INDEX as usize).contains(&v) {
                return Err(ConfigError::Invalid {
                    key,
                    fix: format!("{v} is out of range; use 1..={}", crate::timer::MAX_INDEX),
                });
            }
        }
        if !(1..=32).contains(&self.max_forks) {
            return Err(ConfigError::Invalid {
                key: "proxy.max_forks",
                fix: format!("{} is out of range; use 1..=32", self.max_forks),
            });
        }
        if !self.route_url.is_empty() && !self.route_url.starts_with("http://") {
            return Err(ConfigError::Invalid {
                key: "proxy.route_url",
                fix: format!(
                    "{:?} is not an http:// URL; write e.g. \"http://127.0.0.1:9000/route\"",
                    self.route_url
                ),
            });
        }
        if !(50..=30_000).contains(&self.route_timeout_ms) {
            return Err(ConfigError::Invalid {
                key: "proxy.route_timeout_ms",
                fix: format!("{} is out of range; use 50..=30000", self.route_timeout_ms),
            });
        }
        Ok(())
    }

    /// The trusted networks, parsed (after [`ProxySection::check`]).
    pub fn trusted_networks(&self) -> Vec<Cidr> {
        self.trusted.iter().filter_map(|t| Cidr::parse(t)).collect()
    }
}

/// `host:port` with a port, the host a name or an address.
fn valid_hostport(s: &str) -> bool {
    matches!(crate::sip::uri::split_host_port(s), Ok((_, Some(_))))
}
