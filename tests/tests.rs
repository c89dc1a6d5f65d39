//! Integration tests of the `kith` binary: one test target, split into modules.

mod capture;
mod chaos;
mod cli;
mod disk;
mod durability;
mod errors;
mod floods;
mod gpg;
mod lan;
mod loopback;
mod nat;
mod netns;
mod nodes;
mod output;
mod outsider;
mod pairing;
mod relay;
mod revoked;
mod roster_export;
mod standing;
mod stories;
mod transports;
mod util;
mod xmpp;
