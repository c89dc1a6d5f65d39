//! The writes a command makes: a [`Plan`] of item writes, contacts written as new
//! stamped items, groups created, padding; and the checks of what a client sealed.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::Error;
use crate::contacts::merge;
use crate::contacts::view::{MergedContact, View, is_mark};
use crate::item::{self, Contact, Extra, Group, GroupRef, NodeKind, Payload, fields};
use crate::record::{ItemId, Version};
use crate::seal::{self, Keyring, Opener, Sealed};

/// How long padding keeps a deletion's mark after the contact is gone, so that a
/// device returning with an edit made without knowing of the deletion is told of it:
/// 90 days. While an edit keeps the contact shown, the mark is kept whatever its age.
pub const MARK_KEPT_MS: u64 = 90 * 24 * 3600 * 1000;

/// One planned write.
pub(super) enum Write {
    Payload(Payload),
    /// Sealed already (published by a client), checked when planned; whether it
    /// holds `<reserved/>`.
    Sealed(Sealed, bool),
    Tombstone,
}

/// Checks an item sealed by a client as every reader will: the current secret of
/// `node`, a payload that opens under it and is valid on `node`. Returns the
/// payload.
pub(super) fn check_published(
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
pub(super) fn carries_kith(sealed: &Sealed, keyring: &Keyring, opener: &mut Opener) -> bool {
    opener
        .open(sealed, keyring)
        .ok()
        .and_then(|xml| crate::xml::Element::parse(&xml, crate::xml::Limits::ITEM).ok())
        .is_some_and(|el| el.elements().any(|c| c.ns == fields::NS))
}

/// The XML of `payload`, checked as a reader on `node` would read it, and the payload
/// as that reader reads it; an error names the contact (by its first identity) or
/// the group.
pub(super) fn validate(payload: &Payload, node: NodeKind) -> Result<(String, Payload), Error> {
    let xml = payload.to_xml();
    let read = Payload::parse(&xml)
        .and_then(|p| p.check_node(node).map(|()| p))
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
    Ok((xml, read))
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

fn hex_id(bytes: &[u8]) -> String {
    let mut id = String::from("g-");
    crate::hex::push(&mut id, bytes);
    id
}

pub(super) fn push_group(contact: &mut Contact, id: String) {
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
pub(super) struct Plan<'v> {
    pub(super) view: &'v View,
    pub(super) writes: BTreeMap<(NodeKind, ItemId), Write>,
    /// Groups created by this command, by the lookalike of their name
    /// ([`item::lookalike`]) → id.
    pub(super) new_groups: BTreeMap<String, String>,
    /// Each group name this command referred to → the id it found or made.
    ids_by_name: BTreeMap<String, String>,
    /// Each group name a contact was put in → the ids of the view's groups that
    /// look like it.
    alike_ids: BTreeMap<String, BTreeSet<String>>,
    /// The groups node's current secret, keying derived group ids.
    pub(super) group_key: Option<String>,
    /// The version field changes of this command are stamped with.
    pub(super) stamp: Version,
}

impl<'v> Plan<'v> {
    /// A plan against `view`, deriving group ids under `keyring`'s current groups
    /// secret, stamping field changes with `stamp`.
    pub(super) fn new(view: &'v View, keyring: &Keyring, stamp: Version) -> Self {
        Self {
            view,
            writes: BTreeMap::new(),
            new_groups: BTreeMap::new(),
            ids_by_name: BTreeMap::new(),
            alike_ids: BTreeMap::new(),
            group_key: keyring
                .current(NodeKind::Groups)
                .map(|s| s.value.to_string()),
            stamp,
        }
    }

    pub(super) fn write(&mut self, node: NodeKind, item: ItemId, w: Write) {
        self.writes.insert((node, item), w);
    }

    pub(super) fn reserve(&mut self, node: NodeKind, item: ItemId) {
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
    pub(super) fn write_contact<R: CryptoRng + ?Sized>(
        &mut self,
        target: Option<&MergedContact>,
        contact: Contact,
        rng: &mut R,
    ) {
        self.write_contact_resolving(target, contact, None, rng);
    }

    /// [`Plan::write_contact`], no longer listing the conflict `resolved` (its field
    /// and losing version).
    pub(super) fn write_contact_resolving<R: CryptoRng + ?Sized>(
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
        let mut contact = merge::restamp(target.map(|t| &*t.contact), contact, self.stamp, cid);
        if let Some((key, at)) = resolved {
            merge::forget_conflict(&mut contact, &key, at);
        }
        if let Some(t) = target {
            for (item, _) in t.members() {
                self.write(NodeKind::Contacts, item, Write::Tombstone);
            }
        }
        self.write(
            NodeKind::Contacts,
            ItemId::random(rng),
            Write::Payload(Payload::Contact(contact)),
        );
    }

    /// Puts `contact` in the group named `name` (created when there is none),
    /// unless it is in that group or in a look-alike of it already: groups named
    /// alike by devices apart are one group to a person, and a contact is not put
    /// in a second of them.
    pub(super) fn join_group<R: CryptoRng + ?Sized>(
        &mut self,
        contact: &mut Contact,
        name: &str,
        rng: &mut R,
    ) {
        let id = self.group_id(name, rng);
        if contact.groups.is_empty() {
            return push_group(contact, id);
        }
        if contact.groups.iter().any(|g| g.id == id) {
            return;
        }
        // The view's groups named alike, found once per name (an import joins
        // many contacts of up to 256 groups each to the same few names).
        let view = self.view;
        let alike = self.alike_ids.entry(name.to_owned()).or_insert_with(|| {
            view.groups_named(name)
                .iter()
                .map(|g| g.group.id.clone())
                .collect()
        });
        if contact.groups.iter().any(|g| alike.contains(&g.id)) {
            return;
        }
        push_group(contact, id);
    }

    /// The id of the group named `name`, creating the group when there is none.
    pub(super) fn group_id<R: CryptoRng + ?Sized>(&mut self, name: &str, rng: &mut R) -> String {
        // An import names the same few groups again and again: each name is looked
        // for among the view's groups once.
        if let Some(id) = self.ids_by_name.get(name) {
            return id.clone();
        }
        let id = self.find_or_make_group(name, rng);
        self.ids_by_name.insert(name.to_owned(), id.clone());
        id
    }

    fn find_or_make_group<R: CryptoRng + ?Sized>(&mut self, name: &str, rng: &mut R) -> String {
        if let Some(g) = self.view.group_by_name(name) {
            return g.group.id.clone();
        }
        // A lookalike of a group this command creates is that group, as it is of
        // one the view holds.
        let alike = item::lookalike(name);
        if let Some(id) = self.new_groups.get(&alike) {
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
        let mut group = Group {
            id: id.clone(),
            name: name.to_owned(),
            ..Group::default()
        };
        // A group made again under the id of one removed: made knowing the
        // removal, which is then no conflict (named, so a rewrite of its mark made
        // meanwhile is none either).
        let removals = self.view.group_removals(&id);
        for (mark, _) in &removals {
            self.reserve(NodeKind::Groups, *mark);
        }
        // The marks, then what they removed (which stays replaced once they go).
        let marks: Vec<(ItemId, Version)> = removals
            .iter()
            .map(|(i, r)| (*i, r.edit.at))
            .chain(
                removals
                    .iter()
                    .flat_map(|(_, r)| r.edit.replaces.iter().copied()),
            )
            .collect();
        fields::set_group_edit(&mut group.extra, self.stamp, &marks);
        self.write(
            NodeKind::Groups,
            ItemId::random(rng),
            Write::Payload(Payload::Group(group)),
        );
        self.new_groups.insert(alike, id.clone());
        id
    }

    pub(super) fn set_group_description(&mut self, id: &str, description: String) {
        for w in self.writes.values_mut() {
            if let Write::Payload(Payload::Group(g)) = w
                && g.id == id
            {
                g.description = Some(description.clone());
            }
        }
    }

    fn kind_before(&self, node: NodeKind, item: &ItemId) -> Option<Kind> {
        if self.view.is_reserved(node, item) {
            Some(Kind::Reserved)
        } else if self.view.is_real_item(node, item) {
            Some(Kind::Real)
        } else {
            None
        }
    }

    /// Whether a deletion mark written in `version` is within [`MARK_KEPT_MS`] of
    /// this plan's stamp (padding keeps it whatever else holds).
    fn mark_is_recent(&self, version: &Version) -> bool {
        self.stamp.hlc.wall_ms.saturating_sub(version.hlc.wall_ms) < MARK_KEPT_MS
    }

    /// Adds or retracts `<reserved/>` items on each node this plan touches.
    pub(super) fn pad<R: CryptoRng + ?Sized>(&mut self, view: &View, bucket: usize, rng: &mut R) {
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
            // What this plan changes of the reserved items: those it writes over
            // (no longer the view's), and the plain ones it writes (a mark it
            // writes is new, so kept).
            let mut rewritten: BTreeSet<ItemId> = BTreeSet::new();
            let mut plain_written: BTreeSet<ItemId> = BTreeSet::new();
            for ((n, item), w) in &self.writes {
                if *n != node {
                    continue;
                }
                let before = self.kind_before(node, item);
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
                        rewritten.insert(*item);
                    }
                    None => {}
                }
                match after {
                    Some(Kind::Real) => real += 1,
                    Some(Kind::Reserved) => {
                        reserved += 1;
                        let marks = matches!(w, Write::Payload(Payload::Reserved(e))
                            if is_mark(e));
                        if !marks {
                            plain_written.insert(*item);
                        }
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
                // Plain reserved items first, largest ids first; then deletion
                // marks past their time, oldest first. Never a mark while kept
                // (the conflict it reports would go with it). Each is found without
                // reading every reserved item: a long history of deletions leaves
                // many marks, all kept for 90 days.
                let plain = descending_union(
                    view.plain_reserved(node)
                        .rev()
                        .filter(|item| !rewritten.contains(item)),
                    plain_written.iter().rev(),
                );
                // A mark is kept for MARK_KEPT_MS, and after that while a live item
                // still carries its contact (an edit overruled the deletion); a view
                // of some items only cannot tell that, and keeps every mark.
                let old_marks = view
                    .marks(node)
                    .take_while(|(version, _)| view.is_whole() && !self.mark_is_recent(version))
                    .filter(|(_, item)| {
                        !rewritten.contains(item) && !view.mark_still_carried(node, item)
                    })
                    .map(|(_, item)| *item);
                let surplus: Vec<ItemId> = plain.chain(old_marks).take(total - target).collect();
                for item in surplus {
                    self.write(node, item, Write::Tombstone);
                }
            }
        }
    }
}

/// The items of two iterators, each in descending order and without repeats
/// between them, merged in descending order.
fn descending_union<'a>(
    a: impl Iterator<Item = &'a ItemId>,
    b: impl Iterator<Item = &'a ItemId>,
) -> impl Iterator<Item = ItemId> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x >= y => a.next().copied(),
        (Some(_), Some(_)) | (None, Some(_)) => b.next().copied(),
        (Some(_), None) => a.next().copied(),
        (None, None) => None,
    })
}
