//! What a fan-out request's answers and ring limit call for beyond its own
//! client transaction: the ACK of a non-2xx and of a 2xx, the BYE that ends
//! the call a wake-up INVITE set up, the CANCEL of an INVITE that rang too
//! long, and the retry that answers a 401/407 challenge. These write the
//! requests; the engine queues them and arms the transaction's timer.

use smallvec::SmallVec;

use super::request::{self, Derived, Dialog};
use super::txn::branch;
use crate::sip::digest::{self, Algorithm};
use crate::sip::ids::{Id, IdGen};
use crate::sip::{HeaderName, Message};
use crate::transaction::{self, ClientTransaction, State, Timers};

/// A ringing INVITE's limit and its CANCEL.
#[derive(Default)]
pub(super) struct Ring {
    /// When the ringing INVITE is CANCELled (or, once CANCELled, abandoned).
    until: Option<u64>,
    /// The CANCEL: its own non-INVITE transaction, and its bytes.
    cancel: Option<(ClientTransaction, Vec<u8>)>,
}

impl Ring {
    /// A provisional answer: the INVITE may ring `ring_ms` from `now`
    /// (counted from the first one; never again once CANCELled).
    pub fn ringing(&mut self, now: u64, ring_ms: u64) {
        if self.until.is_none() && self.cancel.is_none() {
            self.until = Some(now + ring_ms);
        }
    }

    /// The earliest of the ring limit and the CANCEL's own deadline.
    pub fn deadline(&self) -> Option<u64> {
        let cancel_at = self.cancel.as_ref().and_then(|(c, _)| c.deadline());
        [self.until, cancel_at].into_iter().flatten().min()
    }

    /// An answer to our CANCEL (RFC 3261 §9.1: it ends nothing by itself;
    /// the INVITE's 487 does).
    pub fn on_cancel_response(&mut self, code: u16, now: u64, timers: &Timers) {
        if let Some((c, _)) = self.cancel.as_mut() {
            c.on_response(code, now, timers);
        }
    }

    /// The transaction's timer fired: the CANCEL's retransmission, and at the
    /// ring limit of an INVITE still `Proceeding` (sent as `stored`) its
    /// CANCEL, or after a CANCEL that got no final answer, giving up. Pushes
    /// what to send; true when the INVITE is to be abandoned.
    pub fn on_timer(
        &mut self,
        invite: State,
        stored: &[u8],
        now: u64,
        timers: &Timers,
        sends: &mut SmallVec<[Vec<u8>; 2]>,
    ) -> bool {
        if let Some((c, bytes)) = self.cancel.as_mut() {
            if c.state() != State::Terminated {
                let o = c.on_timer(now, timers);
                if o.retransmit {
                    sends.push(bytes.clone());
                }
            }
        }
        if self.until.is_none_or(|r| now < r) {
            return false;
        }
        self.until = None;
        if invite != State::Proceeding {
            return false;
        }
        if self.cancel.is_some() {
            return true;
        }
        let mut buf = Vec::with_capacity(512);
        request::derive(
            stored,
            &Derived {
                method: "CANCEL",
                uri: None,
                branch: None,
                to: None,
                cseq: request::cseq(stored),
            },
            &mut buf,
        );
        let (c, _) = ClientTransaction::start(transaction::Kind::NonInvite, now, timers);
        sends.push(buf.clone());
        self.cancel = Some((c, buf));
        // If no final answer follows the CANCEL, give up after Timer B.
        self.until = Some(now + timers.timeout_ms);
        false
    }
}

/// The ACK of a non-2xx final answer to the INVITE `stored`: same branch,
/// the answer's To (RFC 3261 §17.1.1.3).
pub(super) fn ack(stored: &[u8], to_header: &str, cseq: u32, out: &mut Vec<u8>) {
    request::derive(
        stored,
        &Derived {
            method: "ACK",
            uri: None,
            branch: None,
            to: Some(to_header),
            cseq,
        },
        out,
    );
}

/// A 2xx to a wake-up INVITE: where the ACK and the BYE that ends the call
/// go (its Contact), and its To with the device's tag; borrowed from the
/// answer, so a device's ACK and BYE copy no string of their own.
pub(super) struct Answered<'m> {
    to_header: &'m str,
    remote_target: Option<&'m str>,
}

impl<'m> Answered<'m> {
    pub fn of(msg: &Message<'m>) -> Answered<'m> {
        Answered {
            to_header: msg.header(HeaderName::To).unwrap_or(""),
            remote_target: msg
                .contacts()
                .next()
                .and_then(Result::ok)
                .and_then(|c| c.addr().map(|a| a.uri().raw)),
        }
    }

    /// The 2xx's ACK, on a branch of its own (RFC 3261 §13.2.2.4).
    pub fn ack(&self, invite: &Dialog<'_>, branch: &str, out: &mut Vec<u8>) {
        let uri = self.remote_target;
        invite.write("ACK", uri, branch, self.to_header, invite.cseq, out);
    }

    /// The BYE that ends the call at once, so no dialog is left behind.
    pub fn bye(&self, invite: &Dialog<'_>, branch: &str, out: &mut Vec<u8>) {
        let (uri, cseq) = (self.remote_target, invite.cseq + 1);
        invite.write("BYE", uri, branch, self.to_header, cseq, out);
    }
}

/// The retry of `stored` (transaction `slot`) that answers a device's
/// 401/407 (seed 000: the device may authenticate the server) with
/// `credentials`: the same request, CSeq + 1, a new branch, and the
/// Authorization. Returns it and its branch nonce; `None` when the
/// challenge cannot be answered (the device rejected us).
pub(super) fn answer_challenge(
    stored: &[u8],
    slot: u32,
    code: u16,
    msg: &Message<'_>,
    (user, pass): (&str, &str),
    ids: &mut IdGen,
) -> Option<(Vec<u8>, u32)> {
    let params = if code == 401 {
        msg.www_authenticate()
    } else {
        msg.proxy_authenticate()
    };
    let p = params.ok().flatten()?;
    let alg = Algorithm::parse(p.get("algorithm"))?;
    let (Some(realm), Some(nonce_v)) = (p.get("realm"), p.get("nonce")) else {
        return None;
    };
    let qop = p
        .get("qop")
        .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
    let method = std::str::from_utf8(stored)
        .ok()
        .and_then(|s| s.split(' ').next())
        .unwrap_or("NOTIFY");
    let cnonce = ids.tag();
    let value = digest::authorization(&digest::Answer {
        alg,
        username: user,
        password: pass,
        realm,
        nonce: nonce_v,
        opaque: p.get("opaque"),
        method,
        uri: request::request_uri(stored),
        qop_auth: qop.then_some(("00000001", cnonce.as_str())),
    });
    let header = if code == 401 {
        "Authorization"
    } else {
        "Proxy-Authorization"
    };
    let new_nonce = super::txn::nonce(ids);
    let br: Id = branch(slot, new_nonce);
    let mut buf = Vec::with_capacity(stored.len() + value.len() + 32);
    request::with_header(
        stored,
        &br,
        request::cseq(stored) + 1,
        header,
        &value,
        &mut buf,
    );
    Some((buf, new_nonce))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:dev@10.0.0.2:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnt0000000100000003\r\n\
From: <sip:tether@192.0.2.1:5060>;tag=a\r\nTo: <sip:dev@example.net>\r\n\
Call-ID: c@tether\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn a_ringing_invite_is_cancelled_at_its_limit_then_abandoned_after_timer_b() {
        let timers = Timers::default();
        let mut ring = Ring::default();
        let mut sends = SmallVec::new();
        ring.ringing(1000, 500);
        ring.ringing(1200, 500);
        assert_eq!(ring.deadline(), Some(1500), "counted from the first ring");
        assert!(!ring.on_timer(State::Proceeding, INVITE, 1499, &timers, &mut sends));
        assert!(sends.is_empty());
        assert!(!ring.on_timer(State::Proceeding, INVITE, 1500, &timers, &mut sends));
        assert_eq!(sends.len(), 1);
        let cancel = crate::sip::parse(&sends[0]).unwrap();
        assert_eq!(cancel.header(HeaderName::CSeq), Some("1 CANCEL"));
        // A provisional answer after the CANCEL restarts nothing.
        ring.ringing(1600, 500);
        let give_up = 1500 + timers.timeout_ms;
        assert!(ring.deadline().is_some_and(|d| d <= give_up));
        sends.clear();
        assert!(ring.on_timer(State::Proceeding, INVITE, give_up, &timers, &mut sends));
    }

    #[test]
    fn an_invite_answered_before_its_limit_is_not_cancelled() {
        let mut ring = Ring::default();
        let mut sends = SmallVec::new();
        ring.ringing(0, 10);
        let t = Timers::default();
        assert!(!ring.on_timer(State::Completed, INVITE, 10, &t, &mut sends));
        assert!(sends.is_empty());
        assert_eq!(ring.deadline(), None);
    }
}
