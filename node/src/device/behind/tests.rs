//! Tests of `behind`.

use kith_protocol::contacts::Command;
use kith_protocol::jid::BareJid;

use super::*;

fn jid(s: &str) -> BareJid {
    BareJid::parse(s).expect("a test JID")
}

/// A new device whose index and history may lag, as a running node's do.
fn lagging() -> (tempfile::TempDir, Device) {
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
    device.write_index_behind();
    (dir, device)
}

fn add(device: &mut Device, j: &str) {
    let command = Command::AddContact {
        jid: jid(j),
        name: Some(format!("name of {j}")),
        groups: vec![],
    };
    device.execute(command).unwrap().unwrap();
}

fn logged(device: &mut Device) -> Vec<String> {
    let mut jids: Vec<String> = device
        .history(None, 100)
        .unwrap()
        .into_iter()
        .flat_map(|e| e.jids)
        .collect();
    jids.sort();
    jids
}

/// Behind the records, the index waits (not current on disk) until caught up;
/// then it matches the records and the history tells of every change.
#[test]
fn the_index_waits_until_caught_up_and_then_matches() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    add(&mut device, "b@x.lit");
    assert!(device.index_behind().is_some_and(|n| n >= 2));
    let due = device.index_due().expect("due when something waits");
    assert!(due <= Instant::now() + MAX_LAG);
    assert!(!device.store.index_is_current().unwrap(), "written behind");
    device.catch_up_index().unwrap();
    assert_eq!(device.index_behind(), None);
    assert_eq!(device.index_due(), None);
    assert!(device.index_matches_records().unwrap());
    assert_eq!(logged(&mut device), ["a@x.lit", "b@x.lit"]);
}

/// The log's answer makes the writes that wait first.
#[test]
fn the_log_catches_up_first() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    assert!(device.index_behind().is_some());
    assert_eq!(logged(&mut device), ["a@x.lit"]);
    assert_eq!(device.index_behind(), None);
}

/// A deletion does not wait: what it erases from the index and the history goes
/// in the transaction of its records, with everything that waited.
#[test]
fn a_deletion_writes_at_once() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    add(&mut device, "b@x.lit");
    assert!(device.index_behind().is_some());
    device
        .execute(Command::RemoveContact {
            jid: jid("a@x.lit"),
        })
        .unwrap()
        .unwrap();
    assert_eq!(device.index_behind(), None, "written with the deletion");
    assert!(device.store.index_is_current().unwrap());
    let history = device.history(None, 100).unwrap();
    assert!(history.iter().any(|e| e.changes == ["deleted"]));
    assert!(
        !history
            .iter()
            .any(|e| e.jids.contains(&"a@x.lit".to_owned())),
        "the deletion erased what the history held of it: {history:?}"
    );
    assert!(device.index_matches_records().unwrap());
}

fn is_reserved(p: &kith_protocol::item::Payload) -> bool {
    matches!(p, kith_protocol::item::Payload::Reserved(_))
}

fn is_contact(p: &kith_protocol::item::Payload) -> bool {
    matches!(p, kith_protocol::item::Payload::Contact(_))
}

/// The items whose index rows hold a payload `kind` accepts.
fn indexed(device: &Device, kind: fn(&kith_protocol::item::Payload) -> bool) -> BTreeSet<ItemId> {
    let entries = device.store.index_entries(&device.index).unwrap();
    entries
        .into_iter()
        .filter(|e| e.payload.as_ref().is_some_and(kind))
        .map(|e| e.item)
        .collect()
}

/// The placeholders an edit's padding adds or takes away hold nothing: their
/// index rows wait with the rest. A contact an edit replaces held something:
/// its row goes in the transaction of the edit's records.
#[test]
fn placeholders_wait_and_a_replaced_contact_goes_at_once() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    device.catch_up_index().unwrap();
    let rows = |device: &Device| (indexed(device, is_reserved), indexed(device, is_contact));
    let (reserved, contacts) = rows(&device);
    assert!(
        !reserved.is_empty(),
        "the padding's placeholders are indexed"
    );
    // A new contact: padding takes a placeholder away, whose row waits.
    add(&mut device, "b@x.lit");
    let view = device.engine.view();
    let taken: Vec<ItemId> = reserved
        .iter()
        .filter(|item| view.item_is_gone(NodeKind::Contacts, item))
        .copied()
        .collect();
    assert_eq!(taken.len(), 1, "padding took one placeholder away");
    assert_eq!(rows(&device).0, reserved, "its row waits");
    assert!(device.index_behind().is_some());
    assert!(
        !device.store.index_is_current().unwrap(),
        "not current while it waits"
    );
    // An edit replaces a's item: its row goes at once, with what waited or not.
    let edit = Command::EditContact {
        jid: jid("a@x.lit"),
        edit: kith_protocol::contacts::ContactEdit {
            name: Some(Some("renamed".into())),
            ..Default::default()
        },
    };
    device.execute(edit).unwrap().unwrap();
    let (_, now) = rows(&device);
    assert!(
        contacts.iter().all(|item| !now.contains(item)),
        "the replaced contact's row is gone at once"
    );
    device.catch_up_index().unwrap();
    let (after, _) = rows(&device);
    assert!(
        after.iter().all(|item| !taken.contains(item)),
        "gone once caught up"
    );
    assert!(device.index_matches_records().unwrap());
}

/// What the index holds of an item: nothing for no row or an empty
/// placeholder's row, something for a contact's, or for an id a client chose.
#[test]
fn the_index_holds_nothing_of_empty_placeholders_only() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    device.catch_up_index().unwrap();
    let of = |f| *indexed(&device, f).first().expect("such an entry");
    let placeholder = of(is_reserved);
    let contact = of(is_contact);
    let holds_nothing = |device: &Device, item: &ItemId| {
        device
            .store
            .index_holds_nothing(&device.index, NodeKind::Contacts, item)
            .unwrap()
    };
    assert!(holds_nothing(&device, &placeholder));
    assert!(holds_nothing(&device, &ItemId([7; 16])), "no row");
    assert!(!holds_nothing(&device, &contact));
    device
        .store
        .set_item_name(NodeKind::Contacts, &placeholder, "juliet@capulet.lit")
        .unwrap();
    assert!(!holds_nothing(&device, &placeholder), "a client named it");
    // A deletion's mark is a placeholder that carries something.
    device
        .execute(Command::RemoveContact {
            jid: jid("a@x.lit"),
        })
        .unwrap()
        .unwrap();
    device.catch_up_index().unwrap();
    let view = device.engine.view();
    let mark = device
        .store
        .index_entries(&device.index)
        .unwrap()
        .into_iter()
        .map(|e| e.item)
        .find(|item| view.marks_deletion(NodeKind::Contacts, item))
        .expect("the deletion's mark is indexed");
    assert!(!holds_nothing(&device, &mark), "a mark holds something");
}

/// A device that ends with writes waiting (a crash) leaves the index behind the
/// records: the next open rebuilds it, and the history lacks nothing.
#[test]
fn writes_lost_with_the_process_are_made_again_at_the_next_open() {
    let (dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    device.catch_up_index().unwrap();
    add(&mut device, "b@x.lit");
    add(&mut device, "c@x.lit");
    assert!(device.index_behind().is_some());
    drop(device);

    let mut device = Device::open(dir.path()).unwrap();
    assert!(device.index_repairs() > 0, "rebuilt");
    assert!(device.index_matches_records().unwrap());
    assert_eq!(logged(&mut device), ["a@x.lit", "b@x.lit", "c@x.lit"]);
    assert!(device.authored.is_empty(), "a rebuild is no news to log");
    drop(device);
    let device = Device::open(dir.path()).unwrap();
    assert_eq!(device.index_repairs(), 0, "current since");
}

/// What each edit's history is made of is kept when it is stored: two renames
/// in one wait (the first one's item replaced by the second's before anything
/// is written) both reach the history.
#[test]
fn edits_replaced_while_waiting_keep_their_history() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    for name in ["First", "Second"] {
        let edit = kith_protocol::contacts::ContactEdit {
            name: Some(Some(name.to_owned())),
            ..Default::default()
        };
        device
            .execute(Command::EditContact {
                jid: jid("a@x.lit"),
                edit,
            })
            .unwrap()
            .unwrap();
    }
    assert!(device.index_behind().is_some(), "nothing written yet");
    device.catch_up_index().unwrap();
    let changes: Vec<String> = device
        .history(None, 100)
        .unwrap()
        .into_iter()
        .flat_map(|e| e.changes)
        .collect();
    for name in ["name \"First\"", "name \"Second\""] {
        assert!(changes.iter().any(|c| c == name), "{name} in {changes:?}");
    }
    assert!(device.index_matches_records().unwrap());
}

/// Nothing is written inside another transaction (it could still roll back),
/// nor on a failed device.
#[test]
fn no_catch_up_inside_a_transaction_or_on_a_failed_device() {
    let (_dir, mut device) = lagging();
    add(&mut device, "a@x.lit");
    device.begin_batch().unwrap();
    device.catch_up_index().unwrap();
    assert!(device.index_behind().is_some(), "still waiting");
    device.end_batch(Ok::<(), store::Error>(())).unwrap();
    device.failed = Some("a test".into());
    device.catch_up_index().unwrap();
    assert!(
        device.index_behind().is_some(),
        "a failed device writes nothing"
    );
    assert!(!device.store.index_is_current().unwrap());
}

/// Due after `QUIET` without a change, at most `MAX_LAG` after the first (or
/// the last made during an exchange), never before a retry's time; while an
/// exchange is under way, only at `MAX_LAG_EXCHANGING`.
#[test]
fn writes_are_due_when_quiet_or_late() {
    let first = Instant::now();
    let mut behind = Behind {
        items: BTreeSet::new(),
        contacts: BTreeMap::new(),
        first,
        last: first + Duration::from_millis(10),
        lag_from: first,
        exchanged: false,
        retry: None,
    };
    assert_eq!(behind.due(false), first + Duration::from_millis(10) + QUIET);
    assert_eq!(behind.due(true), first + MAX_LAG_EXCHANGING);
    behind.last = first + MAX_LAG;
    assert_eq!(
        behind.due(false),
        first + MAX_LAG,
        "never later than MAX_LAG"
    );
    let retry = first + MAX_LAG + RETRY;
    behind.retry = Some(retry);
    assert_eq!(behind.due(false), retry);
    assert_eq!(behind.due(true), first + MAX_LAG_EXCHANGING);
    let retry = first + MAX_LAG_EXCHANGING + RETRY;
    behind.retry = Some(retry);
    assert_eq!(behind.due(true), retry);
    // The last change during an exchange 5 s in: once it ends, the lag counts
    // from there, and the writes are due when quiet.
    behind.retry = None;
    let end = first + Duration::from_secs(5);
    (behind.last, behind.lag_from) = (end, end);
    assert_eq!(behind.due(false), end + QUIET);
}

/// A slice takes the first items and contact versions, the rest keeps the
/// others, and joined back they are what waited.
#[test]
fn what_waits_splits_into_slices_and_joins_back() {
    let first = Instant::now();
    let key = |n: u8| (NodeKind::Contacts, ItemId([n; 16]));
    let version = |n: u8| Version {
        hlc: kith_protocol::clock::Hlc {
            wall_ms: u64::from(n),
            counter: 0,
        },
        device: kith_protocol::record::DeviceId([n; 32]),
    };
    let contact = Arc::new(Contact::default());
    let mut behind = Behind {
        items: (0..5).map(key).collect(),
        contacts: (0..3)
            .map(|n| ((ItemId([n; 16]), version(n)), Arc::clone(&contact)))
            .collect(),
        first,
        last: first,
        lag_from: first,
        exchanged: false,
        retry: None,
    };
    let whole = (behind.items.clone(), behind.contacts.clone());
    let rest = behind.split_slice(2).expect("more than a slice waits");
    assert_eq!(behind.items, (0..2).map(key).collect());
    assert_eq!(behind.contacts.len(), 2);
    assert_eq!(rest.items, (2..5).map(key).collect());
    assert_eq!(rest.contacts.len(), 1);
    let mut tail = rest;
    assert!(tail.split_slice(3).is_none(), "a slice holds the rest");
    behind.join(tail);
    assert_eq!((behind.items, behind.contacts), whole);
}

/// The newest rows kept are as many changes: a change carried by several
/// versions of a contact takes one place, not several (a new device kept fewer
/// than 10,000 when the cut came first).
#[test]
fn the_newest_rows_kept_are_distinct_changes() {
    let row = |at_ms: u64| {
        let entry = history::Entry {
            at_ms,
            device: "d".into(),
            contact_id: format!("c{at_ms}"),
            name: None,
            jids: Vec::new(),
            changes: Vec::new(),
        };
        (at_ms.to_be_bytes().to_vec(), entry)
    };
    let max = u64::try_from(history::MAX_ROWS).unwrap();
    let mut rows: Vec<_> = (0..max + 10).map(row).collect();
    // The newest hundred twice, as two versions of each contact carry them.
    rows.extend((max - 90..max + 10).map(row));
    let mut authored = BTreeMap::new();
    keep_newest(&mut rows, &mut authored);
    let kept: BTreeSet<u64> = rows.iter().map(|(_, e)| e.at_ms).collect();
    assert_eq!(rows.len(), kept.len(), "each once");
    assert_eq!(
        kept,
        (10..max + 10).collect::<BTreeSet<u64>>(),
        "the newest"
    );
    assert_eq!(authored["d"].len(), 10, "those cut are counted");
}

/// Without `write_index_behind` (a command on a stopped node), nothing waits.
#[test]
fn a_device_without_a_node_writes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
    add(&mut device, "a@x.lit");
    assert_eq!(device.index_behind(), None);
    assert!(device.store.index_is_current().unwrap());
}
