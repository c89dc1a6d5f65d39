//! The changes one item of the contacts node tells of, read from its field stamps:
//! per edit, the fields it set (that item's marks of that edit), or the deletion a
//! `<reserved/>` item marks. This is what a device's history (`kith log`) records,
//! once per edit however many items carry it; a collapse or a rewrite after a key
//! rotation sets no field and is no change of its own.

use crate::item::fields::{self, Key, State, Value};
use crate::item::{Contact, Payload};
use crate::record::{DeviceId, Version};

/// One change of one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The contact id.
    pub contact_id: String,
    /// The device that made the change.
    pub device: DeviceId,
    /// When, by that device's clock.
    pub at: Version,
    /// What changed.
    pub what: What,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Fields set (to a value, or [`Value::Gone`] when removed).
    Edit(Vec<(Key, Value)>),
    /// The contact was deleted; with the ids of the items merged into it (its
    /// aliases), which name the same contact in earlier changes.
    Delete(Vec<String>),
}

/// The changes the item with `payload`, written in a record of `version`, carries:
/// one per edit whose marks it holds (the fields each edit set and that no later
/// edit it knows changed again), or the deletion it marks. An item changes no field
/// of its own when it only collapses or rewrites; its marks still name the edits it
/// carries, so a device that never saw those edits' own items learns of them.
pub fn changes_of(payload: &Payload, version: Version) -> Vec<Change> {
    match payload {
        Payload::Contact(c) => edits_of(c, version),
        Payload::Reserved(extra) => extra
            .children()
            .iter()
            .find_map(fields::read_deletion)
            .map(|d| {
                let at = d.at.filter(|a| *a <= version).unwrap_or(version);
                Change {
                    contact_id: d.contact_id.to_owned(),
                    device: at.device,
                    at,
                    what: What::Delete(d.aliases.iter().map(|a| (*a).to_owned()).collect()),
                }
            })
            .into_iter()
            .collect(),
        Payload::Group(_) => Vec::new(),
    }
}

/// The changes a contact item written in a record of `version` carries: one per
/// edit whose marks it holds ([`changes_of`] of a contact).
pub fn edits_of(contact: &Contact, version: Version) -> Vec<Change> {
    let Ok(state) = State::of(contact, version) else {
        return Vec::new();
    };
    let Some(cid) = state.contact_id.clone() else {
        return Vec::new();
    };
    let mut by_edit: std::collections::BTreeMap<Version, Vec<(Key, Value)>> = Default::default();
    for (k, (m, v)) in &state.fields {
        by_edit
            .entry(m.at)
            .or_default()
            .push((k.clone(), v.clone()));
    }
    by_edit
        .into_iter()
        .map(|(at, changed)| Change {
            contact_id: cid.clone(),
            device: at.device,
            at,
            what: What::Edit(changed),
        })
        .collect()
}

/// A change in words: `name "Jules"`, `+jid juliet@capulet.lit`, `-group g-…`; group
/// ids are named by `group_name` when it knows them.
pub fn describe(key: &Key, value: &Value, group_name: &dyn Fn(&str) -> Option<String>) -> String {
    let gone = *value == Value::Gone;
    let sign = if gone { '-' } else { '+' };
    match key {
        Key::Name => match value {
            Value::Name(n) => format!("name {}", crate::text::quoted(n)),
            _ => "name removed".to_owned(),
        },
        Key::Identity(kind, v) => format!("{sign}{kind} {v}"),
        Key::Group(id) => format!(
            "{sign}group {}",
            group_name(id).unwrap_or_else(|| id.clone())
        ),
        Key::Extension(ns, name) => format!("{sign}<{name} xmlns='{ns}'/>"),
        Key::Contact => "deleted".to_owned(),
    }
}
