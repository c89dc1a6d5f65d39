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

use std::collections::{BTreeMap, BTreeSet};

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
    /// XEP-0510 payloads: one `<group/>` per name with a fresh random id (names
    /// that look alike, [`item::lookalike`], are one group, under the name first
    /// referred to in document order, as an import into a device makes them), and
    /// the contacts referring to those ids (once each).
    pub fn to_payloads<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> (Vec<Payload>, Vec<Payload>) {
        // The name each look-alike set goes by: its first reference.
        let mut first: BTreeMap<String, &str> = BTreeMap::new();
        let referred = self.contacts.iter().flat_map(|c| &c.groups).map(|g| &g.id);
        for name in referred.chain(&self.groups) {
            first.entry(item::lookalike(name)).or_insert(name);
        }
        let mut ids = BTreeMap::new();
        let mut alike: BTreeMap<&str, String> = BTreeMap::new();
        for key in first.keys() {
            let mut raw = [0u8; 6];
            rng.fill_bytes(&mut raw);
            let mut id = String::from("g-");
            crate::hex::push(&mut id, &raw);
            alike.insert(key.as_str(), id);
        }
        let mut groups = Vec::new();
        for name in &self.groups {
            let key = item::lookalike(name);
            // Indexing holds: every name of `self.groups` went into `first` above,
            // and every key of `first` into `alike`.
            let id = alike[key.as_str()].clone();
            ids.insert(name.clone(), id.clone());
            if first[&key] == name.as_str() {
                groups.push(Payload::Group(Group {
                    id,
                    name: name.clone(),
                    ..Group::default()
                }));
            }
        }
        let contacts = self
            .contacts
            .iter()
            .map(|c| {
                let mut c = c.clone();
                for g in &mut c.groups {
                    g.id = ids[&g.id].clone();
                }
                let mut seen = BTreeSet::new();
                c.groups.retain(|g| seen.insert(g.id.clone()));
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

/// How many groups of one contact an import searches through for a repeated name;
/// past them it looks the name up in a set.
const SEARCHED_GROUPS: usize = 16;

/// Reads an RFC 6121 roster.
pub fn roster(input: &str) -> Result<Imported, Error> {
    let root = Element::parse(input, xml::Limits::IMPORT)?;
    let query = find(&root, ROSTER_NS, "query", "a jabber:iq:roster <query/>")?;
    let mut out = Imported::default();
    let mut groups = BTreeSet::new();
    let mut by_jid: BTreeMap<BareJid, usize> = BTreeMap::new();
    let mut first: Vec<usize> = Vec::new();
    // The group names of each contact with more than a few groups (beside
    // `out.contacts`, made when it passes them): a name is then looked up, not
    // searched for, so a crafted entry repeating one costs no more than its
    // length, and the usual contact of a few groups costs no set.
    let mut names_of: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
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
        let name = item.attr("name").map(spaced).filter(|n| !item::is_blank(n));
        // A JID listed twice is one contact: the later entry's name wins, groups join.
        let at = match by_jid.get(&jid) {
            Some(&at) => {
                if name.is_some() {
                    out.contacts[at].name = name;
                }
                at
            }
            None => {
                by_jid.insert(jid.clone(), out.contacts.len());
                first.push(index);
                out.contacts.push(Contact {
                    name,
                    identities: vec![Identity::jid(&jid)],
                    groups: Vec::new(),
                    extra: Extra::default(),
                    stamps: None,
                });
                out.contacts.len() - 1
            }
        };
        let contact = &mut out.contacts[at];
        for g in item.elements().filter(|g| g.is(ROSTER_NS, "group")) {
            let g = spaced(&g.text());
            // A group element that names nothing visible is no group.
            if item::is_blank(&g) {
                continue;
            }
            let known = if contact.groups.len() <= SEARCHED_GROUPS {
                contact.groups.iter().any(|r| r.id == g)
            } else {
                names_of
                    .entry(at)
                    .or_insert_with(|| contact.groups.iter().map(|r| r.id.clone()).collect())
                    .contains(&g)
            };
            if known {
                continue;
            }
            // Refused at the first group over the limit, not after reading them all.
            if contact.groups.len() == item::MAX_GROUP_REFS {
                return Err(Error::InvalidEntry {
                    index: first[at],
                    jid: jid.to_string(),
                    source: item::Error::TooManyGroups {
                        max: item::MAX_GROUP_REFS,
                    },
                });
            }
            if let Some(names) = names_of.get_mut(&at) {
                names.insert(g.clone());
            }
            groups.insert(g.clone());
            contact.groups.push(GroupRef {
                id: g,
                extra: Extra::default(),
            });
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
        .zip(&firsts)
        .map(|((_, mut members), first)| {
            // Higher order first; unordered last; ties in document order.
            members.sort_by_key(|(order, pos, _)| {
                (
                    order.map_or(1, |_| 0),
                    std::cmp::Reverse(order.unwrap_or(0)),
                    *pos,
                )
            });
            let mut identities: Vec<Identity> = Vec::new();
            // Each JID once, looked up (a crafted tag may repeat one many times).
            let mut seen = BTreeSet::new();
            for (_, _, jid) in members {
                if !seen.insert(jid.clone()) {
                    continue;
                }
                if identities.len() == item::MAX_IDENTITIES {
                    return Err(Error::InvalidEntry {
                        index: *first,
                        jid: identities[0].value.clone(),
                        source: item::Error::TooManyIdentities {
                            max: item::MAX_IDENTITIES,
                        },
                    });
                }
                identities.push(Identity::jid(&jid));
            }
            Ok(Contact {
                identities,
                ..Contact::default()
            })
        })
        .collect::<Result<_, Error>>()?;
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

    /// What a dry run shows is what an import makes: names that look alike are
    /// one group, and a contact in two of them is in it once.
    #[test]
    fn payloads_hold_one_group_for_names_that_look_alike() {
        let doc = "<query xmlns='jabber:iq:roster'>\
            <item jid='a@x.lit'><group>WORK</group><group>\u{FF57}\u{FF4F}\u{FF52}\u{FF4B}</group></item>\
            <item jid='b@x.lit'><group>Work\u{200B}</group><group>Home</group></item></query>";
        let imp = roster(doc).expect("valid");
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let (contacts, groups) = imp.to_payloads(&mut rng);
        let names: Vec<&str> = groups
            .iter()
            .map(|g| match g {
                Payload::Group(g) => g.name.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(names, ["Home", "WORK"]);
        let refs: Vec<usize> = contacts
            .iter()
            .map(|c| match c {
                Payload::Contact(c) => c.groups.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(refs, [1, 2]);
        // The name first referred to, as an import into a device keeps it.
        let doc = "<query xmlns='jabber:iq:roster'>\
            <item jid='a@x.lit'><group>work</group></item>\
            <item jid='b@x.lit'><group>WORK</group></item></query>";
        let (_, groups) = roster(doc).expect("valid").to_payloads(&mut rng);
        assert!(
            matches!(&groups[..], [Payload::Group(g)] if g.name == "work"),
            "{groups:?}"
        );
    }

    #[test]
    fn repeats_are_joined_and_limits_refuse_at_once() {
        // One group named 200,000 times, and one JID listed 100,000 times with a
        // group each of the same 40 names (past the few searched through): each
        // joins to one, in time linear in the document (a search of each
        // contact's groups was quadratic).
        let mut doc = String::from("<query xmlns='jabber:iq:roster'><item jid='a@x.lit'>");
        doc.push_str(&"<group>G</group>".repeat(200_000));
        doc.push_str("</item>");
        for i in 0..100_000 {
            doc.push_str(&format!(
                "<item jid='b@x.lit'><group>H{}</group></item>",
                i % 40
            ));
        }
        doc.push_str("</query>");
        let imp = roster(&doc).expect("valid");
        assert_eq!(imp.contacts.len(), 2);
        assert_eq!(imp.contacts[0].groups.len(), 1);
        let names: Vec<&str> = imp.contacts[1]
            .groups
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        let expected: Vec<String> = (0..40).map(|i| format!("H{i}")).collect();
        assert_eq!(names, expected);
        assert_eq!(imp.groups.len(), 41);

        // One group more than a contact may hold, over two entries of its JID: the
        // error names the contact's first entry.
        let mut doc = String::from(
            "<query xmlns='jabber:iq:roster'><item jid='z@x.lit'/><item jid='a@x.lit'>",
        );
        for i in 0..item::MAX_GROUP_REFS {
            doc.push_str(&format!("<group>g{i}</group>"));
        }
        doc.push_str(
            "</item><item jid='A@x.lit'><group>g0</group><group>one more</group></item></query>",
        );
        assert_eq!(
            roster(&doc),
            Err(Error::InvalidEntry {
                index: 2,
                jid: "a@x.lit".into(),
                source: item::Error::TooManyGroups {
                    max: item::MAX_GROUP_REFS
                },
            })
        );

        // Metacontacts: a JID repeated under one tag is one identity; one identity
        // over the limit is refused, naming the tag's first entry.
        let mut doc = String::from("<storage xmlns='storage:metacontacts'>");
        doc.push_str(&"<meta jid='m@x.lit' tag='t'/>".repeat(100_000));
        doc.push_str("</storage>");
        let imp = metacontacts(&doc).expect("valid");
        assert_eq!(jids(&imp.contacts[0]), ["m@x.lit"]);
        let mut doc =
            String::from("<storage xmlns='storage:metacontacts'><meta jid='o@x.lit' tag='o'/>");
        for i in 0..=item::MAX_IDENTITIES {
            doc.push_str(&format!("<meta jid='m{i}@x.lit' tag='t'/>"));
        }
        doc.push_str("</storage>");
        assert_eq!(
            metacontacts(&doc),
            Err(Error::InvalidEntry {
                index: 2,
                jid: "m0@x.lit".into(),
                source: item::Error::TooManyIdentities {
                    max: item::MAX_IDENTITIES
                },
            })
        );
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
