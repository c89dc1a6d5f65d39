//! Tests of `replica`.

use super::*;
use crate::item::NodeKind;
use crate::record::Body;
use crate::seal::Sealed;
use ed25519_dalek::SigningKey;

fn rec(key: &SigningKey, item: u8, wall: u64, data: u8) -> Record {
    let body = Body::Sealed(Sealed {
        key: "k".into(),
        data: vec![data],
    });
    Record::sign(
        NodeKind::Contacts,
        ItemId([item; 16]),
        Hlc {
            wall_ms: wall,
            counter: 0,
        },
        body,
        key,
    )
}

fn setup() -> (SigningKey, SigningKey, BTreeSet<DeviceId>) {
    let a = SigningKey::from_bytes(&[1; 32]);
    let b = SigningKey::from_bytes(&[2; 32]);
    let roster = [&a, &b]
        .iter()
        .map(|k| DeviceId(k.verifying_key().to_bytes()))
        .collect();
    (a, b, roster)
}

#[test]
fn an_item_is_shadowed_once_a_version_replaced_another() {
    let (a, _, _) = setup();
    let mut r = Replica::new();
    let item = ItemId([1; 16]);
    assert_eq!(r.insert(rec(&a, 1, 10, 1)), Outcome::Inserted);
    assert!(!r.shadowed(Space::Contacts, &item));
    // An older version is stale: nothing to shadow.
    assert_eq!(r.insert(rec(&a, 1, 5, 1)), Outcome::Stale);
    assert!(!r.shadowed(Space::Contacts, &item));
    assert_eq!(r.insert(rec(&a, 1, 20, 2)), Outcome::Replaced);
    assert!(r.shadowed(Space::Contacts, &item));
    assert!(!r.shadowed(Space::Contacts, &ItemId([2; 16])));
}

/// A revocation that falls back to the oldest shadow kept empties the item's
/// shadows; its versions stored in the same step must still be pruned.
#[test]
fn an_item_stays_shadowed_when_a_revocation_empties_its_shadows() {
    let (a, b, roster) = setup();
    let mut r = Replica::new();
    let item = ItemId([1; 16]);
    r.insert(rec(&a, 1, 10, 1));
    for t in 0..SHADOW_DEPTH as u64 {
        r.insert(rec(&b, 1, 20 + t, 2));
    }
    let only_a: BTreeSet<DeviceId> = roster
        .iter()
        .filter(|d| **d == DeviceId(a.verifying_key().to_bytes()))
        .copied()
        .collect();
    r.retain_authors(&only_a);
    assert_eq!(
        r.get(Space::Contacts, &item).map(|w| w.version.hlc.wall_ms),
        Some(10)
    );
    assert!(r.shadowed(Space::Contacts, &item));
}

#[test]
fn records_checked_ahead_are_those_their_authors_may_write() {
    let (a, _, roster) = setup();
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let r = Replica::new();
    let mine = [rec(&a, 1, 10, 1), rec(&a, 2, 10, 2)];
    let theirs = rec(&stranger, 3, 10, 3);
    r.verify_ahead(&[mine[0].clone(), theirs.clone(), mine[1].clone()], &roster);
    assert!(r.verified.knows(&mine[0]) && r.verified.knows(&mine[1]));
    assert!(!r.verified.knows(&theirs));
    // A frame whose first record is known was checked ahead already: nothing
    // more is done here (applying still checks each record).
    let later = [mine[0].clone(), rec(&a, 4, 10, 4)];
    r.verify_ahead(&later, &roster);
    assert!(!r.verified.knows(&later[1]));
}

#[test]
fn last_writer_wins_by_version() {
    let (a, b, roster) = setup();
    let mut r = Replica::new();
    let now = WallTime(1000);
    assert_eq!(
        r.apply(rec(&a, 1, 10, 1), &roster, now),
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        r.apply(rec(&b, 1, 20, 2), &roster, now),
        Ok(Outcome::Replaced)
    );
    assert_eq!(r.apply(rec(&a, 1, 15, 3), &roster, now), Ok(Outcome::Stale));
    assert_eq!(
        r.apply(rec(&b, 1, 20, 2), &roster, now),
        Ok(Outcome::Duplicate)
    );
    let tomb = Record::sign(
        NodeKind::Contacts,
        ItemId([1; 16]),
        Hlc {
            wall_ms: 30,
            counter: 0,
        },
        Body::Tombstone,
        &a,
    );
    assert_eq!(r.apply(tomb, &roster, now), Ok(Outcome::Replaced));
    assert!(
        r.get(NodeKind::Contacts, &ItemId([1; 16]))
            .expect("kept")
            .is_tombstone()
    );
}

#[test]
fn rejects_strangers_and_forgeries() {
    let (a, _, roster) = setup();
    let stranger = SigningKey::from_bytes(&[9; 32]);
    let mut r = Replica::new();
    let now = WallTime(1000);
    assert!(matches!(
        r.apply(rec(&stranger, 1, 10, 1), &roster, now),
        Err(Rejected::UnknownAuthor(_))
    ));
    let mut forged = rec(&a, 1, 10, 1);
    forged.parts_mut().body = Body::Tombstone;
    assert_eq!(r.apply(forged, &roster, now), Err(Rejected::BadSignature));
    assert!(r.is_empty());
}

#[test]
fn holds_future_records_until_time_catches_up() {
    let (a, _, roster) = setup();
    let mut r = Replica::new();
    let now = WallTime(1_000_000);
    let future = rec(&a, 1, now.0 + DEFAULT_MAX_AHEAD_MS + 10, 1);
    assert_eq!(r.apply(future.clone(), &roster, now), Ok(Outcome::Held));
    assert!(r.is_empty());
    assert_eq!(r.held().count(), 1);
    assert!(r.release(&roster, now).is_empty());
    assert_eq!(r.release(&roster, WallTime(now.0 + 10)), vec![future]);
    assert_eq!(r.len(), 1);
    assert_eq!(r.held().count(), 0);
}

/// Allows everyone up to a cut-off per device.
struct Until(BTreeMap<DeviceId, u64>);

impl Authors for Until {
    fn may_author(&self, device: &DeviceId, version: &Version) -> bool {
        self.0
            .get(device)
            .is_some_and(|until| version.hlc.wall_ms <= *until)
    }
}

#[test]
fn writes_after_a_revocation_are_set_aside_and_what_they_replaced_comes_back() {
    let (a, b, _) = setup();
    let (da, db) = (
        DeviceId(a.verifying_key().to_bytes()),
        DeviceId(b.verifying_key().to_bytes()),
    );
    let mut r = Replica::new();
    let everyone = Until([(da, u64::MAX), (db, u64::MAX)].into_iter().collect());
    let now = WallTime(1000);
    let valid = rec(&a, 1, 10, 1);
    r.apply(valid.clone(), &everyone, now).expect("valid");
    // b writes twice over it, then turns out revoked at 15: both writes go.
    r.apply(rec(&b, 1, 20, 2), &everyone, now)
        .expect("valid then");
    r.apply(rec(&b, 1, 30, 3), &everyone, now)
        .expect("valid then");
    let b_revoked = Until([(da, u64::MAX), (db, 15)].into_iter().collect());
    assert_eq!(r.retain_authors(&b_revoked), 1);
    assert_eq!(r.get(NodeKind::Contacts, &ItemId([1; 16])), Some(&valid));
    assert_eq!(r.quarantined().count(), 1);
    // The revocation itself was invalid after all: b's newest write wins again.
    let restored = r.restore(&everyone);
    assert_eq!(restored.len(), 1);
    assert_eq!(
        r.get(NodeKind::Contacts, &ItemId([1; 16]))
            .map(|x| x.version.hlc.wall_ms),
        Some(30)
    );
    // The same device's own earlier write is a fall-back too.
    let mut r = Replica::new();
    r.apply(rec(&b, 2, 10, 1), &everyone, now).expect("valid");
    r.apply(rec(&b, 2, 20, 2), &everyone, now)
        .expect("valid then");
    r.retain_authors(&b_revoked);
    assert_eq!(
        r.get(NodeKind::Contacts, &ItemId([2; 16]))
            .map(|x| x.version.hlc.wall_ms),
        Some(10)
    );
}

fn tomb(key: &SigningKey, item: u8, wall: u64) -> Record {
    Record::sign(
        NodeKind::Contacts,
        ItemId([item; 16]),
        Hlc {
            wall_ms: wall,
            counter: 0,
        },
        Body::Tombstone,
        key,
    )
}

/// Devices a and b, a roster allowing both, and one where b was revoked at 15.
fn revocation() -> (SigningKey, SigningKey, Until, Until) {
    let (a, b, _) = setup();
    let (da, db) = (
        DeviceId(a.verifying_key().to_bytes()),
        DeviceId(b.verifying_key().to_bytes()),
    );
    let everyone = Until([(da, u64::MAX), (db, u64::MAX)].into_iter().collect());
    let b_revoked = Until([(da, u64::MAX), (db, 15)].into_iter().collect());
    (a, b, everyone, b_revoked)
}

/// A shelf over every record a test applied (a stand-in for the node's store).
struct Kept(std::collections::HashMap<[u8; 64], Record>);

impl Shelf for Kept {
    fn load(
        &self,
        _space: Space,
        _item: &ItemId,
        _version: &Version,
        signature: &[u8; 64],
    ) -> Option<Record> {
        self.0.get(signature).cloned()
    }
}

/// Applies `records` one by one into a replica over a shelf holding them all,
/// shelving each as it wins (as a node does once it stored it).
fn shelved_replica(records: &[Record], authors: &dyn Authors) -> Replica {
    let mut r = Replica::new();
    r.set_shelf(Arc::new(Kept(
        records.iter().map(|x| (x.signature, x.clone())).collect(),
    )));
    for x in records {
        r.apply(x.clone(), authors, WallTime(1000)).expect("valid");
        r.shelve([(x.space, x.item)]);
    }
    r
}

/// Shelved records sealed with one secret hold its id once between them.
#[test]
fn shelved_records_share_their_secret_id() {
    let (a, _, everyone) = setup();
    let r = shelved_replica(&[rec(&a, 1, 10, 1), rec(&a, 2, 10, 2)], &everyone);
    let key = |item: u8| match r.get(Space::Contacts, &ItemId([item; 16])).map(|x| &x.body) {
        Some(Body::Shelved(s)) => Arc::clone(&s.key),
        other => panic!("not shelved: {other:?}"),
    };
    assert_eq!(&*key(1), "k");
    assert!(Arc::ptr_eq(&key(1), &key(2)));
}

/// What a roster change hands back to be stored again (a set-aside winner
/// restored, a collected deletion's shadow) comes whole, read back from the
/// shelf: a shelved record cannot be stored.
#[test]
fn records_a_roster_change_hands_back_are_read_back_whole() {
    let (a, b, everyone, b_revoked) = revocation();
    let item = ItemId([1; 16]);
    let (valid, late) = (rec(&a, 1, 10, 1), rec(&b, 1, 30, 3));
    let mut r = shelved_replica(&[valid.clone(), rec(&b, 1, 20, 2), late.clone()], &everyone);
    assert!(
        r.get(Space::Contacts, &item)
            .is_some_and(Record::is_shelved)
    );
    r.retain_authors(&b_revoked);
    assert!(
        r.get(Space::Contacts, &item)
            .is_some_and(|x| x.same_as(&valid))
    );
    let restored = r.restore(&everyone);
    assert_eq!(restored, std::slice::from_ref(&late));
    assert!(!restored[0].is_shelved());

    let mut r = shelved_replica(&[valid.clone(), tomb(&b, 1, 20)], &everyone);
    assert!(r.collect(Space::Contacts, &item));
    r.retain_authors(&b_revoked);
    let back = r.uncollect_disallowed(&b_revoked);
    assert_eq!(back, std::slice::from_ref(&valid));
    assert!(!back[0].is_shelved());
    assert!(
        r.get(Space::Contacts, &item)
            .is_some_and(Record::is_shelved)
    );
}

/// Found by `kith-sim soak` (seed 655): a deletion by a device revoked before
/// stamping it was collected by devices that had not heard of the revocation yet;
/// when it arrived, the deleted item was gone everywhere instead of coming back.
#[test]
fn a_collected_deletion_by_a_device_revoked_before_it_brings_the_item_back() {
    let (a, b, everyone, b_revoked) = revocation();
    let now = WallTime(1000);
    let item = ItemId([1; 16]);
    let mut r = Replica::new();
    let valid = rec(&a, 1, 10, 1);
    r.apply(valid.clone(), &everyone, now).expect("valid");
    r.apply(tomb(&b, 1, 20), &everyone, now)
        .expect("valid then");
    assert!(r.collect(Space::Contacts, &item));
    assert_eq!(r.get(NodeKind::Contacts, &item), None);
    assert_eq!(
        r.collected_shadows(Space::Contacts, &item),
        std::slice::from_ref(&valid)
    );
    r.take_touched();
    r.retain_authors(&b_revoked);
    assert_eq!(
        r.get(NodeKind::Contacts, &item),
        None,
        "not before the roster settles"
    );
    assert_eq!(
        r.uncollect_disallowed(&b_revoked),
        std::slice::from_ref(&valid)
    );
    assert_eq!(r.get(NodeKind::Contacts, &item), Some(&valid));
    assert_eq!(r.collected_version(Space::Contacts, &item), None);
    assert!(r.take_touched().contains(&(Space::Contacts, item)));

    // A valid deletion, collected, keeps its shadows only until it is forgotten,
    // and a newer write drops them (they can never win again).
    let mut r = Replica::new();
    r.apply(valid.clone(), &everyone, now).expect("valid");
    r.apply(tomb(&a, 1, 20), &everyone, now).expect("valid");
    r.collect(Space::Contacts, &item);
    assert!(r.uncollect_disallowed(&b_revoked).is_empty());
    assert_eq!(r.get(NodeKind::Contacts, &item), None);
    // An older version offered later is answered with the collected tombstone.
    assert_eq!(
        r.apply(valid.clone(), &everyone, now),
        Ok(Outcome::Collected)
    );
    let t = r
        .collected_record(Space::Contacts, &item)
        .expect("collected");
    assert!(t.is_tombstone() && t.version.hlc.wall_ms == 20);
    let mut fresh = Replica::new();
    assert_eq!(
        fresh.apply(t, &everyone, now),
        Ok(Outcome::Inserted),
        "signature holds"
    );
    assert_eq!(
        r.collected_version(Space::Contacts, &item)
            .map(|v| v.hlc.wall_ms),
        Some(20)
    );
    assert!(r.drop_collected(Space::Contacts, &item));
    assert!(r.collected_shadows(Space::Contacts, &item).is_empty());
    let mut r2 = Replica::new();
    r2.apply(valid.clone(), &everyone, now).expect("valid");
    r2.apply(tomb(&b, 1, 12), &everyone, now).expect("valid");
    r2.collect(Space::Contacts, &item);
    let newer = rec(&a, 1, 30, 2);
    assert_eq!(
        r2.apply(newer.clone(), &everyone, now),
        Ok(Outcome::Inserted)
    );
    assert!(r2.collected_shadows(Space::Contacts, &item).is_empty());
    let (da, db) = (
        DeviceId(a.verifying_key().to_bytes()),
        DeviceId(b.verifying_key().to_bytes()),
    );
    let both = Until([(da, 25), (db, 15)].into_iter().collect());
    r2.retain_authors(&both);
    assert!(r2.uncollect_disallowed(&both).is_empty());
    assert_eq!(
        r2.get(NodeKind::Contacts, &item),
        None,
        "nothing older comes back"
    );
}
