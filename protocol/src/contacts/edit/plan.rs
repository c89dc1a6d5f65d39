//! From a command to a plan: what each command writes, against the current view.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand_core::CryptoRng;

use super::writes::{Plan, Write, carries_kith, check_published, hex, push_group};
use super::{Command, ContactEdit, Editor, Error, ImportSummary};
use crate::contacts::merge;
use crate::contacts::view::{GroupEntry, MergedContact, View};
use crate::item::{Contact, Extra, Identity, NodeKind, Payload, fields};
use crate::record::{ItemId, Version};
use crate::seal::{Keyring, Opener};

impl Editor {
    pub(super) fn plan<'v, R: CryptoRng + ?Sized>(
        &self,
        view: &'v View,
        command: Command,
        keyring: &Keyring,
        opener: &mut Opener,
        stamp: Version,
        rng: &mut R,
    ) -> Result<Plan<'v>, Error> {
        let mut plan = Plan::new(view, keyring, stamp);
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
                    plan.join_group(&mut contact, &g, rng);
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
                let mut contact = Contact::clone(&target.contact);
                if let Some(n) = name {
                    contact.name = n;
                }
                for g in add_groups {
                    plan.join_group(&mut contact, &g, rng);
                }
                for g in remove_groups {
                    let named = view.groups_named(&g);
                    if named.is_empty() {
                        return Err(Error::NoSuchGroup(g));
                    }
                    contact
                        .groups
                        .retain(|r| !named.iter().any(|e| e.group.id == r.id));
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
                for (item, _) in target.members() {
                    plan.write(NodeKind::Contacts, item, Write::Tombstone);
                }
                // Marked with the contact's id and the ids of the items merged
                // into it: a copy of any of them that comes late (or a rewrite of
                // one) is known as part of what was deleted.
                let mut mark = Extra::default();
                if let Ok(state) = fields::State::of(&target.contact, merge::ORIGIN)
                    && let Some(cid) = &state.contact_id
                {
                    let deletion =
                        fields::deletion_element(cid, &state.aliases, &state.seen, stamp);
                    mark.edit(|_, children| children.push(deletion));
                }
                plan.write(
                    NodeKind::Contacts,
                    ItemId::random(rng),
                    Write::Payload(Payload::Reserved(mark)),
                );
            }
            Command::AddGroup { name, description } => {
                if let Some(g) = view.group_by_name(&name) {
                    // Named as it is stored (a look-alike of the name given).
                    return Err(Error::GroupExists(g.group.name.clone()));
                }
                let id = plan.group_id(&name, rng);
                if let Some(d) = description {
                    plan.set_group_description(&id, d);
                }
            }
            Command::RenameGroup { name, new_name } => {
                // Groups named alike fold into the first, the one of the smallest
                // group id, whichever name was typed: two devices folding the same
                // groups apart keep the same one (each removing the one the other
                // kept would leave the contacts only one of them moved in no group).
                let named = view.groups_named(&name);
                let Some((entry, others)) = named.split_first() else {
                    return Err(Error::NoSuchGroup(name));
                };
                // Another group of that name (or a look-alike of it) refuses it; the
                // group's own name in another case or form is a rename.
                if let Some(other) = view
                    .groups_named(&new_name)
                    .into_iter()
                    .find(|other| !named.iter().any(|g| g.item == other.item))
                {
                    return Err(Error::GroupExists(other.group.name.clone()));
                }
                // A group folded in gives its description to one that has none.
                let description = entry
                    .group
                    .description
                    .clone()
                    .or_else(|| others.iter().find_map(|g| g.group.description.clone()));
                // A definition written apart and listed as its conflict: settled
                // by a new definition that names it as replaced (reserving it alone
                // could cross a rotation's rewrite of it, which would bring it
                // back).
                let conflicted = view
                    .group_conflicts()
                    .iter()
                    .any(|c| c.entry.group.id == entry.group.id);
                // The name it has already: nothing to write (but its duplicates).
                if entry.group.name != new_name
                    || entry.group.description != description
                    || conflicted
                {
                    let mut group = entry.group.clone();
                    group.name = new_name;
                    group.description = description;
                    // The edit, and the definitions it knew of (each with the edit
                    // it held): they are replaced, not in conflict, whatever order
                    // their reservations arrive in.
                    // A removal made apart is named too, so a rotation's rewrite
                    // of its mark made meanwhile does not list it again.
                    let replaces = view.group_knew(
                        entry,
                        view.group_removals(&entry.group.id).into_iter().flat_map(
                            // The definitions the removal named stay replaced once
                            // its mark goes.
                            |(i, r)| std::iter::once((i, r.edit.at)).chain(r.edit.replaces),
                        ),
                    );
                    fields::set_group_edit(&mut group.extra, plan.stamp, &replaces);
                    // As a new item, never over the old one: a rename made apart on
                    // another device writes its own, and the two stay side by side
                    // as definitions of one group id, the older listed as a conflict
                    // (`View::group_conflicts`) instead of lost in silence.
                    plan.write(
                        NodeKind::Groups,
                        ItemId::random(rng),
                        Write::Payload(Payload::Group(group)),
                    );
                    plan.reserve(NodeKind::Groups, entry.item);
                }
                for dup in &entry.duplicates {
                    plan.reserve(NodeKind::Groups, *dup);
                }
                // A removal made apart, listed as a conflict: the rename keeps the
                // group, knowing of it.
                for (mark, _) in view.group_removals(&entry.group.id) {
                    plan.reserve(NodeKind::Groups, mark);
                }
                // Groups named alike by devices apart are one group to a person:
                // renamed, they become the first, and their contacts join it.
                Self::fold_groups(view, &mut plan, others, Some(&entry.group.id), rng);
            }
            Command::RemoveGroup { name } => {
                let named = view.groups_named(&name);
                if named.is_empty() {
                    return Err(Error::NoSuchGroup(name));
                }
                Self::fold_groups(view, &mut plan, &named, None, rng);
            }
            // `Editor::check_import` plans an import the same way: keep them alike.
            Command::Import { contacts, replace } => {
                self.plan_import(view, &mut plan, contacts, replace, rng);
            }
            Command::Reseal => {
                for c in view.contacts() {
                    plan.write_contact(Some(c), Contact::clone(&c.contact), rng);
                }
                // Each definition is written again as it is, with the edit that
                // set it (so a rewrite never wins over a rename made meanwhile, nor
                // changes the order) and what it replaced; one in conflict stays
                // listed, the rest are reserved.
                let in_conflict: BTreeSet<ItemId> =
                    view.group_conflicts().into_iter().map(|c| c.item).collect();
                let rewrite = |item: &ItemId| {
                    let (edited, group) = view.group_definition(item)?;
                    let mut group = group.clone();
                    let replaces = fields::read_group_edit(&group.extra)
                        .map(|e| e.replaces)
                        .unwrap_or_default();
                    fields::set_group_edit(&mut group.extra, edited, &replaces);
                    Some(Write::Payload(Payload::Group(group)))
                };
                for entry in view.groups().values() {
                    if let Some(w) = rewrite(&entry.item) {
                        plan.write(NodeKind::Groups, entry.item, w);
                    }
                    for dup in &entry.duplicates {
                        match rewrite(dup).filter(|_| in_conflict.contains(dup)) {
                            Some(w) => plan.write(NodeKind::Groups, *dup, w),
                            None => plan.reserve(NodeKind::Groups, *dup),
                        }
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
                let mut contact = Contact::clone(&target.contact);
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
            Command::Settle => self.plan_settle(view, &mut plan, &BTreeSet::new(), rng),
            Command::SettleStandingIn(devices) => self.plan_settle(view, &mut plan, &devices, rng),
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
                    // A group is kith's to mark: the client's copy of the mark (if
                    // any) was dropped, and its edit is this command's.
                    // Over a definition of the same group, it keeps what that
                    // replaced, and its edit too when it changes neither name nor
                    // description (a client publishing again what it read).
                    Payload::Group(mut g) => {
                        let (at, replaces) = match view.group_definition(&item) {
                            Some((edited, old)) if old.id == g.id => {
                                let replaces = fields::read_group_edit(&old.extra)
                                    .map(|e| e.replaces)
                                    .unwrap_or_default();
                                let same = old.name == g.name && old.description == g.description;
                                (if same { edited } else { stamp }, replaces)
                            }
                            _ => (stamp, Vec::new()),
                        };
                        fields::set_group_edit(&mut g.extra, at, &replaces);
                        plan.write(node, item, Write::Payload(Payload::Group(g)));
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

    /// Plans away `groups`: their items (and duplicates) are reserved, and each
    /// contact in any of them is written once, its references to them moved to
    /// the group `into` (kept where they were, with what else they carry), or
    /// dropped when there is none or the contact is in it already.
    fn fold_groups<R: CryptoRng + ?Sized>(
        view: &View,
        plan: &mut Plan<'_>,
        groups: &[&GroupEntry],
        into: Option<&str>,
        rng: &mut R,
    ) {
        let mut contacts: BTreeMap<ItemId, &MergedContact> = BTreeMap::new();
        for entry in groups {
            plan.reserve(NodeKind::Groups, entry.item);
            for dup in &entry.duplicates {
                plan.reserve(NodeKind::Groups, *dup);
            }
            // A removal leaves a mark naming the definitions it knew: one written
            // apart (a rename) then lists the removal as a conflict instead of
            // keeping the group in silence. Earlier marks of the group go.
            if into.is_none() {
                let earlier = view.group_removals(&entry.group.id);
                for (mark, _) in &earlier {
                    plan.reserve(NodeKind::Groups, *mark);
                }
                // What the earlier marks removed stays removed once they go.
                let knew = view.group_knew(
                    entry,
                    earlier.into_iter().flat_map(|(_, r)| r.edit.replaces),
                );
                let mark = fields::group_removal_element(&entry.group.id, plan.stamp, &knew);
                plan.write(
                    NodeKind::Groups,
                    ItemId::random(rng),
                    Write::Payload(Payload::Reserved(Extra::new(Vec::new(), vec![mark]))),
                );
            }
            for c in view.contacts_in_group(&entry.group.id) {
                contacts.insert(c.id, c);
            }
        }
        // Renamed: the contacts a removal that lost took out of the group go back
        // in (the rename settles the removal, keeping the group).
        let mut put_back = BTreeSet::new();
        if let Some(into) = into {
            for t in view.taken_out_by_lost_removals() {
                if t.group.group.id == into {
                    contacts.insert(t.contact.id, t.contact);
                    put_back.insert(t.contact.id);
                }
            }
        }
        let folded = |id: &str| groups.iter().any(|g| g.group.id == id);
        for c in contacts.into_values() {
            let mut contact = Contact::clone(&c.contact);
            let mut keep = into.filter(|i| !contact.groups.iter().any(|g| g.id == *i));
            contact.groups.retain_mut(|g| {
                if !folded(&g.id) {
                    return true;
                }
                match keep.take() {
                    Some(i) => {
                        g.id = i.to_owned();
                        true
                    }
                    None => false,
                }
            });
            if let Some(i) = keep
                && put_back.contains(&c.id)
            {
                push_group(&mut contact, i.to_owned());
            }
            plan.write_contact(Some(c), contact, rng);
        }
    }

    pub(super) fn plan_import<R: CryptoRng + ?Sized>(
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
            // Group references by name until they are joined below.
            let groups = std::mem::take(&mut incoming.groups);
            let hit = incoming.identities.iter().find_map(|i| {
                by_identity
                    .get(&(i.kind.to_string(), i.value.clone()))
                    .copied()
                    .or_else(|| {
                        view.contact_by_identity(&i.kind, &i.value)
                            .map(|c| Target::Existing(c.id))
                    })
            });
            let (target, contact) = match hit {
                Some(Target::Existing(id)) => {
                    let base = || view.contact(&id).map(|c| Contact::clone(&c.contact));
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
            for g in &groups {
                plan.join_group(contact, &g.id, rng);
            }
            for id in &contact.identities {
                by_identity.insert((id.kind.to_string(), id.value.clone()), target);
            }
        }
        let mut summary = ImportSummary {
            added: new.len(),
            ..ImportSummary::default()
        };
        for (id, contact) in touched {
            let before = view.contact(&id);
            if before.is_some_and(|b| *b.contact == contact && b.member_count() == 1) {
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
}
