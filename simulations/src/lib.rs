//! kith-sim: many `kith_protocol` sync engines in virtual time, under message loss,
//! duplication and reordering, partitions, churn, crash-restarts and clock skew.
//!
//! [`world::World`] is the discrete-event simulator (one seeded RNG, one event
//! queue); [`scenario::run`] plays a [`scenario::Scenario`] and checks that every
//! device ends with the same records and the same list, that no acknowledged write is
//! lost and that no deleted item comes back; [`meet`] measures offline-first
//! meshes (devices online now and then, with or without an always-on relay);
//! [`plot`] draws sweeps as SVG.

pub mod meet;
pub mod plot;
pub mod scenario;
pub mod world;
