//! The endpoints as servers: each request from the server (keepalive
//! OPTIONS, NOTIFY, INVITE) is answered statelessly, so a retransmitted
//! request gets the same answer again; dead endpoints and ACKs get none.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Population, MAX_DATAGRAM};
use crate::loadgen::{device_auth, message};
use crate::sip::writer::Writer;
use crate::sip::{self, HeaderName, Method};

/// The To tag of every answer (a device's dialogs need no distinct tags).
const TAG: &str = "lgua";

/// [`sip::writer::response_to`] for the generator's stateless answers,
/// without parsing To and Via: header lines copied as they came (each Via
/// line whole rather than split at commas), the tag added when To has
/// none. Per answered NOTIFY or INVITE, the typed parse of To and the top
/// Via was ~10% of the generator's CPU in a fan-out job.
fn response<'b>(buf: &'b mut Vec<u8>, m: &sip::Message<'_>, code: u16, reason: &str) -> Writer<'b> {
    let mut w = Writer::response(buf, code, reason);
    for via in m.header_values(HeaderName::Via) {
        w.header(HeaderName::Via, via);
    }
    if let Some(from) = m.header(HeaderName::From) {
        w.header(HeaderName::From, from);
    }
    if let Some(to) = m.header(HeaderName::To) {
        if has_tag(to) || code == 100 {
            w.header(HeaderName::To, to);
        } else {
            w.header_parts("To", &[to, ";tag=", TAG]);
        }
    }
    for name in [HeaderName::CallId, HeaderName::CSeq] {
        if let Some(v) = m.header(name) {
            w.header(name, v);
        }
    }
    w
}

/// A To value has a `tag` parameter: among the header's parameters, after
/// the `>` of a name-addr, or after the first `;` of a bare addr-spec.
fn has_tag(to: &str) -> bool {
    let params = match to.rfind('>') {
        Some(i) => &to[i + 1..],
        None => to.find(';').map_or("", |i| &to[i..]),
    };
    params.split(';').skip(1).any(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        name.trim().eq_ignore_ascii_case("tag") && !value.trim().is_empty()
    })
}

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
        let n = self.n();
        let bit = self.prompted.get_mut(idx as usize / 64).filter(|_| idx < n);
        if let Some(w) = bit {
            *w |= 1 << (idx % 64);
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
        let mut w = response(&mut self.scratch, m, code, reason);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_what_response_to_writes() {
        let requests: [&[u8]; 3] = [
            b"NOTIFY sip:u1@127.42.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnt1;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:tether@127.0.0.1:5060>;tag=ab\r\nTo: <sip:u1@example.net>\r\n\
Call-ID: c1@tether\r\nCSeq: 1 NOTIFY\r\nEvent: x\r\nContent-Length: 0\r\n\r\n",
            b"BYE sip:u1@127.42.0.1:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnt2\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKb\r\nFrom: <sip:tether@127.0.0.1:5060>;tag=ab\r\n\
To: \"U>1\" <sip:u1@example.net;tag=x>;tag=lgua\r\nCall-ID: c2@tether\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            b"OPTIONS sip:u1@127.42.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3\r\n\
From: sip:tether@127.0.0.1;tag=ab\r\nTo: sip:u1@example.net;user=phone\r\nCall-ID: c3\r\n\
CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ];
        for r in requests {
            let m = sip::parse(r).unwrap();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            sip::writer::response_to(&mut a, &m, 200, "OK", Some(TAG), None).finish(None);
            response(&mut b, &m, 200, "OK").finish(None);
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn a_tag_is_found_among_the_header_params_only() {
        assert!(has_tag("<sip:a@b>;tag=1"));
        assert!(has_tag("sip:a@b; TAG = 1"));
        assert!(!has_tag("<sip:a@b;tag=1>"));
        assert!(!has_tag("<sip:a@b>;tagx=1"));
        assert!(!has_tag("sip:a@b"));
    }
}
