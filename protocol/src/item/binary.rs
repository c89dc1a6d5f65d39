//! A compact binary form of payloads, for caches that must be read back faster than
//! XML parses (the node's item index): length-prefixed fields in a fixed order,
//! unknown children kept as their XML. Reading is strict: anything malformed or over
//! the item limits is `None`, and the caller reads the item from its record instead.
//!
//! ```text
//! payload:  0x01 (format) kind:u8 body
//! contact:  name:opt-str  n:u16 (kind:str value:str extra)*n  n:u16 (id:str extra)*n  extra
//! group:    id:str name:str description:opt-str extra
//! reserved: extra
//! extra:    n:u16 (ns:str name:str value:str)*n  n:u16 (xml:str)*n
//!           (a contact's stamps element is written as the last child of its extra;
//!           reading finds it wherever it is, and two of them read as `None`)
//! str:      len:u32 utf-8;  opt-str: 0 | 1 str
//! ```

use std::borrow::Cow;

use super::{Contact, Extra, Group, GroupRef, Identity, MAX_GROUP_REFS, MAX_IDENTITIES, Payload};
use crate::xml::{self, Attr, Element};

const FORMAT: u8 = 1;
/// Largest encoding read back: an item's XML is at most 16 KiB, its binary form less.
const MAX_BYTES: usize = xml::Limits::ITEM.max_bytes * 2;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n.min(usize::from(u16::MAX)) as u16).to_be_bytes());
}

fn put_extra(out: &mut Vec<u8>, e: &Extra) {
    put_extra_and(out, e, None);
}

/// `e`, with `last` written as one more child (a contact's stamps: the format keeps
/// them among the unknown children, last, where the XML has them when written).
fn put_extra_and(out: &mut Vec<u8>, e: &Extra, last: Option<&Element>) {
    put_count(out, e.attrs().len());
    for a in e.attrs().iter().take(usize::from(u16::MAX)) {
        put_str(out, &a.ns);
        put_str(out, &a.name);
        put_str(out, &a.value);
    }
    let max = usize::from(u16::MAX) - usize::from(last.is_some());
    put_count(
        out,
        e.children().len().min(max) + usize::from(last.is_some()),
    );
    for c in e.children().iter().take(max) {
        put_str(out, &c.to_xml());
    }
    if let Some(c) = last {
        put_str(out, &c.to_xml());
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn count(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn str(&mut self) -> Option<String> {
        let b = self.take(4)?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        std::str::from_utf8(self.take(n)?).ok().map(str::to_owned)
    }

    fn opt(&mut self) -> Option<Option<String>> {
        match self.byte()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }

    fn extra(&mut self) -> Option<Extra> {
        let (attrs, children) = self.unknown()?;
        Some(Extra::new(attrs, children))
    }

    /// [`Self::extra`]'s attributes and children, not yet an [`Extra`].
    fn unknown(&mut self) -> Option<(Vec<Attr>, Vec<Element>)> {
        let n = self.count()?;
        let mut attrs = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            attrs.push(Attr {
                ns: Cow::Owned(self.str()?),
                name: Cow::Owned(self.str()?),
                value: self.str()?,
            });
        }
        let n = self.count()?;
        let mut children = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            children.push(Element::parse(&self.str()?, xml::Limits::ITEM).ok()?);
        }
        Some((attrs, children))
    }
}

impl Payload {
    /// The compact binary form (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(FORMAT);
        match self {
            Payload::Contact(c) => {
                out.push(0);
                put_opt(&mut out, c.name.as_deref());
                put_count(&mut out, c.identities.len());
                for i in &c.identities {
                    put_str(&mut out, &i.kind);
                    put_str(&mut out, &i.value);
                    put_extra(&mut out, &i.extra);
                }
                put_count(&mut out, c.groups.len());
                for g in &c.groups {
                    put_str(&mut out, &g.id);
                    put_extra(&mut out, &g.extra);
                }
                let stamps = c.stamps.as_ref().map(super::fields::Stamps::element);
                put_extra_and(&mut out, &c.extra, stamps.as_ref());
            }
            Payload::Group(g) => {
                out.push(1);
                put_str(&mut out, &g.id);
                put_str(&mut out, &g.name);
                put_opt(&mut out, g.description.as_deref());
                put_extra(&mut out, &g.extra);
            }
            Payload::Reserved(e) => {
                out.push(2);
                put_extra(&mut out, e);
            }
        }
        out
    }

    /// Reads what [`Payload::to_bytes`] wrote; `None` for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_BYTES {
            return None;
        }
        let mut r = Reader(bytes);
        if r.byte()? != FORMAT {
            return None;
        }
        let payload = match r.byte()? {
            0 => {
                let name = r.opt()?;
                let n = r.count()?;
                if n == 0 || n > MAX_IDENTITIES {
                    return None;
                }
                let mut identities = Vec::with_capacity(n);
                for _ in 0..n {
                    identities.push(Identity {
                        kind: Identity::held_kind(r.str()?),
                        value: r.str()?,
                        extra: r.extra()?,
                    });
                }
                let n = r.count()?;
                if n > MAX_GROUP_REFS {
                    return None;
                }
                let mut groups = Vec::with_capacity(n);
                for _ in 0..n {
                    groups.push(GroupRef {
                        id: r.str()?,
                        extra: r.extra()?,
                    });
                }
                let (attrs, children) = r.unknown()?;
                let (extra, stamps) = super::parse::extra_and_stamps(attrs, children).ok()?;
                Payload::Contact(Contact {
                    name,
                    identities,
                    groups,
                    extra,
                    stamps,
                })
            }
            1 => Payload::Group(Group {
                id: r.str()?,
                name: r.str()?,
                description: r.opt()?,
                extra: r.extra()?,
            }),
            2 => Payload::Reserved(r.extra()?),
            _ => return None,
        };
        r.0.is_empty().then_some(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payloads() -> impl Strategy<Value = String> {
        let name = "[A-Za-z &<>é]{0,12}";
        prop_oneof![
            (
                name,
                "[a-z]{1,8}",
                prop::collection::vec("g-[0-9a-f]{4}", 0..4),
                any::<bool>()
            )
                .prop_map(|(n, local, groups, extra)| {
                    let groups: String = groups
                        .iter()
                        .map(|g| format!("<group id='{g}'/>"))
                        .collect();
                    let x = if extra {
                        "<x xmlns='urn:ex' a='1'>t<y/></x>"
                    } else {
                        ""
                    };
                    format!(
                        "<contact xmlns='urn:xmpp:contacts:0' u='v'><name>{}</name>\
                         <identity type='jid'>{local}@x.lit</identity>\
                         <identity type='tel' q='1'>+1</identity>{groups}{x}</contact>",
                        n.replace('&', "&amp;")
                            .replace('<', "&lt;")
                            .replace('>', "&gt;")
                    )
                }),
            ("g-[0-9a-f]{4}", "[A-Za-z ]{1,12}", any::<bool>()).prop_map(|(id, n, d)| {
                let d = if d {
                    "<description>about</description>"
                } else {
                    ""
                };
                format!("<group xmlns='urn:xmpp:contacts:0' id='{id}' name='{n}'>{d}</group>")
            }),
            Just("<reserved xmlns='urn:xmpp:contacts:0'/>".to_owned()),
        ]
    }

    proptest! {
        #[test]
        fn payloads_round_trip_through_bytes(xml in payloads()) {
            let p = Payload::parse(&xml).expect("valid payload");
            prop_assert_eq!(Payload::from_bytes(&p.to_bytes()), Some(p));
        }

        #[test]
        fn any_bytes_read_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Payload::from_bytes(&bytes);
        }
    }
}
