//! `[cluster]`: this node's place in a cluster of tethers sharing
//! ownership records on Redis Cluster (off by default).

use serde::Deserialize;

use crate::config::ConfigError;

/// The `[cluster]` section as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Publish ownership records and heartbeats (and look owners up).
    pub enabled: bool,
    /// This node's id, unique in the cluster; the same number as
    /// `push.node` (bridge tokens name the node holding a call by it).
    pub node: u32,
    /// Seed addresses of the Redis Cluster, as `redis://host:port`; the
    /// client learns the other masters from them.
    pub redis: Vec<String>,
    /// The SIP address (`host:port`) other nodes send requests for this
    /// node's devices to.
    pub advertise: String,
    /// How often the heartbeat key is written (ms).
    pub heartbeat_ms: u64,
    /// The heartbeat key's TTL (ms): a node silent this long is gone.
    pub heartbeat_ttl_ms: u64,
    /// A refresh that only extends a binding is written at most this often
    /// (s), batched with the others; records carry twice this much slack.
    pub renew_s: u32,
    /// Changes held (one per binding, coalesced) while Redis is
    /// unreachable; more are dropped and counted.
    pub backlog: usize,
    /// Binding changes queued from the cores to the publisher thread; more
    /// are dropped and counted.
    pub queue: usize,
    /// Records are grouped into this many Redis hashes (a power of two, the
    /// same on every node): about 16 records per hash keeps each one in
    /// Redis's compact listpack encoding (`hash-max-listpack-entries`,
    /// 128 by default), which is what keeps a record near 40 bytes.
    pub buckets: u32,
    /// Redis connect and response timeout (ms).
    pub timeout_ms: u64,
    /// Every bucket is swept for expired records once per this many
    /// seconds (spread evenly), by every node.
    pub sweep_s: u32,
    /// A core keeps an owner lookup's answer this long (ms).
    pub lookup_cache_ms: u64,
    /// AORs whose owners a core keeps at once.
    pub lookup_cache: usize,
    /// Fan-out across nodes (issue 18): the control API address
    /// (`host:port`) the other nodes post this node's part of a job to;
    /// empty = `api.listen` when that names one address.
    pub api_advertise: String,
    /// The `api.clients` entry (its name) whose token a node presents to
    /// the others' APIs, the same entry on every node; only this client may
    /// post a node's part of a job. Empty: jobs reach this node's devices only.
    pub api_client: String,
    /// A call for a device this node does not hold waits at most this long
    /// (ms) for the owner lookup; then it takes the upstream, or 480.
    pub lookup_timeout_ms: u64,
    /// Calls one core keeps waiting for owner lookups; more take the
    /// upstream (or 480) at once.
    pub lookup_waiting: usize,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            enabled: false,
            node: 1,
            redis: Vec::new(),
            advertise: String::new(),
            heartbeat_ms: 1000,
            heartbeat_ttl_ms: 5000,
            renew_s: 30,
            backlog: 1_000_000,
            queue: 65_536,
            buckets: 65_536,
            timeout_ms: 500,
            sweep_s: 3600,
            lookup_cache_ms: 2000,
            lookup_cache: 10_000,
            api_advertise: String::new(),
            api_client: String::new(),
            lookup_timeout_ms: 500,
            lookup_waiting: 1000,
        }
    }
}

/// `host:port` with a port other than 0.
fn is_hostport(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0))
}

fn invalid(key: &'static str, fix: String) -> ConfigError {
    ConfigError::Invalid { key, fix }
}

impl ClusterSection {
    /// Range checks; errors name the key and the fix. `push_node` is
    /// `push.node`, which must name the same node.
    pub fn check(&self, push_node: u32) -> Result<(), ConfigError> {
        if self.node == 0 {
            return Err(invalid(
                "cluster.node",
                "0 is reserved; give each node its own number from 1".into(),
            ));
        }
        if !(100..=60_000).contains(&self.heartbeat_ms) {
            return Err(invalid(
                "cluster.heartbeat_ms",
                format!("{} is out of range; use 100..=60000", self.heartbeat_ms),
            ));
        }
        if self.heartbeat_ttl_ms < 2 * self.heartbeat_ms || self.heartbeat_ttl_ms > 600_000 {
            return Err(invalid(
                "cluster.heartbeat_ttl_ms",
                format!(
                    "{} is out of range; use at least twice cluster.heartbeat_ms ({}) so one \
                     late heartbeat does not drop the node, and at most 600000",
                    self.heartbeat_ttl_ms, self.heartbeat_ms
                ),
            ));
        }
        if !(1..=3600).contains(&self.renew_s) {
            return Err(invalid(
                "cluster.renew_s",
                format!("{} is out of range; use 1..=3600", self.renew_s),
            ));
        }
        if self.backlog == 0 || self.queue == 0 {
            let key = if self.backlog == 0 {
                "cluster.backlog"
            } else {
                "cluster.queue"
            };
            return Err(invalid(key, "0 holds nothing; use at least 1".into()));
        }
        if !self.buckets.is_power_of_two() || !(16..=1 << 24).contains(&self.buckets) {
            return Err(invalid(
                "cluster.buckets",
                format!(
                    "{} is not a power of two in 16..=16777216; use about a sixteenth of the \
                     cluster's endpoints, the same on every node",
                    self.buckets
                ),
            ));
        }
        if !(50..=30_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "cluster.timeout_ms",
                format!("{} is out of range; use 50..=30000", self.timeout_ms),
            ));
        }
        if !(1..=86_400).contains(&self.sweep_s) {
            return Err(invalid(
                "cluster.sweep_s",
                format!("{} is out of range; use 1..=86400", self.sweep_s),
            ));
        }
        if self.lookup_cache_ms > 600_000 {
            return Err(invalid(
                "cluster.lookup_cache_ms",
                format!(
                    "{} is out of range; use 0..=600000 (a node that stopped is seen within it)",
                    self.lookup_cache_ms
                ),
            ));
        }
        if !(10..=30_000).contains(&self.lookup_timeout_ms) {
            return Err(invalid(
                "cluster.lookup_timeout_ms",
                format!(
                    "{} is out of range; use 10..=30000 (a call waits this long for its owner)",
                    self.lookup_timeout_ms
                ),
            ));
        }
        if self.lookup_waiting == 0 {
            return Err(invalid(
                "cluster.lookup_waiting",
                "0 lets no call wait for its owner; use at least 1".into(),
            ));
        }
        for url in &self.redis {
            let ok = url.strip_prefix("redis://").is_some_and(|rest| {
                rest.rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            });
            if !ok {
                return Err(invalid(
                    "cluster.redis",
                    format!("{url:?} is not a seed address; write redis://host:port"),
                ));
            }
        }
        if !self.api_advertise.is_empty() && !is_hostport(&self.api_advertise) {
            return Err(invalid(
                "cluster.api_advertise",
                format!(
                    "{:?} is not host:port; give the control API address other nodes reach this \
                     one at, or leave it empty for api.listen",
                    self.api_advertise
                ),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.redis.is_empty() {
            return Err(invalid(
                "cluster.redis",
                "a cluster needs at least one Redis Cluster seed, e.g. [\"redis://10.0.0.5:6379\"]"
                    .into(),
            ));
        }
        // Numeric and specific: peers are recognised by this exact address
        // (a hostname or 0.0.0.0 would match no source, or every one).
        if !self
            .advertise
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| !a.ip().is_unspecified() && a.port() != 0)
        {
            return Err(invalid(
                "cluster.advertise",
                format!(
                    "{:?} is not a numeric ip:port; give the SIP address other nodes reach this \
                     one at, e.g. \"10.0.0.1:5060\" (not a name, not 0.0.0.0)",
                    self.advertise
                ),
            ));
        }
        if push_node != self.node {
            return Err(invalid(
                "cluster.node",
                format!(
                    "{} differs from push.node ({push_node}); set both to this node's number \
                     (bridge tokens name the node holding a call by push.node)",
                    self.node
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> ClusterSection {
        ClusterSection {
            enabled: true,
            redis: vec!["redis://127.0.0.1:7000".into()],
            advertise: "10.0.0.1:5060".into(),
            ..ClusterSection::default()
        }
    }

    fn key_of(s: &ClusterSection, push_node: u32) -> &'static str {
        match s.check(push_node) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn off_by_default_and_valid() {
        let d = ClusterSection::default();
        assert!(!d.enabled);
        assert!(d.check(1).is_ok());
        assert!(on().check(1).is_ok());
    }

    #[test]
    fn the_whole_config_names_the_key() {
        let err = |toml: &str| {
            crate::config::Config::from_toml(toml)
                .unwrap_err()
                .to_string()
        };
        assert!(err("[cluster]\nenabled = true\n").contains("`cluster.redis`"));
        assert!(err("[cluster]\nbuckets = 3\n").contains("`cluster.buckets`"));
        assert!(err("[cluster]\nnodes = 3\n").contains("nodes"));
        let ok = "[cluster]\nenabled = true\nnode = 2\nredis = [\"redis://10.0.0.5:6379\"]\n\
                  advertise = \"10.0.0.2:5060\"\n[push]\nnode = 2\n";
        let cfg = crate::config::Config::from_toml(ok).unwrap();
        assert!(cfg.cluster.enabled);
        assert!(err(&ok.replace("[push]\nnode = 2", "")).contains("push.node"));
        let peer = ok.replace("[push]", "api_client = \"peers\"\n[push]");
        assert!(err(&peer).contains("`cluster.api_client`"));
        let listed = format!(
            "{peer}[api]\nclients = [{{ name = \"peers\", token = \"0123456789abcdef0123\" }}]\n"
        );
        assert!(crate::config::Config::from_toml(&listed).is_ok());
        // A wildcard API address publishes nothing peers could post parts to.
        let wild = format!("{listed}listen = \"0.0.0.0:8080\"\n");
        assert!(err(&wild).contains("`cluster.api_advertise`"));
        let told = wild.replace(
            "api_client",
            "api_advertise = \"10.0.0.2:8080\"\napi_client",
        );
        assert!(crate::config::Config::from_toml(&told).is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        let mut s = on();
        s.redis.clear();
        assert_eq!(key_of(&s, 1), "cluster.redis");
        s = on();
        s.redis = vec!["127.0.0.1:7000".into()];
        assert_eq!(key_of(&s, 1), "cluster.redis");
        s = on();
        s.advertise = "10.0.0.1".into();
        assert_eq!(key_of(&s, 1), "cluster.advertise");
        // Peers are recognised by the exact address: no names, no wildcard.
        s.advertise = "edge1.example.net:5060".into();
        assert_eq!(key_of(&s, 1), "cluster.advertise");
        s.advertise = "0.0.0.0:5060".into();
        assert_eq!(key_of(&s, 1), "cluster.advertise");
        assert_eq!(key_of(&on(), 2), "cluster.node");
        s = on();
        s.heartbeat_ttl_ms = s.heartbeat_ms;
        assert_eq!(key_of(&s, 1), "cluster.heartbeat_ttl_ms");
        s = on();
        s.buckets = 1000;
        assert_eq!(key_of(&s, 1), "cluster.buckets");
        s = on();
        s.backlog = 0;
        assert_eq!(key_of(&s, 1), "cluster.backlog");
        s = on();
        s.queue = 0;
        assert_eq!(key_of(&s, 1), "cluster.queue");
        s = on();
        s.node = 0;
        assert_eq!(key_of(&s, 0), "cluster.node");
        s = on();
        s.api_advertise = "127.0.0.1".into();
        assert_eq!(key_of(&s, 1), "cluster.api_advertise");
        s = on();
        s.lookup_timeout_ms = 5;
        assert_eq!(key_of(&s, 1), "cluster.lookup_timeout_ms");
        s = on();
        s.lookup_waiting = 0;
        assert_eq!(key_of(&s, 1), "cluster.lookup_waiting");
    }
}
