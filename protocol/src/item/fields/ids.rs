//! What names a contact across its items: its contact id, the ids of the items
//! merged into it (aliases), and the links (identities and ids) by which the items
//! of one contact find each other.

use super::Contact;

/// Most contact ids remembered besides a contact's own (of the items merged into
/// it); the smallest are kept.
pub const MAX_ALIASES: usize = 16;
/// The identity kind under which a contact id is indexed next to real identities (a
/// kind no XML attribute can hold).
pub const CONTACT_ID_KIND: &str = "\0contact";

/// The contact id `contact` carries, read without reading the rest of the stamps.
pub fn contact_id(contact: &Contact) -> Option<&str> {
    contact.stamps.as_ref()?.contact_id()
}

pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The other contact ids `contact` was merged from ([`super::State::aliases`]), read
/// without reading the rest of the stamps; those that are not ids are skipped.
pub fn aliases(contact: &Contact) -> impl Iterator<Item = &str> {
    contact.stamps.iter().flat_map(|s| s.aliases())
}

/// The identities that link `contact` to other items of the same contact: its real
/// identities, its contact id and its aliases (under [`CONTACT_ID_KIND`]).
pub fn links(contact: &Contact) -> impl Iterator<Item = (&str, &str)> {
    contact
        .identities
        .iter()
        .map(|i| (&*i.kind, i.value.as_str()))
        .chain(contact_id(contact).map(|c| (CONTACT_ID_KIND, c)))
        .chain(aliases(contact).map(|c| (CONTACT_ID_KIND, c)))
}
