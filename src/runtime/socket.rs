//! Socket setup: SO_REUSEPORT groups and large buffers.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking UDP socket with `SO_REUSEPORT` and the requested
/// buffer sizes, warning when the kernel grants less than asked.
pub fn bind_reuseport(addr: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    // Linux reports double the usable size; compare against half of it.
    let got = s.recv_buffer_size().unwrap_or(0) / 2;
    if got < buffer {
        tracing::warn!(
            requested = buffer,
            granted = got,
            "receive buffer capped by the kernel; raise net.core.rmem_max (see tuning/)"
        );
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}
