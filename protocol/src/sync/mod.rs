//! The sync engine: a deterministic state machine that keeps one device's records in
//! step with its peers'.
//!
//! Driving contract (quinn/str0m style):
//!
//! 1. call [`Engine::handle_input`] with the current [`Now`] and one [`Input`]
//!    (network, timers), or [`Engine::execute`] with one [`Command`] (what a user
//!    asks: contacts, devices, rotation), which returns a typed [`Error`];
//! 2. drain [`Engine::poll_output`] until it returns `None`, carrying out each
//!    [`Output`] in order (an [`Output::Persist`] or [`Output::Secrets`] must be
//!    durable before the outputs after it are carried out): what the engine
//!    persists leaves only this way, so a device restarted from what it stored is
//!    the device it was;
//! 3. with [`Config::defer_frames`], when [`Engine::has_deferred`], call
//!    [`Engine::apply_deferred`] once those outputs are carried out (a sync frame
//!    answered before it is applied), and drain again;
//! 4. read [`Engine::poll_timeout`] and call `handle_input(now, Input::Timeout)` at or
//!    after that time.
//!
//! Reads go through `&self` getters ([`Engine::view`], [`Engine::replica`],
//! [`Engine::keyring`], [`Engine::roster`]), up to date after every step (and, while
//! a frame waits, up to date but for it).
//!
//! Time and randomness come in (`Now`, the seed); nothing inside reads a clock, a
//! socket, a file or the OS RNG. The engine is generic over the peer id type: the
//! simulator uses integers, the node libp2p `PeerId`s.
//!
//! Live push: new records go out as [`wire::Frame::Gossip`], each frame at most
//! [`wire::MAX_GOSSIP_BYTES`]. Catch-up: on every connection and then every
//! `recon_interval_ms` (± jitter) the engine runs range-based set reconciliation
//! ([`recon`]) with each peer over request/response frames of at most
//! [`wire::MAX_FRAME_BYTES`].

mod engine;
pub mod gc;
pub mod recon;
pub mod wire;

pub use engine::{
    Command, Config, Engine, Error, Event, GOSSIP_BURST, GOSSIP_LOST_GAP_MS, Input,
    MAX_GOSSIP_QUEUE, MAX_SENT_REMEMBERED, Now, Output, RECORD_BUDGET, RELAY_MAX_WAIT_MS,
    RELAY_QUIET_MS, RESEND_AFTER_MS, RETRY_AFTER_MS, Relation, RequestId, Stats, SyncState,
};
