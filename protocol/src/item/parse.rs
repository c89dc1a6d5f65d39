//! Reading payload elements: contacts and groups, with their limits, unknown data
//! kept aside in [`Extra`].

use super::{
    Contact, Error, Extra, Group, GroupRef, Identity, MAX_GROUP_REFS, MAX_IDENTITIES,
    MAX_VALUE_BYTES, NS, fields,
};
use crate::xml::{Attr, Element};
use fields::Stamps;

pub(super) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

pub(super) fn check_len(s: &str) -> Result<(), Error> {
    if s.len() > MAX_VALUE_BYTES {
        return Err(Error::ValueTooLong {
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// Splits `el`'s attributes and children into known ones (left for the caller) and
/// unknown ones (returned). Attributes named in `known` (unqualified) and children
/// for which `known_child` holds are known; text directly inside is dropped.
pub(super) fn split_extra(
    el: &Element,
    known: &[&str],
    known_child: impl Fn(&Element) -> bool,
) -> Extra {
    let (attrs, children) = split_unknown(el, known, known_child);
    // Collected from a filter, they have room for more; `Extra::new` keeps none (a
    // device holds what it reads for as long as the item lives).
    Extra::new(attrs, children)
}

/// [`split_extra`]'s unknown attributes and children, not yet an [`Extra`].
fn split_unknown(
    el: &Element,
    known: &[&str],
    known_child: impl Fn(&Element) -> bool,
) -> (Vec<Attr>, Vec<Element>) {
    (
        el.attrs
            .iter()
            .filter(|a| !(a.ns.is_empty() && known.contains(&a.name.as_ref())))
            .cloned()
            .collect(),
        el.elements().filter(|c| !known_child(c)).cloned().collect(),
    )
}

/// Takes kith's stamps element out of a contact's unknown children, held compactly;
/// a contact may carry one.
fn take_stamps(children: &mut Vec<Element>) -> Result<Option<Stamps>, Error> {
    let mut found = children.iter().filter(|c| c.is(fields::NS, "fields"));
    let Some(first) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(Error::BadFields(fields::Problem::TwoElements));
    }
    let stamps = Stamps::from_element(first);
    children.retain(|c| !c.is(fields::NS, "fields"));
    children.shrink_to_fit();
    Ok(Some(stamps))
}

/// A contact's unknown attributes and children, with its stamps taken out of them
/// before they are boxed (most contacts then have no unknown child).
pub(super) fn extra_and_stamps(
    attrs: Vec<Attr>,
    mut children: Vec<Element>,
) -> Result<(Extra, Option<Stamps>), Error> {
    let stamps = take_stamps(&mut children)?;
    Ok((Extra::new(attrs, children), stamps))
}

pub(super) fn parse_contact(el: &Element) -> Result<Contact, Error> {
    let (attrs, children) =
        split_unknown(el, &["name"], |c| c.is(NS, "identity") || c.is(NS, "group"));
    let (extra, stamps) = extra_and_stamps(attrs, children)?;
    let mut contact = Contact {
        name: el.attr("name").map(str::to_owned),
        extra,
        stamps,
        ..Contact::default()
    };
    if let Some(n) = &contact.name {
        check_len(n)?;
    }
    for child in el.elements() {
        if child.is(NS, "identity") {
            if contact.identities.len() == MAX_IDENTITIES {
                return Err(Error::TooManyIdentities {
                    max: MAX_IDENTITIES,
                });
            }
            let kind = child.attr("type").ok_or(Error::IdentityWithoutType)?;
            let mut id = Identity::new(kind, &child.text())?;
            id.extra = split_extra(child, &["type"], |_| false);
            if !contact.identities.iter().any(|i| i.key() == id.key()) {
                contact.identities.push(id);
            }
        } else if child.is(NS, "group") {
            if contact.groups.len() == MAX_GROUP_REFS {
                return Err(Error::TooManyGroups {
                    max: MAX_GROUP_REFS,
                });
            }
            let id = child.attr("id").ok_or(Error::GroupWithoutId)?;
            check_len(id)?;
            if !contact.groups.iter().any(|g| g.id == id) {
                contact.groups.push(GroupRef {
                    id: id.to_owned(),
                    extra: split_extra(child, &["id"], |_| false),
                });
            }
        }
    }
    if contact.identities.is_empty() {
        return Err(Error::NoIdentity);
    }
    // A device holds every contact it reads: no room for more.
    contact.identities.shrink_to_fit();
    contact.groups.shrink_to_fit();
    if contact.stamps.is_some() {
        // Any version will do: only whether the stamps read is asked.
        let version = crate::record::Version {
            hlc: crate::clock::Hlc {
                wall_ms: 0,
                counter: 0,
            },
            device: crate::record::DeviceId([0; 32]),
        };
        fields::State::of(&contact, version)?;
    }
    Ok(contact)
}

pub(super) fn parse_group(el: &Element) -> Result<Group, Error> {
    let id = el.attr("id").ok_or(Error::GroupWithoutId)?;
    let name = el
        .attr("name")
        .ok_or_else(|| Error::GroupWithoutName(truncate(id)))?;
    check_len(id)?;
    check_len(name)?;
    // A <description/> with attributes of its own is kept whole, as an unknown child.
    let plain_description = |c: &Element| c.is(NS, "description") && c.attrs.is_empty();
    let description = el
        .elements()
        .find(|c| plain_description(c))
        .map(Element::text);
    Ok(Group {
        id: id.to_owned(),
        name: name.to_owned(),
        description,
        extra: split_extra(el, &["id", "name"], plain_description),
    })
}
