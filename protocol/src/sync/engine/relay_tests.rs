//! Passing on what a reconciliation brought (`relay`): three devices, one in the
//! middle.

use super::harness::Harness;
use super::*;

/// Reconciliations (and acknowledgements) too rare to come within a test's pump,
/// which runs the timers until none is due within two minutes.
fn rare() -> Config {
    Config {
        recon_interval_ms: 600_000,
        recon_jitter_ms: 0,
        ack_interval_ms: 86_400_000,
        ..Config::default()
    }
}

/// Three devices, 0 connected to 1 and 2, which are not connected to each
/// other; everything reconciled.
fn star() -> Harness {
    let mut h = Harness::with_sides(rare(), 3);
    h.connect_pair(0, 1, true, &[0, 1]);
    h.connect_pair(0, 2, true, &[0, 2]);
    h
}

#[test]
fn what_a_reconciliation_brings_reaches_the_other_peers_at_once() {
    let mut h = star();
    // Device 1 writes while away from the middle one, so nothing is gossiped.
    h.connect_pair(0, 1, false, &[0, 1]);
    h.add_contacts(1, 5);
    assert_eq!(h.sides[2].engine.view().contact_count(), 0);
    let back = h.mono;
    h.watch = Some((2, 5));
    h.connect_pair(0, 1, true, &[0, 1]);
    let reached = h
        .reached_at
        .expect("device 2 holds device 1's writes long before the next reconciliation");
    assert!(
        reached - back <= RELAY_MAX_WAIT_MS,
        "device 2 held them {} ms after device 1 came back",
        reached - back
    );
    assert_eq!(h.sides[0].engine.view().contact_count(), 5);
}

#[test]
fn gossip_brings_no_reconciliation_forward() {
    let mut h = star();
    h.connect_pair(1, 2, true, &[1, 2]);
    let exchanged = h.exchanged.len();
    h.add_contacts(1, 3);
    for side in &h.sides {
        assert_eq!(side.engine.view().contact_count(), 3);
    }
    assert_eq!(
        h.exchanged.len(),
        exchanged,
        "the transport passes gossip on: no reconciliation was brought forward"
    );
}

#[test]
fn what_came_from_one_peer_is_not_reconciled_again_with_it() {
    let mut h = star();
    h.connect_pair(0, 1, false, &[0, 1]);
    h.connect_pair(0, 2, false, &[0, 2]);
    h.add_contacts(1, 2);
    let before = h.sides[0].engine.stats().reconciliations;
    h.connect_pair(0, 1, true, &[0, 1]);
    assert_eq!(h.sides[0].engine.view().contact_count(), 2);
    assert_eq!(
        h.sides[0].engine.stats().reconciliations - before,
        1,
        "device 0 reconciled once with device 1, on connecting; nothing was passed back"
    );
}
