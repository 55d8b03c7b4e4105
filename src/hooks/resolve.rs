//! Name resolution for the side threads' HTTP clients. ureq's default
//! resolver runs every lookup, for every request, on a new thread when a
//! timeout is set (so the lookup can be abandoned), even for an IP address
//! and even when a pooled connection is then reused: a thread spawn per
//! webhook, which measured as most of a POST's CPU (BENCHMARKS.md,
//! "Webhooks"). Here an IP address needs no lookup, and a host name is
//! looked up once a minute (through ureq's resolver, with its timeout).
//!
//! Uses ureq's `unversioned` resolver interface, which does not follow
//! semver: pinned by Cargo.lock, re-check on a ureq upgrade.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are reused.
const TTL: Duration = Duration::from_secs(60);
/// Host names remembered at once (webhook URLs are few; this only bounds
/// a misconfiguration).
const MAX_NAMES: usize = 64;

/// IP addresses as they are; host names cached for [`TTL`].
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    names: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(authority) = uri.authority() else {
            return self.inner.resolve(uri, config, timeout);
        };
        let port = authority
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host = authority.host();
        // `[::1]` in a URL is `::1` to the parser.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let mut out = self.empty();
            out.push(SocketAddr::new(ip, port));
            return Ok(out);
        }
        let key = format!("{host}:{port}");
        if let Some((at, addrs)) = self.names.lock().get(&key) {
            if at.elapsed() < TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut names = self.names.lock();
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().unwrap();
        let cfg = Config::default();
        CachingResolver::default()
            .resolve(&uri, &cfg, NextTimeout::default())
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn addresses_need_no_lookup() {
        assert_eq!(
            resolve("http://127.0.0.1:8080/ev"),
            ["127.0.0.1:8080".parse().unwrap()]
        );
        assert_eq!(resolve("http://[::1]/ev"), ["[::1]:80".parse().unwrap()]);
        assert_eq!(
            resolve("https://192.0.2.1/ev"),
            ["192.0.2.1:443".parse().unwrap()]
        );
    }
}
