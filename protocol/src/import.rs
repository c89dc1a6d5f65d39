//! Import as pure functions (the way out is [`crate::export`]).
//!
//! * [`roster`]: an RFC 6121 roster (`<query xmlns='jabber:iq:roster'>`, alone or in
//!   an `<iq/>`) → contacts with names and group names. Items with
//!   `subscription='remove'` are skipped.
//! * [`metacontacts`]: XEP-0209 (`<storage xmlns='storage:metacontacts'>`, alone or
//!   inside `jabber:iq:private` / an `<iq/>`) → members sharing a `tag` become one
//!   contact with several identities, higher `order` first, unordered members last,
//!   ties in document order.
//!
//! Imported contacts carry group *names* in [`crate::item::GroupRef::id`];
//! [`Imported::to_payloads`] assigns random group ids, and
//! [`crate::contacts::Command::Import`] resolves names against existing groups.
//! A bad entry makes the whole import fail with an error naming it: nothing is
//! half-imported.

use std::collections::BTreeMap;

use rand_core::CryptoRng;

use crate::item::{self, Contact, Extra, Group, GroupRef, Identity, Payload};
use crate::jid::{self, BareJid};
use crate::xml::{self, Element};

/// RFC 6121 roster namespace.
pub const ROSTER_NS: &str = "jabber:iq:roster";
/// XEP-0209 namespace.
pub const METACONTACTS_NS: &str = "storage:metacontacts";
/// XEP-0049 private storage namespace (where metacontacts live).
pub const PRIVATE_NS: &str = "jabber:iq:private";

/// `text` trimmed, with each control character (a tab or line break a document
/// may hold as `&#9;` or `&#10;`) as a space: names and group names are one line,
/// as `kith contact` and `kith group` take them.
fn spaced(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Why a document cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not well-formed, or over [`xml::Limits::IMPORT`].
    #[error(transparent)]
    Xml(#[from] xml::Error),
    /// No roster / metacontacts element where one was expected.
    #[error("expected {expected}, found <{found}/>")]
    WrongDocument {
        /// What was expected.
        expected: &'static str,
        /// The root element found.
        found: String,
    },
    /// An entry without `jid`.
    #[error("entry {0} has no jid attribute")]
    MissingJid(usize),
    /// A metacontact entry without `tag`.
    #[error("entry {0} has no tag attribute")]
    MissingTag(usize),
    /// An entry whose `jid` is not a JID.
    #[error("entry {index}: {source}")]
    InvalidJid {
        /// 1-based position among entries.
        index: usize,
        /// Why.
        source: jid::Error,
    },
    /// An `order` that is not an unsigned integer.
    #[error("entry {0} has an invalid order attribute")]
    InvalidOrder(usize),
    /// An entry that would not make a valid XEP-0510 contact (a name too long…).
    #[error("entry {index} ({jid}): {source}")]
    InvalidEntry {
        /// 1-based position among entries (the first entry of the contact).
        index: usize,
        /// Its JID.
        jid: String,
        /// Why.
        source: item::Error,
    },
    /// A group name that would not make a valid XEP-0510 group.
    #[error("group {name:?}: {source}")]
    InvalidGroup {
        /// The name (its first 64 characters).
        name: String,
        /// Why.
        source: item::Error,
    },
}

/// Checks that every contact (the first entry of each at `first[i]`) and every group
/// would be a valid XEP-0510 item, as a reader would read it.
fn check(contacts: &[Contact], first: &[usize], groups: &[String]) -> Result<(), Error> {
    let valid = |p: Payload| Payload::parse(&p.to_xml()).map(drop);
    for (c, index) in contacts.iter().zip(first) {
        valid(Payload::Contact(c.clone())).map_err(|source| Error::InvalidEntry {
            index: *index,
            jid: c
                .identities
                .first()
                .map_or_else(String::new, |i| i.value.clone()),
            source,
        })?;
    }
    for name in groups {
        let group = Group {
            id: "g-0".into(),
            name: name.clone(),
            ..Group::default()
        };
        valid(Payload::Group(group)).map_err(|source| Error::InvalidGroup {
            name: name.chars().take(64).collect(),
            source,
        })?;
    }
    Ok(())
}

/// The result of an import: contacts (group references by name) and group names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Contacts, in document order.
    pub contacts: Vec<Contact>,
    /// Group names, sorted.
    pub groups: Vec<String>,
}

impl Imported {
    /// XEP-0510 payloads: one `<group/>` per name with a fresh random id, and the
    /// contacts referring to those ids.
    pub fn to_payloads<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> (Vec<Payload>, Vec<Payload>) {
        let mut ids = BTreeMap::new();
        let groups = self
            .groups
            .iter()
            .map(|name| {
                let mut raw = [0u8; 6];
                rng.fill_bytes(&mut raw);
                let mut id = String::from("g-");
                crate::hex::push(&mut id, &raw);
                ids.insert(name.clone(), id.clone());
                Payload::Group(Group {
                    id,
                    name: name.clone(),
                    ..Group::default()
                })
            })
            .collect();
        let contacts = self
            .contacts
            .iter()
            .map(|c| {
                let mut c = c.clone();
                for g in &mut c.groups {
                    g.id = ids[&g.id].clone();
                }
                Payload::Contact(c)
            })
            .collect();
        (contacts, groups)
    }
}

/// Finds the element `ns`/`name`: the root itself, or a descendant up to two levels
/// down (inside `<iq/>`, `<query xmlns='jabber:iq:private'/>`).
fn find<'a>(
    root: &'a Element,
    ns: &str,
    name: &str,
    expected: &'static str,
) -> Result<&'a Element, Error> {
    if root.is(ns, name) {
        return Ok(root);
    }
    for c in root.elements() {
        if c.is(ns, name) {
            return Ok(c);
        }
        if let Some(g) = c.elements().find(|g| g.is(ns, name)) {
            return Ok(g);
        }
    }
    Err(Error::WrongDocument {
        expected,
        found: root.name.chars().take(64).collect(),
    })
}

fn parse_jid(el: &Element, index: usize) -> Result<BareJid, Error> {
    let raw = el.attr("jid").ok_or(Error::MissingJid(index))?;
    BareJid::parse(raw).map_err(|source| Error::InvalidJid { index, source })
}

/// Reads an RFC 6121 roster.
pub fn roster(input: &str) -> Result<Imported, Error> {
    let root = Element::parse(input, xml::Limits::IMPORT)?;
    let query = find(&root, ROSTER_NS, "query", "a jabber:iq:roster <query/>")?;
    let mut out = Imported::default();
    let mut groups = std::collections::BTreeSet::new();
    let mut by_jid: BTreeMap<BareJid, usize> = BTreeMap::new();
    let mut first: Vec<usize> = Vec::new();
    for (i, item) in query
        .elements()
        .filter(|e| e.is(ROSTER_NS, "item"))
        .enumerate()
    {
        let index = i + 1;
        let jid = parse_jid(item, index)?;
        if item.attr("subscription") == Some("remove") {
            continue;
        }
        let name = item.attr("name").map(spaced).filter(|n| !n.is_empty());
        let mut refs: Vec<GroupRef> = Vec::new();
        for g in item.elements().filter(|g| g.is(ROSTER_NS, "group")) {
            let g = spaced(&g.text());
            if !g.is_empty() && !refs.iter().any(|r| r.id == g) {
                groups.insert(g.clone());
                refs.push(GroupRef {
                    id: g,
                    extra: Extra::default(),
                });
            }
        }
        // A JID listed twice is one contact: the later entry's name wins, groups join.
        match by_jid.get(&jid) {
            Some(&at) => {
                let c: &mut Contact = &mut out.contacts[at];
                if name.is_some() {
                    c.name = name;
                }
                for r in refs {
                    if !c.groups.iter().any(|x| x.id == r.id) {
                        c.groups.push(r);
                    }
                }
            }
            None => {
                by_jid.insert(jid.clone(), out.contacts.len());
                first.push(index);
                out.contacts.push(Contact {
                    name,
                    identities: vec![Identity::jid(&jid)],
                    groups: refs,
                    extra: Extra::default(),
                    stamps: None,
                });
            }
        }
    }
    out.groups = groups.into_iter().collect();
    check(&out.contacts, &first, &out.groups)?;
    Ok(out)
}

/// A metacontact member: order, position in the document, JID.
type Member = (Option<u32>, usize, BareJid);

/// Reads XEP-0209 metacontacts.
pub fn metacontacts(input: &str) -> Result<Imported, Error> {
    let root = Element::parse(input, xml::Limits::IMPORT)?;
    let storage = find(
        &root,
        METACONTACTS_NS,
        "storage",
        "a storage:metacontacts <storage/>",
    )?;
    // tag → (first position, members)
    let mut tags: BTreeMap<String, (usize, Vec<Member>)> = BTreeMap::new();
    for (i, meta) in storage
        .elements()
        .filter(|e| e.is(METACONTACTS_NS, "meta"))
        .enumerate()
    {
        let index = i + 1;
        let jid = parse_jid(meta, index)?;
        let tag = meta
            .attr("tag")
            .filter(|t| !t.is_empty())
            .ok_or(Error::MissingTag(index))?;
        let order = match meta.attr("order") {
            None => None,
            Some(o) => Some(
                o.trim()
                    .parse::<u32>()
                    .map_err(|_| Error::InvalidOrder(index))?,
            ),
        };
        let first = tags.len();
        tags.entry(tag.to_owned())
            .or_insert((first, Vec::new()))
            .1
            .push((order, index, jid));
    }
    let mut metas: Vec<_> = tags.into_values().collect();
    // Contacts in the order their tag first appears.
    metas.sort_by_key(|(first, _)| *first);
    let firsts: Vec<usize> = metas
        .iter()
        .map(|(_, members)| members.iter().map(|m| m.1).min().unwrap_or(0))
        .collect();
    let contacts: Vec<Contact> = metas
        .into_iter()
        .map(|(_, mut members)| {
            // Higher order first; unordered last; ties in document order.
            members.sort_by_key(|(order, pos, _)| {
                (
                    order.map_or(1, |_| 0),
                    std::cmp::Reverse(order.unwrap_or(0)),
                    *pos,
                )
            });
            let mut identities: Vec<Identity> = Vec::new();
            for (_, _, jid) in members {
                let id = Identity::jid(&jid);
                if !identities.iter().any(|x| x.key() == id.key()) {
                    identities.push(id);
                }
            }
            Contact {
                identities,
                ..Contact::default()
            }
        })
        .collect();
    check(&contacts, &firsts, &[])?;
    Ok(Imported {
        contacts,
        groups: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use rand_core::SeedableRng;

    // XEP-0209 listing 3 (seeds/001), as printed there.
    const XEP0209: &str = "<iq type='result' id='get1'>
  <query xmlns='jabber:iq:private'>
    <storage xmlns='storage:metacontacts'>
      <meta jid='mike.bolton@raplovers.org' tag='ae18f2' order='1' />
      <meta jid='tom@jump-to-conclusions.com' tag='82a1a5' order='1' />
      <meta jid='samir@initech.com' tag='283b94' order='2' />
      <meta jid='mike@initech.com' tag='ae18f2' order='2' />
    </storage>
  </query>
</iq>";

    fn jids(c: &Contact) -> Vec<&str> {
        c.identities.iter().map(|i| i.value.as_str()).collect()
    }

    #[test]
    fn metacontacts_join_members_by_tag_in_order() {
        let imp = metacontacts(XEP0209).expect("valid");
        assert_eq!(imp.contacts.len(), 3);
        assert_eq!(
            jids(&imp.contacts[0]),
            ["mike@initech.com", "mike.bolton@raplovers.org"]
        );
        let unordered = "<storage xmlns='storage:metacontacts'>\
            <meta jid='a@x' tag='t'/><meta jid='b@x' tag='t' order='1'/><meta jid='c@x' tag='t' order='5'/></storage>";
        let imp = metacontacts(unordered).expect("valid");
        assert_eq!(jids(&imp.contacts[0]), ["c@x", "b@x", "a@x"]);
    }

    #[test]
    fn control_characters_in_names_and_groups_become_spaces() {
        let doc = "<query xmlns='jabber:iq:roster'>\
            <item jid='a@x.lit' name='Jules&#9;C&#10;'><group>g&#13;1</group></item></query>";
        let imp = roster(doc).expect("valid");
        assert_eq!(imp.contacts[0].name.as_deref(), Some("Jules C"));
        assert_eq!(imp.groups, ["g 1"]);
    }

    #[test]
    fn roster_names_groups_and_duplicates() {
        let doc = "<iq type='result'><query xmlns='jabber:iq:roster' ver='1'>\
            <item jid='Juliet@Capulet.lit' name='Juliet' subscription='both'><group>Friends</group><group>Lovers</group></item>\
            <item jid='nurse@capulet.lit'><group>Friends</group></item>\
            <item jid='gone@x.lit' subscription='remove'/>\
            <item jid='juliet@capulet.lit/balcony'><group>Capulets</group></item>\
            </query></iq>";
        let imp = roster(doc).expect("valid");
        assert_eq!(imp.contacts.len(), 2);
        assert_eq!(imp.contacts[0].name.as_deref(), Some("Juliet"));
        assert_eq!(jids(&imp.contacts[0]), ["juliet@capulet.lit"]);
        assert_eq!(imp.contacts[0].groups.len(), 3);
        assert_eq!(imp.groups, ["Capulets", "Friends", "Lovers"]);
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let (contacts, groups) = imp.to_payloads(&mut rng);
        assert_eq!(groups.len(), 3);
        for p in contacts.iter().chain(&groups) {
            assert_eq!(Payload::parse(&p.to_xml()).as_ref(), Ok(p));
        }
    }

    #[test]
    fn bad_documents_name_the_problem() {
        assert!(matches!(
            roster("<query xmlns='other'/>"),
            Err(Error::WrongDocument { .. })
        ));
        assert_eq!(
            roster("<query xmlns='jabber:iq:roster'><item/></query>"),
            Err(Error::MissingJid(1))
        );
        assert!(matches!(
            roster("<query xmlns='jabber:iq:roster'><item jid='a@b'/><item jid='@b'/></query>"),
            Err(Error::InvalidJid { index: 2, .. })
        ));
        assert_eq!(
            metacontacts("<storage xmlns='storage:metacontacts'><meta jid='a@b'/></storage>"),
            Err(Error::MissingTag(1))
        );
        assert_eq!(
            metacontacts(
                "<storage xmlns='storage:metacontacts'><meta jid='a@b' tag='t' order='-1'/></storage>"
            ),
            Err(Error::InvalidOrder(1))
        );
        assert!(matches!(roster("<query"), Err(Error::Xml(_))));
    }
}
