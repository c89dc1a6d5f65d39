//! The XEP-0223-style whitelist at the transport: a connection is refused right after
//! the Noise handshake (before any other protocol runs on it) unless its peer is an
//! active roster device, or a pairing is open. It also bounds connections: at most
//! [`MAX_CONNECTIONS`] in all and [`MAX_PER_PEER`] to one peer.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Most connections established at once.
pub const MAX_CONNECTIONS: u32 = 128;
/// Most connections to one peer.
pub const MAX_PER_PEER: u32 = 4;

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

/// The gate.
#[derive(Debug, Default)]
pub struct Gate {
    allowed: BTreeSet<PeerId>,
    pairing_open: bool,
    established: BTreeMap<PeerId, u32>,
    total: u32,
}

impl Gate {
    /// Replaces the allowed peers.
    pub fn set_allowed(&mut self, allowed: BTreeSet<PeerId>) {
        self.allowed = allowed;
    }

    /// Lets unknown peers connect (to pair) while `open`.
    pub fn set_pairing_open(&mut self, open: bool) {
        self.pairing_open = open;
    }

    fn check(&self, peer: PeerId) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        if !(self.pairing_open || self.allowed.contains(&peer)) {
            return Err(ConnectionDenied::new(Refused::NotInRoster(peer)));
        }
        if self.total >= MAX_CONNECTIONS
            || self.established.get(&peer).copied().unwrap_or(0) >= MAX_PER_PEER
        {
            return Err(ConnectionDenied::new(Refused::Limit));
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.check(peer)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                *self.established.entry(e.peer_id).or_default() += 1;
                self.total += 1;
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(n) = self.established.get_mut(&e.peer_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.established.remove(&e.peer_id);
                    }
                }
                self.total = self.total.saturating_sub(1);
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

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
