//! What the view holds: a contact of one item is held once, shared by the item's
//! read and the merged contact; a merge that changes something holds its own.

use std::cell::Cell;
use std::sync::Arc;

use super::{Dirty, Held, Members, Origin, Read, View};
use crate::clock::Hlc;
use crate::contacts::merge;
use crate::item::{Contact, Group, GroupRef, Identity, NodeKind, Payload};
use crate::record::{DeviceId, ItemId, Version};

thread_local! {
    /// Contacts merged on this thread (`View::insert_contact`), for the tests to
    /// count.
    pub(super) static MERGES: Cell<usize> = const { Cell::new(0) };
}

fn at(wall_ms: u64, device: u8) -> Version {
    Version {
        hlc: Hlc {
            wall_ms,
            counter: 0,
        },
        device: DeviceId([device; 32]),
    }
}

fn contact(name: &str, jid: &str) -> Contact {
    Contact {
        name: Some(name.into()),
        identities: vec![Identity {
            kind: "jid".into(),
            value: jid.into(),
            extra: Default::default(),
        }],
        ..Contact::default()
    }
}

/// The view's read of `item`, as the view holds it.
fn held(view: &View, item: ItemId) -> Arc<Contact> {
    match &view.items[&(NodeKind::Contacts, item)].payload {
        Ok(Held::Contact(c)) => Arc::clone(c),
        other => panic!("not a contact: {other:?}"),
    }
}

#[test]
fn a_contact_of_one_stamped_item_is_held_once() {
    let v = at(1_764_490_000_000, 1);
    let stamped = merge::restamp(
        None,
        contact("Juliet", "juliet@capulet.lit"),
        v,
        "ab".repeat(16),
    );
    let item = ItemId([7; 16]);
    let view = View::from_payloads([(NodeKind::Contacts, item, v, Payload::Contact(stamped))]);
    let merged = view.contacts().next().expect("one contact");
    assert!(
        Arc::ptr_eq(&merged.contact, &held(&view, item)),
        "the merged contact is the item's payload, not a copy"
    );
}

#[test]
fn a_merge_that_changes_something_holds_its_own_contact() {
    // A client's item without stamps: the merged contact carries stamps it lacks.
    let v = at(1_764_490_000_000, 1);
    let item = ItemId([7; 16]);
    let plain = contact("Juliet", "juliet@capulet.lit");
    let view =
        View::from_payloads([(NodeKind::Contacts, item, v, Payload::Contact(plain.clone()))]);
    let merged = view.contacts().next().expect("one contact");
    assert!(!Arc::ptr_eq(&merged.contact, &held(&view, item)));
    assert_eq!(*held(&view, item), plain, "the item's read is what it said");
    assert_eq!(merge::data(&merged.contact), plain);

    // Two items of one contact: the merge is neither of them.
    let w = at(1_764_490_000_001, 2);
    let other = ItemId([8; 16]);
    let renamed = merge::restamp(
        None,
        contact("Jules", "juliet@capulet.lit"),
        w,
        "cd".repeat(16),
    );
    let view = View::from_payloads([
        (NodeKind::Contacts, item, v, Payload::Contact(plain)),
        (NodeKind::Contacts, other, w, Payload::Contact(renamed)),
    ]);
    let merged = view.contacts().next().expect("one contact");
    assert_eq!(merged.member_count(), 2);
    assert!(!Arc::ptr_eq(&merged.contact, &held(&view, item)));
    assert!(!Arc::ptr_eq(&merged.contact, &held(&view, other)));
}

#[test]
fn a_contact_of_one_item_lists_it_without_a_list() {
    let v = at(1_764_490_000_000, 1);
    let item = ItemId([7; 16]);
    let view = View::from_payloads([(
        NodeKind::Contacts,
        item,
        v,
        Payload::Contact(contact("Juliet", "juliet@capulet.lit")),
    )]);
    let merged = view.contacts().next().expect("one contact");
    assert_eq!(merged.members, Members::Survivor);
    assert_eq!(merged.members().collect::<Vec<_>>(), [(item, v)]);
    assert_eq!(merged.member_count(), 1);

    // Two items: both listed, by item id.
    let w = at(1_764_490_000_001, 2);
    let view = View::from_payloads([
        (
            NodeKind::Contacts,
            ItemId([9; 16]),
            v,
            Payload::Contact(contact("Juliet", "juliet@capulet.lit")),
        ),
        (
            NodeKind::Contacts,
            ItemId([8; 16]),
            w,
            Payload::Contact(contact("Jules", "juliet@capulet.lit")),
        ),
    ]);
    let merged = view.contacts().next().expect("one contact");
    assert_eq!(
        merged.members().collect::<Vec<_>>(),
        [(ItemId([8; 16]), w), (ItemId([9; 16]), v)]
    );
    assert_eq!(merged.member_count(), 2);
}

/// A group coming into being after the contacts that name it changes only their
/// unknown groups: none of them is merged again (each was, twice over a large sync,
/// when the groups came after their members).
#[test]
fn a_group_arriving_after_its_contacts_merges_none_of_them_again() {
    let v = at(1_764_490_000_000, 1);
    let read = |payload: Payload| Read {
        origin: Origin::detached(v, [0; 64]),
        payload: Ok(payload.into()),
    };
    let mut view = View::default();
    let mut dirty = Dirty::default();
    for i in 0..3u8 {
        let mut c = contact("C", &format!("c{i}@x.lit"));
        c.groups.push(GroupRef {
            id: "g-1".into(),
            extra: Default::default(),
        });
        let item = ItemId([i; 16]);
        view.set_item(
            NodeKind::Contacts,
            item,
            Some(read(Payload::Contact(c))),
            &mut dirty,
        );
    }
    MERGES.with(|m| m.set(0));
    view.remerge(dirty, None);
    assert_eq!(MERGES.with(Cell::get), 3);
    assert!(view.contacts().all(|c| c.unknown_groups == ["g-1"]));
    let group = Group {
        id: "g-1".into(),
        name: "G".into(),
        ..Group::default()
    };
    let mut dirty = Dirty::default();
    view.set_item(
        NodeKind::Groups,
        ItemId([9; 16]),
        Some(read(Payload::Group(group))),
        &mut dirty,
    );
    view.remerge(dirty, None);
    assert_eq!(MERGES.with(Cell::get), 3, "no contact merged again");
    assert!(view.contacts().all(|c| c.unknown_groups.is_empty()));
    assert_eq!(view.contacts().count(), 3);
}

/// `View::contact_item`: the contact an item of the contacts node holds, with its
/// version, shared with the view's read; nothing for a group or a placeholder.
#[test]
fn a_contact_item_is_handed_out_shared() {
    let v = at(1_764_490_000_000, 1);
    let (person, group, reserved) = (ItemId([1; 16]), ItemId([2; 16]), ItemId([3; 16]));
    let view = View::from_payloads([
        (
            NodeKind::Contacts,
            person,
            v,
            Payload::Contact(contact("Juliet", "juliet@capulet.lit")),
        ),
        (
            NodeKind::Groups,
            group,
            v,
            Payload::Group(Group {
                id: "g-1".into(),
                name: "Friends".into(),
                description: None,
                extra: Default::default(),
            }),
        ),
        (
            NodeKind::Contacts,
            reserved,
            v,
            Payload::Reserved(Default::default()),
        ),
    ]);
    let (version, shared) = view.contact_item(&person).expect("a contact");
    assert_eq!(version, v);
    assert!(
        Arc::ptr_eq(&shared, &held(&view, person)),
        "shared, not copied"
    );
    assert_eq!(view.contact_item(&group), None, "a group's item id");
    assert_eq!(view.contact_item(&reserved), None, "a placeholder");
    assert_eq!(view.contact_item(&ItemId([9; 16])), None, "no such item");
}
