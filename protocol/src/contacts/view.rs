//! The merged contact list: what a user sees, computed from the records alone, the
//! same on every device whatever order the records arrived in.
//!
//! * Contact items that share an identity (type and normalised value) are one
//!   contact, transitively (union-find over identities).
//! * Within a contact, members are read newest version first: `name` comes from the
//!   newest member that has one; identities, groups and unknown extensions are
//!   unions, in that order.
//! * The contact's id is its survivor: the member with the smallest item id.
//! * Groups are keyed by their `id` attribute; if several items define one group id,
//!   the newest version wins and the others are listed as duplicates.
//! * A group reference to an id no group item defines is kept and reported in
//!   [`MergedContact::unknown_groups`].
//! * Items that cannot be read yet (unknown secret) or at all (bad payload) are
//!   listed, never dropped: the records stay in the replica.

use std::collections::{BTreeMap, HashMap};

use crate::item;
use crate::item::{Contact, Group, NodeKind, Payload};
use crate::jid::BareJid;
use crate::record::{Body, ItemId, Record, Version};
use crate::replica::Replica;
use crate::seal::{self, Keyring, Opener};

/// Why an item's payload is not part of the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Sealed with a secret this device does not hold (yet).
    Waiting(String),
    /// The sealed data does not open.
    Sealing(seal::Error),
    /// It opens, but is not a valid XEP-0510 payload for its node.
    Payload(item::Error),
}

/// One contact of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedContact {
    /// The survivor: the member item with the smallest id. This is the contact's id.
    pub id: ItemId,
    /// Every item that is part of this contact, by item id, with its version.
    pub members: Vec<(ItemId, Version)>,
    /// The merged payload.
    pub contact: Contact,
    /// The newest member's version.
    pub version: Version,
    /// Group references no group item defines.
    pub unknown_groups: Vec<String>,
}

impl MergedContact {
    /// The name to show: the contact's name, or its first identity.
    pub fn display_name(&self) -> &str {
        self.contact
            .name
            .as_deref()
            .or_else(|| self.contact.identities.first().map(|i| i.value.as_str()))
            .unwrap_or("")
    }
}

/// One group of the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// The item holding the winning definition.
    pub item: ItemId,
    /// Its version.
    pub version: Version,
    /// The definition.
    pub group: Group,
    /// Other items defining the same group id (older versions).
    pub duplicates: Vec<ItemId>,
}

/// The merged state of both nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Contacts, sorted by display name (case-folded), then id.
    pub contacts: Vec<MergedContact>,
    /// Groups by group id.
    pub groups: BTreeMap<String, GroupEntry>,
    /// `<reserved/>` items per node.
    pub reserved: BTreeMap<NodeKind, Vec<ItemId>>,
    /// Items that could not be read, per node and item.
    pub unreadable: BTreeMap<(NodeKind, ItemId), Unreadable>,
    /// Member item → index in `contacts`.
    contact_index: BTreeMap<ItemId, usize>,
    /// Group item (winner or duplicate) → group id.
    group_items: BTreeMap<ItemId, String>,
}

/// A cached decode: the record version and signature it is for, and the result.
type CacheEntry = (Version, [u8; 64], Result<Payload, Unreadable>);

/// Opened payloads, kept across view rebuilds so that an unchanged record is opened
/// only once. Entries for items still waiting for a secret are retried each time.
#[derive(Debug, Default)]
pub struct PayloadCache {
    opener: Opener,
    entries: HashMap<(NodeKind, ItemId), CacheEntry>,
}

impl PayloadCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload of a sealed record, opened with `keyring` (or from the cache).
    pub fn decode(
        &mut self,
        record: &Record,
        keyring: &Keyring,
    ) -> Option<&Result<Payload, Unreadable>> {
        let Body::Sealed(sealed) = &record.body else {
            return None;
        };
        let node = record.space.node()?;
        let key = (node, record.item);
        let fresh = match self.entries.get(&key) {
            Some((v, sig, result)) => {
                *v != record.version
                    || *sig != record.signature
                    || matches!(result, Err(Unreadable::Waiting(id)) if keyring.get(id).is_some())
            }
            None => true,
        };
        if fresh {
            let result = match self.opener.open(sealed, keyring) {
                Err(seal::Error::UnknownKey(id)) => Err(Unreadable::Waiting(id)),
                Err(e) => Err(Unreadable::Sealing(e)),
                Ok(text) => Payload::parse(&text)
                    .and_then(|p| p.check_node(node).map(|()| p))
                    .map_err(Unreadable::Payload),
            };
            self.entries
                .insert(key, (record.version, record.signature, result));
        }
        self.entries.get(&key).map(|(_, _, r)| r)
    }
}

impl View {
    /// Builds the view of `replica`, opening items with `keyring`.
    pub fn build(replica: &Replica, keyring: &Keyring, cache: &mut PayloadCache) -> Self {
        let mut view = Self::default();
        // Open everything first (this fills the cache), then merge over references.
        let sealed = || {
            replica
                .records()
                .filter_map(|r| r.space.node().map(|n| (n, r)))
        };
        for (node, record) in sealed() {
            if let Some(Err(e)) = cache.decode(record, keyring) {
                view.unreadable.insert((node, record.item), e.clone());
            }
        }
        let payloads = sealed().filter_map(|(n, r)| match cache.entries.get(&(n, r.item)) {
            Some((v, sig, Ok(p))) if *v == r.version && *sig == r.signature => {
                Some((n, r.item, r.version, p))
            }
            _ => None,
        });
        view.merge(payloads);
        view
    }

    /// Builds the view from payloads already opened (any order).
    pub fn from_payloads(
        payloads: impl IntoIterator<Item = (NodeKind, ItemId, Version, Payload)>,
    ) -> Self {
        let mut view = Self::default();
        let mut all: Vec<_> = payloads.into_iter().collect();
        all.sort_by_key(|a| (a.0, a.1));
        view.merge(all.iter().map(|(n, i, v, p)| (*n, *i, *v, p)));
        view
    }

    /// Merges payloads given in (node, item) order.
    fn merge<'p>(
        &mut self,
        payloads: impl Iterator<Item = (NodeKind, ItemId, Version, &'p Payload)>,
    ) {
        let mut contacts = Vec::new();
        let mut groups: BTreeMap<&str, Vec<(Version, ItemId, &Group)>> = BTreeMap::new();
        for (node, item, version, payload) in payloads {
            match payload {
                Payload::Reserved(_) => self.reserved.entry(node).or_default().push(item),
                Payload::Contact(c) => contacts.push((item, version, c)),
                Payload::Group(g) => groups.entry(&g.id).or_default().push((version, item, g)),
            }
        }
        for (id, mut defs) in groups {
            defs.sort_by_key(|d| std::cmp::Reverse((d.0, d.1)));
            let mut defs = defs.into_iter();
            let (version, item, group) =
                defs.next().expect("a group id has at least one definition");
            let duplicates: Vec<ItemId> = defs.map(|d| d.1).collect();
            for d in duplicates.iter().chain([&item]) {
                self.group_items.insert(*d, id.to_owned());
            }
            self.groups.insert(
                id.to_owned(),
                GroupEntry {
                    item,
                    version,
                    group: group.clone(),
                    duplicates,
                },
            );
        }
        self.contacts = merge_contacts(&contacts, &self.groups);
        for (i, c) in self.contacts.iter().enumerate() {
            for (m, _) in &c.members {
                self.contact_index.insert(*m, i);
            }
        }
    }

    /// The contact a member item belongs to.
    pub fn contact(&self, item: &ItemId) -> Option<&MergedContact> {
        self.contact_index.get(item).map(|&i| &self.contacts[i])
    }

    /// Whether `item` is a live item of `node` that is not `<reserved/>`: a
    /// contact member, a group definition, or an item that cannot be read.
    pub fn is_real_item(&self, node: NodeKind, item: &ItemId) -> bool {
        let known = match node {
            NodeKind::Contacts => self.contact_index.contains_key(item),
            NodeKind::Groups => self.group_items.contains_key(item),
        };
        known || self.unreadable.contains_key(&(node, *item))
    }

    /// The contact with this JID among its identities.
    pub fn contact_by_jid(&self, jid: &BareJid) -> Option<&MergedContact> {
        let jid = jid.to_string();
        self.contacts.iter().find(|c| {
            c.contact
                .identities
                .iter()
                .any(|i| i.key() == ("jid", jid.as_str()))
        })
    }

    /// The group with this name (the first by id if several share it).
    pub fn group_by_name(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.values().find(|g| g.group.name == name)
    }

    /// Number of live contact and group items (reserved ones included) on `node`.
    pub fn live_items(&self, node: NodeKind) -> usize {
        let real: usize = match node {
            NodeKind::Contacts => self.contacts.iter().map(|c| c.members.len()).sum(),
            NodeKind::Groups => self.groups.values().map(|g| 1 + g.duplicates.len()).sum(),
        };
        real + self.reserved.get(&node).map_or(0, Vec::len)
    }
}

struct UnionFind(Vec<usize>);

impl UnionFind {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            // The smaller index becomes the root: the result does not depend on call order.
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            self.0[hi] = lo;
        }
    }
}

/// Merges contact items (sorted by item id) into contacts.
fn merge_contacts(
    items: &[(ItemId, Version, &Contact)],
    groups: &BTreeMap<String, GroupEntry>,
) -> Vec<MergedContact> {
    let mut uf = UnionFind((0..items.len()).collect());
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (_, _, c)) in items.iter().enumerate() {
        for id in &c.identities {
            match seen.get(&id.key()) {
                Some(&j) => uf.union(i, j),
                None => {
                    seen.insert(id.key(), i);
                }
            }
        }
    }
    let mut components: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..items.len() {
        let root = uf.find(i);
        components.entry(root).or_default().push(i);
    }
    let mut out: Vec<MergedContact> = components
        .into_values()
        .map(|mut members| {
            // Newest first.
            members.sort_by(|&a, &b| items[b].1.cmp(&items[a].1));
            let mut merged = items[members[0]].2.clone();
            for &m in &members[1..] {
                let c = items[m].2;
                if merged.name.is_none() {
                    merged.name.clone_from(&c.name);
                }
                for id in &c.identities {
                    if !merged.identities.iter().any(|x| x.key() == id.key()) {
                        merged.identities.push(id.clone());
                    }
                }
                for g in &c.groups {
                    if !merged.groups.iter().any(|x| x.id == g.id) {
                        merged.groups.push(g.clone());
                    }
                }
                merged.extra.absorb(&c.extra);
            }
            let version = items[members[0]].1;
            let mut ids: Vec<(ItemId, Version)> =
                members.iter().map(|&m| (items[m].0, items[m].1)).collect();
            ids.sort();
            let unknown_groups = merged
                .groups
                .iter()
                .filter(|g| !groups.contains_key(&g.id))
                .map(|g| g.id.clone())
                .collect();
            MergedContact {
                id: ids[0].0,
                members: ids,
                contact: merged,
                version,
                unknown_groups,
            }
        })
        .collect();
    out.sort_by_cached_key(|c| (c.display_name().to_lowercase(), c.id));
    out
}
