//! Held calls for devices that sleep (design: seed 002's bridge).
//!
//! An INVITE for a device that cannot be reached now but can be woken (RFC
//! 8599 push parameters in its Contact, or a reachable binding in another
//! scope) is held: the caller hears 180, the device gets a wake-up carrying
//! a **bridge token**, and when the device calls the bridge URI with that
//! token, the held INVITE goes to it over the call-back's NAT flow.
//!
//! The pieces here are sans-IO and hold no call state: the token
//! ([`token`]), the push parameters and the gateway's JSON body
//! ([`push`]), and the `[push]` section ([`config`]). Nothing here reads a
//! clock or the system's randomness: callers pass `now` and nonces.

pub mod config;
pub mod push;
pub mod token;

pub use config::{BridgeKey, PushSection};
pub use push::{PushBody, PushParams};
pub use token::{bridge_uri, token_in_user, BridgeKeys, Held, TokenError};
