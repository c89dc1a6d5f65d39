//! Tests of `recon`.

use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn skey(space: u8, item: u8) -> Key {
    Key {
        space,
        item: [item; 16],
    }
}

proptest! {
    /// A set updated in place is the set built from the changed entries.
    #[test]
    fn an_updated_set_is_the_set_built_again(
        start in prop::collection::btree_map((0u8..3, any::<u8>()), any::<u128>(), 0..200),
        changes in prop::collection::vec(((0u8..3, any::<u8>()), prop::option::of(any::<u128>())), 0..200),
    ) {
        let mut set = Set::new(start.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
        let mut entries = start.clone();
        for (k, h) in &changes {
            match h {
                Some(h) => entries.insert(*k, *h),
                None => entries.remove(k),
            };
        }
        set.update(changes.iter().map(|((s, i), h)| (skey(*s, *i), *h)));
        let built = Set::new(entries.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
        prop_assert_eq!(&set.keys, &built.keys);
        prop_assert_eq!(&set.hashes, &built.hashes);
        prop_assert_eq!(&set.prefix, &built.prefix);
    }

    /// Changes noted in batches (some merged by an update in between) give the
    /// summary of the set built again at every step, and once settled the set
    /// is that set, entry for entry.
    #[test]
    fn noted_changes_summarise_and_settle_as_the_set_built_again(
        start in prop::collection::btree_map((0u8..3, any::<u8>()), any::<u128>(), 0..100),
        batches in prop::collection::vec(
            (
                prop::collection::vec(
                    ((0u8..3, any::<u8>()), prop::option::of(any::<u128>())),
                    0..40,
                ),
                any::<bool>(),
            ),
            0..8,
        ),
    ) {
        let mut set = Set::new(start.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
        let mut entries = start.clone();
        for (changes, merged) in &batches {
            for (k, h) in changes {
                match h {
                    Some(h) => entries.insert(*k, *h),
                    None => entries.remove(k),
                };
            }
            let changes = changes.iter().map(|((s, i), h)| (skey(*s, *i), *h));
            if *merged {
                set.update(changes);
                prop_assert!(set.is_settled());
            } else {
                set.note(changes);
            }
            let built = Set::new(entries.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
            prop_assert_eq!(set.summary(), built.summary());
            prop_assert_eq!(set.len(), built.len());
        }
        set.settle();
        let built = Set::new(entries.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
        prop_assert_eq!(set, built);
    }

    /// A set's summary without some keys is the summary of the set built
    /// without them (keys it lacks, or named twice, change nothing).
    #[test]
    fn a_summary_without_keys_is_the_summary_of_the_set_without_them(
        entries in prop::collection::btree_map((0u8..3, any::<u8>()), any::<u128>(), 0..100),
        without in prop::collection::vec((0u8..3, any::<u8>()), 0..40),
    ) {
        let set = Set::new(entries.iter().map(|(&(s, i), &h)| (skey(s, i), h)));
        let rest = Set::new(
            entries
                .iter()
                .filter(|(k, _)| !without.contains(k))
                .map(|(&(s, i), &h)| (skey(s, i), h)),
        );
        let keys = without.iter().map(|&(s, i)| skey(s, i));
        prop_assert_eq!(set.summary_without(keys), rest.summary());
    }
}

/// Runs an exchange between `a` (initiator) and `b`; returns round trips, bytes
/// (approximate wire size of the reconciliation parts) and the keys each sends.
fn exchange(a: &Set, b: &Set) -> (usize, usize, Vec<Key>, Vec<Key>) {
    let salt = 0x5EED;
    let mut msg = a.initiate();
    let (mut rtt, mut bytes) = (0, size(&msg));
    let (mut a_sends, mut b_sends) = (Vec::new(), Vec::new());
    let mut turn_b = true;
    loop {
        let (side, sends) = if turn_b {
            (b, &mut b_sends)
        } else {
            (a, &mut a_sends)
        };
        let (reply, send) = side.respond(&msg, salt).expect("valid message");
        assert!(size(&reply) <= MAX_MESSAGE_BYTES, "{} bytes", size(&reply));
        assert!(rtt < 1_000, "the exchange ends");
        sends.extend(send);
        if turn_b {
            rtt += 1;
        }
        bytes += size(&reply);
        if !reply.wants_answer() {
            break;
        }
        msg = reply;
        turn_b = !turn_b;
    }
    a_sends.sort();
    a_sends.dedup();
    b_sends.sort();
    b_sends.dedup();
    (rtt, bytes, a_sends, b_sends)
}

/// Bytes on the wire, as `sync::wire` encodes them (bound 9-10, count and fp up
/// to 14, entries 6 each, needs 3 each, a few bytes of framing).
fn size(m: &Message) -> usize {
    4 + m.need.len() * 3
        + m.ranges
            .iter()
            .map(|(_, p)| {
                11 + match p {
                    Part::Skip => 1,
                    Part::Fingerprint { .. } => 14,
                    Part::Ids(v) => 3 + 6 * v.len(),
                }
            })
            .sum::<usize>()
}

fn key(i: u64) -> Key {
    // Spread keys like random ids.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes();
    let mut item = [0u8; 16];
    item[..8].copy_from_slice(&h);
    item[8..].copy_from_slice(&i.to_be_bytes());
    Key { space: 0, item }
}

fn hash(i: u64, version: u64) -> u128 {
    (u128::from(i) << 64 | u128::from(version))
        .wrapping_mul(0x2545_F491_4F6C_DD1D_9E37_79B9_7F4A_7C15)
}

fn sets(n: u64, d: u64) -> (Set, Set, BTreeMap<Key, ()>) {
    let mut diff = BTreeMap::new();
    let a = Set::new((0..n).map(|i| (key(i), hash(i, 1))));
    let stride = n.checked_div(d).unwrap_or(u64::MAX);
    let b = Set::new((0..n).filter_map(|i| {
        if d > 0 && i % stride == 0 {
            diff.insert(key(i), ());
            // Half the differences: b lacks the item; half: another version.
            if i % 2 == 0 {
                None
            } else {
                Some((key(i), hash(i, 2)))
            }
        } else {
            Some((key(i), hash(i, 1)))
        }
    }));
    (a, b, diff)
}

#[test]
fn in_sync_is_one_round_trip_under_1_kb() {
    let (a, b, _) = sets(10_000, 0);
    let (rtt, bytes, sa, sb) = exchange(&a, &b);
    assert_eq!(rtt, 1);
    assert!(bytes <= 1024, "{bytes} bytes");
    assert!(sa.is_empty() && sb.is_empty());
}

#[test]
fn finds_every_difference_in_few_round_trips() {
    let (a, b, diff) = sets(10_000, 100);
    let (rtt, bytes, sa, sb) = exchange(&a, &b);
    // Every differing key is sent by a (which has them all); b sends its other versions.
    let expected: Vec<Key> = diff.keys().copied().collect();
    assert_eq!(sa, expected);
    assert!(sb.iter().all(|k| diff.contains_key(k)));
    assert!(rtt <= 3, "{rtt} round trips");
    assert!(bytes <= 40 * 1024, "{bytes} bytes");
    eprintln!("10k items, 100 differences: {rtt} round trips, {bytes} bytes");
}

#[test]
fn an_empty_side_gets_everything_at_once() {
    let (a, _, _) = sets(5_000, 0);
    let empty = Set::new([]);
    let (rtt, _, sa, sb) = exchange(&empty, &a);
    assert_eq!(rtt, 1);
    assert!(sa.is_empty());
    assert_eq!(sb.len(), 5_000);
}

/// `a` holds `shared + extra_a` entries, `b` `shared + extra_b`, with no extra
/// key in common.
fn diverged(shared: u64, extra_a: u64, extra_b: u64) -> (Set, Set) {
    let a = Set::new((0..shared + extra_a).map(|i| (key(i), hash(i, 1))));
    let b = Set::new(
        (0..shared)
            .chain(shared + extra_a..shared + extra_a + extra_b)
            .map(|i| (key(i), hash(i, 1))),
    );
    (a, b)
}

#[test]
fn any_divergence_stays_within_the_limits() {
    for (shared, extra_a, extra_b) in [
        (20_000, 20_000, 0),
        (20_000, 0, 20_000),
        (1_000, 40_000, 40_000),
        (0, 100_000, 0),
        (50_000, 100_000, 100_000),
    ] {
        let (a, b) = diverged(shared, extra_a, extra_b);
        let (rtt, bytes, sa, sb) = exchange(&a, &b);
        assert_eq!(sa.len() as u64, extra_a, "a sends what b lacks");
        assert_eq!(sb.len() as u64, extra_b, "b sends what a lacks");
        eprintln!(
            "{shared} shared, {extra_a} and {extra_b} apart: {rtt} round trips, {bytes} bytes"
        );
    }
}

#[test]
fn rejects_bad_messages() {
    let (a, _, _) = sets(100, 0);
    let big = Message {
        ranges: vec![(Bound::End, Part::Skip); MAX_RANGES + 1],
        need: vec![],
    };
    assert_eq!(a.respond(&big, 0).map(|_| ()), Err(Error::TooLarge));
    let unordered = Message {
        ranges: vec![
            (Bound::Key([5; 9]), Part::Skip),
            (Bound::Key([1; 9]), Part::Skip),
            (Bound::End, Part::Skip),
        ],
        need: vec![],
    };
    assert_eq!(a.respond(&unordered, 0).map(|_| ()), Err(Error::Unordered));
    let short = Message {
        ranges: vec![(Bound::Key([5; 9]), Part::Skip)],
        need: vec![],
    };
    assert_eq!(a.respond(&short, 0).map(|_| ()), Err(Error::Incomplete));
}
