//! The stamps element as a contact holds it ([`Stamps`]): compact, because every
//! device keeps every contact it reads for as long as the item lives.
//!
//! A parsed XML element is a tree of a dozen allocations (its attributes, the
//! `<device/>` children and their text); held in every contact it was two thirds of
//! a contact's memory. [`Stamps`] keeps the element as its XML text, in one
//! allocation, and the contact id and aliases beside it, already checked, since the
//! view reads them for every item it indexes ([`super::links`]). The merge reads
//! the element back ([`Stamps::element`]) only when it needs the marks.

use std::fmt;

use super::ids::{MAX_ALIASES, valid_id};
use crate::xml::{self, Element};

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

/// A contact's stamps element (`<fields xmlns='urn:kith:fields:0'/>`), held compactly:
/// its contact id and aliases checked and inline, the rest of it as XML text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Stamps {
    /// The `contact` attribute, when it is a contact id (else it stays in `rest`, and
    /// reading the stamps refuses it).
    contact: Option<HexId>,
    /// The contact ids of the `aliases` attribute, in order, at most [`MAX_ALIASES`].
    aliases: Box<[HexId]>,
    /// The element without the attributes held above, as XML. When the `aliases`
    /// attribute holds anything but up to [`MAX_ALIASES`] contact ids, it is kept
    /// here as it was, so that reading the stamps refuses it as before.
    rest: Box<str>,
}

impl Stamps {
    /// Holds `el` (a stamps element) compactly.
    pub fn from_element(el: &Element) -> Self {
        let mut rest = el.clone();
        let contact = el.attr("contact").and_then(HexId::new);
        if contact.is_some() {
            rest.attrs
                .retain(|a| !(a.ns.is_empty() && a.name == "contact"));
        }
        let mut aliases = Vec::new();
        if let Some(list) = el.attr("aliases") {
            let mut clean = true;
            for id in list.split_ascii_whitespace() {
                match HexId::new(id) {
                    Some(h) if aliases.len() < MAX_ALIASES => aliases.push(h),
                    Some(_) => clean = false,
                    None => clean = false,
                }
            }
            if clean {
                rest.attrs
                    .retain(|a| !(a.ns.is_empty() && a.name == "aliases"));
            }
        }
        Self {
            contact,
            aliases: aliases.into_boxed_slice(),
            rest: rest.to_xml().into_boxed_str(),
        }
    }

    /// The element as it was read (the attributes held apart come first).
    pub fn element(&self) -> Result<Element, xml::Error> {
        let mut el = Element::parse(&self.rest, xml::Limits::ITEM)?;
        let mut front = Vec::new();
        if let Some(c) = &self.contact {
            front.push(("contact", c.as_str().to_owned()));
        }
        if !self.aliases.is_empty() && el.attr("aliases").is_none() {
            let list: Vec<&str> = self.aliases.iter().map(HexId::as_str).collect();
            front.push(("aliases", list.join(" ")));
        }
        if !front.is_empty() {
            let mut attrs = Vec::with_capacity(front.len() + el.attrs.len());
            for (name, value) in front {
                attrs.push(xml::Attr {
                    ns: "".into(),
                    name: name.into(),
                    value,
                });
            }
            attrs.append(&mut el.attrs);
            el.attrs = attrs;
        }
        Ok(el)
    }

    /// The contact id, when the element carries a valid one.
    pub fn contact_id(&self) -> Option<&str> {
        self.contact.as_ref().map(HexId::as_str)
    }

    /// The valid contact ids of the `aliases` attribute, in order, at most
    /// [`MAX_ALIASES`].
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(HexId::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::fields::NS;

    fn el(attrs: &str) -> Element {
        Element::parse(
            &format!(
                "<fields xmlns='{NS}' {attrs} stamps='1.0.0' marks='0'><device>ab</device></fields>"
            ),
            xml::Limits::ITEM,
        )
        .expect("parses")
    }

    #[test]
    fn the_element_reads_back_as_it_was() {
        let id = "0123456789abcdef0123456789abcdef";
        let alias = "fedcba9876543210fedcba9876543210";
        for attrs in [
            String::new(),
            format!("contact='{id}'"),
            format!("contact='{id}' aliases='{alias} {id}'"),
            format!("contact='NOT-AN-ID' aliases='{alias} junk'"),
            format!("aliases='{}'", vec![alias; MAX_ALIASES + 1].join(" ")),
        ] {
            let e = el(&attrs);
            let s = Stamps::from_element(&e);
            assert_eq!(s.element().expect("reads"), e, "{attrs}");
        }
    }

    #[test]
    fn only_valid_ids_are_held_apart() {
        let id = "0123456789abcdef0123456789abcdef";
        let s = Stamps::from_element(&el(&format!("contact='{id}' aliases='{id} x'")));
        assert_eq!(s.contact_id(), Some(id));
        assert_eq!(s.aliases().collect::<Vec<_>>(), vec![id]);
        let s = Stamps::from_element(&el("contact='0123'"));
        assert_eq!(s.contact_id(), None);
        assert!(s.rest.contains("contact='0123'"));
    }
}
