//! The `kith` command line.
//!
//! Exit codes: 0 success; 1 the command ran but its result is a failure (the demo's
//! devices disagree); 2 wrong usage (clap's own code); 3 bad input (malformed,
//! undecryptable or invalid data); 4 a file could not be read.

mod cli;
mod demo;
mod item_cmd;

use std::process::ExitCode;

use clap::Parser;

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
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<Exit>() {
                Some(Exit::Failed(_)) | None => 1,
                Some(Exit::Usage(_)) => 2,
                Some(Exit::Input(_)) => 3,
                Some(Exit::Io(_)) => 4,
            };
            eprintln!("kith: {e:#}");
            ExitCode::from(code)
        }
    }
}
