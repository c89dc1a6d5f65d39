//! Turning a user's command into records.
//!
//! An [`Editor`] holds the device's signing key and hybrid logical clock. Given the
//! current [`View`], a [`Command`] becomes a plan (item → new payload or tombstone),
//! the plan is padded, and every planned write is sealed with the node's current
//! secret and signed. Rules (see `docs/merge-rules.md`):
//!
//! * a new contact or group gets a fresh random item id, never a reused one;
//! * an edit writes the whole merged contact into its survivor (smallest item id)
//!   and turns the other members into `<reserved/>`, so duplicates collapse;
//! * deleting a contact or group turns its items into `<reserved/>` (the item count
//!   does not change, so the deletion does not show);
//! * deleting a group also removes references to it from the contacts that had it;
//! * a new group's id is derived from its name under the groups node's secret
//!   (`g-` + 16 hex digits of SHA-256), so two devices that each create "Friends"
//!   while apart create the same group; if that id is already taken by a group that
//!   was renamed since, a random id is used instead;
//! * padding: after the command, each node it touched holds a multiple of
//!   `count_bucket` live items (default 32, at least one bucket): `<reserved/>`
//!   items are added, or surplus ones (largest ids first) retracted.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::merge;
use super::view::{MergedContact, View};
use crate::clock::{Clock, Hlc, WallTime};
use crate::item::{self, Contact, Extra, Group, GroupRef, Identity, NodeKind, Payload, fields};
use crate::jid::BareJid;
use crate::record::{Body, DeviceId, ItemId, Record, Version};
use crate::seal::{self, DEFAULT_PAD_BUCKET, Keyring, Opener, Sealed};

/// Default number of items each node is padded to a multiple of.
pub const DEFAULT_COUNT_BUCKET: usize = 32;

/// A change a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Adds a contact; groups are named, and created when missing.
    AddContact {
        /// The contact's JID.
        jid: BareJid,
        /// Name to show.
        name: Option<String>,
        /// Group names.
        groups: Vec<String>,
    },
    /// Changes the contact that has `jid`.
    EditContact {
        /// Which contact.
        jid: BareJid,
        /// What to change.
        edit: ContactEdit,
    },
    /// Deletes the contact that has `jid`.
    RemoveContact {
        /// Which contact.
        jid: BareJid,
    },
    /// Creates a group.
    AddGroup {
        /// Its name (must be new).
        name: String,
        /// Optional description.
        description: Option<String>,
    },
    /// Renames a group.
    RenameGroup {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Deletes a group and removes it from its contacts.
    RemoveGroup {
        /// Its name.
        name: String,
    },
    /// Writes every readable item again, sealed with the current secrets (after a
    /// rotation); duplicates collapse as in an edit. No field changes: a concurrent
    /// edit of any field wins over it.
    Reseal,
    /// Brings back the value that lost in conflict `n` (from 1, newest first, as
    /// [`MergedContact::lost`] lists them) of the contact with `jid`, as a new edit;
    /// the conflict is then no longer listed. For a deletion that lost to an edit,
    /// restoring it deletes the contact.
    Restore {
        /// Which contact.
        jid: BareJid,
        /// Which conflict, from 1.
        n: usize,
    },
    /// Writes once, as one item, every contact that is [`MergedContact::unsettled`]
    /// whose newest item this device wrote: concurrent items collapse, and the
    /// conflicts the merge decided are kept in the contact.
    Settle,
    /// Adds or updates many contacts at once (an import), as a merge: a contact
    /// sharing an identity with an existing one is merged into it (new addresses and
    /// groups added); the existing name is kept unless `replace` (or it has none).
    /// Contacts the import would not change are not written.
    Import {
        /// Contacts; their group references are group names here.
        contacts: Vec<Contact>,
        /// Whether names in the document replace names kept here.
        replace: bool,
    },
    /// Publishes an item sealed elsewhere (by an XMPP client, XEP-0473): it must
    /// open under the current secret of `node` and hold a valid XEP-0510
    /// payload for that node. A contact is stamped against what the item held (its
    /// changed fields marked with this edit, see `merge::restamp`) and sealed
    /// again here; other payloads are stored as sealed. Either is signed by this
    /// device.
    Publish {
        /// Which node.
        node: NodeKind,
        /// Which item (a new id adds an item, a known one replaces it).
        item: ItemId,
        /// The `<encrypted/>` payload, as published.
        sealed: Sealed,
    },
    /// Retracts a live item of `node` (XEP-0060 retract): it becomes a tombstone.
    Retract {
        /// Which node.
        node: NodeKind,
        /// Which item.
        item: ItemId,
    },
}

impl Command {
    /// The names it carries as kith keeps them (see [`item::clean_name`]).
    fn cleaned(self) -> Self {
        let name = |n: String| item::clean_name(&n);
        let names = |v: Vec<String>| v.into_iter().map(name).collect();
        match self {
            Self::AddContact {
                jid,
                name: n,
                groups,
            } => Self::AddContact {
                jid,
                name: n.map(name),
                groups: names(groups),
            },
            Self::EditContact { jid, mut edit } => {
                edit.name = edit.name.map(|n| n.map(name));
                edit.add_groups = names(edit.add_groups);
                edit.remove_groups = names(edit.remove_groups);
                Self::EditContact { jid, edit }
            }
            Self::AddGroup {
                name: n,
                description,
            } => Self::AddGroup {
                name: name(n),
                description,
            },
            Self::RenameGroup { name: n, new_name } => Self::RenameGroup {
                name: name(n),
                new_name: name(new_name),
            },
            Self::RemoveGroup { name: n } => Self::RemoveGroup { name: name(n) },
            Self::Import { contacts, replace } => Self::Import {
                contacts: contacts
                    .into_iter()
                    .map(|mut c| {
                        c.name = c.name.map(name);
                        for g in &mut c.groups {
                            g.id = item::clean_name(&g.id);
                        }
                        c
                    })
                    .collect(),
                replace,
            },
            other => other,
        }
    }
}

/// What an import does: contacts added, existing ones it changes, and existing ones
/// it leaves as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// New contacts.
    pub added: usize,
    /// Existing contacts that gain an address or a group (or a name).
    pub updated: usize,
    /// Existing contacts the document has nothing new for.
    pub unchanged: usize,
}

/// Changes to one contact; the default changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactEdit {
    /// `Some(None)` removes the name.
    pub name: Option<Option<String>>,
    /// Group names to add (created when missing).
    pub add_groups: Vec<String>,
    /// Group names to remove.
    pub remove_groups: Vec<String>,
    /// JIDs to add as identities.
    pub add_jids: Vec<BareJid>,
    /// JIDs to remove from the identities (not the last one).
    pub remove_jids: Vec<BareJid>,
    /// Whether a JID to add may be one of another contact's, merging the two
    /// contacts into one (refused otherwise).
    pub merge: bool,
}

/// Why a command cannot be carried out. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No current secret for a node.
    #[error("no secret for node {0}: this device cannot seal items yet")]
    NoSecret(NodeKind),
    /// No contact has this JID.
    #[error("no contact has the address {0}")]
    NoSuchContact(String),
    /// A contact with this JID exists already.
    #[error("a contact with the address {0} exists already")]
    ContactExists(String),
    /// A JID to add belongs to another contact (adding it would merge the two).
    #[error(
        "{jid} is an address of another contact ({contact}): add it with --merge to merge the two"
    )]
    JidOfAnother {
        /// The JID.
        jid: String,
        /// That contact, by its name or first address.
        contact: String,
    },
    /// No group has this name.
    #[error("no group is named {0:?}")]
    NoSuchGroup(String),
    /// A group with this name exists already.
    #[error("a group named {0:?} exists already")]
    GroupExists(String),
    /// The edit would leave a contact without identity.
    #[error("a contact must keep at least one address")]
    LastIdentity,
    /// `Restore` of a conflict the contact does not list.
    #[error("{contact} lists {count} conflict(s); there is no conflict {n}")]
    NoSuchConflict {
        /// The contact's name.
        contact: String,
        /// The number asked for (from 1).
        n: usize,
        /// How many it lists.
        count: usize,
    },
    /// `Restore` of a value kith does not keep (unknown children: only that they
    /// changed is kept).
    #[error("conflict {0} is about data kith does not keep a copy of; nothing to restore")]
    NotRestorable(usize),
    /// The result is not a valid item.
    #[error(transparent)]
    Item(#[from] item::Error),
    /// No live item has this id on the node.
    #[error("no item {item} on node {node}")]
    NoSuchItem {
        /// The node.
        node: NodeKind,
        /// The item id.
        item: String,
    },
    /// A published payload is sealed with a secret this device does not hold, or
    /// one of another node.
    #[error("the item is sealed with key {0:?}, not a secret of this node")]
    UnknownSecret(String),
    /// A published payload is sealed with a secret that is revoked or superseded by
    /// a newer one (XEP-0473: new items are sealed with the most recent secret, and
    /// a revoked secret must not seal new items).
    #[error("the item is sealed with key {0:?}, which is revoked or superseded")]
    StaleSecret(String),
    /// A published payload does not open under the secret it names.
    #[error("the item does not open: {0}")]
    Unopenable(String),
    /// The command would write an item that is not valid (a name too long, too many
    /// identities…).
    #[error("{item}: {source}")]
    Invalid {
        /// The contact (its first identity) or group concerned.
        item: String,
        /// Why.
        source: item::Error,
    },
}

enum Write {
    Payload(Payload),
    /// Sealed already (published by a client), checked when planned; whether it
    /// holds `<reserved/>`.
    Sealed(Sealed, bool),
    Tombstone,
}

/// A device's authoring state: signing key, clock and padding policy.
#[derive(Debug)]
pub struct Editor {
    key: SigningKey,
    clock: Clock,
    /// Plaintext size bucket, bytes.
    pub pad_bucket: usize,
    /// Item count bucket per node.
    pub count_bucket: usize,
}

impl Editor {
    /// An editor signing with `key`, its clock having seen `clock`.
    pub fn new(key: SigningKey, clock: Clock) -> Self {
        Self {
            key,
            clock,
            pad_bucket: DEFAULT_PAD_BUCKET,
            count_bucket: DEFAULT_COUNT_BUCKET,
        }
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        DeviceId(self.key.verifying_key().to_bytes())
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Signs a record stamped by this device's clock.
    pub fn sign(
        &mut self,
        space: crate::record::Space,
        item: ItemId,
        body: Body,
        now: WallTime,
    ) -> Record {
        let hlc = self.clock.tick(now);
        Record::sign(space, item, hlc, body, &self.key)
    }

    /// Takes a received record's stamp into account.
    pub fn observe(&mut self, hlc: Hlc, now: WallTime) {
        // A stamp too far ahead was held by the replica and is observed when released.
        let _ = self.clock.observe(hlc, now);
    }

    /// Carries out `command` against `view`; returns the records to apply and send.
    /// `opener` opens items sealed elsewhere (a publish), keeping what it derived.
    pub fn execute<R: CryptoRng + ?Sized>(
        &mut self,
        view: &View,
        command: Command,
        keyring: &Keyring,
        opener: &mut Opener,
        now: WallTime,
        rng: &mut R,
    ) -> Result<Vec<Record>, Error> {
        let stamp = Version {
            hlc: self.clock.tick(now),
            device: self.device(),
        };
        let plan = self.plan(view, command, keyring, opener, stamp, rng)?;
        self.seal_plan(plan, keyring, now, rng)
    }

    /// Whether `command` would be carried out against `view`, without writing
    /// anything: every payload it would write is checked as a reader would.
    pub fn check<R: CryptoRng + ?Sized>(
        &self,
        view: &View,
        command: Command,
        keyring: &Keyring,
        opener: &mut Opener,
        rng: &mut R,
    ) -> Result<(), Error> {
        let stamp = Version {
            hlc: self.clock.last(),
            device: self.device(),
        };
        let plan = self.plan(view, command, keyring, opener, stamp, rng)?;
        for ((node, _), write) in &plan.writes {
            if keyring.current(*node).is_none() {
                return Err(Error::NoSecret(*node));
            }
            match write {
                Write::Payload(p) => {
                    validate(p, *node)?;
                }
                Write::Sealed(..) | Write::Tombstone => {}
            }
        }
        Ok(())
    }

    fn plan<'v, R: CryptoRng + ?Sized>(
        &self,
        view: &'v View,
        command: Command,
        keyring: &Keyring,
        opener: &mut Opener,
        stamp: Version,
        rng: &mut R,
    ) -> Result<Plan<'v>, Error> {
        let mut plan = Plan::new(
            view,
            keyring
                .current(NodeKind::Groups)
                .map(|s| s.value.to_string()),
            stamp,
        );
        let command = command.cleaned();
        match command {
            Command::AddContact { jid, name, groups } => {
                if view.contact_by_jid(&jid).is_some() {
                    return Err(Error::ContactExists(jid.to_string()));
                }
                let mut contact = Contact {
                    name,
                    identities: vec![Identity::jid(&jid)],
                    ..Contact::default()
                };
                for g in groups {
                    let id = plan.group_id(&g, rng);
                    push_group(&mut contact, id);
                }
                plan.write_contact(None, contact, rng);
            }
            Command::EditContact { jid, edit } => {
                let ContactEdit {
                    name,
                    add_groups,
                    remove_groups,
                    add_jids,
                    remove_jids,
                    merge,
                } = edit;
                let target = view
                    .contact_by_jid(&jid)
                    .ok_or_else(|| Error::NoSuchContact(jid.to_string()))?;
                if !merge {
                    for j in &add_jids {
                        if let Some(other) = view.contact_by_jid(j).filter(|o| o.id != target.id) {
                            return Err(Error::JidOfAnother {
                                jid: j.to_string(),
                                contact: other.display_name().to_owned(),
                            });
                        }
                    }
                }
                let mut contact = target.contact.clone();
                if let Some(n) = name {
                    contact.name = n;
                }
                for g in add_groups {
                    let id = plan.group_id(&g, rng);
                    push_group(&mut contact, id);
                }
                for g in remove_groups {
                    let entry = view
                        .group_by_name(&g)
                        .ok_or_else(|| Error::NoSuchGroup(g.clone()))?;
                    contact.groups.retain(|r| r.id != entry.group.id);
                }
                for j in add_jids {
                    let id = Identity::jid(&j);
                    if !contact.identities.iter().any(|i| i.key() == id.key()) {
                        contact.identities.push(id);
                    }
                }
                for j in remove_jids {
                    let id = Identity::jid(&j);
                    contact.identities.retain(|i| i.key() != id.key());
                }
                if contact.identities.is_empty() {
                    return Err(Error::LastIdentity);
                }
                plan.write_contact(Some(target), contact, rng);
            }
            Command::RemoveContact { jid } => {
                let target = view
                    .contact_by_jid(&jid)
                    .ok_or_else(|| Error::NoSuchContact(jid.to_string()))?;
                // Its items are retracted, and one new `<reserved/>` item says
                // which contact was deleted and what the deletion knew of it, so
                // an edit made concurrently (which keeps the contact) is reported
                // as a conflict. The mark is on an item of its own: no other
                // write can land on it (padding keeps it while the contact lives).
                for (item, _) in &target.members {
                    plan.write(NodeKind::Contacts, *item, Write::Tombstone);
                }
                let mut mark = Extra::default();
                if let Ok(state) = fields::State::of(&target.contact, merge::ORIGIN)
                    && let Some(cid) = &state.contact_id
                {
                    mark.children
                        .push(fields::deletion_element(cid, &state.seen));
                }
                plan.write(
                    NodeKind::Contacts,
                    ItemId::random(rng),
                    Write::Payload(Payload::Reserved(mark)),
                );
            }
            Command::AddGroup { name, description } => {
                if view.group_by_name(&name).is_some() {
                    return Err(Error::GroupExists(name));
                }
                let id = plan.group_id(&name, rng);
                if let Some(d) = description {
                    plan.set_group_description(&id, d);
                }
            }
            Command::RenameGroup { name, new_name } => {
                let entry = view
                    .group_by_name(&name)
                    .ok_or_else(|| Error::NoSuchGroup(name.clone()))?;
                if name != new_name && view.group_by_name(&new_name).is_some() {
                    return Err(Error::GroupExists(new_name));
                }
                let mut group = entry.group.clone();
                group.name = new_name;
                plan.write(
                    NodeKind::Groups,
                    entry.item,
                    Write::Payload(Payload::Group(group)),
                );
                for dup in &entry.duplicates {
                    plan.reserve(NodeKind::Groups, *dup);
                }
            }
            Command::RemoveGroup { name } => {
                let entry = view
                    .group_by_name(&name)
                    .ok_or_else(|| Error::NoSuchGroup(name.clone()))?;
                plan.reserve(NodeKind::Groups, entry.item);
                for dup in &entry.duplicates {
                    plan.reserve(NodeKind::Groups, *dup);
                }
                for c in view.contacts_in_group(&entry.group.id) {
                    let mut contact = c.contact.clone();
                    contact.groups.retain(|g| g.id != entry.group.id);
                    plan.write_contact(Some(c), contact, rng);
                }
            }
            Command::Import { contacts, replace } => {
                self.plan_import(view, &mut plan, contacts, replace, rng);
            }
            Command::Reseal => {
                for c in view.contacts() {
                    plan.write_contact(Some(c), c.contact.clone(), rng);
                }
                for entry in view.groups().values() {
                    plan.write(
                        NodeKind::Groups,
                        entry.item,
                        Write::Payload(Payload::Group(entry.group.clone())),
                    );
                    for dup in &entry.duplicates {
                        plan.reserve(NodeKind::Groups, *dup);
                    }
                }
                // Reserved items keep what they carry (a deletion's mark).
                for node in NodeKind::ALL {
                    for item in view.reserved(node) {
                        let extra = match view.item(node, item) {
                            Some((.., Ok(Payload::Reserved(extra)))) => extra,
                            _ => Extra::default(),
                        };
                        plan.write(node, *item, Write::Payload(Payload::Reserved(extra)));
                    }
                }
            }
            Command::Restore { jid, n } => {
                let target = view
                    .contact_by_jid(&jid)
                    .ok_or_else(|| Error::NoSuchContact(jid.to_string()))?;
                let lost = n
                    .checked_sub(1)
                    .and_then(|i| target.lost.get(i))
                    .ok_or_else(|| Error::NoSuchConflict {
                        contact: target.display_name().to_owned(),
                        n,
                        count: target.lost.len(),
                    })?;
                if lost.key == fields::Key::Contact {
                    return self.plan(
                        view,
                        Command::RemoveContact { jid },
                        keyring,
                        opener,
                        stamp,
                        rng,
                    );
                }
                let mut contact = target.contact.clone();
                match (&lost.key, &lost.value) {
                    (fields::Key::Name, fields::Value::Name(name)) => {
                        contact.name = Some(name.clone())
                    }
                    (fields::Key::Name, _) => contact.name = None,
                    (fields::Key::Identity(..), fields::Value::Identity(i)) => {
                        if let Some(other) = view
                            .contact_by_identity(&i.kind, &i.value)
                            .filter(|o| o.id != target.id)
                        {
                            return Err(Error::JidOfAnother {
                                jid: i.value.clone(),
                                contact: other.display_name().to_owned(),
                            });
                        }
                        if !contact.identities.iter().any(|x| x.key() == i.key()) {
                            contact.identities.push(i.clone());
                        }
                    }
                    (fields::Key::Identity(kind, value), _) => {
                        contact
                            .identities
                            .retain(|x| x.key() != (kind.as_str(), value.as_str()));
                        if contact.identities.is_empty() {
                            return Err(Error::LastIdentity);
                        }
                    }
                    (fields::Key::Group(id), fields::Value::Group(_)) => {
                        push_group(&mut contact, id.clone())
                    }
                    (fields::Key::Group(id), _) => contact.groups.retain(|g| g.id != *id),
                    _ => return Err(Error::NotRestorable(n)),
                }
                let resolved = (lost.key.clone(), lost.at);
                plan.write_contact_resolving(Some(target), contact, Some(resolved), rng);
            }
            Command::Settle => {
                let mine: Vec<&MergedContact> = view
                    .unsettled()
                    .filter(|c| c.version.device == self.device())
                    .collect();
                for c in mine {
                    plan.write_contact(Some(c), c.contact.clone(), rng);
                }
            }
            Command::Publish { node, item, sealed } => {
                match check_published(&sealed, node, keyring, opener)? {
                    // A contact is stamped here against what the item held: the
                    // client's copy of kith's stamps (if any) says nothing of its
                    // own changes.
                    Payload::Contact(c) => {
                        let data = merge::data(&c);
                        // Against what the item held; a new item (or one retracted
                        // since) against the contact it joins, without removing
                        // what it lacks; else it is a new contact.
                        let stamped = match view.item(node, &item) {
                            Some((_, _, version, _, Ok(Payload::Contact(old)))) => {
                                merge::restamp_item(&old, version, data, stamp)
                            }
                            _ => match c
                                .identities
                                .iter()
                                .find_map(|i| view.contact_by_identity(&i.kind, &i.value))
                            {
                                Some(joined) => merge::stamp_joining(&joined.contact, data, stamp),
                                None => merge::restamp(None, data, stamp, hex(&item.0)),
                            },
                        };
                        plan.write(node, item, Write::Payload(Payload::Contact(stamped)));
                    }
                    // A reserved item that carried kith's elements is written without
                    // them; any other is stored as the client sealed it.
                    Payload::Reserved(extra) if carries_kith(&sealed, keyring, opener) => {
                        plan.write(node, item, Write::Payload(Payload::Reserved(extra)));
                    }
                    p => {
                        let reserved = matches!(p, Payload::Reserved(_));
                        plan.write(node, item, Write::Sealed(sealed, reserved));
                    }
                }
            }
            Command::Retract { node, item } => {
                if !view.is_live(node, &item) {
                    return Err(Error::NoSuchItem {
                        node,
                        item: item.to_string(),
                    });
                }
                plan.write(node, item, Write::Tombstone);
            }
        }
        plan.pad(view, self.count_bucket, rng);
        Ok(plan)
    }

    /// What an import of `contacts` would do to `view`, without writing anything.
    pub fn import_summary<R: CryptoRng + ?Sized>(
        &self,
        view: &View,
        contacts: Vec<Contact>,
        replace: bool,
        keyring: &Keyring,
        rng: &mut R,
    ) -> ImportSummary {
        let stamp = Version {
            hlc: self.clock.last(),
            device: self.device(),
        };
        let mut plan = Plan::new(
            view,
            keyring
                .current(NodeKind::Groups)
                .map(|s| s.value.to_string()),
            stamp,
        );
        self.plan_import(view, &mut plan, contacts, replace, rng)
    }

    fn plan_import<R: CryptoRng + ?Sized>(
        &self,
        view: &View,
        plan: &mut Plan<'_>,
        contacts: Vec<Contact>,
        replace: bool,
        rng: &mut R,
    ) -> ImportSummary {
        // Where each identity seen so far goes: an existing contact (by survivor) or
        // a new one (by index); existing contacts are found through the view's index.
        #[derive(Clone, Copy)]
        enum Target {
            Existing(ItemId),
            New(usize),
        }
        let mut by_identity: HashMap<(String, String), Target> = HashMap::new();
        let mut touched: BTreeMap<ItemId, Contact> = BTreeMap::new();
        let mut new: Vec<Contact> = Vec::new();
        for mut incoming in contacts {
            let groups = std::mem::take(&mut incoming.groups);
            incoming.groups = groups
                .iter()
                .map(|g| GroupRef {
                    id: plan.group_id(&g.id, rng),
                    extra: Extra::default(),
                })
                .collect();
            let hit = incoming.identities.iter().find_map(|i| {
                by_identity
                    .get(&(i.kind.clone(), i.value.clone()))
                    .copied()
                    .or_else(|| {
                        view.contact_by_identity(&i.kind, &i.value)
                            .map(|c| Target::Existing(c.id))
                    })
            });
            let (target, contact) = match hit {
                Some(Target::Existing(id)) => {
                    let base = || view.contact(&id).map(|c| c.contact.clone());
                    let Some(c) = touched.get(&id).cloned().or_else(base) else {
                        continue;
                    };
                    (Target::Existing(id), touched.entry(id).or_insert(c))
                }
                Some(Target::New(i)) => (Target::New(i), &mut new[i]),
                None => {
                    new.push(Contact {
                        identities: Vec::new(),
                        groups: Vec::new(),
                        ..incoming.clone()
                    });
                    let i = new.len() - 1;
                    (Target::New(i), &mut new[i])
                }
            };
            let existing = matches!(target, Target::Existing(_));
            if incoming.name.is_some() && (replace || !existing || contact.name.is_none()) {
                contact.name = incoming.name;
            }
            for id in incoming.identities {
                if !contact.identities.iter().any(|x| x.key() == id.key()) {
                    contact.identities.push(id);
                }
            }
            for g in incoming.groups {
                push_group(contact, g.id);
            }
            for id in &contact.identities {
                by_identity.insert((id.kind.clone(), id.value.clone()), target);
            }
        }
        let mut summary = ImportSummary {
            added: new.len(),
            ..ImportSummary::default()
        };
        for (id, contact) in touched {
            let before = view.contact(&id);
            if before.is_some_and(|b| b.contact == contact && b.members.len() == 1) {
                summary.unchanged += 1;
                continue;
            }
            summary.updated += 1;
            plan.write_contact(before, contact, rng);
        }
        for contact in new {
            plan.write_contact(None, contact, rng);
        }
        summary
    }

    fn seal_plan<R: CryptoRng + ?Sized>(
        &mut self,
        plan: Plan<'_>,
        keyring: &Keyring,
        now: WallTime,
        rng: &mut R,
    ) -> Result<Vec<Record>, Error> {
        let mut records = Vec::with_capacity(plan.writes.len());
        let mut secrets = BTreeMap::new();
        for node in NodeKind::ALL {
            if plan.writes.keys().any(|(n, _)| *n == node) {
                secrets.insert(node, keyring.current(node).ok_or(Error::NoSecret(node))?);
            }
        }
        for ((node, item), write) in plan.writes {
            let body = match write {
                Write::Tombstone => Body::Tombstone,
                Write::Sealed(s, _) => Body::Sealed(s),
                Write::Payload(p) => {
                    // Validate what we are about to publish, as a reader would.
                    let xml = validate(&p, node)?;
                    Body::Sealed(seal::seal(&xml, secrets[&node], self.pad_bucket, rng))
                }
            };
            let hlc = self.clock.tick(now);
            records.push(Record::sign(node, item, hlc, body, &self.key));
        }
        Ok(records)
    }
}

/// Checks an item sealed by a client as every reader will: the current secret of
/// `node`, a payload that opens under it and is valid on `node`. Returns the
/// payload.
fn check_published(
    sealed: &Sealed,
    node: NodeKind,
    keyring: &Keyring,
    opener: &mut Opener,
) -> Result<Payload, Error> {
    let secret = keyring
        .get(&sealed.key)
        .filter(|s| s.node == node)
        .ok_or_else(|| Error::UnknownSecret(sealed.key.clone()))?;
    if keyring.current(node).map(|c| &c.id) != Some(&secret.id) {
        return Err(Error::StaleSecret(sealed.key.clone()));
    }
    seal::check_publishable(&sealed.data).map_err(|e| Error::Unopenable(e.to_string()))?;
    let xml = opener
        .open(sealed, keyring)
        .map_err(|e| Error::Unopenable(e.to_string()))?;
    // kith's own elements (field stamps, deletion marks) are kith's to write: a
    // client's copy, however it left it, is not read, and the item is stamped here.
    let payload = crate::xml::Element::parse(&xml, crate::xml::Limits::ITEM)
        .map_err(item::Error::from)
        .and_then(|mut el| {
            el.children
                .retain(|c| !matches!(c, crate::xml::Node::Element(e) if e.ns == fields::NS));
            Payload::from_element(&el)
        })
        .and_then(|p| p.check_node(node).map(|()| p))
        .map_err(|source| Error::Invalid {
            item: format!("item on node {node}"),
            source,
        })?;
    Ok(payload)
}

/// Whether the item a client sealed holds an element in kith's namespace.
fn carries_kith(sealed: &Sealed, keyring: &Keyring, opener: &mut Opener) -> bool {
    opener
        .open(sealed, keyring)
        .ok()
        .and_then(|xml| crate::xml::Element::parse(&xml, crate::xml::Limits::ITEM).ok())
        .is_some_and(|el| el.elements().any(|c| c.ns == fields::NS))
}

/// The XML of `payload`, checked as a reader on `node` would read it; an error names
/// the contact (by its first identity) or the group.
fn validate(payload: &Payload, node: NodeKind) -> Result<String, Error> {
    let xml = payload.to_xml();
    Payload::parse(&xml)
        .and_then(|p| p.check_node(node))
        .map_err(|source| {
            let item = match payload {
                Payload::Contact(c) => c
                    .identities
                    .first()
                    .map_or_else(String::new, |i| i.value.clone()),
                Payload::Group(g) => format!("group {:?}", g.name),
                Payload::Reserved(_) => "a reserved item".to_owned(),
            };
            Error::Invalid {
                item: item.chars().take(200).collect(),
                source,
            }
        })?;
    Ok(xml)
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_id(bytes: &[u8]) -> String {
    let mut id = String::from("g-");
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn push_group(contact: &mut Contact, id: String) {
    if !contact.groups.iter().any(|g| g.id == id) {
        contact.groups.push(GroupRef {
            id,
            extra: Extra::default(),
        });
    }
}

/// What kind of item an item is, for counting.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Real,
    Reserved,
}

/// The writes a command makes, keyed by item.
struct Plan<'v> {
    view: &'v View,
    writes: BTreeMap<(NodeKind, ItemId), Write>,
    /// Groups created by this command, by name → id.
    new_groups: BTreeMap<String, String>,
    /// The groups node's current secret, keying derived group ids.
    group_key: Option<String>,
    /// The version field changes of this command are stamped with.
    stamp: Version,
}

impl<'v> Plan<'v> {
    fn new(view: &'v View, group_key: Option<String>, stamp: Version) -> Self {
        Self {
            view,
            writes: BTreeMap::new(),
            new_groups: BTreeMap::new(),
            group_key,
            stamp,
        }
    }

    fn write(&mut self, node: NodeKind, item: ItemId, w: Write) {
        self.writes.insert((node, item), w);
    }

    fn reserve(&mut self, node: NodeKind, item: ItemId) {
        self.write(
            node,
            item,
            Write::Payload(Payload::Reserved(Extra::default())),
        );
    }

    /// Writes `contact`, an edit of `target` (`None`: a new contact), as one new
    /// item stamped with this command's version; `target`'s items are retracted.
    /// Content never overwrites an existing item, so an edit made concurrently
    /// elsewhere (which writes its own new item) is merged field by field, never lost.
    fn write_contact<R: CryptoRng + ?Sized>(
        &mut self,
        target: Option<&MergedContact>,
        contact: Contact,
        rng: &mut R,
    ) {
        self.write_contact_resolving(target, contact, None, rng);
    }

    /// [`Plan::write_contact`], no longer listing the conflict `resolved` (its field
    /// and losing version).
    fn write_contact_resolving<R: CryptoRng + ?Sized>(
        &mut self,
        target: Option<&MergedContact>,
        contact: Contact,
        resolved: Option<(fields::Key, Version)>,
        rng: &mut R,
    ) {
        // A contact without an id (written before kith merged by field, or by
        // another client) gets one derived from its survivor, the same on every
        // device; a new contact a random one.
        let seed = match target {
            Some(t) => t.id.0,
            None => ItemId::random(rng).0,
        };
        let cid = hex(&seed);
        let mut contact = merge::restamp(target.map(|t| &t.contact), contact, self.stamp, cid);
        if let Some((key, at)) = resolved {
            merge::forget_conflict(&mut contact, &key, at);
        }
        if let Some(t) = target {
            for (item, _) in &t.members {
                self.write(NodeKind::Contacts, *item, Write::Tombstone);
            }
        }
        self.write(
            NodeKind::Contacts,
            ItemId::random(rng),
            Write::Payload(Payload::Contact(contact)),
        );
    }

    /// The id of the group named `name`, creating the group when there is none.
    fn group_id<R: CryptoRng + ?Sized>(&mut self, name: &str, rng: &mut R) -> String {
        if let Some(g) = self.view.group_by_name(name) {
            return g.group.id.clone();
        }
        if let Some(id) = self.new_groups.get(name) {
            return id.clone();
        }
        let derived = self.group_key.as_ref().map(|key| {
            let digest = Sha256::new()
                .chain_update(b"kith group id\0")
                .chain_update(key.as_bytes())
                .chain_update(b"\0")
                .chain_update(name.as_bytes())
                .finalize();
            hex_id(&digest[..8])
        });
        let id = match derived {
            Some(id) if !self.view.groups().contains_key(&id) => id,
            _ => {
                let mut raw = [0u8; 8];
                rng.fill_bytes(&mut raw);
                hex_id(&raw)
            }
        };
        let group = Group {
            id: id.clone(),
            name: name.to_owned(),
            ..Group::default()
        };
        self.write(
            NodeKind::Groups,
            ItemId::random(rng),
            Write::Payload(Payload::Group(group)),
        );
        self.new_groups.insert(name.to_owned(), id.clone());
        id
    }

    fn set_group_description(&mut self, id: &str, description: String) {
        for w in self.writes.values_mut() {
            if let Write::Payload(Payload::Group(g)) = w
                && g.id == id
            {
                g.description = Some(description.clone());
            }
        }
    }

    fn kind_before(&self, node: NodeKind, item: &ItemId, reserved: &[ItemId]) -> Option<Kind> {
        if reserved.binary_search(item).is_ok() {
            Some(Kind::Reserved)
        } else if self.view.is_real_item(node, item) {
            Some(Kind::Real)
        } else {
            None
        }
    }

    /// Whether the reserved `item` marks the deletion of a contact that is still
    /// shown (an edit overruled it): padding keeps it.
    fn keeps_mark(&self, view: &View, node: NodeKind, item: &ItemId) -> bool {
        let extra = match self.writes.get(&(node, *item)) {
            Some(Write::Payload(Payload::Reserved(extra))) => Some(extra.clone()),
            Some(_) => None,
            None => match view.item(node, item) {
                Some((.., Ok(Payload::Reserved(extra)))) => Some(extra),
                _ => None,
            },
        };
        extra
            .iter()
            .flat_map(|e| e.children.iter())
            .filter_map(fields::read_deletion)
            .any(|(cid, _)| {
                view.contact_by_identity(fields::CONTACT_ID_KIND, cid)
                    .is_some()
            })
    }

    /// Adds or retracts `<reserved/>` items on each node this plan touches.
    fn pad<R: CryptoRng + ?Sized>(&mut self, view: &View, bucket: usize, rng: &mut R) {
        if bucket == 0 {
            return;
        }
        for node in NodeKind::ALL {
            if !self.writes.keys().any(|(n, _)| *n == node) {
                continue;
            }
            let unreadable = view.unreadable().keys().filter(|(n, _)| *n == node).count();
            let mut reserved = view.reserved_count(node);
            let mut real = view.live_items(node) - reserved + unreadable;
            let reserved_before: Vec<ItemId> = view.reserved(node).copied().collect();
            let mut reserved_now = reserved_before.clone();
            for ((n, item), w) in &self.writes {
                if *n != node {
                    continue;
                }
                let before = self.kind_before(node, item, &reserved_before);
                let after = match w {
                    Write::Payload(Payload::Reserved(_)) | Write::Sealed(_, true) => {
                        Some(Kind::Reserved)
                    }
                    Write::Payload(_) | Write::Sealed(_, false) => Some(Kind::Real),
                    Write::Tombstone => None,
                };
                match before {
                    Some(Kind::Real) => real -= 1,
                    Some(Kind::Reserved) => {
                        reserved -= 1;
                        reserved_now.retain(|r| r != item);
                    }
                    None => {}
                }
                match after {
                    Some(Kind::Real) => real += 1,
                    Some(Kind::Reserved) => {
                        reserved += 1;
                        reserved_now.push(*item);
                    }
                    None => {}
                }
            }
            let target = real.div_ceil(bucket).max(1) * bucket;
            let total = real + reserved;
            if total < target {
                for _ in total..target {
                    self.reserve(node, ItemId::random(rng));
                }
            } else if total > target {
                // Largest ids first, never a deletion's mark while its contact
                // lives (the conflict it reports would go with it).
                reserved_now.sort();
                let surplus: Vec<ItemId> = reserved_now
                    .iter()
                    .rev()
                    .filter(|item| !self.keeps_mark(view, node, item))
                    .take(total - target)
                    .copied()
                    .collect();
                for item in surplus {
                    self.write(node, item, Write::Tombstone);
                }
            }
        }
    }
}
