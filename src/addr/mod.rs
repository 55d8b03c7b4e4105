//! Network addresses every layer shares: the key of a NAT path and the
//! allow-list networks. A bottom module (it depends on nothing of tether's),
//! so that the registrar need not depend on `nat` for a key, nor the config
//! on `api` for a network.

mod cidr;
mod path;

pub use cidr::Cidr;
pub use path::PathKey;
