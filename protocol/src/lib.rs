//! kith-protocol: the sans-IO core of kith, everything a device needs to turn a
//! contact edit into sealed, signed, versioned records, to replicate them, and to turn
//! any set of records back into the same merged contact list on every device.
//!
//! Layers, bottom up (each knows only the ones below):
//!
//! * [`xml`], [`jid`], [`item`]: XEP-0510 payloads and their XML, with hard limits;
//! * [`seal`]: XEP-0473 `<encrypted/>` items, shared secrets, padding;
//! * [`ox`]: XEP-0373 device certificates and `<signcrypt/>` for secrets;
//! * [`clock`], [`record`]: hybrid logical clocks and signed records (CBOR);
//! * [`replica`], [`roster`], [`keys`]: winning records per item, the device roster
//!   and secrets addressed to devices, all replicated as records;
//! * [`contacts`]: the merged view, the commands that change it, one device's book;
//! * [`sync`]: the engine (gossip, reconciliation, rotation, tombstone collection);
//! * [`import`], [`export`]: rosters and metacontacts in; rosters out (RFC 6121,
//!   minimal or full, alone or in a XEP-0227 document).
//!
//! Nothing here reads a clock, opens a socket or a file, or draws from the OS RNG:
//! time and randomness are arguments, so the same code runs under tokio (`kith-node`)
//! and in virtual time (`kith-sim`). The exception is OpenPGP public-key work in
//! [`ox`]: key generation and the ephemeral keys of encryption use sequoia's own
//! randomness; neither feeds the merge, and the simulator can swap the key wrap for a
//! deterministic stand-in. Errors are typed per layer; no input from a peer panics.
#![forbid(unsafe_code)]

mod cbor;
#[cfg(any(test, feature = "clear-wrap"))]
pub mod clear_wrap;
pub mod clock;
pub mod contacts;
mod contained;
pub mod export;
pub mod hex;
pub mod import;
pub mod item;
pub mod jid;
pub mod keys;
pub mod ox;
pub mod record;
pub mod replica;
pub mod roster;
pub mod seal;
pub mod spread;
pub mod sync;
pub mod text;
pub mod xml;
