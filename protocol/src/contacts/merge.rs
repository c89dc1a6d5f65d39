//! The field-level merge of one contact's items, and the stamping of an edit.
//!
//! Items of one contact that coexist were written concurrently (an edit that saw
//! them all replaces them with one). [`merge`] keeps, for every field, the value
//! whose mark is greatest: a field one edit changed and another did not keeps the
//! change; only when concurrent edits changed the same field does the total order of
//! versions decide, and the losing value is kept as a [`Lost`] conflict. The result
//! does not depend on the order of the items. [`restamp`] marks the fields an edit
//! changed with the edit's version. See `docs/merge-rules.md`.

use std::collections::BTreeMap;

use crate::clock::Hlc;
use crate::item::fields::{self, Key, Lost, MAX_LOST, Mark, Seen, State, Value};
use crate::item::{Contact, Extra};
use crate::record::{DeviceId, Version};

/// The merged contact of some items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The merged data, its stamps element included.
    pub contact: Contact,
    /// Every conflict decided, carried or new, newest first.
    pub lost: Vec<Lost>,
    /// Whether writing the merged contact once would change anything: several items,
    /// or conflicts the newest item does not carry yet.
    pub unsettled: bool,
    /// The newest item that counts (not made obsolete by a deletion).
    pub newest: Version,
    /// Whether that newest item already is the merged contact (what its stamps have
    /// seen included; of a conflict, which version won may differ), one of several
    /// items: settling then retracts the other items and writes nothing new (see
    /// `docs/merge-rules.md` §3).
    pub newest_holds: bool,
}

/// The smallest version: what a stamp-less item's fields are read at when no
/// version is known.
pub const ORIGIN: Version = Version {
    hlc: Hlc {
        wall_ms: 0,
        counter: 0,
    },
    device: DeviceId([0; 32]),
};

/// The state of one item's contact written at `version`. Stamps that do not read,
/// or that claim edits later than the item itself (no writer knows the future),
/// count as absent: every present field is then read as set by `version`.
fn state_of(contact: &Contact, version: Version) -> State {
    match State::of(contact, version) {
        // ORIGIN: a merged contact read back (no item version to hold it to).
        Ok(s) if version == ORIGIN || s.not_after(version) => s,
        _ => {
            let mut bare = contact.clone();
            bare.stamps = None;
            // Invariant: without a stamps element, reading has nothing to refuse.
            State::of(&bare, version).unwrap_or_default()
        }
    }
}

/// Per field, each item's (mark, value) and the index of the item it came from.
type Candidates<'a> = BTreeMap<&'a Key, Vec<(&'a (Mark, Value), usize)>>;

/// What a losing value is remembered as: names in full, other fields by presence.
fn summary(value: &Value) -> Value {
    match value {
        Value::Identity(i) => Value::Identity(crate::item::Identity {
            extra: Extra::default(),
            ..i.clone()
        }),
        Value::Group(g) => Value::Group(crate::item::GroupRef {
            extra: Extra::default(),
            ..g.clone()
        }),
        Value::Extension(_) => Value::Extension(Vec::new()),
        other => other.clone(),
    }
}

/// A deletion of (some of) the items of one contact, as the merge sees it.
#[derive(Debug, Clone)]
pub struct Deletion<'a> {
    /// The deletion's own version.
    pub at: Version,
    /// What it knew of the contact.
    pub seen: &'a Seen,
    /// The contact ids (or aliases) of the items at hand it names.
    pub ids: Vec<&'a str>,
}

impl Deletion<'_> {
    /// Whether the deletion names an id or alias `contact` carries.
    fn names(&self, contact: &Contact) -> bool {
        fields::contact_id(contact)
            .into_iter()
            .chain(fields::aliases(contact))
            .any(|id| self.ids.contains(&id))
    }
}

/// Merges the items of one contact, given newest first as (version, contact), with
/// the deletions of it. An item that a deletion naming its id (or an alias of it)
/// knew all of is obsolete; the contact is gone (`None`) when every item is. A
/// deletion naming an item that is left lost to it: it is listed as a conflict.
pub fn merge(members: &[(Version, &Contact)], deletions: &[Deletion<'_>]) -> Option<Merged> {
    let items = members.len();
    let (members, states): (Vec<(Version, &Contact)>, Vec<State>) = members
        .iter()
        .map(|(v, c)| ((*v, *c), state_of(c, *v)))
        .filter(|((_, c), s)| {
            !deletions
                .iter()
                .any(|d| d.names(c) && fields::covers(d.seen, &s.seen))
        })
        .unzip();
    let (newest, _) = *members.first()?;
    // Per field, each item's (mark, value), with the item it came from.
    let mut candidates: Candidates<'_> = BTreeMap::new();
    for (i, s) in states.iter().enumerate() {
        for (k, f) in &s.fields {
            candidates.entry(k).or_default().push((f, i));
        }
    }
    let contact_id = states.iter().filter_map(|s| s.contact_id.clone()).min();
    // Every other id the items carry or were merged from; the smallest are kept.
    let aliases = states
        .iter()
        .flat_map(|s| s.contact_id.iter().chain(&s.aliases))
        .filter(|id| Some(*id) != contact_id.as_ref())
        .cloned()
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .take(fields::MAX_ALIASES)
        .collect();
    let mut merged = State {
        contact_id,
        aliases,
        ..State::default()
    };
    for s in &states {
        fields::join(&mut merged.seen, &s.seen);
    }
    let mut new_lost: Vec<Lost> = Vec::new();
    for (key, cands) in candidates {
        let Some(&(winner, _)) = cands
            .iter()
            .max_by(|a, b| (a.0.0.at, &a.0.1).cmp(&(b.0.0.at, &b.0.1)))
        else {
            continue;
        };
        // A losing value is a conflict unless an item carrying the winning value
        // knew of it: then it was overwritten knowingly (or its conflict decided,
        // and carried, where that item was written).
        let known = |loser: &Mark| {
            cands.iter().any(|(f, i)| {
                f.0 == winner.0
                    && states[*i]
                        .seen
                        .get(&loser.at.device)
                        .is_some_and(|v| *v >= loser.at)
            })
        };
        let mut decided: Vec<Version> = Vec::new();
        for (c, _) in &cands {
            if c.1 != winner.1
                && c.0.at != winner.0.at
                && !decided.contains(&c.0.at)
                && !known(&c.0)
            {
                decided.push(c.0.at);
                new_lost.push(Lost {
                    key: key.clone(),
                    value: summary(&c.1),
                    at: c.0.at,
                    winner: winner.0.at,
                });
            }
        }
        merged.fields.insert(key.clone(), winner.clone());
    }
    for d in deletions
        .iter()
        .filter(|d| members.iter().any(|(_, c)| d.names(c)))
    {
        new_lost.push(Lost {
            key: Key::Contact,
            value: Value::Gone,
            at: d.at,
            winner: newest,
        });
    }
    // Conflicts: those carried by any item, and the new ones, once each.
    let mut lost: Vec<Lost> = states.iter().flat_map(|s| s.lost.iter().cloned()).collect();
    let carried_by_newest = states
        .first()
        .map(|s| conflicts(&s.lost))
        .unwrap_or_default();
    lost.extend(new_lost);
    lost.sort_by(|a, b| b.winner.cmp(&a.winner).then(b.at.cmp(&a.at)).then(a.cmp(b)));
    // Once each (field, losing edit), wherever it came from.
    let mut once = std::collections::BTreeSet::new();
    lost.retain(|l| once.insert((l.key.clone(), l.at)));
    lost.truncate(MAX_LOST);
    let unsettled = items > 1
        || lost
            .iter()
            .any(|l| !carried_by_newest.contains(&(&l.key, l.at)));
    merged.lost = lost.clone();
    let mut contact = assemble(&members, &merged);
    // The newest item holds the merge when it is the merged contact, what it has
    // seen included (a deletion judges items by what they saw, §4 of the merge
    // rules), and conflicts compared by field and losing edit: a deletion an edit
    // overruled lists the newest item as its winner, which no item can carry. The
    // other items then add nothing to it. Only a contact of several items asks.
    let newest_holds = items > 1
        && states.first().is_some_and(|first| {
            conflicts(&lost) == carried_by_newest && {
                let decided = std::mem::replace(&mut merged.lost, first.lost.clone());
                let mut alike = contact.clone();
                merged.attach(&mut alike, newest);
                merged.lost = decided;
                members.first().is_some_and(|(_, c)| alike == **c)
            }
        });
    merged.attach(&mut contact, newest);
    Some(Merged {
        contact,
        lost,
        unsettled,
        newest,
        newest_holds,
    })
}

/// Conflicts by field and losing edit (which version won aside).
fn conflicts(lost: &[Lost]) -> std::collections::BTreeSet<(&Key, Version)> {
    lost.iter().map(|l| (&l.key, l.at)).collect()
}

/// The merged data: each present winner, in the order the newest item that has the
/// field gives it.
fn assemble(members: &[(Version, &Contact)], merged: &State) -> Contact {
    let mut out = Contact::default();
    if let Some((_, Value::Name(n))) = merged.fields.get(&Key::Name) {
        out.name = Some(n.clone());
    }
    for (_, c) in members {
        for i in &c.identities {
            if let Some((_, Value::Identity(w))) = merged
                .fields
                .get(&Key::Identity(i.kind.to_string(), i.value.clone()))
                && !out.identities.iter().any(|x| x.key() == w.key())
            {
                out.identities.push(w.clone());
            }
        }
        for g in &c.groups {
            if let Some((_, Value::Group(w))) = merged.fields.get(&Key::Group(g.id.clone()))
                && !out.groups.iter().any(|x| x.id == w.id)
            {
                out.groups.push(w.clone());
            }
        }
        out.extra.absorb_attrs(&c.extra);
        for (ns, name) in fields::extension_keys(c) {
            let key = Key::Extension(ns.clone(), name.clone());
            if let Some((_, Value::Extension(w))) = merged.fields.get(&key)
                && !out
                    .extra
                    .children()
                    .iter()
                    .any(|x| x.ns == ns && x.name == name)
            {
                out.extra
                    .edit(|_, children| children.extend(w.iter().cloned()));
            }
        }
    }
    out
}

/// Stamps `new`, an edit of `base` (the merged contact, `None` for a new contact)
/// made at `at`: every field whose value differs from `base` gets mark `at` over
/// the mark it replaces; the others keep theirs. A field of `base` that `new` lacks
/// is marked removed. A new contact gets `contact_id`.
pub fn restamp(base: Option<&Contact>, new: Contact, at: Version, contact_id: String) -> Contact {
    stamp(base.map(|b| (b, ORIGIN)), new, at, contact_id, true)
}

/// [`restamp`] against one item as it was written (at `version`): a field it held
/// without a mark counts as set by `version`.
pub fn restamp_item(base: &Contact, version: Version, new: Contact, at: Version) -> Contact {
    let cid = fields::contact_id(base).unwrap_or_default().to_owned();
    stamp(Some((base, version)), new, at, cid, true)
}

/// [`restamp`] for a new item joining `base` (an item published by a client under
/// an id of its own): the fields it has are stamped against `base`, the fields it
/// lacks are left to the other items (XEP-0510 merges the items of one contact).
pub fn stamp_joining(base: &Contact, new: Contact, at: Version) -> Contact {
    let cid = fields::contact_id(base).unwrap_or_default().to_owned();
    stamp(Some((base, ORIGIN)), new, at, cid, false)
}

fn stamp(
    base: Option<(&Contact, Version)>,
    mut new: Contact,
    at: Version,
    contact_id: String,
    removals: bool,
) -> Contact {
    let base_state = base.map(|(b, v)| state_of(b, v)).unwrap_or_default();
    let mut seen = base_state.seen.clone();
    // The base's own entry for ORIGIN is no edit.
    seen.remove(&ORIGIN.device);
    let mut state = State {
        contact_id: base_state
            .contact_id
            .clone()
            .or_else(|| (!contact_id.is_empty()).then_some(contact_id)),
        aliases: base_state.aliases.clone(),
        fields: BTreeMap::new(),
        lost: base_state.lost.clone(),
        seen,
    };
    let present: BTreeMap<Key, Value> = fields::present_fields(&new).into_iter().collect();
    for (key, value) in &present {
        let mark = match base_state.fields.get(key) {
            Some((m, v)) if v == value => *m,
            old => Mark {
                at,
                parent: old.map(|(m, _)| m.at),
            },
        };
        state.fields.insert(key.clone(), (mark, value.clone()));
    }
    for (key, (m, v)) in &base_state.fields {
        if present.contains_key(key) || (!removals && *v != Value::Gone) {
            continue;
        }
        let mark = if *v == Value::Gone {
            *m
        } else {
            Mark {
                at,
                parent: Some(m.at),
            }
        };
        state.fields.insert(key.clone(), (mark, Value::Gone));
    }
    // Only a write that changes a field is an edit others may not know of: a
    // collapse or a rewrite after a rotation knows no more than what it merged.
    if state.fields.values().any(|(m, _)| m.at == at) || state.seen.is_empty() {
        state.seen.insert(at.device, at);
    }
    state.attach(&mut new, at);
    new
}

/// The data of `contact` without kith's stamps element (what a client published,
/// before it is stamped here).
pub fn data(contact: &Contact) -> Contact {
    let mut c = contact.clone();
    c.stamps = None;
    c
}

/// Removes the conflict on `key` lost at `at` from `contact`'s stamps (it was
/// restored, or dealt with).
pub fn forget_conflict(contact: &mut Contact, key: &Key, at: Version) {
    let mut state = state_of(contact, ORIGIN);
    state.lost.retain(|l| !(l.key == *key && l.at == at));
    state.attach(contact, ORIGIN);
}
