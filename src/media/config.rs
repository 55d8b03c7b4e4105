//! `[media]`: when calls are anchored, which ports the relay uses, and how
//! it learns and forgets the parties' real addresses.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::config::ConfigError;

/// When the proxy anchors a call's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// When a party looks NATed (its SDP address is not where its
    /// signalling comes from).
    Nat,
    Always,
    Never,
}

/// The `[media]` section as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// "nat", "always" or "never".
    pub mode: String,
    /// Relay ports, "first-last", split evenly over the cores.
    pub ports: String,
    /// The address written into rewritten SDP; empty = derived (see `resolve_address`).
    pub address: String,
    /// A latched party moves to a new source only after this much silence
    /// from the old one (ms).
    pub relatch_ms: u64,
    /// A call without media in either direction this long is ended (s); 0 = never.
    pub timeout_s: u64,
    /// A freed port pair is reused only after this long (ms).
    pub quarantine_ms: u64,
    /// rtpengine `ng` control protocol listen address; empty = off.
    pub ng_listen: String,
    /// While media flows, a worker lets packets gather this long between
    /// rounds (µs): fewer wake-ups per packet for that much latency.
    pub batch_wait_us: u64,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            mode: "nat".into(),
            ports: "30000-39999".into(),
            address: String::new(),
            relatch_ms: 2000,
            timeout_s: 60,
            quarantine_ms: 5000,
            ng_listen: String::new(),
            batch_wait_us: 200,
        }
    }
}

impl MediaSection {
    /// Range checks; errors name the key and the fix.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.mode()?;
        self.port_range()?;
        if !self.address.is_empty() && self.address.parse::<IpAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "media.address",
                fix: format!(
                    "{:?} is not an IP address; write e.g. \"203.0.113.10\"",
                    self.address
                ),
            });
        }
        self.ng_addr()?;
        if !(100..=600_000).contains(&self.relatch_ms) {
            return Err(ConfigError::Invalid {
                key: "media.relatch_ms",
                fix: format!("{} is out of range; use 100..=600000", self.relatch_ms),
            });
        }
        if self.timeout_s > 86_400 {
            return Err(ConfigError::Invalid {
                key: "media.timeout_s",
                fix: format!("{} is out of range; use 0 (never) ..=86400", self.timeout_s),
            });
        }
        if self.batch_wait_us > 5000 {
            return Err(ConfigError::Invalid {
                key: "media.batch_wait_us",
                fix: format!(
                    "{} is out of range; use 0 (off) ..=5000 µs (it adds that much latency)",
                    self.batch_wait_us
                ),
            });
        }
        if self.quarantine_ms > 600_000 {
            return Err(ConfigError::Invalid {
                key: "media.quarantine_ms",
                fix: format!("{} is out of range; use 0..=600000", self.quarantine_ms),
            });
        }
        Ok(())
    }

    pub fn mode(&self) -> Result<Mode, ConfigError> {
        match self.mode.as_str() {
            "nat" => Ok(Mode::Nat),
            "always" => Ok(Mode::Always),
            "never" => Ok(Mode::Never),
            other => Err(ConfigError::Invalid {
                key: "media.mode",
                fix: format!("{other:?}: write \"nat\", \"always\" or \"never\""),
            }),
        }
    }

    /// The port range, first even port to last port, inclusive.
    pub fn port_range(&self) -> Result<(u16, u16), ConfigError> {
        let bad = || {
            ConfigError::Invalid {
            key: "media.ports",
            fix: format!(
                "{:?}: write \"first-last\" within 1024-65535 with room for at least two pairs, e.g. \"30000-39999\"",
                self.ports
            ),
        }
        };
        let (a, b) = self.ports.split_once('-').ok_or_else(bad)?;
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        let first = a + (a & 1);
        if a < 1024 || b < first.saturating_add(3) {
            return Err(bad());
        }
        Ok((first, b))
    }

    pub fn ng_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.ng_listen.is_empty() {
            return Ok(None);
        }
        self.ng_listen
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "media.ng_listen",
                fix: format!(
                    "{:?} is not ip:port; write e.g. \"127.0.0.1:2223\"",
                    self.ng_listen
                ),
            })
    }

    /// The RTP port pairs (first port of each) core `core` of `cores` owns.
    pub fn core_pairs(&self, core: usize, cores: usize) -> Vec<u16> {
        let Ok((first, last)) = self.port_range() else {
            return Vec::new();
        };
        let pairs: Vec<u16> = (first..last).step_by(2).collect();
        let cores = cores.max(1);
        let per = pairs.len() / cores;
        let start = core * per;
        pairs.get(start..start + per).unwrap_or_default().to_vec()
    }
}

/// The address the relay names in SDP: `media.address`, else the proxy's
/// advertised host when it is an address, else the first listen address
/// when it is not a wildcard, else loopback (with a warning at start).
pub fn resolve_address(
    media: &MediaSection,
    advertise: &str,
    listen: &[SocketAddr],
) -> (IpAddr, bool) {
    if let Ok(ip) = media.address.parse() {
        return (ip, true);
    }
    match crate::sip::uri::split_host_port(advertise) {
        Ok((crate::sip::uri::Host::V4(ip), _)) => return (ip.into(), true),
        Ok((crate::sip::uri::Host::V6(ip), _)) => return (ip.into(), true),
        _ => {}
    }
    match listen.first() {
        Some(a) if !a.ip().is_unspecified() => (a.ip(), true),
        _ => (IpAddr::from([127, 0, 0, 1]), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_split_over_cores() {
        let m = MediaSection::default();
        m.check().unwrap();
        assert_eq!(m.mode().unwrap(), Mode::Nat);
        let a = m.core_pairs(0, 2);
        let b = m.core_pairs(1, 2);
        assert_eq!(a.len(), 2500);
        assert_eq!(b.len(), 2500);
        assert_eq!(a[0], 30000);
        assert_eq!(b[0], 35000);
        assert!(a.iter().chain(&b).all(|p| p % 2 == 0));
    }

    #[test]
    fn errors_name_the_key() {
        for (f, key) in [
            (
                MediaSection {
                    mode: "sometimes".into(),
                    ..Default::default()
                },
                "media.mode",
            ),
            (
                MediaSection {
                    ports: "40000".into(),
                    ..Default::default()
                },
                "media.ports",
            ),
            (
                MediaSection {
                    ports: "100-200".into(),
                    ..Default::default()
                },
                "media.ports",
            ),
            (
                MediaSection {
                    ports: "40000-40001".into(),
                    ..Default::default()
                },
                "media.ports",
            ),
            (
                MediaSection {
                    address: "relay.example".into(),
                    ..Default::default()
                },
                "media.address",
            ),
            (
                MediaSection {
                    ng_listen: "2223".into(),
                    ..Default::default()
                },
                "media.ng_listen",
            ),
            (
                MediaSection {
                    relatch_ms: 0,
                    ..Default::default()
                },
                "media.relatch_ms",
            ),
        ] {
            match f.check() {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn address_falls_back_sensibly() {
        let m = MediaSection::default();
        let l: Vec<SocketAddr> = vec!["0.0.0.0:5060".parse().unwrap()];
        assert_eq!(
            resolve_address(&m, "", &l),
            ("127.0.0.1".parse().unwrap(), false)
        );
        assert_eq!(
            resolve_address(&m, "198.51.100.7:5060", &l).0,
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let l2: Vec<SocketAddr> = vec!["192.0.2.1:5060".parse().unwrap()];
        assert_eq!(
            resolve_address(&m, "", &l2),
            ("192.0.2.1".parse().unwrap(), true)
        );
        let m2 = MediaSection {
            address: "192.0.2.9".into(),
            ..Default::default()
        };
        assert_eq!(
            resolve_address(&m2, "", &l).0,
            "192.0.2.9".parse::<IpAddr>().unwrap()
        );
    }
}
