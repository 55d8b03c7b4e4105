//! The key of a NAT path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

/// A NAT path: which local socket, which remote address. IPv4 paths pack
/// into one `u64`; only IPv6 paths carry the full address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKey {
    /// local index << 48 | IPv4 << 16 | port
    V4(u64),
    /// Bytes rather than `u128` keep the key at 24 bytes (no 16-byte alignment).
    V6 { local: u8, ip: [u8; 16], port: u16 },
}

impl PathKey {
    pub fn new(local: u8, remote: SocketAddr) -> PathKey {
        match remote {
            SocketAddr::V4(a) => PathKey::V4(
                u64::from(local) << 48 | u64::from(u32::from(*a.ip())) << 16 | u64::from(a.port()),
            ),
            SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
                Some(v4) => PathKey::new(local, SocketAddr::V4(SocketAddrV4::new(v4, a.port()))),
                None => PathKey::V6 {
                    local,
                    ip: a.ip().octets(),
                    port: a.port(),
                },
            },
        }
    }

    pub fn local(&self) -> u8 {
        match *self {
            PathKey::V4(k) => (k >> 48) as u8,
            PathKey::V6 { local, .. } => local,
        }
    }

    pub fn remote(&self) -> SocketAddr {
        match *self {
            PathKey::V4(k) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from((k >> 16) as u32)), k as u16)
            }
            PathKey::V6 { ip, port, .. } => SocketAddr::new(IpAddr::V6(ip.into()), port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_keys_are_compact_and_round_trip() {
        assert!(
            std::mem::size_of::<PathKey>() <= 24,
            "smaller than a 32-byte SocketAddr"
        );
        for addr in ["198.51.100.7:5060", "[2001:db8::7]:5062"] {
            let a: SocketAddr = addr.parse().unwrap();
            let k = PathKey::new(3, a);
            assert_eq!(k.remote(), a);
            assert_eq!(k.local(), 3);
        }
        // An IPv4-mapped IPv6 source is the same path as its IPv4 form.
        let mapped: SocketAddr = "[::ffff:198.51.100.7]:5060".parse().unwrap();
        assert_eq!(
            PathKey::new(0, mapped),
            PathKey::new(0, "198.51.100.7:5060".parse().unwrap())
        );
    }
}
