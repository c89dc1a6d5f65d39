//! Command-line arguments (clap) and dispatch.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{Exit, demo, item_cmd};

/// kith keeps your XMPP contact list in sync across your own devices, with no server.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Seal or open one XEP-0473 item.
    #[command(subcommand)]
    Item(ItemCommand),
    /// Read contacts from a roster or metacontacts document.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Three in-process devices edit concurrently, exchange records in scrambled
    /// order, and end with the same list.
    Demo {
        /// Seed for the scrambling (random when absent).
        #[arg(long)]
        seed: Option<u64>,
    },
}

/// Which XEP-0510 pubsub node.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum NodeArg {
    /// urn:xmpp:contacts
    Contacts,
    /// urn:xmpp:contacts-groups
    Groups,
}

#[derive(Debug, Subcommand)]
enum ItemCommand {
    /// Print the <encrypted/> element for a <contact/>, <group/> or <reserved/> payload.
    Seal {
        /// Node the item belongs to.
        #[arg(long, value_enum)]
        node: NodeArg,
        /// File whose first line is the shared secret.
        #[arg(long)]
        secret_file: PathBuf,
        /// The secret's id, written in key='…'.
        #[arg(long)]
        key_id: String,
        /// Payload file (standard input when absent).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
    /// Print the payload of an <encrypted/> element.
    Open {
        /// File whose first line is the shared secret.
        #[arg(long)]
        secret_file: PathBuf,
        /// <encrypted/> element file (standard input when absent).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// An RFC 6121 roster (<query xmlns='jabber:iq:roster'>).
    Roster {
        /// The roster document.
        file: PathBuf,
        /// Print the resulting group and contact payloads; store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// XEP-0209 metacontacts (<storage xmlns='storage:metacontacts'>).
    Metacontacts {
        /// The metacontacts document.
        file: PathBuf,
        /// Print the resulting contact payloads; store nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Item(ItemCommand::Seal {
            node,
            secret_file,
            key_id,
            input,
        }) => item_cmd::seal(node, &secret_file, &key_id, input.as_deref()),
        Command::Item(ItemCommand::Open { secret_file, input }) => {
            item_cmd::open(&secret_file, input.as_deref())
        }
        Command::Import(ImportCommand::Roster { file, dry_run }) => {
            require_dry_run(dry_run)?;
            item_cmd::import_dry_run(&file, item_cmd::Source::Roster)
        }
        Command::Import(ImportCommand::Metacontacts { file, dry_run }) => {
            require_dry_run(dry_run)?;
            item_cmd::import_dry_run(&file, item_cmd::Source::Metacontacts)
        }
        Command::Demo { seed } => demo::run(seed),
    }
}

fn require_dry_run(dry_run: bool) -> Result<()> {
    if dry_run {
        Ok(())
    } else {
        Err(Exit::Usage("importing into a device store needs a device (`kith init`, coming with kith-node); use --dry-run to print the payloads".into()).into())
    }
}
