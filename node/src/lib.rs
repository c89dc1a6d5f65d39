//! kith's device node: the sans-IO [`kith_protocol::sync::Engine`] driven by tokio,
//! with libp2p (TCP + Noise + yamux, gossipsub, request-response, identify) between
//! devices, XEP-0174 discovery through mdns-sd, an XEP-0174 XML stream listener, a
//! SQLite store, and a Unix control socket for the `kith` CLI.
//!
//! * [`Device`]: a data directory opened (keys, store, engine); used directly by
//!   the CLI when no node runs.
//! * [`node::start`]: the node task around a `Device`, and its [`node::Handle`].
//! * [`join::join`]: `kith pair join`.

pub mod admission;
pub mod api;
pub mod device;
pub mod discovery;
pub mod gate;
pub mod join;
pub mod memory;
pub mod net;
pub mod node;
pub mod pair;
pub mod service;
mod standing;
pub mod store;
pub mod xmpp;

pub use device::Device;
