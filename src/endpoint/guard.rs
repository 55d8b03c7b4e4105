//! The limits at the front door (`crate::limits`): a datagram is let in,
//! dropped or answered `503` before it is parsed, and a request that
//! failed to authenticate is counted against its source.

use std::net::SocketAddr;

use super::Endpoint;
use crate::limits::Admit;
use crate::sip::writer;

impl Endpoint {
    /// Whether a datagram from `src` goes on to [`Endpoint::handle`]; one
    /// that does not is counted as received and dropped or answered here.
    pub(super) fn admit(&mut self, datagram: &[u8], src: SocketAddr, local: u8, now: u64) -> bool {
        match self.guard.admit(datagram, src, now) {
            Admit::Pass => true,
            Admit::Drop => {
                self.counters.received += 1;
                false
            }
            Admit::Reject { retry_after } => {
                self.counters.received += 1;
                let retry = crate::sip::writer::Decimal::new(retry_after);
                // The transaction ids from a lenient scan, as for a 400:
                // the full parse is what the limit saves.
                if writer::salvage_response(
                    &mut self.out,
                    datagram,
                    503,
                    "Service Unavailable",
                    Some(("Retry-After", retry.as_str())),
                ) {
                    self.transmits.push(&self.out, src, local);
                }
                false
            }
        }
    }

    /// Authentication failures so far (digest and token refusals of the
    /// registrar, digest refusals of the proxy): a change across one
    /// datagram means it failed.
    pub(super) fn auth_failures(&self) -> u64 {
        self.registrar.stats.auth_failures + self.proxy.stats.auth_failed
    }

    /// How many more bindings `src` may add here, told to the registrar
    /// before it runs a REGISTER from there.
    pub(super) fn set_source_room(&mut self, src: SocketAddr) {
        let room = self.guard.binding_room(src.ip());
        self.registrar.set_source_room(room);
    }
}
