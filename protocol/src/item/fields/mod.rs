//! Field stamps: what kith keeps inside a `<contact/>` so that concurrent edits of one
//! contact merge field by field (see `docs/merge-rules.md`).
//!
//! A contact's *fields* are its name, each identity (by type and value), each group
//! reference (by group id) and each kind of unknown child (by namespace and name).
//! Every field carries a [`Mark`]: the version of the edit that last set it (`at`)
//! and the version it replaced there (`parent`). A field an edit removed stays as a
//! *gone* mark, so a concurrent copy that still has it does not bring it back. The
//! contact also carries a stable contact id, so its items stay one contact whatever
//! identities concurrent edits remove, and the conflicts decided so far ([`Lost`]).
//!
//! All of it is one child element in namespace [`NS`], inside the sealed payload:
//!
//! ```xml
//! <fields xmlns='urn:kith:fields:0' contact='(32 hex)'
//!         stamps='1764490000000.0.0 1764490100000.2.1' marks='1 0 0 1/0'>
//!   <device>(64 hex: the Ed25519 key of the device behind index 0)</device>
//!   <device>(index 1)</device>
//!   <gone kind='identity' type='jid' mark='1/0'>tybalt@capulet.lit</gone>
//!   <lost kind='name' at='0' winner='1'>Jules</lost>
//! </fields>
//! ```
//!
//! `stamps` lists versions as `wall_ms.counter.device-index`; `marks` gives one token
//! per present field, in order: the name (`-` when there is none and no mark,
//! `!` before a mark whose name was removed), each identity, each group reference,
//! each kind of unknown child in order of first appearance. A token is `at` or
//! `at/parent`, as indices into `stamps`. Items without this element (written by
//! other clients, or before kith merged by field) read as if every present field had
//! been set by the item's own version.
//!
//! Reading is strict and bounded ([`MAX_DEVICES`], [`MAX_STAMPS`], [`MAX_GONE`],
//! [`MAX_LOST`]); an element that does not read makes the item invalid.

use std::collections::{BTreeMap, BTreeSet};

use super::{Contact, Error, GroupRef, Identity};
use crate::clock::Hlc;
use crate::record::{DeviceId, Version};
use crate::xml::Element;

mod group;
mod ids;
mod problem;
mod seen;
mod stamps;

pub use group::{
    GroupEdit, GroupRemoval, MAX_REPLACED, group_removal_element, read_group_edit,
    read_group_removal, set_group_edit,
};
use ids::valid_id;
pub use ids::{CONTACT_ID_KIND, MAX_ALIASES, aliases, contact_id, links};
pub use problem::Problem;
pub use seen::{Deletion, Seen, covers, deletion_element, join, read_deletion};
pub use stamps::{HexId, Stamps};

/// Namespace of the field-stamps element.
pub const NS: &str = "urn:kith:fields:0";
/// Most devices one contact's stamps name.
pub const MAX_DEVICES: usize = 64;
/// Most distinct stamps in one contact.
pub const MAX_STAMPS: usize = 512;
/// Most removed fields remembered per contact (the newest are kept).
pub const MAX_GONE: usize = 48;
/// Most decided conflicts remembered per contact (the newest are kept).
pub const MAX_LOST: usize = 16;

/// Which field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// The contact's name.
    Name,
    /// One identity, by type and value.
    Identity(String, String),
    /// One group reference, by group id.
    Group(String),
    /// The unknown children with this namespace and name.
    Extension(String, String),
    /// The contact itself (only in [`Lost`]: a deletion that lost to an edit).
    Contact,
}

/// A field's value in one version of the contact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// The field was removed (or, for [`Key::Contact`], the contact deleted).
    Gone,
    /// A name.
    Name(String),
    /// An identity.
    Identity(Identity),
    /// A group reference.
    Group(GroupRef),
    /// Unknown children.
    Extension(Vec<Element>),
}

/// Who last set a field, over what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mark {
    /// The edit that set the field.
    pub at: Version,
    /// The mark it replaced on that device; `None` for a new field.
    pub parent: Option<Version>,
}

/// A conflict decided by the merge: a value set by `at` lost to a concurrent edit
/// `winner` of the same field, made without knowledge of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lost {
    /// Which field.
    pub key: Key,
    /// The losing value (for identities, groups and unknown children only whether
    /// it was present; [`Value::Gone`] when the losing edit removed the field).
    pub value: Value,
    /// The losing edit.
    pub at: Version,
    /// The winning edit.
    pub winner: Version,
}

/// Everything the merge knows of one version of a contact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The stable contact id (32 hex digits), if the contact has one.
    pub contact_id: Option<String>,
    /// The contact ids of items merged into this contact under ids of their own
    /// (created apart on two devices, say): a deletion names them too, so that a
    /// late copy of such an item is known as part of the contact it deleted.
    pub aliases: BTreeSet<String>,
    /// Every field with a mark, present or gone.
    pub fields: BTreeMap<Key, (Mark, Value)>,
    /// Conflicts decided so far, newest first.
    pub lost: Vec<Lost>,
    /// What this version knows of the contact's history: per device, its newest
    /// edit merged in (see [`Seen`]).
    pub seen: Seen,
}

fn bad(what: Problem) -> Error {
    Error::BadFields(what)
}

/// The kinds of unknown children of `contact` (namespace, name), in order of first
/// appearance.
pub fn extension_keys(contact: &Contact) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for c in contact.extra.children() {
        let k = (c.ns.to_string(), c.name.to_string());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys
}

/// The unknown children of `contact` of one kind.
pub fn extension(contact: &Contact, ns: &str, name: &str) -> Vec<Element> {
    contact
        .extra
        .children()
        .iter()
        .filter(|c| c.ns == ns && c.name == name)
        .cloned()
        .collect()
}

/// Parses `ms.counter.device-index`.
fn parse_stamp(s: &str, devices: &[DeviceId]) -> Option<Version> {
    let mut parts = s.split('.');
    let wall_ms = parts.next()?.parse().ok()?;
    let counter = parts.next()?.parse().ok()?;
    let d: usize = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Version {
        hlc: Hlc { wall_ms, counter },
        device: *devices.get(d)?,
    })
}

/// Parses a mark token `at` or `at/parent` (indices into `stamps`).
fn parse_mark(s: &str, stamps: &[Version]) -> Option<Mark> {
    let (at, parent) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let at = *stamps.get(at.parse::<usize>().ok()?)?;
    let parent = match parent {
        Some(p) => Some(*stamps.get(p.parse::<usize>().ok()?)?),
        None => None,
    };
    Some(Mark { at, parent })
}

/// The group references `contact`'s stamps mark gone, each with the edit that
/// removed it, read without the rest of the stamps (a group's removal leaves such a
/// mark in each of its contacts, so many contacts may have one). A mark that does
/// not read is left out, as are all when the stamps' devices or versions do not.
pub fn gone_group_marks(contact: &Contact) -> Vec<(String, Version)> {
    let Some(stamps) = &contact.stamps else {
        return Vec::new();
    };
    if !stamps.has_gone_groups() {
        return Vec::new();
    }
    let parts = stamps.parts();
    let Ok(devices) = &parts.devices else {
        return Vec::new();
    };
    let Some(list) = parts
        .stamps
        .unwrap_or("")
        .split_ascii_whitespace()
        .take(MAX_STAMPS)
        .map(|s| parse_stamp(s, devices))
        .collect::<Option<Vec<Version>>>()
    else {
        return Vec::new();
    };
    parts
        .children
        .iter()
        .filter(|c| c.is(NS, "gone") && c.attr("kind") == Some("group"))
        .filter_map(|c| {
            Some((
                c.attr("id")?.to_owned(),
                parse_mark(c.attr("mark")?, &list)?.at,
            ))
        })
        .collect()
}

/// Reads the key a `<gone/>` or `<lost/>` element names.
fn parse_key(el: &Element) -> Result<Key, Error> {
    let attr = |n: &str| {
        el.attr(n)
            .map(str::to_owned)
            .ok_or(bad(Problem::FieldWithoutKey))
    };
    Ok(match el.attr("kind") {
        Some("name") => Key::Name,
        Some("identity") => {
            let id = Identity::new(&attr("type")?, &el.text())?;
            Key::Identity(id.kind.into_owned(), id.value)
        }
        Some("group") => Key::Group(attr("id")?),
        Some("extension") => Key::Extension(attr("ns")?, attr("name")?),
        Some("contact") => Key::Contact,
        _ => return Err(bad(Problem::UnknownKind)),
    })
}

impl State {
    /// The state of `contact` as written by `version`: its stamps where it has them,
    /// `version` for every present field without one.
    pub fn of(contact: &Contact, version: Version) -> Result<Self, Error> {
        let mut state = Self::default();
        let implicit = Mark {
            at: version,
            parent: None,
        };
        let present = present_fields(contact);
        state.seen.insert(version.device, version);
        let el = match &contact.stamps {
            Some(stamps) => stamps.parts(),
            None => {
                for (key, value) in present {
                    state.fields.insert(key, (implicit, value));
                }
                return Ok(state);
            }
        };
        if let Some(id) = el.contact {
            if !valid_id(id) {
                return Err(bad(Problem::BadContactId));
            }
            state.contact_id = Some(id.to_owned());
        }
        for id in el
            .aliases
            .unwrap_or("")
            .split_ascii_whitespace()
            .take(MAX_ALIASES + 1)
        {
            if !valid_id(id) {
                return Err(bad(Problem::BadContactId));
            }
            state.aliases.insert(id.to_owned());
        }
        if state.aliases.len() > MAX_ALIASES {
            return Err(bad(Problem::TooManyAliases));
        }
        let devices = el.devices?;
        let devices = devices.as_ref();
        if devices.len() > MAX_DEVICES {
            return Err(bad(Problem::TooManyDevices));
        }
        let stamps: Vec<Version> = el
            .stamps
            .unwrap_or("")
            .split_ascii_whitespace()
            .take(MAX_STAMPS + 1)
            .map(|s| parse_stamp(s, devices).ok_or(bad(Problem::BadStamp)))
            .collect::<Result<_, _>>()?;
        if stamps.len() > MAX_STAMPS {
            return Err(bad(Problem::TooManyStamps));
        }
        if let Some(seen) = el.seen {
            state.seen.clear();
            for t in seen.split_ascii_whitespace().take(MAX_DEVICES + 1) {
                let v = t
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| stamps.get(i).copied())
                    .ok_or(bad(Problem::BadSeen))?;
                if state.seen.insert(v.device, v).is_some() {
                    return Err(bad(Problem::DeviceSeenTwice));
                }
            }
            if state.seen.len() > MAX_DEVICES {
                return Err(bad(Problem::TooManyDevices));
            }
            if state.seen.is_empty() {
                state.seen.insert(version.device, version);
            }
        }
        let tokens: Vec<&str> = el
            .marks
            .unwrap_or("")
            .split_ascii_whitespace()
            .take(present.len() + 2)
            .collect();
        // The name slot, then one token per other present field.
        let has_name = contact.name.is_some();
        let others = present.len() - usize::from(has_name);
        let name_slot_fits = match tokens.first() {
            Some(&"-") => !has_name,
            Some(t) if t.starts_with('!') => !has_name,
            Some(_) => has_name,
            None => false,
        };
        let fits = tokens.len() == others + 1 && name_slot_fits;
        let mark = |t: &str| parse_mark(t, &stamps).ok_or(bad(Problem::BadMark));
        if fits {
            let mut present = present.into_iter();
            let t = tokens[0];
            if let Some(m) = t.strip_prefix('!') {
                state.fields.insert(Key::Name, (mark(m)?, Value::Gone));
            } else if has_name {
                // The name is the first present field when there is one.
                let (key, value) = present.next().ok_or(bad(Problem::MarksDoNotMatch))?;
                state.fields.insert(key, (mark(t)?, value));
            }
            for (t, (key, value)) in tokens[1..].iter().zip(present) {
                state.fields.insert(key, (mark(t)?, value));
            }
        } else {
            // The data was changed by a writer that kept kith's element as it was
            // (another client, as XEP-0510 asks it to keep unknown children): the
            // marks say nothing of the fields now, which read as set by this item.
            for (key, value) in present {
                state.fields.insert(key, (implicit, value));
            }
            let e = state.seen.entry(version.device).or_insert(version);
            if *e < version {
                *e = version;
            }
        }
        let (mut gone, mut lost) = (0, 0);
        for c in el.children {
            if c.is(NS, "gone") {
                gone += 1;
                if gone > MAX_GONE {
                    return Err(bad(Problem::TooManyRemoved));
                }
                let key = parse_key(c)?;
                if matches!(key, Key::Contact | Key::Name) {
                    return Err(bad(Problem::RemovedKindNeverRemoved));
                }
                if state.fields.contains_key(&key) {
                    if fits {
                        return Err(bad(Problem::RemovedAndPresent));
                    }
                    // Added back by the writer that did not stamp.
                    continue;
                }
                let m = mark(c.attr("mark").ok_or(bad(Problem::RemovedWithoutMark))?)?;
                state.fields.insert(key, (m, Value::Gone));
            } else if c.is(NS, "lost") {
                lost += 1;
                if lost > MAX_LOST {
                    return Err(bad(Problem::TooManyConflicts));
                }
                let key = parse_key(c)?;
                let stamp = |n: &str| {
                    c.attr(n)
                        .and_then(|i| stamps.get(i.parse::<usize>().ok()?).copied())
                        .ok_or(bad(Problem::ConflictWithoutStamps))
                };
                let gone = c.attr("gone") == Some("true");
                let value = match (&key, gone) {
                    (_, true) => Value::Gone,
                    (Key::Name, false) => Value::Name(c.text()),
                    (Key::Identity(k, v), false) => Value::Identity(Identity::new(k, v)?),
                    (Key::Group(id), false) => Value::Group(GroupRef {
                        id: id.clone(),
                        extra: super::Extra::default(),
                    }),
                    (Key::Extension(..), false) => Value::Extension(Vec::new()),
                    (Key::Contact, false) => {
                        return Err(bad(Problem::ContactConflictNotDeletion));
                    }
                };
                state.lost.push(Lost {
                    key,
                    value,
                    at: stamp("at")?,
                    winner: stamp("winner")?,
                });
            } else {
                return Err(bad(Problem::UnknownElement));
            }
        }
        Ok(state)
    }

    /// Whether no stamp here is later than `version` (the version of the item that
    /// carries it: no writer knows of edits made after its own).
    pub fn not_after(&self, version: Version) -> bool {
        self.fields
            .values()
            .all(|(m, _)| m.at <= version && m.parent.is_none_or(|p| p <= version))
            && self.seen.values().all(|v| *v <= version)
            && self
                .lost
                .iter()
                .all(|l| l.at <= version && l.winner <= version)
    }

    /// Writes this state into `contact`: its data (name, identities, groups, unknown
    /// children) is left as it is, and its stamps element replaced by this state's.
    /// Fields of `contact` without a mark here are stamped `fallback`.
    pub fn attach(&self, contact: &mut Contact, fallback: Version) {
        contact.stamps = None;
        let mut devices: Vec<DeviceId> = Vec::new();
        let mut stamps: Vec<Version> = Vec::new();
        let fallback_mark = Mark {
            at: fallback,
            parent: None,
        };
        let mut marks: Vec<String> = Vec::new();
        let present = present_fields(contact);
        let mut rest = present.iter();
        if contact.name.is_some() {
            rest.next();
            let m = self.fields.get(&Key::Name).map_or(fallback_mark, |f| f.0);
            marks.push(token(&m, &mut stamps, &mut devices));
        } else {
            match self.fields.get(&Key::Name) {
                Some((m, Value::Gone)) => {
                    marks.push(format!("!{}", token(m, &mut stamps, &mut devices)));
                }
                _ => marks.push("-".into()),
            }
        }
        for (key, _) in rest {
            let m = self.fields.get(key).map_or(fallback_mark, |f| f.0);
            marks.push(token(&m, &mut stamps, &mut devices));
        }
        let mut children: Vec<Element> = Vec::new();
        let gone = newest_gone(&self.fields, &present);
        for (key, m) in gone {
            let mut g = key_element("gone", key);
            g.set_attr("mark", token(m, &mut stamps, &mut devices));
            children.push(g);
        }
        for l in self.lost.iter().take(MAX_LOST) {
            let mut e = key_element("lost", &l.key);
            e.set_attr(
                "at",
                stamp_index(l.at, &mut stamps, &mut devices).to_string(),
            );
            e.set_attr(
                "winner",
                stamp_index(l.winner, &mut stamps, &mut devices).to_string(),
            );
            match &l.value {
                Value::Gone => e.set_attr("gone", "true"),
                Value::Name(n) => e.push_text(n.clone()),
                _ => {}
            }
            children.push(e);
        }
        let seen: Vec<String> = self
            .seen
            .values()
            .map(|v| stamp_index(*v, &mut stamps, &mut devices).to_string())
            .collect();
        let aliases = (!self.aliases.is_empty()).then(|| {
            let aliases: Vec<&str> = self
                .aliases
                .iter()
                .take(MAX_ALIASES)
                .map(String::as_str)
                .collect();
            aliases.join(" ")
        });
        let stamps = stamps
            .iter()
            .map(|s| {
                let d = devices.iter().position(|d| *d == s.device).unwrap_or(0);
                format!("{}.{}.{d}", s.hlc.wall_ms, s.hlc.counter)
            })
            .collect::<Vec<_>>()
            .join(" ");
        let values = [
            aliases,
            Some(stamps),
            Some(marks.join(" ")),
            Some(seen.join(" ")),
        ];
        contact.stamps = Some(Stamps::written(
            self.contact_id.as_deref(),
            values,
            devices,
            children,
        ));
    }
}

/// The removed fields to write: those not present, newest [`MAX_GONE`].
fn newest_gone<'a>(
    fields: &'a BTreeMap<Key, (Mark, Value)>,
    present: &[(Key, Value)],
) -> Vec<(&'a Key, &'a Mark)> {
    let mut gone: Vec<(&Key, &Mark)> = fields
        .iter()
        .filter(|(k, (_, v))| {
            *v == Value::Gone && **k != Key::Name && !present.iter().any(|(p, _)| p == *k)
        })
        .map(|(k, (m, _))| (k, m))
        .collect();
    gone.sort_by(|a, b| b.1.at.cmp(&a.1.at).then(a.0.cmp(b.0)));
    gone.truncate(MAX_GONE);
    gone
}

fn key_element(name: &str, key: &Key) -> Element {
    let mut e = Element::new(NS, name);
    match key {
        Key::Name => e.set_attr("kind", "name"),
        Key::Identity(kind, value) => {
            e.set_attr("kind", "identity");
            e.set_attr("type", kind.clone());
            e.push_text(value.clone());
        }
        Key::Group(id) => {
            e.set_attr("kind", "group");
            e.set_attr("id", id.clone());
        }
        Key::Extension(ns, n) => {
            e.set_attr("kind", "extension");
            e.set_attr("ns", ns.clone());
            e.set_attr("name", n.clone());
        }
        Key::Contact => e.set_attr("kind", "contact"),
    }
    e
}

/// The present fields of `contact`, in mark order: name, identities, groups, kinds
/// of unknown children.
pub fn present_fields(contact: &Contact) -> Vec<(Key, Value)> {
    let mut out = Vec::new();
    if let Some(n) = &contact.name {
        out.push((Key::Name, Value::Name(n.clone())));
    }
    for i in &contact.identities {
        out.push((
            Key::Identity(i.kind.to_string(), i.value.clone()),
            Value::Identity(i.clone()),
        ));
    }
    for g in &contact.groups {
        out.push((Key::Group(g.id.clone()), Value::Group(g.clone())));
    }
    for (ns, name) in extension_keys(contact) {
        let v = extension(contact, &ns, &name);
        out.push((Key::Extension(ns, name), Value::Extension(v)));
    }
    out
}

/// The index of `v` in `stamps`, adding it (and its device) when missing.
fn stamp_index(v: Version, stamps: &mut Vec<Version>, devices: &mut Vec<DeviceId>) -> usize {
    if !devices.contains(&v.device) {
        devices.push(v.device);
    }
    match stamps.iter().position(|s| *s == v) {
        Some(i) => i,
        None => {
            stamps.push(v);
            stamps.len() - 1
        }
    }
}

/// A mark token: `at` or `at/parent`.
fn token(m: &Mark, stamps: &mut Vec<Version>, devices: &mut Vec<DeviceId>) -> String {
    let at = stamp_index(m.at, stamps, devices);
    match m.parent {
        Some(p) => format!("{at}/{}", stamp_index(p, stamps, devices)),
        None => at.to_string(),
    }
}
