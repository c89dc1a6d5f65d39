//! What goes in and out of the engine: the inputs a driver feeds it, the outputs
//! it must carry out, and the events it may report.

use super::{RequestId, wire};
use crate::record::{DeviceId, ItemId, Record, Space};
use crate::replica::Rejected;
use crate::seal::Keyring;

/// Something that happened to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// A timer the engine asked for came due (or any later time).
    Timeout,
    /// A peer is connected; `device` is the device its transport authenticated
    /// (the Ed25519 key behind a libp2p `PeerId`).
    Connected {
        /// The peer.
        peer: P,
        /// Its device.
        device: DeviceId,
    },
    /// A peer is gone.
    Disconnected(P),
    /// A gossip frame from a peer.
    Gossip {
        /// Who relayed it.
        from: P,
        /// The device that delivered it: the one behind the authenticated connection
        /// it arrived on (frames carry no publisher of their own; every record in
        /// one is signed by its author).
        source: DeviceId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A request from a peer; answer with [`Output::Respond`] carrying `id`.
    Request {
        /// The peer.
        from: P,
        /// The driver's handle for the response channel.
        id: u64,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// The answer to one of our requests.
    Response {
        /// Our request id.
        id: RequestId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// One of our requests failed (timeout, connection closed).
    RequestFailed {
        /// Our request id.
        id: RequestId,
    },
    /// Gossip to this peer was dropped on the way (the transport's queue to it was
    /// full, or a frame waited too long): what it missed goes by reconciliation, at
    /// once rather than at the next periodic one.
    GossipLost(P),
    /// Someone wants to know where the devices stand now (`kith status`): every
    /// connected peer not in an exchange is reconciled with at once, refreshing
    /// [`Engine::sync_state`].
    CheckNow,
    /// A response to this peer's request did not reach it (the transport says so):
    /// the records it carried are no longer counted as sent lately, and a
    /// reconciliation with the peer follows at once.
    ResponseLost(P),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Store these records durably before carrying out the outputs that follow.
    Persist(Vec<Record>),
    /// The keyring changed (secrets received, rotated, revoked): store it durably,
    /// replacing the one stored, before carrying out the outputs that follow.
    Secrets(Keyring),
    /// Tombstones every device acknowledged: delete `collect` from the store but
    /// remember their versions; forget the memory of `forget` altogether.
    Collect {
        /// Tombstones to collect.
        collect: Vec<(Space, ItemId)>,
        /// Collected tombstones to forget.
        forget: Vec<(Space, ItemId)>,
    },
    /// Publish a gossip frame to every peer.
    Publish(Vec<u8>),
    /// Send a request to a peer.
    Request {
        /// The peer.
        to: P,
        /// Id to give back in [`Input::Response`] or [`Input::RequestFailed`].
        id: RequestId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Answer the request the driver gave the id of.
    Respond {
        /// The id from [`Input::Request`].
        id: u64,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// For the application.
    Event(Event<P>),
}

/// What the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<P> {
    /// The merged view changed.
    Changed,
    /// A reconciliation with `peer` completed.
    Synced {
        /// The peer.
        peer: P,
        /// Request/response round trips it took.
        round_trips: u32,
    },
    /// A record was refused.
    Rejected {
        /// Who sent it.
        peer: P,
        /// Why.
        reason: Rejected,
    },
    /// Secrets addressed here could not be unwrapped.
    KeysRefused(String),
    /// A frame could not be decoded.
    BadFrame {
        /// Who sent it.
        peer: P,
        /// Why.
        reason: wire::Error,
    },
}
