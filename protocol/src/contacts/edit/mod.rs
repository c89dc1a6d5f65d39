//! Turning a user's command into records.
//!
//! An [`Editor`] holds the device's signing key and hybrid logical clock. Given the
//! current [`View`], a [`Command`] becomes a plan (item → new payload or tombstone),
//! the plan is padded, and every planned write is sealed with the node's current
//! secret and signed. Rules (see `docs/merge-rules.md`):
//!
//! * a new contact or group gets a fresh random item id, never a reused one;
//! * an edit writes the whole merged contact, its changed fields marked with the
//!   edit's version, as one new item, and retracts the items it merged, so
//!   duplicates collapse and no content is ever written over an item another device
//!   may be writing (see `merge`);
//! * deleting a contact retracts its items and writes one new `<reserved/>` item
//!   marking the deletion (what it knew of the contact), so that an edit made
//!   concurrently is reported; deleting a group turns its items into `<reserved/>`;
//! * deleting a group also removes references to it from the contacts that had it;
//! * a new group's id is derived from its name under the groups node's secret
//!   (`g-` + 16 hex digits of SHA-256), so two devices that each create "Friends"
//!   while apart create the same group; if that id is already taken by a group that
//!   was renamed since, a random id is used instead;
//! * padding: after the command, each node it touched holds a multiple of
//!   `count_bucket` live items (default 32, at least one bucket): `<reserved/>`
//!   items are added, or surplus ones retracted: those that mark no deletion,
//!   largest ids first, then deletion marks past [`MARK_KEPT_MS`] whose contact no
//!   live item carries, oldest first.

mod plan;
mod settle;
mod writes;

pub use writes::MARK_KEPT_MS;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;

use super::view::View;
use crate::clock::{Clock, Hlc, WallTime};
use crate::item::{self, Contact, NodeKind, Payload};
use crate::jid::BareJid;
use crate::record::{Body, DeviceId, ItemId, Record, Version};
use crate::seal::{self, DEFAULT_PAD_BUCKET, Keyring, Opener, Sealed};
use crate::spread::{self, InOrder, Spread};
use writes::{Plan, Write, validate};

/// The records a command wrote, with the payload of each record it sealed here (by
/// its index in the records) as a reader of that record reads it.
pub type Written = (Vec<Record>, Vec<(usize, Payload)>);

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
    /// Renames a group. Every group named alike (`View::groups_named`: devices
    /// apart named them so) is folded into the one of the smallest group id: the
    /// others are removed and their contacts moved to it; it keeps its
    /// description, or takes the first (by group id) of the others'.
    RenameGroup {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Deletes a group, and every group named alike, and removes them from their
    /// contacts.
    RemoveGroup {
        /// Its name.
        name: String,
    },
    /// Writes every readable item again, sealed with the current secrets (after a
    /// rotation); duplicates collapse as in an edit. No field changes: a concurrent
    /// edit of any field wins over it.
    Reseal,
    /// Brings back the value that lost in conflict `n` (from 1, newest first, as
    /// [`MergedContact::lost`](super::MergedContact::lost) lists them) of the contact with `jid`, as a new edit;
    /// the conflict is then no longer listed. For a deletion that lost to an edit,
    /// restoring it deletes the contact.
    Restore {
        /// Which contact.
        jid: BareJid,
        /// Which conflict, from 1.
        n: usize,
    },
    /// Writes once, as one item, every contact that is [`MergedContact::unsettled`](super::MergedContact::unsettled)
    /// whose newest item this device wrote: concurrent items collapse, and the
    /// conflicts the merge decided are kept in the contact. Also retracts the items
    /// that a deletion by this device made obsolete (see `View::obsolete`), and puts
    /// back in a group the contacts a removal that lost took out of it, when this
    /// device edited the definition kept (see `View::taken_out_by_lost_removals`).
    Settle,
    /// [`Command::Settle`], also putting back the contacts whose kept definition
    /// one of these devices edited: revoked devices, which never will (the engine
    /// gives them to the active full device with the smallest id).
    SettleStandingIn(BTreeSet<DeviceId>),
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
                contacts: cleaned_contacts(contacts),
                replace,
            },
            other => other,
        }
    }
}

/// Whether every write of `plan` can be carried out: a current secret for its node,
/// and a payload a reader accepts. The payloads are checked on `spread`'s threads;
/// the error is that of the first write in order that fails, as one after another.
fn check_writes(plan: &Plan<'_>, keyring: &Keyring, spread: &dyn Spread) -> Result<(), Error> {
    let writes: Vec<_> = plan.writes.iter().collect();
    let checked = spread::map(spread, writes, |((node, _), write)| {
        if keyring.current(*node).is_none() {
            return Err(Error::NoSecret(*node));
        }
        match write {
            Write::Payload(p) => validate(p, *node).map(drop),
            Write::Sealed(..) | Write::Tombstone => Ok(()),
        }
    });
    checked.into_iter().collect()
}

/// A planned write, checked: a body already made, or a payload's XML to seal with
/// the payload as a reader of it reads it.
enum Checked {
    Body(Body),
    Payload(String, Payload),
}

/// Writes sealed and signed together at most: what a command holds at once beside
/// its records (each write's XML and its reading) stays bounded however large it is.
const SEAL_BATCH: usize = 4096;

/// Imported contacts with their names and group names as kith keeps them.
fn cleaned_contacts(contacts: Vec<Contact>) -> Vec<Contact> {
    contacts
        .into_iter()
        .map(|mut c| {
            c.name = c.name.map(|n| item::clean_name(&n));
            for g in &mut c.groups {
                g.id = item::clean_name(&g.id);
            }
            c
        })
        .collect()
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
    #[error("no group is named {}", crate::text::quoted(.0))]
    NoSuchGroup(String),
    /// A group with this name exists already.
    #[error("a group named {} exists already", crate::text::quoted(.0))]
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

/// A device's authoring state: signing key, clock and padding policy.
#[derive(Debug)]
pub struct Editor {
    key: SigningKey,
    clock: Clock,
    /// Plaintext size bucket, bytes.
    pub pad_bucket: usize,
    /// Item count bucket per node.
    pub count_bucket: usize,
    /// Where the writes of a large command are checked and signed.
    spread: Arc<dyn Spread>,
}

impl Editor {
    /// An editor signing with `key`, its clock having seen `clock`.
    pub fn new(key: SigningKey, clock: Clock) -> Self {
        Self {
            key,
            clock,
            pad_bucket: DEFAULT_PAD_BUCKET,
            count_bucket: DEFAULT_COUNT_BUCKET,
            spread: Arc::new(InOrder),
        }
    }

    /// Checks and signs the writes of large commands (an import, a reseal) with
    /// `spread`: the same records, sooner on several cores. One after another on
    /// the caller's thread unless this is called.
    pub fn set_spread(&mut self, spread: Arc<dyn Spread>) {
        self.spread = spread;
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

    /// The stamp a check (nothing written) plans with: the clock's last value.
    fn provisional_stamp(&self) -> Version {
        Version {
            hlc: self.clock.last(),
            device: self.device(),
        }
    }

    /// Takes a received record's stamp into account.
    pub fn observe(&mut self, hlc: Hlc, now: WallTime) {
        // A stamp too far ahead was held by the replica and is observed when released.
        let _ = self.clock.observe(hlc, now);
    }

    /// Carries out `command` against `view`; returns the records to apply and send,
    /// with the payload of each record it sealed here (by its index in the records)
    /// as a reader of the record reads it: the view need not open what this device
    /// just wrote. `opener` opens items sealed elsewhere (a publish), keeping what it
    /// derived.
    pub fn execute<R: CryptoRng + ?Sized>(
        &mut self,
        view: &View,
        command: Command,
        keyring: &Keyring,
        opener: &mut Opener,
        now: WallTime,
        rng: &mut R,
    ) -> Result<Written, Error> {
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
        let stamp = self.provisional_stamp();
        let plan = self.plan(view, command, keyring, opener, stamp, rng)?;
        check_writes(&plan, keyring, &*self.spread)
    }

    /// [`Editor::check`] of an import of `contacts`, and what it would do (an
    /// [`ImportSummary`]): the contacts are cleaned and planned as
    /// [`Command::Import`] plans them, once for both, taken rather than copied (an
    /// import of 100,000 contacts holds them once less). The padding a write adds
    /// is left out: it changes neither the summary nor what the check refuses.
    pub fn check_import<R: CryptoRng + ?Sized>(
        &self,
        view: &View,
        contacts: Vec<Contact>,
        replace: bool,
        keyring: &Keyring,
        rng: &mut R,
    ) -> Result<ImportSummary, Error> {
        let stamp = self.provisional_stamp();
        let mut plan = Plan::new(view, keyring, stamp);
        let summary = self.plan_import(view, &mut plan, cleaned_contacts(contacts), replace, rng);
        check_writes(&plan, keyring, &*self.spread)?;
        Ok(summary)
    }

    fn seal_plan<R: CryptoRng + ?Sized>(
        &mut self,
        plan: Plan<'_>,
        keyring: &Keyring,
        now: WallTime,
        rng: &mut R,
    ) -> Result<Written, Error> {
        let mut records = Vec::with_capacity(plan.writes.len());
        let mut reads = Vec::with_capacity(plan.writes.len());
        let mut secrets = BTreeMap::new();
        for node in NodeKind::ALL {
            if plan.writes.keys().any(|(n, _)| *n == node) {
                secrets.insert(node, keyring.current(node).ok_or(Error::NoSecret(node))?);
            }
        }
        // Each batch: its payloads written out and checked as a reader would check
        // them (on the spread's threads), then sealed and stamped in order (the
        // random numbers and the clock are drawn as one after another), then signed
        // on the spread's threads. Signatures are deterministic: the same records
        // however many threads ran.
        let spread = &*self.spread;
        let mut writes = plan.writes.into_iter().peekable();
        while writes.peek().is_some() {
            let batch: Vec<_> = writes.by_ref().take(SEAL_BATCH).collect();
            let checked = spread::map(spread, batch, |((node, item), write)| {
                let checked = match write {
                    Write::Tombstone => Checked::Body(Body::Tombstone),
                    Write::Sealed(s, _) => Checked::Body(Body::Sealed(s)),
                    Write::Payload(p) => {
                        let (xml, read) = validate(&p, node)?;
                        Checked::Payload(xml, read)
                    }
                };
                Ok::<_, Error>((node, item, checked))
            });
            let mut unsigned = Vec::with_capacity(checked.len());
            for write in checked {
                let (node, item, checked) = write?;
                let body = match checked {
                    Checked::Body(body) => body,
                    Checked::Payload(xml, read) => {
                        let sealed = seal::seal(&xml, secrets[&node], self.pad_bucket, rng);
                        // What a reader opens: within the limits (a large padding
                        // bucket can pass them; such an item reads as unopenable).
                        if seal::padded_len(xml.len(), self.pad_bucket) <= seal::MAX_PLAINTEXT_BYTES
                            && sealed.data.len() <= seal::MAX_SEALED_BYTES
                        {
                            reads.push((records.len() + unsigned.len(), read));
                        }
                        Body::Sealed(sealed)
                    }
                };
                unsigned.push((node, item, self.clock.tick(now), body));
            }
            let key = &self.key;
            records.extend(spread::map(spread, unsigned, |(node, item, hlc, body)| {
                Record::sign(node, item, hlc, body, key)
            }));
        }
        Ok((records, reads))
    }
}
