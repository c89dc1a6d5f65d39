//! How the view merges again what changed: the definitions of dirty groups, then
//! the contacts whose items changed (their connected items merged field by field),
//! and the unknown groups of contacts whose groups appeared or went.

use super::*;

impl View {
    /// Chooses the definitions of dirty groups again, then merges dirty contacts
    /// again; contacts that refer to a group that appeared or went have their
    /// unknown groups brought up to date, without a merge.
    pub(super) fn remerge(&mut self, dirty: Dirty, shared: Option<&Reads>) {
        // Merged contacts whose unknown groups may have changed, by survivor.
        let mut regroup: BTreeSet<ItemId> = BTreeSet::new();
        for id in dirty.groups {
            let existed = self.groups.remove(&id).is_some();
            // Ordered by the edit that set each definition (`fields::GroupEdit`:
            // a rewrite after a rotation keeps it), at most its record's version.
            // A definition a live removal of the group names (that item, holding
            // that edit) is removed, should it be live again (a rotation's rewrite
            // or a client's publish made apart from the removal).
            let removed: BTreeSet<(ItemId, Version)> = self
                .group_removals(&id)
                .into_iter()
                .flat_map(|(_, r)| r.edit.replaces)
                .collect();
            let mut defs: Vec<(Version, Version, ItemId, &Group)> = self
                .group_defs
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|item| {
                    let (edited, group) = self.group_definition(item)?;
                    if removed.contains(&(*item, edited)) {
                        return None;
                    }
                    let version = self.items.get(&(NodeKind::Groups, *item))?.version();
                    Some((edited, version, *item, group))
                })
                .collect();
            defs.sort_by_key(|d| std::cmp::Reverse((d.0, d.1, d.2)));
            let exists = !defs.is_empty();
            if let Some(&(edited, version, item, group)) = defs.first() {
                let entry = GroupEntry {
                    item,
                    version,
                    edited,
                    group: group.clone(),
                    duplicates: defs[1..].iter().map(|d| d.2).collect(),
                };
                self.groups.insert(id.clone(), entry);
            }
            if existed != exists {
                // Contacts referring to it gain or lose an unknown group: nothing
                // else of their merge depends on which groups exist.
                regroup.extend(self.group_refs.get(&id).into_iter().flatten());
            }
        }
        // Every item of the contacts the dirty items belonged to...
        let mut region: BTreeSet<ItemId> = BTreeSet::new();
        for item in &dirty.contacts {
            if let Some(survivor) = self.survivor(item) {
                self.remove_contact(survivor, &mut region);
            }
            self.obsolete.remove(item);
            region.insert(*item);
        }
        // ...is merged again, with whatever it is connected to now.
        let mut done: BTreeSet<ItemId> = BTreeSet::new();
        for start in region {
            if done.contains(&start) || !self.is_contact_item(&start) {
                continue;
            }
            let mut component = vec![start];
            done.insert(start);
            // Identities already followed, by the address of their set of items in
            // the index (which nothing changes during the merge): each is followed
            // once, however many items share it.
            let mut followed: std::collections::HashSet<usize> = Default::default();
            let mut next = 0;
            while next < component.len() {
                let item = component[next];
                next += 1;
                // A contact outside the region that this one now links to joins whole.
                if let Some(survivor) = self.survivor(&item) {
                    let mut more = BTreeSet::new();
                    self.remove_contact(survivor, &mut more);
                    for m in more {
                        if done.insert(m) {
                            component.push(m);
                        }
                    }
                }
                let Some(Read {
                    payload: Ok(Held::Contact(c)),
                    ..
                }) = self.items.get(&(NodeKind::Contacts, item))
                else {
                    continue;
                };
                let mut links: Vec<ItemId> = Vec::new();
                for (kind, value) in fields::links(c) {
                    if let Some(set) = self.by_identity.get(kind, value)
                        && followed.insert(std::ptr::from_ref(set) as usize)
                    {
                        links.extend(set);
                    }
                }
                for other in links {
                    if done.insert(other) {
                        component.push(other);
                    }
                }
            }
            self.insert_contact(&component, shared);
        }
        // Those merged again above already count the groups as they now are.
        for survivor in regroup {
            self.regroup(survivor);
        }
    }

    /// Brings the unknown groups of the merged contact whose survivor is `survivor`
    /// (if it still is one) up to date with the groups the view defines: all that a
    /// group appearing or going changes in a contact that refers to it.
    pub(super) fn regroup(&mut self, survivor: ItemId) {
        let Some(merged) = self.contacts.get(&survivor) else {
            return;
        };
        let unknown = self.unknown_groups(&merged.contact);
        if unknown != merged.unknown_groups {
            let merged = Arc::new(MergedContact {
                unknown_groups: unknown,
                ..MergedContact::clone(merged)
            });
            self.contacts.insert(survivor, merged);
        }
    }

    /// The group references of `contact` that no group of the view defines.
    pub(super) fn unknown_groups(&self, contact: &Contact) -> Vec<String> {
        contact
            .groups
            .iter()
            .filter(|g| !self.groups.contains_key(&g.id))
            .map(|g| g.id.clone())
            .collect()
    }

    /// The survivor of the contact `item` is a member of.
    pub(super) fn survivor(&self, item: &ItemId) -> Option<ItemId> {
        match self.contact_index.get(item) {
            Some(s) => Some(*s),
            None => self.contacts.contains_key(item).then_some(*item),
        }
    }

    pub(super) fn is_contact_item(&self, item: &ItemId) -> bool {
        matches!(
            self.items.get(&(NodeKind::Contacts, *item)),
            Some(Read {
                payload: Ok(Held::Contact(_)),
                ..
            })
        )
    }

    /// Marks the items carrying contact id `cid` to be merged again.
    pub(super) fn dirty_contact_id(&self, cid: &str, dirty: &mut Dirty) {
        if let Some(set) = self.by_identity.get(CONTACT_ID_KIND, cid) {
            dirty.contacts.extend(set);
        }
    }

    /// Takes a merged contact out of the view; its members go to `members`.
    pub(super) fn remove_contact(&mut self, survivor: ItemId, members: &mut BTreeSet<ItemId>) {
        let Some(c) = self.contacts.remove(&survivor) else {
            return;
        };
        self.unsettled.remove(&survivor);
        self.order.remove(&c.sort_key());
        for (m, _) in c.members() {
            self.contact_index.remove(&m);
            members.insert(m);
        }
        for g in &c.contact.groups {
            if let Some(set) = self.group_refs.get_mut(&g.id) {
                set.remove(&survivor);
                if set.is_empty() {
                    self.group_refs.remove(&g.id);
                }
            }
        }
        for key in fields::gone_group_marks(&c.contact) {
            if let Some(set) = self.gone_refs.get_mut(&key) {
                set.remove(&survivor);
                if set.is_empty() {
                    self.gone_refs.remove(&key);
                }
            }
        }
    }

    /// Merges contact items that share identities (transitively) into one contact.
    pub(super) fn insert_contact(&mut self, component: &[ItemId], shared: Option<&Reads>) {
        #[cfg(test)]
        tests::MERGES.with(|m| m.set(m.get() + 1));
        for item in component {
            self.obsolete.remove(item);
        }
        let mut members: Vec<(ItemId, Version, &Arc<Contact>)> = component
            .iter()
            .filter_map(|item| match self.items.get(&(NodeKind::Contacts, *item)) {
                Some(
                    r @ Read {
                        payload: Ok(Held::Contact(c)),
                        ..
                    },
                ) => Some((*item, r.version(), c)),
                _ => None,
            })
            .collect();
        if members.is_empty() {
            return;
        }
        // Newest first.
        members.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // Deletions of this contact (by any id or alias of its items), each with the
        // ids of these items it names.
        let cids: BTreeSet<&str> = members
            .iter()
            .flat_map(|m| {
                fields::contact_id(m.2)
                    .into_iter()
                    .chain(fields::aliases(m.2))
            })
            .collect();
        let mut deletions: Vec<merge::Deletion<'_>> = Vec::new();
        for cid in cids {
            for (at, seen) in self.deleted.get(cid).into_iter().flatten().map(|(_, d)| d) {
                match deletions.iter_mut().find(|d| d.at == *at) {
                    Some(d) => d.ids.push(cid),
                    None => deletions.push(merge::Deletion {
                        at: *at,
                        seen,
                        ids: vec![cid],
                    }),
                }
            }
        }
        // A contact of one item and no deletion merges the same way for every
        // holder: its merge is shared, by the item's signature (of a record at
        // hand: a read built from payloads alone may not carry one).
        let alone = match (shared, members.as_slice()) {
            (Some(shared), [(item, ..)]) if deletions.is_empty() => self
                .items
                .get(&(NodeKind::Contacts, *item))
                .filter(|r| matches!(r.origin, Origin::Record(_)))
                .map(|r| (shared, *r.signature())),
            _ => None,
        };
        let known = alone.and_then(|(shared, s)| shared.alone(&s));
        let unknown_groups = |c: &Contact| self.unknown_groups(c);
        let contact = match known {
            // The same item, so the same member and version: only the groups this
            // holder knows may differ.
            Some(Alone(known)) => {
                let unknown = unknown_groups(&known.contact);
                if unknown == known.unknown_groups {
                    known
                } else {
                    Arc::new(MergedContact {
                        unknown_groups: unknown,
                        ..MergedContact::clone(&known)
                    })
                }
            }
            None => {
                let by_version: Vec<(Version, &Contact)> =
                    members.iter().map(|m| (m.1, m.2.as_ref())).collect();
                // Every item made obsolete by a deletion: the contact is gone, and its
                // items are left for the device of the newest deletion to retract.
                let Some(merged) = merge::merge(&by_version, &deletions) else {
                    let cleaner = deletions.iter().map(|d| d.at).max().map(|d| d.device);
                    let items: Vec<ItemId> = members.iter().map(|m| m.0).collect();
                    if let Some(cleaner) = cleaner {
                        for item in items {
                            self.obsolete.insert(item, cleaner);
                        }
                    }
                    return;
                };
                // One item that the merge leaves as it is: the view holds it once.
                let contact = match members.as_slice() {
                    [(_, _, only)] if only.as_ref() == &merged.contact => Arc::clone(only),
                    _ => Arc::new(merged.contact),
                };
                let holder = members
                    .iter()
                    .find(|m| merged.newest_holds && m.1 == merged.newest)
                    .map(|m| m.0);
                let mut ids: Vec<(ItemId, Version)> = members.iter().map(|m| (m.0, m.1)).collect();
                ids.sort();
                let id = ids[0].0;
                let members = match ids.as_slice() {
                    [(_, v)] if *v == merged.newest => Members::Survivor,
                    _ => Members::Listed(ids),
                };
                let merged = Arc::new(MergedContact {
                    id,
                    members,
                    unknown_groups: unknown_groups(&contact),
                    contact,
                    version: merged.newest,
                    lost: merged.lost,
                    unsettled: merged.unsettled,
                    holder,
                });
                if let Some((shared, s)) = alone {
                    shared.put_alone(s, &Alone(Arc::clone(&merged)));
                }
                merged
            }
        };
        if contact.unsettled {
            self.unsettled.insert(contact.id);
        }
        let survivor = contact.id;
        for (m, _) in contact.members() {
            if m != survivor {
                self.contact_index.insert(m, survivor);
            }
        }
        for g in &contact.contact.groups {
            self.group_refs
                .entry(g.id.clone())
                .or_default()
                .insert(survivor);
        }
        for key in fields::gone_group_marks(&contact.contact) {
            self.gone_refs.entry(key).or_default().insert(survivor);
        }
        self.order.insert(contact.sort_key());
        self.contacts.insert(survivor, contact);
    }
}
