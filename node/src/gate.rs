//! The XEP-0223-style whitelist at the transport: a connection is refused right after
//! the Noise handshake (before any other protocol runs on it) unless its peer is an
//! active roster device, or a pairing is open.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("peer {0} is not in the roster")]
pub struct NotInRoster(PeerId);

/// The gate.
#[derive(Debug, Default)]
pub struct Gate {
    allowed: BTreeSet<PeerId>,
    pairing_open: bool,
}

impl Gate {
    /// Replaces the allowed peers.
    pub fn set_allowed(&mut self, allowed: BTreeSet<PeerId>) {
        self.allowed = allowed;
    }

    /// Whether `peer` is allowed as a roster device.
    pub fn is_allowed(&self, peer: &PeerId) -> bool {
        self.allowed.contains(peer)
    }

    /// Lets unknown peers connect (to pair) while `open`.
    pub fn set_pairing_open(&mut self, open: bool) {
        self.pairing_open = open;
    }

    fn check(&self, peer: PeerId) -> Result<dummy::ConnectionHandler, ConnectionDenied> {
        if self.pairing_open || self.allowed.contains(&peer) {
            Ok(dummy::ConnectionHandler)
        } else {
            Err(ConnectionDenied::new(NotInRoster(peer)))
        }
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

    fn on_swarm_event(&mut self, _: FromSwarm) {}

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
