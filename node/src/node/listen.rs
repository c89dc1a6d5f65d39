//! Where the node listens: addresses, the libp2p listeners that move with the
//! guise, the XEP-0174 stream listener, and what a failed listen says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, Swarm};
use tracing::debug;

use super::Error;
use crate::net::Behaviour;

pub(super) fn bind_ip(listen: &[Multiaddr]) -> IpAddr {
    listen
        .iter()
        .flat_map(|a| a.iter())
        .find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            _ => None,
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// Where a node listens when no address is given: TCP and QUIC, on every IPv4
/// and IPv6 address, on the guise's ports.
pub(super) fn default_listen() -> Vec<Multiaddr> {
    let mut addrs = Vec::new();
    for ip in [
        Protocol::Ip4(Ipv4Addr::UNSPECIFIED),
        Protocol::Ip6(Ipv6Addr::UNSPECIFIED),
    ] {
        let at = Multiaddr::empty().with(ip);
        addrs.push(at.clone().with(Protocol::Tcp(0)));
        addrs.push(at.with(Protocol::Udp(0)).with(Protocol::QuicV1));
    }
    addrs
}

/// Whether the TCP port of `addr` is free. libp2p's TCP listeners set
/// `SO_REUSEPORT` (for hole punching, dials leave from the listening port), so a
/// second node asked for the same port would bind it too and the kernel would
/// share the connections between the two: a plain socket's bind tells first.
pub(super) fn tcp_port_free(addr: &Multiaddr) -> bool {
    let (Some(port), Some(ip)) = (tcp_port(addr), ip_of(addr)) else {
        return true;
    };
    if port == 0 {
        return true;
    }
    // As libp2p makes its own (IPv6 sockets v6-only, address reuse), without
    // `SO_REUSEPORT`: the bind fails while anyone listens there.
    let at = std::net::SocketAddr::new(ip, port);
    let probe = || -> std::io::Result<()> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if at.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.bind(&at.into())
    };
    // Only "in use" says taken: another error (an address not on this host, a
    // privileged port) is libp2p's to report, with its own reason.
    !matches!(probe(), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

pub(super) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Whether `addr` is an IPv6 address.
pub(super) fn is_ip6(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::Ip6(_)))
}

/// Listens on `addr` (asked for on port 0) at `port` (TCP or UDP, for QUIC), or
/// any free port if that one is taken.
pub(super) fn listen_moving(
    swarm: &mut Swarm<Behaviour>,
    addr: &Multiaddr,
    port: u16,
) -> Result<ListenerId, Error> {
    let at = |port: u16| -> Multiaddr {
        addr.iter()
            .map(|p| match p {
                Protocol::Tcp(_) => Protocol::Tcp(port),
                Protocol::Udp(_) => Protocol::Udp(port),
                other => other,
            })
            .collect()
    };
    let wanted = at(port);
    let free = tcp_port_free(&wanted);
    let listened = if free {
        swarm.listen_on(wanted).map_err(|_| ())
    } else {
        Err(())
    };
    listened.or_else(|_| {
        debug!("port {port} is taken; listening on another");
        swarm
            .listen_on(addr.clone())
            .map_err(|e| Error::Listen(format!("{addr}: {}", reason(&e))))
    })
}

/// A listener for XEP-0174 streams, bound at once (no await: also from the node's
/// synchronous handlers, inside its runtime).
pub(super) fn bind_stream(ip: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind((ip, port))?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}

/// The TCP or UDP port of `addr`.
pub(super) fn port_of(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
        _ => None,
    })
}

/// The TCP port of `addr`.
pub(super) fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

/// What went wrong, however deep libp2p wrapped it (its outer errors may say
/// nothing, as "cannot listen: ADDR: " did).
pub(super) fn reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        format!("{e:?}")
    } else {
        parts.join(": ")
    }
}
