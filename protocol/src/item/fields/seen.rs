//! What an item knows of its contact's history ([`Seen`], a version vector), and the
//! mark a deleted contact's `<reserved/>` item carries.

use std::collections::{BTreeMap, BTreeSet};

use super::{MAX_ALIASES, MAX_DEVICES, NS, valid_id};
use crate::clock::Hlc;
use crate::record::{DeviceId, Version};
use crate::xml::Element;

/// A version vector over one contact's edits: per device, the newest of its edits
/// known. A device's edits of one contact each know the one before, so an edit is
/// known exactly when its stamp is at most the entry of its device.
pub type Seen = BTreeMap<DeviceId, Version>;

/// Whether `a` knows every edit `b` knows.
pub fn covers(a: &Seen, b: &Seen) -> bool {
    b.iter()
        .all(|(d, v)| a.get(d).is_some_and(|mine| mine >= v))
}

/// Adds what `b` knows to `a`.
pub fn join(a: &mut Seen, b: &Seen) {
    for (d, v) in b {
        let e = a.entry(*d).or_insert(*v);
        if *v > *e {
            *e = *v;
        }
    }
}

/// `device-hex:wall_ms.counter`.
pub(super) fn version_token(v: &Version) -> String {
    format!("{}:{}.{}", hex(&v.device.0), v.hlc.wall_ms, v.hlc.counter)
}

pub(super) fn parse_version_token(t: &str) -> Option<Version> {
    let (d, stamp) = t.split_once(':')?;
    let device = parse_hex32(d)?;
    let (ms, c) = stamp.split_once('.')?;
    Some(Version {
        hlc: Hlc {
            wall_ms: ms.parse().ok()?,
            counter: c.parse().ok()?,
        },
        device,
    })
}

/// A deletion of a contact, as the `<reserved/>` item that marks it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion<'a> {
    /// The contact id.
    pub contact_id: &'a str,
    /// The deleted contact's other ids ([`super::State::aliases`]).
    pub aliases: Vec<&'a str>,
    /// What the deletion knew of the contact.
    pub seen: Seen,
    /// The deletion itself (which device, when), if the mark says; a rewrite of the
    /// mark (after a rotation) keeps it, so it names the deletion, not the rewrite.
    pub at: Option<Version>,
}

impl Deletion<'_> {
    /// Every contact id the deletion names: its own, then the aliases.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        std::iter::once(self.contact_id).chain(self.aliases.iter().copied())
    }
}

/// The element a `<reserved/>` item carries when it marks a contact's deletion: the
/// contact id and its aliases, what the deletion knew of the contact, and the
/// deletion's stamp.
pub fn deletion_element(
    contact_id: &str,
    aliases: &BTreeSet<String>,
    seen: &Seen,
    at: Version,
) -> Element {
    let tokens: Vec<String> = seen.values().map(version_token).collect();
    let mut el = Element::new(NS, "deleted").with_attr("contact", contact_id.to_owned());
    if !aliases.is_empty() {
        let aliases: Vec<&str> = aliases
            .iter()
            .take(MAX_ALIASES)
            .map(String::as_str)
            .collect();
        el.set_attr("aliases", aliases.join(" "));
    }
    el.with_attr("seen", tokens.join(" "))
        .with_attr("at", version_token(&at))
}

/// Reads a deletion element; `None` when it does not read (it is then not a
/// deletion mark).
pub fn read_deletion(el: &Element) -> Option<Deletion<'_>> {
    if !el.is(NS, "deleted") {
        return None;
    }
    let contact_id = el.attr("contact").filter(|c| valid_id(c))?;
    // Ids that do not read are skipped: the deletion still holds for the others.
    let aliases = el
        .attr("aliases")
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter(|c| valid_id(c) && *c != contact_id)
        .take(MAX_ALIASES)
        .collect();
    let mut seen = Seen::new();
    for t in el
        .attr("seen")?
        .split_ascii_whitespace()
        .take(MAX_DEVICES + 1)
    {
        let v = parse_version_token(t)?;
        if seen.insert(v.device, v).is_some() {
            return None;
        }
    }
    let at = match el.attr("at") {
        Some(t) => Some(parse_version_token(t)?),
        None => None,
    };
    (seen.len() <= MAX_DEVICES).then_some(Deletion {
        contact_id,
        aliases,
        seen,
        at,
    })
}

pub(super) fn hex(b: &[u8]) -> String {
    crate::hex::encode(b)
}

pub(super) fn parse_hex32(t: &str) -> Option<DeviceId> {
    if t.len() != 64 {
        return None;
    }
    let mut b = [0u8; 32];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(t.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(DeviceId(b))
}
