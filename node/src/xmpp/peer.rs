//! Who is at the other end of a stream: this machine or the network, and on this
//! machine, whether the connecting process runs as the same user as the node
//! (Linux: the owner of the client's socket in `/proc/net/tcp`, as identd reads
//! it). The node's files are readable by that user alone, so a same-user process is
//! trusted as the device's own client; another user's process is not.

use std::net::{Ipv4Addr, SocketAddr};

/// Where a stream comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A process of this machine running as the node's user.
    Owner,
    /// A process of this machine running as another user (or one whose user could
    /// not be told).
    OtherUser,
    /// Another machine.
    Network,
}

impl Peer {
    /// Whether the connection from `peer` to `local` comes from this machine.
    pub fn is_here(peer: SocketAddr, local: SocketAddr) -> bool {
        peer.ip().is_loopback() || peer.ip() == local.ip()
    }

    /// Classifies the connection from `peer` to `local` (reads `/proc/net/tcp`).
    /// Where the system has no such table (not Linux), a local connection is taken
    /// as the owner's, as it was before users were told apart.
    pub fn of(peer: SocketAddr, local: SocketAddr) -> Self {
        if !Self::is_here(peer, local) {
            return Self::Network;
        }
        if !std::path::Path::new(TCP_TABLE).exists() {
            return Self::Owner;
        }
        match socket_uid(peer, local) {
            Some(uid) if uid == own_uid() => Self::Owner,
            _ => Self::OtherUser,
        }
    }
}

/// Linux's table of IPv4 TCP sockets.
const TCP_TABLE: &str = "/proc/net/tcp";

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The owner of the client's socket (`peer` → `local`), from `/proc/net/tcp`.
fn socket_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (SocketAddr::V4(p), SocketAddr::V4(l)) = (peer, local) else {
        return None;
    };
    let table = std::fs::read_to_string(TCP_TABLE).ok()?;
    uid_in(&table, (*p.ip(), p.port()), (*l.ip(), l.port()))
}

fn parse_addr(field: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip, port) = field.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints the address as the u32 of its network-order bytes.
    Some((Ipv4Addr::from(u32::from_be(ip)), port))
}

/// The uid of the row whose local address is `from` and remote address `to`.
fn uid_in(table: &str, from: (Ipv4Addr, u16), to: (Ipv4Addr, u16)) -> Option<u32> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, uid, inode) = (f.get(1)?, f.get(2)?, f.get(7)?, f.get(9)?);
        // A socket in TIME_WAIT has no owner (uid 0, inode 0): it proves nothing.
        (parse_addr(local)? == from && parse_addr(remote)? == to && *inode != "0")
            .then(|| uid.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_a_socket_is_read_from_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:A3B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 12345 1 0\n\
   1: 0100007F:1F90 0100007F:A3B2 01 00000000:00000000 00:00000000 00000000     0        0 12346 1 0\n\
   2: 0100007F:A3B3 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0\n";
        let client = (Ipv4Addr::LOCALHOST, 0xA3B2);
        let server = (Ipv4Addr::LOCALHOST, 0x1F90);
        if cfg!(target_endian = "little") {
            assert_eq!(uid_in(table, client, server), Some(1000));
            assert_eq!(uid_in(table, server, client), Some(0));
        }
        assert_eq!(uid_in(table, (Ipv4Addr::LOCALHOST, 1), server), None);
        assert_eq!(
            uid_in(table, (Ipv4Addr::LOCALHOST, 0xA3B3), server),
            None,
            "TIME_WAIT proves nothing"
        );
    }

    #[tokio::test]
    async fn a_connection_of_this_process_is_the_owners() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (s, peer) = listener.accept().await.unwrap();
        let local = s.local_addr().unwrap();
        if std::path::Path::new("/proc/net/tcp").exists() {
            assert_eq!(Peer::of(peer, local), Peer::Owner);
        }
        let lan: SocketAddr = "10.200.0.2:5000".parse().unwrap();
        assert_eq!(Peer::of(lan, local), Peer::Network);
    }
}
