//! The endpoints as servers: each request from the server (keepalive
//! OPTIONS, NOTIFY, INVITE) is answered statelessly, so a retransmitted
//! request gets the same answer again; dead endpoints and ACKs get none.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Population, MAX_DATAGRAM};
use crate::loadgen::{device_auth, message};
use crate::sip::{self, Method};

impl Population {
    /// Answers a request from the server, statelessly: every
    /// retransmission gets the same answer.
    pub(super) fn on_request(
        &mut self,
        now: u64,
        socket: usize,
        local: Ipv4Addr,
        from: SocketAddrV4,
        m: &sip::Message<'_>,
        method: Method<'_>,
    ) {
        self.tally.record_request(method.as_str());
        // Which endpoint: the address and socket it was sent to.
        let idx = super::endpoint_at(self.cfg.source_base, self.ports.len(), socket, local);
        if let Some(e) = self.eps.get_mut(idx as usize) {
            e.prompted = true;
            self.nodes.prompted(idx, from, now / 1000);
        }
        if self.cfg.answer == 0 || idx < self.dead_below || method == Method::Ack {
            return;
        }
        // `--answer 401`: challenge, then 200 for valid credentials (403
        // otherwise); other codes are answered as they are.
        let code = match self.cfg.answer {
            401 => device_auth::verdict(m, &self.cfg.device_password),
            c => c,
        };
        let reason = message::reason(code);
        let mut w =
            sip::writer::response_to(&mut self.scratch, m, code, reason, Some("lgua"), None);
        if code == 401 {
            w.header_named("WWW-Authenticate", device_auth::CHALLENGE);
            self.tally.device_challenges += 1;
        }
        w.finish(None);
        if self.scratch.len() <= MAX_DATAGRAM {
            self.out.buffer().extend_from_slice(&self.scratch);
            self.out.commit(socket, local, from);
            self.tally.answered += 1;
        }
    }
}
