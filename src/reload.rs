//! SIGHUP (`systemctl reload tether`): re-read the configuration file,
//! validate it, and apply what a running tether can change without a
//! restart ([`Reloadable`]). An invalid file is logged with the key and
//! the fix, and the running configuration stays whole. Any other setting
//! that changed is logged as `needs restart: <key>` and keeps its running
//! value until tether is restarted.
//!
//! This runs on the main thread, which otherwise only waits for signals;
//! no worker waits on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{ApiClient, Config, ConfigError, DEFAULT_TOML};

/// The settings a reload applies to a running tether; every other setting
/// needs a restart.
///
/// To make another setting reloadable (`[limits]` is one, applied by the
/// cores):
/// 1. add a field, and copy it in [`Reloadable::of`] and [`Reloadable::put`];
/// 2. list its key (or its whole section) in [`Reloadable::KEYS`], so that
///    a change is not also reported as needing a restart;
/// 3. give [`Targets`] a handle to where it lives and apply it in
///    `Targets::apply`. State owned by the cores (per-source token
///    buckets) gets the new value as a `runtime::Command` through each
///    core's inbox (`Control::inboxes`), taken between two rounds of its
///    loop, like a fan-out job.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloadable {
    /// `log.level`.
    pub log_level: String,
    /// `api.allow`.
    pub api_allow: Vec<String>,
    /// `api.clients`: names, tokens, per-client `allow`.
    pub api_clients: Vec<ApiClient>,
    /// `[limits]`, the whole section (each core gets it as
    /// `Command::Limits`; see `limits::Guard::reconfigure`).
    pub limits: crate::limits::LimitsSection,
}

impl Reloadable {
    /// Dotted keys (a section covers all its keys) that [`Reloadable`] holds.
    pub const KEYS: &'static [&'static str] = &["log.level", "api.allow", "api.clients", "limits"];

    /// The reloadable part of `cfg`.
    pub fn of(cfg: &Config) -> Reloadable {
        Reloadable {
            log_level: cfg.log.level.clone(),
            api_allow: cfg.api.allow.clone(),
            api_clients: cfg.api.clients.clone(),
            limits: cfg.limits.clone(),
        }
    }

    /// Writes these settings into `cfg`.
    pub fn put(self, cfg: &mut Config) {
        cfg.log.level = self.log_level;
        cfg.api.allow = self.api_allow;
        cfg.api.clients = self.api_clients;
        cfg.limits = self.limits;
    }

    /// The keys whose values differ between `self` and `new`.
    fn changed(&self, new: &Reloadable) -> Vec<String> {
        let mut out = Vec::new();
        if self.log_level != new.log_level {
            out.push("log.level".to_owned());
        }
        if self.api_allow != new.api_allow {
            out.push("api.allow".to_owned());
        }
        if self.api_clients != new.api_clients {
            out.push("api.clients".to_owned());
        }
        if self.limits != new.limits {
            out.push("limits".to_owned());
        }
        out
    }

    fn covers(key: &str) -> bool {
        Self::KEYS.iter().any(|k| {
            key == *k || (key.starts_with(k) && key.as_bytes().get(k.len()) == Some(&b'.'))
        })
    }
}

/// `tether run`'s command-line settings. They override the file, at start
/// and again on every reload, so a reload never undoes them.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Vec<SocketAddr>,
    pub workers: Option<usize>,
    pub api_listen: Option<String>,
}

impl Overrides {
    fn apply(&self, cfg: &mut Config) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            cfg.sip.listen = self.listen.clone();
        }
        if let Some(w) = self.workers {
            cfg.runtime.workers = w;
        }
        if let Some(a) = &self.api_listen {
            cfg.api.listen = a.clone();
        }
        cfg.check()
    }
}

/// Reads `path` (the embedded defaults when `None`), parses and checks it,
/// and applies `overrides`. Returns the configuration and the file's text.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<(Config, String), ConfigError> {
    let text = match path {
        None => DEFAULT_TOML.to_owned(),
        Some(p) => std::fs::read_to_string(p).map_err(|err| ConfigError::Read {
            path: p.display().to_string(),
            err,
        })?,
    };
    let mut cfg = Config::from_toml(&text)?;
    overrides.apply(&mut cfg)?;
    Ok((cfg, text))
}

/// Sets the log filter from a `log.level` value.
pub type LogSetter = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// Where the reloadable settings are applied in the running process.
#[derive(Default)]
pub struct Targets {
    /// `None` when the log filter is not ours to change (RUST_LOG is set).
    pub log: Option<LogSetter>,
    /// The control API, when it runs.
    pub api: Option<Arc<crate::api::Service>>,
    /// The cores' inboxes, for `[limits]`.
    pub cores: Vec<crate::runtime::Inbox>,
}

impl Targets {
    /// Applies the keys in `changed` from `new`.
    fn apply(&self, new: &Reloadable, changed: &[String]) {
        if changed.iter().any(|k| k == "log.level") {
            match &self.log {
                Some(set) => {
                    if let Err(e) = set(&new.log_level) {
                        tracing::error!("config reload: log.level not applied: {e}");
                    }
                }
                None => tracing::warn!(
                    "config reload: log.level not applied: the RUST_LOG environment variable sets the log filter"
                ),
            }
        }
        if changed.iter().any(|k| k.starts_with("api.")) {
            if let Some(api) = &self.api {
                let section = crate::config::ApiConfig {
                    allow: new.api_allow.clone(),
                    clients: new.api_clients.clone(),
                    ..Default::default()
                };
                api.set_access(&section);
            }
        }
        if changed.iter().any(|k| k == "limits") {
            let settings = new.limits.settings();
            let sent = self
                .cores
                .iter()
                .filter(|c| c.send(crate::runtime::Command::Limits(settings.clone())))
                .count();
            if sent < self.cores.len() {
                tracing::error!(
                    cores = self.cores.len() - sent,
                    "config reload: [limits] not applied on some cores (inbox full); reload again"
                );
            }
        }
    }
}

/// What one reload did.
#[derive(Debug)]
pub enum Outcome {
    /// The file was valid. `applied`: reloadable keys that changed and were
    /// applied; `needs_restart`: other keys that changed (not applied).
    Applied {
        applied: Vec<String>,
        needs_restart: Vec<String>,
    },
    /// The file could not be read or is invalid; nothing changed.
    Refused(ConfigError),
    /// tether runs on its embedded defaults: no file to re-read.
    NoFile,
}

/// Re-reads the configuration on request and applies it.
pub struct Reloader {
    path: Option<PathBuf>,
    overrides: Overrides,
    /// What is in force: the file read at start, with the reloadable parts
    /// of the last valid reload.
    running: Config,
    /// The file's text at start, to name changed keys as the file spells them.
    started_text: String,
    targets: Targets,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        overrides: Overrides,
        running: Config,
        started_text: String,
        targets: Targets,
    ) -> Reloader {
        Reloader {
            path,
            overrides,
            running,
            started_text,
            targets,
        }
    }

    /// Where reloaded settings go (the API is added once it runs).
    pub fn targets_mut(&mut self) -> &mut Targets {
        &mut self.targets
    }

    /// The configuration in force.
    pub fn running(&self) -> &Config {
        &self.running
    }

    /// Re-reads the file, applies what can change, and logs the outcome.
    pub fn reload(&mut self) -> Outcome {
        let Some(path) = self.path.clone() else {
            tracing::warn!(
                "config reload: tether was started without --config; nothing to re-read"
            );
            return Outcome::NoFile;
        };
        let (new, text) = match load(Some(&path), &self.overrides) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("config reload refused, the running configuration is kept: {e}");
                return Outcome::Refused(e);
            }
        };
        let old = Reloadable::of(&self.running);
        let fresh = Reloadable::of(&new);
        let applied = old.changed(&fresh);
        // Everything but the reloadable part compared with what runs.
        let mut rest = new;
        old.put(&mut rest);
        let needs_restart = if rest == self.running {
            Vec::new()
        } else {
            let keys: Vec<String> = changed_keys(&self.started_text, &text)
                .into_iter()
                .filter(|k| !Reloadable::covers(k))
                .collect();
            if keys.is_empty() {
                // Not expected (a changed value shows in the text), but a
                // change must never go unreported.
                vec!["(a key the file does not name)".to_owned()]
            } else {
                keys
            }
        };
        self.targets.apply(&fresh, &applied);
        fresh.clone().put(&mut self.running);
        for key in &needs_restart {
            tracing::warn!(
                "needs restart: {key} (changed in {}; the running value stays until tether restarts)",
                path.display()
            );
        }
        tracing::info!(
            file = %path.display(),
            applied = ?applied,
            needs_restart = needs_restart.len(),
            "config reloaded"
        );
        Outcome::Applied {
            applied,
            needs_restart,
        }
    }
}

/// Dotted keys whose values differ between two TOML texts (arrays, such as
/// `[[api.clients]]`, count as one value).
pub fn changed_keys(old: &str, new: &str) -> Vec<String> {
    let (Ok(old), Ok(new)) = (old.parse::<toml::Table>(), new.parse::<toml::Table>()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff("", &old, &new, &mut out);
    out
}

fn diff(prefix: &str, old: &toml::Table, new: &toml::Table, out: &mut Vec<String>) {
    let empty = toml::Table::new();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let key = format!("{prefix}{k}");
        match (old.get(k), new.get(k)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                diff(&format!("{key}."), a, b, out)
            }
            (Some(toml::Value::Table(a)), None) => diff(&format!("{key}."), a, &empty, out),
            (None, Some(toml::Value::Table(b))) => diff(&format!("{key}."), &empty, b, out),
            (a, b) if a != b => out.push(key),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_sorted() {
        let old = "[sip]\nmax_headers = 64\n[api]\nallow = []\n";
        let new =
            "[sip]\nmax_headers = 70\n[api]\nallow = [\"10.0.0.0/8\"]\n[runtime]\nworkers = 2\n";
        assert_eq!(
            changed_keys(old, new),
            ["api.allow", "runtime.workers", "sip.max_headers"]
        );
        assert!(changed_keys(old, old).is_empty());
    }

    #[test]
    fn reloadable_keys_cover_their_subkeys_only() {
        assert!(Reloadable::covers("api.clients"));
        assert!(Reloadable::covers("log.level"));
        assert!(!Reloadable::covers("api.clients_x"));
        assert!(!Reloadable::covers("api.listen"));
    }

    #[test]
    fn put_of_round_trips_and_masks_every_reloadable_key() {
        // Changing only reloadable keys leaves nothing needing a restart.
        let new = Config::from_toml(
            "[log]\nlevel = \"debug\"\n[api]\nallow = [\"10.0.0.0/8\"]\n\
             clients = [{ name = \"a\", token = \"0123456789abcdef\" }]\n\
             [limits]\nregister_rate = 5\n",
        )
        .unwrap();
        let old = Config::default();
        let mut rest = new.clone();
        Reloadable::of(&old).put(&mut rest);
        assert_eq!(rest, old);
        assert_eq!(
            Reloadable::of(&old).changed(&Reloadable::of(&new)),
            ["log.level", "api.allow", "api.clients", "limits"]
        );
    }

    fn file(tag: &str, text: &str) -> PathBuf {
        let p =
            std::env::temp_dir().join(format!("tether-reload-{tag}-{}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_reload_applies_reloadables_names_the_rest_and_refuses_bad_files() {
        let path = file("unit", "[sip]\nmax_headers = 64\n");
        let overrides = Overrides {
            workers: Some(3),
            ..Overrides::default()
        };
        let (cfg, text) = load(Some(&path), &overrides).unwrap();
        let levels = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let seen = levels.clone();
        let targets = Targets {
            log: Some(Box::new(move |l| {
                seen.lock().push(l.to_owned());
                Ok(())
            })),
            ..Default::default()
        };
        let mut r = Reloader::new(Some(path.clone()), overrides, cfg, text, targets);
        std::fs::write(&path, "[sip]\nmax_headers = 70\n[log]\nlevel = \"warn\"\n").unwrap();
        match r.reload() {
            Outcome::Applied {
                applied,
                needs_restart,
            } => {
                assert_eq!(applied, ["log.level"]);
                assert_eq!(needs_restart, ["sip.max_headers"]);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(*levels.lock(), ["warn"]);
        assert_eq!(r.running().log.level, "warn");
        assert_eq!(r.running().sip.max_headers, 64, "not applied");
        assert_eq!(r.running().runtime.workers, 3, "override kept");
        std::fs::write(&path, "[log]\nlevel = \"loud\"\n").unwrap();
        match r.reload() {
            Outcome::Refused(e) => assert!(e.to_string().contains("log.level"), "{e}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(r.running().log.level, "warn");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            r.reload(),
            Outcome::Refused(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn a_limits_change_goes_to_every_core() {
        let path = file("limits", "[limits]\nregister_rate = 20\n");
        let (cfg, text) = load(Some(&path), &Overrides::default()).unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let (tx, rx) = crossbeam_channel::bounded(4);
        let targets = Targets {
            cores: vec![crate::runtime::Inbox::new(tx.clone(), waker.clone())],
            ..Default::default()
        };
        let mut r = Reloader::new(Some(path.clone()), Overrides::default(), cfg, text, targets);
        std::fs::write(&path, "[limits]\nregister_rate = 5\naction = \"drop\"\n").unwrap();
        match r.reload() {
            Outcome::Applied {
                applied,
                needs_restart,
            } => {
                assert_eq!(applied, ["limits"]);
                assert!(needs_restart.is_empty(), "{needs_restart:?}");
            }
            other => panic!("{other:?}"),
        }
        match rx.try_recv() {
            Ok(crate::runtime::Command::Limits(s)) => {
                assert_eq!(s.rates[0].per_s, 5);
                assert!(!s.reject);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.running().limits.register_rate, 5);
        // A bad value is refused whole; the cores hear nothing.
        std::fs::write(&path, "[limits]\naction = \"maybe\"\n").unwrap();
        assert!(matches!(r.reload(), Outcome::Refused(_)));
        assert!(rx.try_recv().is_err());
    }
}
