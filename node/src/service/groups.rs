//! The group requests that find groups by name: the contacts of a group, the
//! group list, a rename (which folds groups named alike into one), a removal, and
//! the group a command made or renamed, as stored.

use std::collections::BTreeSet;

use kith_protocol::contacts::{Command, Error as ContactsError};
use kith_protocol::item;
use kith_protocol::record::ItemId;

use super::{contact_of, refused, text};
use crate::api::Error;
use crate::api::answer::{ContactList, Group, GroupChanged, GroupList};
use crate::device::Device;

impl Device {
    /// The contacts of the group `group` names (cleaned as the group commands clean
    /// a name; every group of that name), in the list's order, not the group's.
    pub(super) fn contacts_in(&mut self, group: &str) -> Result<ContactList, Error> {
        text("a group name", Some(group))?;
        let group = item::clean_name(group);
        let view = self.engine.view();
        // Every group of that name (devices apart may have named two alike).
        let ids: BTreeSet<&str> = view
            .groups_named(&group)
            .iter()
            .map(|g| g.group.id.as_str())
            .collect();
        if ids.is_empty() {
            return Err(refused(ContactsError::NoSuchGroup(group)));
        }
        let list = view
            .contacts()
            .filter(|c| c.contact.groups.iter().any(|g| ids.contains(g.id.as_str())))
            .map(|c| contact_of(view, c))
            .collect();
        Ok(ContactList(list))
    }

    /// Every group, by name, with how many contacts it has.
    pub(super) fn groups(&mut self) -> GroupList {
        let view = self.engine.view();
        let mut groups: Vec<Group> = view
            .groups()
            .values()
            .map(|g| Group {
                id: g.group.id.clone(),
                name: g.group.name.clone(),
                description: g.group.description.clone(),
                contacts: view.contacts_in_group(&g.group.id).count(),
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        GroupList(groups)
    }

    /// Renames the group `name` finds (folding in the groups named alike), and says
    /// whether a person sees a change and how many groups were folded.
    pub(super) fn rename_group(
        &mut self,
        name: String,
        new_name: String,
    ) -> Result<GroupChanged, Error> {
        text("a group name", Some(&new_name))?;
        let before = self.groups_as_named(&name);
        let conflicts = self.conflicts_of(&name);
        self.command(Command::RenameGroup {
            name,
            new_name: new_name.clone(),
        })?;
        // A person sees names and descriptions (a settled conflict writes a new
        // item under the same name: said apart).
        let shown = |g: &[(ItemId, String, Option<String>)]| -> Vec<(String, Option<String>)> {
            g.iter().map(|(_, n, d)| (n.clone(), d.clone())).collect()
        };
        let changed = shown(&before) != shown(&self.groups_as_named(&new_name));
        let mut answer = self.changed_group(&new_name);
        answer.changed = Some(changed);
        answer.folded = Some(before.len()).filter(|n| *n > 1);
        answer.was = before.first().map(|(_, name, _)| name.clone());
        answer.settled =
            Some(conflicts.saturating_sub(self.conflicts_of(&new_name))).filter(|n| *n > 0);
        Ok(answer)
    }

    /// Removes the group `name` finds, and every group named alike; says the name
    /// it had as stored, and how many groups went when more than one.
    pub(super) fn remove_group(&mut self, name: String) -> Result<GroupChanged, Error> {
        let before = self.groups_as_named(&name);
        self.command(Command::RemoveGroup { name })?;
        Ok(GroupChanged {
            done: true,
            group: before.first().map(|(_, name, _)| name.clone()),
            changed: None,
            was: None,
            folded: Some(before.len()).filter(|n| *n > 1),
            settled: None,
        })
    }

    /// The group a command made or renamed, as stored (the name given, trimmed and
    /// in NFC, or the look-alike it matched).
    pub(super) fn changed_group(&mut self, name: &str) -> GroupChanged {
        let view = self.engine.view();
        let group = view
            .group_by_name(&item::clean_name(name))
            .map(|g| g.group.name.clone());
        GroupChanged {
            done: true,
            group,
            changed: None,
            was: None,
            folded: None,
            settled: None,
        }
    }

    /// How many definitions of the group `name` finds (the one a rename keeps)
    /// are listed as conflicts.
    fn conflicts_of(&mut self, name: &str) -> usize {
        let view = self.engine.view();
        let Some(id) = view
            .group_by_name(&item::clean_name(name))
            .map(|g| g.group.id.clone())
        else {
            return 0;
        };
        view.group_conflicts()
            .iter()
            .filter(|c| c.entry.group.id == id)
            .count()
    }

    /// What a person sees of the groups `name` finds: their items, names and
    /// descriptions (a rename that leaves these as they were changed nothing a
    /// person sees, though it may have removed duplicate items of the group).
    fn groups_as_named(&mut self, name: &str) -> Vec<(ItemId, String, Option<String>)> {
        let view = self.engine.view();
        view.groups_named(&item::clean_name(name))
            .iter()
            .map(|g| (g.item, g.group.name.clone(), g.group.description.clone()))
            .collect()
    }
}
