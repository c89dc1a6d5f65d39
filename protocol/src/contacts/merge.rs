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

/// The state of one item's contact; stamps that do not read count as absent (the
/// item was checked when read, so this only happens to data kith wrote itself).
fn state_of(contact: &Contact, version: Version) -> State {
    State::of(contact, version).unwrap_or_else(|_| {
        let mut bare = contact.clone();
        bare.extra.children.retain(|c| !c.is(fields::NS, "fields"));
        State::of(&bare, version).unwrap_or_default()
    })
}

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

/// Merges the items of one contact, given newest first as (version, contact), with
/// the deletions of it (by contact id: the deletion's version and what it knew).
/// An item a deletion knew all of is obsolete; the contact is gone (`None`) when
/// every item is. A deletion that did not know an item that is left lost to it: it
/// is listed as a conflict.
pub fn merge(members: &[(Version, &Contact)], deletions: &[(Version, &Seen)]) -> Option<Merged> {
    let items = members.len();
    let (members, states): (Vec<(Version, &Contact)>, Vec<State>) = members
        .iter()
        .map(|(v, c)| ((*v, *c), state_of(c, *v)))
        .filter(|(_, s)| !deletions.iter().any(|(_, d)| fields::covers(d, &s.seen)))
        .unzip();
    let (newest, _) = *members.first()?;
    let mut candidates: BTreeMap<&Key, Vec<&(Mark, Value)>> = BTreeMap::new();
    for s in &states {
        for (k, f) in &s.fields {
            candidates.entry(k).or_default().push(f);
        }
    }
    let mut merged = State {
        contact_id: states.iter().filter_map(|s| s.contact_id.clone()).min(),
        ..State::default()
    };
    for s in &states {
        fields::join(&mut merged.seen, &s.seen);
    }
    let mut new_lost: Vec<Lost> = Vec::new();
    for (key, cands) in candidates {
        let Some(&winner) = cands
            .iter()
            .max_by(|a, b| (a.0.at, &a.1).cmp(&(b.0.at, &b.1)))
        else {
            continue;
        };
        for c in &cands {
            if c.1 != winner.1 && c.0.at != winner.0.at && Some(c.0.at) > winner.0.parent {
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
    for (d, _) in deletions {
        new_lost.push(Lost {
            key: Key::Contact,
            value: Value::Gone,
            at: *d,
            winner: newest,
        });
    }
    // Conflicts: those carried by any item, and the new ones, once each.
    let mut lost: Vec<Lost> = states.iter().flat_map(|s| s.lost.iter().cloned()).collect();
    let carried_by_newest: Vec<(Key, Version)> = states
        .first()
        .map(|s| s.lost.iter().map(|l| (l.key.clone(), l.at)).collect())
        .unwrap_or_default();
    lost.extend(new_lost);
    lost.sort_by(|a, b| b.winner.cmp(&a.winner).then(b.at.cmp(&a.at)).then(a.cmp(b)));
    lost.dedup_by(|a, b| a.key == b.key && a.at == b.at);
    lost.truncate(MAX_LOST);
    let unsettled = items > 1
        || lost
            .iter()
            .any(|l| !carried_by_newest.contains(&(l.key.clone(), l.at)));
    merged.lost = lost.clone();
    let mut contact = assemble(&members, &merged);
    merged.attach(&mut contact, newest);
    Some(Merged {
        contact,
        lost,
        unsettled,
        newest,
    })
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
                .get(&Key::Identity(i.kind.clone(), i.value.clone()))
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
        for a in &c.extra.attrs {
            if !out
                .extra
                .attrs
                .iter()
                .any(|b| b.ns == a.ns && b.name == a.name)
            {
                out.extra.attrs.push(a.clone());
            }
        }
        for (ns, name) in fields::extension_keys(c) {
            let key = Key::Extension(ns.clone(), name.clone());
            if let Some((_, Value::Extension(w))) = merged.fields.get(&key)
                && !out
                    .extra
                    .children
                    .iter()
                    .any(|x| x.ns == ns && x.name == name)
            {
                out.extra.children.extend(w.iter().cloned());
            }
        }
    }
    out
}

/// Stamps `new`, an edit of `base` (the merged contact, `None` for a new contact)
/// made at `at`: every field whose value differs from `base` gets mark `at` over
/// the mark it replaces; the others keep theirs. A new contact gets `contact_id`.
pub fn restamp(
    base: Option<&Contact>,
    mut new: Contact,
    at: Version,
    contact_id: String,
) -> Contact {
    let base_state = base.map(|b| state_of(b, ORIGIN)).unwrap_or_default();
    let mut seen = base_state.seen.clone();
    // The base's own entry for ORIGIN is no edit.
    seen.remove(&ORIGIN.device);
    seen.insert(at.device, at);
    let mut state = State {
        contact_id: base_state.contact_id.clone().or(Some(contact_id)),
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
        if present.contains_key(key) {
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
    state.attach(&mut new, at);
    new
}

/// The data of `contact` without its stamps: what a user and an export see.
pub fn data(contact: &Contact) -> Contact {
    let mut c = contact.clone();
    c.extra.children.retain(|e| !e.is(fields::NS, "fields"));
    c
}

/// Removes the conflict on `key` lost at `at` from `contact`'s stamps (it was
/// restored, or dealt with).
pub fn forget_conflict(contact: &mut Contact, key: &Key, at: Version) {
    let mut state = state_of(contact, ORIGIN);
    state.lost.retain(|l| !(l.key == *key && l.at == at));
    state.attach(contact, ORIGIN);
}
