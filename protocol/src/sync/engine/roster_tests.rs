//! Renaming a device of the roster: the new name reaches every device, and a
//! revocation made meanwhile wins over a rename.

use super::harness::{Harness, jid};
use super::*;

fn device(h: &Harness, i: usize) -> DeviceId {
    DeviceId(h.sides[i].key.verifying_key().to_bytes())
}

fn name_at(h: &Harness, at: usize, of: DeviceId) -> String {
    h.sides[at]
        .engine
        .roster()
        .get(&of)
        .map(|m| m.entry.name.clone())
        .expect("a member")
}

#[test]
fn a_rename_reaches_the_other_device() {
    let mut h = Harness::new();
    h.connect(true);
    let b = device(&h, 1);
    h.execute(0, Command::RenameDevice(b, "phone".into()))
        .expect("renamed");
    h.pump();
    assert_eq!(name_at(&h, 0, b), "phone");
    assert_eq!(name_at(&h, 1, b), "phone");
    assert!(h.sides[1].engine.roster().is_active(&b), "still a member");
    assert!(matches!(
        h.execute(0, Command::RenameDevice(b, "x".repeat(300))),
        Err(Error::EntryTooLarge)
    ));
    let stranger = DeviceId([7; 32]);
    assert_eq!(
        h.execute(0, Command::RenameDevice(stranger, "x".into())),
        Err(Error::NoSuchDevice(stranger))
    );
}

#[test]
fn a_revocation_wins_over_a_later_rename() {
    // (A revocation outranks a later entry of its device whoever signed it:
    // `roster::tests`, "revocation wins over a later addition".)
    let mut h = Harness::new();
    h.connect(true);
    h.connect(false);
    let (a, b) = (device(&h, 0), device(&h, 1));
    // Apart: the genesis revokes b; later, b (not knowing) renames itself.
    h.execute(0, Command::RevokeDevice(b)).expect("revoked");
    h.mono += 5_000;
    h.execute(1, Command::RenameDevice(b, "tablet".into()))
        .expect("b does not know yet");
    h.connect(true);
    h.pump();
    let roster = h.sides[0].engine.roster();
    assert!(roster.get(&b).is_some_and(|m| m.revoked_at.is_some()));
    assert_eq!(name_at(&h, 0, b), "", "the rename did not bring it back");
    assert!(roster.is_active(&a));
    assert_eq!(
        h.execute(0, Command::RenameDevice(b, "again".into())),
        Err(Error::Revoked(b))
    );
}

/// Three devices, all connected, Juliet added on device 0 in group `group`.
fn three_with_juliet_in(group: &str) -> Harness {
    let mut h = Harness::with_sides(Config::default(), 3);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        h.connect_pair(a, b, true, &[a, b]);
    }
    h.execute(
        0,
        crate::contacts::Command::AddContact {
            jid: jid("juliet@capulet.lit"),
            name: None,
            groups: vec![group.into()],
        },
    )
    .expect("added");
    h
}

/// The addresses of the contacts in the group named `name` on side `i`.
fn in_group(h: &Harness, i: usize, name: &str) -> Vec<String> {
    let view = h.sides[i].engine.view();
    let Some(entry) = view.groups().values().find(|g| g.group.name == name) else {
        return Vec::new();
    };
    view.contacts_in_group(&entry.group.id)
        .map(|c| c.contact.identities[0].value.clone())
        .collect()
}

/// A group renamed on a device revoked afterwards, and removed apart on another:
/// the rename (made before the revocation) keeps the group, and as the revoked
/// device never puts back the contacts the removal took out, the active full
/// device with the smallest id does.
#[test]
fn the_contacts_a_revoked_device_would_put_back_are_put_back() {
    let mut h = three_with_juliet_in("Work");
    assert_eq!(in_group(&h, 2, "Work"), ["juliet@capulet.lit"]);
    // Device 0 apart; device 1 renames the group, which device 2 receives.
    h.connect_pair(0, 1, false, &[0, 1]);
    h.connect_pair(0, 2, false, &[0, 2]);
    h.execute(
        1,
        crate::contacts::Command::RenameGroup {
            name: "Work".into(),
            new_name: "Office".into(),
        },
    )
    .expect("renamed");
    assert_eq!(in_group(&h, 2, "Office"), ["juliet@capulet.lit"]);
    h.connect_pair(1, 2, false, &[1, 2]);
    // Device 0, apart, removes the group, then revokes device 1.
    h.mono += 1_000;
    h.execute(
        0,
        crate::contacts::Command::RemoveGroup {
            name: "Work".into(),
        },
    )
    .expect("removed");
    h.execute(0, Command::RevokeDevice(device(&h, 1)))
        .expect("revoked");
    h.connect_pair(0, 2, true, &[0, 2]);
    for i in [0, 2] {
        let view = h.sides[i].engine.view();
        assert_eq!(view.group_conflicts().len(), 1, "the removal is listed");
        assert_eq!(in_group(&h, i, "Office"), ["juliet@capulet.lit"], "on {i}");
    }
}

/// A group renamed by a device after its revocation (which it did not know of
/// yet) and then removed by a valid device that received the rename: once the
/// revocation sets the rename aside, the definition it replaced comes back, and
/// the removal, which knew that one was replaced, removes it too. Nothing is
/// listed. (And a rename instead of the removal lists no conflict.)
#[test]
fn a_removal_over_a_revoked_devices_rename_removes_what_that_rename_replaced() {
    for remove in [true, false] {
        let mut h = three_with_juliet_in("Friends");
        // Device 0, apart, revokes device 2, which then (not knowing) renames
        // the group; device 1 receives the rename and removes (or renames) it.
        h.connect_pair(0, 1, false, &[0, 1]);
        h.connect_pair(0, 2, false, &[0, 2]);
        h.execute(0, Command::RevokeDevice(device(&h, 2)))
            .expect("revoked");
        h.mono += 1_000;
        h.execute(
            2,
            crate::contacts::Command::RenameGroup {
                name: "Friends".into(),
                new_name: "Mates".into(),
            },
        )
        .expect("renamed");
        assert_eq!(in_group(&h, 1, "Mates"), ["juliet@capulet.lit"]);
        h.connect_pair(1, 2, false, &[1, 2]);
        let command = if remove {
            crate::contacts::Command::RemoveGroup {
                name: "Mates".into(),
            }
        } else {
            crate::contacts::Command::RenameGroup {
                name: "Mates".into(),
                new_name: "Clan".into(),
            }
        };
        h.execute(1, command).expect("written");
        h.connect_pair(0, 1, true, &[0, 1]);
        for i in [0, 1] {
            let view = h.sides[i].engine.view();
            let names: Vec<&str> = view
                .groups()
                .values()
                .map(|g| g.group.name.as_str())
                .collect();
            let expected: &[&str] = if remove { &[] } else { &["Clan"] };
            assert_eq!(names, expected, "on {i}");
            assert!(view.group_conflicts().is_empty(), "nothing listed on {i}");
        }
    }
}
