//! What the sans-IO benches share: one core's endpoint, without sockets.

use std::sync::Arc;

use tether::endpoint::Endpoint;
use tether::nat::{Keepalive, KeepaliveConfig};
use tether::registrar::{Directory, Policy, Registrar};
use tether::sip::Limits;

/// One core (registrar, NAT keepalive with `keepalive`, fan-out engine)
/// over a directory sized for `capacity` AORs, as `tether run` builds it
/// with `registrar.capacity` set to that.
pub fn one_core(capacity: u32, keepalive: KeepaliveConfig) -> Endpoint {
    let dir = Arc::new(Directory::with_capacity(capacity as usize));
    let mut reg = Registrar::new(0, Arc::new(Policy::default()), dir.clone(), None);
    reg.reserve(capacity as usize);
    let addrs = vec!["192.0.2.1:5060".parse().unwrap()];
    let notify = tether::notify::Engine::new(
        Arc::new(tether::notify::NotifyConfig::default()),
        dir,
        addrs.clone(),
        1000,
        1,
    );
    let mut keepalive = Keepalive::new(keepalive, 1);
    keepalive.reserve(capacity as usize);
    Endpoint::new(Limits::default(), 1, reg, keepalive, notify, addrs)
}
