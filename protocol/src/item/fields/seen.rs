//! What an item knows of its contact's history ([`Seen`], a version vector), and the
//! mark a deleted contact's `<reserved/>` item carries.

use std::collections::BTreeMap;

use super::{MAX_DEVICES, NS, valid_id};
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

/// The element a `<reserved/>` item carries when it was a deleted contact's item:
/// the contact id and what the deletion knew of the contact.
pub fn deletion_element(contact_id: &str, seen: &Seen) -> Element {
    let tokens: Vec<String> = seen
        .values()
        .map(|v| format!("{}:{}.{}", hex(&v.device.0), v.hlc.wall_ms, v.hlc.counter))
        .collect();
    Element::new(NS, "deleted")
        .with_attr("contact", contact_id.to_owned())
        .with_attr("seen", tokens.join(" "))
}

/// Reads a deletion element: the contact id and what the deletion knew; `None` when
/// it does not read (it is then not a deletion mark).
pub fn read_deletion(el: &Element) -> Option<(&str, Seen)> {
    if !el.is(NS, "deleted") {
        return None;
    }
    let cid = el.attr("contact").filter(|c| valid_id(c))?;
    let mut seen = Seen::new();
    for t in el
        .attr("seen")?
        .split_ascii_whitespace()
        .take(MAX_DEVICES + 1)
    {
        let (d, stamp) = t.split_once(':')?;
        let device = parse_hex32(d)?;
        let (ms, c) = stamp.split_once('.')?;
        let v = Version {
            hlc: Hlc {
                wall_ms: ms.parse().ok()?,
                counter: c.parse().ok()?,
            },
            device,
        };
        if seen.insert(device, v).is_some() {
            return None;
        }
    }
    (seen.len() <= MAX_DEVICES).then_some((cid, seen))
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
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
