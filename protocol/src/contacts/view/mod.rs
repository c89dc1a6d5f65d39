//! The merged contact list: what a user sees, computed from the records alone, the
//! same on every device whatever order the records arrived in.
//!
//! * Contact items that share an identity (type and normalised value) or a kith
//!   contact id are one contact, transitively.
//! * Within a contact, items merge field by field by their marks (`merge`); items
//!   a deletion knew all of are obsolete, and a contact all of whose items are is
//!   not shown.
//! * The contact's id is its survivor: the member with the smallest item id (it
//!   changes with every edit, as an edit writes a new item).
//! * Groups are keyed by their `id` attribute; if several items define one group id,
//!   the newest version wins and the others are listed as duplicates.
//! * A group reference to an id no group item defines is kept and reported in
//!   [`MergedContact::unknown_groups`].
//! * Items that cannot be read yet (unknown secret) or at all (bad payload) are
//!   listed, never dropped: the records stay in the replica.
//!
//! The view is kept up to date incrementally: [`View::update`] reads again only the
//! items whose records changed, and merges again only the contacts those items
//! belonged to before and belong to now. An edit therefore costs time in proportion
//! to what it touched, not to the size of the list; [`View::build`] is the same
//! update over every item, so both give the same view.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::merge;
use crate::item;
use crate::item::fields::{self, CONTACT_ID_KIND, Lost};
use crate::item::{Contact, Group, NodeKind, Payload};
use crate::record::{DeviceId, ItemId, Record, Space, Version};
use crate::replica::Replica;
use crate::seal::{self, Keyring, Opener};

mod identities;
mod item_set;
mod items;
mod merging;
mod queries;
mod reading;
mod shared;

use identities::Identities;
pub use queries::{GroupConflict, LostGroup, TakenOut};
use reading::read;
use shared::Alone;
pub use shared::Reads;

/// Why an item's payload is not part of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Sealed with a secret this device does not hold (yet).
    Waiting(String),
    /// The sealed data does not open.
    Sealing(seal::Error),
    /// It opens, but is not a valid XEP-0510 payload for its node.
    Payload(item::Error),
    /// Its sealed body was left in the store ([`crate::replica::Shelf`]) and could
    /// not be read back from it.
    Shelved,
}

/// One contact of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedContact {
    /// The survivor: the member item with the smallest id. This is the contact's id
    /// until the next edit, which writes the contact as a new item.
    pub id: ItemId,
    /// Every item that is part of this contact, by item id, with its version (see
    /// [`MergedContact::members`]).
    members: Members,
    /// The merged payload. A contact of one item whose merge changes nothing (most
    /// contacts) shares it with the view's read of that item: it is held once.
    pub contact: Arc<Contact>,
    /// The version of the newest member that counts (not made obsolete by a
    /// deletion): its author is the device that settles the contact.
    pub version: Version,
    /// Group references no group item defines.
    pub unknown_groups: Vec<String>,
    /// Conflicts decided for this contact, newest first: concurrent edits of one
    /// field where a value lost, and deletions an edit overruled.
    pub lost: Vec<Lost>,
    /// Whether writing the merged contact once would change something (several
    /// items, or conflicts not yet written into the newest item).
    pub unsettled: bool,
    /// The member that already is the merged contact, what its stamps have seen
    /// included (the newest that counts, when the others add nothing to it, see
    /// [`merge::Merged::newest_holds`]): settling then retracts the other members
    /// only.
    pub holder: Option<ItemId>,
}

/// The items of a merged contact. Nearly every contact is one item, the survivor,
/// at the contact's version: that one is held as nothing (a list of one would be a
/// heap block of 80 bytes for each contact a device holds).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Members {
    /// The survivor alone, at the contact's version.
    Survivor,
    /// Any other set, sorted by item id.
    Listed(Vec<(ItemId, Version)>),
}

impl MergedContact {
    /// Every item that is part of this contact, by item id, with its version,
    /// sorted by item id.
    pub fn members(&self) -> impl Iterator<Item = (ItemId, Version)> + '_ {
        let (survivor, listed) = match &self.members {
            Members::Survivor => (Some((self.id, self.version)), &[][..]),
            Members::Listed(v) => (None, v.as_slice()),
        };
        survivor.into_iter().chain(listed.iter().copied())
    }

    /// How many items are part of this contact.
    pub fn member_count(&self) -> usize {
        match &self.members {
            Members::Survivor => 1,
            Members::Listed(v) => v.len(),
        }
    }

    /// The name to show: the contact's name, or its first identity.
    pub fn display_name(&self) -> &str {
        self.contact
            .name
            .as_deref()
            .or_else(|| self.contact.identities.first().map(|i| i.value.as_str()))
            .unwrap_or("")
    }

    fn sort_key(&self) -> (Box<str>, ItemId) {
        (self.display_name().to_lowercase().into_boxed_str(), self.id)
    }
}

/// One group of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The item holding the winning definition.
    pub item: ItemId,
    /// Its version.
    pub version: Version,
    /// The edit that set its name and description (`fields::GroupEdit`; its
    /// version when it carries none): how definitions are ordered.
    pub edited: Version,
    /// The definition.
    pub group: Group,
    /// Other items defining the same group id (older edits), newest first.
    pub duplicates: Vec<ItemId>,
}

/// An item's payload as last read, and the record it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Read {
    origin: Origin,
    payload: Result<Held, Unreadable>,
}

impl Read {
    fn version(&self) -> Version {
        self.origin.version()
    }

    fn signature(&self) -> &[u8; 64] {
        self.origin.signature()
    }
}

/// The record a read came from: the record itself, shared with the replica (a
/// pointer, where a version and signature would be 112 bytes in every read), or,
/// for a view built from payloads read elsewhere (the node's item index), the
/// record's version and signature.
#[derive(Debug, Clone)]
enum Origin {
    Record(Record),
    Detached(Box<(Version, [u8; 64])>),
}

impl Origin {
    fn detached(version: Version, signature: [u8; 64]) -> Self {
        Self::Detached(Box::new((version, signature)))
    }

    fn version(&self) -> Version {
        match self {
            Self::Record(r) => r.version,
            Self::Detached(d) => d.0,
        }
    }

    fn signature(&self) -> &[u8; 64] {
        match self {
            Self::Record(r) => &r.signature,
            Self::Detached(d) => &d.1,
        }
    }
}

/// Reads from the same record are equal, however they hold it.
impl PartialEq for Origin {
    fn eq(&self, other: &Self) -> bool {
        self.version() == other.version() && self.signature() == other.signature()
    }
}

impl Eq for Origin {}

/// A payload as the view holds it: a contact behind an [`Arc`], so that the merged
/// contact it settles alone can share it instead of holding a copy; the rarer kinds
/// boxed, so that every read is small.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Contact(Arc<Contact>),
    Group(Box<Group>),
    Reserved(Box<item::Extra>),
}

impl From<Payload> for Held {
    fn from(p: Payload) -> Self {
        match p {
            Payload::Contact(c) => Self::Contact(Arc::new(c)),
            Payload::Group(g) => Self::Group(Box::new(g)),
            Payload::Reserved(e) => Self::Reserved(Box::new(e)),
        }
    }
}

impl Held {
    /// The payload, as a copy.
    fn payload(&self) -> Payload {
        match self {
            Self::Contact(c) => Payload::Contact(Contact::clone(c)),
            Self::Group(g) => Payload::Group(Group::clone(g)),
            Self::Reserved(e) => Payload::Reserved(item::Extra::clone(e)),
        }
    }
}

/// The deletion marks of one contact id: by the marking item's (version, id), the
/// deletion's own version and what it knew.
type Marks = BTreeMap<(Version, ItemId), (Version, fields::Seen)>;

/// The merged state of both nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Contacts by survivor.
    contacts: BTreeMap<ItemId, Arc<MergedContact>>,
    /// Display order: case-folded display name, then survivor.
    order: BTreeSet<(Box<str>, ItemId)>,
    /// Groups by group id.
    groups: BTreeMap<String, GroupEntry>,
    /// `<reserved/>` items per node that mark no deletion, which padding may
    /// retract at any time.
    plain_reserved: BTreeMap<NodeKind, BTreeSet<ItemId>>,
    /// `<reserved/>` items per node that mark a deletion (of a contact, or a
    /// group's removal), by the version they were written in (oldest first:
    /// padding keeps them for `MARK_KEPT_MS`, so it looks only at the old end).
    /// With `plain_reserved`, every reserved item.
    marks: BTreeMap<NodeKind, BTreeSet<(Version, ItemId)>>,
    /// Items that could not be read, per node and item.
    unreadable: BTreeMap<(NodeKind, ItemId), Unreadable>,
    /// Every live item as last read.
    items: BTreeMap<(NodeKind, ItemId), Read>,
    /// Contact item → the survivor of the contact it is part of, for the members
    /// that are not survivors themselves (a survivor is its contact's key in
    /// `contacts`): most contacts have one item, and need no entry. See
    /// [`View::survivor`].
    contact_index: BTreeMap<ItemId, ItemId>,
    /// Identity → the contact items that list it.
    by_identity: Identities,
    /// Group id → the items that define it.
    group_defs: BTreeMap<String, BTreeSet<ItemId>>,
    /// Group item (winner or duplicate) → group id.
    group_items: BTreeMap<ItemId, String>,
    /// Group id → survivors of the contacts that refer to it.
    group_refs: BTreeMap<String, BTreeSet<ItemId>>,
    /// Group id → the reserved items marking its removal (also in `marks`).
    group_removals: BTreeMap<String, BTreeSet<ItemId>>,
    /// (Group id, edit) → survivors of the contacts whose stamps mark their
    /// reference to that group gone by that edit (see
    /// [`View::taken_out_by_lost_removals`]).
    gone_refs: BTreeMap<(String, Version), BTreeSet<ItemId>>,
    /// Contact id → the reserved items marking its deletion (by version and item),
    /// with the deletion's own version and what it knew of the contact.
    deleted: BTreeMap<String, Marks>,
    /// Items every one of whose contact's items a deletion knew of (not shown), with
    /// the device of the newest such deletion, which retracts them.
    obsolete: BTreeMap<ItemId, DeviceId>,
    /// Survivors of the contacts that are [`MergedContact::unsettled`].
    unsettled: BTreeSet<ItemId>,
    /// A partial view (see [`View::partial`]): real items per node that exist but
    /// were not loaded, and the contacts they make.
    unloaded: [usize; 2],
    unloaded_contacts: usize,
}

/// An item as read from its record: the payload, or why it is not readable.
pub type ItemRead = (
    NodeKind,
    ItemId,
    Version,
    [u8; 64],
    Result<Payload, Unreadable>,
);

fn slot(node: NodeKind) -> usize {
    match node {
        NodeKind::Contacts => 0,
        NodeKind::Groups => 1,
    }
}

/// What an update found to merge again.
#[derive(Debug, Default)]
struct Dirty {
    /// Contact items whose contact (before and after) must be merged again.
    contacts: BTreeSet<ItemId>,
    /// Group ids whose definition must be chosen again.
    groups: BTreeSet<String>,
}

/// The contact id whose deletion a `<reserved/>` item marks, and what the deletion
/// knew, if it marks one.
pub(crate) fn deletion_mark(extra: &item::Extra) -> Option<fields::Deletion<'_>> {
    extra.children().iter().find_map(fields::read_deletion)
}

/// Whether a `<reserved/>` item marks something padding keeps: a contact's
/// deletion or a group's removal.
pub(crate) fn is_mark(extra: &item::Extra) -> bool {
    deletion_mark(extra).is_some() || fields::read_group_removal(extra).is_some()
}

impl View {
    /// Builds the view of `replica`, opening items with `keyring`.
    pub fn build(replica: &Replica, keyring: &Keyring, opener: &mut Opener) -> Self {
        Self::build_cached(replica, keyring, opener, &mut |_, _| None, None)
    }

    /// Builds the view of `replica`, taking the payload of a record from `cache`
    /// when it has it (a payload read earlier from exactly that record), and
    /// opening the others with `keyring` (or taking them from `shared`).
    pub(crate) fn build_cached(
        replica: &Replica,
        keyring: &Keyring,
        opener: &mut Opener,
        cache: &mut dyn FnMut(NodeKind, &Record) -> Option<Payload>,
        shared: Option<&Reads>,
    ) -> Self {
        let mut view = Self::default();
        let all = replica
            .records()
            .filter_map(|r| r.space.node().map(|n| (n, r.item)));
        view.update_cached(replica, keyring, opener, all, cache, shared);
        view
    }

    /// A view of some items only: `reads` are the items loaded, `unloaded` the real
    /// (contact or group) items per node that exist but were not, and
    /// `unloaded_contacts` the contacts those make. Such a view answers for the
    /// loaded items and counts what it did not load, which is what a command needs
    /// when every item it touches (a contact with all it is linked to, every group,
    /// reserved and unreadable item) was loaded.
    pub fn partial(
        reads: impl IntoIterator<Item = ItemRead>,
        unloaded: [usize; 2],
        unloaded_contacts: usize,
    ) -> Self {
        let mut view = Self::default();
        let mut dirty = Dirty::default();
        for (node, item, version, signature, payload) in reads {
            let read = Read {
                origin: Origin::detached(version, signature),
                payload: payload.map(Held::from),
            };
            view.set_item(node, item, Some(read), &mut dirty);
        }
        view.remerge(dirty, None);
        view.unloaded = unloaded;
        view.unloaded_contacts = unloaded_contacts;
        view
    }

    /// The item as last read: its version, signature, and payload or why it is
    /// unreadable; `None` when the item is not live (or not loaded).
    pub fn item(&self, node: NodeKind, item: &ItemId) -> Option<ItemRead> {
        self.items.get(&(node, *item)).map(|r| {
            let payload = match &r.payload {
                Ok(held) => Ok(held.payload()),
                Err(e) => Err(e.clone()),
            };
            (node, *item, r.version(), *r.signature(), payload)
        })
    }

    /// Whether the item is not live (or not loaded): [`View::item`] is `None`.
    pub fn item_is_gone(&self, node: NodeKind, item: &ItemId) -> bool {
        !self.items.contains_key(&(node, *item))
    }

    /// Whether the item is a `<reserved/>` placeholder marking a deletion (of a
    /// contact, or a group's removal).
    pub fn marks_deletion(&self, node: NodeKind, item: &ItemId) -> bool {
        self.items
            .get(&(node, *item))
            .is_some_and(|r| matches!(&r.payload, Ok(Held::Reserved(extra)) if is_mark(extra)))
    }

    /// Brings the view up to date with `replica` for the `touched` items (those
    /// whose record changed, and those waiting for a secret the keyring now holds);
    /// items not named are assumed unchanged.
    pub fn update(
        &mut self,
        replica: &Replica,
        keyring: &Keyring,
        opener: &mut Opener,
        touched: impl IntoIterator<Item = (NodeKind, ItemId)>,
    ) {
        self.update_cached(replica, keyring, opener, touched, &mut |_, _| None, None);
    }

    /// [`View::update`], taking the payload of a record from `cache` when it has
    /// it (a payload read earlier from exactly that record), else from `shared`.
    pub(crate) fn update_cached(
        &mut self,
        replica: &Replica,
        keyring: &Keyring,
        opener: &mut Opener,
        touched: impl IntoIterator<Item = (NodeKind, ItemId)>,
        cache: &mut dyn FnMut(NodeKind, &Record) -> Option<Payload>,
        shared: Option<&Reads>,
    ) {
        let mut dirty = Dirty::default();
        for (node, item) in touched {
            let old = self.items.get(&(node, item));
            let new = match replica.get(Space::from(node), &item) {
                Some(r) if !r.is_tombstone() => {
                    match read(r, replica, node, keyring, opener, old, cache, shared) {
                        Some(new) => Some(new),
                        None => continue,
                    }
                }
                _ if old.is_none() => continue,
                _ => None,
            };
            self.set_item(node, item, new, &mut dirty);
        }
        self.remerge(dirty, shared);
    }

    /// Holds `shelved` (each the shelved form of a record, see
    /// [`Record::to_shelved`]) instead of the record it was read from, where that is
    /// the record a read holds: the full record's memory can then be freed.
    pub(crate) fn hold_shelved(&mut self, shelved: &[Record]) {
        for r in shelved {
            let Some(node) = r.space.node() else { continue };
            if let Some(read) = self.items.get_mut(&(node, r.item))
                && let Origin::Record(held) = &read.origin
                && r.same_as(held)
            {
                read.origin = Origin::Record(r.clone());
            }
        }
    }

    /// Builds the view from payloads already opened (any order).
    pub fn from_payloads(
        payloads: impl IntoIterator<Item = (NodeKind, ItemId, Version, Payload)>,
    ) -> Self {
        let mut view = Self::default();
        let mut dirty = Dirty::default();
        for (node, item, version, payload) in payloads {
            let read = Read {
                origin: Origin::detached(version, [0; 64]),
                payload: Ok(payload.into()),
            };
            view.set_item(node, item, Some(read), &mut dirty);
        }
        view.remerge(dirty, None);
        view
    }

    /// The items waiting for a secret.
    pub fn waiting(&self) -> impl Iterator<Item = (NodeKind, ItemId)> + '_ {
        self.unreadable
            .iter()
            .filter(|(_, u)| matches!(u, Unreadable::Waiting(_)))
            .map(|(k, _)| *k)
    }
}

#[cfg(test)]
mod tests;
