//! Command-line arguments (clap) and dispatch.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kith_node::api::{ImportFormat, Request};
use kith_node::net::Multiaddr;

use crate::{
    Exit, bench, client_cmd, demo, history_cmd, item_cmd, ops, pair_cmd, run_cmd, status_cmd,
};

/// kith keeps your XMPP contact list in sync across your own devices, with no server.
#[derive(Debug, Parser)]
#[command(name = "kith", version, about)]
pub(crate) struct Cli {
    /// The device's data directory (default: the XDG data directory, e.g.
    /// ~/.local/share/kith).
    #[arg(long, global = true, env = "KITH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates this device: keys, the roster, the first secrets.
    Init {
        /// The account the contacts belong to.
        #[arg(long)]
        jid: String,
        /// A name for this device (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Seal the keys and secrets under a passphrase (Argon2id), asked on the
        /// terminal or read from the file named by KITH_PASSPHRASE_FILE; every command
        /// that opens the device then needs it.
        #[arg(long)]
        passphrase: bool,
    },
    /// Runs the node in the foreground (logs through RUST_LOG).
    Run(RunArgs),
    /// Contacts.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Adds a device to this account.
    #[command(subcommand)]
    Pair(PairCommand),
    /// The devices of this account.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The XEP-0473 secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// XMPP clients approved to receive the secrets (see docs/xmpp.md).
    #[command(subcommand)]
    Client(ClientCommand),
    /// The passphrase sealing this device's keys and secrets (with the node stopped).
    #[command(subcommand)]
    Passphrase(PassphraseCommand),
    /// Recent changes of the contacts (all, or one contact's), newest first, with
    /// the device that made each and when.
    Log {
        /// Only the changes of the contact with this JID.
        jid: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Edits that lost to a concurrent edit of the same field (or deletions an edit
    /// overruled), per contact; `kith contact restore` brings one back.
    Conflicts {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// This device, its roster, peers and counts.
    Status {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// The engine's counts too (records per space, tombstones, held and set
        /// aside records).
        #[arg(long, short)]
        verbose: bool,
    },
    /// Reads contacts from a roster or metacontacts document into this device.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Writes contacts out.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Three devices on loopback: pairing, edits, a concurrent edit, a revocation.
    Demo {
        /// Keep the devices' data directories in this directory (default: a
        /// temporary one, removed at the end).
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Measures sync between nodes on loopback and prints the figures.
    Bench(bench::Args),
    /// Seal or open one XEP-0473 item.
    #[command(subcommand)]
    Item(ItemCommand),
}

/// A `--peer` address the node can dial: an IPv4 or IPv6 address with a TCP port,
/// or a UDP port and `quic-v1` (optionally ending in `/p2p/ID`); no DNS names, and
/// not an address no dial can go to (`0.0.0.0/8`, `::`, multicast, broadcast, IPv6
/// link-local, port 0, also as IPv4-mapped IPv6).
fn dialable(text: &str) -> Result<Multiaddr, String> {
    use kith_node::net::Protocol;
    let addr: Multiaddr = text.parse().map_err(|e| format!("{e}"))?;
    let parts: Vec<Protocol> = addr.iter().collect();
    let nowhere_v4 =
        |ip: std::net::Ipv4Addr| ip.octets()[0] == 0 || ip.is_multicast() || ip.is_broadcast();
    let nowhere = parts.iter().any(|p| match p {
        Protocol::Ip4(ip) => nowhere_v4(*ip),
        // An IPv6 link-local address means nothing without an interface, which a
        // multiaddr does not name.
        Protocol::Ip6(ip) => {
            ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_unicast_link_local()
                || ip.to_ipv4_mapped().is_some_and(nowhere_v4)
        }
        Protocol::Tcp(port) | Protocol::Udp(port) => *port == 0,
        _ => false,
    });
    if nowhere {
        return Err(
            "an address a dial can reach: not 0.x.x.x, ::, multicast, broadcast, IPv6 \
             link-local (fe80::) or port 0"
                .to_owned(),
        );
    }
    let ok = match parts.as_slice() {
        [
            Protocol::Ip4(_) | Protocol::Ip6(_),
            Protocol::Tcp(_),
            rest @ ..,
        ] => {
            matches!(rest, [] | [Protocol::P2p(_)])
        }
        [
            Protocol::Ip4(_) | Protocol::Ip6(_),
            Protocol::Udp(_),
            Protocol::QuicV1,
            rest @ ..,
        ] => {
            matches!(rest, [] | [Protocol::P2p(_)])
        }
        _ => false,
    };
    if ok {
        Ok(addr)
    } else {
        Err(
            "give /ip4/ADDR/tcp/PORT, /ip6/ADDR/tcp/PORT or /ip4|ip6/ADDR/udp/PORT/quic-v1 \
             (no DNS names)"
                .to_owned(),
        )
    }
}

/// Options of `kith run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// libp2p listen address, TCP (/ip4/IP/tcp/PORT) or QUIC (/ip4/IP/udp/PORT/quic-v1),
    /// IPv4 or IPv6 (repeatable; default: both transports on every IPv4 and IPv6
    /// address). Port 0: a port that changes daily and with every rotation of the
    /// secrets; another port stays.
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub(crate) listen: Vec<Multiaddr>,
    /// A peer to dial whatever discovery finds (repeatable): /ip4/ADDR/tcp/PORT,
    /// /ip6/ADDR/tcp/PORT, /ip4/ADDR/udp/PORT/quic-v1 or /ip6/ADDR/udp/PORT/quic-v1
    /// (no DNS names).
    #[arg(long = "peer", value_name = "MULTIADDR", value_parser = dialable)]
    pub(crate) peers: Vec<Multiaddr>,
    /// No mDNS: configured and remembered peers only.
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Interface mDNS uses (repeatable; default all). Use `lo` to stay on this machine.
    #[arg(long = "mdns-interface", value_name = "IF")]
    pub(crate) mdns_interfaces: Vec<String>,
    /// TCP port of the XEP-0174 stream listener (default: one that changes with the
    /// libp2p port).
    #[arg(long)]
    pub(crate) xmpp_port: Option<u16>,
    /// Serve pubsub on the stream port to other users and machines too (default:
    /// the node's own user on this machine; disco is always served; retract stays
    /// the node's user's).
    #[arg(long)]
    pub(crate) xmpp_lan: bool,
    /// How often tombstones are acknowledged and, once every device has, collected
    /// and erased from the disk (e.g. 30s, 5m; default 1m, from 1s to 1d).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) ack_interval: Option<Duration>,
    /// How the log on standard error is written: `text` for people (colours only on
    /// a terminal) or `json`, one object a line, for journald and log collectors.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: LogFormat,
}

/// The log's format (`kith run --log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object a line.
    Json,
}

#[derive(Debug, Subcommand)]
enum PassphraseCommand {
    /// Seals the keys and secrets under a new passphrase (asked twice on the
    /// terminal, or read from the file KITH_NEW_PASSPHRASE_FILE names); the current
    /// one is needed if there is one.
    Set,
    /// Writes the keys and secrets in clear again.
    Remove,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Approves a client's OpenPGP certificate: it receives the node secrets
    /// (XEP-0473) when it connects to the stream port.
    Add {
        /// The client's public certificate (binary or ASCII-armoured).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
    /// Approves a client that published its certificate on the stream
    /// (XEP-0373); `kith client list` shows it as waiting.
    Approve {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// The clients, approved or waiting.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Removes a client; if it was approved the secrets rotate, so it can read
    /// nothing new.
    Rm {
        /// Its fingerprint.
        fingerprint: String,
    },
}

#[derive(Debug, Subcommand)]
enum ContactCommand {
    /// Adds a contact.
    Add {
        /// Its JID.
        jid: String,
        /// Name to show.
        #[arg(long)]
        name: Option<String>,
        /// A group (repeatable; created when missing).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Changes a contact.
    Edit {
        /// A JID of the contact.
        jid: String,
        /// New name.
        #[arg(long, conflicts_with = "clear_name")]
        name: Option<String>,
        /// Removes the name.
        #[arg(long)]
        clear_name: bool,
        /// Adds a group (repeatable).
        #[arg(long = "add-group")]
        add_groups: Vec<String>,
        /// Leaves a group (repeatable).
        #[arg(long = "remove-group")]
        remove_groups: Vec<String>,
        /// Adds a JID (repeatable).
        #[arg(long = "add-jid")]
        add_jids: Vec<String>,
        /// Removes a JID (repeatable).
        #[arg(long = "remove-jid")]
        remove_jids: Vec<String>,
        /// Lets `--add-jid` take another contact's address, merging the two contacts
        /// into one (refused otherwise).
        #[arg(long)]
        merge: bool,
    },
    /// Deletes a contact.
    Rm {
        /// A JID of the contact.
        jid: String,
    },
    /// Brings back the value that lost in a conflict of this contact (as `kith
    /// conflicts` numbers them), as a new edit; restoring an overruled deletion
    /// deletes the contact.
    Restore {
        /// A JID of the contact.
        jid: String,
        /// Which conflict, numbered from 1 (the newest) as `kith conflicts` lists them.
        #[arg(default_value_t = 1)]
        n: usize,
    },
    /// Lists contacts.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Only the contacts in this group, found as `group rename` finds it (case,
        /// spaces, Unicode form and invisible characters ignored; every group of
        /// that name).
        #[arg(long)]
        group: Option<String>,
        /// Only the contacts whose name or an address holds this text (case ignored).
        #[arg(long)]
        search: Option<String>,
    },
    /// Shows one contact.
    Show {
        /// A JID of the contact, or its name when no other contact has it.
        jid: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Creates a group.
    Add {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Renames a group.
    Rename {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Deletes a group (its contacts stay).
    Rm {
        /// Its name.
        name: String,
    },
    /// Lists groups.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PairCommand {
    /// Prints a one-time code for a new device and waits until it joins (needs
    /// `kith run`).
    Invite {
        /// How long the code stays valid: 90s, 10m, 2h, 1d (at most 7 days).
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        ttl: Duration,
        /// Print the code and return, without waiting for the device to join.
        #[arg(long)]
        no_wait: bool,
        /// Also print the code (with its addresses) as a QR code, for a phone.
        #[arg(long)]
        qr: bool,
        /// For a relay device (`pair join --relay`): it keeps and forwards the
        /// sealed records and is never sent a secret. A device joining with this
        /// code must be a relay, and one joining with another code cannot be.
        #[arg(long)]
        relay: bool,
    },
    /// Joins the account of the device that printed CODE; creates this device.
    Join {
        /// The code `kith pair invite` printed: K7QX2-M9PDA (found by mDNS), or with
        /// addresses after @ (from another network).
        code: String,
        /// A name for this device (default: the host name).
        #[arg(long)]
        name: Option<String>,
        /// Join as a relay (with a code from `pair invite --relay`): an always-on
        /// device (a home server, a VPS) that keeps and forwards the account's
        /// sealed records and is never sent a secret, so it cannot read a contact.
        #[arg(long)]
        relay: bool,
        /// Seal this device's keys and secrets under a passphrase (as `init
        /// --passphrase`).
        #[arg(long)]
        passphrase: bool,
        /// Do not look for the inviting device on mDNS (the code must carry
        /// addresses).
        #[arg(long)]
        no_mdns: bool,
        /// Look on mDNS on this interface only (repeatable; default: all).
        #[arg(long = "mdns-interface", value_name = "IF")]
        mdns_interfaces: Vec<String>,
    },
    /// Lists the invitations: open ones, and those that ended within the hour.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Cancels an open invitation (by its code or its first two symbols), or all.
    Cancel {
        /// The code, or its first two symbols.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        code: Option<String>,
        /// Every open invitation.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Lists the roster.
    List {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Revokes a device (by name or id prefix): it gets nothing new, secrets rotate.
    Revoke {
        /// Name or id prefix.
        device: String,
    },
    /// Gives a device (by name or id prefix) a new name, on every device.
    Rename {
        /// Name or id prefix.
        device: String,
        /// The new name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// New secrets for both nodes, sent to every device; every item re-sealed.
    Rotate,
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
        /// Names in the document replace names kept here (by default an import
        /// only adds: new contacts, addresses and groups).
        #[arg(long)]
        replace: bool,
    },
    /// XEP-0209 metacontacts (<storage xmlns='storage:metacontacts'>).
    Metacontacts {
        /// The metacontacts document.
        file: PathBuf,
        /// Print the resulting contact payloads; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Names in the document replace names kept here.
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ExportCommand {
    /// An RFC 6121 roster: by default the minimal one XEP-0510 §5 keeps on the
    /// server (addresses only, one item each).
    Roster {
        /// Each item with its contact's name and groups, for a server or client
        /// that does not read XEP-0510.
        #[arg(long)]
        full: bool,
        /// Inside a XEP-0227 document for this account's user, for a server's
        /// import (Prosody loads it in kith's tests; see docs/rosters.md); every
        /// item with subscription='none'.
        #[arg(long)]
        xep0227: bool,
    },
}

/// Reads `90s`, `10m`, `2h`, `1d` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 10m, 2h or 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

fn default_data_dir() -> Result<PathBuf> {
    directories::ProjectDirs::from("", "", "kith")
        .map(|p| p.data_dir().to_owned())
        .ok_or_else(|| {
            Exit::Usage("no home directory: give --data-dir or set KITH_DATA_DIR".into()).into()
        })
}

pub(crate) fn run(cli: Cli) -> Result<()> {
    let dir = match &cli.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    match cli.command {
        Command::Init {
            jid,
            name,
            passphrase,
        } => ops::init(&dir, &jid, name, passphrase),
        Command::Run(args) => run_cmd::run(&dir, args),
        Command::Passphrase(PassphraseCommand::Set) => crate::passphrase::change(&dir, true),
        Command::Passphrase(PassphraseCommand::Remove) => crate::passphrase::change(&dir, false),
        Command::Contact(c) => match c {
            ContactCommand::Add { jid, name, groups } => {
                ops::done(&dir, Request::AddContact { jid, name, groups })
            }
            ContactCommand::Edit {
                jid,
                name,
                clear_name,
                add_groups,
                remove_groups,
                add_jids,
                remove_jids,
                merge,
            } => ops::done(
                &dir,
                Request::EditContact {
                    jid,
                    name,
                    clear_name,
                    add_groups,
                    remove_groups,
                    add_jids,
                    remove_jids,
                    merge,
                },
            ),
            ContactCommand::Rm { jid } => ops::remove_contact(&dir, jid),
            ContactCommand::Restore { jid, n } => history_cmd::restore(&dir, jid, n),
            ContactCommand::List {
                json,
                group,
                search,
            } => ops::contacts(&dir, json, group.as_deref(), search.as_deref()),
            ContactCommand::Show { jid, json } => ops::contact(&dir, jid, json),
        },
        Command::Group(g) => match g {
            GroupCommand::Add { name, description } => {
                ops::done(&dir, Request::AddGroup { name, description })
            }
            GroupCommand::Rename { name, new_name } => {
                ops::done(&dir, Request::RenameGroup { name, new_name })
            }
            GroupCommand::Rm { name } => ops::done(&dir, Request::RemoveGroup { name }),
            GroupCommand::List { json } => ops::groups(&dir, json),
        },
        Command::Pair(PairCommand::Invite {
            ttl,
            no_wait,
            qr,
            relay,
        }) => pair_cmd::invite(&dir, ttl, relay, !no_wait, qr),
        Command::Pair(PairCommand::Join {
            code,
            name,
            relay,
            passphrase,
            no_mdns,
            mdns_interfaces,
        }) => pair_cmd::join(
            &dir,
            &code,
            name,
            relay,
            passphrase,
            kith_node::join::Find {
                mdns: !no_mdns,
                interfaces: mdns_interfaces,
            },
        ),
        Command::Pair(PairCommand::List { json }) => pair_cmd::list(&dir, json),
        Command::Pair(PairCommand::Cancel { code, .. }) => {
            ops::done(&dir, Request::CancelInvites { code })
        }
        Command::Device(DeviceCommand::List { json }) => status_cmd::devices(&dir, json),
        Command::Device(DeviceCommand::Rename { device, name }) => {
            ops::done(&dir, Request::RenameDevice { device, name })
        }
        Command::Device(DeviceCommand::Revoke { device }) => {
            ops::done(&dir, Request::Revoke { device })
        }
        Command::Secret(SecretCommand::Rotate) => ops::done(&dir, Request::Rotate),
        Command::Client(ClientCommand::Add { cert }) => client_cmd::add(&dir, &cert),
        Command::Client(ClientCommand::Approve { fingerprint }) => {
            client_cmd::approve(&dir, fingerprint)
        }
        Command::Client(ClientCommand::List { json }) => client_cmd::list(&dir, json),
        Command::Client(ClientCommand::Rm { fingerprint }) => client_cmd::remove(&dir, fingerprint),
        Command::Status { json, verbose } => status_cmd::status(&dir, json, verbose),
        Command::Log { jid, limit, json } => history_cmd::log(&dir, jid, limit, json),
        Command::Conflicts { json } => history_cmd::conflicts(&dir, json),
        Command::Import(ImportCommand::Roster {
            file,
            dry_run,
            replace,
        }) => {
            if dry_run {
                item_cmd::import_dry_run(&file, item_cmd::Source::Roster)
            } else {
                ops::import(&dir, &file, ImportFormat::Roster, replace)
            }
        }
        Command::Import(ImportCommand::Metacontacts {
            file,
            dry_run,
            replace,
        }) => {
            if dry_run {
                item_cmd::import_dry_run(&file, item_cmd::Source::Metacontacts)
            } else {
                ops::import(&dir, &file, ImportFormat::Metacontacts, replace)
            }
        }
        Command::Export(ExportCommand::Roster { full, xep0227 }) => {
            ops::export(&dir, full, xep0227)
        }
        Command::Demo { keep } => demo::run(keep),
        Command::Bench(args) => bench::run(args),
        Command::Item(ItemCommand::Seal {
            node,
            secret_file,
            key_id,
            input,
        }) => item_cmd::seal(node, &secret_file, &key_id, input.as_deref()),
        Command::Item(ItemCommand::Open { secret_file, input }) => {
            item_cmd::open(&secret_file, input.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_units_and_refuse_nonsense() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
    }
}
