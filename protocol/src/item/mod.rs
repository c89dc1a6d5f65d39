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
mod parse;

use crate::xml::{self, Attr, Element, Node};
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

/// A name as people mean it: trimmed, in Unicode NFC (how kith stores the names
/// users type for contacts and groups).
pub fn clean_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect()
}

/// What two names that look the same have in common: the name in Unicode NFC,
/// full-width letters and digits as the usual ones, without invisible characters
/// ([`is_invisible`]), its runs of white space as one space and none around it,
/// lower case (a final sigma as any sigma). Only commands compare names this way:
/// it decides which group a name a person types means, never how devices merge.
pub fn lookalike(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfc() {
        // Full-width forms of ASCII (U+FF01..U+FF5E) as ASCII.
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        };
        if is_invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if std::mem::take(&mut space) {
            out.push(' ');
        }
        out.extend(c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l }));
    }
    out
}

/// Whether a name shows nothing: only white space, invisible characters
/// ([`is_invisible`]), joiners, tag characters, fillers and the blank Braille
/// pattern, and other format characters.
pub fn is_blank(name: &str) -> bool {
    name.chars().all(|c| {
        c.is_whitespace()
            || is_invisible(c)
            || matches!(
                c,
                '\u{0600}'..='\u{0605}'
                    | '\u{06DD}'
                    | '\u{070F}'
                    | '\u{115F}'
                    | '\u{1160}'
                    | '\u{17B4}'
                    | '\u{17B5}'
                    | '\u{200C}'
                    | '\u{200D}'
                    | '\u{2800}'
                    | '\u{3164}'
                    | '\u{FFA0}'
                    | '\u{FFF9}'..='\u{FFFB}'
                    | '\u{1BCA0}'..='\u{1BCA3}'
                    | '\u{1D173}'..='\u{1D17A}'
                    | '\u{E0000}'..='\u{E0FFF}'
            )
    })
}

/// Characters that show nothing in a name: zero-width spaces, the soft hyphen,
/// word joiners, direction marks and embeddings, variation selectors and the
/// byte-order mark. Not the joiners that change how a word or an emoji sequence
/// looks (U+200C, U+200D), nor tag characters (which make flags).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
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
mod tests {
    use super::*;

    #[test]
    fn names_that_look_the_same_are_lookalikes() {
        let work = lookalike("Work");
        for same in [
            "work",
            " WORK ",
            "\u{FF37}\u{FF4F}\u{FF52}\u{FF4B}",
            "wo\u{200B}rk",
            "\u{FEFF}Work\u{00AD}",
        ] {
            assert_eq!(lookalike(same), work, "{same:?}");
        }
        assert_eq!(lookalike("Work  Team"), lookalike(" work\tteam"));
        assert_ne!(lookalike("Work Team"), lookalike("WorkTeam"));
        assert_eq!(lookalike("Cafe\u{301}"), lookalike("CAFÉ"));
        assert_eq!(lookalike("ΟΔΟΣ"), lookalike("Οδος"));
        assert_eq!(lookalike("Work\u{200E}"), work);
        // What shows otherwise stays apart: a superscript, a non-joiner, a flag.
        assert_ne!(lookalike("Floor 2"), lookalike("Floor \u{B2}"));
        assert_ne!(
            lookalike("\u{645}\u{6CC}\u{200C}\u{62E}"),
            lookalike("\u{645}\u{6CC}\u{62E}")
        );
        assert_ne!(
            lookalike("\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}"),
            lookalike("\u{1F3F4}")
        );
        // The joiner of an emoji sequence is kept: the family is not three people.
        assert_ne!(
            lookalike("\u{1F468}\u{200D}\u{1F469}"),
            lookalike("\u{1F468}\u{1F469}")
        );
        assert!(is_blank("") && is_blank(" \u{200B}\t\u{FEFF}\u{200D}\u{200F}"));
        for blank in [
            "\u{200C}",
            "\u{E0041}",
            "\u{3164}",
            "\u{115F}",
            "\u{FFA0}",
            "\u{2800}",
            "\u{1D173}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        assert!(!is_blank("\u{200B}a"));
    }

    #[test]
    fn extra_empty_is_one_pointer_and_equal_however_held() {
        assert_eq!(size_of::<Extra>(), size_of::<usize>());
        let mut e = Extra::new(Vec::new(), vec![Element::new("urn:example:ext", "x")]);
        assert!(e.0.is_some() && !e.is_empty());
        // Emptied through `edit`: nothing stays allocated, and it equals (orders and
        // hashes as) an extra that never held anything.
        e.edit(|_, children| children.clear());
        assert!(e.0.is_none());
        let held_empty = Extra(Some(Box::default()));
        assert_eq!(held_empty, Extra::default());
        assert_eq!(held_empty.cmp(&Extra::default()), std::cmp::Ordering::Equal);
        let hash = |e: &Extra| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(e)
        };
        assert_eq!(hash(&held_empty), hash(&Extra::default()));
        // `absorb` of nothing allocates nothing.
        let mut f = Extra::default();
        f.absorb(&held_empty);
        assert!(f.0.is_none());
    }

    // Listings 1-3 of XEP-0510 (seeds/000), as printed there.
    const LISTING_1: &str = "<publish node='urn:xmpp:contacts'>
  <item id='a1b2c3d4'>
    <contact xmlns='urn:xmpp:contacts:0' name='Juliet_Capulet'>
      <identity type='jid'>juliet@example.org</identity>
      <group id='grp-789' />
      <group id='grp-123' />
    </contact>
  </item>
</publish>";
    const LISTING_2: &str = "<publish node='urn:xmpp:contacts-groups'>
      <item id='grp-789'>
        <group xmlns='urn:xmpp:contacts:0' id='grp-789' name='Friends'
          />
      </item>
    </publish>";
    const LISTING_3: &str = "<publish node='urn:xmpp:contacts'>
      <item id='a1b2c3d5'>
        <reserved xmlns='urn:xmpp:contacts:0' />
      </item>
    </publish>";
    const SEED_GROUP: &str = "<group xmlns='urn:xmpp:contacts:0' id='grp-789' name='Friends'>\
        <description>Close friends and family</description></group>";

    fn item_payload(listing: &str) -> Payload {
        let publish = Element::parse(listing, xml::Limits::ITEM).expect("listing parses");
        let item = publish.elements().next().expect("one item");
        Payload::from_element(item.elements().next().expect("one payload")).expect("valid payload")
    }

    #[test]
    fn parses_the_xep_listings() {
        let Payload::Contact(c) = item_payload(LISTING_1) else {
            panic!("not a contact")
        };
        assert_eq!(c.name.as_deref(), Some("Juliet_Capulet"));
        assert_eq!(c.identities[0].value, "juliet@example.org");
        let ids: Vec<_> = c.groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(ids, ["grp-789", "grp-123"]);
        let Payload::Group(g) = item_payload(LISTING_2) else {
            panic!("not a group")
        };
        assert_eq!((g.id.as_str(), g.name.as_str()), ("grp-789", "Friends"));
        assert!(matches!(item_payload(LISTING_3), Payload::Reserved(e) if e.is_empty()));
        let Payload::Group(g) = Payload::parse(SEED_GROUP).expect("group") else {
            panic!("not a group")
        };
        assert_eq!(g.description.as_deref(), Some("Close friends and family"));
        assert_eq!(
            Payload::parse(&g_xml(&g)).expect("round trip"),
            Payload::Group(g)
        );
    }

    fn g_xml(g: &Group) -> String {
        Payload::Group(g.clone()).to_xml()
    }

    #[test]
    fn keeps_unknown_attributes_and_children() {
        let src = "<contact xmlns='urn:xmpp:contacts:0' xmlns:x='urn:example' name='A' x:mood='ok'>\
            <identity type='jid' x:verified='yes'>A@Example.org</identity>\
            <identity type='fingerprint'>ABCD</identity>\
            <x:note lang='en'>likes tea</x:note>\
            <group id='g1' x:pos='2'/></contact>";
        let p = Payload::parse(src).expect("valid");
        let again = Payload::parse(&p.to_xml()).expect("own output");
        assert_eq!(p, again);
        let Payload::Contact(c) = &p else { panic!() };
        assert_eq!(c.identities[0].value, "a@example.org");
        assert_eq!(c.extra.attrs()[0].name, "mood");
        assert_eq!(c.extra.children()[0].name, "note");
        assert_eq!(c.identities[0].extra.attrs()[0].name, "verified");
        assert_eq!(c.groups[0].extra.attrs()[0].name, "pos");
        let group = "<group xmlns='urn:xmpp:contacts:0' id='g' name='n' color='red'>\
            <description xml:lang='de'>Freunde</description><icon xmlns='urn:i'/></group>";
        let g = Payload::parse(group).expect("valid");
        assert_eq!(Payload::parse(&g.to_xml()).expect("own output"), g);
    }

    #[test]
    fn rejects_each_class_of_bad_payload() {
        let e = |s: &str| Payload::parse(s).expect_err("must be rejected");
        assert!(matches!(e("<contact"), Error::Xml(_)));
        assert!(matches!(
            e("<contact xmlns='urn:other'/>"),
            Error::WrongNamespace(_)
        ));
        assert!(matches!(
            e("<person xmlns='urn:xmpp:contacts:0'/>"),
            Error::UnknownElement(_)
        ));
        assert_eq!(
            e("<contact xmlns='urn:xmpp:contacts:0' name='x'/>"),
            Error::NoIdentity
        );
        assert_eq!(
            e("<contact xmlns='urn:xmpp:contacts:0'><identity>a@b</identity></contact>"),
            Error::IdentityWithoutType
        );
        assert!(matches!(
            e("<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'>@b</identity></contact>"),
            Error::InvalidJid(_)
        ));
        assert!(matches!(
            e("<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'> </identity></contact>"),
            Error::EmptyIdentity(_)
        ));
        assert_eq!(
            e("<group xmlns='urn:xmpp:contacts:0' name='x'/>"),
            Error::GroupWithoutId
        );
        assert!(matches!(
            e("<group xmlns='urn:xmpp:contacts:0' id='x'/>"),
            Error::GroupWithoutName(_)
        ));
        let many: String = (0..=MAX_IDENTITIES)
            .map(|i| format!("<identity type='jid'>u{i}@x.lit</identity>"))
            .collect();
        assert_eq!(
            e(&format!(
                "<contact xmlns='urn:xmpp:contacts:0'>{many}</contact>"
            )),
            Error::TooManyIdentities {
                max: MAX_IDENTITIES
            }
        );
        let groups: String = (0..=MAX_GROUP_REFS)
            .map(|i| format!("<group id='{i}'/>"))
            .collect();
        let c = format!(
            "<contact xmlns='urn:xmpp:contacts:0'><identity type='jid'>a@b</identity>{groups}</contact>"
        );
        assert_eq!(
            Payload::parse(&c),
            Err(Error::TooManyGroups {
                max: MAX_GROUP_REFS
            })
        );
        let deep = format!(
            "<contact xmlns='urn:xmpp:contacts:0'>{}{}</contact>",
            "<x>".repeat(10),
            "</x>".repeat(10)
        );
        assert!(matches!(e(&deep), Error::Xml(xml::Error::TooDeep { .. })));
        assert_eq!(
            Payload::parse(SEED_GROUP)
                .expect("valid")
                .check_node(NodeKind::Contacts),
            Err(Error::WrongNode {
                element: "group",
                node: NodeKind::Contacts
            })
        );
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            // Printable text with XML's special characters, no leading/trailing space
            // (identity values are trimmed).
            "[a-zA-Z0-9<>&'\" .é]{0,12}[a-zA-Z0-9<>&'\"é]"
        }

        fn contact() -> impl Strategy<Value = Contact> {
            (
                proptest::option::of(text()),
                prop::collection::vec(("[a-z]{1,6}", "[a-z]{1,6}"), 1..4),
                prop::collection::btree_set("[a-z0-9-]{1,8}", 0..4),
                prop::collection::vec(("[a-z]{1,5}", text()), 0..3),
                any::<Option<(u64, u8)>>(),
            )
                .prop_map(|(name, ids, groups, extra, stamped)| {
                    let mut c = Contact {
                        name,
                        identities: ids
                            .into_iter()
                            .map(|(l, d)| {
                                Identity::new("jid", &format!("{l}@{d}.lit")).expect("valid JID")
                            })
                            .fold(Vec::new(), |mut v, i| {
                                if !v.iter().any(|x: &Identity| x.key() == i.key()) {
                                    v.push(i);
                                }
                                v
                            }),
                        groups: groups
                            .into_iter()
                            .map(|id| GroupRef {
                                id,
                                extra: Extra::default(),
                            })
                            .collect(),
                        extra: Extra::new(
                            Vec::new(),
                            extra
                                .into_iter()
                                .map(|(n, t)| {
                                    let mut e = Element::new("urn:example:ext", &n);
                                    e.push_text(t);
                                    e
                                })
                                .collect(),
                        ),
                        stamps: None,
                    };
                    if let Some((ms, d)) = stamped {
                        // Stamped as kith's own edit would stamp it.
                        let v = crate::record::Version {
                            hlc: crate::clock::Hlc {
                                wall_ms: ms,
                                counter: 0,
                            },
                            device: crate::record::DeviceId([d; 32]),
                        };
                        let mut state =
                            fields::State::of(&c, v).expect("an unstamped contact reads");
                        state.contact_id =
                            Some(format!("{:032x}", u128::from(ms) << 8 | u128::from(d)));
                        state.attach(&mut c, v);
                    }
                    c
                })
        }

        proptest! {
            #[test]
            fn contact_xml_round_trips(c in contact()) {
                let p = Payload::Contact(c);
                prop_assert_eq!(Payload::parse(&p.to_xml()), Ok(p));
            }

            #[test]
            fn group_xml_round_trips(id in "[a-z0-9-]{1,10}", name in text(), description in proptest::option::of(text())) {
                let p = Payload::Group(Group { id, name, description, extra: Extra::default() });
                prop_assert_eq!(Payload::parse(&p.to_xml()), Ok(p));
            }

            #[test]
            fn parsing_garbage_never_panics(s in "\\PC{0,300}") {
                let _ = Payload::parse(&s);
            }

            #[test]
            fn parsing_near_xml_never_panics(s in "[<>/a-z='\" &;#x0-9:!\\[\\]-]{0,200}") {
                let _ = Payload::parse(&s);
            }
        }
    }
}
