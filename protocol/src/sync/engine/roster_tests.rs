//! Renaming a device of the roster: the new name reaches every device, and a
//! revocation made meanwhile wins over a rename.

use super::harness::Harness;
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
