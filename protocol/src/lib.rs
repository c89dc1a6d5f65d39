//! kith-protocol: the sans-IO core of kith.
#![forbid(unsafe_code)]

pub mod clock;
pub mod contacts;
pub mod import;
pub mod item;
pub mod jid;
pub mod keys;
pub mod ox;
pub mod record;
pub mod replica;
pub mod roster;
pub mod seal;
pub mod sync;
pub mod xml;
