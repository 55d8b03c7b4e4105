//! Logging: the `[log]` section and the tracing subscriber whose filter a
//! reload replaces ([`crate::reload`]).

use serde::Deserialize;

use crate::config::ConfigError;
use crate::reload::LogSetter;

/// `[log]`: what is logged; SIGHUP re-applies it ([`crate::reload`]).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A tracing `EnvFilter`: a level, or `target=level` directives.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
        }
    }
}

impl LogSection {
    /// Stricter than `EnvFilter`, which would take a misspelt level
    /// ("verbose") as a module name and log nothing new.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
        let is_level = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
        let is_target = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
        };
        let bad = self
            .level
            .split(',')
            .map(str::trim)
            .find(|d| match d.split_once('=') {
                Some((target, level)) => !is_target(target) || !is_level(level),
                None => !is_level(d),
            });
        if let Some(bad) = bad {
            return Err(ConfigError::Invalid {
                key: "log.level",
                fix: format!(
                    "{bad:?} is not a level or a target=level directive; use one of {}, or e.g. \"info,tether::notify=debug\"",
                    LEVELS.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// Installs the process's subscriber (call once, from `main`): logs go to
/// stderr through a filter a reload can replace (`log.level`), "info"
/// until the configuration is read. RUST_LOG, when set, decides instead:
/// then there is no setter and `log.level` is not used.
pub fn init() -> Option<LogSetter> {
    use tracing_subscriber::{prelude::*, reload, EnvFilter};
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = std::env::var_os("RUST_LOG").is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| EnvFilter::new("info")));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    (!env_set).then(|| -> LogSetter {
        Box::new(move |level: &str| {
            let f = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn log_level_is_checked() {
        for ok in ["info", "WARN", "info,tether::notify=debug", "off"] {
            let toml = format!("[log]\nlevel = \"{ok}\"\n");
            assert!(Config::from_toml(&toml).is_ok(), "{ok}");
        }
        for bad in ["verbose", "", "tether=loud", "info,,debug", "a b=info"] {
            let err = Config::from_toml(&format!("[log]\nlevel = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("log.level") && err.contains("debug"),
                "{bad}: {err}"
            );
        }
    }
}
