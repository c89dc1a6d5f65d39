//! Two engines wired to each other in memory (`harness`): commands, typed
//! refusals, gossip and reconciliation, and a restart from exactly what an engine
//! persisted.

use crate::roster::{Entry, Role};

use super::harness::{Harness, jid, now};
use super::*;
use crate::contacts::{Command as Edit, ContactEdit};
use crate::item::NodeKind;

fn rename(j: &str, name: &str) -> Edit {
    Edit::EditContact {
        jid: jid(j),
        edit: ContactEdit {
            name: Some(Some(name.into())),
            ..ContactEdit::default()
        },
    }
}

#[test]
fn commands_are_refused_with_a_typed_error_and_write_nothing() {
    let mut h = Harness::new();
    let before = h.sides[0].records.len();
    let stranger = DeviceId([9; 32]);
    assert_eq!(
        h.execute(0, Command::RevokeDevice(stranger)),
        Err(Error::NoSuchDevice(stranger))
    );
    assert!(matches!(
        h.execute(0, rename("nobody@x.lit", "N")),
        Err(Error::Contacts(crate::contacts::Error::NoSuchContact(_)))
    ));
    assert_eq!(h.sides[0].records.len(), before, "nothing persisted");
    let device = h.sides[1].engine.device();
    h.execute(0, Command::RevokeDevice(device))
        .expect("a revocation");
    assert_eq!(
        h.execute(
            0,
            Command::AddDevice(Entry {
                device,
                cert: Vec::new(),
                name: String::new(),
                role: Role::Full,
                revoked: false,
            })
        ),
        Err(Error::Revoked(device))
    );
}

#[test]
fn concurrent_edits_of_different_fields_meet_and_settle() {
    let mut h = Harness::new();
    h.connect(true);
    h.execute(
        0,
        Edit::AddContact {
            jid: jid("juliet@capulet.lit"),
            name: Some("Juliet".into()),
            groups: vec![],
        },
    )
    .expect("added");
    assert_eq!(h.sides[1].engine.view().contact_count(), 1, "gossiped");
    h.connect(false);
    h.execute(0, rename("juliet@capulet.lit", "Juliet Capulet"))
        .expect("renamed");
    h.mono += 10;
    let join = Edit::EditContact {
        jid: jid("juliet@capulet.lit"),
        edit: ContactEdit {
            add_groups: vec!["Verona".into()],
            ..ContactEdit::default()
        },
    };
    h.execute(1, join).expect("joined");
    h.connect(true);
    for s in &h.sides {
        let v = s.engine.view();
        let c = v.contacts().next().expect("Juliet");
        assert_eq!(c.contact.name.as_deref(), Some("Juliet Capulet"));
        assert_eq!(c.contact.groups.len(), 1);
        assert_eq!(
            c.member_count(),
            1,
            "settled by the device of the newest item"
        );
        assert!(c.lost.is_empty());
    }
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
}

#[test]
fn a_rotation_hands_out_the_keyring_and_a_restart_is_the_same_device() {
    let mut h = Harness::new();
    h.connect(true);
    h.execute(
        0,
        Edit::AddContact {
            jid: jid("romeo@montague.lit"),
            name: None,
            groups: vec![],
        },
    )
    .expect("added");
    let before = h.sides[1].keyring.clone();
    h.execute(0, Command::RotateSecrets).expect("rotated");
    assert_ne!(h.sides[0].keyring, before, "the new keyring was handed out");
    assert_eq!(
        h.sides[1].keyring,
        *h.sides[1].engine.keyring(),
        "and the other device's too, as it received the secrets"
    );
    for i in 0..2 {
        let view = h.sides[i].engine.view().clone();
        let keyring = h.sides[i].engine.keyring().clone();
        h.restart(i);
        assert_eq!(*h.sides[i].engine.keyring(), keyring, "device {i}");
        assert_eq!(*h.sides[i].engine.view(), view, "device {i}");
    }
    assert_eq!(h.genesis(), h.sides[0].engine.device());
}

#[test]
fn the_roster_and_secrets_go_first_and_each_record_once() {
    let mut h = Harness::new();
    for j in ["a@x.lit", "b@x.lit", "c@x.lit"] {
        h.execute(
            0,
            Edit::AddContact {
                jid: jid(j),
                name: None,
                groups: vec!["G".into()],
            },
        )
        .expect("added");
    }
    // New secrets, sealed to each device, and the contacts sealed under them.
    h.execute(0, Command::RotateSecrets).expect("rotated");
    h.carried.clear();
    h.connect(true);
    // Tombstones of the nodes and `<reserved/>` groups go last (`take_owed`); the
    // rest by space.
    let replica = h.sides[0].engine.replica();
    let view = h.sides[0].engine.view().clone();
    // (A tombstone collected since is no longer among the winners.)
    let dead = |(space, item): &(Space, ItemId)| {
        space.node().is_some() && replica.get(*space, item).is_none_or(|r| r.is_tombstone())
            || *space == Space::Groups && view.is_reserved(NodeKind::Groups, item)
    };
    let sent_in_order: Vec<&(Space, ItemId)> = h
        .carried
        .iter()
        .filter(|(from, _)| *from == 0)
        .flat_map(|(_, records)| records)
        .collect();
    let first_dead = sent_in_order.iter().position(|k| dead(k));
    if let Some(at) = first_dead {
        assert!(
            sent_in_order[at..].iter().all(|k| dead(k)),
            "tombstones and reserved groups last"
        );
    }
    let frames: Vec<Vec<Space>> = h
        .carried
        .iter()
        .filter(|(from, records)| *from == 0 && !records.is_empty())
        .map(|(_, records)| {
            records
                .iter()
                .filter(|k| !dead(k))
                .map(|(space, _)| *space)
                .collect()
        })
        .filter(|spaces: &Vec<Space>| !spaces.is_empty())
        .collect();
    let first = frames.first().expect("records were sent");
    assert!(first.contains(&Space::Keys), "{first:?}");
    // The roster and the secrets in frames of their own: the receiver applies them
    // before it checks the next frame.
    let opens_others = |s: &Space| matches!(s, Space::Roster | Space::Keys);
    for spaces in &frames {
        assert!(
            spaces.iter().all(opens_others) || !spaces.iter().any(opens_others),
            "the roster and the secrets alone: {spaces:?}"
        );
    }
    let rank = |s: &Space| session::SEND_ORDER.iter().position(|o| o == s);
    for spaces in &frames {
        assert!(
            spaces.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
            "roster, then secrets, then the nodes: {spaces:?}"
        );
    }
    // The groups before the contacts in them: each contact is merged once, with
    // its groups known.
    let live: Vec<Space> = sent_in_order
        .iter()
        .filter(|k| !dead(k))
        .map(|(space, _)| *space)
        .collect();
    let last_group = live.iter().rposition(|s| *s == Space::Groups);
    let first_contact = live.iter().position(|s| *s == Space::Contacts);
    assert!(
        matches!((last_group, first_contact), (Some(g), Some(c)) if g < c),
        "groups, then contacts: {live:?}"
    );
    // Both sides start a reconciliation on connecting; each record went once.
    let distinct: BTreeSet<_> = sent_in_order.iter().collect();
    assert_eq!(sent_in_order.len(), distinct.len(), "sent twice");
    assert_eq!(h.sides[1].engine.stats().duplicate_records, 0);
    assert_eq!(h.sides[1].engine.view().contact_count(), 3);
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
}

/// Side 0 holds two contacts side 1 lacks; a request or a response from side 0
/// carrying them is lost on the way: they arrive all the same, at once (not after
/// `RESEND_AFTER_MS` or a periodic reconciliation), and none twice.
fn lose_one_frame_of_records(requests: usize, responses: usize) {
    let mut h = Harness::new();
    for j in ["a@x.lit", "b@x.lit"] {
        h.execute(
            0,
            Edit::AddContact {
                jid: jid(j),
                name: None,
                groups: vec![],
            },
        )
        .expect("added");
    }
    let start = h.mono;
    h.lose_requests = requests;
    h.lose_responses = responses;
    h.watch = Some((1, 2));
    if responses > 0 {
        // Side 1 asks first: side 0 answers with the records, in a response.
        h.connect_seen_by(true, &[1]);
    } else {
        h.connect(true);
    }
    assert_eq!(
        (h.lose_requests, h.lose_responses),
        (0, 0),
        "a frame carrying records was lost"
    );
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    let at = h.reached_at.expect("delivered") - start;
    assert!(
        at < RESEND_AFTER_MS,
        "delivered within the burst, at {at} ms"
    );
    assert_eq!(h.sides[1].engine.stats().duplicate_records, 0);
}

/// A rotation writes every contact as a new item and retracts the old one. A
/// device that gets them by reconciliation, in many frames, is sent the new items
/// before the retractions: no contact disappears from its list on the way.
#[test]
fn a_reseal_by_reconciliation_hides_no_contact_on_the_way() {
    for defer_frames in [false, true] {
        reseal_by_reconciliation(defer_frames);
    }
}

/// [`a_reseal_by_reconciliation_hides_no_contact_on_the_way`], with frames that
/// ask nothing answered before they are applied or not.
fn reseal_by_reconciliation(defer_frames: bool) {
    let mut h = Harness::with_config(Config {
        frame_record_bytes: 2_000,
        defer_frames,
        ..Config::default()
    });
    h.add_contacts(0, 40);
    h.connect(true);
    assert_eq!(h.sides[1].engine.view().contact_count(), 40);
    h.connect(false);
    h.execute(0, Command::RotateSecrets).expect("rotated");
    h.carried.clear();
    h.low_water = Some(40);
    h.connect(true);
    let frames = h
        .carried
        .iter()
        .filter(|(from, records)| *from == 0 && !records.is_empty())
        .count();
    assert!(frames >= 4, "the reseal came in {frames} frames");
    assert_eq!(h.sides[1].engine.view().contact_count(), 40);
    assert_eq!(h.low_water, Some(40), "a contact disappeared on the way");
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    // With deferring asked for, frames did wait (the count is since the start).
    let deferred = h.sides[1].engine.stats().deferred_frames;
    assert_eq!(deferred > 0, defer_frames, "{deferred} frames deferred");
}

/// With `defer_frames`, a frame of records that asks nothing, more to come, is
/// answered before it is applied: the answer leaves while the frame waits, every
/// record arrives once, and both sides end as without deferring, also after a
/// restart from what was persisted.
#[test]
fn frames_that_ask_nothing_are_answered_first_and_applied_after() {
    let run = |defer: bool| {
        let mut h = Harness::with_config(Config {
            defer_frames: defer,
            frame_record_bytes: 2_000,
            ..Config::default()
        });
        for i in 0..40 {
            h.execute(
                0,
                Edit::AddContact {
                    jid: jid(&format!("c{i}@x.lit")),
                    name: Some(format!("C{i}")),
                    groups: vec!["G".into()],
                },
            )
            .expect("added");
        }
        h.connect(true);
        assert_eq!(h.sides[1].engine.view().contact_count(), 40);
        assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
        assert_eq!(h.sides[1].engine.stats().duplicate_records, 0);
        assert!(!h.sides[1].engine.has_deferred(), "nothing left waiting");
        let deferred = h.sides[1].engine.stats().deferred_frames;
        h.restart(1);
        assert_eq!(
            h.sides[0].engine.view(),
            h.sides[1].engine.view(),
            "what was persisted is the same list"
        );
        (h.answered_ahead, deferred)
    };
    let (ahead, deferred) = run(true);
    assert!(deferred >= 3, "frames deferred: {deferred}");
    assert!(ahead >= 3, "answers sent ahead of their frame: {ahead}");
    assert_eq!(run(false), (0, 0), "only when the driver asks for it");
}

fn deferring(records: usize) -> Harness {
    let mut h = Harness::with_config(Config {
        defer_frames: true,
        frame_record_bytes: 2_000,
        ..Config::default()
    });
    h.add_contacts(0, records);
    h
}

/// A frame left waiting is applied by whatever input or command comes next, first
/// and once: the frames of an exchange then each wait for the next one.
#[test]
fn a_waiting_frame_is_applied_first_by_the_next_input() {
    let mut h = deferring(30);
    h.hold_deferred = true;
    h.connect(true);
    assert_eq!(h.sides[1].engine.view().contact_count(), 30);
    assert!(h.sides[1].engine.stats().deferred_frames >= 3);
    assert_eq!(h.sides[1].engine.stats().duplicate_records, 0);
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    // One waits: an edit of a contact it carries applies it first.
    let mut h = deferring(30);
    h.stop_when_deferred = true;
    h.connect(true);
    assert!(h.sides[1].engine.has_deferred());
    let before = h.sides[1].engine.view().contact_count();
    let waiting = h.sides[1]
        .engine
        .deferred
        .as_ref()
        .map_or(0, |(_, r, _)| r.len());
    assert!(
        waiting > 0 && before < 30,
        "{before} contacts, {waiting} waiting"
    );
    let t = now(h.mono);
    h.sides[1].engine.handle_input(t, Input::Timeout);
    assert!(!h.sides[1].engine.has_deferred());
    assert!(h.sides[1].engine.view().contact_count() > before);
    h.stop_when_deferred = false;
    h.pump();
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    assert_eq!(h.sides[1].engine.stats().duplicate_records, 0);
}

/// A device that stops (a crash) with a frame waiting has not stored it: started
/// again from what it persisted, it is brought every record at the next connection.
#[test]
fn a_frame_waiting_at_a_crash_is_brought_again() {
    let mut h = deferring(30);
    h.stop_when_deferred = true;
    h.connect(true);
    assert!(h.sides[1].engine.has_deferred());
    h.stop_when_deferred = false;
    // The link goes with the crash: what was under way fails.
    h.set_link(0, 1, false);
    h.restart(1);
    assert!(h.sides[1].engine.view().contact_count() < 30);
    h.connect(false);
    h.connect(true);
    assert_eq!(h.sides[1].engine.view().contact_count(), 30);
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
}

/// Where the sender stands is noted when its frame comes; once a frame answered
/// first is applied, it is noted against what this device then holds.
#[test]
fn where_a_peer_stands_counts_a_frame_applied_after_its_answer() {
    let mut h = deferring(30);
    h.stop_when_deferred = true;
    h.connect(true);
    let genesis = h.genesis();
    let side = &mut h.sides[1].engine;
    assert!(side.has_deferred());
    side.apply_deferred(now(h.mono));
    let state = side.sync_state(&genesis).expect("heard");
    assert_eq!(
        state.ours,
        side.summary(),
        "noted against what it holds now"
    );
    h.stop_when_deferred = false;
    h.pump();
    let state = h.sides[1].engine.sync_state(&genesis).expect("heard");
    assert_eq!(state.relation(), Relation::UpToDate, "{state:?}");
}

/// A waiting frame that said nothing of where its sender stands (no summary) noted
/// nothing: once it is applied, the standing kept is the one from before.
#[test]
fn a_waiting_frame_without_a_summary_leaves_where_its_peer_stands() {
    let mut h = deferring(5);
    h.connect(true);
    let genesis = h.genesis();
    let before = h.sides[1].engine.sync_state(&genesis).expect("heard");
    // Side 0 writes more, and side 1 is not told by gossip.
    h.sides[0]
        .engine
        .execute(
            now(h.mono),
            Edit::AddContact {
                jid: jid("late@x.lit"),
                name: None,
                groups: vec![],
            },
        )
        .expect("added");
    while h.sides[0].engine.poll_output().is_some() {}
    let records: Vec<Record> = h.sides[0]
        .engine
        .replica()
        .space(Space::Contacts)
        .filter(|r| {
            h.sides[1]
                .engine
                .replica()
                .get(r.space, &r.item)
                .is_none_or(|held| held.version < r.version)
        })
        .cloned()
        .collect();
    assert!(!records.is_empty());
    // Those records in a frame that asks nothing, more to come, and no summary.
    let bytes = Frame::Request {
        salt: 0,
        msg: recon::Message::default(),
        records,
        more: true,
        have: None,
    }
    .encode();
    let side = &mut h.sides[1].engine;
    side.handle_input(
        now(h.mono),
        Input::Request {
            from: 0,
            id: 9_999,
            bytes,
        },
    );
    assert!(side.has_deferred(), "it waits");
    side.apply_deferred(now(h.mono));
    let after = side.sync_state(&genesis).expect("still known");
    assert_ne!(
        side.summary(),
        before.ours,
        "the frame changed what it holds"
    );
    assert_eq!(after.ours, before.ours, "noted again without being heard");
}

/// What may wait: only when the driver allows it, for a frame that asks nothing,
/// has more to come and carries no roster record and no secret.
#[test]
fn only_frames_that_ask_nothing_and_change_no_roster_or_secret_wait() {
    let mut h = Harness::with_config(Config {
        defer_frames: true,
        ..Config::default()
    });
    h.execute(
        0,
        Edit::AddContact {
            jid: jid("a@x.lit"),
            name: None,
            groups: vec![],
        },
    )
    .expect("added");
    // New secrets, sealed to each device: records of their own.
    h.execute(0, Command::RotateSecrets).expect("rotated");
    let engine = &h.sides[0].engine;
    let contacts: Vec<Record> = engine.replica().space(Space::Contacts).cloned().collect();
    let roster: Vec<Record> = engine.replica().space(Space::Roster).cloned().collect();
    let secrets: Vec<Record> = engine.replica().space(Space::Keys).cloned().collect();
    assert!(!contacts.is_empty() && !roster.is_empty() && !secrets.is_empty());
    let quiet = recon::Message::default();
    let asking = recon::Message {
        ranges: Vec::new(),
        need: vec![7],
    };
    assert!(engine.may_defer(&quiet, true, &contacts));
    assert!(
        !engine.may_defer(&quiet, false, &contacts),
        "nothing follows"
    );
    assert!(
        !engine.may_defer(&asking, true, &contacts),
        "the answer depends"
    );
    assert!(!engine.may_defer(&quiet, true, &roster), "the roster");
    assert!(!engine.may_defer(&quiet, true, &secrets), "a secret");
    let mixed: Vec<Record> = contacts.iter().chain(&secrets).cloned().collect();
    assert!(
        !engine.may_defer(&quiet, true, &mixed),
        "a secret among contacts"
    );
    assert!(!engine.may_defer(&quiet, true, &[]), "no records");
    let off = Harness::new();
    assert!(!off.sides[0].engine.may_defer(&quiet, true, &contacts));
}

#[test]
fn records_in_a_lost_request_are_sent_again_at_once() {
    lose_one_frame_of_records(1, 0);
}

#[test]
fn records_in_a_lost_response_are_sent_again_at_once() {
    lose_one_frame_of_records(0, 1);
}

#[test]
fn every_space_is_sent_in_some_order() {
    let mut order = session::SEND_ORDER.to_vec();
    order.sort();
    let mut all = Space::ALL.to_vec();
    all.sort();
    assert_eq!(order, all);
}

#[test]
fn one_item_operations_and_their_acknowledgements_look_the_same_on_the_wire() {
    let mut h = Harness::new();
    h.connect(true);
    let add = |j: &str, name: &str| Edit::AddContact {
        jid: jid(j),
        name: Some(name.into()),
        groups: vec![],
    };
    // The first item of each node comes with the padding items of its count bucket
    // (see `contacts::edit`): a bulk frame, once.
    h.execute(
        0,
        Edit::AddContact {
            jid: jid("romeo@montague.lit"),
            name: None,
            groups: vec!["Montague".into()],
        },
    )
    .expect("the first contact");
    h.mono += 600_000;
    h.pump();
    let operations: Vec<(&str, Edit)> = vec![
        ("add", add("juliet@capulet.lit", "Juliet")),
        (
            "add with a long name",
            add("nurse@capulet.lit", &"Angelica ".repeat(40)),
        ),
        ("rename", rename("juliet@capulet.lit", "Juliet Capulet")),
        (
            "join a group",
            Edit::EditContact {
                jid: jid("juliet@capulet.lit"),
                edit: ContactEdit {
                    add_groups: vec!["Verona".into()],
                    ..ContactEdit::default()
                },
            },
        ),
        (
            "rename a group",
            Edit::RenameGroup {
                name: "Verona".into(),
                new_name: "Verona city".into(),
            },
        ),
        (
            "add a group",
            Edit::AddGroup {
                name: "Friends".into(),
                description: Some("close ones".into()),
            },
        ),
        (
            "remove",
            Edit::RemoveContact {
                jid: jid("juliet@capulet.lit"),
            },
        ),
    ];
    for (what, edit) in operations {
        h.published.clear();
        h.execute(1, edit).expect(what);
        // Long enough for the acknowledgements of what was removed.
        h.mono += 600_000;
        h.pump();
        assert!(!h.published.is_empty(), "{what}: nothing sent");
        assert!(
            h.published.iter().all(|len| *len == wire::MIN_PADDED_BYTES),
            "{what}: frames of {:?} bytes",
            h.published
        );
    }
    assert!(!h.exchanged.is_empty());
    assert!(
        h.exchanged.iter().all(|len| wire::bucket(*len) == *len),
        "reconciliation frames of {:?} bytes",
        h.exchanged
    );
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
}

#[test]
fn a_deletion_is_collected_then_forgotten_by_every_device() {
    let mut h = Harness::new();
    h.connect(true);
    h.execute(
        0,
        Edit::AddContact {
            jid: jid("otter@river.lit"),
            name: Some("Otter".into()),
            groups: vec![],
        },
    )
    .expect("added");
    h.execute(
        0,
        Edit::RemoveContact {
            jid: jid("otter@river.lit"),
        },
    )
    .expect("removed");
    // Acknowledgement rounds every minute: collected after the first ones, then
    // forgotten once each device says it collected.
    for _ in 0..10 {
        h.mono += 61_000;
        for s in &mut h.sides {
            s.engine.handle_input(now(h.mono), Input::Timeout);
        }
        h.pump();
    }
    for s in &h.sides {
        assert!(s.engine.stats().collected > 0, "collected, not just gone");
    }
    for s in &h.sides {
        let r = s.engine.replica();
        assert_eq!(r.records().filter(|r| r.is_tombstone()).count(), 0);
        assert_eq!(r.collected().count(), 0, "forgotten");
    }
}

/// A shelf over what a side persisted (a stand-in for the node's store).
struct Persisted(std::collections::HashMap<[u8; 64], Record>);

impl crate::replica::Shelf for Persisted {
    fn load(
        &self,
        _space: Space,
        _item: &ItemId,
        _version: &crate::record::Version,
        signature: &[u8; 64],
    ) -> Option<Record> {
        self.0.get(signature).cloned()
    }
}

#[test]
fn a_device_holding_its_records_shelved_still_sends_reads_and_reseals_them() {
    let mut h = Harness::new();
    h.add_contacts(0, 20);
    let stored = Persisted(
        h.sides[0]
            .records
            .records()
            .map(|r| (r.signature, r.clone()))
            .collect(),
    );
    let book = h.sides[0].engine.book_mut();
    book.set_shelf(std::sync::Arc::new(stored));
    let keys: Vec<_> = book
        .replica()
        .records()
        .map(|r| (r.space, r.item))
        .collect();
    assert!(book.shelve(keys) >= 20, "every contact's record is shelved");
    assert!(
        h.sides[0]
            .engine
            .replica()
            .space(Space::Contacts)
            .all(|r| r.is_shelved() || r.is_tombstone())
    );
    // Its view is what it was, and an edit reads the shelved contact as before.
    assert_eq!(h.sides[0].engine.view().contact_count(), 20);
    h.execute(0, rename("c3@example.org", "Three"))
        .expect("renamed");
    // The other device gets every record whole, read back from the shelf.
    h.connect(true);
    assert_eq!(h.sides[1].engine.view().contact_count(), 20);
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    // A rotation seals every item again, from the view's payloads.
    h.execute(0, Command::RotateSecrets).expect("rotated");
    assert_eq!(h.sides[0].engine.view(), h.sides[1].engine.view());
    let renamed = h.sides[1]
        .engine
        .view()
        .contacts()
        .filter(|c| c.contact.name.as_deref() == Some("Three"))
        .count();
    assert_eq!(renamed, 1);
}

/// Two sides connected, reconciling every `interval` ms with `jitter`.
fn connected_with_jitter(interval: u64, jitter: u64) -> Harness {
    let mut h = Harness::with_config(Config {
        recon_interval_ms: interval,
        recon_jitter_ms: jitter,
        ..Config::default()
    });
    h.connect(true);
    h
}

/// A request that fails (a peer paused past the transport's timeout, say) is tried
/// again after `RETRY_AFTER_MS`, twice as long after each further failure in a row,
/// at most the reconciliation interval; once the peer answers, the count starts
/// over.
#[test]
fn a_failed_request_is_tried_again_soon_then_less_often() {
    let interval = 20_000;
    let mut h = connected_with_jitter(interval, 0);
    // Side 0's requests fail from now on: when does it send them?
    let requests_at = |h: &mut Harness, until: u64, n: usize| -> Vec<u64> {
        let mut at = Vec::new();
        let end = h.mono + until;
        while h.mono < end && at.len() < n {
            h.mono += 50;
            for i in 0..2 {
                h.sides[i].engine.handle_input(now(h.mono), Input::Timeout);
                while let Some(out) = h.sides[i].engine.poll_output() {
                    if i == 0 && matches!(out, Output::Request { .. }) {
                        at.push(h.mono);
                    }
                    h.carry(i, out);
                }
            }
        }
        at
    };
    h.set_link(0, 1, false);
    let at = requests_at(&mut h, 200_000, 8);
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [1_000, 2_000, 4_000, 8_000, 16_000, interval, interval],
        "{at:?}"
    );
    // It answers again: the next failure is the first in a row.
    h.set_link(0, 1, true);
    h.pump();
    h.set_link(0, 1, false);
    let at = requests_at(&mut h, 3 * interval, 2);
    assert_eq!(at.len(), 2, "{at:?}");
    assert_eq!(at[1] - at[0], 1_000, "{at:?}");
}

#[test]
fn an_unreadable_answer_does_not_start_the_failure_count_over() {
    let interval = 20_000;
    let mut h = connected_with_jitter(interval, 0);
    // Side 0's requests are answered by `answer` (None: the request fails).
    let next = |h: &mut Harness, answer: Option<&[u8]>| -> u64 {
        let deadline = h.mono + 10 * interval;
        loop {
            h.mono += 50;
            assert!(h.mono < deadline, "no request sent");
            h.sides[0].engine.handle_input(now(h.mono), Input::Timeout);
            let mut sent = None;
            while let Some(out) = h.sides[0].engine.poll_output() {
                if let Output::Request { id, .. } = out {
                    sent = Some(id);
                }
            }
            if let Some(id) = sent {
                let input = match answer {
                    Some(bytes) => Input::Response {
                        id,
                        bytes: bytes.to_vec(),
                    },
                    None => Input::RequestFailed { id },
                };
                h.sides[0].engine.handle_input(now(h.mono), input);
                return h.mono;
            }
        }
    };
    let a = next(&mut h, None);
    let b = next(&mut h, None);
    assert_eq!(b - a, 1_000);
    let c = next(&mut h, None);
    assert_eq!(c - b, 2_000);
    // An answer that does not decode ends the exchange: tried again an interval later.
    let d = next(&mut h, Some(b"not a frame"));
    assert_eq!(d - c, 4_000);
    let e = next(&mut h, None);
    assert_eq!(e - d, interval);
    // The failures go on counting from where they were, not from the first.
    let f = next(&mut h, None);
    assert_eq!(f - e, 8_000);
}

#[test]
fn a_failed_request_is_tried_again_with_a_jitter_of_at_most_the_delay() {
    let mut h = connected_with_jitter(20_000, 5_000);
    h.set_link(0, 1, false);
    let mut at = Vec::new();
    let end = h.mono + 200_000;
    while h.mono < end && at.len() < 5 {
        h.mono += 10;
        h.sides[0].engine.handle_input(now(h.mono), Input::Timeout);
        while let Some(out) = h.sides[0].engine.poll_output() {
            if matches!(out, Output::Request { .. }) {
                at.push(h.mono);
            }
            h.carry(0, out);
        }
    }
    let gaps: Vec<u64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // 1 s, 2 s, 4 s, 8 s, each with a jitter below the delay and the configured one.
    for (gap, delay) in gaps.iter().zip([1_000u64, 2_000, 4_000, 8_000]) {
        assert!(
            *gap >= delay && *gap < delay + delay.min(5_000) + 10,
            "{gaps:?}"
        );
    }
    assert_eq!(gaps.len(), 4, "{at:?}");
    assert!(
        gaps.iter()
            .zip([1_000, 2_000, 4_000, 8_000])
            .any(|(g, d)| *g > d + 10),
        "no jitter: {gaps:?}"
    );
}
