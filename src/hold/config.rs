//! `[push]`: how long a call for a sleeping device is held, where the
//! wake-ups go, and the keys of the bridge token a woken device calls back
//! with.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::ConfigError;

/// The `[push]` section as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PushSection {
    /// How long an INVITE waits for the woken device to call back (ms).
    pub hold_ms: u64,
    /// Push gateway per RFC 8599 `pn-provider` value (matched without
    /// regard to case), as an `http://` or `https://` URL. A device whose
    /// provider has no gateway here cannot be woken by push.
    pub gateways: BTreeMap<String, String>,
    /// Each POST to a gateway gets this long to answer (ms).
    pub timeout_ms: u64,
    /// This node's id, sealed into every bridge token, so that a cluster
    /// can tell which node holds the call.
    pub node: u32,
    /// The bridge URI is `sip:<bridge_prefix><token>@<host>`.
    pub bridge_prefix: String,
    /// Token keys, the first seals, all open (rotation with overlap).
    /// Empty: a random key drawn at each start, which suits one node (a
    /// restart forgets the held calls anyway); a cluster, or a node that
    /// must accept its peers' tokens, lists keys shared by all.
    pub bridge_keys: Vec<BridgeKey>,
    /// How long a bridge token opens (s); unset = `hold_ms`, rounded up.
    pub token_ttl_s: Option<u64>,
    /// Calls held at once per core; more are answered as if the device
    /// could not be woken.
    pub max_held: usize,
}

/// One `[[push.bridge_keys]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BridgeKey {
    /// Written into each token so that the right key opens it.
    pub id: u8,
    /// 32 bytes as 64 hex characters (e.g. `openssl rand -hex 32`).
    pub key: String,
}

impl Default for PushSection {
    fn default() -> Self {
        PushSection {
            hold_ms: 30_000,
            gateways: BTreeMap::new(),
            timeout_ms: 5000,
            node: 1,
            bridge_prefix: "bridge-".into(),
            bridge_keys: Vec::new(),
            token_ttl_s: None,
            max_held: 100_000,
        }
    }
}

/// Most keys listed at once: rotation needs two or three.
const MAX_KEYS: usize = 16;
/// Longest prefix: it shares the URI user part with a 70-character token.
const MAX_PREFIX: usize = 32;

impl PushSection {
    /// Range checks; errors name the key and the fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1000..=180_000).contains(&self.hold_ms) {
            return Err(ConfigError::Invalid {
                key: "push.hold_ms",
                fix: format!(
                    "{} is out of range; use 1000..=180000 (a proxy before tether gives up on a ringing call after 180 s, RFC 3261 Timer C)",
                    self.hold_ms
                ),
            });
        }
        if !(100..=60_000).contains(&self.timeout_ms) || self.timeout_ms >= self.hold_ms {
            return Err(ConfigError::Invalid {
                key: "push.timeout_ms",
                fix: format!(
                    "{} is out of range; use 100..=60000 and below push.hold_ms ({}): a push answered after the hold ends is wasted",
                    self.timeout_ms, self.hold_ms
                ),
            });
        }
        let mut seen: Vec<String> = Vec::new();
        for (name, url) in &self.gateways {
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(ConfigError::Invalid {
                    key: "push.gateways",
                    fix: format!(
                        "{name:?} is not a pn-provider name; use the value devices send, e.g. apns, fcm, webpush"
                    ),
                });
            }
            let lower = name.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(ConfigError::Invalid {
                    key: "push.gateways",
                    fix: format!(
                        "{name:?} is listed twice (names are matched without regard to case); keep one"
                    ),
                });
            }
            seen.push(lower);
            if !valid_http_url(url) {
                return Err(ConfigError::Invalid {
                    key: "push.gateways",
                    fix: format!(
                        "{name} = {url:?} is not a URL; write e.g. \"http://127.0.0.1:9000/push\""
                    ),
                });
            }
        }
        if self.bridge_prefix.is_empty()
            || self.bridge_prefix.len() > MAX_PREFIX
            || !self
                .bridge_prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
        {
            return Err(ConfigError::Invalid {
                key: "push.bridge_prefix",
                fix: format!(
                    "{:?}: use 1 to {MAX_PREFIX} letters, digits or - . _ ~ that no user name starts with, e.g. \"bridge-\"",
                    self.bridge_prefix
                ),
            });
        }
        self.keys()?;
        if let Some(ttl) = self.token_ttl_s {
            let min = self.hold_ms.div_ceil(1000);
            if ttl < min || ttl > 86_400 {
                return Err(ConfigError::Invalid {
                    key: "push.token_ttl_s",
                    fix: format!(
                        "{ttl} is out of range; use {min} (push.hold_ms, in seconds) ..=86400, or leave it out"
                    ),
                });
            }
        }
        if !(1..=crate::timer::MAX_INDEX as usize).contains(&self.max_held) {
            return Err(ConfigError::Invalid {
                key: "push.max_held",
                fix: format!(
                    "{} is out of range; use 1..={}",
                    self.max_held,
                    crate::timer::MAX_INDEX
                ),
            });
        }
        Ok(())
    }

    /// The bridge keys, decoded, in the order listed (the first seals).
    pub fn keys(&self) -> Result<Vec<(u8, [u8; 32])>, ConfigError> {
        if self.bridge_keys.len() > MAX_KEYS {
            return Err(ConfigError::Invalid {
                key: "push.bridge_keys",
                fix: format!(
                    "{} keys listed; keep at most {MAX_KEYS} (the current one and those still being rotated out)",
                    self.bridge_keys.len()
                ),
            });
        }
        let mut out: Vec<(u8, [u8; 32])> = Vec::with_capacity(self.bridge_keys.len());
        for k in &self.bridge_keys {
            if out.iter().any(|(id, _)| *id == k.id) {
                return Err(ConfigError::Invalid {
                    key: "push.bridge_keys.id",
                    fix: format!("id {} is listed twice; give each key its own id", k.id),
                });
            }
            let Some(key) = decode_hex_key(&k.key) else {
                return Err(ConfigError::Invalid {
                    key: "push.bridge_keys.key",
                    fix: format!(
                        "the key of id {} is not 64 hex characters; make one with `openssl rand -hex 32`",
                        k.id
                    ),
                });
            };
            out.push((k.id, key));
        }
        Ok(out)
    }

    /// The gateway URL for a device's `pn-provider`, if one is configured.
    pub fn gateway(&self, provider: &str) -> Option<&str> {
        self.gateways
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(provider))
            .map(|(_, url)| url.as_str())
    }

    /// How long a bridge token opens (s).
    pub fn token_ttl_s(&self) -> u64 {
        self.token_ttl_s.unwrap_or(self.hold_ms.div_ceil(1000))
    }
}

/// RFC 3261 `token` characters (a `pn-provider` value is one).
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// `http://host…` or `https://host…` with a host and no whitespace.
fn valid_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) => {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty()
                && !host.starts_with(':')
                && !url
                    .bytes()
                    .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
        }
        None => false,
    }
}

/// 64 hex characters (either case) to 32 bytes.
fn decode_hex_key(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *o = (hi << 4 | lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const KEY_B: &str = "FFEEDDCCBBAA99887766554433221100ffeeddccbbaa99887766554433221100";

    fn key(id: u8, key: &str) -> BridgeKey {
        BridgeKey {
            id,
            key: key.into(),
        }
    }

    #[test]
    fn defaults_check() {
        let p = PushSection::default();
        p.check().unwrap();
        assert_eq!(p.token_ttl_s(), 30);
        assert!(p.keys().unwrap().is_empty());
        assert_eq!(p.gateway("apns"), None);
    }

    #[test]
    fn parses_from_toml_with_gateways_and_keys() {
        let text = format!(
            "[push]\nhold_ms = 20500\nnode = 7\n\
             [push.gateways]\napns = \"http://127.0.0.1:9000/push\"\nFCM = \"https://push.example/fcm\"\n\
             [[push.bridge_keys]]\nid = 2\nkey = \"{KEY_B}\"\n\
             [[push.bridge_keys]]\nid = 1\nkey = \"{KEY_A}\"\n"
        );
        let cfg = crate::config::Config::from_toml(&text).unwrap();
        let p = &cfg.push;
        assert_eq!(p.node, 7);
        assert_eq!(p.token_ttl_s(), 21);
        assert_eq!(p.gateway("APNS"), Some("http://127.0.0.1:9000/push"));
        assert_eq!(p.gateway("fcm"), Some("https://push.example/fcm"));
        assert_eq!(p.gateway("webpush"), None);
        let keys = p.keys().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0, 2);
        assert_eq!(keys[0].1[0], 0xff);
        assert_eq!(keys[0].1[31], 0x00);
        assert_eq!(keys[1].0, 1);
        assert_eq!(keys[1].1[31], 0x1f);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = crate::config::Config::from_toml("[push]\nhold = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hold"), "{err}");
        let err = crate::config::Config::from_toml(
            "[[push.bridge_keys]]\nid = 1\nkey = \"00\"\nsecret = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secret"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let d = PushSection::default;
        let gw = |name: &str, url: &str| {
            let mut m = BTreeMap::new();
            m.insert(name.to_owned(), url.to_owned());
            m
        };
        let mut twice = gw("apns", "http://a/");
        twice.insert("APNS".into(), "http://b/".into());
        for (p, key) in [
            (
                PushSection {
                    hold_ms: 500,
                    ..d()
                },
                "push.hold_ms",
            ),
            (
                PushSection {
                    hold_ms: 200_000,
                    ..d()
                },
                "push.hold_ms",
            ),
            (
                PushSection {
                    timeout_ms: 30_000,
                    ..d()
                },
                "push.timeout_ms",
            ),
            (
                PushSection {
                    timeout_ms: 10,
                    ..d()
                },
                "push.timeout_ms",
            ),
            (
                PushSection {
                    gateways: gw("apns", "127.0.0.1:9000/push"),
                    ..d()
                },
                "push.gateways",
            ),
            (
                PushSection {
                    gateways: gw("apns", "http:///push"),
                    ..d()
                },
                "push.gateways",
            ),
            (
                PushSection {
                    gateways: gw("a pns", "http://127.0.0.1/"),
                    ..d()
                },
                "push.gateways",
            ),
            (
                PushSection {
                    gateways: twice,
                    ..d()
                },
                "push.gateways",
            ),
            (
                PushSection {
                    bridge_prefix: String::new(),
                    ..d()
                },
                "push.bridge_prefix",
            ),
            (
                PushSection {
                    bridge_prefix: "bridge@".into(),
                    ..d()
                },
                "push.bridge_prefix",
            ),
            (
                PushSection {
                    bridge_keys: vec![key(1, "abc")],
                    ..d()
                },
                "push.bridge_keys.key",
            ),
            (
                PushSection {
                    bridge_keys: vec![key(1, &KEY_A.replace('0', "g"))],
                    ..d()
                },
                "push.bridge_keys.key",
            ),
            (
                PushSection {
                    bridge_keys: vec![key(1, KEY_A), key(1, KEY_B)],
                    ..d()
                },
                "push.bridge_keys.id",
            ),
            (
                PushSection {
                    bridge_keys: (0..=MAX_KEYS as u8).map(|i| key(i, KEY_A)).collect(),
                    ..d()
                },
                "push.bridge_keys",
            ),
            (
                PushSection {
                    token_ttl_s: Some(29),
                    ..d()
                },
                "push.token_ttl_s",
            ),
            (PushSection { max_held: 0, ..d() }, "push.max_held"),
        ] {
            match p.check() {
                Err(ConfigError::Invalid { key: k, fix }) => {
                    assert_eq!(k, key, "{fix}");
                    assert!(!fix.is_empty());
                }
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn config_check_reaches_the_push_section() {
        let err = crate::config::Config::from_toml("[push]\nbridge_prefix = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("push.bridge_prefix"), "{err}");
    }

    #[test]
    fn hex_keys_decode_strictly() {
        assert_eq!(decode_hex_key(KEY_A).unwrap()[1], 1);
        assert!(decode_hex_key(&KEY_A[..63]).is_none());
        assert!(decode_hex_key(&format!("{}+1", &KEY_A[..62])).is_none());
        assert!(decode_hex_key("é".repeat(32).as_str()).is_none());
    }
}
