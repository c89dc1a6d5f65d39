//! Reading the merged view: contacts by name, address, group; groups; reserved,
//! unreadable and unsettled items; counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{GroupEntry, Held, MergedContact, Read, Unreadable, View, slot};
use crate::item::{self, Contact, Group, NodeKind, fields};
use crate::jid::BareJid;
use crate::record::{DeviceId, ItemId, Version};

impl View {
    /// The contacts, sorted by display name (case-folded), then id.
    pub fn contacts(&self) -> impl DoubleEndedIterator<Item = &MergedContact> + '_ {
        self.order
            .iter()
            .filter_map(|(_, id)| self.contacts.get(id).map(Arc::as_ref))
    }

    /// How many contacts.
    pub fn contact_count(&self) -> usize {
        self.contacts.len() + self.unloaded_contacts
    }

    /// The contact a member item belongs to.
    pub fn contact(&self, item: &ItemId) -> Option<&MergedContact> {
        self.contacts.get(&self.survivor(item)?).map(Arc::as_ref)
    }

    /// The contact with this JID among its identities.
    pub fn contact_by_jid(&self, jid: &BareJid) -> Option<&MergedContact> {
        self.contact_by_identity("jid", &jid.to_string())
    }

    /// The contact with an identity of this type and (normalised) value.
    pub fn contact_by_identity(&self, kind: &str, value: &str) -> Option<&MergedContact> {
        self.by_identity
            .get(kind, value)?
            .iter()
            .find_map(|item| self.contact(item))
    }

    /// The contacts that refer to group `id`.
    pub fn contacts_in_group<'a>(
        &'a self,
        id: &str,
    ) -> impl Iterator<Item = &'a MergedContact> + 'a {
        self.group_refs
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|s| self.contacts.get(s).map(Arc::as_ref))
    }

    /// Groups by group id.
    pub fn groups(&self) -> &BTreeMap<String, GroupEntry> {
        &self.groups
    }

    /// The definitions of groups that lost to a newer one written apart: two
    /// devices renamed a group (or created it with different descriptions) without
    /// knowing of each other's write. A rename writes a new item and reserves the
    /// one it replaced, so the two stay side by side as definitions of one group id
    /// until a command on the group (a rename, even to the name it has, or its
    /// removal) reserves the other: every device lists the same ones. Definitions
    /// that say the same (two devices that created one group alike) are not
    /// listed. By group id, then newest first.
    pub fn group_conflicts(&self) -> Vec<GroupConflict<'_>> {
        let mut out = Vec::new();
        for entry in self.groups.values() {
            if entry.duplicates.is_empty() && !self.group_removals.contains_key(&entry.group.id) {
                continue;
            }
            let replaced = self.replaced_by(entry);
            for dup in &entry.duplicates {
                if let Some((edited, g)) = self.group_definition(dup)
                    && !replaced.contains(&(*dup, edited))
                    && (g.name != entry.group.name || g.description != entry.group.description)
                {
                    out.push(GroupConflict {
                        entry,
                        item: *dup,
                        version: edited,
                        lost: LostGroup::Definition(g),
                    });
                }
            }
            for (item, version) in self.lost_removals(entry, &replaced) {
                out.push(GroupConflict {
                    entry,
                    item,
                    version,
                    lost: LostGroup::Removal,
                });
            }
        }
        out
    }

    /// What the live definitions of `entry`'s group replaced (that item, holding
    /// that edit): no conflict, though its reservation may not have arrived yet.
    fn replaced_by(&self, entry: &GroupEntry) -> BTreeSet<(ItemId, Version)> {
        std::iter::once(&entry.item)
            .chain(&entry.duplicates)
            .filter_map(|item| self.group_definition(item))
            .filter_map(|(_, g)| fields::read_group_edit(&g.extra))
            .flat_map(|e| e.replaces)
            .collect()
    }

    /// The removals of `entry`'s group that lost: made without knowing the
    /// definition that is live, and not replaced by any (`replaced`, from
    /// [`View::replaced_by`]). The group stays, and each is listed; each as its
    /// mark and the removal's edit.
    fn lost_removals(
        &self,
        entry: &GroupEntry,
        replaced: &BTreeSet<(ItemId, Version)>,
    ) -> Vec<(ItemId, Version)> {
        self.group_removals(&entry.group.id)
            .into_iter()
            .filter(|(item, removal)| {
                !removal.edit.replaces.contains(&(entry.item, entry.edited))
                    && !replaced.contains(&(*item, removal.edit.at))
            })
            .map(|(item, removal)| (item, removal.edit.at))
            .collect()
    }

    /// The contacts a removal of a group took out of it where the removal lost
    /// (the group is kept, and the removal listed by [`View::group_conflicts`]):
    /// their reference to the group is marked gone by that removal's edit, and
    /// nothing set it since (nor are they in a group named like it). The device
    /// of the kept definition's edit puts them back (`Command::Settle`), so a
    /// removal that lost takes nothing away; a settling rename puts them back
    /// too. By group id, then contact survivor.
    pub fn taken_out_by_lost_removals(&self) -> Vec<TakenOut<'_>> {
        self.taken_out(|_| true).collect()
    }

    /// Whether [`View::taken_out_by_lost_removals`] lists a contact of a group
    /// whose kept definition's edit was made by a device `by` accepts: what the
    /// engine asks at the end of every step, answered without listing them.
    pub fn any_taken_out(&self, by: impl Fn(&DeviceId) -> bool) -> bool {
        self.taken_out(by).next().is_some()
    }

    /// [`View::taken_out_by_lost_removals`] of the groups whose kept
    /// definition's edit was made by a device `by` accepts, as they are found;
    /// a group's look-alikes are read once a contact of it is.
    fn taken_out<'a>(
        &'a self,
        by: impl Fn(&DeviceId) -> bool + 'a,
    ) -> impl Iterator<Item = TakenOut<'a>> + 'a {
        self.group_removals
            .keys()
            .filter_map(|id| Some((id, self.groups.get(id)?)))
            .filter(move |(_, entry)| by(&entry.edited.device))
            .flat_map(move |(id, entry)| {
                let mut alike: Option<BTreeSet<String>> = None;
                self.lost_removals(entry, &self.replaced_by(entry))
                    .into_iter()
                    .flat_map(move |(_, at)| self.gone_refs.get(&(id.clone(), at)))
                    .flatten()
                    .filter_map(|survivor| self.contacts.get(survivor).map(Arc::as_ref))
                    .filter(move |c| {
                        let alike = alike.get_or_insert_with(|| self.alike_ids(entry));
                        !c.contact.groups.iter().any(|g| alike.contains(&g.id))
                    })
                    .map(move |contact| TakenOut {
                        contact,
                        group: entry,
                    })
            })
    }

    /// The ids of the groups named like `entry`'s (itself included): a contact
    /// in one of them is in the group to a person, and not put back in it.
    fn alike_ids(&self, entry: &GroupEntry) -> BTreeSet<String> {
        self.groups_named(&entry.group.name)
            .into_iter()
            .map(|g| g.group.id.clone())
            .collect()
    }

    /// The live marks of the removal of group `id`: each marking item, and what
    /// it says (its removal as at most the item's version).
    pub fn group_removals(&self, id: &str) -> Vec<(ItemId, fields::GroupRemoval)> {
        self.group_removals
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|item| match self.items.get(&(NodeKind::Groups, *item)) {
                Some(
                    r @ Read {
                        payload: Ok(Held::Reserved(extra)),
                        ..
                    },
                ) => {
                    let mut removal = fields::read_group_removal(extra)?;
                    removal.edit.at = removal.edit.at.min(r.version());
                    Some((*item, removal))
                }
                _ => None,
            })
            .collect()
    }

    /// The definitions of `entry`'s group (its winner, then its duplicates), each
    /// as its item and the edit it holds.
    pub fn group_definitions(&self, entry: &GroupEntry) -> Vec<(ItemId, Version)> {
        std::iter::once(entry.item)
            .chain(entry.duplicates.iter().copied())
            .filter_map(|i| self.group_definition(&i).map(|(at, _)| (i, at)))
            .collect()
    }

    /// What a command on `entry`'s group names as known (a rename's `replaces`,
    /// a removal's): its definitions ([`View::group_definitions`]), then `marks`
    /// (removal marks and what they removed), then what the definitions replaced,
    /// each once and in that order, as only the first
    /// [`fields::MAX_REPLACED`] are written. What the definitions replaced is
    /// named so that, should one come back (its replacement set aside, written by
    /// a device revoked before), it stays replaced.
    pub fn group_knew(
        &self,
        entry: &GroupEntry,
        marks: impl IntoIterator<Item = (ItemId, Version)>,
    ) -> Vec<(ItemId, Version)> {
        let mut out: Vec<(ItemId, Version)> = Vec::new();
        for r in self
            .group_definitions(entry)
            .into_iter()
            .chain(marks)
            .chain(self.replaced_by(entry))
        {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// The group `item` defines, and the edit that set it (`fields::GroupEdit`, at
    /// most its record's version; that version when it carries none): how
    /// definitions of one group are ordered.
    pub fn group_definition(&self, item: &ItemId) -> Option<(Version, &Group)> {
        match self.items.get(&(NodeKind::Groups, *item)) {
            Some(
                r @ Read {
                    payload: Ok(Held::Group(g)),
                    ..
                },
            ) => {
                let version = r.version();
                let edited =
                    fields::read_group_edit(&g.extra).map_or(version, |e| e.at.min(version));
                Some((edited, g.as_ref()))
            }
            _ => None,
        }
    }

    /// The groups a person means by `name`: every group whose name looks the same
    /// ([`item::lookalike`]: `Friends`, `friends `, `ｆｒｉｅｎｄｓ`), so a look-alike
    /// never makes a second group. By group id; more than one when devices apart
    /// named groups alike: to a person they are one group.
    pub fn groups_named(&self, name: &str) -> Vec<&GroupEntry> {
        self.groups_alike(name).collect()
    }

    /// The first of [`View::groups_named`] (the smallest group id): the group a new
    /// reference to `name` points to, and the one a rename folds the others into,
    /// so a reference made on a device apart is not to a group a fold removes.
    pub fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups_alike(name).next()
    }

    /// The groups whose name looks like `name`, by group id.
    fn groups_alike<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a GroupEntry> + 'a {
        let key = item::lookalike(name);
        self.groups
            .values()
            .filter(move |g| item::lookalike(&g.group.name) == key)
    }

    /// The `<reserved/>` items of `node`: those that mark no deletion by item id,
    /// then the deletion marks oldest first.
    pub fn reserved(&self, node: NodeKind) -> impl Iterator<Item = &ItemId> + '_ {
        self.plain_reserved(node)
            .chain(self.marks(node).map(|(_, item)| item))
    }

    /// The contact the contacts node's `item` holds, with the version of its
    /// record; `None` when that item is not a readable contact. Shared, not copied:
    /// it stays as it was read, whatever the view later holds.
    pub fn contact_item(&self, item: &ItemId) -> Option<(Version, Arc<Contact>)> {
        match self.items.get(&(NodeKind::Contacts, *item)) {
            Some(
                r @ Read {
                    payload: Ok(Held::Contact(c)),
                    ..
                },
            ) => Some((r.version(), Arc::clone(c))),
            _ => None,
        }
    }

    /// Whether `item` is a `<reserved/>` item of `node`.
    pub fn is_reserved(&self, node: NodeKind, item: &ItemId) -> bool {
        matches!(
            self.items.get(&(node, *item)).map(|r| &r.payload),
            Some(Ok(Held::Reserved(_)))
        )
    }

    /// The `<reserved/>` items of `node` that mark no deletion, by item id.
    pub fn plain_reserved(&self, node: NodeKind) -> impl DoubleEndedIterator<Item = &ItemId> + '_ {
        self.plain_reserved.get(&node).into_iter().flatten()
    }

    /// The `<reserved/>` items of `node` that mark a deletion, oldest first: the
    /// version each was written in, and the item.
    pub fn marks(&self, node: NodeKind) -> impl Iterator<Item = &(Version, ItemId)> + '_ {
        self.marks.get(&node).into_iter().flatten()
    }

    /// Whether a live item still carries a contact whose deletion the reserved
    /// `item` marks (an edit overruled the deletion, or an obsolete item is not
    /// retracted yet), or a group whose removal it marks is listed as a conflict
    /// (a definition it did not know is live).
    pub fn mark_still_carried(&self, node: NodeKind, item: &ItemId) -> bool {
        match self.items.get(&(node, *item)).map(|r| &r.payload) {
            Some(Ok(Held::Reserved(extra))) if fields::read_group_removal(extra).is_some() => self
                .group_conflicts()
                .iter()
                .any(|c| c.item == *item && c.lost == LostGroup::Removal),
            Some(Ok(Held::Reserved(extra))) => extra
                .children()
                .iter()
                .filter_map(fields::read_deletion)
                .any(|d| d.ids().any(|id| self.carries_contact_id(id))),
            _ => false,
        }
    }

    /// How many `<reserved/>` items `node` holds.
    pub fn reserved_count(&self, node: NodeKind) -> usize {
        self.plain_reserved.get(&node).map_or(0, BTreeSet::len)
            + self.marks.get(&node).map_or(0, BTreeSet::len)
    }

    /// Items that could not be read, per node and item.
    pub fn unreadable(&self) -> &BTreeMap<(NodeKind, ItemId), Unreadable> {
        &self.unreadable
    }

    /// Whether `item` is a live item of `node` that is not `<reserved/>`: a
    /// contact member, a group definition, or an item that cannot be read.
    pub fn is_real_item(&self, node: NodeKind, item: &ItemId) -> bool {
        let known = match node {
            NodeKind::Contacts => self.survivor(item).is_some(),
            NodeKind::Groups => self.group_items.contains_key(item),
        };
        known
            || self.unreadable.contains_key(&(node, *item))
            || (node == NodeKind::Contacts && self.obsolete.contains_key(item))
    }

    /// Whether `item` is live on `node` (not retracted), readable or not.
    pub fn is_live(&self, node: NodeKind, item: &ItemId) -> bool {
        self.items.contains_key(&(node, *item))
    }

    /// Number of live contact and group items (reserved ones included) on `node`.
    pub fn live_items(&self, node: NodeKind) -> usize {
        let real = match node {
            // Every contact's survivor, and the other members.
            NodeKind::Contacts => {
                self.contacts.len() + self.contact_index.len() + self.obsolete.len()
            }
            NodeKind::Groups => self.group_items.len(),
        };
        real + self.unloaded[slot(node)] + self.reserved_count(node)
    }

    /// Whether a live item (shown, or made obsolete by a deletion and not yet
    /// retracted) carries the contact id `cid`.
    pub fn carries_contact_id(&self, cid: &str) -> bool {
        self.by_identity
            .get(fields::CONTACT_ID_KIND, cid)
            .is_some_and(|s| !s.is_empty())
    }

    /// Items a deletion made obsolete (not shown), with the device that retracts
    /// them: the author of the newest deletion.
    pub fn obsolete(&self) -> impl Iterator<Item = (&ItemId, &DeviceId)> + '_ {
        self.obsolete.iter()
    }

    /// The contacts that are [`MergedContact::unsettled`], by survivor.
    pub fn unsettled(&self) -> impl Iterator<Item = &MergedContact> + '_ {
        self.unsettled
            .iter()
            .filter_map(|s| self.contacts.get(s).map(Arc::as_ref))
    }

    /// Whether this view holds every item (not [`View::partial`]).
    pub fn is_whole(&self) -> bool {
        self.unloaded == [0, 0] && self.unloaded_contacts == 0
    }
}

/// A write of a group that lost to another made apart ([`View::group_conflicts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConflict<'a> {
    /// The group as it is (its winning definition).
    pub entry: &'a GroupEntry,
    /// The item holding what lost: a definition, or a removal's mark.
    pub item: ItemId,
    /// The edit that wrote it.
    pub version: Version,
    /// What lost.
    pub lost: LostGroup<'a>,
}

/// A contact a removal that lost took out of a group
/// ([`View::taken_out_by_lost_removals`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenOut<'a> {
    /// The contact, as it is (without the group).
    pub contact: &'a MergedContact,
    /// The group it was taken out of, as it is (its kept definition).
    pub group: &'a GroupEntry,
}

/// What lost in a [`GroupConflict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostGroup<'a> {
    /// A definition (a rename, or a description), older than the winner's.
    Definition(&'a Group),
    /// The group's removal, made without knowing the definition that is live (a
    /// rename made apart): the group stays, and the contacts the removal took out
    /// of it are put back ([`View::taken_out_by_lost_removals`]).
    Removal,
}
