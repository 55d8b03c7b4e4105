//! Typed header values a registrar and proxy read, parsed on demand from the
//! borrowed header slices. Each accessor validates its grammar and returns
//! `ParseError::BadHeader(<name>)` when the value does not follow it.
//!
//! One file per header family; `checked` holds `validate()` and the
//! parsed view it returns.

mod auth;
mod checked;
mod media;
mod name_addr;
mod scalar;
mod tokens;
mod via;

pub use auth::AuthParams;
pub use checked::{Announced, Checked, CheckedContact};
pub use media::MediaType;
pub use name_addr::{Contact, NameAddr};
pub use scalar::{delta_seconds, is_sip_date, CSeq};
pub use tokens::Event;
pub use via::Via;

use super::error::ParseError;
use super::message::Message;
use super::uri::Uri;

impl<'a> Message<'a> {
    /// The parsed Request-URI (`None` for responses).
    pub fn request_uri(&self) -> Option<Result<Uri<'a>, ParseError>> {
        self.request_uri_raw()
            .map(|u| Uri::parse(u).map_err(|_| ParseError::BadRequestUri))
    }
}
