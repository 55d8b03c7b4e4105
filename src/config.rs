//! Configuration: TOML, with every key defaulted so that `tether run` works
//! with no file at all. Unknown keys are errors that name the key.
//!
//! Over 700 lines on purpose: every section's struct, defaults and range
//! checks sit together so that a key and the message naming it are read in
//! one place.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::sip::Limits;

/// The embedded defaults, also printed by `tether config`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub runtime: RuntimeConfig,
    pub registrar: RegistrarConfig,
    pub auth: AuthConfig,
    pub keepalive: KeepaliveSection,
    pub api: ApiConfig,
    pub notify: NotifySection,
    pub webhooks: WebhookConfig,
    pub proxy: crate::proxy::ProxySection,
    pub media: crate::media::MediaSection,
    pub push: crate::hold::PushSection,
    pub cluster: crate::cluster::ClusterSection,
    pub limits: crate::limits::LimitsSection,
    pub log: crate::logging::LogSection,
    pub persist: crate::persist::PersistSection,
}

/// `[api]`: the HTTP control API and metrics endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the API listens, e.g. "127.0.0.1:8080"; "" switches it off.
    pub listen: String,
    /// Source networks (CIDR) allowed to call at all; empty = any.
    pub allow: Vec<String>,
    /// Application servers trusted to start jobs (seed 000).
    pub clients: Vec<ApiClient>,
    /// Largest request body accepted (bytes).
    pub max_body: usize,
    /// Finished jobs kept for `GET` this long (s).
    pub job_retention_s: u64,
    /// Jobs kept at once (running or finished); more get 503.
    pub max_jobs: usize,
    /// Devices over all kept jobs (about 60 bytes each); more get 503.
    pub max_job_devices: usize,
}

/// One trusted application server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiClient {
    pub name: String,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String,
    /// Source networks (CIDR) this client may call from; empty = any allowed by `api.allow`.
    #[serde(default)]
    pub allow: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            allow: Vec::new(),
            clients: Vec::new(),
            max_body: 1 << 20,
            job_retention_s: 3600,
            max_jobs: 1000,
            max_job_devices: 20_000_000,
        }
    }
}

/// `[notify]`: contact-me and wake-up fan-out (seeds 000, 001).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    pub event: String,
    pub content_type: String,
    pub wake_content_type: String,
    /// Requests per second for the whole node, all jobs together.
    pub rate: u32,
    /// Client transactions in flight per core.
    pub max_in_flight: usize,
    /// A wake-up INVITE that rings this long is CANCELled (ms).
    pub ring_ms: u64,
    /// Answer a device's digest challenge with these (both or neither).
    pub username: Option<String>,
    pub password: Option<String>,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Timers B and F (ms): no final answer by then = timed out.
    pub timeout_ms: u64,
    pub min_subscription: u32,
    pub max_subscription: u32,
    pub labels: crate::notify::Labels,
}

impl Default for NotifySection {
    fn default() -> Self {
        let n = crate::notify::NotifyConfig::default();
        NotifySection {
            event: n.event,
            content_type: n.content_type,
            wake_content_type: n.wake_content_type,
            rate: n.rate,
            max_in_flight: n.max_in_flight,
            ring_ms: n.ring_ms,
            username: None,
            password: None,
            t1_ms: n.timers.t1_ms,
            t2_ms: n.timers.t2_ms,
            t4_ms: n.timers.t4_ms,
            timeout_ms: n.timers.timeout_ms,
            min_subscription: n.min_subscription,
            max_subscription: n.max_subscription,
            labels: crate::notify::Labels::default(),
        }
    }
}

/// `[webhooks]`: HTTP out of the cores: call and registration events to
/// `url`, job results to each job's `callback_url`, and the callouts of
/// other features, all from `threads` side threads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where call and registration events are POSTed; "" = no events.
    pub url: String,
    /// Which events go to `url` ([`crate::hooks::EventKind`] names).
    pub events: Vec<String>,
    /// SIP header fields whose values are copied into the events.
    pub headers: Vec<String>,
    /// Signs every request (`X-Tether-Signature`) when set.
    pub secret: Option<String>,
    /// Side threads sending them (one HTTP client each).
    pub threads: usize,
    /// Events for `url` per POST: 1 = one JSON object each; more = a JSON
    /// array of those queued at that moment, up to this many.
    pub batch: usize,
    /// Per attempt (ms).
    pub timeout_ms: u64,
    /// Attempts after the first failure.
    pub retries: u32,
    /// Wait before the first retry, doubled each time (ms).
    pub backoff_ms: u64,
    /// Deliveries waiting; more are dropped and counted.
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            events: crate::hooks::EventKind::ALL
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            headers: Vec::new(),
            secret: None,
            threads: 4,
            batch: 1,
            timeout_ms: 5000,
            retries: 3,
            backoff_ms: 1000,
            queue: 1024,
        }
    }
}

impl WebhookConfig {
    /// Range and name checks.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.url.is_empty()
            && !self.url.starts_with("http://")
            && !self.url.starts_with("https://")
        {
            return Err(ConfigError::Invalid {
                key: "webhooks.url",
                fix: format!(
                    "{:?} is not an http:// or https:// URL; write e.g. \"http://10.0.0.7:8000/events\", or \"\" for no events",
                    self.url
                ),
            });
        }
        if let Some(bad) = self
            .events
            .iter()
            .find(|e| crate::hooks::EventKind::parse(e).is_none())
        {
            let names: Vec<&str> = crate::hooks::EventKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect();
            return Err(ConfigError::Invalid {
                key: "webhooks.events",
                fix: format!("{bad:?} is no event; use any of {}", names.join(", ")),
            });
        }
        if let Some(bad) = self
            .headers
            .iter()
            .find(|h| !crate::sip::scan::is_token_str(h))
        {
            return Err(ConfigError::Invalid {
                key: "webhooks.headers",
                fix: format!("{bad:?} is no header name; write names as in a SIP message, e.g. \"X-Account\""),
            });
        }
        if self.secret.as_deref() == Some("") {
            return Err(ConfigError::Invalid {
                key: "webhooks.secret",
                fix: "use a random secret (e.g. `openssl rand -hex 32`), or leave the key out to send unsigned".into(),
            });
        }
        if !(1..=64).contains(&self.threads) {
            return Err(ConfigError::Invalid {
                key: "webhooks.threads",
                fix: format!("{} is out of range; use 1..=64", self.threads),
            });
        }
        if !(1..=1000).contains(&self.batch) {
            return Err(ConfigError::Invalid {
                key: "webhooks.batch",
                fix: format!(
                    "{} is out of range; use 1 (one event per POST) up to 1000 events per POST",
                    self.batch
                ),
            });
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "webhooks.timeout_ms",
                fix: "use at least 1 ms".into(),
            });
        }
        if self.queue == 0 {
            return Err(ConfigError::Invalid {
                key: "webhooks.queue",
                fix: "use at least 1".into(),
            });
        }
        if self.retries > 16 {
            return Err(ConfigError::Invalid {
                key: "webhooks.retries",
                fix: format!(
                    "{} is out of range; use 0..=16 (the wait doubles each time)",
                    self.retries
                ),
            });
        }
        Ok(())
    }
}

/// `[keepalive]`: server-side NAT keepalive (seed 004).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveSection {
    /// Prompt a NAT path after this much silence (ms); 0 switches prompts off.
    pub interval_ms: u64,
    /// An unanswered prompt is a miss after this long (ms); retransmitted once halfway.
    pub timeout_ms: u64,
    /// Consecutive misses before a path is declared dead.
    pub max_misses: u8,
    /// Prompting goes on this long after a path's last dialog ends (ms).
    pub linger_ms: u64,
    /// Prompts are spread over [interval - jitter, interval] (ms).
    pub jitter_ms: u64,
}

impl Default for KeepaliveSection {
    fn default() -> Self {
        let k = crate::nat::KeepaliveConfig::default();
        KeepaliveSection {
            interval_ms: k.interval_ms,
            timeout_ms: k.timeout_ms,
            max_misses: k.max_misses,
            linger_ms: k.linger_ms,
            jitter_ms: k.jitter_ms,
        }
    }
}

/// `[registrar]`: binding lifetimes and limits (RFC 3261 §10.3).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Shorter non-zero expiries get `423 Interval Too Brief`.
    pub min_expires: u32,
    /// Longer expiries are clamped to this.
    pub max_expires: u32,
    /// Expiry when the REGISTER names none.
    pub default_expires: u32,
    /// Contacts one AOR may hold.
    pub max_contacts: usize,
    /// Domains served (Request-URI host); empty serves any.
    pub domains: Vec<String>,
    /// Contact parameter naming the device when there is no `+sip.instance`.
    pub device_id_param: Option<String>,
    /// AORs the location directory is sized for at start (it grows past this).
    pub capacity: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        let p = crate::registrar::Policy::default();
        RegistrarConfig {
            min_expires: p.min_expires,
            max_expires: p.max_expires,
            default_expires: p.default_expires,
            max_contacts: p.max_contacts,
            domains: Vec::new(),
            device_id_param: None,
            capacity: 1 << 18,
        }
    }
}

pub use crate::registrar::auth_config::AuthConfig;

/// `[sip]`: listening addresses and message limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP addresses to listen on (IPv4 and IPv6).
    pub listen: Vec<SocketAddr>,
    /// Largest datagram accepted; larger ones are dropped and counted.
    pub max_datagram: usize,
    /// Most header fields accepted in one message.
    pub max_headers: usize,
}

/// `[runtime]`: threads and sockets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per available core.
    pub workers: usize,
    /// Requested SO_RCVBUF / SO_SNDBUF in bytes.
    pub socket_buffer: usize,
    /// Datagrams per recvmmsg/sendmmsg call.
    pub batch: usize,
    /// Pin worker i to core i.
    pub pin_cpus: bool,
    /// Messages a worker's inbox holds before senders are refused.
    pub inbox_capacity: usize,
    /// Seconds between each worker's stats log line; 0 = none.
    pub stats_interval_s: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: vec!["0.0.0.0:5060".parse().expect("literal")],
            max_datagram: Limits::default().max_datagram,
            max_headers: Limits::default().max_headers,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: 0,
            socket_buffer: 8 << 20,
            batch: 32,
            pin_cpus: false,
            inbox_capacity: 65536,
            stats_interval_s: 60,
        }
    }
}

/// A configuration problem, worded for the operator.
#[derive(Debug)]
pub enum ConfigError {
    Read { path: String, err: std::io::Error },
    Syntax(String),
    Invalid { key: &'static str, fix: String },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read { path, err } => write!(f, "cannot read config file {path}: {err}"),
            ConfigError::Syntax(msg) => write!(f, "config: {msg}"),
            ConfigError::Invalid { key, fix } => write!(f, "config key `{key}`: {fix}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The embedded defaults with every setting commented out (`#key = value`),
/// explanations kept (`# …`): the installed `/etc/tether/tether.toml`
/// (`tether config --commented`). Commented out, so a later version's
/// defaults apply to keys the operator did not set.
pub fn commented_defaults() -> String {
    let mut out = String::from(
        "# tether configuration. Every setting is commented out and shows its\n\
# default (`#key = value`); uncomment a line to change it. `# ` lines explain\n\
# or give examples. Check with `tether check FILE`; `systemctl reload tether`\n\
# applies [log] and the API clients at once, other keys at the next restart.\n\n",
    );
    for line in DEFAULT_TOML.lines() {
        let setting = line.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if setting {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

impl Config {
    /// Parses TOML text; missing keys take their defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads a file, or returns the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml(DEFAULT_TOML),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|err| ConfigError::Read {
                    path: p.display().to_string(),
                    err,
                })?;
                Config::from_toml(&text)
            }
        }
    }

    /// Range checks that serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.proxy.check()?;
        self.media.check()?;
        self.webhooks.check()?;
        self.push.check()?;
        self.cluster.check(self.push.node)?;
        // Node-to-node job parts authenticate as this api.clients entry.
        let peer = &self.cluster.api_client;
        if !peer.is_empty() && !self.api.clients.iter().any(|c| &c.name == peer) {
            return Err(ConfigError::Invalid {
                key: "cluster.api_client",
                fix: format!(
                    "{peer:?} names no [[api.clients]] entry; add one with that name and a token \
                     (the same on every node), or leave it empty to keep jobs on this node"
                ),
            });
        }
        // Peers post this node its parts at the address it publishes: a
        // wildcard api.listen publishes none, and every part would fail.
        if self.cluster.enabled && !peer.is_empty() && self.cluster_api_addr().is_none() {
            return Err(ConfigError::Invalid {
                key: "cluster.api_advertise",
                fix: "api.listen is a wildcard (or off): give the control API address other \
                      nodes reach this one at, e.g. \"10.0.0.1:8080\""
                    .into(),
            });
        }
        self.limits.check()?;
        self.log.check()?;
        self.persist.check()?;
        if self.sip.listen.is_empty() {
            return Err(ConfigError::Invalid {
                key: "sip.listen",
                fix: "give at least one address, e.g. [\"0.0.0.0:5060\"]".into(),
            });
        }
        if !(512..=65535).contains(&self.sip.max_datagram) {
            return Err(ConfigError::Invalid {
                key: "sip.max_datagram",
                fix: format!(
                    "{} is out of range; use 512..=65535 bytes",
                    self.sip.max_datagram
                ),
            });
        }
        if !(8..=1024).contains(&self.sip.max_headers) {
            return Err(ConfigError::Invalid {
                key: "sip.max_headers",
                fix: format!("{} is out of range; use 8..=1024", self.sip.max_headers),
            });
        }
        if !(1..=1024).contains(&self.runtime.batch) {
            return Err(ConfigError::Invalid {
                key: "runtime.batch",
                fix: format!(
                    "{} is out of range; use 1..=1024 datagrams per system call",
                    self.runtime.batch
                ),
            });
        }
        if self.runtime.inbox_capacity == 0 {
            return Err(ConfigError::Invalid {
                key: "runtime.inbox_capacity",
                fix: "use at least 1".into(),
            });
        }
        let r = &self.registrar;
        if r.min_expires == 0 || r.min_expires > r.max_expires {
            return Err(ConfigError::Invalid {
                key: "registrar.min_expires",
                fix: format!(
                    "{} must be at least 1 and at most registrar.max_expires ({})",
                    r.min_expires, r.max_expires
                ),
            });
        }
        if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
            return Err(ConfigError::Invalid {
                key: "registrar.default_expires",
                fix: format!(
                    "{} must lie between registrar.min_expires ({}) and registrar.max_expires ({})",
                    r.default_expires, r.min_expires, r.max_expires
                ),
            });
        }
        if r.max_contacts == 0 || r.max_contacts > usize::from(u16::MAX) {
            return Err(ConfigError::Invalid {
                key: "registrar.max_contacts",
                fix: "allow 1 to 65535 contacts per AOR".into(),
            });
        }
        self.auth.check()?;
        let k = &self.keepalive;
        if k.interval_ms != 0 && (k.timeout_ms == 0 || k.timeout_ms >= k.interval_ms) {
            return Err(ConfigError::Invalid {
                key: "keepalive.timeout_ms",
                fix: format!(
                    "{} must be above 0 and below keepalive.interval_ms ({})",
                    k.timeout_ms, k.interval_ms
                ),
            });
        }
        if k.max_misses == 0 {
            return Err(ConfigError::Invalid {
                key: "keepalive.max_misses",
                fix: "use at least 1".into(),
            });
        }
        if !self.api.listen.is_empty() && self.api.listen.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "api.listen",
                fix: format!(
                    "{:?} is not an address; write e.g. \"127.0.0.1:8080\", or \"\" to switch the API off",
                    self.api.listen
                ),
            });
        }
        for (key, nets) in std::iter::once(("api.allow", &self.api.allow)).chain(
            self.api
                .clients
                .iter()
                .map(|c| ("api.clients.allow", &c.allow)),
        ) {
            for n in nets {
                if crate::addr::Cidr::parse(n).is_none() {
                    return Err(ConfigError::Invalid {
                        key,
                        fix: format!(
                            "{n:?} is not a network; write e.g. \"10.0.0.0/8\" or \"::1/128\""
                        ),
                    });
                }
            }
        }
        if self.api.clients.iter().any(|c| c.token.len() < 16) {
            return Err(ConfigError::Invalid {
                key: "api.clients.token",
                fix: "use a random token of at least 16 characters (e.g. `openssl rand -hex 24`)"
                    .into(),
            });
        }
        let n = &self.notify;
        if n.username.is_some() != n.password.is_some() {
            return Err(ConfigError::Invalid {
                key: "notify.username",
                fix: "set notify.username and notify.password together, or neither".into(),
            });
        }
        if n.rate == 0 || n.max_in_flight == 0 {
            return Err(ConfigError::Invalid {
                key: "notify.rate",
                fix: "notify.rate and notify.max_in_flight must be at least 1".into(),
            });
        }
        if n.t1_ms == 0 || n.t2_ms < n.t1_ms || n.timeout_ms < n.t1_ms {
            return Err(ConfigError::Invalid {
                key: "notify.t1_ms",
                fix: format!(
                    "need 0 < t1_ms ({}) <= t2_ms ({}) and t1_ms <= timeout_ms ({})",
                    n.t1_ms, n.t2_ms, n.timeout_ms
                ),
            });
        }
        if n.min_subscription == 0 || n.min_subscription > n.max_subscription {
            return Err(ConfigError::Invalid {
                key: "notify.min_subscription",
                fix: "must be at least 1 and at most notify.max_subscription".into(),
            });
        }
        if self.runtime.workers > 1024 {
            return Err(ConfigError::Invalid {
                key: "runtime.workers",
                fix: "use 0 (one per core) or a thread count up to 1024".into(),
            });
        }
        Ok(())
    }

    /// The registrar policy this configuration asks for.
    pub fn policy(&self) -> crate::registrar::Policy {
        let r = &self.registrar;
        crate::registrar::Policy {
            min_expires: r.min_expires,
            max_expires: r.max_expires,
            default_expires: r.default_expires,
            max_contacts: r.max_contacts,
            domains: r.domains.iter().map(|d| d.as_str().into()).collect(),
            device_id_param: r.device_id_param.as_deref().map(Into::into),
        }
    }

    /// The keepalive policy this configuration asks for.
    pub fn keepalive(&self) -> crate::nat::KeepaliveConfig {
        let k = &self.keepalive;
        crate::nat::KeepaliveConfig {
            interval_ms: k.interval_ms,
            timeout_ms: k.timeout_ms,
            max_misses: k.max_misses,
            linger_ms: k.linger_ms,
            jitter_ms: k.jitter_ms,
        }
    }

    /// The digest algorithms to offer, in order.
    pub fn algorithms(&self) -> Vec<crate::sip::digest::Algorithm> {
        self.auth
            .algorithms
            .iter()
            .filter_map(|a| crate::sip::digest::Algorithm::parse(Some(a)))
            .collect()
    }

    /// The API's listen address; `None` when switched off.
    pub fn api_listen(&self) -> Option<SocketAddr> {
        self.api.listen.parse().ok()
    }

    /// The control API address other nodes reach this one at:
    /// `cluster.api_advertise`, else `api.listen` when it names one address
    /// (not a wildcard, not port 0).
    pub fn cluster_api_addr(&self) -> Option<String> {
        if !self.cluster.api_advertise.is_empty() {
            return Some(self.cluster.api_advertise.clone());
        }
        self.api_listen()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
            .map(|a| a.to_string())
    }

    /// The fan-out settings this configuration asks for.
    pub fn notify(&self) -> crate::notify::NotifyConfig {
        let n = &self.notify;
        crate::notify::NotifyConfig {
            event: n.event.clone(),
            content_type: n.content_type.clone(),
            wake_content_type: n.wake_content_type.clone(),
            labels: n.labels.clone(),
            rate: n.rate,
            max_in_flight: n.max_in_flight,
            ring_ms: n.ring_ms,
            credentials: n.username.clone().zip(n.password.clone()),
            min_subscription: n.min_subscription,
            max_subscription: n.max_subscription,
            timers: crate::transaction::Timers {
                t1_ms: n.t1_ms,
                t2_ms: n.t2_ms,
                t4_ms: n.t4_ms,
                timeout_ms: n.timeout_ms,
                timer_d_ms: 32_000,
            },
        }
    }

    /// The parser limits this configuration asks for.
    pub fn limits(&self) -> Limits {
        Limits {
            max_datagram: self.sip.max_datagram,
            max_headers: self.sip.max_headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_match_code_defaults() {
        assert_eq!(Config::from_toml(DEFAULT_TOML).unwrap(), Config::default());
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn commented_defaults_are_the_defaults_and_set_nothing() {
        let text = commented_defaults();
        assert_eq!(Config::from_toml(&text).unwrap(), Config::default());
        let table: toml::Table = toml::from_str(&text).unwrap();
        for (section, v) in &table {
            let empty = |t: &toml::Table| {
                t.values()
                    .all(|v| v.as_table().is_some_and(|t| t.is_empty()))
            };
            let t = v.as_table().unwrap_or_else(|| panic!("{section} is set"));
            assert!(t.is_empty() || empty(t), "[{section}] sets {t:?}");
        }
        assert!(text.contains("\n#interval_ms = 25000\n"), "{text}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[sip]\nlisten_addr = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn out_of_range_names_key_and_fix() {
        let err = Config::from_toml("[sip]\nmax_datagram = 10\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sip.max_datagram") && err.contains("512"),
            "{err}"
        );
        let err = Config::from_toml("[sip]\nlisten = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sip.listen"), "{err}");
    }

    #[test]
    fn webhook_keys_are_checked_by_name() {
        let err = Config::from_toml("[webhooks]\nevents = [\"call.invite\", \"call.rang\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("webhooks.events")
                && err.contains("call.rang")
                && err.contains("registration.expired"),
            "{err}"
        );
        for (toml, key) in [
            ("url = \"ftp://x\"", "webhooks.url"),
            ("headers = [\"X Bad\"]", "webhooks.headers"),
            ("secret = \"\"", "webhooks.secret"),
            ("threads = 0", "webhooks.threads"),
            ("batch = 0", "webhooks.batch"),
            ("queue = 0", "webhooks.queue"),
        ] {
            let err = Config::from_toml(&format!("[webhooks]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        let ok = Config::from_toml(
            "[webhooks]\nurl = \"http://127.0.0.1:9/ev\"\nevents = [\"registration.added\"]\nheaders = [\"User-Agent\", \"X-Account\"]\nsecret = \"s\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn bad_address_is_a_syntax_error_naming_the_key() {
        let err = Config::from_toml("[sip]\nlisten = [\"nonsense\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen"), "{err}");
    }
}
