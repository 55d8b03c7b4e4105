//! RFC 3261 §10.3: the steps a registrar takes on a REGISTER, one function
//! per step (or group of steps), in the order [`Registrar::process`] runs
//! them. Step 7's change to the stored bindings is in `update.rs`; step 8's
//! response in `response.rs`.

use smallvec::SmallVec;

use super::auth::Verdict;
use super::update::{Changes, Op};
use super::{canonical_aor, Arrival, Registrar, Reject};
use crate::sip::scan::unquote;
use crate::sip::{Checked, Contact, Host, Message, Scheme};

impl Registrar {
    /// Runs the steps on a validated REGISTER: the bindings after it, or
    /// why it was refused.
    pub(super) fn process<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
    ) -> Result<Changes, Reject> {
        // Step 2 comes first: a 420 needs no lookup at all.
        check_extensions(checked)?;
        self.check_domain(checked)?;
        let (user, host) = to_user_and_host(checked)?;
        self.authenticate(msg, checked, at, user)?;
        let aor = canonical_aor(user, host);
        if checked.contacts.is_empty() {
            return Ok(self.query(&aor, at.now_secs));
        }
        let call_id_hash = std::hash::BuildHasher::hash_one(&self.call_id_hasher, checked.call_id);
        let cseq = checked.cseq.seq;
        if checked
            .contacts
            .iter()
            .any(|c| matches!(c.contact, Contact::Star))
        {
            check_star(checked)?;
            return self.remove_all(msg, at, &aor, call_id_hash, cseq);
        }
        let ops = self.contact_ops(checked)?;
        self.update_bindings(msg, checked, at, &aor, call_id_hash, cseq, &ops)
    }

    /// Step 1: the Request-URI names a domain this registrar serves.
    fn check_domain(&self, checked: &Checked<'_>) -> Result<(), Reject> {
        let Some(ruri) = checked.request_uri else {
            return Err(Reject::BadRequestUri);
        };
        if !self.serves(ruri.host) {
            return Err(Reject::DomainNotServed);
        }
        Ok(())
    }

    fn serves(&self, host: Option<Host<'_>>) -> bool {
        if self.policy.domains.is_empty() {
            return true;
        }
        match host {
            Some(Host::Name(h)) => self
                .policy
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(h)),
            Some(other) => {
                let s = other.to_string();
                self.policy.domains.iter().any(|d| **d == *s)
            }
            None => false,
        }
    }

    /// Steps 3 and 4: authentication, and the user may only register its
    /// own AOR (`user`, the To URI's user part).
    fn authenticate<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        user: &str,
    ) -> Result<(), Reject> {
        let Some(a) = &mut self.auth else {
            return Ok(());
        };
        match a.check(msg, checked, at.source, u64::from(at.now_secs)) {
            Verdict::Authenticated(name) => {
                // User parts are case-sensitive (RFC 3261 §19.1.4).
                if name != user {
                    return Err(Reject::Forbidden);
                }
                Ok(())
            }
            Verdict::Challenge { stale } => Err(Reject::Unauthorized { stale }),
            Verdict::Forbidden => Err(Reject::Forbidden),
            Verdict::Malformed => Err(Reject::BadAuthorization),
        }
    }

    /// A REGISTER without Contact is a query: the AOR's live bindings.
    fn query(&self, aor: &str, now_secs: u32) -> Changes {
        let current = self.dir.with_aor(aor, |r| {
            r.map(|r| {
                r.contacts
                    .iter()
                    .filter(|c| c.expires_at > now_secs)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
        });
        Changes {
            removed: SmallVec::new(),
            current,
        }
    }

    /// Step 7, first part: each contact's expiry (its own `expires`, else
    /// the Expires header, else the default; capped at the maximum) and
    /// identity. A non-zero expiry below the minimum refuses the request
    /// (423) before anything changes.
    fn contact_ops<'c, 'm>(
        &self,
        checked: &'c Checked<'m>,
    ) -> Result<SmallVec<[Op<'c, 'm>; 4]>, Reject> {
        let mut ops = SmallVec::new();
        let mut too_brief = false;
        for c in &checked.contacts {
            let e = c
                .expires
                .or(checked.expires)
                .unwrap_or(self.policy.default_expires);
            if e != 0 && e < self.policy.min_expires {
                too_brief = true;
            }
            let addr = c.contact.addr().expect("not a star");
            let instance = c.contact.instance().or_else(|| {
                let p = self.policy.device_id_param.as_deref()?;
                addr.param(p).flatten().map(unquote)
            });
            ops.push(Op {
                contact: c,
                uri: addr.uri_raw,
                expires: e.min(self.policy.max_expires),
                instance,
                reg_id: c.reg_id,
            });
        }
        if too_brief {
            return Err(Reject::IntervalTooBrief);
        }
        Ok(ops)
    }
}

/// Step 2: every option tag in Require is one tether supports.
fn check_extensions(checked: &Checked<'_>) -> Result<(), Reject> {
    if checked.require.iter().any(|t| !is_supported(t)) {
        return Err(Reject::BadExtension);
    }
    Ok(())
}

/// Option tags tether understands in Require ([`super::SUPPORTED`]).
pub(crate) fn is_supported(tag: &str) -> bool {
    tag.eq_ignore_ascii_case("path") || tag.eq_ignore_ascii_case("outbound")
}

/// Step 5, the check before the AOR is made: the To URI is a SIP or SIPS
/// URI with a user part.
fn to_user_and_host<'m>(checked: &Checked<'m>) -> Result<(&'m str, Host<'m>), Reject> {
    let to_uri = checked.to.uri;
    let (Some(user), Some(host)) = (to_uri.user, to_uri.host) else {
        return Err(Reject::NotFound);
    };
    if !matches!(to_uri.scheme, Scheme::Sip | Scheme::Sips) {
        return Err(Reject::NotFound);
    }
    Ok((user, host))
}

/// Step 6: `*` only alone and only with `Expires: 0`.
fn check_star(checked: &Checked<'_>) -> Result<(), Reject> {
    if checked.contacts.len() != 1 || checked.expires != Some(0) {
        return Err(Reject::InvalidStar);
    }
    Ok(())
}
