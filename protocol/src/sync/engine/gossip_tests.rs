//! Live push: gossip frames as a command writes them (at once, or coalesced under
//! load), in what order, and what goes by reconciliation instead (a bulk change,
//! gossip lost on the way).

use super::harness::{Harness, Side, jid, now};
use super::*;
use crate::contacts::Command as Edit;
use crate::item::NodeKind;

/// A write too large for one gossip frame goes out by space in the order a
/// reconciliation sends them: the groups before the contacts in them.
#[test]
fn gossip_sends_the_groups_before_the_contacts_in_them() {
    let mut h = Harness::new();
    h.connect(true);
    let contacts: Vec<crate::item::Contact> = (0..300)
        .map(|i| crate::item::Contact {
            identities: vec![
                crate::item::Identity::new("jid", &format!("c{i}@x.lit")).expect("a JID"),
            ],
            groups: vec![crate::item::GroupRef {
                id: format!("G{}", i % 3),
                extra: Default::default(),
            }],
            ..Default::default()
        })
        .collect();
    let t = h.mono + 10 * Config::default().gossip_delay_ms;
    let side = &mut h.sides[0];
    side.engine
        .execute(
            now(t),
            Edit::Import {
                contacts,
                replace: false,
            },
        )
        .expect("imported");
    let published = |side: &mut Side| {
        let view = side.engine.view().clone();
        let mut frames = 0;
        let mut sent = Vec::new();
        while let Some(out) = side.engine.poll_output() {
            if let Output::Publish(bytes) = out {
                frames += 1;
                let (Frame::Gossip { records }, _) =
                    Frame::decode_lenient(&bytes, wire::MAX_GOSSIP_BYTES).expect("a frame")
                else {
                    panic!("a gossip frame");
                };
                // Each record's space, and whether it is a `<reserved/>` group.
                sent.extend(records.iter().map(|r| {
                    let reserved = view.is_reserved(NodeKind::Groups, &r.item);
                    (r.space, r.space == Space::Groups && reserved)
                }));
            }
        }
        (frames, sent)
    };
    let (frames, sent) = published(side);
    assert!(frames > 1, "several frames: {frames}");
    let last_group = sent.iter().rposition(|s| *s == (Space::Groups, false));
    let first_contact = sent.iter().position(|(s, _)| *s == Space::Contacts);
    assert!(
        matches!((last_group, first_contact), (Some(g), Some(c)) if g < c),
        "groups, then contacts: {sent:?}"
    );
    // A group removed goes after the contacts edited out of it (as placeholders
    // do).
    let name = side
        .engine
        .view()
        .groups()
        .values()
        .next()
        .expect("a group")
        .group
        .name
        .clone();
    let later = now(t + 10 * Config::default().gossip_delay_ms);
    side.engine
        .execute(later, Edit::RemoveGroup { name })
        .expect("removed");
    let (_, sent) = published(side);
    let removed = sent.iter().position(|(_, reserved)| *reserved);
    let last_contact = sent.iter().rposition(|(s, _)| *s == Space::Contacts);
    assert!(
        matches!((removed, last_contact), (Some(g), Some(c)) if c < g),
        "contacts, then the group removed: {sent:?}"
    );
}

/// Gossip frames `side` published since its last poll.
fn publishes(side: &mut Side) -> usize {
    let mut n = 0;
    while let Some(out) = side.engine.poll_output() {
        n += usize::from(matches!(out, Output::Publish(_)));
    }
    n
}

#[test]
fn a_lone_write_is_gossiped_at_once_and_a_burst_is_coalesced() {
    let mut h = Harness::new();
    h.connect(true);
    let delay = Config::default().gossip_delay_ms;
    let add = |i: usize| Edit::AddContact {
        jid: jid(&format!("c{i}@x.lit")),
        name: None,
        groups: vec![],
    };
    let t = h.mono + 10 * delay;
    let side = &mut h.sides[0];
    // The first GOSSIP_BURST writes of a window go out with their commands.
    for i in 0..GOSSIP_BURST {
        side.engine.execute(now(t + i as u64), add(i)).unwrap();
        assert_eq!(publishes(side), 1, "write {i} waits for nothing");
    }
    // Later ones in the same window wait for its end, and go together.
    side.engine.execute(now(t + 9), add(100)).unwrap();
    side.engine.execute(now(t + 10), add(101)).unwrap();
    assert_eq!(publishes(side), 0, "a burst waits");
    assert_eq!(side.engine.poll_timeout(), Some(t + delay));
    side.engine.handle_input(now(t + delay), Input::Timeout);
    assert_eq!(publishes(side), 1, "and goes in one frame");
    // After the window, at once again.
    side.engine.execute(now(t + 3 * delay), add(102)).unwrap();
    assert_eq!(publishes(side), 1);
}

#[test]
fn gossip_lost_on_the_way_goes_by_reconciliation_at_once() {
    let mut h = Harness::new();
    h.connect(true);
    let t = h.mono;
    h.sides[0]
        .engine
        .execute(
            now(t),
            Edit::AddContact {
                jid: jid("lost@x.lit"),
                name: None,
                groups: vec![],
            },
        )
        .expect("added");
    // The frame is dropped on the way; the rest is carried out.
    let mut dropped = 0;
    while let Some(out) = h.sides[0].engine.poll_output() {
        if matches!(out, Output::Publish(_)) {
            dropped += 1;
        } else {
            h.carry(0, out);
        }
    }
    assert_eq!(dropped, 1, "the edit was gossiped");
    assert_eq!(h.sides[1].engine.view().contact_count(), 0);
    let periodic = h.sides[0].engine.poll_timeout().expect("a timer");
    assert!(
        periodic > t + 1_000,
        "without word of the loss, nothing is due soon"
    );
    // The transport says the peer missed gossip: a reconciliation starts at once.
    h.sides[0].engine.handle_input(now(t), Input::GossipLost(1));
    let mut asked = false;
    while let Some(out) = h.sides[0].engine.poll_output() {
        asked |= matches!(out, Output::Request { to: 1, .. });
        h.carry(0, out);
    }
    assert!(asked, "a reconciliation with the peer that missed it");
    h.pump();
    assert_eq!(h.sides[1].engine.view().contact_count(), 1, "delivered");
    // Word about a peer that is not connected asks nothing of anyone.
    while let Some(out) = h.sides[0].engine.poll_output() {
        h.carry(0, out);
    }
    h.sides[0]
        .engine
        .handle_input(now(h.mono), Input::GossipLost(9));
    while let Some(out) = h.sides[0].engine.poll_output() {
        assert!(!matches!(out, Output::Request { .. }), "{out:?}");
    }
}

#[test]
fn a_bulk_part_goes_by_reconciliation_not_gossip() {
    let mut h = Harness::new();
    h.connect(true);
    let t = h.mono;
    let add = |j: &str| Edit::AddContact {
        jid: jid(j),
        name: None,
        groups: vec![],
    };
    h.sides[0]
        .engine
        .execute_bulk(now(t), add("bulk@x.lit"))
        .expect("added");
    let (mut published, mut asked) = (0, false);
    while let Some(out) = h.sides[0].engine.poll_output() {
        published += usize::from(matches!(out, Output::Publish(_)));
        asked |= matches!(out, Output::Request { to: 1, .. });
        h.carry(0, out);
    }
    assert_eq!(published, 0, "not gossiped");
    assert!(asked, "a reconciliation starts at once");
    h.pump();
    assert_eq!(h.sides[1].engine.view().contact_count(), 1, "delivered");
    // The next command is gossiped again.
    h.sides[0]
        .engine
        .execute(now(h.mono), add("lone@x.lit"))
        .expect("added");
    assert_eq!(publishes(&mut h.sides[0]), 1);
}

/// Carries every output at the current time (no timers) until both sides are quiet;
/// returns how many requests side 0 sent.
fn quiet(h: &mut Harness) -> usize {
    let mut asked = 0;
    loop {
        let mut moved = false;
        for i in 0..2 {
            while let Some(out) = h.sides[i].engine.poll_output() {
                moved = true;
                asked += usize::from(i == 0 && matches!(out, Output::Request { .. }));
                h.carry(i, out);
            }
        }
        if !moved {
            return asked;
        }
    }
}

#[test]
fn word_of_lost_gossip_brings_a_reconciliation_forward_once_per_gap() {
    let mut h = Harness::new();
    h.connect(true);
    let t = h.mono;
    quiet(&mut h);
    h.sides[0].engine.handle_input(now(t), Input::GossipLost(1));
    assert!(quiet(&mut h) > 0, "brought forward");
    // A peer that stays slow is reported at every heartbeat of the transport.
    for dt in [1, 700, GOSSIP_LOST_GAP_MS - 1] {
        h.sides[0]
            .engine
            .handle_input(now(t + dt), Input::GossipLost(1));
        assert_eq!(quiet(&mut h), 0, "not again {dt} ms later");
    }
    // Word within the gap was not dropped: a reconciliation follows at its end.
    h.sides[0]
        .engine
        .handle_input(now(t + GOSSIP_LOST_GAP_MS), Input::Timeout);
    assert!(quiet(&mut h) > 0, "postponed to the gap's end");
    h.sides[0]
        .engine
        .handle_input(now(t + GOSSIP_LOST_GAP_MS + 1), Input::GossipLost(1));
    assert!(quiet(&mut h) > 0, "again after the gap");
}
