//! `[limits]`: per-source rate limits, blocks after repeated
//! authentication failures, and registrations per source address.

use std::sync::Arc;

use serde::Deserialize;

use super::bucket::Rate;
use crate::addr::Cidr;
use crate::config::ConfigError;

/// The `[limits]` section as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// REGISTERs per second one source may send to one core; 0 = no limit.
    pub register_rate: u32,
    /// REGISTERs a quiet source may send at once.
    pub register_burst: u32,
    pub invite_rate: u32,
    pub invite_burst: u32,
    /// Other requests (OPTIONS, SUBSCRIBE, MESSAGE …; never ACK, BYE, CANCEL).
    pub other_rate: u32,
    pub other_burst: u32,
    /// Beyond a limit: "reject" (503 + Retry-After, at most one a second
    /// per source, the rest dropped) or "drop" (silently, counted).
    pub action: String,
    /// Sources each core tracks at once (fixed; the quietest make room).
    pub sources: usize,
    /// Authentication failures within `auth_window_s` that block a source.
    pub auth_failures: u32,
    pub auth_window_s: u64,
    /// How long a block lasts (s); 0 = never block.
    pub block_s: u64,
    /// Blocks each core holds at once.
    pub max_blocks: usize,
    /// Bindings registered from one source address (per core); 0 = no limit.
    pub max_bindings_per_source: u32,
    /// Networks never limited, blocked or capped (CIDR).
    pub exempt: Vec<String>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            register_rate: 20,
            register_burst: 100,
            invite_rate: 10,
            invite_burst: 50,
            other_rate: 100,
            other_burst: 400,
            action: "reject".into(),
            sources: 65_536,
            auth_failures: 10,
            auth_window_s: 60,
            block_s: 600,
            max_blocks: 4096,
            max_bindings_per_source: 10_000,
            exempt: vec!["127.0.0.0/8".into(), "::1/128".into()],
        }
    }
}

/// The limits as the cores use them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Indexed by [`super::Kind`].
    pub rates: [Rate; 3],
    /// `action = "reject"`.
    pub reject: bool,
    pub sources: usize,
    pub auth_failures: u32,
    pub auth_window_ms: u64,
    pub block_ms: u64,
    pub max_blocks: usize,
    pub max_bindings: u32,
    pub exempt: Vec<Cidr>,
}

impl Settings {
    /// Nothing limited, nothing blocked (an endpoint made without a
    /// configuration, as tests and benches make them).
    pub fn off() -> Settings {
        Settings {
            rates: [Rate::OFF; 3],
            reject: true,
            sources: 8,
            auth_failures: 0,
            auth_window_ms: 0,
            block_ms: 0,
            max_blocks: 1,
            max_bindings: 0,
            exempt: Vec::new(),
        }
    }

    /// True when some request kind is rate-limited.
    pub fn any_rate(&self) -> bool {
        self.rates.iter().any(|r| r.per_s > 0)
    }
}

fn invalid(key: &'static str, fix: String) -> ConfigError {
    ConfigError::Invalid { key, fix }
}

impl LimitsSection {
    /// Range and name checks; each error names its key and the fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (rate, burst, key) in [
            (
                self.register_rate,
                self.register_burst,
                "limits.register_burst",
            ),
            (self.invite_rate, self.invite_burst, "limits.invite_burst"),
            (self.other_rate, self.other_burst, "limits.other_burst"),
        ] {
            if rate > 0 && burst == 0 {
                return Err(invalid(
                    key,
                    "must be at least 1 while its rate is on (a source may always send one request)".into(),
                ));
            }
        }
        if !matches!(self.action.as_str(), "reject" | "drop") {
            return Err(invalid(
                "limits.action",
                format!(
                    "{:?} is no action; use \"reject\" (503 with Retry-After) or \"drop\" (silent, counted)",
                    self.action
                ),
            ));
        }
        if !(64..=1 << 24).contains(&self.sources) {
            return Err(invalid(
                "limits.sources",
                format!(
                    "{} is out of range; use 64..=16777216 sources per core",
                    self.sources
                ),
            ));
        }
        if self.block_s > 0 && (self.auth_failures == 0 || self.auth_window_s == 0) {
            return Err(invalid(
                "limits.auth_failures",
                "limits.auth_failures and limits.auth_window_s must be at least 1 while limits.block_s is on (set block_s = 0 to never block)".into(),
            ));
        }
        if self.block_s > 7 * 86_400 {
            return Err(invalid(
                "limits.block_s",
                format!(
                    "{} s is over a week; use 0 (never block) up to 604800",
                    self.block_s
                ),
            ));
        }
        if !(1..=1 << 20).contains(&self.max_blocks) {
            return Err(invalid(
                "limits.max_blocks",
                format!(
                    "{} is out of range; use 1..=1048576 blocks per core",
                    self.max_blocks
                ),
            ));
        }
        if let Some(bad) = self.exempt.iter().find(|n| Cidr::parse(n).is_none()) {
            return Err(invalid(
                "limits.exempt",
                format!("{bad:?} is not a network; write e.g. \"10.0.0.0/8\" or \"::1/128\""),
            ));
        }
        Ok(())
    }

    /// The settings the cores share.
    pub fn settings(&self) -> Arc<Settings> {
        let rate = |per_s, burst| Rate { per_s, burst };
        Arc::new(Settings {
            rates: [
                rate(self.register_rate, self.register_burst),
                rate(self.invite_rate, self.invite_burst),
                rate(self.other_rate, self.other_burst),
            ],
            reject: self.action == "reject",
            sources: self.sources,
            auth_failures: self.auth_failures,
            auth_window_ms: self.auth_window_s.saturating_mul(1000),
            block_ms: self.block_s.saturating_mul(1000),
            max_blocks: self.max_blocks,
            max_bindings: self.max_bindings_per_source,
            exempt: self.exempt.iter().filter_map(|n| Cidr::parse(n)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn keys_are_checked_by_name() {
        for (toml, key) in [
            ("register_burst = 0", "limits.register_burst"),
            ("other_rate = 5\nother_burst = 0", "limits.other_burst"),
            ("action = \"block\"", "limits.action"),
            ("sources = 1", "limits.sources"),
            ("auth_failures = 0", "limits.auth_failures"),
            ("block_s = 99999999", "limits.block_s"),
            ("max_blocks = 0", "limits.max_blocks"),
            ("exempt = [\"10.0.0.0/99\"]", "limits.exempt"),
        ] {
            let err = Config::from_toml(&format!("[limits]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{toml}: {err}");
        }
        // Off switches are fine.
        let ok = Config::from_toml(
            "[limits]\nregister_rate = 0\nregister_burst = 0\nblock_s = 0\nauth_failures = 0\nmax_bindings_per_source = 0\nexempt = []\naction = \"drop\"\n",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let s = ok.unwrap().limits.settings();
        assert!(!s.reject && s.rates[0].per_s == 0 && s.exempt.is_empty());
    }
}
