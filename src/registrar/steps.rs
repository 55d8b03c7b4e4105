//! RFC 3261 §10.3: the steps a registrar takes on a REGISTER, one function
//! per step (or group of steps), in the order [`Registrar::process`] runs
//! them. Step 7's change to the stored bindings is in `update.rs`; step 8's
//! response in `response.rs`.

use smallvec::SmallVec;

use super::auth::Verdict;
use super::token::{TokenError, TokenKeys};
use super::update::{Changes, Op};
use super::{canonical_aor, Arrival, Authz, Registrar, Reject};
use crate::sip::scan::{is_token_str, unquote};
use crate::sip::{Checked, CheckedContact, Contact, Host, Message, Scheme};

impl Registrar {
    /// Runs the steps on a validated REGISTER: the bindings after it, or
    /// why it was refused.
    pub(super) fn process<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        authz: Authz,
    ) -> Result<Changes, Reject> {
        // Step 2 comes first: a 420 needs no lookup at all.
        check_extensions(checked)?;
        self.check_domain(checked)?;
        let (user, host) = to_user_and_host(checked)?;
        let aor = canonical_aor(user, host);
        self.authorize(msg, checked, at, user, &aor, authz)?;
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
        let changes = self.update_bindings(msg, checked, at, &aor, call_id_hash, cseq, &ops)?;
        if let Some(gate) = &mut self.gate {
            gate.note(&aor, &ops, at, authz == Authz::Granted);
        }
        Ok(changes)
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

    /// Steps 3 and 4: who may register `aor`. A decision already taken
    /// (`authz`) stands; otherwise a capability token, when the REGISTER
    /// has one and `auth.token.secrets` are set, decides in every mode;
    /// otherwise the mode: anyone, a digest, or the HTTP service (unless
    /// it authorized these bindings within `auth.http.cache_s`).
    fn authorize<'m>(
        &mut self,
        msg: &Message<'m>,
        checked: &Checked<'m>,
        at: Arrival,
        user: &str,
        aor: &str,
        authz: Authz,
    ) -> Result<(), Reject> {
        match authz {
            Authz::Granted | Authz::Assumed => return Ok(()),
            Authz::Denied => return Err(Reject::Refused),
            Authz::Unavailable { retry_after } => return Err(Reject::Unavailable { retry_after }),
            Authz::Ask => {}
        }
        let bearer = checked.authorization.as_ref().and_then(|a| a.bearer());
        if let (Some(token), Some(keys)) = (bearer, &self.tokens) {
            check_token(keys, token, checked, aor, at.now_unix).map_err(Reject::Token)?;
            self.stats.token_accepted += 1;
            return Ok(());
        }
        if let Some(gate) = &self.gate {
            if !gate.covers(aor, checked, at, self.policy.device_id_param.as_deref()) {
                return Err(Reject::Callout);
            }
            self.stats.http_cached += 1;
            return Ok(());
        }
        self.authenticate(msg, checked, at, user)
    }

    /// Steps 3 and 4 by digest (when `auth.mode = "digest"`), and the user
    /// may only register its own AOR (`user`, the To URI's user part).
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
            let instance = instance_of(c, self.policy.device_id_param.as_deref());
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

/// A contact's device identity: its `+sip.instance`, else the
/// `registrar.device_id_param` parameter's value.
pub(super) fn instance_of<'m>(
    c: &CheckedContact<'m>,
    device_id_param: Option<&str>,
) -> Option<&'m str> {
    c.contact.instance().or_else(|| {
        let p = device_id_param?;
        c.contact.addr()?.param(p).flatten().map(unquote)
    })
}

/// A contact's namespace scope (seed 002), its `scope` parameter when that
/// is a token (anything else registers it without a scope).
pub(super) fn scope_of<'m>(c: &CheckedContact<'m>) -> Option<&'m str> {
    c.contact
        .addr()?
        .param("scope")
        .flatten()
        .map(unquote)
        .filter(|s| is_token_str(s))
}

/// A capability token lets this REGISTER in: it verifies at `now_unix`,
/// names the To's AOR, and allows every contact's scope (`Contact: *`,
/// which removes bindings of any scope, needs `"*"`).
fn check_token(
    keys: &TokenKeys,
    token: &str,
    checked: &Checked<'_>,
    aor: &str,
    now_unix: u64,
) -> Result<(), TokenError> {
    let claims = keys.verify(token, now_unix)?;
    if !claims.names(aor) {
        return Err(TokenError::WrongAor);
    }
    for c in &checked.contacts {
        let scope = match &c.contact {
            Contact::Star => "*",
            // As the binding will be stored: no (usable) scope is "".
            Contact::Addr(_) => scope_of(c).unwrap_or(""),
        };
        if !claims.allows(scope) {
            return Err(TokenError::Scope);
        }
    }
    Ok(())
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
