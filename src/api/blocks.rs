//! `GET /v1/blocks` and `DELETE /v1/blocks/<address>`: sources blocked for
//! repeated authentication failures (`limits.block_s`), gathered from every
//! core the way `GET /v1/calls` gathers dialogs.

use std::net::IpAddr;

use serde_json::json;

use super::{ApiResponse, Service};
use crate::limits::BlockInfo;
use crate::runtime::Command;

impl Service {
    /// Asks every core; a core that does not answer within a second is
    /// reported as missing rather than waited for.
    fn ask_blocks(&self, lift: Option<IpAddr>) -> (Vec<BlockInfo>, usize) {
        let (mut all, missing) = self.ask_cores(|reply| Command::Blocks { lift, reply });
        all.sort_by(|a, b| {
            b.remaining_s
                .cmp(&a.remaining_s)
                .then(a.source.cmp(&b.source))
        });
        (all, missing)
    }

    /// `GET /v1/blocks`: every block in force, longest remaining first.
    pub(super) fn blocks(&self) -> ApiResponse {
        let (all, missing) = self.ask_blocks(None);
        ApiResponse::json(
            200,
            json!({ "total": all.len(), "cores_missing": missing, "blocks": all }),
        )
    }

    /// `DELETE /v1/blocks/<address>`: lifts the address's blocks on every
    /// core (an IPv6 address lifts its /64's).
    pub(super) fn unblock(&self, addr: &str) -> ApiResponse {
        let text = crate::sip::scan::unescape(addr).map_or_else(
            || addr.to_owned(),
            |b| String::from_utf8_lossy(&b).into_owned(),
        );
        let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() else {
            return ApiResponse::json(
                400,
                json!({"error": "not an IP address, e.g. 192.0.2.7 or 2001:db8::1", "field": "address"}),
            );
        };
        let (lifted, missing) = self.ask_blocks(Some(ip));
        if lifted.is_empty() {
            return ApiResponse::error(404, "no block for this address");
        }
        ApiResponse::json(200, json!({ "lifted": lifted, "cores_missing": missing }))
    }
}
