//! Integration tests of the `kith` binary: one test target, split into modules.

mod cli;
mod gpg;
mod util;
