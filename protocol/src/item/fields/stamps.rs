//! The stamps element as a contact holds it ([`Stamps`]): compact, because every
//! device keeps every contact it reads for as long as the item lives, and read
//! without an XML parser, because every merge reads it.
//!
//! A parsed XML element is a tree of a dozen allocations (its attributes, the
//! `<device/>` children and their text); held in every contact it was two thirds of
//! a contact's memory. An element as kith writes it is held as its parts: the
//! contact id inline, the other attributes as one string, the device keys as bytes,
//! and the children after the devices (`<gone/>`, `<lost/>`, rare) as elements. "As
//! kith writes it": only kith's attributes, unqualified, in kith's order, the contact
//! id and aliases valid (at most [`MAX_ALIASES`], one space apart), the `<device/>`
//! children first, without attributes, each one key in lowercase hex, and no text.
//! Any other element (another writer's) is held whole. Both read the same way
//! ([`super::State::of`]); the element as a contact holds it is written back as the
//! contact's last child.

use std::fmt;

use super::ids::{MAX_ALIASES, valid_id};
use super::seen::{hex, parse_hex32};
use super::{Error, NS, Problem};
use crate::record::DeviceId;
use crate::xml::{Attr, Element, Node};

/// A contact id: 32 lowercase hex digits, held inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexId([u8; 32]);

impl HexId {
    /// `id` when it is a contact id (32 lowercase hex digits).
    pub fn new(id: &str) -> Option<Self> {
        if !valid_id(id) {
            return None;
        }
        let mut out = [0; 32];
        out.copy_from_slice(id.as_bytes());
        Some(Self(out))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored (checked by `new`), so the bytes are
        // UTF-8; the empty string stands in for what cannot happen.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The attributes held as text, in the order kith writes them after `contact`.
const TEXT_ATTRS: [&str; 4] = ["aliases", "stamps", "marks", "seen"];

/// A contact's stamps element (`<fields xmlns='urn:kith:fields:0'/>`), held compactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stamps(Repr);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    /// An element as kith writes it.
    Parts {
        /// The `contact` attribute (a valid contact id).
        contact: Option<HexId>,
        /// The values of [`TEXT_ATTRS`], each followed by a NUL (which XML cannot
        /// hold); `present` says which the element has.
        text: Box<str>,
        /// Bit `i`: the element has `TEXT_ATTRS[i]`.
        present: u8,
        /// The keys of the `<device/>` children, in order.
        devices: Box<[DeviceId]>,
        /// The children after them.
        children: Box<[Element]>,
    },
    /// Any other element, whole.
    Whole(Box<Element>),
}

/// The parts of a stamps element that reading it needs, however it is held.
pub(super) struct Parts<'a> {
    /// The `contact` attribute.
    pub contact: Option<&'a str>,
    /// The `aliases`, `stamps`, `marks` and `seen` attributes.
    pub aliases: Option<&'a str>,
    pub stamps: Option<&'a str>,
    pub marks: Option<&'a str>,
    pub seen: Option<&'a str>,
    /// The device keys, in order, or why a `<device/>` child does not read.
    pub devices: Result<std::borrow::Cow<'a, [DeviceId]>, Error>,
    /// The children other than `<device/>`, in order.
    pub children: Vec<&'a Element>,
}

/// Whether an `aliases` value reads as it is: the ids `aliases` returns, one space
/// apart, none refused.
fn clean_aliases(value: &str) -> bool {
    let ids: Vec<&str> = value.split_ascii_whitespace().collect();
    ids.len() <= MAX_ALIASES && ids.iter().all(|id| valid_id(id)) && ids.join(" ") == value
}

/// `el` as [`Repr::Parts`], when it is written as kith writes it.
fn parts_of(el: &Element) -> Option<Repr> {
    if !el.is(NS, "fields") {
        return None;
    }
    let mut contact = None;
    let mut values = [""; 4];
    let mut present = 0u8;
    let mut next = 0; // attributes must come in kith's order
    for a in &el.attrs {
        if !a.ns.is_empty() {
            return None;
        }
        if a.name == "contact" && next == 0 {
            contact = Some(HexId::new(&a.value)?);
            next = 1;
            continue;
        }
        let i = TEXT_ATTRS.iter().position(|n| *n == a.name)?;
        if i + 1 < next || a.value.contains('\0') {
            return None;
        }
        if i == 0 && !clean_aliases(&a.value) {
            return None;
        }
        values[i] = &a.value;
        present |= 1 << i;
        next = i + 2;
    }
    let mut devices = Vec::new();
    let mut children = Vec::new();
    for n in &el.children {
        let Node::Element(c) = n else { return None };
        if c.is(NS, "device") {
            if !children.is_empty() || !c.attrs.is_empty() {
                return None;
            }
            let [Node::Text(t)] = c.children.as_slice() else {
                return None;
            };
            // Written back as lowercase hex: only that is taken apart.
            if !t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            let d = parse_hex32(t)?;
            devices.push(d);
        } else {
            children.push(c.clone());
        }
    }
    let mut text = String::new();
    for v in values {
        text.push_str(v);
        text.push('\0');
    }
    Some(Repr::Parts {
        contact,
        text: text.into_boxed_str(),
        present,
        devices: devices.into_boxed_slice(),
        children: children.into_boxed_slice(),
    })
}

impl Stamps {
    /// Holds `el` (a stamps element) compactly.
    pub fn from_element(el: &Element) -> Self {
        Self(parts_of(el).unwrap_or_else(|| Repr::Whole(Box::new(el.clone()))))
    }

    /// The stamps [`super::State::attach`] writes, held as parts without building
    /// the element: the contact id, the values of `aliases`, `stamps`, `marks` and
    /// `seen` (each when present), the device keys and the other children. Should a
    /// value not be one kith writes, the element is built and held as
    /// [`Stamps::from_element`] holds it.
    pub(super) fn written(
        contact: Option<&str>,
        values: [Option<String>; 4],
        devices: Vec<DeviceId>,
        children: Vec<Element>,
    ) -> Self {
        let id = contact.map(HexId::new);
        let clean = !matches!(id, Some(None))
            && values[0].as_deref().is_none_or(clean_aliases)
            && values.iter().flatten().all(|v| !v.contains('\0'))
            && !children.iter().any(|c| c.is(NS, "device"));
        let mut text = String::new();
        let mut present = 0u8;
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                text.push_str(v);
                present |= 1 << i;
            }
            text.push('\0');
        }
        let parts = Self(Repr::Parts {
            contact: id.flatten(),
            text: text.into_boxed_str(),
            present,
            devices: devices.into_boxed_slice(),
            children: children.into_boxed_slice(),
        });
        if clean {
            return parts;
        }
        let mut el = parts.element();
        if let Some(c) = contact.filter(|_| matches!(id, Some(None))) {
            el.attrs.insert(
                0,
                Attr {
                    ns: "".into(),
                    name: "contact".into(),
                    value: c.to_owned(),
                },
            );
        }
        Self::from_element(&el)
    }

    /// The element, as it was read.
    pub fn element(&self) -> Element {
        if let Repr::Whole(el) = &self.0 {
            return Element::clone(el);
        }
        let parts = self.parts();
        let mut el = Element::new(NS, "fields");
        if let Some(c) = parts.contact {
            el.set_attr("contact", c);
        }
        let values = [parts.aliases, parts.stamps, parts.marks, parts.seen];
        for (name, value) in TEXT_ATTRS.iter().zip(values) {
            if let Some(v) = value {
                el.attrs.push(Attr {
                    ns: "".into(),
                    name: (*name).into(),
                    value: v.to_owned(),
                });
            }
        }
        // Held as parts, the keys are bytes: they always read.
        if let Ok(devices) = &parts.devices {
            for d in devices.iter() {
                let mut de = Element::new(NS, "device");
                de.push_text(hex(&d.0));
                el.push(de);
            }
        }
        for c in parts.children {
            el.push(c.clone());
        }
        el
    }

    /// What reading the stamps needs.
    pub(super) fn parts(&self) -> Parts<'_> {
        match &self.0 {
            Repr::Whole(el) => {
                let devices = el
                    .elements()
                    .filter(|c| c.is(NS, "device"))
                    .map(|d| parse_hex32(&d.text()).ok_or(Error::BadFields(Problem::BadDevice)))
                    .collect::<Result<Vec<_>, _>>();
                Parts {
                    contact: el.attr("contact"),
                    aliases: el.attr("aliases"),
                    stamps: el.attr("stamps"),
                    marks: el.attr("marks"),
                    seen: el.attr("seen"),
                    devices: devices.map(Into::into),
                    children: el.elements().filter(|c| !c.is(NS, "device")).collect(),
                }
            }
            Repr::Parts {
                contact,
                text,
                present,
                devices,
                children,
            } => {
                let mut values = [None; 4];
                for (i, v) in text.split('\0').take(TEXT_ATTRS.len()).enumerate() {
                    values[i] = (present & (1 << i) != 0).then_some(v);
                }
                let [aliases, stamps, marks, seen] = values;
                Parts {
                    contact: contact.as_ref().map(HexId::as_str),
                    aliases,
                    stamps,
                    marks,
                    seen,
                    devices: Ok(std::borrow::Cow::Borrowed(devices)),
                    children: children.iter().collect(),
                }
            }
        }
    }

    /// The contact id, when the element carries a valid one.
    pub fn contact_id(&self) -> Option<&str> {
        match &self.0 {
            Repr::Parts { contact, .. } => contact.as_ref().map(HexId::as_str),
            Repr::Whole(el) => el.attr("contact").filter(|c| valid_id(c)),
        }
    }

    /// The valid contact ids of the `aliases` attribute, in order, at most
    /// [`MAX_ALIASES`].
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        let list = match &self.0 {
            Repr::Parts { text, present, .. } if present & 1 != 0 => {
                text.split('\0').next().unwrap_or("")
            }
            Repr::Parts { .. } => "",
            Repr::Whole(el) => el.attr("aliases").unwrap_or(""),
        };
        list.split_ascii_whitespace()
            .filter(|c| valid_id(c))
            .take(MAX_ALIASES)
    }

    /// Whether a group reference is marked gone (`<gone kind='group'/>`); whether
    /// the mark reads whole is for [`super::State::of`] to say.
    pub fn has_gone_groups(&self) -> bool {
        let gone = |c: &Element| c.is(NS, "gone") && c.attr("kind") == Some("group");
        match &self.0 {
            Repr::Parts { children, .. } => children.iter().any(gone),
            Repr::Whole(el) => el.elements().any(gone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::xml;

    fn el(attrs: &str, children: &str) -> Element {
        Element::parse(
            &format!("<fields xmlns='{NS}' {attrs}>{children}</fields>"),
            xml::Limits::ITEM,
        )
        .expect("parses")
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const ALIAS: &str = "fedcba9876543210fedcba9876543210";

    fn device(c: char) -> String {
        format!("<device>{}</device>", c.to_string().repeat(64))
    }

    #[test]
    fn the_element_reads_back_as_it_was() {
        let devices = format!("{}{}", device('a'), device('b'));
        let gone = "<gone kind='group' id='g' mark='0'/>";
        for (attrs, children, parts) in [
            (String::new(), String::new(), true),
            (
                format!("contact='{ID}' stamps='1.0.0' marks='0' seen='0'"),
                devices.clone(),
                true,
            ),
            (
                format!("contact='{ID}' aliases='{ALIAS} {ID}' marks=''"),
                format!("{devices}{gone}"),
                true,
            ),
            (
                format!("stamps='1.0.0' contact='{ID}'"),
                devices.clone(),
                false,
            ),
            (
                format!("contact='NOT-AN-ID' aliases='{ALIAS} junk'"),
                String::new(),
                false,
            ),
            (
                format!("aliases='{}'", vec![ALIAS; MAX_ALIASES + 1].join(" ")),
                String::new(),
                false,
            ),
            (String::new(), format!("{gone}{}", device('c')), false),
            (String::new(), device('C'), false),
            (
                String::new(),
                format!("<device>{}</device>", "+f".repeat(32)),
                false,
            ),
            (String::new(), "<device>12</device>".into(), false),
            (String::new(), "<other/>".into(), true),
            (String::new(), format!("{}x", device('d')), false),
        ] {
            let e = el(&attrs, &children);
            let s = Stamps::from_element(&e);
            assert_eq!(
                matches!(s.0, Repr::Parts { .. }),
                parts,
                "{attrs} {children}"
            );
            assert_eq!(s.element(), e, "{attrs} {children}");
        }
        // Only a stamps element is taken apart.
        let other = Element::new("urn:example", "fields");
        assert_eq!(Stamps::from_element(&other).element(), other);
    }

    #[test]
    fn written_stamps_are_held_as_the_element_would_be() {
        let key = DeviceId([0xab; 32]);
        let too_many = vec![ALIAS; MAX_ALIASES + 1].join(" ");
        for (contact, aliases, parts) in [
            (Some(ID), Some(ALIAS.to_owned()), true),
            (None, None, true),
            (Some("NOT-AN-ID"), None, false),
            (Some(ID), Some(too_many), false),
        ] {
            let values = [
                aliases,
                Some("1.0.0".into()),
                Some("0".into()),
                Some("0".into()),
            ];
            let gone = el("", "<gone kind='group' id='g' mark='0'/>").children;
            let gone: Vec<Element> = gone
                .into_iter()
                .filter_map(|n| match n {
                    Node::Element(e) => Some(e),
                    Node::Text(_) => None,
                })
                .collect();
            let s = Stamps::written(contact, values, vec![key], gone);
            assert_eq!(matches!(s.0, Repr::Parts { .. }), parts, "{contact:?}");
            assert_eq!(Stamps::from_element(&s.element()), s, "{contact:?}");
        }
    }

    #[test]
    fn both_forms_read_the_same_parts() {
        let e = el(
            &format!("contact='{ID}' aliases='{ALIAS}' stamps='1.0.0' marks='0' seen='0'"),
            &format!("{}<gone kind='group' id='g' mark='0'/>", device('a')),
        );
        let parts = Stamps::from_element(&e);
        let whole = Stamps(Repr::Whole(Box::new(e)));
        let (a, b) = (parts.parts(), whole.parts());
        assert_eq!(
            (
                a.contact,
                a.aliases,
                a.stamps,
                a.marks,
                a.seen,
                &a.devices,
                &a.children
            ),
            (
                b.contact,
                b.aliases,
                b.stamps,
                b.marks,
                b.seen,
                &b.devices,
                &b.children
            )
        );
        assert_eq!(parts.contact_id(), Some(ID));
        assert_eq!(parts.aliases().collect::<Vec<_>>(), vec![ALIAS]);
        assert_eq!(whole.aliases().collect::<Vec<_>>(), vec![ALIAS]);
    }
}
