//! Frame codec tests: round trips, the direct codec against the value tree,
//! padding, limits.

use super::*;
use proptest::prelude::*;

/// Records signed by one key, one for each body (`None`: a tombstone), the
/// `i`-th at `wall + i`.
fn signed(bodies: impl IntoIterator<Item = Option<Vec<u8>>>, wall: u64) -> Vec<Record> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let body = match data {
                None => record::Body::Tombstone,
                Some(data) => record::Body::Sealed(crate::seal::Sealed {
                    key: format!("k{i}"),
                    data,
                }),
            };
            let hlc = crate::clock::Hlc {
                wall_ms: wall.wrapping_add(i as u64),
                counter: i as u32,
            };
            Record::sign(
                crate::item::NodeKind::Contacts,
                record::ItemId([i as u8; 16]),
                hlc,
                body,
                &key,
            )
        })
        .collect()
}

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::Skip),
        (any::<u32>(), any::<u64>()).prop_map(|(count, fp)| Part::Fingerprint { count, fp }),
        prop::collection::vec(0u64..1 << 48, 0..20).prop_map(Part::Ids),
    ]
}

proptest! {
    #[test]
    fn frames_round_trip(
        salt in any::<u64>(),
        bounds in prop::collection::vec(prop::option::of(prop::array::uniform9(any::<u8>())), 0..10),
        parts in prop::collection::vec(part(), 10),
        need in prop::collection::vec(0u32..1 << 24, 0..10),
        more in any::<bool>(),
        have in prop::option::of((any::<u64>(), any::<u64>())),
    ) {
        let have = have.map(|(count, fp)| recon::Summary { count, fp });
        let msg = recon::Message {
            ranges: bounds.into_iter().zip(parts).map(|(b, p)| (b.map_or(Bound::End, Bound::Key), p)).collect(),
            need,
        };
        for f in [
            Frame::Request { salt, msg: msg.clone(), records: vec![], more, have },
            Frame::Response { msg: msg.clone(), records: vec![], more, have },
            Frame::Gossip { records: vec![] },
        ] {
            prop_assert_eq!(Frame::decode(&f.encode(), MAX_FRAME_BYTES), Ok(f));
        }
    }

    /// The direct encoder writes exactly what the CBOR value tree does.
    #[test]
    fn the_direct_encoder_agrees_with_the_value_tree(
        salt in any::<u64>(),
        bounds in prop::collection::vec(prop::option::of(prop::array::uniform9(any::<u8>())), 0..30),
        parts in prop::collection::vec(part(), 30),
        need in prop::collection::vec(0u32..1 << 24, 0..300),
        more in any::<bool>(),
        have in prop::option::of((any::<u64>(), any::<u64>())),
        bodies in prop::collection::vec(
            prop::option::of(prop::collection::vec(any::<u8>(), 0..3000)),
            0..30,
        ),
        wall in any::<u64>(),
    ) {
        let records = signed(bodies, wall);
        let have = have.map(|(count, fp)| recon::Summary { count, fp });
        let msg = recon::Message {
            ranges: bounds.into_iter().zip(parts).map(|(b, p)| (b.map_or(Bound::End, Bound::Key), p)).collect(),
            need,
        };
        for f in [
            Frame::Request { salt, msg: msg.clone(), records: records.clone(), more, have },
            Frame::Response { msg: msg.clone(), records: records.clone(), more, have },
            Frame::Gossip { records: records.clone() },
        ] {
            let direct = f.encode();
            prop_assert_eq!(&direct, &f.encode_value());
            prop_assert_eq!(Frame::decode(&direct, usize::MAX), Ok(f));
        }
    }

    /// The direct reader takes what it takes as the value tree does: the same
    /// frame and the same records skipped; also for frames with bad records and
    /// bytes changed anywhere.
    #[test]
    fn the_direct_reader_agrees_with_the_value_tree(
        salt in any::<u64>(),
        parts in prop::collection::vec(part(), 0..20),
        need in prop::collection::vec(0u32..1 << 24, 0..50),
        have in prop::option::of((any::<u64>(), any::<u64>())),
        n in 0usize..12,
        kind in 0u8..3,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let records = signed((0..n).map(|i| Some(vec![i as u8; i * 40])), 1_000);
        let msg = recon::Message {
            ranges: parts.into_iter().enumerate().map(|(i, p)| (if i % 3 == 0 { Bound::End } else { Bound::Key([i as u8; 9]) }, p)).collect(),
            need,
        };
        let have = have.map(|(count, fp)| recon::Summary { count, fp });
        let frame = match kind {
            0 => Frame::Gossip { records },
            1 => Frame::Request { salt, msg, records, more: true, have },
            _ => Frame::Response { msg, records, more: false, have },
        };
        let mut bytes = frame.encode();
        let len = u32::from_be_bytes(bytes[..4].try_into().expect("4")) as usize;
        let flipped = !flips.is_empty();
        for (at, b) in flips {
            bytes[4 + at.index(len)] ^= b;
        }
        let cbor = unpad(&bytes).expect("the length is untouched");
        let (mut fast, mut tree) = (Vec::new(), Vec::new());
        match Frame::read(cbor, &mut fast) {
            Some(read) => {
                let by_tree = Frame::decode_tree(cbor, MAX_FRAME_BYTES, &mut tree);
                prop_assert_eq!(Ok(read), by_tree);
                prop_assert_eq!(fast, tree);
            }
            // Only a changed frame is left to the value tree.
            None => prop_assert!(flipped),
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Frame::decode(&bytes, MAX_FRAME_BYTES);
    }
}

#[test]
fn frames_are_padded_to_powers_of_two_within_their_limits() {
    let empty = Frame::Gossip { records: vec![] }.encode();
    assert_eq!(empty.len(), MIN_PADDED_BYTES);
    let cbor = u32::from_be_bytes(empty[..4].try_into().expect("4")) as usize;
    assert_eq!(padding_of(&empty), MIN_PADDED_BYTES - 4 - cbor);
    assert_eq!(
        Frame::decode(&empty, MAX_GOSSIP_BYTES),
        Ok(Frame::Gossip { records: vec![] })
    );
    for (len, padded) in [
        (0, 2048),
        (2048, 2048),
        (2049, 4096),
        (65_536, 65_536),
        (MAX_FRAME_BYTES, MAX_FRAME_BYTES),
    ] {
        assert_eq!(bucket(len), padded, "{len}");
    }
    // Padding is zeros; the length inside must fit.
    let mut bad = empty.clone();
    *bad.last_mut().expect("padded") = 1;
    assert_eq!(
        Frame::decode(&bad, MAX_FRAME_BYTES),
        Err(Error::BadField("padding"))
    );
    let mut bad = empty.clone();
    bad[..4].copy_from_slice(&4096u32.to_be_bytes());
    assert_eq!(
        Frame::decode(&bad, MAX_FRAME_BYTES),
        Err(Error::BadField("length"))
    );
    assert_eq!(
        Frame::decode(&[0, 0], MAX_FRAME_BYTES),
        Err(Error::BadField("length"))
    );
    // An unpadded frame (an earlier version's) is still read.
    let unpadded = &empty[4..4 + u32::from_be_bytes(empty[..4].try_into().expect("4")) as usize];
    assert_eq!(unpadded[0], UNPADDED_FIRST_BYTE);
    assert_eq!(padding_of(unpadded), 0);
    assert_eq!(
        Frame::decode(unpadded, MAX_FRAME_BYTES),
        Ok(Frame::Gossip { records: vec![] })
    );
}

#[test]
fn limits_and_versions() {
    let f = Frame::Gossip { records: vec![] }.encode();
    assert!(matches!(Frame::decode(&f, 2), Err(Error::TooLarge { .. })));
    let mut v2 = Vec::new();
    ciborium::ser::into_writer(
        &Value::Tag(FRAME_TAG_BASE + 2, Box::new(Value::Null)),
        &mut v2,
    )
    .expect("write");
    assert_eq!(
        Frame::decode(&v2, MAX_FRAME_BYTES),
        Err(Error::UnknownVersion(2))
    );
}

/// The direct reader keeps the limits the value tree keeps: a frame at a limit is
/// read directly, one past it is refused as before.
#[test]
fn the_direct_reader_keeps_the_limits() {
    let msg = |ranges: usize, need: usize| recon::Message {
        ranges: vec![(Bound::End, Part::Skip); ranges],
        need: vec![7; need],
    };
    let response = |msg| Frame::Response {
        msg,
        records: vec![],
        more: false,
        have: None,
    };
    for at_limit in [
        response(msg(recon::MAX_RANGES, 0)),
        response(msg(1, recon::MAX_NEED)),
    ] {
        let bytes = at_limit.encode();
        let cbor = unpad(&bytes).expect("padded");
        assert_eq!(Frame::read(cbor, &mut Vec::new()).as_ref(), Some(&at_limit));
    }
    let bytes = response(msg(recon::MAX_RANGES + 1, 0)).encode();
    assert_eq!(
        Frame::read(unpad(&bytes).expect("padded"), &mut Vec::new()),
        None
    );
    assert_eq!(
        Frame::decode(&bytes, MAX_FRAME_BYTES),
        Err(Error::Recon(recon::Error::TooLarge))
    );
    let bytes = response(msg(1, recon::MAX_NEED + 1)).encode();
    assert_eq!(
        Frame::read(unpad(&bytes).expect("padded"), &mut Vec::new()),
        None
    );
    assert_eq!(
        Frame::decode(&bytes, MAX_FRAME_BYTES),
        Err(Error::BadField("need"))
    );
}
