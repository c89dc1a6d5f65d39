//! Where each device stands ([`super::state`]): the summary every reconciliation
//! frame carries, read against this device's own, and refreshed by `CheckNow`; and
//! a revoked device learning where it stands from a revocation notice.

use super::harness::{Harness, jid, now};
use super::*;
use crate::contacts::Command as Edit;
use crate::sync::recon::Summary;

fn device(h: &Harness, i: usize) -> DeviceId {
    DeviceId(h.sides[i].key.verifying_key().to_bytes())
}

fn relation(h: &Harness, at: usize, of: usize) -> Option<Relation> {
    h.sides[at]
        .engine
        .sync_state(&device(h, of))
        .map(|s| s.relation())
}

fn add(j: &str) -> Edit {
    Edit::AddContact {
        jid: jid(j),
        name: None,
        groups: Vec::new(),
    }
}

#[test]
fn each_side_knows_where_the_other_stands_and_a_check_refreshes_it() {
    let mut h = Harness::new();
    h.connect(true);
    assert_eq!(relation(&h, 0, 1), Some(Relation::UpToDate));
    assert_eq!(relation(&h, 1, 0), Some(Relation::UpToDate));

    // Apart, the first device adds contacts; what each knew stays, as of then.
    h.connect(false);
    let before = h.sides[0]
        .engine
        .sync_state(&device(&h, 1))
        .expect("a state");
    h.execute(0, add("juliet@capulet.lit")).expect("added");
    h.execute(0, add("nurse@capulet.lit")).expect("added");
    assert_eq!(
        h.sides[0].engine.sync_state(&device(&h, 1)),
        Some(before),
        "kept across a disconnection"
    );

    // The second comes back and asks first: its request tells the first device
    // that it lacks what was just added.
    let (a, b) = (device(&h, 0), device(&h, 1));
    let t = now(h.mono);
    h.sides[1]
        .engine
        .handle_input(t, Input::Connected { peer: 0, device: a });
    let request = std::iter::from_fn(|| h.sides[1].engine.poll_output())
        .find_map(|o| match o {
            Output::Request { bytes, .. } => Some(bytes),
            _ => None,
        })
        .expect("a reconciliation request");
    h.sides[0]
        .engine
        .handle_input(t, Input::Connected { peer: 1, device: b });
    h.sides[0].engine.handle_input(
        t,
        Input::Request {
            from: 1,
            id: 1_000,
            bytes: request,
        },
    );
    assert!(
        matches!(relation(&h, 0, 1), Some(Relation::Behind(n)) if n > 0),
        "{:?}",
        relation(&h, 0, 1)
    );

    // Once they have met (the harness carries everything), a check from either
    // side finds them alike, as of now.
    h.connect(true);
    for i in 0..2 {
        let asked = h.mono;
        h.sides[i].engine.handle_input(now(h.mono), Input::CheckNow);
        h.pump();
        let other = 1 - i;
        let state = h.sides[i]
            .engine
            .sync_state(&device(&h, other))
            .expect("a state");
        assert!(state.at.mono_ms >= asked, "the check answered");
        assert_eq!(state.relation(), Relation::UpToDate);
        assert_eq!(state.theirs, h.sides[i].engine.summary());
    }
}

#[test]
fn relations_read_counts_and_fingerprints() {
    let at = now(0);
    let state = |theirs: (u64, u64), ours: (u64, u64)| SyncState {
        theirs: Summary {
            count: theirs.0,
            fp: theirs.1,
        },
        ours: Summary {
            count: ours.0,
            fp: ours.1,
        },
        at,
    };
    assert_eq!(state((5, 1), (5, 1)).relation(), Relation::UpToDate);
    assert_eq!(state((3, 1), (5, 2)).relation(), Relation::Behind(2));
    assert_eq!(state((7, 1), (5, 2)).relation(), Relation::Ahead(2));
    assert_eq!(state((5, 1), (5, 2)).relation(), Relation::Differs);
}

#[test]
fn a_revocation_notice_tells_the_revoked_device() {
    let mut h = Harness::new();
    h.connect(true);
    h.connect(false);
    let (a, b) = (device(&h, 0), device(&h, 1));
    h.execute(0, Command::RevokeDevice(b)).expect("revoked");
    assert_eq!(h.sides[1].engine.revoked_by(), None);
    assert_eq!(h.sides[0].engine.revocation_notice(&a), None, "not revoked");
    let notice = h.sides[0].engine.revocation_notice(&b).expect("revoked");
    // The genesis revoked it: the revocation alone, nothing else of the roster.
    match Frame::decode(&notice, usize::MAX).expect("a frame") {
        Frame::Request { records, .. } => {
            assert_eq!(records.len(), 1);
            assert_eq!(records[0].item, crate::roster::Entry::item(&b));
        }
        other => panic!("{other:?}"),
    }
    let t = now(h.mono);
    h.sides[1]
        .engine
        .handle_input(t, Input::Connected { peer: 0, device: a });
    h.sides[1].engine.handle_input(
        t,
        Input::Request {
            from: 0,
            id: 7,
            bytes: notice,
        },
    );
    let by = h.sides[1].engine.revoked_by().expect("told");
    assert_eq!(by.device, a);
    assert_eq!(h.sides[0].engine.revoked_by(), None);
}

#[test]
fn an_exchange_under_way_is_known_until_it_ends() {
    let mut h = Harness::new();
    let a = device(&h, 0);
    let t = now(h.mono);
    h.sides[1]
        .engine
        .handle_input(t, Input::Connected { peer: 0, device: a });
    assert!(
        h.sides[1].engine.exchanging(&a),
        "a session began on connecting"
    );
    h.connect(true);
    assert!(!h.sides[1].engine.exchanging(&a), "every exchange ended");
    assert_eq!(relation(&h, 1, 0), Some(Relation::UpToDate));
}

#[test]
fn a_sync_state_is_kept_across_runs_and_what_is_heard_wins() {
    let state = SyncState {
        theirs: Summary { count: 3, fp: 7 },
        ours: Summary {
            count: 5,
            fp: u64::MAX,
        },
        at: Now {
            mono_ms: 99,
            wall: WallTime(1_700_000_000_000),
        },
    };
    let back = SyncState::from_bytes(&state.to_bytes()).expect("reads back");
    assert_eq!(back.theirs, state.theirs);
    assert_eq!(back.ours, state.ours);
    assert_eq!(back.at.wall, state.at.wall);
    assert_eq!(back.relation(), Relation::Behind(2));
    assert_eq!(SyncState::from_bytes(&[0; 39]), None);
    let mut h = Harness::new();
    let b = device(&h, 1);
    h.sides[0].engine.restore_sync_state(b, back);
    assert_eq!(relation(&h, 0, 1), Some(Relation::Behind(2)));
    // Once they meet, what is heard replaces it.
    h.connect(true);
    h.pump();
    assert_eq!(relation(&h, 0, 1), Some(Relation::UpToDate));
}
