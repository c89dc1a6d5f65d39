//! The `kith` command line.
//!
//! Exit codes: 0 success; 1 the command ran and was refused (no such contact, a used
//! invite code, devices that disagree in the demo); 2 wrong usage; 3 bad input
//! (malformed JID, document, code or data); 4 a file could not be read; 5 a peer
//! could not be reached, or the node could not listen; 6 the data directory or store failed (not initialised,
//! already initialised, in use by another node, corrupt, disk full); 7 the command
//! needs a running node.

mod bench;
mod cli;
mod client_cmd;
mod cluster;
mod demo;
mod done;
mod history_cmd;
mod item_cmd;
mod ops;
mod output;
mod pair_cmd;
mod passphrase;
mod run_cmd;
mod status_cmd;
mod table;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Exit code of a node that stopped on an error: 6 when its store failed, 5 when the
/// network could not be set up (an address it cannot listen on, mDNS).
pub(crate) fn node_exit(e: &kith_node::node::Error) -> u8 {
    match e {
        kith_node::node::Error::Store(_) | kith_node::node::Error::Failed(_) => 6,
        _ => 5,
    }
}

/// Errors that choose the exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Exit {
    /// Bad input: exit 3.
    #[error("{0}")]
    Input(String),
    /// A file could not be read: exit 4.
    #[error("{0}")]
    Io(String),
    /// The command's result is a failure: exit 1.
    #[error("{0}")]
    Failed(String),
    /// Wrong usage that clap cannot see: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Any documented exit code.
    #[error("{1}")]
    Code(u8, String),
    /// Standard output was closed by its reader: stop quietly, exit 0.
    #[error("standard output closed")]
    ClosedPipe,
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Exit>() {
                Some(Exit::ClosedPipe) => return ExitCode::SUCCESS,
                Some(Exit::Failed(_)) | None => 1,
                Some(Exit::Usage(_)) => 2,
                Some(Exit::Input(_)) => 3,
                Some(Exit::Io(_)) => 4,
                Some(Exit::Code(c, _)) => *c,
            };
            // Nothing more to do if standard error is closed too.
            let _ = writeln!(std::io::stderr(), "kith: {e:#}");
            ExitCode::from(code)
        }
    }
}
