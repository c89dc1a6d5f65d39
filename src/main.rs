//! The `kith` command line. Exit codes are chosen in [`exit`].

mod bench;
mod cli;
mod client_cmd;
mod cluster;
mod demo;
mod done;
mod exit;
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

pub(crate) use exit::Exit;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = Exit::of(&e);
            if code == 0 {
                return ExitCode::SUCCESS;
            }
            // Nothing more to do if standard error is closed too.
            let _ = writeln!(std::io::stderr(), "kith: {e:#}");
            ExitCode::from(code)
        }
    }
}
