//! The contact list out, as documents other XMPP software loads.
//!
//! * [`roster`]: an RFC 6121 roster (`<query xmlns='jabber:iq:roster'>`). By default
//!   the minimal roster XEP-0510 §5 asks to keep on the server: every address once,
//!   no names, no groups (they stay end-to-end encrypted in the contacts nodes).
//!   [`Detail::Full`] gives each item its contact's name and group names, for a
//!   server or client that does not speak XEP-0510.
//! * [`for_server`]: the same roster inside a XEP-0227 document
//!   (`<server-data xmlns='urn:xmpp:pie:0'>`) for the account's user on its host:
//!   what Prosody (`prosody-migrator`, `mod_storage_xep0227`) and ejabberd
//!   (`ejabberdctl import_piefxis`) import.
//!
//! A contact with several addresses gives one item per address, each with the same
//! name and groups; a contact with no address (only other identities) gives none.
//! Items are sorted by address, group names within an item too, so the same contact
//! list always gives the same document. A name or group name that is empty or only
//! spaces (another device or a client may have written one) is left out: a roster
//! import reads it as none.

use std::collections::{BTreeMap, BTreeSet};

use crate::contacts::View;
use crate::import::ROSTER_NS;
use crate::jid::BareJid;
use crate::xml::{Element, Node};

/// XEP-0227 (Portable Import/Export Format for XMPP-IM Servers) namespace.
pub const PIE_NS: &str = "urn:xmpp:pie:0";

/// What a roster item says of its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detail {
    /// The address only (XEP-0510 §5).
    #[default]
    Minimal,
    /// The address, the contact's name and its groups' names.
    Full,
}

/// Why a document cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// XEP-0227 files a roster under a user of a host: the account needs a local
    /// part.
    #[error(
        "the account {0} has no local part, and a XEP-0227 document files a roster under a user"
    )]
    NoUser(String),
}

/// What one address's item carries.
#[derive(Default)]
struct Entry<'a> {
    name: Option<&'a str>,
    groups: BTreeSet<&'a str>,
}

/// The roster of `view`'s contacts, with the `detail` asked for.
pub fn roster(view: &View, detail: Detail) -> Element {
    let mut items: BTreeMap<&str, Entry<'_>> = BTreeMap::new();
    for c in view.contacts() {
        let contact = &c.contact;
        for jid in contact.identities.iter().filter(|i| i.kind == "jid") {
            let entry = items.entry(jid.value.as_str()).or_default();
            if detail == Detail::Full {
                entry.name = entry
                    .name
                    .or(contact.name.as_deref().filter(|n| !n.trim().is_empty()));
                entry.groups.extend(
                    contact
                        .groups
                        .iter()
                        .filter_map(|g| view.groups().get(&g.id))
                        .map(|g| g.group.name.as_str())
                        .filter(|n| !n.trim().is_empty()),
                );
            }
        }
    }
    let mut query = Element::new(ROSTER_NS, "query");
    for (jid, entry) in items {
        let mut item = Element::new(ROSTER_NS, "item").with_attr("jid", jid);
        if let Some(name) = entry.name {
            item.set_attr("name", name);
        }
        for group in entry.groups {
            let mut g = Element::new(ROSTER_NS, "group");
            g.push_text(group);
            item.push(g);
        }
        query.push(item);
    }
    query
}

/// `roster` (as [`roster`] gives it) as the XEP-0227 document of `account`'s user:
/// every item with `subscription='none'`, since nothing here knows which presence
/// subscriptions the server has (the server's own roster keeps them; a new server
/// asks again).
pub fn for_server(account: &BareJid, mut roster: Element) -> Result<Element, Error> {
    let user = account
        .local()
        .ok_or_else(|| Error::NoUser(account.to_string()))?;
    for node in &mut roster.children {
        if let Node::Element(item) = node {
            item.set_attr("subscription", "none");
        }
    }
    let mut user_el = Element::new(PIE_NS, "user").with_attr("name", user);
    user_el.push(roster);
    let mut host = Element::new(PIE_NS, "host").with_attr("jid", account.domain());
    host.push(user_el);
    let mut doc = Element::new(PIE_NS, "server-data");
    doc.push(host);
    Ok(doc)
}
