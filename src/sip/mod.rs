//! The SIP codec: sans-IO and zero-copy.
//!
//! [`parse`] turns a datagram into a [`Message`] whose every field is a slice
//! of the receive buffer; typed accessors (`top_via`, `contacts`, `cseq` …)
//! parse one header value on demand and report grammar errors as
//! [`ParseError`], whose [`ParseError::reason`] is fit for a `400` reason
//! phrase. [`writer`] builds responses and new requests into a reused buffer.
//! Nothing here touches a socket or a clock.

pub mod digest;
mod error;
mod exercise;
mod header;
pub mod ids;
mod message;
mod method;
pub mod scan;
mod typed;
pub mod uri;
pub mod writer;

pub use error::ParseError;
pub use exercise::{fuzz_entry, read_typed};
pub use header::HeaderName;
pub use message::{parse, parse_with, Header, Limits, ListValues, Message, StartLine};
pub use method::Method;
pub use typed::{
    delta_seconds, Announced, AuthParams, CSeq, Checked, CheckedContact, Contact, Event, MediaType,
    NameAddr, Via,
};
pub use uri::{Host, Scheme, Uri};
