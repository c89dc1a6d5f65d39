//! A small, namespace-aware XML element tree on top of quick-xml, with hard limits.
//!
//! This module owns parsing untrusted XML into [`Element`] and writing it back. Every
//! other XML format in kith (XEP-0510 items, XEP-0473 `<encrypted/>`, XEP-0373
//! `<signcrypt/>`, rosters) is read through here, so the limits below bound all of
//! them: input size, nesting depth and element count. DOCTYPE declarations are
//! refused (no entity expansion), and only the five predefined entities and character
//! references are understood.
//!
//! The tree keeps what an extensible format needs to survive a round trip: every
//! element and attribute with its namespace, and text. It does not keep comments,
//! processing instructions, prefixes as written, or whitespace between elements.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// The XML namespace bound to the `xml:` prefix by definition.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Limits applied while parsing; each has a typed error when exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest element nesting accepted (the root is depth 1).
    pub max_depth: usize,
    /// Most elements accepted in one document.
    pub max_elements: usize,
}

impl Limits {
    /// Limits for one XEP-0510 item payload: 16 KiB, depth 8, 512 elements.
    pub const ITEM: Self = Self {
        max_bytes: 16 * 1024,
        max_depth: 8,
        max_elements: 512,
    };
    /// Limits for documents a user imports (rosters, metacontacts): 128 MiB, depth 8,
    /// 4,000,000 elements (a roster of a million entries with a group each).
    pub const IMPORT: Self = Self {
        max_bytes: 128 * 1024 * 1024,
        max_depth: 8,
        max_elements: 4_000_000,
    };
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than [`Limits::max_bytes`].
    #[error("XML input is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("XML nests deeper than the limit of {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// More elements than [`Limits::max_elements`].
    #[error("XML has more than the limit of {max} elements")]
    TooManyElements {
        /// The limit.
        max: usize,
    },
    /// The input is not well-formed XML.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A DOCTYPE declaration, refused so that no entity can be defined.
    #[error("XML with a DOCTYPE declaration is refused")]
    Doctype,
    /// An entity other than the five predefined ones.
    #[error("unknown XML entity &{0};")]
    UnknownEntity(String),
    /// A prefix that no namespace declaration binds.
    #[error("unbound XML namespace prefix in {0:?}")]
    UnboundPrefix(String),
    /// No root element.
    #[error("XML input has no element")]
    Empty,
    /// Something other than whitespace, comments or processing instructions after
    /// the root element.
    #[error("XML input has content after the root element")]
    TrailingContent,
}

/// Namespaces and names kith reads often, shared instead of copied for every
/// element (parsing a contact allocates about half as much).
const INTERNED: &[&str] = &[
    // First: the namespace of every unqualified attribute.
    "",
    "urn:xmpp:contacts:0",
    "urn:xmpp:openpgp:pubsub:0",
    "urn:xmpp:openpgp:0",
    "jabber:iq:roster",
    "storage:metacontacts",
    "contact",
    "identity",
    "group",
    "reserved",
    "description",
    "encrypted",
    "item",
    "meta",
    "type",
    "id",
    "name",
    "jid",
    "key",
    "tag",
    "order",
    // kith's field stamps, in every contact it writes (`item::fields`).
    "urn:kith:fields:0",
    "fields",
    "device",
    "stamps",
    "marks",
    "seen",
    "gone",
    "lost",
    "at",
    "winner",
    "mark",
    "kind",
];

/// A shared copy of `s` when it is one of the [`INTERNED`] strings.
fn intern(s: &str) -> Cow<'static, str> {
    match INTERNED.iter().find(|i| **i == s) {
        Some(i) => Cow::Borrowed(i),
        None => Cow::Owned(s.to_owned()),
    }
}

/// A node in an element's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
}

/// An attribute with its namespace (empty for the usual unqualified attribute).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attr {
    /// Namespace URI, or empty when the attribute has no prefix.
    pub ns: Cow<'static, str>,
    /// Local name.
    pub name: Cow<'static, str>,
    /// Unescaped, normalised value.
    pub value: String,
}

/// An element: namespace, local name, attributes in document order, and content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Element {
    /// Namespace URI, or empty when unbound.
    pub ns: Cow<'static, str>,
    /// Local name.
    pub name: Cow<'static, str>,
    /// Attributes, namespace declarations excluded.
    pub attrs: Vec<Attr>,
    /// Child elements and text.
    pub children: Vec<Node>,
}

impl Element {
    /// A new element with no attributes or children.
    pub fn new(ns: &str, name: &str) -> Self {
        Self {
            ns: intern(ns),
            name: intern(name),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Whether this element has the given namespace and local name.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The value of the unqualified attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// Sets (or replaces) the unqualified attribute `name`.
    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .attrs
            .iter_mut()
            .find(|a| a.ns.is_empty() && a.name == name)
        {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr {
                ns: Cow::Borrowed(""),
                name: intern(name),
                value,
            }),
        }
    }

    /// Builder form of [`Element::set_attr`].
    #[must_use]
    pub fn with_attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Appends a child element.
    pub fn push(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Appends text.
    pub fn push_text(&mut self, text: impl Into<String>) {
        self.children.push(Node::Text(text.into()));
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// All text directly inside this element, concatenated.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Parses one element from `input`, enforcing `limits`.
    pub fn parse(input: &str, limits: Limits) -> Result<Self, Error> {
        parse(input, limits)
    }

    /// Serialises this element with its namespace declared on it.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        write_element(&mut out, self, None);
        out
    }
}

fn malformed(e: impl std::fmt::Display) -> Error {
    Error::Malformed(e.to_string())
}

fn resolved_ns(r: ResolveResult<'_>, qname: &str) -> Result<Cow<'static, str>, Error> {
    match r {
        ResolveResult::Unbound => Ok(Cow::Borrowed("")),
        ResolveResult::Bound(ns) => {
            // A namespace name is an attribute value: references resolved and
            // whitespace normalised like any other (the fuzzer found `&#9;` kept
            // raw here, read back as a tab after a round trip).
            let decl = quick_xml::events::attributes::Attribute {
                key: quick_xml::name::QName("xmlns"),
                value: Cow::Borrowed(ns.0),
            };
            let value = decl
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(malformed)?;
            Ok(intern(&value))
        }
        ResolveResult::Unknown(_) => Err(Error::UnboundPrefix(qname.to_owned())),
    }
}

/// Whether `name` can be an element or attribute (local) name: quick-xml lets
/// through names XML does not allow, such as the empty one in `<\t/>` (found by the
/// `xml_items` fuzz target), which would not read back once written.
fn is_name(name: &str) -> bool {
    // The usual name, all ASCII, read a byte at a time (each byte is a char).
    if name.is_ascii() {
        let bytes = name.as_bytes();
        return bytes
            .first()
            .is_some_and(|b| !b.is_ascii_digit() && !b"-.".contains(b))
            && bytes.iter().all(|&b| ASCII_NAME_CHAR[usize::from(b)]);
    }
    is_name_by_chars(name)
}

/// [`is_name`] for any text, a character at a time.
fn is_name_by_chars(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let name_char =
        |c: char| !c.is_whitespace() && !c.is_control() && !"<>&/=\"'!?:;,()[]{}".contains(c);
    name_char(first) && !first.is_ascii_digit() && !"-.".contains(first) && chars.all(name_char)
}

/// Which ASCII characters [`is_name`] lets into a name: graphic ones, but for the
/// punctuation [`is_name_by_chars`] refuses.
const ASCII_NAME_CHAR: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = true;
        b += 1;
    }
    let refused = b"<>&/=\"'!?:;,()[]{}";
    let mut i = 0;
    while i < refused.len() {
        table[refused[i] as usize] = false;
        i += 1;
    }
    table
};

fn predefined_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "apos" => "'",
        "quot" => "\"",
        _ => return None,
    })
}

fn parse(input: &str, limits: Limits) -> Result<Element, Error> {
    if input.len() > limits.max_bytes {
        return Err(Error::TooLarge {
            len: input.len(),
            max: limits.max_bytes,
        });
    }
    let mut reader = NsReader::from_str(input);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut elements = 0usize;

    loop {
        let (ns, event) = reader.read_resolved_event().map_err(malformed)?;
        let ns = match event {
            Event::Start(ref e) | Event::Empty(ref e) => Some(resolved_ns(ns, e.name().0)?),
            _ => None,
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(Error::TrailingContent);
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(Error::TooManyElements {
                        max: limits.max_elements,
                    });
                }
                if stack.len() + 1 > limits.max_depth {
                    return Err(Error::TooDeep {
                        max: limits.max_depth,
                    });
                }
                let name = start.local_name();
                let name: &str = name.as_ref();
                if !is_name(name) {
                    return Err(malformed(format!("{name:?} is not an element name")));
                }
                let mut el = Element {
                    ns: ns.unwrap_or_default(),
                    name: intern(name),
                    attrs: Vec::new(),
                    children: Vec::new(),
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(malformed)?;
                    if attr.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (ans, local) = reader.resolver().resolve_attribute(attr.key);
                    if !is_name(local.as_ref()) {
                        return Err(malformed("an attribute without a proper name"));
                    }
                    let ans = resolved_ns(ans, attr.key.0)?;
                    let value = attr
                        .normalized_value(XmlVersion::Implicit1_0)
                        .map_err(malformed)?;
                    xml_chars(&value)?;
                    el.attrs.push(Attr {
                        ns: ans,
                        name: intern(local.as_ref()),
                        value: value.into_owned(),
                    });
                }
                if matches!(event, Event::Empty(_)) {
                    close(&mut stack, &mut root, el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                // check_end_names guarantees a matching open element here.
                let el = stack.pop().ok_or_else(|| malformed("unmatched end tag"))?;
                close(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                push_text(&mut stack, &root, &text)?;
            }
            Event::CData(c) => {
                let text = c.xml10_content();
                push_text(&mut stack, &root, &text)?;
            }
            Event::GeneralRef(r) => {
                let text = if r.is_char_ref() {
                    match r.resolve_char_ref().map_err(malformed)? {
                        Some(c) => c.to_string(),
                        None => return Err(malformed("bad character reference")),
                    }
                } else {
                    let name = r.xml10_content();
                    predefined_entity(&name)
                        .ok_or_else(|| Error::UnknownEntity(name.to_string()))?
                        .to_owned()
                };
                push_text(&mut stack, &root, &text)?;
            }
            Event::DocType(_) => return Err(Error::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element"));
    }
    root.ok_or(Error::Empty)
}

/// Whether `s` holds no control character but tab, newline and carriage return
/// (quick-xml lets others through, and character references to them, such as
/// `&#x1b;`), and neither U+FFFE nor U+FFFF. XML 1.0 forbids C0 controls and the
/// two non-characters; it allows DEL and the C1 controls (U+007F..U+009F) but
/// discourages them, and kith refuses them too: no name or address needs one, and
/// a terminal acts on some of them.
fn xml_chars(s: &str) -> Result<(), Error> {
    match s.chars().find(|c| {
        c.is_control() && !matches!(c, '\t' | '\n' | '\r') || matches!(*c as u32, 0xFFFE | 0xFFFF)
    }) {
        Some(c) if c.is_control() => Err(malformed(format!(
            "control character U+{:04X} (only tab, newline and carriage return are accepted)",
            c as u32
        ))),
        Some(c) => Err(malformed(format!(
            "character U+{:04X} is not allowed in XML",
            c as u32
        ))),
        None => Ok(()),
    }
}

fn push_text(stack: &mut [Element], root: &Option<Element>, text: &str) -> Result<(), Error> {
    xml_chars(text)?;
    match stack.last_mut() {
        Some(parent) => {
            if let Some(Node::Text(prev)) = parent.children.last_mut() {
                prev.push_str(text);
            } else {
                parent.children.push(Node::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None if root.is_some() => Err(Error::TrailingContent),
        None => Err(malformed("text outside the root element")),
    }
}

fn close(stack: &mut [Element], root: &mut Option<Element>, mut el: Element) {
    // Whitespace between child elements carries no meaning in these formats.
    if el.children.iter().any(|n| matches!(n, Node::Element(_))) {
        el.children
            .retain(|n| !matches!(n, Node::Text(t) if t.trim().is_empty()));
    }
    // Pushed one by one, they have room for more: a parsed element may be held for
    // as long as its item lives (the stamps of every contact a device holds).
    el.attrs.shrink_to_fit();
    el.children.shrink_to_fit();
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}

fn escape_into(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' if attr => out.push_str("&apos;"),
            '"' if attr => out.push_str("&quot;"),
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn write_element(out: &mut String, el: &Element, parent_ns: Option<&str>) {
    out.push('<');
    out.push_str(&el.name);
    if parent_ns != Some(el.ns.as_ref()) && !(parent_ns.is_none() && el.ns.is_empty()) {
        out.push_str(" xmlns='");
        escape_into(out, &el.ns, true);
        out.push('\'');
    }
    let mut prefixes: Vec<&str> = Vec::new();
    for a in &el.attrs {
        out.push(' ');
        if a.ns == XML_NS {
            out.push_str("xml:");
        } else if !a.ns.is_empty() {
            let i = match prefixes.iter().position(|p| *p == a.ns) {
                Some(i) => i,
                None => {
                    prefixes.push(a.ns.as_ref());
                    let i = prefixes.len() - 1;
                    // Writing to a String cannot fail.
                    let _ = write!(out, "xmlns:ns{i}='");
                    escape_into(out, &a.ns, true);
                    out.push_str("' ");
                    i
                }
            };
            let _ = write!(out, "ns{i}:");
        }
        out.push_str(&a.name);
        out.push_str("='");
        escape_into(out, &a.value, true);
        out.push('\'');
    }
    if el.children.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for n in &el.children {
        match n {
            Node::Element(c) => write_element(out, c, Some(el.ns.as_ref())),
            Node::Text(t) => escape_into(out, t, false),
        }
    }
    out.push_str("</");
    out.push_str(&el.name);
    out.push('>');
}

#[cfg(test)]
mod tests;
