//! Behaviour of the contacts layer across devices: merge of duplicates, the survivor
//! rule, padding, groups, secrets that arrive late, and clocks far ahead.

mod common;

use common::*;
use kith_protocol::clock::{DEFAULT_MAX_AHEAD_MS, WallTime};
use kith_protocol::contacts::{Command, Unreadable};
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::record::Record;
use kith_protocol::replica::Outcome;
use kith_protocol::seal::{Keyring, Secret};
use rand_core::SeedableRng;

/// The names of the groups, by group id.
fn group_names(view: &kith_protocol::contacts::View) -> Vec<&str> {
    view.groups()
        .values()
        .map(|g| g.group.name.as_str())
        .collect()
}

/// Each group conflict as the group's name and the name that lost (or
/// `(removed)`).
fn lost_names(view: &kith_protocol::contacts::View) -> Vec<(&str, &str)> {
    view.group_conflicts()
        .iter()
        .map(|c| {
            let lost = match c.lost {
                kith_protocol::contacts::LostGroup::Definition(g) => g.name.as_str(),
                kith_protocol::contacts::LostGroup::Removal => "(removed)",
            };
            (c.entry.group.name.as_str(), lost)
        })
        .collect()
}

/// Removes the group `name`.
fn rm(name: &str) -> Command {
    Command::RemoveGroup { name: name.into() }
}

/// Renames the group `name` to `new_name`.
fn rename(name: &str, new_name: &str) -> Command {
    Command::RenameGroup {
        name: name.into(),
        new_name: new_name.into(),
    }
}

#[test]
fn add_edit_remove_contact_and_groups() {
    let mut f = Fleet::new(1, 1);
    f.exec(
        0,
        add("juliet@capulet.lit", Some("Juliet"), &["Friends"]),
        T0,
    );
    let view = f.books[0].view().clone();
    assert_eq!(view.contact_count(), 1);
    let c = view.contacts().next().unwrap();
    assert_eq!(c.contact.name.as_deref(), Some("Juliet"));
    assert_eq!(view.groups()[&c.contact.groups[0].id].group.name, "Friends");
    f.exec(0, edit_name("Juliet@Capulet.lit", "Jules"), T0);
    f.exec(
        0,
        Command::RenameGroup {
            name: "Friends".into(),
            new_name: "Close".into(),
        },
        T0,
    );
    let view = f.books[0].view().clone();
    assert_eq!(
        view.contacts().next().unwrap().contact.name.as_deref(),
        Some("Jules")
    );
    assert!(view.group_by_name("Close").is_some());
    f.exec(
        0,
        Command::RemoveGroup {
            name: "Close".into(),
        },
        T0,
    );
    let view = f.books[0].view().clone();
    assert!(view.groups().is_empty());
    assert!(
        view.contacts().next().unwrap().contact.groups.is_empty(),
        "removing a group removes its references"
    );
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        T0,
    );
    assert!(f.books[0].view().contacts().next().is_none());
    let err = f.books[0].execute(
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        T0,
        &mut f.rngs[0],
    );
    assert!(err.is_err(), "removing an unknown contact is an error");
}

#[test]
fn every_node_is_padded_to_the_count_bucket() {
    let mut f = Fleet::new(1, 2);
    for i in 0..40 {
        f.exec(0, add(&format!("u{i}@x.lit"), None, &["G"]), T0);
        let view = f.books[0].view().clone();
        assert_eq!(
            view.live_items(NodeKind::Contacts) % 32,
            0,
            "after {i} adds"
        );
        assert_eq!(view.live_items(NodeKind::Groups) % 32, 0);
    }
    assert_eq!(f.books[0].view().live_items(NodeKind::Contacts), 64);
    for i in 0..40 {
        f.exec(
            0,
            Command::RemoveContact {
                jid: jid(&format!("u{i}@x.lit")),
            },
            T0,
        );
    }
    assert_eq!(
        f.books[0].view().live_items(NodeKind::Contacts),
        40,
        "surplus padding is retracted, the deletions' marks kept"
    );
    // Past the time a deletion's mark is kept, padding retracts it too.
    let later = WallTime(T0.0 + kith_protocol::contacts::MARK_KEPT_MS + 1);
    f.exec(0, add("late@x.lit", None, &[]), later);
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("late@x.lit"),
        },
        later,
    );
    assert_eq!(f.books[0].view().live_items(NodeKind::Contacts), 32);
}

#[test]
fn padding_retracts_old_marks_oldest_first_and_keeps_recent_ones() {
    let mut f = Fleet::new(1, 4);
    let day = 24 * 3600 * 1000;
    for i in 0..40 {
        f.exec(0, add(&format!("u{i}@x.lit"), None, &[]), T0);
    }
    for i in 0..40 {
        // Five deleted at T0, the others a day later.
        let at = WallTime(T0.0 + if i < 5 { 0 } else { day });
        let jid_ = jid(&format!("u{i}@x.lit"));
        f.exec(0, Command::RemoveContact { jid: jid_ }, at);
    }
    let marks: Vec<_> = f.books[0]
        .view()
        .marks(NodeKind::Contacts)
        .copied()
        .collect();
    assert_eq!(marks.len(), 40, "every deletion's mark is kept");
    assert_eq!(
        f.books[0].view().plain_reserved(NodeKind::Contacts).count(),
        0,
        "plain padding goes first"
    );
    // Past the five's time: one more contact leaves 9 items of surplus; the five
    // old marks go, oldest first, and the recent ones stay although surplus is left.
    let later = WallTime(T0.0 + kith_protocol::contacts::MARK_KEPT_MS + day / 2);
    f.exec(0, add("late@x.lit", None, &[]), later);
    let view = f.books[0].view().clone();
    let left: Vec<_> = view.marks(NodeKind::Contacts).copied().collect();
    assert_eq!(
        left[..],
        marks[5..],
        "the five old marks went, no recent one"
    );
    assert_eq!(view.live_items(NodeKind::Contacts), 36);
}

#[test]
fn padding_keeps_an_old_mark_while_an_edit_carries_its_contact() {
    let mut f = Fleet::new(2, 5);
    let day = 24 * 3600 * 1000;
    for i in 0..40 {
        f.exec(0, add(&format!("u{i}@x.lit"), None, &[]), T0);
    }
    f.sync_all(WallTime(T0.0 + 1));
    // u0 deleted on one device while the other, not knowing, renames it: the
    // rename brings the contact back and the deletion's mark stays with it.
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("u0@x.lit"),
        },
        WallTime(T0.0 + 2),
    );
    f.exec(1, edit_name("u0@x.lit", "Still here"), WallTime(T0.0 + 3));
    for i in 1..40 {
        let at = WallTime(T0.0 + if i < 5 { 4 } else { day });
        let jid_ = jid(&format!("u{i}@x.lit"));
        f.exec(0, Command::RemoveContact { jid: jid_ }, at);
    }
    f.sync_all(WallTime(T0.0 + day + 1));
    let view = f.books[0].view().clone();
    assert!(
        view.contact_by_jid(&jid("u0@x.lit")).is_some(),
        "the rename won"
    );
    let marks: Vec<_> = view.marks(NodeKind::Contacts).copied().collect();
    assert_eq!(marks.len(), 40);
    assert!(view.mark_still_carried(NodeKind::Contacts, &marks[0].1));
    // Past 90 days: the four old marks of contacts that are gone go; the older one
    // of u0, whose contact an item still carries, stays.
    let later = WallTime(T0.0 + kith_protocol::contacts::MARK_KEPT_MS + day / 2);
    f.exec(0, add("late@x.lit", None, &[]), later);
    let left: Vec<_> = f.books[0]
        .view()
        .marks(NodeKind::Contacts)
        .copied()
        .collect();
    let expected: Vec<_> = std::iter::once(marks[0])
        .chain(marks[5..].iter().copied())
        .collect();
    assert_eq!(left, expected);
}

#[test]
fn concurrent_duplicates_merge_then_collapse_into_the_survivor() {
    let mut f = Fleet::new(2, 3);
    // Both devices add Juliet while apart: two items for one contact.
    f.exec(
        0,
        add("juliet@capulet.lit", Some("Juliet"), &["Friends"]),
        T0,
    );
    f.exec(
        1,
        add("JULIET@capulet.lit", None, &["Capulets"]),
        WallTime(T0.0 + 5),
    );
    f.sync_all(WallTime(T0.0 + 10));
    let v0 = f.books[0].view().clone();
    assert_eq!(v0, *f.books[1].view(), "both devices show the same list");
    assert_eq!(v0.contact_count(), 1);
    let merged = v0.contacts().next().unwrap();
    assert_eq!(merged.member_count(), 2);
    assert_eq!(
        merged.contact.name.as_deref(),
        Some("Juliet"),
        "the newest item with a name"
    );
    let group_names: Vec<_> = merged
        .contact
        .groups
        .iter()
        .map(|g| v0.groups()[&g.id].group.name.as_str())
        .collect();
    assert_eq!(group_names.len(), 2, "groups are a union: {group_names:?}");
    // An edit writes the whole merged contact as one new item and retracts the rest.
    let records = f.exec(
        1,
        edit_name("juliet@capulet.lit", "Juliet Capulet"),
        WallTime(T0.0 + 20),
    );
    f.sync_all(WallTime(T0.0 + 30));
    let v = f.books[0].view().clone();
    assert_eq!(v.contact_count(), 1);
    let now = v.contacts().next().unwrap();
    assert_eq!(now.member_count(), 1);
    assert!(merged.members().all(|m| m.0 != now.id), "a new item");
    assert_eq!(now.contact.name.as_deref(), Some("Juliet Capulet"));
    assert_eq!(now.contact.groups.len(), 2, "nothing lost in the collapse");
    for (old, _) in merged.members() {
        assert!(
            records.iter().any(|r| r.item == old && r.is_tombstone()),
            "the old member {old} was retracted"
        );
    }
    assert_eq!(
        v.live_items(NodeKind::Contacts),
        32,
        "padding shrank back to one bucket"
    );
}

#[test]
fn transitive_identities_make_one_contact() {
    use kith_protocol::item::{Contact, Identity};
    let mut f = Fleet::new(3, 6);
    f.exec(0, add("a@x.lit", Some("A"), &[]), T0);
    f.exec(1, add("b@x.lit", None, &[]), T0);
    // Device 2 knows neither: its item holds both JIDs and links the other two.
    let both = Contact {
        identities: vec![
            Identity::new("jid", "a@x.lit").expect("valid"),
            Identity::new("jid", "B@x.lit").expect("valid"),
        ],
        ..Contact::default()
    };
    f.exec(
        2,
        Command::Import {
            contacts: vec![both],
            replace: false,
        },
        T0,
    );
    f.sync_all(WallTime(T0.0 + 1));
    let v = f.books[0].view().clone();
    assert_eq!(v.contact_count(), 1, "a ~ ab ~ b is one contact");
    assert_eq!(v.contacts().next().unwrap().member_count(), 3);
    assert_eq!(
        v.contacts().next().unwrap().contact.name.as_deref(),
        Some("A")
    );
    assert_eq!(v, *f.books[2].view());
}

#[test]
fn unknown_group_references_are_kept() {
    let mut f = Fleet::new(2, 7);
    f.exec(0, add("juliet@capulet.lit", None, &["Friends"]), T0);
    // Device 1 receives only the contacts node: the group item is missing.
    let contacts: Vec<Record> = f.books[0]
        .replica()
        .space(NodeKind::Contacts)
        .cloned()
        .collect();
    for r in contacts {
        f.books[1].receive(r, &f.roster, T0).expect("trusted");
    }
    let v = f.books[1].view().clone();
    assert_eq!(v.contacts().next().unwrap().unknown_groups.len(), 1);
    assert_eq!(v.contacts().next().unwrap().contact.groups.len(), 1);
    // Editing the contact there keeps the reference.
    f.exec(1, edit_name("juliet@capulet.lit", "J"), T0);
    assert_eq!(
        f.books[1]
            .view()
            .contacts()
            .next()
            .unwrap()
            .contact
            .groups
            .len(),
        1
    );
}

#[test]
fn items_wait_for_their_secret_and_then_appear() {
    let mut f = Fleet::new(2, 8);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(99);
    let newer = Secret::generate(NodeKind::Contacts, WallTime(T0.0 + 1), &mut rng);
    f.books[0].add_secrets([newer.clone()]);
    f.exec(0, add("juliet@capulet.lit", None, &[]), WallTime(T0.0 + 2));
    f.sync(0, 1, WallTime(T0.0 + 3));
    let v = f.books[1].view().clone();
    assert!(v.contacts().next().is_none());
    assert!(
        v.unreadable()
            .values()
            .any(|u| *u == Unreadable::Waiting(newer.id.clone()))
    );
    f.books[1].add_secrets([newer]);
    let v = f.books[1].view().clone();
    assert_eq!(v.contact_count(), 1);
    assert!(v.unreadable().is_empty());
}

#[test]
fn a_clock_far_ahead_is_held_not_applied_nor_lost() {
    let mut f = Fleet::new(2, 9);
    let ahead = WallTime(T0.0 + DEFAULT_MAX_AHEAD_MS + 60_000);
    let records = f.exec(0, add("juliet@capulet.lit", None, &[]), ahead);
    for r in records {
        assert_eq!(f.books[1].receive(r, &f.roster, T0), Ok(Outcome::Held));
    }
    assert!(f.books[1].view().contacts().next().is_none());
    assert!(f.books[1].release(&f.roster, T0).is_empty());
    assert!(
        !f.books[1]
            .release(&f.roster, WallTime(ahead.0 - DEFAULT_MAX_AHEAD_MS))
            .is_empty()
    );
    assert_eq!(f.books[1].view().contact_count(), 1);
}

#[test]
fn a_device_without_secrets_relays_everything() {
    let mut f = Fleet::new(3, 10);
    // Device 2 is a relay: it holds no secret.
    *f.books[2].keyring_mut() = Keyring::new();
    f.exec(0, add("juliet@capulet.lit", Some("J"), &["G"]), T0);
    f.sync(0, 2, T0);
    f.sync(2, 1, T0);
    assert_eq!(
        f.books[1].view().contact_count(),
        1,
        "device 1 got everything through the relay"
    );
    let relay = f.books[2].view().clone();
    assert!(relay.contacts().next().is_none());
    assert!(
        relay
            .unreadable()
            .values()
            .all(|u| matches!(u, Unreadable::Waiting(_)))
    );
    let view = f.books[0].view();
    let payloads: usize = NodeKind::ALL.iter().map(|n| view.reserved_count(*n)).sum();
    assert!(payloads > 0);
    let _ = Payload::Reserved(Default::default());
}

#[test]
fn a_group_created_on_two_devices_while_apart_is_one_group() {
    let mut f = Fleet::new(2, 11);
    f.exec(0, add("juliet@capulet.lit", None, &["Capulets"]), T0);
    f.exec(1, add("tybalt@capulet.lit", None, &["Capulets"]), T0);
    f.sync_all(WallTime(T0.0 + 1));
    let v = f.books[0].view().clone();
    assert_eq!(
        v.groups().len(),
        1,
        "one group id: {:?}",
        v.groups().keys().collect::<Vec<_>>()
    );
    let entry = v.group_by_name("Capulets").expect("group");
    assert_eq!(entry.duplicates.len(), 1, "two items define it");
    assert!(
        v.contacts()
            .all(|c| c.contact.groups[0].id == entry.group.id)
    );
    // Renamed, then a new group takes the old name: it must not take over the renamed one.
    f.exec(
        0,
        Command::RenameGroup {
            name: "Capulets".into(),
            new_name: "House Capulet".into(),
        },
        WallTime(T0.0 + 2),
    );
    f.exec(
        0,
        Command::AddGroup {
            name: "Capulets".into(),
            description: None,
        },
        WallTime(T0.0 + 3),
    );
    let v = f.books[0].view().clone();
    assert_eq!(v.groups().len(), 2);
    assert!(v.group_by_name("House Capulet").is_some() && v.group_by_name("Capulets").is_some());
}

/// An item sealed by an XMPP client is published as is: it opens under a secret of
/// its node that is not revoked and holds a valid payload for that node, or nothing
/// is written; a retract of a live item writes a tombstone every device applies.
#[test]
fn items_sealed_elsewhere_are_published_and_retracted_only_when_valid() {
    use kith_protocol::contacts::Error;
    use kith_protocol::record::{Body, ItemId};
    use kith_protocol::seal::{self, DEFAULT_PAD_BUCKET};
    let mut f = Fleet::new(2, 12);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
    let keyring = f.books[0].keyring().clone();
    let contacts = keyring.current(NodeKind::Contacts).unwrap().clone();
    let groups = keyring.current(NodeKind::Groups).unwrap().clone();
    let contact = "<contact xmlns='urn:xmpp:contacts:0' name='Juliet'>\
                   <identity type='jid'>juliet@capulet.lit</identity></contact>";
    let item = ItemId::random(&mut rng);
    let publish = |sealed| Command::Publish {
        node: NodeKind::Contacts,
        item,
        sealed,
    };
    let good = seal::seal(contact, &contacts, DEFAULT_PAD_BUCKET, &mut rng);

    // Refused: a groups secret, an unknown key, a revoked secret, bytes that do not
    // open, a group on the contacts node.
    let wrong_node = seal::seal(contact, &groups, DEFAULT_PAD_BUCKET, &mut rng);
    let mut unknown = good.clone();
    unknown.key = "no-such-key".into();
    let mut garbage = good.clone();
    garbage.data = vec![0xc3, 0x04, 0x01, 0x02];
    let group = seal::seal(
        "<group xmlns='urn:xmpp:contacts:0' id='g1' name='F'/>",
        &contacts,
        DEFAULT_PAD_BUCKET,
        &mut rng,
    );
    // Many costly key packets (each an S2K of GnuPG's largest count): refused before
    // any key is derived.
    let mut costly = good.clone();
    let mut data = Vec::new();
    for _ in 0..200 {
        data.extend_from_slice(&[0xC3, 13, 4, 9, 3, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0xff]);
    }
    data.extend_from_slice(&good.data);
    costly.data = data;
    let before = f.books[0].replica().len();
    // (Refused by its shape, which is checked before any key is derived.)
    assert!(matches!(
        f.books[0].execute(publish(costly), T0, &mut rng),
        Err(Error::Unopenable(m)) if m.contains("not publishable")
    ));
    assert!(matches!(
        f.books[0].execute(publish(wrong_node), T0, &mut rng),
        Err(Error::UnknownSecret(_))
    ));
    assert!(matches!(
        f.books[0].execute(publish(unknown), T0, &mut rng),
        Err(Error::UnknownSecret(_))
    ));
    assert!(matches!(
        f.books[0].execute(publish(garbage), T0, &mut rng),
        Err(Error::Unopenable(_))
    ));
    assert!(matches!(
        f.books[0].execute(publish(group), T0, &mut rng),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        f.books[0].execute(
            Command::Retract {
                node: NodeKind::Contacts,
                item
            },
            T0,
            &mut rng
        ),
        Err(Error::NoSuchItem { .. })
    ));
    assert_eq!(f.books[0].replica().len(), before, "nothing written");

    // Accepted: a contact is stamped and sealed again here (the client's data
    // unchanged), signed here, and read the same way on the other device.
    let records = f.exec(0, publish(good.clone()), T0);
    let mine = records.iter().find(|r| r.item == item).unwrap();
    assert!(matches!(&mine.body, Body::Sealed(s) if *s != good));
    assert_eq!(mine.version.device, f.books[0].device());
    f.sync(0, 1, T0);
    let view = f.books[1].view().clone();
    let c = view
        .contact(&item)
        .expect("published contact is seen elsewhere");
    assert_eq!(c.contact.name.as_deref(), Some("Juliet"));

    // Retract: a tombstone, applied everywhere.
    f.exec(
        0,
        Command::Retract {
            node: NodeKind::Contacts,
            item,
        },
        T0,
    );
    f.sync(0, 1, T0);
    assert!(f.books[1].view().contact(&item).is_none());

    // A superseded secret seals nothing new, nor does a revoked one.
    let newer = Secret::generate(NodeKind::Contacts, WallTime(T0.0 + 1), &mut rng);
    f.books[0].add_secrets([newer.clone()]);
    let late = seal::seal(contact, &contacts, DEFAULT_PAD_BUCKET, &mut rng);
    assert!(matches!(
        f.books[0].execute(publish(late), T0, &mut rng),
        Err(Error::StaleSecret(_))
    ));
    f.books[0].revoke_secrets([&newer.id]);
    let revoked = seal::seal(contact, &newer, DEFAULT_PAD_BUCKET, &mut rng);
    assert!(matches!(
        f.books[0].execute(publish(revoked), T0, &mut rng),
        Err(Error::StaleSecret(_))
    ));
}

/// Adding another contact's address to a contact would merge the two: refused,
/// naming the other contact, unless the edit asks to merge.
#[test]
fn adding_another_contacts_address_is_refused_unless_merging() {
    use kith_protocol::contacts::{ContactEdit, Error};
    let mut f = Fleet::new(1, 14);
    f.exec(0, add("benvolio@verona.lit", Some("Benvolio"), &[]), T0);
    f.exec(0, add("juliet@capulet.lit", Some("Juliet"), &[]), T0);
    let edit = |merge| Command::EditContact {
        jid: jid("benvolio@verona.lit"),
        edit: ContactEdit {
            add_jids: vec![jid("juliet@capulet.lit")],
            merge,
            ..ContactEdit::default()
        },
    };
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(14);
    match f.books[0].execute(edit(false), T0, &mut rng) {
        Err(Error::JidOfAnother { jid, contact }) => {
            assert_eq!(
                (jid.as_str(), contact.as_str()),
                ("juliet@capulet.lit", "Juliet")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.books[0].view().contact_count(), 2);
    f.exec(0, edit(true), T0);
    assert_eq!(f.books[0].view().contact_count(), 1);
}

/// Names are kept trimmed and in NFC; a group name that only looks different
/// (case, spaces, NFD) is the existing group, never a second one.
#[test]
fn names_are_cleaned_and_lookalike_groups_are_one() {
    let mut f = Fleet::new(1, 15);
    f.exec(
        0,
        add(
            "juliet@capulet.lit",
            Some("  Ju\u{0308}liet "),
            &["Friends"],
        ),
        T0,
    );
    f.exec(0, add("romeo@montague.lit", None, &[" friends"]), T0);
    f.exec(0, add("nurse@capulet.lit", None, &["FRIENDS"]), T0);
    let view = f.books[0].view().clone();
    assert_eq!(view.groups().len(), 1, "{:?}", view.groups());
    let juliet = view
        .contact_by_jid(&jid("juliet@capulet.lit"))
        .expect("juliet");
    assert_eq!(juliet.contact.name.as_deref(), Some("J\u{fc}liet"));
    assert_eq!(
        view.contacts_in_group(&juliet.contact.groups[0].id).count(),
        3
    );
    // Lookalikes named in one command, neither of them held yet: one group too
    // (a property test of the export found two).
    f.exec(0, add("tybalt@capulet.lit", None, &[" kin", "Kin"]), T0);
    let view = f.books[0].view().clone();
    assert_eq!(view.groups().len(), 2, "{:?}", view.groups());
    let tybalt = view
        .contact_by_jid(&jid("tybalt@capulet.lit"))
        .expect("tybalt");
    assert_eq!(
        tybalt.contact.groups.len(),
        1,
        "{:?}",
        tybalt.contact.groups
    );
    assert!(view.group_by_name("kin").is_some());
}

#[test]
fn a_group_renamed_to_its_name_writes_nothing_and_its_case_may_change() {
    use kith_protocol::contacts::Error;
    let mut f = Fleet::new(1, 15);
    for name in ["Friends", "Work"] {
        let add = Command::AddGroup {
            name: name.into(),
            description: None,
        };
        f.exec(0, add, T0);
    }
    // Found by a look-alike, given the name it has: nothing to write.
    let written = f.books[0]
        .execute(rename("friends", "Friends"), T0, &mut f.rngs[0])
        .expect("carried out");
    assert!(written.is_empty(), "{written:?}");
    // Its own name in another case is a rename; another group's is refused.
    f.exec(0, rename("Friends", "FRIENDS"), T0);
    let view = f.books[0].view().clone();
    let names: Vec<&str> = group_names(&view);
    assert!(names.contains(&"FRIENDS") && names.len() == 2, "{names:?}");
    assert_eq!(
        f.books[0].execute(rename("Work", "friends"), T0, &mut f.rngs[0]),
        Err(Error::GroupExists("FRIENDS".into())),
        "named as stored"
    );
}

#[test]
fn groups_named_alike_on_two_devices_are_one_group_to_the_group_commands() {
    use kith_protocol::contacts::{ContactEdit, Error};
    let mut f = Fleet::new(2, 16);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Old"]), t(0));
    f.sync_all(t(1));
    // Apart: one device renames "Old" to "Kin" as the other makes a new "Kin", and
    // each makes a group only the case of whose name differs, twice.
    f.exec(0, rename("Old", "Kin"), t(2));
    f.exec(1, add("juliet@capulet.lit", None, &["Kin"]), t(2));
    f.exec(0, add("tybalt@capulet.lit", None, &["Work"]), t(3));
    f.exec(1, add("nurse@capulet.lit", None, &["work"]), t(3));
    f.exec(0, add("friar@verona.lit", None, &["Pals"]), t(3));
    f.exec(1, add("peter@verona.lit", None, &["PALS"]), t(3));
    f.sync_all(t(4));
    let view = f.books[0].view().clone();
    assert_eq!(view.groups_named("Kin").len(), 2);
    assert_eq!(view.groups_named("WORK").len(), 2);
    let mut work: Vec<&str> = view
        .groups_named("work")
        .iter()
        .map(|g| g.group.name.as_str())
        .collect();
    work.sort_unstable();
    assert_eq!(work, ["Work", "work"], "the exact name and its look-alike");
    // Neither look-alike is taken again by a new group or a rename.
    let group = |name: &str| Command::AddGroup {
        name: name.into(),
        description: None,
    };
    // Each refusal names a group as stored.
    for refused in [group("WORK"), rename("Kin", "WORK")] {
        let said = f.books[0].execute(refused, t(5), &mut f.rngs[0]);
        assert!(
            matches!(&said, Err(Error::GroupExists(n)) if n == "Work" || n == "work"),
            "{said:?}"
        );
    }
    // A contact in one of two look-alikes is in the group: added to it by the
    // other's name, it stays in one; removed by the other's name, it leaves.
    let edit = |jid_: &str, add: &[&str], remove: &[&str]| Command::EditContact {
        jid: jid(jid_),
        edit: ContactEdit {
            add_groups: add.iter().map(|g| (*g).to_owned()).collect(),
            remove_groups: remove.iter().map(|g| (*g).to_owned()).collect(),
            ..ContactEdit::default()
        },
    };
    f.exec(0, edit("peter@verona.lit", &["Pals", "pals"], &[]), t(5));
    f.exec(0, edit("friar@verona.lit", &[], &["PALS"]), t(5));
    let view = f.books[0].view();
    let in_groups = |j: &str| {
        view.contact_by_jid(&jid(j))
            .map(|c| c.contact.groups.len())
            .expect("the contact")
    };
    assert_eq!(in_groups("peter@verona.lit"), 1);
    assert_eq!(in_groups("friar@verona.lit"), 0);
    // So is an import naming it.
    let roster = "<query xmlns='jabber:iq:roster'>\
        <item jid='peter@verona.lit'><group>pals</group><group>Pals</group></item></query>";
    let contacts = kith_protocol::import::roster(roster)
        .expect("a roster")
        .contacts;
    f.exec(
        0,
        Command::Import {
            contacts,
            replace: false,
        },
        t(5),
    );
    let view = f.books[0].view();
    assert_eq!(
        view.contact_by_jid(&jid("peter@verona.lit"))
            .map(|c| c.contact.groups.len()),
        Some(1)
    );
    // Renamed, the two "Kin" become one group holding both contacts; so do the two
    // "Pals", named exactly as one of them.
    f.exec(0, rename("Kin", "Family"), t(6));
    f.exec(0, rename("Pals", "Friends"), t(6));
    // Removed by the exact name of one, both "Work" groups go.
    f.exec(
        0,
        Command::RemoveGroup {
            name: "work".into(),
        },
        t(7),
    );
    f.sync_all(t(8));
    for book in &mut f.books {
        let view = book.view();
        let names: Vec<&str> = group_names(view);
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"Family") && names.contains(&"Friends"));
        let family = &view.groups_named("Family")[0].group.id;
        let friends = &view.groups_named("Friends")[0].group.id;
        for c in view.contacts() {
            let ids: Vec<&str> = c.contact.groups.iter().map(|g| g.id.as_str()).collect();
            let jid = format!("{:?}", c.contact.identities[0].key());
            if jid.contains("romeo") || jid.contains("juliet") {
                assert_eq!(ids, [family.as_str()], "{jid}");
            } else if jid.contains("peter") {
                assert_eq!(ids, [friends.as_str()], "{jid}");
            } else {
                assert!(ids.is_empty(), "{jid}: {ids:?}");
            }
            assert!(c.unknown_groups.is_empty(), "{jid}");
        }
    }
}

#[test]
fn look_alike_groups_folded_apart_under_different_names_stay_one_group() {
    // Three devices apart each make a look-alike of one group with contacts in it;
    // together again, two of them fold the three apart, each typing another name.
    let mut f = Fleet::new(3, 17);
    let t = |n: u64| WallTime(T0.0 + n);
    for (d, group) in ["Kin", "kin", " KIN "].into_iter().enumerate() {
        for i in 0..3 {
            f.exec(d, add(&format!("k{d}{i}@x.lit"), None, &[group]), t(0));
        }
    }
    f.sync_all(t(1));
    assert_eq!(f.books[0].view().groups().len(), 3);
    // Meanwhile a third device puts a contact in the group, by the exact name of
    // the look-alike a fold does not keep.
    let view = f.books[0].view();
    let last = view
        .groups_named("kin")
        .last()
        .expect("three")
        .group
        .name
        .clone();
    f.exec(0, add("late@x.lit", None, &[&last]), t(2));
    f.exec(1, rename("kin", "Family"), t(2));
    f.exec(2, rename("KIN", "Clan"), t(3));
    f.sync_all(t(4));
    f.sync_all(t(5));
    for book in &mut f.books {
        let view = book.view();
        let groups: Vec<&str> = group_names(view);
        assert_eq!(groups, ["Clan"], "the later rename's name");
        let id = &view.groups_named("Clan")[0].group.id;
        assert_eq!(view.contacts_in_group(id).count(), 10);
        assert!(view.contacts().all(|c| c.unknown_groups.is_empty()));
    }
}

#[test]
fn what_a_device_just_sealed_is_read_as_the_keyring_reads_it() {
    // The view takes the payloads of its own new records instead of opening them,
    // but only as the keyring would: written, then the secrets gone before the view
    // is brought up to date, they wait like any item sealed with an unknown secret.
    let mut f = Fleet::new(1, 12);
    f.exec(0, add("juliet@capulet.lit", Some("J"), &[]), T0);
    *f.books[0].keyring_mut() = Keyring::new();
    let view = f.books[0].view().clone();
    assert_eq!(view.contact_count(), 0);
    assert!(!view.unreadable().is_empty());
    assert!(
        view.unreadable()
            .values()
            .all(|u| matches!(u, Unreadable::Waiting(_)))
    );
    // With the secrets, the same view as one built from the records.
    let mut g = Fleet::new(1, 12);
    g.exec(0, add("juliet@capulet.lit", Some("J"), &[]), T0);
    let kept = g.books[0].view().clone();
    let built = kith_protocol::contacts::View::build(
        g.books[0].replica(),
        g.books[0].keyring(),
        &mut kith_protocol::seal::Opener::new(),
    );
    assert_eq!(kept, built);
}

/// An import is checked and summed up in one plan: it refuses what the check
/// refuses, counts contacts as the import writes them (names as kith keeps them),
/// and writes nothing.
#[test]
fn an_import_is_checked_and_summed_up_in_one_plan() {
    use kith_protocol::item::{Contact, Identity, MAX_VALUE_BYTES};
    let mut f = Fleet::new(1, 7);
    f.exec(0, add("a@x.lit", Some("Jos\u{e9}"), &[]), T0);
    let contact = |jid: &str, name: Option<&str>| Contact {
        name: name.map(str::to_owned),
        identities: vec![Identity::new("jid", jid).expect("valid")],
        ..Contact::default()
    };
    let book = &mut f.books[0];
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let before = book.replica().len();
    // The same name, decomposed: as kith keeps it, nothing changes.
    let contacts = vec![
        contact("a@x.lit", Some("Jose\u{301}")),
        contact("b@x.lit", Some("B")),
        contact("c@x.lit", None),
    ];
    let summary = book
        .check_import(contacts, false, &mut rng)
        .expect("a valid import");
    assert_eq!(
        (summary.added, summary.updated, summary.unchanged),
        (2, 0, 1)
    );
    // A name over the limit: refused as the check refuses it.
    let long = vec![contact("d@x.lit", Some(&"n".repeat(MAX_VALUE_BYTES + 1)))];
    let checked = book.check(
        Command::Import {
            contacts: long.clone(),
            replace: false,
        },
        &mut rng,
    );
    assert!(checked.is_err());
    assert_eq!(
        book.check_import(long, false, &mut rng).map(|_| ()),
        checked
    );
    assert_eq!(book.replica().len(), before, "nothing written");
}

/// A payload opened elsewhere from exactly a record (the node's verifying threads)
/// is what the view takes for that record; one offered for another signature is not.
#[test]
fn the_view_takes_a_payload_offered_for_exactly_its_record() {
    use kith_protocol::contacts::Opened;
    let mut f = Fleet::new(3, 8);
    let records = f.exec(0, add("a@x.lit", Some("A"), &[]), T0);
    let contact = records
        .iter()
        .find(|r| {
            r.space == kith_protocol::record::Space::Contacts
                && matches!(
                    f.books[0].view().item(NodeKind::Contacts, &r.item),
                    Some((.., Ok(Payload::Contact(_))))
                )
        })
        .expect("the contact's record")
        .clone();
    let mut offered = match f.books[0].view().item(NodeKind::Contacts, &contact.item) {
        Some((.., Ok(Payload::Contact(c)))) => c,
        _ => unreachable!("found above"),
    };
    offered.name = Some("Offered".into());
    let offer = |signature| Opened {
        item: contact.item,
        version: contact.version,
        signature,
        payload: Payload::Contact(offered.clone()),
    };
    f.books[1].offer(vec![offer(contact.signature)]);
    let mut wrong = contact.signature;
    wrong[0] ^= 1;
    f.books[2].offer(vec![offer(wrong)]);
    f.sync(0, 1, T0);
    f.sync(0, 2, T0);
    let name = |b: &mut kith_protocol::contacts::Book| {
        b.view()
            .contacts()
            .next()
            .and_then(|c| c.contact.name.clone())
    };
    assert_eq!(name(&mut f.books[1]).as_deref(), Some("Offered"));
    assert_eq!(name(&mut f.books[2]).as_deref(), Some("A"));
}

/// Runs each job on a thread of its own, as the node's spread does.
#[derive(Debug)]
struct Threads;

impl kith_protocol::spread::Spread for Threads {
    fn width(&self) -> usize {
        3
    }

    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        std::thread::scope(|s| {
            for i in 0..n {
                s.spawn(move || job(i));
            }
        });
    }
}

/// Checking and signing a large command's writes on several threads changes
/// nothing: the same records, byte for byte, the same view, the same refusal.
#[test]
fn writes_spread_over_threads_are_the_records_written_in_order() {
    use kith_protocol::item::{Contact, Identity, MAX_VALUE_BYTES};
    let contact = |i: usize, name: String| Contact {
        name: Some(name),
        identities: vec![Identity::new("jid", &format!("c{i}@x.lit")).expect("valid")],
        ..Contact::default()
    };
    let import = |n: usize| Command::Import {
        contacts: (0..n).map(|i| contact(i, format!("C {i}"))).collect(),
        replace: false,
    };
    let mut in_order = Fleet::new(1, 9);
    let mut spread = Fleet::new(1, 9);
    spread.books[0]
        .editor_mut()
        .set_spread(std::sync::Arc::new(Threads));
    // More writes than one batch of sealing, and an edit, a rotation's reseal.
    for (cmd, least) in [
        (import(5000), 5000),
        (edit_name("c7@x.lit", "Seven"), 1),
        (Command::Reseal, 5000),
    ] {
        let a = in_order.exec(0, cmd.clone(), T0);
        let b = spread.exec(0, cmd, T0);
        assert!(a.len() >= least, "{} records", a.len());
        assert_eq!(a, b);
    }
    assert_eq!(in_order.books[0].view(), spread.books[0].view());
    // A contact over the limits far into a large import: the same error from the
    // check and from the command, and nothing written.
    let mut bad: Vec<Contact> = (5000..6000).map(|i| contact(i, format!("C {i}"))).collect();
    bad[900] = contact(5900, "n".repeat(MAX_VALUE_BYTES + 1));
    let bad_import = || Command::Import {
        contacts: bad.clone(),
        replace: false,
    };
    let held = spread.books[0].replica().len();
    let mut rngs = (in_order.rngs[0].clone(), spread.rngs[0].clone());
    let refused = (
        in_order.books[0].check(bad_import(), &mut rngs.0),
        spread.books[0].check(bad_import(), &mut rngs.1),
    );
    assert!(refused.0.is_err());
    assert_eq!(refused.0, refused.1);
    let written = spread.books[0].execute(bad_import(), T0, &mut rngs.1);
    assert_eq!(written.map(|_| ()), refused.1);
    assert_eq!(spread.books[0].replica().len(), held, "nothing written");
}

/// A group that comes into being, or goes, after the contacts that refer to it
/// changes only what they show as unknown groups: the view kept up step by step is
/// the one built from scratch at each step.
#[test]
fn a_group_arriving_or_going_after_its_contacts_updates_their_unknown_groups() {
    let mut f = Fleet::new(2, 13);
    f.exec(0, add("juliet@capulet.lit", None, &["Friends"]), T0);
    f.exec(
        0,
        add("romeo@montague.lit", None, &["Friends", "Verona"]),
        T0,
    );
    let space = |f: &Fleet, node: NodeKind| -> Vec<Record> {
        f.books[0].replica().space(node).cloned().collect()
    };
    let deliver = |f: &mut Fleet, records: Vec<Record>| {
        for r in records {
            f.books[1].receive(r, &f.roster, T0).expect("trusted");
        }
    };
    // How many groups each contact (Juliet, Romeo) names that no group defines.
    let unknown = |f: &mut Fleet| -> Vec<usize> {
        let book = &mut f.books[1];
        let kept = book.view().clone();
        let built = kith_protocol::contacts::View::build(
            book.replica(),
            book.keyring(),
            &mut kith_protocol::seal::Opener::new(),
        );
        assert_eq!(
            kept, built,
            "the view kept up is the one built from scratch"
        );
        let mut by_jid: Vec<(String, usize)> = kept
            .contacts()
            .map(|c| {
                (
                    c.contact.identities[0].value.clone(),
                    c.unknown_groups.len(),
                )
            })
            .collect();
        by_jid.sort();
        by_jid.into_iter().map(|(_, u)| u).collect()
    };
    // The contacts first: every group they name is unknown.
    let records = space(&f, NodeKind::Contacts);
    deliver(&mut f, records);
    assert_eq!(unknown(&mut f), [1, 2]);
    // Then the groups: none is.
    let records = space(&f, NodeKind::Groups);
    deliver(&mut f, records);
    assert_eq!(unknown(&mut f), [0, 0]);
    // A group removed on the other device, heard of before the contacts' edits:
    // the contacts that still name it show it as unknown, the others do not change.
    f.exec(
        0,
        Command::RemoveGroup {
            name: "Verona".into(),
        },
        WallTime(T0.0 + 1),
    );
    let records = space(&f, NodeKind::Groups);
    deliver(&mut f, records);
    assert_eq!(unknown(&mut f), [0, 1]);
    // And with the contacts' edits, none again.
    let records = space(&f, NodeKind::Contacts);
    deliver(&mut f, records);
    assert_eq!(unknown(&mut f), [0, 0]);
}

/// Two devices renaming one group apart: the newer name wins on both, the other is
/// listed as a conflict on both (not lost in silence), the group keeps every
/// contact, and a rename of the group, to either name, settles it.
#[test]
fn a_group_renamed_apart_on_two_devices_lists_the_name_that_lost() {
    let mut f = Fleet::new(2, 17);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.exec(0, add("juliet@capulet.lit", None, &["Work"]), t(0));
    f.sync_all(t(1));
    f.exec(0, rename("Work", "Office"), t(2));
    f.exec(1, rename("Work", "Job"), t(3));
    f.sync_all(t(4));
    for book in &mut f.books {
        let view = book.view();
        let names: Vec<&str> = group_names(view);
        assert_eq!(names, ["Job"], "the newer rename wins");
        let lost = lost_names(view);
        assert_eq!(lost, [("Job", "Office")], "the other is listed");
        let id = &view.groups().values().next().expect("one group").group.id;
        assert_eq!(view.contacts_in_group(id).count(), 2, "both contacts kept");
    }
    // A rename that knew both settles it: to the name that lost, on either device.
    f.exec(0, rename("Job", "Office"), t(5));
    f.sync_all(t(6));
    for book in &mut f.books {
        let view = book.view();
        assert!(view.group_conflicts().is_empty());
        let g = view.group_by_name("Office").expect("the name brought back");
        assert_eq!(view.contacts_in_group(&g.group.id).count(), 2);
    }
    // A rename made after the other was seen is an ordinary later edit.
    f.exec(1, rename("Office", "Team"), t(7));
    f.sync_all(t(8));
    f.exec(0, rename("Team", "Crew"), t(9));
    f.sync_all(t(10));
    for book in &mut f.books {
        assert!(book.view().group_conflicts().is_empty());
        assert!(book.view().group_by_name("Crew").is_some());
    }
    // Created apart under one name, alike: one group, no conflict.
    let group = |name: &str| Command::AddGroup {
        name: name.into(),
        description: None,
    };
    f.exec(0, group("Kin"), t(11));
    f.exec(1, group("Kin"), t(11));
    f.sync_all(t(12));
    for book in &mut f.books {
        assert!(book.view().group_conflicts().is_empty());
        assert_eq!(book.view().groups_named("Kin").len(), 1);
    }
}

/// A rewrite of every item (as after a key rotation, which runs on its own) keeps
/// a group's conflict listed, and made apart from a rename it does not undo it.
#[test]
fn a_rewrite_of_the_list_keeps_group_conflicts_and_loses_to_no_rename() {
    let mut f = Fleet::new(2, 18);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.sync_all(t(1));
    // A rename on one device, a later rewrite of the whole list on the other.
    f.exec(0, rename("Work", "Office"), t(2));
    f.exec(1, Command::Reseal, t(3));
    f.sync_all(t(4));
    for book in &mut f.books {
        let view = book.view();
        let names: Vec<&str> = group_names(view);
        assert_eq!(names, ["Office"], "the rename wins over the rewrite");
        assert!(view.group_conflicts().is_empty(), "the rename replaced it");
    }
    // Two renames apart, then a rewrite: the conflict is still listed, on both.
    f.exec(0, rename("Office", "Crew"), t(5));
    f.exec(1, rename("Office", "Team"), t(6));
    f.sync_all(t(7));
    f.exec(0, Command::Reseal, t(8));
    f.sync_all(t(9));
    for book in &mut f.books {
        let view = book.view();
        let lost = lost_names(view);
        assert_eq!(lost, [("Team", "Crew")]);
    }
}

/// A rename's new definition arriving before the reservation of the one it
/// replaced is no conflict: the definition names what it replaced.
#[test]
fn a_replaced_group_definition_is_no_conflict_before_its_reservation_arrives() {
    use kith_protocol::contacts::View;
    use kith_protocol::item::{Group, NodeKind, Payload, fields};
    use kith_protocol::record::{DeviceId, ItemId, Version};
    let v = |ms: u64| Version {
        hlc: kith_protocol::clock::Hlc {
            wall_ms: ms,
            counter: 0,
        },
        device: DeviceId([ms as u8; 32]),
    };
    let group = |name: &str, at: Version, replaces: &[(ItemId, Version)]| {
        let mut g = Group {
            id: "g-1".into(),
            name: name.into(),
            ..Group::default()
        };
        fields::set_group_edit(&mut g.extra, at, replaces);
        Payload::Group(g)
    };
    let (old, new) = (ItemId([1; 16]), ItemId([2; 16]));
    let knew = View::from_payloads([
        (NodeKind::Groups, old, v(1), group("Work", v(1), &[])),
        (
            NodeKind::Groups,
            new,
            v(2),
            group("Office", v(2), &[(old, v(1))]),
        ),
    ]);
    assert_eq!(knew.groups()["g-1"].group.name, "Office");
    assert!(knew.group_conflicts().is_empty());
    let apart = View::from_payloads([
        (NodeKind::Groups, old, v(1), group("Work", v(1), &[])),
        (NodeKind::Groups, new, v(2), group("Office", v(2), &[])),
    ]);
    assert_eq!(apart.group_conflicts().len(), 1);
    // A rewrite keeps the edit it carries: the newer record does not win by it.
    let rewritten = View::from_payloads([
        (NodeKind::Groups, old, v(9), group("Work", v(1), &[])),
        (NodeKind::Groups, new, v(2), group("Office", v(2), &[])),
    ]);
    assert_eq!(rewritten.groups()["g-1"].group.name, "Office");
}

/// A group an XMPP client publishes is marked as this device's edit: a mark the
/// client wrote (an edit far ahead, items it claims to replace) is not read.
#[test]
fn a_group_a_client_publishes_carries_the_edit_of_its_device() {
    use kith_protocol::item::fields;
    use kith_protocol::record::ItemId;
    use kith_protocol::seal::{self, DEFAULT_PAD_BUCKET};
    let mut f = Fleet::new(1, 19);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(19);
    let groups = f.books[0]
        .keyring()
        .current(NodeKind::Groups)
        .unwrap()
        .clone();
    let forged = format!(
        "<group xmlns='urn:xmpp:contacts:0' id='g-1' name='Kin'>\
         <edited xmlns='urn:kith:fields:0' at='{}:99999999999999.0'/></group>",
        "ab".repeat(32)
    );
    let item = ItemId::random(&mut rng);
    let sealed = seal::seal(&forged, &groups, DEFAULT_PAD_BUCKET, &mut rng);
    let now = WallTime(T0.0 + 5);
    f.books[0]
        .execute(
            Command::Publish {
                node: NodeKind::Groups,
                item,
                sealed,
            },
            now,
            &mut rng,
        )
        .expect("published");
    let view = f.books[0].view();
    let entry = &view.groups()["g-1"];
    let edit = fields::read_group_edit(&entry.group.extra).expect("marked");
    assert!(edit.at.hlc.wall_ms < 99_999_999_999_999, "{edit:?}");
    assert_eq!(entry.edited, edit.at);
    assert!(edit.replaces.is_empty());
    // Published again as it was read: the edit stays the one that set it.
    let again = seal::seal(
        "<group xmlns='urn:xmpp:contacts:0' id='g-1' name='Kin'/>",
        &groups,
        DEFAULT_PAD_BUCKET,
        &mut rng,
    );
    f.books[0]
        .execute(
            Command::Publish {
                node: NodeKind::Groups,
                item,
                sealed: again,
            },
            WallTime(T0.0 + 9),
            &mut rng,
        )
        .expect("published");
    assert_eq!(f.books[0].view().groups()["g-1"].edited, edit.at);
}

/// A rename that settles a conflict made apart from a rotation's rewrite of the
/// definition that lost: the conflict does not come back.
#[test]
fn a_settled_group_conflict_stays_settled_across_a_rewrite_made_apart() {
    let mut f = Fleet::new(2, 20);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.sync_all(t(1));
    f.exec(0, rename("Work", "Office"), t(2));
    f.exec(1, rename("Work", "Job"), t(3));
    f.sync_all(t(4));
    assert_eq!(lost_names(f.books[0].view()), [("Job", "Office")]);
    // Apart: one keeps the name the group has, the other rewrites the list later.
    f.exec(0, rename("Job", "Job"), t(5));
    f.exec(1, Command::Reseal, t(6));
    f.sync_all(t(7));
    settled(&mut f, &["Job"]);
}

/// Two devices (randomness from `seed`): Romeo in Work; device 0 removes the
/// group while device 1 renames it Office, apart; then they meet (at `T0 + 4`).
fn removed_while_renamed(seed: u64) -> Fleet {
    let mut f = Fleet::new(2, seed);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.sync_all(t(1));
    f.exec(0, rm("Work"), t(2));
    f.exec(1, rename("Work", "Office"), t(3));
    f.sync_all(t(4));
    f
}

/// A group removed on one device while another renames it apart: the rename keeps
/// the group and the removal is listed on both; a rename settles it, and so does
/// removing the group again; a group made again after a removal is no conflict.
#[test]
fn a_group_removed_apart_from_a_rename_lists_the_removal() {
    let mut f = removed_while_renamed(21);
    let t = |n: u64| WallTime(T0.0 + n);
    for book in &mut f.books {
        let view = book.view();
        assert_eq!(group_names(view), ["Office"], "the rename keeps the group");
        assert_eq!(lost_names(view), [("Office", "(removed)")]);
    }
    // Kept by a rename to the name it has.
    f.exec(1, rename("Office", "Office"), t(5));
    f.sync_all(t(6));
    settled(&mut f, &["Office"]);
    // Apart again, the other way: the removal is later than the rename.
    f.exec(1, rename("Office", "Crew"), t(7));
    f.exec(0, rm("Office"), t(8));
    f.sync_all(t(9));
    assert_eq!(lost_names(f.books[0].view()), [("Crew", "(removed)")]);
    // Removed again, knowing the rename: gone, nothing listed.
    f.exec(0, rm("Crew"), t(10));
    f.sync_all(t(11));
    settled(&mut f, &[]);
    // Made again under the name it first had (the id derived from it): no
    // conflict with the removal of that id.
    f.exec(
        1,
        Command::AddGroup {
            name: "Work".into(),
            description: None,
        },
        t(12),
    );
    f.sync_all(t(13));
    settled(&mut f, &["Work"]);
}

/// A rotation's rewrite made apart from a removal does not bring the group back,
/// nor, made apart from the rename that settled a removal, the conflict.
#[test]
fn a_rewrite_made_apart_undoes_no_removal_and_no_settling() {
    let mut f = Fleet::new(2, 22);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work", "Home"]), t(0));
    f.sync_all(t(1));
    f.exec(0, rm("Work"), t(2));
    f.exec(1, Command::Reseal, t(3));
    f.sync_all(t(4));
    for book in &mut f.books {
        assert_eq!(group_names(book.view()), ["Home"], "Work stays removed");
        assert!(book.view().group_conflicts().is_empty());
    }
    // A removal and a rename apart, listed; settled on one device while the other
    // rewrites the list.
    f.exec(0, rm("Home"), t(5));
    f.exec(1, rename("Home", "House"), t(6));
    f.sync_all(t(7));
    assert_eq!(lost_names(f.books[0].view()), [("House", "(removed)")]);
    f.exec(0, rename("House", "House"), t(8));
    f.exec(1, Command::Reseal, t(9));
    f.sync_all(t(10));
    settled(&mut f, &["House"]);
}

/// Three devices: a removal, a rename and a rotation's rewrite made apart, twice.
/// The first definition the rewrite brought back stays removed when the second
/// removal takes the first one's mark away: only the removal is listed.
#[test]
fn a_definition_removed_once_stays_removed_after_its_mark_goes() {
    let mut f = Fleet::new(3, 23);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.sync_all(t(1));
    f.exec(0, rm("Work"), t(2));
    f.exec(1, rename("Work", "Office"), t(3));
    f.exec(2, Command::Reseal, t(4));
    f.sync_all(t(5));
    for book in &mut f.books {
        assert_eq!(lost_names(book.view()), [("Office", "(removed)")]);
    }
    f.exec(0, rm("Office"), t(6));
    f.exec(1, rename("Office", "O2"), t(7));
    f.sync_all(t(8));
    for book in &mut f.books {
        let view = book.view();
        assert_eq!(group_names(view), ["O2"]);
        assert_eq!(lost_names(view), [("O2", "(removed)")]);
    }
    // Kept: settled, and the first definition does not come back.
    f.exec(2, rename("O2", "O2"), t(9));
    f.sync_all(t(10));
    settled(&mut f, &["O2"]);
}

/// `fields::gone_group_marks` reads each contact's gone group marks as its whole
/// stamps say.
fn gone_marks_read_quickly_as_whole(view: &kith_protocol::contacts::View) {
    use kith_protocol::item::fields;
    let mut some = false;
    for c in view.contacts() {
        let state = fields::State::of(&c.contact, c.version).expect("stamps read");
        let whole: Vec<(String, kith_protocol::record::Version)> = state
            .fields
            .into_iter()
            .filter_map(|(key, (mark, value))| match (key, value) {
                (fields::Key::Group(id), fields::Value::Gone) => Some((id, mark.at)),
                _ => None,
            })
            .collect();
        let mut quick = fields::gone_group_marks(&c.contact);
        quick.sort();
        some |= !quick.is_empty();
        assert_eq!(quick, whole);
    }
    assert!(some, "a contact with a gone group mark");
}

/// Every device lists exactly the groups `names`, and no group conflict.
fn settled(f: &mut Fleet, names: &[&str]) {
    for book in &mut f.books {
        let view = book.view();
        assert!(view.group_conflicts().is_empty(), "{:?}", lost_names(view));
        assert_eq!(group_names(view), names);
    }
}

/// The addresses of the contacts in the group named `name`, sorted.
fn members(view: &kith_protocol::contacts::View, name: &str) -> Vec<String> {
    let Some(entry) = view.groups().values().find(|g| g.group.name == name) else {
        return Vec::new();
    };
    let mut out: Vec<String> = view
        .contacts_in_group(&entry.group.id)
        .map(|c| c.contact.identities[0].value.clone())
        .collect();
    out.sort();
    out
}

/// A removal that lost to a rename made apart takes no contact out of the group:
/// the device whose definition was kept puts them back, once, with what was edited
/// apart; a removal that knows the rename then takes them out again.
#[test]
fn a_removal_that_lost_takes_no_contact_out_of_the_group() {
    let mut f = Fleet::new(2, 23);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["Work"]), t(0));
    f.exec(0, add("juliet@capulet.lit", None, &["Work", "Home"]), t(1));
    f.exec(0, add("tybalt@capulet.lit", None, &["Home"]), t(2));
    f.sync_all(t(3));
    f.exec(0, rm("Work"), t(4));
    f.exec(1, rename("Work", "Office"), t(5));
    f.exec(1, edit_name("romeo@montague.lit", "Romeo"), t(6));
    f.sync_all(t(7));
    for book in &mut f.books {
        let view = book.view();
        assert_eq!(lost_names(view), [("Office", "(removed)")]);
        assert_eq!(view.taken_out_by_lost_removals().len(), 2);
        gone_marks_read_quickly_as_whole(view);
    }
    // Only the device whose definition was kept writes.
    assert!(f.exec(0, Command::Settle, t(8)).is_empty());
    assert!(!f.exec(1, Command::Settle, t(8)).is_empty());
    f.sync_all(t(9));
    for book in &mut f.books {
        let view = book.view();
        assert_eq!(
            members(view, "Office"),
            ["juliet@capulet.lit", "romeo@montague.lit"]
        );
        assert_eq!(
            members(view, "Home"),
            ["juliet@capulet.lit", "tybalt@capulet.lit"]
        );
        let romeo = view
            .contact_by_jid(&jid("romeo@montague.lit"))
            .expect("romeo");
        assert_eq!(romeo.contact.name.as_deref(), Some("Romeo"));
        assert!(view.taken_out_by_lost_removals().is_empty());
        assert_eq!(lost_names(view), [("Office", "(removed)")], "still listed");
    }
    assert!(f.exec(1, Command::Settle, t(10)).is_empty(), "once");
    // Removed knowing the rename: gone with its contacts, nothing listed.
    f.exec(0, rm("Office"), t(11));
    f.sync_all(t(12));
    for book in &mut f.books {
        let view = book.view();
        assert_eq!(group_names(view), ["Home"]);
        assert!(view.group_conflicts().is_empty());
        assert!(view.taken_out_by_lost_removals().is_empty());
    }
    assert!(f.exec(1, Command::Settle, t(13)).is_empty());
}

/// A rename that keeps a group whose removal lost puts back the contacts the
/// removal took out, on whichever device it is made: the device of the kept
/// definition may not have done it yet.
#[test]
fn keeping_a_group_whose_removal_lost_puts_its_contacts_back() {
    let mut f = removed_while_renamed(24);
    let t = |n: u64| WallTime(T0.0 + n);
    // Kept on the device that removed it, before the other settled anything.
    f.exec(0, rename("Office", "Office"), t(5));
    f.sync_all(t(6));
    for book in &mut f.books {
        let view = book.view();
        assert!(view.group_conflicts().is_empty());
        assert_eq!(members(view, "Office"), ["romeo@montague.lit"]);
    }
    assert!(f.exec(1, Command::Settle, t(7)).is_empty());
}

/// A group renamed many times still names a removal made apart when a rename
/// settles it: the marks come before what earlier definitions replaced, which
/// only the first `MAX_REPLACED` of are written; a rewrite of the mark made apart
/// then lists nothing again.
#[test]
fn a_group_renamed_many_times_still_settles_a_removal() {
    let mut f = Fleet::new(2, 25);
    let t = |n: u64| WallTime(T0.0 + n);
    f.exec(0, add("romeo@montague.lit", None, &["G0"]), t(0));
    f.sync_all(t(0));
    for i in 1..=20u64 {
        f.exec(1, rename(&format!("G{}", i - 1), &format!("G{i}")), t(i));
        f.sync_all(t(i));
    }
    f.exec(0, rm("G20"), t(30));
    f.exec(1, rename("G20", "Last"), t(31));
    f.sync_all(t(32));
    assert_eq!(lost_names(f.books[0].view()), [("Last", "(removed)")]);
    f.exec(1, rename("Last", "Last"), t(33));
    f.exec(0, Command::Reseal, t(34));
    f.sync_all(t(35));
    settled(&mut f, &["Last"]);
}
