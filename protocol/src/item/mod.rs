//! XEP-0510 item payloads: `<contact/>`, `<group/>` and `<reserved/>` in namespace
//! `urn:xmpp:contacts:0`, and their XML codec.
//!
//! Reading is strict about what XEP-0510 requires (a contact has at least one
//! identity, every identity has a type, a group has an id and a name) and lenient
//! about everything else: attributes and children kith does not know are kept in
//! [`Extra`] and written back, because XEP-0510 warns about clients that drop them.
//!
//! Limits, each with its own error: the payload is parsed with
//! [`xml::Limits::ITEM`] (16 KiB, depth 8, 512 elements); a contact has at most
//! [`MAX_IDENTITIES`] identities and [`MAX_GROUP_REFS`] group references; an identity
//! value is at most [`MAX_VALUE_BYTES`] bytes.

use std::borrow::Cow;
use std::fmt;

use crate::jid::{self, BareJid};

mod binary;
pub mod fields;
pub(crate) mod names;
mod parse;

use crate::xml::{self, Attr, Element, Node};
pub use names::{clean_name, is_blank, lookalike};
use parse::{parse_contact, parse_group, split_extra, truncate};

/// XEP-0510 payload namespace.
pub const NS: &str = "urn:xmpp:contacts:0";
/// Most `<identity/>` children one contact may have.
pub const MAX_IDENTITIES: usize = 64;
/// Most `<group/>` references one contact may have.
pub const MAX_GROUP_REFS: usize = 256;
/// Largest identity value, group id or name, in bytes.
pub const MAX_VALUE_BYTES: usize = 3071;

/// The two XEP-0510 pubsub nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// `urn:xmpp:contacts`: `<contact/>` and `<reserved/>` items.
    Contacts,
    /// `urn:xmpp:contacts-groups`: `<group/>` and `<reserved/>` items.
    Groups,
}

impl NodeKind {
    /// Both nodes, contacts first.
    pub const ALL: [Self; 2] = [Self::Contacts, Self::Groups];

    /// The pubsub node name.
    pub fn node_name(self) -> &'static str {
        match self {
            Self::Contacts => "urn:xmpp:contacts",
            Self::Groups => "urn:xmpp:contacts-groups",
        }
    }

    /// Parses a pubsub node name.
    pub fn from_node_name(name: &str) -> Option<Self> {
        match name {
            "urn:xmpp:contacts" => Some(Self::Contacts),
            "urn:xmpp:contacts-groups" => Some(Self::Groups),
            _ => None,
        }
    }
}

impl fmt::Display for NodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.node_name())
    }
}

/// Why a payload is not a valid XEP-0510 item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not well-formed, or over the XML limits.
    #[error(transparent)]
    Xml(#[from] xml::Error),
    /// Root element in another namespace.
    #[error("payload is in namespace {0:?}, not urn:xmpp:contacts:0")]
    WrongNamespace(String),
    /// Root element that XEP-0510 does not define.
    #[error("payload <{0}/> is not a contact, group or reserved item")]
    UnknownElement(String),
    /// A payload that does not belong on this node (a `<group/>` on the contacts node).
    #[error("a <{element}/> item does not belong on node {node}")]
    WrongNode {
        /// The payload's element name.
        element: &'static str,
        /// The node it was meant for.
        node: NodeKind,
    },
    /// A contact with no `<identity/>`.
    #[error("contact has no identity")]
    NoIdentity,
    /// An `<identity/>` with no `type`.
    #[error("identity has no type")]
    IdentityWithoutType,
    /// An `<identity/>` with an empty value.
    #[error("identity of type {0:?} is empty")]
    EmptyIdentity(String),
    /// An identity of type `jid` that is not a JID.
    #[error("identity is not a valid JID: {0}")]
    InvalidJid(#[from] jid::Error),
    /// More identities than [`MAX_IDENTITIES`].
    #[error("contact has more than {max} identities")]
    TooManyIdentities {
        /// The limit.
        max: usize,
    },
    /// More group references than [`MAX_GROUP_REFS`].
    #[error("contact has more than {max} groups")]
    TooManyGroups {
        /// The limit.
        max: usize,
    },
    /// A value longer than [`MAX_VALUE_BYTES`].
    #[error("a value is longer than {max} bytes")]
    ValueTooLong {
        /// The limit.
        max: usize,
    },
    /// A kith field-stamps element (see [`fields`]) that does not read.
    #[error("the contact's field stamps are invalid: {0}")]
    BadFields(fields::Problem),
    /// A `<group/>` (definition or reference) with no `id`.
    #[error("group has no id")]
    GroupWithoutId,
    /// A group definition with no `name`.
    #[error("group {0:?} has no name")]
    GroupWithoutName(String),
}

/// Attributes and children kith does not interpret, kept for the round trip.
///
/// Nearly every item has none, and a device holds every item it reads (a contact
/// has three of these: its own, its identity's and its group reference's), so an
/// empty one is a single null pointer: what there is lives behind one box, made
/// when the first attribute or child is added.
#[derive(Debug, Clone, Default)]
pub struct Extra(Option<Box<Unknown>>);

/// What an [`Extra`] holds when it holds something.
#[derive(Debug, Clone, Default)]
struct Unknown {
    attrs: Vec<Attr>,
    children: Vec<Element>,
}

impl Extra {
    /// Holding `attrs` and `children` (nothing allocated when both are empty).
    pub fn new(attrs: Vec<Attr>, children: Vec<Element>) -> Self {
        let mut e = Self(None);
        e.edit(|a, c| (*a, *c) = (attrs, children));
        e
    }

    /// Unknown attributes, in document order.
    pub fn attrs(&self) -> &[Attr] {
        self.0.as_ref().map_or(&[], |u| &u.attrs)
    }

    /// Unknown child elements, in document order.
    pub fn children(&self) -> &[Element] {
        self.0.as_ref().map_or(&[], |u| &u.children)
    }

    /// Changes the attributes and children through `f`; nothing stays allocated if
    /// they end up empty, and what stays has no spare room (should `f` panic, an
    /// empty box may stay: it still equals, orders and hashes as an empty `Extra`).
    pub fn edit<T>(&mut self, f: impl FnOnce(&mut Vec<Attr>, &mut Vec<Element>) -> T) -> T {
        let out = match &mut self.0 {
            Some(u) => f(&mut u.attrs, &mut u.children),
            // Boxed only if `f` leaves something (empty vectors allocate nothing).
            None => {
                let (mut attrs, mut children) = (Vec::new(), Vec::new());
                let out = f(&mut attrs, &mut children);
                if !(attrs.is_empty() && children.is_empty()) {
                    self.0 = Some(Box::new(Unknown { attrs, children }));
                }
                out
            }
        };
        self.settle();
        out
    }

    /// Drops an empty box, and spare room in a full one.
    fn settle(&mut self) {
        match &mut self.0 {
            Some(u) if u.attrs.is_empty() && u.children.is_empty() => self.0 = None,
            Some(u) => {
                u.attrs.shrink_to_fit();
                u.children.shrink_to_fit();
            }
            None => {}
        }
    }

    /// True when nothing unknown was found.
    pub fn is_empty(&self) -> bool {
        self.attrs().is_empty() && self.children().is_empty()
    }

    fn apply_to(&self, el: &mut Element) {
        el.attrs.extend(self.attrs().iter().cloned());
        el.children
            .extend(self.children().iter().cloned().map(Node::Element));
    }

    /// Adds what `other` has and `self` lacks.
    pub fn absorb(&mut self, other: &Self) {
        self.absorb_attrs(other);
        if other.children().is_empty() {
            return;
        }
        self.edit(|_, children| {
            for c in other.children() {
                if !children.contains(c) {
                    children.push(c.clone());
                }
            }
        });
    }

    /// Adds the attributes of `other` that `self` lacks (by namespace and name).
    pub fn absorb_attrs(&mut self, other: &Self) {
        if other.attrs().is_empty() {
            return;
        }
        self.edit(|attrs, _| {
            for a in other.attrs() {
                if !attrs.iter().any(|b| b.ns == a.ns && b.name == a.name) {
                    attrs.push(a.clone());
                }
            }
        });
    }
}

/// Equal, ordered and hashed by what they hold, however they hold it.
impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        (self.attrs(), self.children()) == (other.attrs(), other.children())
    }
}

impl Eq for Extra {}

impl std::hash::Hash for Extra {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.attrs(), self.children()).hash(state);
    }
}

impl PartialOrd for Extra {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Extra {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.attrs(), self.children()).cmp(&(other.attrs(), other.children()))
    }
}

/// One way to identify a contact: `<identity type='jid'>romeo@montague.lit</identity>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    /// The `type` attribute (`jid` is the one XEP-0510 defines). Nearly every
    /// identity is a JID: that one is held without an allocation of its own.
    pub kind: Cow<'static, str>,
    /// The value; a normalised bare JID when `kind` is `jid`.
    pub value: String,
    /// Unknown attributes and children of the `<identity/>` element.
    pub extra: Extra,
}

impl Identity {
    /// A `jid` identity, normalised.
    pub fn jid(jid: &BareJid) -> Self {
        Self {
            kind: "jid".into(),
            value: jid.to_string(),
            extra: Extra::default(),
        }
    }

    /// `kind` as an identity holds it: `jid` without an allocation.
    pub(crate) fn held_kind(kind: impl AsRef<str> + Into<String>) -> Cow<'static, str> {
        if kind.as_ref() == "jid" {
            Cow::Borrowed("jid")
        } else {
            Cow::Owned(kind.into())
        }
    }

    /// Builds an identity, normalising `jid` values.
    pub fn new(kind: &str, value: &str) -> Result<Self, Error> {
        if kind.is_empty() {
            return Err(Error::IdentityWithoutType);
        }
        let value = value.trim();
        if value.is_empty() {
            return Err(Error::EmptyIdentity(kind.into()));
        }
        if value.len() > MAX_VALUE_BYTES || kind.len() > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLong {
                max: MAX_VALUE_BYTES,
            });
        }
        let value = if kind == "jid" {
            // Formatting leaves room to grow; an identity is held as long as its item.
            let mut v = BareJid::parse(value)?.to_string();
            v.shrink_to_fit();
            v
        } else {
            value.to_owned()
        };
        Ok(Self {
            kind: Self::held_kind(kind),
            value,
            extra: Extra::default(),
        })
    }

    /// What makes two identities the same: type and normalised value.
    pub fn key(&self) -> (&str, &str) {
        (&self.kind, &self.value)
    }
}

/// A reference from a contact to a group: `<group id='…'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    /// The referenced group's id.
    pub id: String,
    /// Unknown attributes and children.
    pub extra: Extra,
}

/// A `<contact/>` item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The user's name for the contact.
    pub name: Option<String>,
    /// At least one identity.
    pub identities: Vec<Identity>,
    /// Groups the contact belongs to.
    pub groups: Vec<GroupRef>,
    /// Unknown attributes and children.
    pub extra: Extra,
    /// kith's field stamps ([`fields`]), written after the unknown children.
    pub stamps: Option<fields::Stamps>,
}

/// A `<group/>` item of the groups node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Group {
    /// The group's stable id.
    pub id: String,
    /// The group's name.
    pub name: String,
    /// Optional `<description/>` text.
    pub description: Option<String>,
    /// Unknown attributes and children (including those of `<description/>`'s
    /// siblings).
    pub extra: Extra,
}

/// The plaintext of one item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A contact (contacts node).
    Contact(Contact),
    /// A group (groups node).
    Group(Group),
    /// Filler that readers ignore (either node).
    Reserved(Extra),
}

impl Payload {
    /// Parses a payload from XML.
    pub fn parse(input: &str) -> Result<Self, Error> {
        Self::from_element(&Element::parse(input, xml::Limits::ITEM)?)
    }

    /// Reads a payload from a parsed element.
    pub fn from_element(el: &Element) -> Result<Self, Error> {
        if el.ns != NS {
            return Err(Error::WrongNamespace(el.ns.to_string()));
        }
        match el.name.as_ref() {
            "contact" => parse_contact(el).map(Self::Contact),
            "group" => parse_group(el).map(Self::Group),
            "reserved" => Ok(Self::Reserved(split_extra(el, &[], |_| false))),
            other => Err(Error::UnknownElement(truncate(other))),
        }
    }

    /// The element name of this payload.
    pub fn element_name(&self) -> &'static str {
        match self {
            Self::Contact(_) => "contact",
            Self::Group(_) => "group",
            Self::Reserved(_) => "reserved",
        }
    }

    /// Checks that this payload may be published on `node`.
    pub fn check_node(&self, node: NodeKind) -> Result<(), Error> {
        match (self, node) {
            (Self::Contact(_), NodeKind::Contacts)
            | (Self::Group(_), NodeKind::Groups)
            | (Self::Reserved(_), _) => Ok(()),
            _ => Err(Error::WrongNode {
                element: self.element_name(),
                node,
            }),
        }
    }

    /// Builds the XML element.
    pub fn to_element(&self) -> Element {
        match self {
            Self::Contact(c) => {
                let mut el = Element::new(NS, "contact");
                if let Some(n) = &c.name {
                    el.set_attr("name", n.clone());
                }
                for id in &c.identities {
                    let mut i = Element::new(NS, "identity").with_attr("type", id.kind.clone());
                    id.extra.apply_to(&mut i);
                    i.push_text(id.value.clone());
                    el.push(i);
                }
                for g in &c.groups {
                    let mut r = Element::new(NS, "group").with_attr("id", g.id.clone());
                    g.extra.apply_to(&mut r);
                    el.push(r);
                }
                c.extra.apply_to(&mut el);
                if let Some(s) = &c.stamps {
                    el.push(s.element());
                }
                el
            }
            Self::Group(g) => {
                let mut el = Element::new(NS, "group")
                    .with_attr("id", g.id.clone())
                    .with_attr("name", g.name.clone());
                if let Some(d) = &g.description {
                    let mut de = Element::new(NS, "description");
                    de.push_text(d.clone());
                    el.push(de);
                }
                g.extra.apply_to(&mut el);
                el
            }
            Self::Reserved(extra) => {
                let mut el = Element::new(NS, "reserved");
                extra.apply_to(&mut el);
                el
            }
        }
    }

    /// Serialises the payload (without padding).
    pub fn to_xml(&self) -> String {
        self.to_element().to_xml()
    }
}

#[cfg(test)]
mod tests;
