//! The XEP-0223-style whitelist at the transport: a connection is refused right after
//! the Noise handshake (before any other protocol runs on it) unless its peer is an
//! active roster device, a revoked one still to be told so ([`Gate::set_to_tell`]),
//! or a pairing is open. It also bounds what anyone can hold:
//!
//! * connections still in their handshake: [`Limits::pending_per_ip`] from one
//!   address and [`Limits::pending`] in all; more are refused at once;
//! * established connections: [`Limits::per_ip`] from one address,
//!   [`Limits::total`] in all, [`Limits::per_peer`] to one peer. At a cap, the
//!   newcomer is let in and the oldest connection not yet *proven* (a roster device
//!   is proven by being one; a pairing peer once it proves it holds the code (SPAKE2),
//!   [`Gate::prove`]) is closed in its place, from the newcomer's address when that
//!   address is at its cap, else from the address holding the most. Only when every
//!   connection in the way is proven is the newcomer refused;
//! * unproven connections are closed after [`Limits::unproven_secs`].
//!
//! So strangers can keep at most a rolling set of unproven connections, each for a
//! few seconds, and never the room a device that proves itself needs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

use crate::admission::{self, Held, make_room};

/// Most connections established at once (the main swarm's default).
pub const MAX_CONNECTIONS: u32 = 128;
/// Most connections to one peer.
pub const MAX_PER_PEER: u32 = 4;

/// What a gate lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Established connections in all.
    pub total: u32,
    /// Established connections to one peer.
    pub per_peer: u32,
    /// Established connections from one remote address.
    pub per_ip: u32,
    /// Connections in their handshake, in all.
    pub pending: u32,
    /// Connections in their handshake from one remote address.
    pub pending_per_ip: u32,
    /// How long a connection may stay unproven.
    pub unproven_secs: u64,
}

impl Limits {
    /// The main swarm: roster devices only (strangers are refused right after the
    /// handshake, so they never hold an established slot).
    pub const MAIN: Self = Self {
        total: MAX_CONNECTIONS,
        per_peer: MAX_PER_PEER,
        per_ip: 32,
        pending: 64,
        pending_per_ip: 8,
        unproven_secs: 60,
    };
    /// The pairing listener: anyone while an invitation is open, so small caps and
    /// a short time to prove it holds the code.
    pub const PAIRING: Self = Self {
        total: 32,
        per_peer: 2,
        per_ip: 8,
        pending: 64,
        pending_per_ip: 16,
        unproven_secs: 10,
    };
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The peer is not an active roster device and no pairing is open.
    #[error("peer {0} is not in the roster")]
    NotInRoster(PeerId),
    /// Too many connections.
    #[error("connection limit reached")]
    Limit,
}

#[derive(Debug, Clone)]
struct Conn {
    peer: PeerId,
    ip: Option<IpAddr>,
    since: Instant,
    proven: bool,
}

/// The gate.
#[derive(Debug)]
pub struct Gate {
    limits: Limits,
    allowed: BTreeSet<PeerId>,
    to_tell: BTreeSet<PeerId>,
    pairing_open: bool,
    /// Handshakes under way: connection → remote address.
    pending: BTreeMap<ConnectionId, Option<IpAddr>>,
    /// Established connections.
    conns: BTreeMap<ConnectionId, Conn>,
    /// Connections to close, not yet asked of the swarm.
    close: VecDeque<(PeerId, ConnectionId)>,
    /// Connections being closed (asked, or about to be).
    closing: BTreeSet<ConnectionId>,
    waker: Option<Waker>,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new(Limits::MAIN)
    }
}

/// The IP address of a multiaddr, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Gate {
    /// A gate with these limits, letting no one in until told who may come.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            allowed: BTreeSet::new(),
            to_tell: BTreeSet::new(),
            pairing_open: false,
            pending: BTreeMap::new(),
            conns: BTreeMap::new(),
            close: VecDeque::new(),
            closing: BTreeSet::new(),
            waker: None,
        }
    }

    /// Replaces the allowed peers.
    pub fn set_allowed(&mut self, allowed: BTreeSet<PeerId>) {
        self.allowed = allowed;
    }

    /// Replaces the revoked devices let in to be told they were revoked (their
    /// connections are never proven: they are closed after the notice, or for
    /// being slow).
    pub fn set_to_tell(&mut self, to_tell: BTreeSet<PeerId>) {
        self.to_tell = to_tell;
    }

    /// Lets unknown peers connect (to pair) while `open`.
    pub fn set_pairing_open(&mut self, open: bool) {
        self.pairing_open = open;
    }

    /// Marks `peer`'s connections proven (it proved it holds the invite code): they
    /// are no longer closed to make room, nor for being slow.
    pub fn prove(&mut self, peer: &PeerId) {
        for c in self.conns.values_mut().filter(|c| c.peer == *peer) {
            c.proven = true;
        }
    }

    /// Closes unproven connections older than the limit allows; call now and then.
    pub fn expire(&mut self, now: Instant) {
        let limit = Duration::from_secs(self.limits.unproven_secs);
        let late: Vec<(PeerId, ConnectionId)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.proven && now.duration_since(c.since) >= limit)
            .map(|(id, c)| (c.peer, *id))
            .collect();
        self.close_later(late);
    }

    fn close_later(&mut self, conns: impl IntoIterator<Item = (PeerId, ConnectionId)>) {
        let mut any = false;
        for (peer, id) in conns {
            if self.closing.insert(id) {
                self.close.push_back((peer, id));
                any = true;
            }
        }
        if any && let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Established connections not on their way out.
    fn live(&self) -> impl Iterator<Item = (&ConnectionId, &Conn)> {
        self.conns
            .iter()
            .filter(|(id, _)| !self.closing.contains(id))
    }

    /// Makes room for a newcomer from `ip`, or refuses it (see
    /// [`crate::admission`]).
    fn admit(&mut self, peer: PeerId, ip: Option<IpAddr>) -> Result<(), ConnectionDenied> {
        let to_peer = self.live().filter(|(_, c)| c.peer == peer).count() as u32;
        if to_peer >= self.limits.per_peer {
            return Err(ConnectionDenied::new(Refused::Limit));
        }
        let held: Vec<Held<'_, ConnectionId, Option<IpAddr>>> = self
            .live()
            .map(|(id, c)| Held {
                id: *id,
                key: &c.ip,
                since: c.since,
                proven: c.proven,
            })
            .collect();
        let limits = admission::Limits {
            total: self.limits.total as usize,
            per_key: self.limits.per_ip as usize,
        };
        let victim =
            make_room(&held, &ip, limits).map_err(|()| ConnectionDenied::new(Refused::Limit))?;
        if let Some(id) = victim
            && let Some(c) = self.conns.get(&id)
        {
            let peer = c.peer;
            self.close_later([(peer, id)]);
        }
        Ok(())
    }

    fn check(
        &mut self,
        peer: PeerId,
        remote: &Multiaddr,
    ) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        if !(self.pairing_open || self.allowed.contains(&peer) || self.to_tell.contains(&peer)) {
            return Err(ConnectionDenied::new(Refused::NotInRoster(peer)));
        }
        self.admit(peer, ip_of(remote))?;
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let ip = ip_of(remote);
        let from_ip = self.pending.values().filter(|p| **p == ip).count() as u32;
        if self.pending.len() as u32 >= self.limits.pending || from_ip >= self.limits.pending_per_ip
        {
            return Err(ConnectionDenied::new(Refused::Limit));
        }
        self.pending.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer, addr)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                let ip = self
                    .pending
                    .remove(&e.connection_id)
                    .flatten()
                    .or_else(|| ip_of(e.endpoint.get_remote_address()));
                self.conns.insert(
                    e.connection_id,
                    Conn {
                        peer: e.peer_id,
                        ip,
                        since: Instant::now(),
                        proven: self.allowed.contains(&e.peer_id),
                    },
                );
            }
            FromSwarm::ConnectionClosed(e) => {
                self.conns.remove(&e.connection_id);
                self.closing.remove(&e.connection_id);
                self.close.retain(|(_, id)| *id != e.connection_id);
            }
            FromSwarm::ListenFailure(e) => {
                self.pending.remove(&e.connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, id)) = self.close.pop_front() {
            return Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/1").parse().expect("multiaddr")
    }

    fn establish(g: &mut Gate, ip: &str) -> Result<(PeerId, ConnectionId), ConnectionDenied> {
        let peer = PeerId::random();
        let id = ConnectionId::new_unchecked(rand::random::<u32>() as usize);
        g.check(peer, &addr(ip))?;
        g.conns.insert(
            id,
            Conn {
                peer,
                ip: ip_of(&addr(ip)),
                since: Instant::now(),
                proven: g.allowed.contains(&peer),
            },
        );
        Ok((peer, id))
    }

    fn closed(g: &mut Gate) -> Vec<ConnectionId> {
        let ids: Vec<ConnectionId> = g.close.drain(..).map(|(_, id)| id).collect();
        for id in &ids {
            g.conns.remove(id);
            g.closing.remove(id);
        }
        ids
    }

    #[test]
    fn strangers_never_take_the_room_of_a_device_that_proves_itself() {
        let mut g = Gate::new(Limits::PAIRING);
        g.set_pairing_open(true);
        // A flood from one address: each newcomer past the cap replaces the oldest.
        let flood: Vec<_> = (0..100)
            .map(|_| establish(&mut g, "10.0.0.9").expect("let in"))
            .collect();
        closed(&mut g);
        assert_eq!(g.conns.len() as u32, Limits::PAIRING.per_ip);
        // The joiner from the same address gets in and proves itself.
        let (joiner, jid) = establish(&mut g, "10.0.0.9").expect("the joiner gets in");
        g.prove(&joiner);
        let gone = closed(&mut g);
        assert_eq!(gone.len(), 1);
        assert!(gone[0] != jid);
        // More flooding, from everywhere: the joiner stays.
        for i in 0..200 {
            establish(&mut g, &format!("10.0.1.{}", i % 50)).expect("let in");
            closed(&mut g);
        }
        assert!(g.conns.contains_key(&jid), "the proven joiner stayed");
        assert!(g.conns.len() as u32 <= Limits::PAIRING.total);
        let from_flood = flood
            .iter()
            .filter(|(_, id)| g.conns.contains_key(id))
            .count();
        assert!(from_flood < Limits::PAIRING.per_ip as usize);
        // Unproven connections expire; proven ones do not.
        g.expire(Instant::now() + Duration::from_secs(Limits::PAIRING.unproven_secs));
        closed(&mut g);
        assert_eq!(g.conns.keys().collect::<Vec<_>>(), vec![&jid]);
    }

    #[test]
    fn proven_connections_are_never_closed_to_make_room() {
        let limits = Limits {
            total: 3,
            per_ip: 3,
            ..Limits::PAIRING
        };
        let mut g = Gate::new(limits);
        g.set_pairing_open(true);
        for _ in 0..3 {
            let (p, _) = establish(&mut g, "10.0.0.1").expect("let in");
            g.prove(&p);
        }
        assert!(
            establish(&mut g, "10.0.0.2").is_err(),
            "refused, nobody evicted"
        );
        assert!(closed(&mut g).is_empty());
    }

    #[test]
    fn strangers_are_refused_unless_pairing_is_open() {
        let mut g = Gate::new(Limits::MAIN);
        let friend = PeerId::random();
        g.set_allowed([friend].into_iter().collect());
        assert!(g.check(PeerId::random(), &addr("10.0.0.1")).is_err());
        assert!(g.check(friend, &addr("10.0.0.1")).is_ok());
    }
}
