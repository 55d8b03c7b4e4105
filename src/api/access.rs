//! Who may call the API: `api.allow` and the trusted clients of
//! `api.clients`. Kept apart from [`super::Service`] because SIGHUP swaps it
//! while requests are being answered ([`crate::reload`]): a request takes
//! one [`Access`] at its start and keeps it to its end, so it is decided
//! wholly by the old or wholly by the new settings.

use std::net::IpAddr;

use super::ApiResponse;
use crate::addr::Cidr;
use crate::config::ApiConfig;

/// One trusted application server.
pub(super) struct Client {
    pub name: String,
    token: String,
    allow: Vec<Cidr>,
}

/// `api.allow` and `api.clients`, parsed.
pub(super) struct Access {
    allow: Vec<Cidr>,
    clients: Vec<Client>,
}

fn nets(v: &[String]) -> Vec<Cidr> {
    // Config::check has refused unparsable networks already.
    v.iter().filter_map(|n| Cidr::parse(n)).collect()
}

impl Access {
    pub fn new(api: &ApiConfig) -> Access {
        Access {
            allow: nets(&api.allow),
            clients: api
                .clients
                .iter()
                .map(|c| Client {
                    name: c.name.clone(),
                    token: c.token.clone(),
                    allow: nets(&c.allow),
                })
                .collect(),
        }
    }

    /// `api.allow`: may this source call at all?
    pub fn source_allowed(&self, source: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(source))
    }

    /// Bearer token → trusted client (seed 000's trusted application servers).
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        source: IpAddr,
    ) -> Result<&Client, ApiResponse> {
        let unauthorized = || {
            let mut r = ApiResponse::error(401, "missing or unknown bearer token");
            r.headers
                .push(("WWW-Authenticate", "Bearer realm=\"tether\"".into()));
            r
        };
        let token = authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(unauthorized)?;
        let client = self
            .clients
            .iter()
            .find(|c| constant_time_eq(c.token.as_bytes(), token.as_bytes()))
            .ok_or_else(unauthorized)?;
        if !client.allow.is_empty() && !client.allow.iter().any(|c| c.contains(source)) {
            return Err(ApiResponse::error(
                403,
                "this client may not call from this address (api.clients.allow)",
            ));
        }
        Ok(client)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
