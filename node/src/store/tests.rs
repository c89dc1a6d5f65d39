//! Tests of the store: records, collection, checkpoints, locks and files.

use ed25519_dalek::SigningKey;
use kith_protocol::clock::Hlc;
use kith_protocol::jid::BareJid;
use kith_protocol::record::Body;
use kith_protocol::seal::{Keyring, Secret};
use rand_core::SeedableRng;

use kith_protocol::record::{ItemId, Record, Space};
use kith_protocol::replica::{Replica, SHADOW_DEPTH};

use super::records::version_key;
use super::*;

fn record(key: &SigningKey, item: u8, wall_ms: u64, tomb: bool) -> Record {
    signed(
        key,
        Space::Roster,
        item,
        wall_ms,
        (!tomb).then_some(Body::Data(vec![item])),
    )
}

/// A record of `space` signed by `key`: a tombstone when `body` is `None`.
fn signed(key: &SigningKey, space: Space, item: u8, wall_ms: u64, body: Option<Body>) -> Record {
    Record::sign(
        space,
        ItemId([item; 16]),
        Hlc {
            wall_ms,
            counter: 0,
        },
        body.unwrap_or(Body::Tombstone),
        key,
    )
}

#[test]
fn records_survive_reopening_with_their_replaced_versions() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let versions: Vec<Record> = (1..=8).map(|t| record(&key, 1, t, false)).collect();
    // Each stored as its item's winner, as a device stores them.
    for r in &versions {
        store.persist(std::slice::from_ref(r)).unwrap();
    }
    assert_eq!(store.counts().unwrap().rows, 1 + SHADOW_DEPTH as u64);
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    let (replica, quarantined) = store.load().unwrap();
    assert!(quarantined.is_empty());
    assert_eq!(
        replica.get(Space::Roster, &ItemId([1; 16])),
        versions.last()
    );
}

/// Rows of an author revoked after writing them may stand above the winner: a
/// device that never saw them edits the item with an older stamp, and its record
/// wins once they are set aside. However many they are, the winner is neither pruned
/// when stored nor lost when the replica is loaded back and the roster check sets
/// them aside again.
#[test]
fn a_winner_below_rows_of_a_revoked_author_survives_the_prune_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (honest, revoked, offline) = (
        SigningKey::from_bytes(&[7; 32]),
        SigningKey::from_bytes(&[8; 32]),
        SigningKey::from_bytes(&[9; 32]),
    );
    let at = |key: &SigningKey, t| signed(key, Space::Acks, 1, t, Some(Body::Data(vec![1])));
    let mut store = Store::open(dir.path()).unwrap();
    store.persist(&[at(&honest, 5)]).unwrap();
    let above = SHADOW_DEPTH as u64 + 1;
    for t in 0..above {
        store.persist(&[at(&revoked, 10 + t)]).unwrap();
    }
    // The revoked device's rows were winners when stored: they pruned the first.
    assert_eq!(store.counts().unwrap().rows, above);
    let winner = at(&offline, 7);
    store.persist(std::slice::from_ref(&winner)).unwrap();
    assert_eq!(
        store.counts().unwrap().rows,
        above + 1,
        "the winner is kept"
    );
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    let (mut replica, _) = store.load().unwrap();
    let allowed: std::collections::BTreeSet<_> = [&honest, &offline]
        .into_iter()
        .map(|k| kith_protocol::record::DeviceId(k.verifying_key().to_bytes()))
        .collect();
    assert_eq!(replica.retain_authors(&allowed), 1);
    assert_eq!(replica.get(Space::Acks, &ItemId([1; 16])), Some(&winner));
}

/// An acknowledgement with a body of `len` bytes, as the first release could write.
fn oversize(key: &SigningKey, len: usize) -> Record {
    let hlc = Hlc {
        wall_ms: 1,
        counter: 0,
    };
    Record::sign(
        Space::Acks,
        ItemId([2; 16]),
        hlc,
        Body::Data(vec![0; len]),
        key,
    )
}

#[test]
fn the_log_is_checkpointed_only_after_writes_and_never_inside_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    store.checkpoint_if_written().unwrap();
    assert!(
        !store.checkpoint_if_written().unwrap(),
        "nothing written since"
    );
    store.persist(&[record(&key, 2, 4, false)]).unwrap();
    store.begin().unwrap();
    assert!(
        !store.checkpoint_if_written().unwrap(),
        "inside a transaction"
    );
    store.commit().unwrap();
    assert!(store.checkpoint_if_written().unwrap());
    assert!(!store.checkpoint_if_written().unwrap());
    let wal: i64 = store
        .conn()
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(wal, WAL_PAGES_MAX);
}

/// Versions of an item that `persist_pruning` is told not to prune stay until a
/// record of the item is stored with the prune.
#[test]
fn an_item_passed_over_by_the_prune_is_pruned_at_its_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let depth = SHADOW_DEPTH as u64;
    for t in 1..=depth + 3 {
        store
            .persist_pruning(&[record(&key, 1, t, false)], |_| false)
            .unwrap();
    }
    assert_eq!(store.counts().unwrap().rows, depth + 3);
    // Another item's record prunes only what it is told to.
    store
        .persist_pruning(&[record(&key, 2, 1, false)], |r| r.item != ItemId([1; 16]))
        .unwrap();
    assert_eq!(store.counts().unwrap().rows, depth + 4);
    store.persist(&[record(&key, 1, depth + 4, false)]).unwrap();
    assert_eq!(store.counts().unwrap().rows, 1 + depth + 1);
    let (replica, _) = store.load().unwrap();
    assert_eq!(
        replica
            .get(Space::Roster, &ItemId([1; 16]))
            .map(|r| r.version.hlc.wall_ms),
        Some(depth + 4)
    );
}

/// After a checkpoint the log is started over at once (one frame of page 1, the
/// user version written as it was), so that the next commit, an edit made seconds
/// later, appends to it (one sync) instead of starting it over (its new header
/// synced first: two).
#[test]
fn a_checkpoint_starts_the_log_over_before_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    store
        .conn()
        .execute_batch("PRAGMA user_version = 7")
        .unwrap();
    // The log's salts (header bytes 16..24): new each time the log starts over.
    let salts =
        || -> Vec<u8> { fs::read(dir.path().join("kith.db-wal")).unwrap()[16..24].to_vec() };
    for n in 0..3 {
        store.persist(&[record(&key, n + 1, 4, false)]).unwrap();
    }
    assert!(store.checkpoint_if_written().unwrap());
    let restarted = salts();
    store.persist(&[record(&key, 9, 4, false)]).unwrap();
    assert_eq!(
        salts(),
        restarted,
        "the commit appended: the log was started over before"
    );
    // Its frames: the restart's and the commit's (a checkpoint counts them).
    let (log, _): (i64, i64) = store
        .conn()
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert!(log > 1, "{log} frames");
    let version: i64 = store
        .conn()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7, "the user version is written as it was");
    // Record 9's commit brings one more checkpoint; the restart after it is no
    // change of its own, so none follows.
    assert!(store.checkpoint_if_written().unwrap());
    assert!(
        !store.checkpoint_if_written().unwrap(),
        "no change of its own"
    );
    // After a checkpoint that emptied the log (a large write's, or an open's), the
    // next call starts it over too.
    store.persist(&[record(&key, 10, 4, false)]).unwrap();
    store.checkpoint().unwrap();
    let emptied = fs::metadata(dir.path().join("kith.db-wal")).unwrap().len();
    assert_eq!(emptied, 0, "emptied");
    assert!(!store.checkpoint_if_written().unwrap());
    let restarted = salts();
    store.persist(&[record(&key, 11, 4, false)]).unwrap();
    assert_eq!(salts(), restarted);
}

/// A log left by a process that did not close the store (a kill -9) may hold
/// pages of something erased since: the first housekeeping empties it, also when
/// nothing was written since the open.
#[test]
fn a_log_left_behind_is_emptied_at_the_first_housekeeping() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    for n in 0..3 {
        store.persist(&[record(&key, n + 1, 4, false)]).unwrap();
    }
    // The files as a kill -9 leaves them: the log not folded in.
    for f in ["kith.db", "kith.db-wal"] {
        fs::copy(dir.path().join(f), copy.path().join(f)).unwrap();
    }
    drop(store);
    let left = fs::metadata(copy.path().join("kith.db-wal")).unwrap().len();
    assert!(left > 4_152, "a log of {left} bytes was left");
    let mut store = Store::open(copy.path()).unwrap();
    assert!(store.erased(), "a left log counts as holding erased pages");
    assert!(
        store.checkpoint_if_written().unwrap(),
        "emptied with nothing written"
    );
    // Emptied, then started over: its header and the one frame of the restart.
    let now = fs::metadata(copy.path().join("kith.db-wal")).unwrap().len();
    assert_eq!(now, 32 + 24 + 4096);
    assert!(!store.erased());
}

#[test]
fn a_record_over_the_limits_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let good = record(&key, 1, 1, false);
    let big = oversize(&key, kith_protocol::record::MAX_RECORD_BYTES);
    let err = store.persist(&[good, big]).unwrap_err();
    assert!(matches!(err, Error::OverLimits(_)), "{err}");
    assert_eq!(store.counts().unwrap().rows, 0, "nothing of the batch");
}

/// What an earlier version could write (an acknowledgement over the record
/// limit) is moved aside with a warning; the store opens with everything else.
#[test]
fn a_stored_record_that_does_not_decode_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let good = record(&key, 1, 1, false);
    store.persist(std::slice::from_ref(&good)).unwrap();
    let big = oversize(&key, 37_000);
    store
        .conn()
        .execute(
            "INSERT INTO records (space, item, version, signature, bytes)
             VALUES (4, ?1, ?2, ?3, ?4)",
            params![
                &big.item.0[..],
                version_key(&big.version),
                &big.signature[..],
                big.encode()
            ],
        )
        .unwrap();
    store
        .conn()
        .execute(
            "INSERT INTO collected (space, item, bytes) VALUES (0, ?1, ?2)",
            params![&[9u8; 16][..], b"not a record"],
        )
        .unwrap();
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    let (replica, quarantined) = store.load().unwrap();
    assert_eq!(quarantined.len(), 2);
    assert!(
        quarantined[0].reason.contains("more than the limit"),
        "{quarantined:?}"
    );
    assert_eq!(replica.records().collect::<Vec<_>>(), vec![&good]);
    let counts = store.counts().unwrap();
    assert_eq!(
        (counts.rows, counts.collected, counts.quarantined),
        (1, 0, 2)
    );
    // Moved for good: the next load finds nothing to move.
    assert!(store.load().unwrap().1.is_empty());
}

/// A row that does not decode, sharing its key with a valid tombstone (its
/// tombstone flag, filled in by schema 3's conversion, said otherwise): it alone is
/// moved aside, the tombstone stays.
#[test]
fn a_row_moved_aside_takes_no_valid_row_of_the_same_key_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let tomb = record(&key, 1, 1, true);
    store.persist(std::slice::from_ref(&tomb)).unwrap();
    store
        .conn()
        .execute(
            "INSERT INTO records (space, item, version, signature, bytes, tombstone)
             VALUES (?1, ?2, ?3, ?4, ?5, 0)",
            params![
                tomb.space.code(),
                &tomb.item.0[..],
                version_key(&tomb.version),
                &tomb.signature[..],
                b"not a record"
            ],
        )
        .unwrap();
    let (replica, quarantined) = store.load().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(replica.get(tomb.space, &tomb.item), Some(&tomb));
    let (replica, quarantined) = store.load().unwrap();
    assert!(quarantined.is_empty());
    assert_eq!(replica.get(tomb.space, &tomb.item), Some(&tomb));
    assert_eq!(store.counts().unwrap().rows, 1);
}

#[test]
fn a_batch_lands_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    store.begin().unwrap();
    store.persist(&[record(&key, 1, 1, false)]).unwrap();
    store.persist(&[record(&key, 2, 1, false)]).unwrap();
    store.rollback().unwrap();
    assert_eq!(store.counts().unwrap().rows, 0);
    store.begin().unwrap();
    store.persist(&[record(&key, 1, 1, false)]).unwrap();
    store.persist(&[record(&key, 2, 1, false)]).unwrap();
    drop(store); // a crash before the commit
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.counts().unwrap().rows, 0);
}

#[test]
fn values_that_named_the_device_on_the_lan_are_erased_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // As an earlier version left them.
    store
        .conn()
        .execute_batch(
            "INSERT INTO meta (key, value) VALUES ('label', X'6B6974682D3132'),
             ('listen_port', X'5633')",
        )
        .unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let left: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM meta WHERE key IN ('label', 'listen_port')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn collected_tombstones_are_remembered_then_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let tomb = record(&key, 2, 5, true);
    store
        .persist(&[record(&key, 2, 4, false), tomb.clone()])
        .unwrap();
    let k = (Space::Roster, ItemId([2; 16]));
    store
        .collect(&[(k.0, k.1, tomb.version, tomb.signature)], &[])
        .unwrap();
    let (replica, _) = store.load().unwrap();
    assert!(replica.get(k.0, &k.1).is_none());
    assert_eq!(replica.collected_version(k.0, &k.1), Some(tomb.version));
    store.collect(&[], &[k]).unwrap();
    assert_eq!(store.load().unwrap().0.collected().count(), 0);
}

/// A version newer than a collected tombstone takes its item out of the collected
/// tables (tombstone and shadows); another item collected stays collected.
#[test]
fn a_record_newer_than_a_collected_tombstone_takes_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let mut collect = Vec::new();
    for item in [2, 3] {
        let tomb = record(&key, item, 5, true);
        store
            .persist(&[record(&key, item, 4, false), tomb.clone()])
            .unwrap();
        collect.push((
            Space::Roster,
            ItemId([item; 16]),
            tomb.version,
            tomb.signature,
        ));
    }
    store.collect(&collect, &[]).unwrap();
    let back = record(&key, 2, 6, false);
    store.persist(std::slice::from_ref(&back)).unwrap();
    let (replica, _) = store.load().unwrap();
    let two = ItemId([2; 16]);
    let three = ItemId([3; 16]);
    assert_eq!(replica.get(Space::Roster, &two), Some(&back));
    assert_eq!(replica.collected_version(Space::Roster, &two), None);
    assert!(replica.collected_shadows(Space::Roster, &two).is_empty());
    assert_eq!(
        replica.collected_version(Space::Roster, &three),
        Some(collect[1].2)
    );
    assert_eq!(replica.collected_shadows(Space::Roster, &three).len(), 1);
}

#[test]
fn a_collected_tombstone_keeps_what_it_replaced_until_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let older = record(&key, 2, 3, false);
    let replaced = record(&key, 2, 4, false);
    let tomb = record(&key, 2, 5, true);
    store
        .persist(&[older.clone(), replaced.clone(), tomb.clone()])
        .unwrap();
    let k = (Space::Roster, ItemId([2; 16]));
    store
        .collect(&[(k.0, k.1, tomb.version, tomb.signature)], &[])
        .unwrap();
    let (replica, _) = store.load().unwrap();
    assert!(replica.get(k.0, &k.1).is_none());
    assert_eq!(replica.collected_shadows(k.0, &k.1), [replaced, older]);
    // Forgotten, nothing of the item is left.
    store.collect(&[], &[k]).unwrap();
    let (replica, _) = store.load().unwrap();
    assert!(replica.collected_shadows(k.0, &k.1).is_empty());
    assert!(replica.get(k.0, &k.1).is_none());
    let rows: i64 = store
        .conn()
        .query_row("SELECT COUNT(*) FROM collected_shadows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn a_tombstone_is_collected_at_the_engines_version_and_a_newer_row_stays() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let replaced = record(&key, 2, 4, false);
    let tomb = record(&key, 2, 5, true);
    // Stored but not the engine's winner (of an author a revocation set aside): it
    // must neither be remembered as the tombstone nor erased.
    let newer = record(&key, 2, 6, false);
    store
        .persist(&[replaced.clone(), tomb.clone(), newer.clone()])
        .unwrap();
    let k = (Space::Roster, ItemId([2; 16]));
    store
        .collect(&[(k.0, k.1, tomb.version, tomb.signature)], &[])
        .unwrap();
    let stored: Vec<Vec<u8>> = store
        .conn()
        .prepare("SELECT bytes FROM collected")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert_eq!(stored, [tomb.encode()]);
    let left: Vec<Vec<u8>> = store
        .conn()
        .prepare("SELECT bytes FROM records")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    assert_eq!(left, [newer.encode()]);
    // Loaded, the tombstone is collected again with what it replaced, and the newer
    // row is set aside again (for the roster check to bring back if allowed).
    let (replica, _) = store.load().unwrap();
    assert_eq!(replica.collected_version(k.0, &k.1), Some(tomb.version));
    assert!(replica.get(k.0, &k.1).is_none());
    assert_eq!(replica.collected_shadows(k.0, &k.1), [replaced]);
    assert_eq!(replica.quarantined().collect::<Vec<_>>(), [&newer]);
    // A record the store does not hold (same version, another signature) is not
    // collected at all.
    let other = record(&key, 3, 5, true);
    store.persist(std::slice::from_ref(&other)).unwrap();
    store
        .collect(&[(other.space, other.item, other.version, [0; 64])], &[])
        .unwrap();
    let (replica, _) = store.load().unwrap();
    assert_eq!(replica.get(other.space, &other.item), Some(&other));
}

#[test]
fn a_second_lock_is_refused_and_a_corrupt_file_reported() {
    let dir = tempfile::tempdir().unwrap();
    let _lock = Lock::take(dir.path()).unwrap();
    assert!(matches!(Lock::take(dir.path()), Err(Error::Locked(_))));
    fs::write(
        dir.path().join("kith.db"),
        b"this is not a database, not at all....",
    )
    .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, Error::Sql { .. } | Error::Corrupt { .. }),
        "{err}"
    );
}

#[test]
fn the_keyring_round_trips_through_its_file() {
    let mut keyring = Keyring::new();
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
    for node in kith_protocol::item::NodeKind::ALL {
        keyring.insert(Secret::generate(
            node,
            kith_protocol::clock::WallTime(5),
            &mut rng,
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let jid = BareJid::parse("a@b.c").unwrap();
    let back = keyring_from_xml(dir.path(), &keyring_to_xml(&keyring, &jid)).unwrap();
    let ids = |k: &Keyring| {
        k.iter()
            .map(|s| (s.id.clone(), s.value.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&back), ids(&keyring));
}

proptest::proptest! {
    /// Whatever order versions arrive in, what the store loads has the same
    /// winners as a replica that saw the same records.
    #[test]
    fn the_store_rebuilds_the_replica(
        ops in proptest::collection::vec((0u8..4, 1u64..30, proptest::bool::ANY, 0usize..2), 1..40)
    ) {
        let keys = [SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32])];
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mut memory = Replica::new();
        for (item, wall_ms, tomb, author) in ops {
            let r = Record::sign(
                Space::Keys,
                ItemId([item; 16]),
                Hlc { wall_ms, counter: 0 },
                if tomb { Body::Tombstone } else { Body::Data(vec![item, wall_ms as u8]) },
                &keys[author],
            );
            memory.insert(r.clone());
            store.persist(&[r]).unwrap();
        }
        let (loaded, _) = store.load().unwrap();
        proptest::prop_assert!(loaded.records().eq(memory.records()));
    }
}

#[test]
fn a_passphrase_change_cut_short_is_finished_after_its_mark_and_dropped_before() {
    use super::vault::{Costs, Passphrase};
    let cheap = Some(Costs {
        memory_kib: 8 * 1024,
        passes: 1,
        lanes: 1,
    });
    let dir = tempfile::tempdir().unwrap();
    let clear = KeyFiles::clear();
    for name in DEVICE_FILES {
        clear.write(dir.path(), name, name.as_bytes()).unwrap();
    }
    let sealed = KeyFiles::seal_new(Passphrase::new("p").unwrap(), cheap).unwrap();
    rekey(dir.path(), &mut KeyFiles::clear(), &sealed).unwrap();
    assert!(locked(dir.path()));
    let mut reader = KeyFiles::with_passphrase(Passphrase::new("p").unwrap());
    for name in DEVICE_FILES {
        assert_eq!(
            reader.read(dir.path(), name).unwrap().as_slice(),
            name.as_bytes()
        );
    }
    // Cut short before the mark: the new files are dropped, the old ones stay.
    sealed
        .write(dir.path(), ".device.key.rekey", b"half")
        .unwrap();
    finish_rekey(dir.path()).unwrap();
    assert!(!dir.path().join(".device.key.rekey").exists());
    assert_eq!(
        reader.read(dir.path(), "device.key").unwrap().as_slice(),
        b"device.key"
    );
    // Cut short after the mark: the change is finished (here back to clear).
    for name in DEVICE_FILES {
        clear
            .write(dir.path(), &format!(".{name}.rekey"), b"new")
            .unwrap();
    }
    write_private(dir.path(), ".rekey.done", b"").unwrap();
    assert!(!locked(dir.path()), "the finished change decides");
    finish_rekey(dir.path()).unwrap();
    for name in DEVICE_FILES {
        assert_eq!(
            KeyFiles::clear().read(dir.path(), name).unwrap().as_slice(),
            b"new"
        );
    }
    assert!(!dir.path().join(".rekey.done").exists());
}

/// A store of schema 3 (history rows numbered with `AUTOINCREMENT`) opens as schema
/// 4 with its history whole and in order, and new rows go after the old ones.
#[test]
fn a_schema_3_history_is_renumbered_without_autoincrement_and_kept_whole() {
    use super::history::Entry;
    use super::index::Keys;
    let entry = |at_ms: u64, n: usize| {
        let e = Entry {
            at_ms,
            device: "0123456789abcdef".into(),
            contact_id: format!("c{n}"),
            name: Some(format!("Contact {n}")),
            jids: vec![format!("u{n}@example.org")],
            changes: vec!["added".into()],
        };
        (format!("key {n}").into_bytes(), e)
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new(&[3; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    // What schema 3 wrote.
    store.conn().execute_batch(SCHEMA_3_HISTORY).unwrap();
    // Rows of one time, so only their numbers order them.
    let old: Vec<_> = (0..5).map(|n| entry(1_000, n)).collect();
    store.add_history(&keys, &old, &[]).unwrap();
    let before = store.history(&keys, 100, &|_| true).unwrap();
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    let sql = history_table_sql(&store);
    assert!(!sql.contains("AUTOINCREMENT"), "{sql}");
    assert_eq!(store.history(&keys, 100, &|_| true).unwrap(), before);
    store.add_history(&keys, &[entry(1_000, 5)], &[]).unwrap();
    let after = store.history(&keys, 100, &|_| true).unwrap();
    let ids: Vec<&str> = after.iter().map(|e| e.contact_id.as_str()).collect();
    assert_eq!(ids, ["c5", "c4", "c3", "c2", "c1", "c0"]);
    let indexed: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'history_at'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 1);
}

#[test]
fn a_schema_3_store_whose_history_cannot_be_copied_opens_with_the_old_table() {
    let dir = tempfile::tempdir().unwrap();
    let keys = index::Keys::new(&[3; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    store.conn().execute_batch(SCHEMA_3_HISTORY).unwrap();
    let entry = history::Entry {
        at_ms: 1_000,
        device: "0123456789abcdef".into(),
        contact_id: "c0".into(),
        name: None,
        jids: vec!["u0@example.org".into()],
        changes: vec!["added".into()],
    };
    store
        .add_history(&keys, &[(b"key 0".to_vec(), entry)], &[])
        .unwrap();
    let before = store.history(&keys, 100, &|_| true).unwrap();
    full_disk(&store);
    store.migrate().expect("opens with the old history table");
    assert_eq!(store.history(&keys, 100, &|_| true).unwrap(), before);
    assert!(history_table_sql(&store).contains("AUTOINCREMENT"));
    assert_eq!(store.schema().unwrap(), 3);
    // With room again, the next open makes the copy.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(!history_table_sql(&store).contains("AUTOINCREMENT"));
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.history(&keys, 100, &|_| true).unwrap(), before);
}

/// A full disk, for this connection: the file may not grow by a page.
fn full_disk(store: &Store) {
    let pages: i64 = store
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    store
        .conn()
        .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
        .unwrap();
}

/// How the store's `history` table is declared.
fn history_table_sql(store: &Store) -> String {
    store
        .conn()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'history'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// What schema 3 wrote: `history` numbered with `AUTOINCREMENT`.
const SCHEMA_3_HISTORY: &str = "DROP TABLE history;
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL UNIQUE,
        at INTEGER NOT NULL, data BLOB NOT NULL);
    CREATE INDEX history_at ON history (at);
    UPDATE meta SET value = X'0000000000000003' WHERE key = 'schema';";

/// A store in `dir` holding three versions of each of 40 items (every seventh
/// ending in a tombstone), and those records.
fn forty_items(dir: &Path) -> (Store, Vec<Record>) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir).unwrap();
    let records: Vec<Record> = (1..=40u8)
        .flat_map(|item| (1..=3u8).map(move |t| (item, t)))
        .map(|(item, t)| record(&key, item, u64::from(t), item % 7 == 0 && t == 3))
        .collect();
    store.persist(&records).unwrap();
    (store, records)
}

/// A store of schema 4 (`records` and `items` in `WITHOUT ROWID` tables) opens
/// with both in rowid tables, every row kept, the replica the same.
#[test]
fn a_schema_4_store_gets_rowid_tables_with_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, records) = forty_items(dir.path());
    for n in 0..20u8 {
        store
            .conn()
            .execute(
                "INSERT INTO items (node, item, version, signature, kind, data)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![i64::from(n % 2), [n; 16], [n; 44], [n; 64], 1, vec![n; 300]],
            )
            .unwrap();
    }
    store.conn().execute_batch(SCHEMA_4_TABLES).unwrap();
    assert!(table_sql(&store, "records").contains("WITHOUT ROWID"));
    let (before, _) = store.load().unwrap();
    let items_before = all_items(&store);
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    for table in ["records", "items"] {
        let sql = table_sql(&store, table);
        assert!(!sql.contains("WITHOUT ROWID"), "{sql}");
    }
    let free: i64 = store
        .conn()
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0, "the old tables' pages are given back");
    let (after, quarantined) = store.load().unwrap();
    assert!(quarantined.is_empty());
    assert_eq!(
        after.records().collect::<Vec<_>>(),
        before.records().collect::<Vec<_>>()
    );
    assert_eq!(all_items(&store), items_before);
    // The keys stay unique: a record stored again is still one row.
    let rows = store.counts().unwrap().rows;
    store.persist(&records[..3]).unwrap();
    assert_eq!(store.counts().unwrap().rows, rows);
    let indexes: i64 = store
        .conn()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'
             AND name IN ('records_key', 'records_winners', 'items_key', 'items_kind')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 3, "records_key, items_key and items_kind");
    let records = records_indexes(&store);
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(
        records[0].1.contains("signature, tombstone)"),
        "{records:?}"
    );
}

/// What schema 5 wrote: two indexes on `records`.
const SCHEMA_5_INDEXES: &str = "DROP INDEX records_key;
    CREATE UNIQUE INDEX records_key ON records (space, item, version, signature);
    CREATE INDEX records_winners ON records (space, item, version, tombstone);
    UPDATE meta SET value = X'0000000000000005' WHERE key = 'schema';";

/// The indexes of the records table, by name, with how each is declared.
fn records_indexes(store: &Store) -> Vec<(String, String)> {
    let conn = store.conn();
    let mut stmt = conn
        .prepare(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'
             ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

/// A store of schema 5 (two indexes on `records`) opens with one, its key with
/// `tombstone` last: the same records, the same counts, keys as unique as before.
#[test]
fn a_schema_5_store_gets_one_records_index() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, records) = forty_items(dir.path());
    store.conn().execute_batch(SCHEMA_5_INDEXES).unwrap();
    assert_eq!(records_indexes(&store).len(), 2);
    let (before, _) = store.load().unwrap();
    let counts = store.winner_counts().unwrap();
    assert_eq!(counts.1, 5, "items 7, 14, 21, 28 and 35 end in a tombstone");
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    let indexes = records_indexes(&store);
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_eq!(indexes[0].0, "records_key");
    assert!(
        indexes[0].1.contains("signature, tombstone)"),
        "{indexes:?}"
    );
    assert_eq!(store.winner_counts().unwrap(), counts);
    let (after, quarantined) = store.load().unwrap();
    assert!(quarantined.is_empty());
    assert_eq!(
        after.records().collect::<Vec<_>>(),
        before.records().collect::<Vec<_>>()
    );
    let rows = store.counts().unwrap().rows;
    store.persist(&records[..3]).unwrap();
    assert_eq!(
        store.counts().unwrap().rows,
        rows,
        "stored again, still one row"
    );
}

/// A store in `dir` holding one record of each of `n` items.
fn store_holding(dir: &Path, n: u8) -> Store {
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir).unwrap();
    let records: Vec<Record> = (1..=n).map(|i| record(&key, i, 1, false)).collect();
    store.persist(&records).unwrap();
    store
}

/// A store with the one index but noted as schema 5 (what a kill between the
/// index and the note left, when they were two commits) opens as schema 6.
#[test]
fn a_store_with_the_one_index_noted_as_schema_5_opens_as_schema_6() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_holding(dir.path(), 20);
    store
        .conn()
        .execute_batch("UPDATE meta SET value = X'0000000000000005' WHERE key = 'schema'")
        .unwrap();
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    assert_eq!(records_indexes(&store).len(), 1);
    assert_eq!(store.load().unwrap().0.records().count(), 20);
    // The conversion notes the schema itself, with nothing else left to do.
    store.conn().execute_batch(SCHEMA_5_INDEXES).unwrap();
    store.one_records_index(true).unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
}

/// A store in the current layout whose schema note the disk has no room for opens
/// all the same, noted as before; the next open with room notes it.
#[test]
fn a_schema_note_a_full_disk_refuses_does_not_stop_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_holding(dir.path(), 20);
    // No note (read as schema 1: every step finds nothing left to do), and a disk
    // with no room for a row of its size.
    store
        .conn()
        .execute_batch("DELETE FROM meta WHERE key = 'schema'")
        .unwrap();
    full_disk(&store);
    for n in 0.. {
        let filled = store.conn().execute(
            "INSERT INTO meta (key, value) VALUES (?1, X'0000000000000000')",
            [format!("f{n:05}")],
        );
        match filled {
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) => break,
            Err(e) => panic!("{e}"),
        }
    }
    store.migrate().expect("opens without the note");
    assert_eq!(store.schema().unwrap(), 1);
    assert_eq!(store.load().unwrap().0.records().count(), 20);
    store
        .conn()
        .query_row("PRAGMA max_page_count = 1000000", [], |_| Ok(()))
        .unwrap();
    store.migrate().unwrap();
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
}

/// The one index takes no more pages than the two it replaces: a schema 5 store
/// whose file is at its page limit gets it too, the file no larger. (On a full file
/// system the log must grow by the new index first: the conversion then fails,
/// rolls back and is made at a later open, as `copied` says.)
#[test]
fn a_schema_5_store_on_a_full_disk_gets_one_records_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_holding(dir.path(), 200);
    store.conn().execute_batch(SCHEMA_5_INDEXES).unwrap();
    store.conn().execute_batch("VACUUM").unwrap();
    let pages = |store: &Store| -> i64 {
        store
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    };
    let before = pages(&store);
    full_disk(&store);
    store.migrate().unwrap();
    assert!(pages(&store) <= before);
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    assert_eq!(records_indexes(&store).len(), 1);
    assert_eq!(store.load().unwrap().0.records().count(), 200);
}

/// A row of the item index: node, item, version, signature, kind, data.
type ItemRow = (i64, Vec<u8>, Vec<u8>, Vec<u8>, i64, Vec<u8>);

/// Every row of the item index, in key order.
fn all_items(store: &Store) -> Vec<ItemRow> {
    let conn = store.conn();
    let mut stmt = conn
        .prepare("SELECT node, item, version, signature, kind, data FROM items ORDER BY node, item")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

/// How the store's table `name` is declared.
fn table_sql(store: &Store, name: &str) -> String {
    schema::table_sql(store, name).unwrap()
}

/// What schema 4 wrote: `records` and `items` in `WITHOUT ROWID` tables.
const SCHEMA_4_TABLES: &str = "CREATE TABLE records_v4 (
        space INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
        signature BLOB NOT NULL, bytes BLOB NOT NULL, tombstone INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (space, item, version, signature)) WITHOUT ROWID;
    INSERT INTO records_v4 SELECT space, item, version, signature, bytes, tombstone FROM records;
    DROP TABLE records;
    ALTER TABLE records_v4 RENAME TO records;
    CREATE INDEX records_winners ON records (space, item, version, tombstone);
    CREATE TABLE items_v4 (
        node INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
        signature BLOB NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (node, item)) WITHOUT ROWID;
    INSERT INTO items_v4 SELECT node, item, version, signature, kind, data FROM items;
    DROP TABLE items;
    ALTER TABLE items_v4 RENAME TO items;
    CREATE INDEX items_kind ON items (kind, node);
    UPDATE meta SET value = X'0000000000000004' WHERE key = 'schema';";

#[test]
fn a_schema_4_store_without_room_to_copy_opens_with_the_old_tables() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = store_holding(dir.path(), 40);
    store.conn().execute_batch(SCHEMA_4_TABLES).unwrap();
    // No free page left in the file either.
    store.conn().execute_batch("VACUUM").unwrap();
    full_disk(&store);
    store.migrate().expect("opens with the old tables");
    assert!(table_sql(&store, "records").contains("WITHOUT ROWID"));
    assert_eq!(store.schema().unwrap(), 4);
    assert_eq!(store.load().unwrap().0.records().count(), 40);
    drop(store);
    let mut store = Store::open(dir.path()).unwrap();
    assert!(!table_sql(&store, "records").contains("WITHOUT ROWID"));
    assert_eq!(store.schema().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.load().unwrap().0.records().count(), 40);
}

fn sealed(key: &SigningKey, item: u8, wall_ms: u64, tomb: bool) -> Record {
    let body = Body::Sealed(kith_protocol::seal::Sealed {
        key: "k1".into(),
        data: vec![item; 300 + wall_ms as usize],
    });
    signed(key, Space::Contacts, item, wall_ms, (!tomb).then_some(body))
}

#[test]
fn a_shelved_load_holds_no_sealed_body_and_reads_each_back_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    let live = sealed(&key, 1, 1, false);
    let (older, replaced, tomb) = (
        sealed(&key, 2, 3, false),
        sealed(&key, 2, 4, false),
        sealed(&key, 2, 5, true),
    );
    let roster = record(&key, 3, 1, false);
    store
        .persist(&[
            live.clone(),
            older.clone(),
            replaced.clone(),
            tomb.clone(),
            roster.clone(),
        ])
        .unwrap();
    let k = (Space::Contacts, ItemId([2; 16]));
    store
        .collect(&[(k.0, k.1, tomb.version, tomb.signature)], &[])
        .unwrap();
    let (replica, quarantined) = store.load_shelved().unwrap();
    assert!(quarantined.is_empty());
    let held = replica.get(Space::Contacts, &live.item).unwrap();
    assert!(
        held.is_shelved(),
        "a sealed record is held without its body"
    );
    assert!(held.same_as(&live));
    assert_eq!(held.encoded_len(), live.encoded_len());
    // Read back: the stored record itself, from `records`...
    assert_eq!(replica.unshelved(held).as_ref(), Some(&live));
    assert_eq!(
        replica.get_unshelved(Space::Contacts, &live.item),
        Some(live.clone())
    );
    // ... and from `collected_shadows`.
    let shadows = replica.collected_shadows(k.0, &k.1);
    assert_eq!(shadows.len(), 2);
    assert!(shadows.iter().all(Record::is_shelved));
    let back: Vec<Record> = shadows
        .iter()
        .filter_map(|r| replica.unshelved(r))
        .collect();
    assert_eq!(back, [replaced, older]);
    // Data bodies stay held.
    assert_eq!(replica.get(Space::Roster, &roster.item), Some(&roster));
    // What the store no longer has is not read back (the caller decides what then).
    store
        .conn()
        .execute("DELETE FROM records WHERE space = 0", [])
        .unwrap();
    assert_eq!(replica.unshelved(held), None);
    // A shelved record never goes to the store.
    assert!(store.persist(std::slice::from_ref(held)).is_err());
}

#[test]
fn sync_states_read_back_sealed_and_what_does_not_open_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let keys = index::Keys::new(&[3; 32]);
    let mut store = Store::open(dir.path()).unwrap();
    store.set_sync_state(&keys, &[1; 32], &[9; 40]).unwrap();
    store.set_sync_state(&keys, &[2; 32], &[8; 40]).unwrap();
    // Written again: one row a device.
    store.set_sync_state(&keys, &[1; 32], &[7; 40]).unwrap();
    // A row that does not open, and a sealed value without the tag, are skipped.
    store.set_meta("sync:junk", b"not sealed").unwrap();
    store.set_meta("sync:other", &keys.seal(&[0; 72])).unwrap();
    let states = store.sync_states(&keys).unwrap();
    assert_eq!(states, vec![([1; 32], vec![7; 40]), ([2; 32], vec![8; 40])]);
    // Under another device's keys nothing opens.
    assert!(
        store
            .sync_states(&index::Keys::new(&[4; 32]))
            .unwrap()
            .is_empty()
    );
    // Nothing of it is in clear on disk.
    drop(store);
    for file in ["kith.db", "kith.db-wal"] {
        let bytes = fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(!bytes.windows(40).any(|w| w == [7; 40]), "{file}");
    }
}
