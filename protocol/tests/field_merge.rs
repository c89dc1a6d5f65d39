//! Field-level merge of concurrent edits (issue 10): the stories users hit, and the
//! property that no field change is lost unless a concurrent change of the same
//! field won, in any delivery order.

mod common;

use common::*;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::merge::ORIGIN;
use kith_protocol::contacts::{Command, ContactEdit, MergedContact};
use kith_protocol::item::fields::{Key, Seen, State, Value};
use kith_protocol::record::Version;
use proptest::prelude::*;

fn join(jid_: &str, group: &str) -> Command {
    Command::EditContact {
        jid: jid(jid_),
        edit: ContactEdit {
            add_groups: vec![group.to_owned()],
            ..ContactEdit::default()
        },
    }
}

fn leave(jid_: &str, group: &str) -> Command {
    Command::EditContact {
        jid: jid(jid_),
        edit: ContactEdit {
            remove_groups: vec![group.to_owned()],
            ..ContactEdit::default()
        },
    }
}

fn only(f: &mut Fleet, device: usize) -> MergedContact {
    let v = f.books[device].view();
    assert_eq!(v.contact_count(), 1, "one contact");
    v.contacts().next().expect("one contact").clone()
}

fn group_names(f: &mut Fleet, device: usize, c: &MergedContact) -> Vec<String> {
    let v = f.books[device].view();
    let mut names: Vec<String> = c
        .contact
        .groups
        .iter()
        .map(|g| v.groups()[&g.id].group.name.clone())
        .collect();
    names.sort();
    names
}

/// The desktop renames Juliet "Jules", the laptop later "Julia", apart; then they
/// meet.
fn renamed_apart(f: &mut Fleet) {
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Julia"),
        WallTime(T0.0 + 20),
    );
    f.sync_all(WallTime(T0.0 + 30));
}

/// A set up: Juliet on both devices, in sync.
fn juliet() -> Fleet {
    juliet_on(2, 7)
}

/// Juliet on `devices` devices (keys from `seed`), in sync.
fn juliet_on(devices: usize, seed: u64) -> Fleet {
    let mut f = Fleet::new(devices, seed);
    f.exec(0, add("juliet@capulet.lit", Some("Juliet"), &[]), T0);
    f.sync_all(T0);
    f
}

#[test]
fn a_rename_and_a_concurrent_group_join_are_both_kept() {
    let mut f = juliet();
    // The desktop, offline, renames her; the laptop, later, adds her to a group.
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Juliet Capulet"),
        WallTime(T0.0 + 10),
    );
    f.exec(1, join("juliet@capulet.lit", "Verona"), WallTime(T0.0 + 20));
    f.sync_all(WallTime(T0.0 + 30));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(
            c.contact.name.as_deref(),
            Some("Juliet Capulet"),
            "device {d}"
        );
        assert_eq!(group_names(&mut f, d, &c), ["Verona"], "device {d}");
        assert!(c.lost.is_empty(), "no conflict: different fields");
        assert!(c.unsettled, "two items until one device settles them");
    }
    // The device that wrote the newest item settles; the result is the same.
    let records = f.exec(1, Command::Settle, WallTime(T0.0 + 40));
    assert!(!records.is_empty());
    assert!(
        f.books[0].view().contacts().next().unwrap().unsettled,
        "not yet received"
    );
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(c.member_count(), 1);
        assert!(!c.unsettled);
        assert_eq!(c.contact.name.as_deref(), Some("Juliet Capulet"));
        assert_eq!(group_names(&mut f, d, &c), ["Verona"]);
    }
    assert!(
        f.exec(0, Command::Settle, WallTime(T0.0 + 60)).is_empty(),
        "nothing left to settle"
    );
}

#[test]
fn concurrent_renames_keep_one_and_list_the_other() {
    let mut f = juliet();
    renamed_apart(&mut f);
    let c = only(&mut f, 0);
    assert_eq!(
        c.contact.name.as_deref(),
        Some("Julia"),
        "the later edit wins"
    );
    assert_eq!(c.lost.len(), 1, "{:?}", c.lost);
    assert_eq!(c.lost[0].key, Key::Name);
    assert_eq!(c.lost[0].value, Value::Name("Jules".into()));
    assert_eq!(only(&mut f, 1), c, "the same on both devices");
    // Settled, the conflict stays listed: it is kept inside the contact.
    f.exec(1, Command::Settle, WallTime(T0.0 + 40));
    f.sync_all(WallTime(T0.0 + 50));
    let settled = only(&mut f, 0);
    assert_eq!(settled.member_count(), 1);
    assert_eq!(settled.lost, c.lost);
    // A later rename that saw both is no conflict.
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 60),
    );
    f.sync_all(WallTime(T0.0 + 70));
    let after = only(&mut f, 1);
    assert_eq!(after.contact.name.as_deref(), Some("Jules"));
    assert_eq!(after.lost, c.lost, "no new conflict");
}

#[test]
fn an_edit_made_without_knowing_of_a_deletion_keeps_the_contact_and_says_so() {
    let mut f = juliet();
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 10),
    );
    f.exec(1, join("juliet@capulet.lit", "Verona"), WallTime(T0.0 + 5));
    f.sync_all(WallTime(T0.0 + 30));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(group_names(&mut f, d, &c), ["Verona"]);
        assert!(
            c.lost
                .iter()
                .any(|l| l.key == Key::Contact && l.value == Value::Gone),
            "the deletion is listed as lost on device {d}: {:?}",
            c.lost
        );
    }
}

#[test]
fn a_removed_identity_does_not_come_back_and_the_contact_stays_one() {
    let mut f = juliet();
    let add_jid = Command::EditContact {
        jid: jid("juliet@capulet.lit"),
        edit: ContactEdit {
            add_jids: vec![jid("jc@capulet.lit")],
            remove_jids: vec![jid("juliet@capulet.lit")],
            ..ContactEdit::default()
        },
    };
    f.exec(0, add_jid, WallTime(T0.0 + 10));
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 20),
    );
    f.sync_all(WallTime(T0.0 + 30));
    let c = only(&mut f, 1);
    let ids: Vec<&str> = c
        .contact
        .identities
        .iter()
        .map(|i| i.value.as_str())
        .collect();
    assert_eq!(ids, ["jc@capulet.lit"], "the removal holds");
    assert_eq!(c.contact.name.as_deref(), Some("Jules"), "the rename holds");
}

#[test]
fn a_rotation_rewrite_never_beats_an_edit() {
    let mut f = juliet();
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    // Later by the clock, without the rename: a rewrite of everything.
    f.exec(0, Command::Reseal, WallTime(T0.0 + 20));
    f.sync_all(WallTime(T0.0 + 30));
    assert_eq!(only(&mut f, 0).contact.name.as_deref(), Some("Jules"));
    assert!(only(&mut f, 0).lost.is_empty());
}

/// Copies of one contact written at once on several devices (a rotation resealed
/// on each, say) say the same thing: settling retracts all but the newest and
/// writes nothing new. Settles that cross (each device retracting what it knows)
/// then end in that one item, instead of each writing a new item for the others
/// to settle again (the storm once seen after two revocations on six devices).
#[test]
fn copies_of_a_contact_written_at_once_settle_by_retraction() {
    let mut f = juliet_on(3, 7);
    f.exec(0, Command::Reseal, WallTime(T0.0 + 10));
    f.exec(1, Command::Reseal, WallTime(T0.0 + 20));
    // Device 2 reseals too, later by the clock, before it hears of the others.
    f.exec(2, Command::Reseal, WallTime(T0.0 + 30));
    let newest = only(&mut f, 2).id;
    f.sync(0, 1, WallTime(T0.0 + 40));
    f.sync(1, 0, WallTime(T0.0 + 40));
    let held = only(&mut f, 1);
    assert!(held.unsettled, "two copies: {held:?}");
    let holder = held.holder.expect("the newest copy holds the merge");
    assert_eq!(
        holder,
        held.members().max_by_key(|m| m.1).expect("members").0
    );
    // Device 1 wrote the newest copy it knows of: it retracts the other.
    f.exec(1, Command::Settle, WallTime(T0.0 + 50));
    let settled = only(&mut f, 1);
    assert_eq!(settled.member_count(), 1, "{settled:?}");
    assert_eq!(
        settled.members().next().expect("a member").0,
        holder,
        "no new item"
    );
    assert!(!settled.unsettled);
    // Device 2 hears of both only now: its own copy is newest, so it retracts the
    // others in turn, again without a new item; device 1's retraction crosses it.
    f.sync(0, 2, WallTime(T0.0 + 60));
    f.exec(2, Command::Settle, WallTime(T0.0 + 70));
    f.sync_all(WallTime(T0.0 + 80));
    for d in 0..3 {
        let c = only(&mut f, d);
        assert_eq!(c.member_count(), 1, "device {d}: {c:?}");
        assert_eq!(c.id, newest, "device {d} keeps device 2's copy");
        assert!(!c.unsettled, "device {d}");
        assert_eq!(c.contact.name.as_deref(), Some("Juliet"));
        // Nothing is left for anyone to settle.
        let written = f.exec(d, Command::Settle, WallTime(T0.0 + 90));
        assert!(
            written.is_empty(),
            "device {d} wrote {} records",
            written.len()
        );
    }
}

/// Two devices rename Juliet to the same name apart; a third deletes her having
/// seen only the later rename. The earlier rename is an edit the deletion did not
/// see, so she stays (listed as a conflict), whether the deletion arrives before
/// or after the settle: the settle keeps what both renames saw, it does not just
/// retract the earlier copy.
#[test]
fn a_settle_keeps_what_each_item_saw_for_a_later_deletion() {
    let mut f = juliet_on(3, 7);
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 20),
    );
    f.sync(1, 2, WallTime(T0.0 + 25));
    f.exec(
        2,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 30),
    );
    f.sync(0, 1, WallTime(T0.0 + 40));
    let both = only(&mut f, 1);
    assert!(both.unsettled);
    assert_eq!(both.holder, None, "the newest rename did not see the other");
    f.exec(1, Command::Settle, WallTime(T0.0 + 50));
    f.sync_all(WallTime(T0.0 + 60));
    for d in 0..3 {
        let c = only(&mut f, d);
        assert_eq!(c.contact.name.as_deref(), Some("Jules"), "device {d}");
        assert!(
            c.lost.iter().any(|l| l.key == Key::Contact),
            "device {d} lists the deletion: {:?}",
            c.lost
        );
    }
}

/// A contact whose deletion an edit overruled carries that conflict; copies of it
/// written at once still settle by retraction (the conflict's winner, the newest
/// item, is the one thing no copy can carry).
#[test]
fn copies_of_a_contact_with_an_overruled_deletion_settle_by_retraction() {
    let mut f = juliet_on(3, 7);
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 10),
    );
    f.exec(1, join("juliet@capulet.lit", "Verona"), WallTime(T0.0 + 20));
    f.sync_all(WallTime(T0.0 + 30));
    f.exec(1, Command::Settle, WallTime(T0.0 + 40));
    f.sync_all(WallTime(T0.0 + 50));
    assert!(!only(&mut f, 0).unsettled);
    f.exec(0, Command::Reseal, WallTime(T0.0 + 60));
    f.exec(2, Command::Reseal, WallTime(T0.0 + 70));
    f.sync(0, 2, WallTime(T0.0 + 80));
    let copies = only(&mut f, 2);
    assert!(copies.unsettled, "{copies:?}");
    let holder = copies.holder.expect("the newest copy holds the merge");
    f.exec(2, Command::Settle, WallTime(T0.0 + 90));
    f.sync_all(WallTime(T0.0 + 100));
    for d in 0..3 {
        let c = only(&mut f, d);
        assert_eq!(c.id, holder, "device {d}: no new item");
        assert!(!c.unsettled, "device {d}");
        assert!(c.lost.iter().any(|l| l.key == Key::Contact), "device {d}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Rename { dev: usize, k: usize, name: usize },
    Join { dev: usize, k: usize, g: usize },
    Leave { dev: usize, k: usize, g: usize },
    Settle { dev: usize },
    Sync { from: usize, to: usize },
}

const DEVICES: usize = 3;
const CONTACTS: [&str; 2] = ["a@x.lit", "b@x.lit"];
const NAMES: [&str; 3] = ["Ann", "Bob", "Cy"];
const GROUPS: [&str; 2] = ["Family", "Work"];

fn op() -> impl Strategy<Value = Op> {
    let dev = 0..DEVICES;
    prop_oneof![
        (dev.clone(), 0..CONTACTS.len(), 0..NAMES.len()).prop_map(|(dev, k, name)| Op::Rename {
            dev,
            k,
            name
        }),
        (dev.clone(), 0..CONTACTS.len(), 0..GROUPS.len()).prop_map(|(dev, k, g)| Op::Join {
            dev,
            k,
            g
        }),
        (dev.clone(), 0..CONTACTS.len(), 0..GROUPS.len()).prop_map(|(dev, k, g)| Op::Leave {
            dev,
            k,
            g
        }),
        dev.clone().prop_map(|dev| Op::Settle { dev }),
        (dev.clone(), dev).prop_map(|(from, to)| Op::Sync { from, to }),
    ]
}

/// The marks of the contact with `jid` on `device`.
fn marks(f: &mut Fleet, device: usize, jid_: &str) -> State {
    let v = f.books[device].view();
    let c = v
        .contact_by_jid(&jid(jid_))
        .expect("contacts are never deleted here");
    State::of(&c.contact, ORIGIN).expect("stamps kith wrote read back")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_field_change_is_lost_unless_a_concurrent_one_won(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let mut f = Fleet::new(DEVICES, 11);
        for (k, j) in CONTACTS.iter().enumerate() {
            f.exec(0, add(j, Some(NAMES[k]), &[]), T0);
        }
        f.exec(0, Command::AddGroup { name: GROUPS[0].into(), description: None }, T0);
        f.exec(0, Command::AddGroup { name: GROUPS[1].into(), description: None }, T0);
        f.sync_all(T0);
        // Every field change made: (contact, field, stamp, value, what its device
        // knew of the contact's edits when it made it).
        let mut made: Vec<(usize, Key, Version, Value, Seen)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            let now = WallTime(T0.0 + 10 * (step as u64 + 1));
            let (dev, k, cmd) = match op {
                Op::Rename { dev, k, name } => (dev, k, edit_name(CONTACTS[k], NAMES[name])),
                Op::Join { dev, k, g } => (dev, k, join(CONTACTS[k], GROUPS[g])),
                Op::Leave { dev, k, g } => (dev, k, leave(CONTACTS[k], GROUPS[g])),
                Op::Settle { dev } => {
                    let _ = f.books[dev].execute(Command::Settle, now, &mut f.rngs[dev]);
                    continue;
                }
                Op::Sync { from, to } => {
                    if from != to {
                        f.sync(from, to, now);
                    }
                    continue;
                }
            };
            let before = marks(&mut f, dev, CONTACTS[k]);
            if f.books[dev].execute(cmd, now, &mut f.rngs[dev]).is_err() {
                continue;
            }
            let after = marks(&mut f, dev, CONTACTS[k]);
            for (key, (mark, value)) in &after.fields {
                if before.fields.get(key).map(|b| b.0) != Some(*mark) {
                    made.push((k, key.clone(), mark.at, value.clone(), before.seen.clone()));
                }
            }
        }
        f.sync_all(WallTime(T0.0 + 100_000));
        let view = f.books[0].view().clone();
        for d in 1..DEVICES {
            prop_assert_eq!(f.books[d].view(), &view, "device {} differs", d);
        }
        for (k, j) in CONTACTS.iter().enumerate() {
            let state = marks(&mut f, 0, j);
            let mut latest: std::collections::BTreeMap<&Key, (Version, &Value)> = Default::default();
            for (mk, key, at, value, _) in &made {
                if *mk == k && latest.get(key).is_none_or(|(v, _)| at > v) {
                    latest.insert(key, (*at, value));
                }
            }
            for (key, (at, value)) in latest {
                let got = state.fields.get(key);
                prop_assert!(
                    got.is_some_and(|(m, v)| m.at == at && v == value),
                    "{}: field {:?} should be {:?} (set at {:?}), is {:?}", j, key, value, at, got
                );
            }
            // Every change that lost did so to a change made knowing of it, or is
            // listed as a conflict.
            if state.lost.len() < kith_protocol::item::fields::MAX_LOST {
                for (mk, key, at, value, _) in made.iter().filter(|m| m.0 == k) {
                    let Some((m, v)) = state.fields.get(key) else { continue };
                    if m.at == *at || v == value {
                        continue;
                    }
                    // Overwritten knowingly: a later edit of the field was made by a
                    // device that knew of this value (set by this edit or another).
                    let same_value: Vec<Version> = made
                        .iter()
                        .filter(|(k2, key2, _, v2, _)| k2 == mk && key2 == key && v2 == value)
                        .map(|m| m.2)
                        .collect();
                    let overwritten_knowingly = made.iter().any(|(k2, key2, at2, _, knew)| {
                        k2 == mk && key2 == key && at2 > at
                            && same_value
                                .iter()
                                .any(|e| knew.get(&e.device).is_some_and(|s| s >= e))
                    });
                    // Listed: this edit, or the same value set again by another
                    // (the two were one value to the merge).
                    let listed = state
                        .lost
                        .iter()
                        .any(|l| l.key == *key && (l.at == *at || l.value == *value));
                    prop_assert!(
                        overwritten_knowingly || listed,
                        "{}: {:?} = {:?} at {:?} lost in silence; lost: {:?}", j, key, value, at, state.lost
                    );
                }
            }
        }
    }
}

#[test]
fn an_old_item_a_deletion_knew_of_stays_deleted_whatever_arrives_first() {
    use kith_protocol::item::NodeKind;
    let mut f = Fleet::new(3, 9);
    f.exec(0, add("juliet@capulet.lit", None, &[]), T0);
    f.sync_all(T0);
    let first = only(&mut f, 0).id;
    // Device 1 renames her (a new item, the first retracted); device 2 learns of it
    // and deletes her.
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    f.sync(1, 2, WallTime(T0.0 + 11));
    let renamed = only(&mut f, 2).id;
    assert_ne!(renamed, first);
    let deletion = f.exec(
        2,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 20),
    );
    // Device 0 gets the deletion before the rename and the retraction of its item.
    for r in deletion {
        f.books[0]
            .receive(r, &f.roster, WallTime(T0.0 + 30))
            .expect("trusted");
    }
    assert!(
        f.books[0].view().is_live(NodeKind::Contacts, &first),
        "its old item is still there"
    );
    assert_eq!(
        f.books[0].view().contact_count(),
        0,
        "the deletion knew of it: she is gone, not back with the old data"
    );
    assert!(
        f.exec(0, Command::Settle, WallTime(T0.0 + 40)).is_empty(),
        "nothing to settle"
    );
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..3 {
        assert_eq!(f.books[d].view().contact_count(), 0, "device {d}");
    }
}

#[test]
fn a_lost_value_is_restored_as_a_new_edit() {
    let mut f = juliet();
    renamed_apart(&mut f);
    assert_eq!(only(&mut f, 0).lost.len(), 1);
    let restore = |n| Command::Restore {
        jid: jid("juliet@capulet.lit"),
        n,
    };
    assert!(
        f.books[0]
            .execute(restore(2), WallTime(T0.0 + 35), &mut f.rngs[0])
            .is_err(),
        "there is one conflict"
    );
    f.exec(0, restore(1), WallTime(T0.0 + 40));
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(c.contact.name.as_deref(), Some("Jules"), "device {d}");
        assert!(c.lost.is_empty(), "resolved on device {d}: {:?}", c.lost);
    }
}

#[test]
fn restoring_an_overruled_deletion_deletes() {
    let mut f = juliet();
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 10),
    );
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 5),
    );
    f.sync_all(WallTime(T0.0 + 30));
    let c = only(&mut f, 0);
    let n = c
        .lost
        .iter()
        .position(|l| l.key == Key::Contact)
        .expect("listed")
        + 1;
    f.exec(
        0,
        Command::Restore {
            jid: jid("juliet@capulet.lit"),
            n,
        },
        WallTime(T0.0 + 40),
    );
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..2 {
        assert_eq!(f.books[d].view().contact_count(), 0, "device {d}");
    }
}

#[test]
fn an_edit_lost_to_a_later_edit_of_a_device_that_never_saw_it_is_listed() {
    let mut f = juliet();
    // The desktop renames her while the laptop renames her twice, the second
    // rename retracting the first item: the desktop's value loses to an edit
    // whose parent is newer than it, yet that edit never knew of it.
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Julia"),
        WallTime(T0.0 + 15),
    );
    f.exec(
        1,
        edit_name("juliet@capulet.lit", "Juliet"),
        WallTime(T0.0 + 20),
    );
    f.sync_all(WallTime(T0.0 + 30));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(c.contact.name.as_deref(), Some("Juliet"));
        assert!(
            c.lost
                .iter()
                .any(|l| l.key == Key::Name && l.value == Value::Name("Jules".into())),
            "device {d}: {:?}",
            c.lost
        );
    }
}

#[test]
fn a_deletion_earlier_by_the_clock_than_a_concurrent_edit_is_listed_too() {
    let mut f = juliet();
    f.exec(
        0,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 5),
    );
    f.exec(1, join("juliet@capulet.lit", "Verona"), WallTime(T0.0 + 10));
    f.sync_all(WallTime(T0.0 + 30));
    for d in 0..2 {
        let c = only(&mut f, d);
        assert_eq!(group_names(&mut f, d, &c), ["Verona"]);
        assert!(
            c.lost.iter().any(|l| l.key == Key::Contact),
            "device {d}: {:?}",
            c.lost
        );
    }
    // A rotation rewrites everything: the deletion is still listed.
    f.exec(0, Command::Reseal, WallTime(T0.0 + 40));
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..2 {
        let lost = only(&mut f, d).lost;
        assert_eq!(
            lost.iter().filter(|l| l.key == Key::Contact).count(),
            1,
            "the same deletion once, not once more per rewrite: {lost:?}"
        );
    }
}

#[test]
fn a_collapse_does_not_escape_a_deletion_that_knew_what_it_collapsed() {
    let mut f = juliet_on(3, 13);
    f.exec(
        0,
        edit_name("juliet@capulet.lit", "Jules"),
        WallTime(T0.0 + 10),
    );
    f.exec(1, join("juliet@capulet.lit", "Verona"), WallTime(T0.0 + 20));
    // Device 2 sees both edits and deletes her; device 1 (the newest item) settles
    // the two edits before it hears of the deletion.
    f.sync(0, 2, WallTime(T0.0 + 21));
    f.sync(1, 2, WallTime(T0.0 + 21));
    f.exec(
        2,
        Command::RemoveContact {
            jid: jid("juliet@capulet.lit"),
        },
        WallTime(T0.0 + 30),
    );
    f.sync(0, 1, WallTime(T0.0 + 31));
    assert!(!f.exec(1, Command::Settle, WallTime(T0.0 + 40)).is_empty());
    f.sync_all(WallTime(T0.0 + 50));
    for d in 0..3 {
        assert_eq!(f.books[d].view().contact_count(), 0, "device {d}");
    }
    // The collapsed item the deletion made obsolete is retracted by the deleting
    // device, so nothing is left to bring her back once the mark goes.
    assert_eq!(f.books[0].view().obsolete().count(), 1);
    assert!(!f.exec(2, Command::Settle, WallTime(T0.0 + 60)).is_empty());
    f.sync_all(WallTime(T0.0 + 70));
    for d in 0..3 {
        assert_eq!(f.books[d].view().obsolete().count(), 0, "device {d}");
    }
}

/// Two devices add Juliet apart (two items, two contact ids); the laptop, having
/// seen both, renames her (one item, the smaller id, the other kept as an alias); a
/// third device that knew only one of the two items deletes her, without knowing of
/// the rename. The rename keeps her, and every device lists the deletion as
/// overruled, whichever id the deletion named.
#[test]
fn a_deletion_of_one_item_merged_apart_into_a_renamed_contact_is_listed_everywhere() {
    for seed in 0..6 {
        let mut f = Fleet::new(3, seed);
        f.exec(0, add("juliet@capulet.lit", Some("Juliet"), &[]), T0);
        f.exec(1, add("juliet@capulet.lit", None, &[]), WallTime(T0.0 + 1));
        f.sync(1, 2, WallTime(T0.0 + 2));
        f.sync(0, 1, WallTime(T0.0 + 3));
        f.exec(
            1,
            edit_name("juliet@capulet.lit", "Jules"),
            WallTime(T0.0 + 10),
        );
        f.exec(
            2,
            Command::RemoveContact {
                jid: jid("juliet@capulet.lit"),
            },
            WallTime(T0.0 + 20),
        );
        f.sync_all(WallTime(T0.0 + 30));
        for d in 0..3 {
            let c = only(&mut f, d);
            assert_eq!(
                c.contact.name.as_deref(),
                Some("Jules"),
                "seed {seed}, device {d}"
            );
            assert!(
                c.lost
                    .iter()
                    .any(|l| l.key == Key::Contact && l.value == Value::Gone),
                "seed {seed}: the deletion is listed as lost on device {d}: {:?}",
                c.lost
            );
        }
    }
}
