//! Building a node's endpoints from its configuration: what the cores share
//! (the location directory, the credentials, the nonce secret) is made
//! once; [`Setup::endpoint`] then makes each core's [`Endpoint`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::Endpoint;
use crate::config::Config;
use crate::nat::Keepalive;
use crate::registrar::auth::{Authenticator, Credentials};
use crate::registrar::{Directory, Registrar};

/// What every core of a node shares, and how to make one.
pub struct Setup {
    cfg: Config,
    workers: usize,
    secret: [u8; 32],
    creds: Option<Arc<Credentials>>,
    /// `auth.token.secrets`, when set.
    tokens: Option<Arc<crate::registrar::token::TokenKeys>>,
    policy: Arc<crate::registrar::Policy>,
    notify: Arc<crate::notify::NotifyConfig>,
    proxy: Arc<crate::proxy::ProxyConfig>,
    directory: Arc<Directory>,
    /// `media.ng_listen` is set: each worker has one more socket for it.
    ng_on: bool,
    /// Every core's `ng` Call-IDs (for `list`).
    ng_index: crate::media::ng_server::NgIndex,
    /// The call and registration events `[webhooks]` asks for.
    hooks: Arc<crate::hooks::EventHooks>,
    /// `[cluster]` on: the publisher the registrars send binding changes to.
    cluster: Option<crate::cluster::Publish>,
    /// `[cluster]` on: the lookup thread's queue.
    lookups: Option<crossbeam_channel::Sender<crate::cluster::lookup::OwnerQuery>>,
    limits: Arc<crate::limits::Settings>,
}

impl Setup {
    /// Loads the credentials (in `auth.mode = "digest"`) and sizes the
    /// directory. `secret` seeds nonces and ids: 32 random bytes in
    /// production.
    pub fn new(cfg: &Config, workers: usize, secret: [u8; 32]) -> std::io::Result<Setup> {
        use crate::registrar::AuthMode;
        let mode = cfg.auth.mode();
        let creds = if mode == AuthMode::Digest {
            let path = cfg
                .auth
                .credentials
                .as_deref()
                .expect("checked by Config::check");
            let c = Credentials::load(path, &cfg.auth.realm).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("auth.credentials: {e}"),
                )
            })?;
            tracing::info!(users = c.len(), realm = %cfg.auth.realm, "digest authentication on");
            Some(Arc::new(c))
        } else {
            None
        };
        let tokens = (!cfg.auth.token.secrets.is_empty()).then(|| {
            Arc::new(crate::registrar::token::TokenKeys::new(
                &cfg.auth.token.secrets,
            ))
        });
        match (mode, &tokens) {
            (AuthMode::None, None) => {
                tracing::warn!("auth.mode = \"none\": any client may register any AOR")
            }
            (AuthMode::None, Some(_)) => tracing::warn!(
                "auth.mode = \"none\": REGISTERs with a bad token are refused, but any \
                 client without one may register any AOR"
            ),
            (AuthMode::Http, _) => {
                tracing::info!(url = %cfg.auth.http.url, "registration authorized over HTTP")
            }
            (AuthMode::Digest, _) => {}
        }
        Ok(Setup {
            cfg: cfg.clone(),
            workers: workers.max(1),
            secret,
            creds,
            tokens,
            policy: Arc::new(cfg.policy()),
            notify: Arc::new(cfg.notify()),
            proxy: Arc::new(proxy_config(cfg, &secret)?),
            directory: Arc::new(Directory::with_capacity(cfg.registrar.capacity)),
            ng_on: !cfg.media.ng_listen.is_empty(),
            ng_index: Default::default(),
            hooks: Arc::new(crate::hooks::EventHooks::new(&cfg.webhooks)),
            cluster: None,
            lookups: None,
            limits: cfg.limits.settings(),
        })
    }

    /// The location directory every core shares.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// The node's event subscription (the registrar's and the proxy's).
    pub fn event_hooks(&self) -> &Arc<crate::hooks::EventHooks> {
        &self.hooks
    }

    /// Every core's registrar publishes its binding changes through `p`;
    /// owner lookups go to `lookups`.
    pub fn with_cluster(
        mut self,
        p: Option<crate::cluster::Publish>,
        lookups: Option<crossbeam_channel::Sender<crate::cluster::lookup::OwnerQuery>>,
    ) -> Setup {
        self.cluster = p;
        self.lookups = lookups;
        self
    }

    /// Core `core`'s endpoint; `local_addrs` are the bound listen addresses.
    pub fn endpoint(&self, core: usize, local_addrs: &[SocketAddr]) -> Endpoint {
        let cfg = &self.cfg;
        let n = self.workers;
        let auth = self.creds.as_ref().map(|c| {
            Authenticator::with_algorithms(
                cfg.auth.realm.as_str().into(),
                c.clone(),
                self.secret,
                cfg.auth.nonce_ttl,
                cfg.algorithms(),
            )
            .for_core(core as u16)
        });
        let seed = u64::from_le_bytes(self.secret[8..16].try_into().expect("8 bytes"))
            ^ (core as u64) << 56;
        let mut registrar = Registrar::new(
            core as u16,
            self.policy.clone(),
            self.directory.clone(),
            auth,
        )
        .with_tokens(self.tokens.clone())
        .with_http(
            cfg.auth.http(),
            derived_seed(&self.secret, b"auth cache", core),
        );
        registrar.set_event_hooks(self.hooks.clone());
        registrar.set_cluster(self.cluster.clone());
        // Reuseport spreads paths evenly but not exactly: an eighth more.
        let share = cfg.registrar.capacity / n;
        registrar.reserve(share + share / 8);
        let mut keepalive = Keepalive::new(cfg.keepalive(), seed.rotate_left(17));
        // A path per binding at most (devices behind one NAT share one).
        keepalive.reserve(share + share / 8);
        let per_core_rate = (cfg.notify.rate / n as u32).max(1);
        let notify = crate::notify::Engine::new(
            self.notify.clone(),
            self.directory.clone(),
            local_addrs.to_vec(),
            per_core_rate,
            seed.rotate_left(31),
        );
        let proxy = crate::proxy::Proxy::new(
            core as u16,
            self.proxy.clone(),
            self.directory.clone(),
            flow_token_key(&self.secret),
            local_addrs,
            seed.rotate_left(47),
        )
        .with_event_hooks(self.hooks.clone());
        Endpoint::new(
            cfg.limits(),
            seed,
            registrar,
            keepalive,
            notify,
            local_addrs.to_vec(),
        )
        .with_proxy(proxy)
        .with_owner_cache(crate::cluster::lookup::OwnerCache::new(
            core as u16,
            self.lookups.clone(),
            cfg.cluster.lookup_cache_ms,
            cfg.cluster.lookup_cache,
        ))
        .with_limits(crate::limits::Guard::new(
            self.limits.clone(),
            derived_seed(&self.secret, b"limits", core),
        ))
        .with_media(self.media_table(core, local_addrs))
        .with_ng(self.ng_on.then(|| {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let server = crate::media::ng_server::NgServer::new(
                core as u16,
                n as u16,
                unix,
                self.ng_index.clone(),
            );
            (local_addrs.len() as u8, server)
        }))
    }

    /// Core `core`'s relay table: its share of `media.ports`, none when
    /// neither the proxy nor `ng` anchors anything.
    fn media_table(&self, core: usize, local_addrs: &[SocketAddr]) -> crate::media::Table {
        let m = &self.cfg.media;
        let (addr, _) =
            crate::media::config::resolve_address(m, &self.cfg.proxy.advertise, local_addrs);
        let used = self.proxy.media != crate::media::Mode::Never || self.ng_on;
        crate::media::Table::new(crate::media::table::TableConfig {
            addr,
            relatch_ms: m.relatch_ms,
            timeout_ms: m.timeout_s * 1000,
            quarantine_ms: m.quarantine_ms,
            max_pairs: if used {
                m.core_pairs(core, self.workers).len()
            } else {
                0
            },
        })
    }
}

/// The proxy's settings from `[proxy]`, `[registrar]` and `[notify]`'s timers.
fn proxy_config(cfg: &Config, secret: &[u8; 32]) -> std::io::Result<crate::proxy::ProxyConfig> {
    let mut p = crate::proxy::ProxyConfig::from_section(
        &cfg.proxy,
        &cfg.registrar.domains,
        cfg.notify().timers,
    );
    // The proxy's 407s need digest credentials; other modes have none.
    p.auth = cfg.auth.mode() == crate::registrar::AuthMode::Digest;
    p.media = cfg.media.mode().unwrap_or(crate::media::Mode::Never);
    if p.media != crate::media::Mode::Never || !cfg.media.ng_listen.is_empty() {
        let (addr, sure) = crate::media::config::resolve_address(
            &cfg.media,
            &cfg.proxy.advertise,
            &cfg.sip.listen,
        );
        if !sure {
            tracing::warn!(
                %addr,
                "media.address is empty and sip.listen is a wildcard: rewritten SDP will name \
                 {addr}; set media.address to the address devices reach"
            );
        }
    }
    if cfg.proxy.advertise.is_empty() && cfg.sip.listen.iter().any(|a| a.ip().is_unspecified()) {
        tracing::warn!(
            "proxy.advertise is empty and sip.listen is a wildcard: Via and Record-Route will \
             name 0.0.0.0; set proxy.advertise to the address devices reach"
        );
    }
    p.hold = Some(Arc::new(hold_settings(cfg, secret)?));
    p.cluster = cfg
        .cluster
        .enabled
        .then(|| crate::proxy::cluster::ClusterRoute {
            node: cfg.cluster.node,
            advertise: cfg.cluster.advertise.clone(),
            timeout_ms: cfg.cluster.lookup_timeout_ms,
            max_waiting: cfg.cluster.lookup_waiting,
        });
    Ok(p)
}

/// `[push]` as the proxy holds calls with it. Without `push.bridge_keys`
/// the bridge key is derived from the node secret: tokens then open only
/// on this process.
fn hold_settings(
    cfg: &Config,
    secret: &[u8; 32],
) -> std::io::Result<crate::proxy::hold::HoldSettings> {
    use sha2::Digest;
    let p = &cfg.push;
    let random: [u8; 32] = sha2::Sha256::new()
        .chain_update(b"tether bridge key v1 ")
        .chain_update(secret)
        .finalize()
        .into();
    let keys = crate::hold::token::BridgeKeys::from_config(p, random)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    Ok(crate::proxy::hold::HoldSettings {
        hold_ms: p.hold_ms,
        gateways: p
            .gateways
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        push_timeout_ms: p.timeout_ms,
        prefix: p.bridge_prefix.as_str().into(),
        keys: Arc::new(keys),
        node: p.node,
        token_ttl_s: p.token_ttl_s(),
        max_held: p.max_held,
        labels: cfg.notify.labels.clone(),
        index: Arc::new(crate::proxy::hold::HoldIndex::default()),
    })
}

/// A hash seed for core `core` that nothing on the wire reveals (the id
/// generator's seed can be recovered from the tags it makes): derived from
/// the node secret under its own label.
fn derived_seed(secret: &[u8; 32], label: &[u8], core: usize) -> u64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"tether seed v1 ");
    h.update(label);
    h.update(secret);
    h.update((core as u64).to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The flow-token key: derived from the node secret, so a token never
/// doubles as a nonce MAC.
fn flow_token_key(secret: &[u8; 32]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"tether flow token v1");
    h.update(secret);
    h.finalize().into()
}
