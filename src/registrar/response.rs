//! RFC 3261 §10.3 step 8 and the refusals: the response to a REGISTER,
//! written into the caller's buffer, and the counters it moves.

use smallvec::SmallVec;

use super::steps::is_supported;
use super::update::Changes;
use super::{Arrival, ContactView, Registrar, Reject, SUPPORTED};
use crate::sip::writer::{response_to_checked, Decimal, Writer};
use crate::sip::{Checked, HeaderName, Message};

impl Registrar {
    /// Writes the answer to `result` into `out`; `tag` is the To tag.
    pub(super) fn respond(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        at: Arrival,
        tag: &str,
        result: Result<Changes, Reject>,
        out: &mut Vec<u8>,
    ) {
        match result {
            Ok(changes) => {
                let mut w =
                    response_to_checked(out, msg, checked, 200, "OK", Some(tag), Some(at.source));
                for c in &changes.current {
                    write_contact(&mut w, c, at.now_secs);
                }
                for p in msg.header_values(HeaderName::Path) {
                    w.header(HeaderName::Path, p);
                }
                w.header(HeaderName::Supported, SUPPORTED);
                w.finish(None);
            }
            Err(reject) => self.refuse(msg, checked, at, tag, reject, out),
        }
    }

    /// A refusal: its status line and what it tells the UA to do next.
    fn refuse(
        &mut self,
        msg: &Message<'_>,
        checked: &Checked<'_>,
        at: Arrival,
        tag: &str,
        reject: Reject,
        out: &mut Vec<u8>,
    ) {
        match reject {
            Reject::Unauthorized { .. } => self.stats.challenged += 1,
            Reject::TooManyContacts | Reject::Refused => self.stats.forbidden += 1,
            Reject::Forbidden => {
                self.stats.forbidden += 1;
                self.stats.auth_failures += 1;
            }
            Reject::SourceFull => {
                self.stats.forbidden += 1;
                self.stats.source_full += 1;
            }
            Reject::Token(_) => {
                self.stats.forbidden += 1;
                self.stats.token_rejected += 1;
                self.stats.auth_failures += 1;
            }
            _ => self.stats.rejected += 1,
        }
        let mut w = response_to_checked(
            out,
            msg,
            checked,
            reject.code(),
            reject.reason(),
            Some(tag),
            Some(at.source),
        );
        match reject {
            Reject::IntervalTooBrief => {
                w.header_u32(HeaderName::MinExpires, self.policy.min_expires);
            }
            Reject::Unauthorized { stale } => {
                if let Some(a) = &self.auth {
                    a.write_challenge(&mut w, stale, u64::from(at.now_secs), at.source);
                }
            }
            Reject::BadExtension => {
                for t in checked.require.iter().filter(|t| !is_supported(t)) {
                    w.header(HeaderName::Unsupported, t);
                }
            }
            // Which check failed, never anything about the secrets.
            Reject::Token(e) => {
                w.header_parts("Warning", &["399 tether \"", e.warning(), "\""]);
            }
            Reject::SourceFull => {
                w.header_parts(
                    "Warning",
                    &["399 tether \"limits.max_bindings_per_source reached for this address\""],
                );
            }
            Reject::Unavailable { retry_after } => {
                w.header_named("Retry-After", Decimal::new(retry_after).as_str());
            }
            _ => {}
        }
        w.finish(None);
    }
}

/// One Contact of a 200: the URI, its remaining expiry, and the RFC 5626
/// instance and reg-id when the binding has them.
fn write_contact(w: &mut Writer<'_>, c: &ContactView, now_secs: u32) {
    let secs = Decimal::new(c.expires_at.saturating_sub(now_secs));
    let reg = c.reg_id.map(Decimal::new);
    let mut parts: SmallVec<[&str; 8]> = SmallVec::new();
    parts.extend_from_slice(&["<", &c.contact, ">;expires=", secs.as_str()]);
    if let Some(inst) = &c.instance {
        parts.extend_from_slice(&[";+sip.instance=\"<", inst, ">\""]);
        if let Some(reg) = &reg {
            parts.extend_from_slice(&[";reg-id=", reg.as_str()]);
        }
    }
    w.header_parts("Contact", &parts);
}
