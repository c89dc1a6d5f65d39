//! Tests of `device`.

use kith_protocol::contacts::Command;
use kith_protocol::jid::BareJid;

use super::*;

fn add(jid: &str) -> Command {
    Command::AddContact {
        jid: BareJid::parse(jid).expect("a test JID"),
        name: None,
        groups: vec![],
    }
}

/// What several inputs of one batch wrote is committed together, or, when one of
/// them fails, rolled back together, with nothing left to send.
#[test]
fn a_batch_commits_whole_or_rolls_back_whole_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
    device.begin_batch().unwrap();
    device.execute(add("a@x.lit")).unwrap().unwrap();
    device.execute(add("b@x.lit")).unwrap().unwrap();
    assert!(device.store.in_transaction(), "nothing committed yet");
    device.end_batch(Ok::<(), store::Error>(())).unwrap();
    assert!(!device.store.in_transaction());

    device.begin_batch().unwrap();
    device.execute(add("c@x.lit")).unwrap().unwrap();
    device.net.push_back(Output::Publish(vec![1]));
    let failed: Result<(), store::Error> = Err(store::Error::OverLimits("a test".into()));
    assert!(device.end_batch(failed).is_err());
    assert!(device.net.is_empty(), "nothing may leave");
    assert!(device.failed.is_some(), "the node stops");
    assert!(!device.store.in_transaction());
    drop(device);

    let mut device = Device::open(dir.path()).unwrap();
    let view = device.engine().view();
    let jids: Vec<String> = view
        .contacts()
        .flat_map(|c| c.contact.identities.iter().map(|i| i.value.clone()))
        .collect();
    assert!(jids.iter().any(|j| j.contains("a@x.lit")), "{jids:?}");
    assert!(jids.iter().any(|j| j.contains("b@x.lit")), "{jids:?}");
    assert!(!jids.iter().any(|j| j.contains("c@x.lit")), "{jids:?}");
}

/// A new item's first record skips the prune (its item has no shadow in the
/// replica); each later version prunes, so an item keeps its winner and
/// `SHADOW_DEPTH` replaced versions, also across a restart: once every item a
/// reseal writes has them, more reseals add no rows. (An edit of a contact or a
/// group writes a new item; a reseal writes every item again in place.)
#[test]
fn an_item_keeps_its_winner_and_shadow_depth_versions() {
    use kith_protocol::replica::SHADOW_DEPTH;

    let dir = tempfile::tempdir().unwrap();
    let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
    let rows = |device: &Device| device.store.counts().unwrap().rows;
    let empty = rows(&device);
    device
        .execute(Command::AddGroup {
            name: "G0".into(),
            description: None,
        })
        .unwrap()
        .unwrap();
    let first = rows(&device);
    assert!(first > empty, "the group is stored");
    for _ in 0..=SHADOW_DEPTH {
        device.execute(Command::Reseal).unwrap().unwrap();
    }
    let full = rows(&device);
    assert!(
        full >= first + SHADOW_DEPTH as u64,
        "{full} rows, {first} at first"
    );
    for _ in 0..2 * SHADOW_DEPTH {
        device.execute(Command::Reseal).unwrap().unwrap();
        assert_eq!(rows(&device), full);
    }
    drop(device);
    // After a restart the replica holds the items' winners and shadows again.
    let mut device = Device::open(dir.path()).unwrap();
    device.execute(Command::Reseal).unwrap().unwrap();
    assert_eq!(rows(&device), full);
}
