//! `[auth]`, `[auth.http]`, `[auth.token]`: who may register, and the checks
//! of those keys (errors name the key and the fix).

use std::sync::Arc;

use serde::Deserialize;

use crate::config::ConfigError;

/// How a REGISTER without a valid capability token is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may register any AOR.
    None,
    /// SIP digest against `auth.credentials` (401 challenge).
    Digest,
    /// A new registration is POSTed to `auth.http.url`, which decides.
    Http,
}

/// What a callout that got no usable answer (none within
/// `auth.http.timeout_ms`, a 5xx, the queue full) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// `503` with `Retry-After`: the device is not at fault, so it is told
    /// to come back rather than that it is forbidden (many UAs stop
    /// registering for good, or until the user acts, on a 403).
    Reject,
    /// Register anyway (availability over strictness); not cached, so the
    /// next refresh asks again.
    Accept,
}

/// `auth.mode = "http"`'s settings, as the cores use them.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    pub url: Arc<str>,
    pub timeout_ms: u64,
    /// A binding authorized by the service is refreshed without asking for
    /// this long after it was authorized (s); 0 = always ask.
    pub cache_s: u64,
    pub on_timeout: OnTimeout,
    /// REGISTERs one core keeps waiting on the service at most.
    pub max_pending: usize,
}

/// `[auth]`: who may register.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// "none", "digest" or "http"; unset = "digest" when `enabled = true`,
    /// else "none".
    pub mode: Option<String>,
    /// The older switch: `true` means `mode = "digest"`.
    pub enabled: Option<bool>,
    pub realm: String,
    /// File of HA1 hashes: `username:realm:md5_ha1[:sha256_ha1]` per line.
    pub credentials: Option<std::path::PathBuf>,
    /// Seconds a nonce stays fresh; older ones get `stale=true`.
    pub nonce_ttl: u64,
    /// Challenges offered, in order of preference: "SHA-256", "MD5".
    pub algorithms: Vec<String>,
    pub http: AuthHttpSection,
    pub token: AuthTokenSection,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            enabled: None,
            realm: "tether".into(),
            credentials: None,
            nonce_ttl: 300,
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            http: AuthHttpSection::default(),
            token: AuthTokenSection::default(),
        }
    }
}

/// `[auth.http]`: registration authorized by an HTTP callback (seed 003).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthHttpSection {
    pub url: String,
    pub timeout_ms: u64,
    pub cache_s: u64,
    /// "reject" (503 + Retry-After) or "accept".
    pub on_timeout: String,
    pub max_pending: usize,
}

impl Default for AuthHttpSection {
    fn default() -> Self {
        AuthHttpSection {
            url: String::new(),
            timeout_ms: 2000,
            cache_s: 3600,
            on_timeout: "reject".into(),
            max_pending: 1024,
        }
    }
}

/// `[auth.token]`: capability tokens (seed 002).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthTokenSection {
    /// HS256 secrets; the first is current, the others still accepted.
    /// Empty = Bearer tokens are not checked here (in mode "http" they are
    /// passed to the service).
    pub secrets: Vec<String>,
}

/// Shortest token secret: RFC 7518 §3.2 wants an HS256 key at least as
/// long as the hash (32 bytes).
const MIN_SECRET: usize = 32;

/// A callout must end well before the device's own transaction does
/// (RFC 3261 Timer F, 64·T1 = 32 s).
const MAX_TIMEOUT_MS: u64 = 30_000;

impl AuthConfig {
    /// The mode these keys ask for (valid once [`AuthConfig::check`] passed).
    pub fn mode(&self) -> AuthMode {
        match self.mode.as_deref() {
            Some("digest") => AuthMode::Digest,
            Some("http") => AuthMode::Http,
            Some(_) => AuthMode::None,
            None if self.enabled == Some(true) => AuthMode::Digest,
            None => AuthMode::None,
        }
    }

    /// `auth.mode = "http"`'s settings, when that is the mode.
    pub fn http(&self) -> Option<HttpAuth> {
        (self.mode() == AuthMode::Http).then(|| HttpAuth {
            url: self.http.url.as_str().into(),
            timeout_ms: self.http.timeout_ms,
            cache_s: self.http.cache_s,
            on_timeout: if self.http.on_timeout == "accept" {
                OnTimeout::Accept
            } else {
                OnTimeout::Reject
            },
            max_pending: self.http.max_pending,
        })
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, fix: String| Err(ConfigError::Invalid { key, fix });
        let mode = match self.mode.as_deref() {
            None | Some("none" | "digest" | "http") => self.mode(),
            Some(m) => {
                return bad(
                    "auth.mode",
                    format!("{m:?}: use \"none\", \"digest\" or \"http\""),
                )
            }
        };
        match (self.enabled, self.mode.as_deref()) {
            (Some(true), Some(m @ ("none" | "http"))) | (Some(false), Some(m @ "digest")) => {
                return bad(
                    "auth.mode",
                    format!(
                        "auth.mode = {m:?} and auth.enabled = {} disagree; auth.enabled is the \
                         older key (true = \"digest\"): remove it and keep auth.mode",
                        self.enabled == Some(true)
                    ),
                );
            }
            _ => {}
        }
        if mode == AuthMode::Digest && self.credentials.is_none() {
            return bad(
                "auth.credentials",
                "auth.mode = \"digest\" (or auth.enabled = true) needs a credentials file \
                 (username:realm:md5_ha1[:sha256_ha1] per line)"
                    .into(),
            );
        }
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|a| crate::sip::digest::Algorithm::parse(Some(a)).is_none())
        {
            return bad(
                "auth.algorithms",
                format!(
                    "{:?}: list one or both of \"SHA-256\" and \"MD5\"",
                    self.algorithms
                ),
            );
        }
        if self.realm.is_empty() || self.realm.contains('"') {
            return bad(
                "auth.realm",
                "use a non-empty realm without double quotes".into(),
            );
        }
        if mode == AuthMode::Http {
            self.check_http()?;
        }
        if let Some(i) = self.token.secrets.iter().position(|s| s.len() < MIN_SECRET) {
            return bad(
                "auth.token.secrets",
                format!(
                    "secret number {} is {} bytes; HS256 wants at least {MIN_SECRET} random \
                     bytes (e.g. `openssl rand -base64 32`)",
                    i + 1,
                    self.token.secrets[i].len()
                ),
            );
        }
        Ok(())
    }

    fn check_http(&self) -> Result<(), ConfigError> {
        let h = &self.http;
        let bad = |key, fix: String| Err(ConfigError::Invalid { key, fix });
        if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
            return bad(
                "auth.http.url",
                format!(
                    "{:?}: auth.mode = \"http\" needs the authorization service's URL, e.g. \
                     \"http://127.0.0.1:9000/authorize\"",
                    h.url
                ),
            );
        }
        if h.timeout_ms == 0 || h.timeout_ms > MAX_TIMEOUT_MS {
            return bad(
                "auth.http.timeout_ms",
                format!(
                    "{} is out of range; use 1..={MAX_TIMEOUT_MS} (the device's REGISTER \
                     transaction gives up after 32 s)",
                    h.timeout_ms
                ),
            );
        }
        if !matches!(h.on_timeout.as_str(), "reject" | "accept") {
            return bad(
                "auth.http.on_timeout",
                format!("{:?}: use \"reject\" or \"accept\"", h.on_timeout),
            );
        }
        if h.max_pending == 0 {
            return bad(
                "auth.http.max_pending",
                "use at least 1 waiting REGISTER per core".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::registrar::AuthMode;

    fn err(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn mode_defaults_and_the_older_key() {
        let mode = |t: &str| Config::from_toml(t).unwrap().auth.mode();
        assert_eq!(mode(""), AuthMode::None);
        assert_eq!(mode("[auth]\nenabled = false\n"), AuthMode::None);
        let creds = "credentials = \"/dev/null\"\n";
        assert_eq!(
            mode(&format!("[auth]\nenabled = true\n{creds}")),
            AuthMode::Digest
        );
        assert_eq!(
            mode(&format!(
                "[auth]\nenabled = true\nmode = \"digest\"\n{creds}"
            )),
            AuthMode::Digest
        );
        assert_eq!(
            mode("[auth]\nmode = \"http\"\n[auth.http]\nurl = \"http://127.0.0.1:1/a\"\n"),
            AuthMode::Http
        );
    }

    #[test]
    fn conflicts_and_bad_values_name_key_and_fix() {
        let e = err("[auth]\nenabled = true\nmode = \"http\"\n");
        assert!(
            e.contains("auth.mode") && e.contains("auth.enabled") && e.contains("remove"),
            "{e}"
        );
        let e = err("[auth]\nenabled = false\nmode = \"digest\"\ncredentials = \"/x\"\n");
        assert!(e.contains("auth.enabled"), "{e}");
        assert!(err("[auth]\nmode = \"ldap\"\n").contains("\"http\""));
        assert!(err("[auth]\nmode = \"digest\"\n").contains("auth.credentials"));
        let e = err("[auth]\nmode = \"http\"\n");
        assert!(e.contains("auth.http.url") && e.contains("http://"), "{e}");
        let http = "[auth]\nmode = \"http\"\n[auth.http]\nurl = \"http://127.0.0.1:1/a\"\n";
        assert!(err(&format!("{http}timeout_ms = 0\n")).contains("auth.http.timeout_ms"));
        assert!(err(&format!("{http}timeout_ms = 60000\n")).contains("32 s"));
        assert!(err(&format!("{http}on_timeout = \"maybe\"\n")).contains("auth.http.on_timeout"));
        assert!(err(&format!("{http}max_pending = 0\n")).contains("auth.http.max_pending"));
        let e = err("[auth.token]\nsecrets = [\"short\"]\n");
        assert!(
            e.contains("auth.token.secrets") && e.contains("openssl"),
            "{e}"
        );
        // Unknown keys in the new sections are named too.
        assert!(err("[auth.http]\nuri = \"x\"\n").contains("uri"));
    }

    #[test]
    fn http_settings_as_the_cores_take_them() {
        let c = Config::from_toml(
            "[auth]\nmode = \"http\"\n[auth.http]\nurl = \"http://127.0.0.1:1/a\"\n\
             cache_s = 5\non_timeout = \"accept\"\n",
        )
        .unwrap();
        let h = c.auth.http().unwrap();
        assert_eq!((h.cache_s, h.timeout_ms, h.max_pending), (5, 2000, 1024));
        assert_eq!(h.on_timeout, crate::registrar::OnTimeout::Accept);
        assert!(Config::default().auth.http().is_none());
    }
}
