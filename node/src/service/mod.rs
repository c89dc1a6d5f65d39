//! Answers control [`Request`]s on a [`Device`] with typed answers, commands through
//! the engine (so that what they write is persisted, then gossiped when a node runs).

use std::collections::{BTreeMap, BTreeSet};

mod groups;
mod history;
mod pairing;
mod roster;
mod status;

use crate::api::Answer;
use crate::api::answer::{
    Changes, Checking, Contact, ContactChanged, ContactList, ContactRemoved, Done, Exported,
    Imported, OtherIdentity, Removed, Rotated,
};
use kith_protocol::contacts::{Command, ContactEdit, Error as ContactsError, MergedContact, View};
use kith_protocol::item;
use kith_protocol::jid::BareJid;
use kith_protocol::record::DeviceId;
use kith_protocol::sync;
use kith_protocol::{export, import};
use libp2p::Multiaddr;

use crate::api::{Error, ErrorKind, ImportFormat, Request};
use crate::device::Device;

/// Fewest contacts imported per engine command (one progress step). Each command
/// rebuilds the merged view, so a large import goes in about 20 steps instead.
pub const IMPORT_CHUNK: usize = 500;
/// Longest invite lifetime, seconds.
pub const MAX_INVITE_TTL_SECS: u64 = 7 * 24 * 3600;

/// What the node knows of the network, for status and invites.
#[derive(Debug, Clone, Default)]
pub struct NetInfo {
    /// Whether a node is running (false when the CLI works on the store alone).
    pub online: bool,
    /// Addresses the node listens on.
    pub listen: Vec<Multiaddr>,
    /// Addresses of the pairing listener (what invite codes carry).
    pub pair_listen: Vec<Multiaddr>,
    /// Connected roster devices and the address of each connection.
    pub connected: BTreeMap<DeviceId, String>,
    /// The XEP-0174 port, when serving.
    pub xmpp_port: Option<u16>,
    /// The advertised instance (`label@machine`), the stream's address, when serving.
    pub xmpp_instance: Option<String>,
    /// What AutoNAT concluded (`public`, `private`, `unknown`), once a probe ended.
    pub reachable: Option<String>,
    /// The relay devices holding a reservation for this device.
    pub relayed_by: Vec<DeviceId>,
}

pub(crate) fn input_err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Input, e.to_string())
}

pub(crate) fn refused(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Refused, e.to_string())
}

/// A name, group name or description given on the command line: not empty, no
/// control characters, within XEP-0510's limit (exit 3 otherwise).
fn text(what: &str, value: Option<&str>) -> Result<(), Error> {
    let Some(v) = value else { return Ok(()) };
    if item::is_blank(v) {
        return Err(input_err(format!(
            "{what} cannot be empty (or only spaces, invisible characters and marks)"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(input_err(format!("{what} cannot hold control characters")));
    }
    if v.chars().any(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
        return Err(input_err(format!(
            "{what} cannot hold U+FFFE or U+FFFF (not characters: XML cannot carry them)"
        )));
    }
    if v.len() > item::MAX_VALUE_BYTES {
        return Err(input_err(format!(
            "{what} is {} bytes, more than the limit of {}",
            v.len(),
            item::MAX_VALUE_BYTES
        )));
    }
    Ok(())
}

/// Group names given on the command line: each as [`text`], at most `max` of them.
fn names(what: &str, values: &[String], max: usize) -> Result<(), Error> {
    if values.len() > max {
        return Err(input_err(format!("at most {max} {what} at once")));
    }
    values
        .iter()
        .try_for_each(|v| text("a group name", Some(v)))
}

/// A JID as typed: a bare JID, or an RFC 5122 `xmpp:` URI of one (its query and
/// fragment left out).
fn jid(text: &str) -> Result<BareJid, Error> {
    let bare = match text.strip_prefix("xmpp:") {
        Some(rest) if rest.starts_with("//") => {
            return Err(input_err(format!(
                "{text:?}: an xmpp: URI with an authority is not a contact's address"
            )));
        }
        Some(rest) => rest.split(['?', '#']).next().unwrap_or(rest),
        None => text,
    };
    BareJid::parse(bare).map_err(|e| input_err(format!("{text:?} is not a JID: {e}")))
}

pub(crate) fn iso(ms: u64) -> String {
    kith_protocol::clock::WallTime(ms).to_xep0082()
}

/// A contact as the API gives it.
pub fn contact_of(view: &View, c: &MergedContact) -> Contact {
    let mut groups: Vec<String> = c
        .contact
        .groups
        .iter()
        .filter_map(|g| view.groups().get(&g.id).map(|e| e.group.name.clone()))
        .collect();
    groups.sort_unstable();
    Contact {
        id: c.id.to_string(),
        name: c.contact.name.clone(),
        jids: jids_of(c),
        other_identities: c
            .contact
            .identities
            .iter()
            .filter(|i| i.kind != "jid")
            .map(|i| OtherIdentity {
                kind: i.kind.to_string(),
                value: i.value.clone(),
            })
            .collect(),
        groups,
        items: c.member_count(),
        conflicts: c.lost.len(),
        updated: iso(c.version.hlc.wall_ms),
    }
}

/// A contact's XMPP addresses (its identities of type `jid`), as text.
fn jids_of(c: &MergedContact) -> Vec<String> {
    c.contact
        .identities
        .iter()
        .filter(|i| i.kind == "jid")
        .map(|i| i.value.clone())
        .collect()
}

/// Why a relay device refuses a request about contacts, groups, secrets or
/// clients, or a change to the roster.
pub const RELAY_REFUSES: &str = "this device is a relay: it keeps the account's sealed \
     records for the other devices and holds no secret, so it cannot read or change \
     contacts or groups, nor invite, rename or revoke devices, rotate secrets or \
     approve clients (use a full device)";

impl Device {
    /// Answers one request. `progress` hears how far an import got.
    pub fn handle(
        &mut self,
        request: Request,
        net: &NetInfo,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Answer, Error> {
        if request.changes_something()
            && let Some(why) = self.revoked_here()
        {
            return Err(refused(why));
        }
        if !request.relay_answers() && self.is_relay() {
            return Err(refused(RELAY_REFUSES));
        }
        match request {
            Request::Status => Ok(self.status(net)?.into()),
            // Nothing changes a device no node runs but the commands given to it.
            Request::Wait { .. } => Ok(Changes {
                changes: self.changes,
                contacts: self.engine.view().contact_count() as u64,
                index_behind: self.index_behind(),
            }
            .into()),
            Request::Contacts => {
                let view = self.engine.view();
                Ok(ContactList(view.contacts().map(|c| contact_of(view, c)).collect()).into())
            }
            Request::ContactsIn { group } => Ok(self.contacts_in(&group)?.into()),
            Request::Contact { jid: j } => {
                let j = jid(&j)?;
                let view = self.engine.view();
                let c = view
                    .contact_by_jid(&j)
                    .ok_or_else(|| refused(format!("no contact has the address {j}")))?;
                Ok(contact_of(view, c).into())
            }
            Request::Groups => Ok(self.groups().into()),
            Request::Devices => Ok(self.devices(net).into()),
            Request::CheckSync => {
                self.input(sync::Input::CheckNow)?;
                Ok(Checking {
                    checking: net.connected.len(),
                }
                .into())
            }
            Request::AddContact {
                jid: j,
                name,
                groups,
            } => {
                text("a name", name.as_deref())?;
                names("groups", &groups, item::MAX_GROUP_REFS)?;
                let j = jid(&j)?;
                self.not_own(&j)?;
                self.command(Command::AddContact {
                    jid: j.clone(),
                    name,
                    groups,
                })?;
                Ok(self.changed_contact(&[j]).into())
            }
            Request::EditContact {
                jid: j,
                name,
                clear_name,
                add_groups,
                remove_groups,
                add_jids,
                remove_jids,
                merge,
            } => {
                text("a name", name.as_deref())?;
                names("groups", &add_groups, item::MAX_GROUP_REFS)?;
                names("groups", &remove_groups, item::MAX_GROUP_REFS)?;
                if add_jids.len() + remove_jids.len() > item::MAX_IDENTITIES {
                    return Err(input_err(format!(
                        "a contact has at most {} addresses",
                        item::MAX_IDENTITIES
                    )));
                }
                let edit = ContactEdit {
                    name: if clear_name {
                        Some(None)
                    } else {
                        name.map(Some)
                    },
                    add_groups,
                    remove_groups,
                    add_jids: add_jids
                        .iter()
                        .map(|s| jid(s).and_then(|j| self.not_own(&j).map(|()| j)))
                        .collect::<Result<_, _>>()?,
                    remove_jids: remove_jids
                        .iter()
                        .map(|s| jid(s))
                        .collect::<Result<_, _>>()?,
                    merge,
                };
                let j = jid(&j)?;
                // The contact as stored, found by an address it still has.
                let mut find = vec![j.clone()];
                find.extend(edit.add_jids.iter().cloned());
                let before = self.changed_contact(&find);
                self.command(Command::EditContact { jid: j, edit })?;
                let mut after = self.changed_contact(&find);
                // An edit that asked for what the contact already had changes none
                // of what a person sees (it may still write the contact again).
                let seen = |v: &ContactChanged| {
                    v.contact
                        .as_ref()
                        .map(|c| (c.name.clone(), c.jids.clone(), c.groups.clone()))
                };
                after.changed = Some(seen(&after) != seen(&before));
                let groups = |v: &ContactChanged| -> BTreeSet<String> {
                    v.contact
                        .iter()
                        .flat_map(|c| c.groups.iter().cloned())
                        .collect()
                };
                let (was, is) = (groups(&before), groups(&after));
                after.joined = is.difference(&was).cloned().collect();
                after.left = was.difference(&is).cloned().collect();
                Ok(after.into())
            }
            Request::RemoveContact { jid: j } => {
                let j = jid(&j)?;
                // What is removed, said back: every address of the contact goes.
                let removed = {
                    let view = self.engine.view();
                    view.contact_by_jid(&j).map(|c| Removed {
                        name: c.contact.name.clone(),
                        jids: jids_of(c),
                    })
                };
                self.command(Command::RemoveContact { jid: j })?;
                Ok(ContactRemoved {
                    done: true,
                    removed,
                }
                .into())
            }
            Request::AddGroup { name, description } => {
                text("a group name", Some(&name))?;
                text("a description", description.as_deref())?;
                self.command(Command::AddGroup {
                    name: name.clone(),
                    description,
                })?;
                Ok(self.changed_group(&name).into())
            }
            Request::RenameGroup { name, new_name } => {
                Ok(self.rename_group(name, new_name)?.into())
            }
            Request::RemoveGroup { name } => Ok(self.remove_group(name)?.into()),
            Request::Import {
                format,
                text,
                replace,
            } => Ok(self.import(format, &text, replace, progress)?.into()),
            Request::Conflicts => Ok(self.conflicts().into()),
            Request::RestoreContact { jid: j, n } => {
                Ok(self.command(Command::Restore { jid: jid(&j)?, n })?.into())
            }
            Request::Log { jid: j, limit } => {
                let j = j.as_deref().map(jid).transpose()?;
                Ok(self.log(j.as_ref(), limit)?.into())
            }
            Request::Export { full, xep0227 } => {
                let detail = if full {
                    export::Detail::Full
                } else {
                    export::Detail::Minimal
                };
                let roster = export::roster(self.engine.view(), detail);
                let doc = if xep0227 {
                    let account = BareJid::parse(&self.account().jid).map_err(refused)?;
                    export::for_server(&account, roster).map_err(refused)?
                } else {
                    roster
                };
                Ok(Exported {
                    roster: doc.to_xml(),
                }
                .into())
            }
            Request::Invite { ttl_secs, relay } => Ok(self.invite(net, ttl_secs, relay)?.into()),
            Request::Invitations => Ok(self.invitations(net)?.into()),
            Request::CancelInvites { code } => {
                Ok(self.cancel_invites(net, code.as_deref())?.into())
            }
            Request::Revoke { device } => Ok(self.revoke(&device)?.into()),
            Request::RenameDevice { device, name } => {
                Ok(self.rename_device(&device, &name)?.into())
            }
            Request::Rotate => {
                self.execute(sync::Command::RotateSecrets)?
                    .map_err(refused)?;
                Ok(Rotated { rotated: true }.into())
            }
            Request::AddClient { cert } => Ok(self.add_client(&cert)?.into()),
            Request::Clients => Ok(self.clients()?.into()),
            Request::ApproveClient { fingerprint } => Ok(self.approve_client(&fingerprint)?.into()),
            Request::RemoveClient { fingerprint } => Ok(self.remove_client(&fingerprint)?.into()),
        }
    }

    /// Device id (16 hex digits, as `DeviceId` prints) → its name in the roster.
    fn device_names(&mut self) -> BTreeMap<String, String> {
        self.engine
            .roster()
            .members()
            .map(|m| (m.entry.device.to_string(), m.entry.name.clone()))
            .collect()
    }

    /// The account's own JID is not a contact of it (exit 1).
    fn not_own(&self, j: &BareJid) -> Result<(), Error> {
        if *j == self.jid {
            return Err(refused(format!(
                "{j} is this account's own address, not a contact"
            )));
        }
        Ok(())
    }

    fn command(&mut self, cmd: Command) -> Result<Done, Error> {
        self.execute(cmd)?.map_err(|e| match e {
            // What the command would write is not a valid item: bad input.
            sync::Error::Contacts(ContactsError::Invalid { .. } | ContactsError::Item(_)) => {
                input_err(e)
            }
            other => refused(other),
        })?;
        Ok(Done { done: true })
    }

    /// The contact a command changed, as stored (names trimmed and in NFC, groups
    /// as the existing group a look-alike name matched), found by the first of
    /// `jids` it has.
    fn changed_contact(&mut self, jids: &[BareJid]) -> ContactChanged {
        let view = self.engine.view();
        let contact = jids
            .iter()
            .find_map(|j| view.contact_by_jid(j))
            .map(|c| contact_of(view, c));
        ContactChanged {
            done: true,
            contact,
            changed: None,
            joined: Vec::new(),
            left: Vec::new(),
        }
    }

    /// Imports a document whole or not at all: every entry is checked first (a bad
    /// one is named, exit 3), the import is tried against the current list without
    /// writing, and then written in steps (for progress) inside one transaction.
    fn import(
        &mut self,
        format: ImportFormat,
        text: &str,
        replace: bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Imported, Error> {
        // The account's own address is not a contact of it: left out, and said.
        let own = self.jid.to_string();
        let mut left_out = None;
        let mut parse = || {
            let mut doc = match format {
                ImportFormat::Roster => import::roster(text),
                ImportFormat::Metacontacts => import::metacontacts(text),
            }
            .map_err(input_err)?;
            for c in &mut doc.contacts {
                let before = c.identities.len();
                c.identities
                    .retain(|i| !(i.kind == "jid" && i.value == own));
                if c.identities.len() != before {
                    left_out = Some(own.clone());
                }
            }
            doc.contacts.retain(|c| !c.identities.is_empty());
            Ok::<_, Error>(doc)
        };
        // Checked whole before anything is written, on a parse of its own that the
        // check consumes; the document is parsed again to be written. Parsing costs
        // less than a copy of every contact held beside the check's plan (the
        // import's peak memory, docs/performance.md).
        let checked = parse()?;
        let total = checked.contacts.len() as u64;
        // The groups of the contacts imported (not of an entry left out); names
        // that look alike are one group.
        let groups = checked
            .contacts
            .iter()
            .flat_map(|c| &c.groups)
            .map(|g| item::lookalike(&g.id))
            .collect::<BTreeSet<_>>()
            .len();
        let summary = self
            .engine
            .book_mut()
            .check_import(checked.contacts, replace, &mut rand::rng())
            .map_err(|e| match e {
                ContactsError::Invalid { .. } => input_err(e),
                other => refused(other),
            })?;
        let imported = parse()?;
        progress(0, total);
        let chunk_len = IMPORT_CHUNK.max(imported.contacts.len().div_ceil(20));
        // A large import goes to the other devices by reconciliation, in frames of a
        // megabyte: about 1.5 times as fast for them as gossip frames of 64 KiB, and
        // nothing a slow device's queue can drop (docs/performance.md).
        let bulk = imported.contacts.len() > sync::MAX_GOSSIP_QUEUE;
        let mut contacts = imported.contacts;
        self.atomically(|device| {
            let mut done = 0;
            while !contacts.is_empty() {
                let rest = contacts.split_off(chunk_len.min(contacts.len()));
                let chunk = std::mem::replace(&mut contacts, rest);
                done += chunk.len() as u64;
                let now = device.clock.now();
                let command = Command::Import {
                    contacts: chunk,
                    replace,
                };
                let result = if bulk {
                    device.engine.execute_bulk(now, command)
                } else {
                    device.engine.execute(now, command)
                };
                device.drain()?;
                result.map_err(|e| Error::new(ErrorKind::Store, format!("import stopped: {e}")))?;
                progress(done, total);
            }
            Ok(())
        })?;
        // Best effort: a failed checkpoint leaves the log for SQLite to fold in later.
        let _ = self.store.checkpoint();
        crate::memory::give_back();
        Ok(Imported {
            contacts: total,
            groups,
            added: summary.added,
            updated: summary.updated,
            unchanged: summary.unchanged,
            left_out,
        })
    }
}
