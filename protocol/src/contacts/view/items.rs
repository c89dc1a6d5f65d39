//! Keeping the view's indexes of items: by identity and contact id, group
//! definitions, reserved items and the deletions and group removals they mark,
//! unreadable items.

use std::collections::{BTreeMap, BTreeSet};

use super::{Dirty, Held, Read, View, deletion_mark};
use crate::item::{NodeKind, fields};
use crate::record::ItemId;

/// Removes `key` from the set of `node`, and the set when it is left empty.
fn remove_from<K: Ord>(sets: &mut BTreeMap<NodeKind, BTreeSet<K>>, node: NodeKind, key: &K) {
    if let Some(set) = sets.get_mut(&node) {
        set.remove(key);
        if set.is_empty() {
            sets.remove(&node);
        }
    }
}

impl View {
    /// Replaces what is known of one item, unindexing the old read and indexing the
    /// new one; what must be merged again goes to `dirty`.
    pub(super) fn set_item(
        &mut self,
        node: NodeKind,
        item: ItemId,
        new: Option<Read>,
        dirty: &mut Dirty,
    ) {
        if let Some(old) = self.items.remove(&(node, item)) {
            let old_version = old.version();
            match old.payload {
                Ok(Held::Contact(c)) => {
                    for (kind, value) in fields::links(&c) {
                        self.by_identity.remove(kind, value, &item);
                    }
                    // The items it linked are merged again, also those a deletion
                    // made obsolete (they are in no contact to take apart).
                    for (kind, value) in fields::links(&c) {
                        if let Some(set) = self.by_identity.get(kind, value) {
                            dirty.contacts.extend(set);
                        }
                    }
                    dirty.contacts.insert(item);
                }
                Ok(Held::Group(g)) => {
                    if let Some(set) = self.group_defs.get_mut(&g.id) {
                        set.remove(&item);
                        if set.is_empty() {
                            self.group_defs.remove(&g.id);
                        }
                    }
                    self.group_items.remove(&item);
                    dirty.groups.insert(g.id);
                }
                Ok(Held::Reserved(extra)) => {
                    remove_from(&mut self.plain_reserved, node, &item);
                    remove_from(&mut self.marks, node, &(old_version, item));
                    if let Some(r) =
                        fields::read_group_removal(&extra).filter(|_| node == NodeKind::Groups)
                        && let Some(set) = self.group_removals.get_mut(&r.group)
                    {
                        set.remove(&item);
                        if set.is_empty() {
                            self.group_removals.remove(&r.group);
                        }
                        // The definitions it named count again.
                        dirty.groups.insert(r.group);
                    }
                    if let Some(d) = deletion_mark(&extra) {
                        for cid in d.ids() {
                            if let Some(set) = self.deleted.get_mut(cid) {
                                set.remove(&(old_version, item));
                                if set.is_empty() {
                                    self.deleted.remove(cid);
                                }
                            }
                            self.dirty_contact_id(cid, dirty);
                        }
                    }
                }
                Err(_) => {
                    self.unreadable.remove(&(node, item));
                }
            }
        }
        let Some(new) = new else { return };
        match &new.payload {
            Ok(Held::Contact(c)) => {
                for (kind, value) in fields::links(c) {
                    self.by_identity.insert(kind, value, item);
                }
                dirty.contacts.insert(item);
            }
            Ok(Held::Group(g)) => {
                self.group_defs
                    .entry(g.id.clone())
                    .or_default()
                    .insert(item);
                self.group_items.insert(item, g.id.clone());
                dirty.groups.insert(g.id.clone());
            }
            Ok(Held::Reserved(extra)) => {
                match deletion_mark(extra) {
                    None => match fields::read_group_removal(extra)
                        .filter(|_| node == NodeKind::Groups)
                    {
                        // A group's removal: kept by padding as a deletion's mark;
                        // the definitions it names no longer count.
                        Some(r) => {
                            self.marks
                                .entry(node)
                                .or_default()
                                .insert((new.version(), item));
                            dirty.groups.insert(r.group.clone());
                            self.group_removals.entry(r.group).or_default().insert(item);
                        }
                        None => {
                            self.plain_reserved.entry(node).or_default().insert(item);
                        }
                    },
                    Some(d) => {
                        self.marks
                            .entry(node)
                            .or_default()
                            .insert((new.version(), item));
                        // The deletion is as old as it says (a rewrite keeps that), and
                        // knows nothing later than itself.
                        let at =
                            d.at.filter(|a| *a <= new.version())
                                .unwrap_or(new.version());
                        let mut seen = d.seen.clone();
                        seen.retain(|_, v| *v <= at);
                        for cid in d.ids() {
                            self.deleted
                                .entry(cid.to_owned())
                                .or_default()
                                .insert((new.version(), item), (at, seen.clone()));
                            self.dirty_contact_id(cid, dirty);
                        }
                    }
                }
            }
            Err(e) => {
                self.unreadable.insert((node, item), e.clone());
            }
        }
        self.items.insert((node, item), new);
    }
}
