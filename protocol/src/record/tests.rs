//! Records: codec round trips, the fast reader and direct encoder against the
//! general CBOR path, signatures.

use super::*;
use proptest::prelude::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn sample(body: Body) -> Record {
    Record::sign(
        NodeKind::Contacts,
        ItemId([3; 16]),
        Hlc {
            wall_ms: 1_700_000_000_000,
            counter: 2,
        },
        body,
        &key(1),
    )
}

fn sealed() -> Body {
    Body::Sealed(Sealed {
        key: "k1".into(),
        data: vec![1, 2, 3],
    })
}

#[test]
fn sign_encode_decode_verify() {
    for body in [sealed(), Body::Tombstone] {
        let r = sample(body);
        let back = Record::decode(&r.encode()).expect("round trip");
        assert_eq!(back, r);
        back.verify().expect("signature verifies");
    }
}

#[test]
fn encoding_starts_as_docs_wire_format_says() {
    let bytes = sample(Body::Tombstone).encode();
    // tag(0x6B697401), array(7), node 0, bytes(16)
    assert_eq!(bytes[..8], [0xda, 0x6b, 0x69, 0x74, 0x01, 0x87, 0x00, 0x50]);
}

#[test]
fn any_change_breaks_the_signature() {
    let r = sample(sealed());
    let mut m = r.clone();
    m.parts_mut().version.hlc.counter += 1;
    assert_eq!(m.verify(), Err(Error::BadSignature));
    let mut m = r.clone();
    m.parts_mut().body = Body::Tombstone;
    assert_eq!(m.verify(), Err(Error::BadSignature));
    let mut m = r.clone();
    m.parts_mut().version.device = DeviceId(key(2).verifying_key().to_bytes());
    assert_eq!(m.verify(), Err(Error::BadSignature));
    let mut m = r;
    m.parts_mut().signature = [0; 64];
    assert_eq!(m.verify(), Err(Error::BadSignature));
}

#[test]
fn strict_decoding() {
    let bytes = sample(sealed()).encode();
    assert!(matches!(
        Record::decode(&bytes[..bytes.len() - 1]),
        Err(Error::Cbor(_))
    ));
    assert!(matches!(Record::decode(&[]), Err(Error::Cbor(_))));
    let mut extra = bytes.clone();
    extra.push(0);
    assert_eq!(Record::decode(&extra), Err(Error::TrailingBytes(1)));
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    assert!(matches!(Record::decode(&big), Err(Error::TooLarge { .. })));
    let mut v2 = Vec::new();
    ciborium::ser::into_writer(
        &Value::Tag(RECORD_TAG_BASE + 2, Box::new(Value::Array(vec![]))),
        &mut v2,
    )
    .expect("write");
    assert_eq!(Record::decode(&v2), Err(Error::UnknownVersion(2)));
    let mut plain = Vec::new();
    ciborium::ser::into_writer(&Value::Integer(5.into()), &mut plain).expect("write");
    assert_eq!(Record::decode(&plain), Err(Error::NotARecord));
    let mut short = Vec::new();
    let wrong = Value::Tag(
        RECORD_TAG_BASE + 1,
        Box::new(Value::Array(vec![Value::Null; 7])),
    );
    ciborium::ser::into_writer(&wrong, &mut short).expect("write");
    assert_eq!(Record::decode(&short), Err(Error::BadField("node")));
    // Deep nesting is refused, not recursed into.
    let deep = [vec![0x81u8; 5000], vec![0x00]].concat();
    assert!(matches!(Record::decode(&deep), Err(Error::Cbor(_))));
}

proptest! {
    #[test]
    fn codec_round_trips(
        node in prop::bool::ANY,
        item in prop::array::uniform16(any::<u8>()),
        wall in any::<u64>(), counter in any::<u32>(),
        key_id in "[a-zA-Z0-9_-]{1,40}",
        data in prop::collection::vec(any::<u8>(), 0..512),
        tomb in prop::bool::ANY,
    ) {
        let body = if tomb { Body::Tombstone } else { Body::Sealed(Sealed { key: key_id, data }) };
        let node = if node { NodeKind::Contacts } else { NodeKind::Groups };
        let r = Record::sign(node, ItemId(item), Hlc { wall_ms: wall, counter }, body, &key(9));
        let back = Record::decode(&r.encode()).expect("round trip");
        prop_assert!(back.verify().is_ok());
        prop_assert_eq!(back, r);
    }

    /// The direct encoder writes exactly what the CBOR value tree does, and
    /// says its length beforehand.
    #[test]
    fn the_direct_encoder_agrees_with_the_value_tree(
        wall in any::<u64>(), counter in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..70_000),
        key_id in "[a-zA-Z0-9_-]{0,300}",
        kind in 0u8..3, space in 0usize..5,
    ) {
        let body = match kind {
            0 => Body::Tombstone,
            1 => Body::Sealed(Sealed { key: key_id, data }),
            _ => Body::Data(data),
        };
        let space = Space::ALL[space];
        let r = Record::sign(space, ItemId([5; 16]), Hlc { wall_ms: wall, counter }, body, &key(3));
        let bytes = r.encode();
        prop_assert_eq!(r.encoded_len(), bytes.len());
        prop_assert_eq!(bytes, r.encode_value());
    }

    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Record::decode(&bytes);
    }

    /// The fast reader and the general decoder agree on every record, and on
    /// every single-byte change of one.
    #[test]
    fn the_fast_reader_agrees_with_the_general_decoder(
        wall in any::<u64>(), counter in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..300),
        kind in 0u8..3, at in any::<usize>(), flip in 1u8..,
    ) {
        let body = match kind {
            0 => Body::Tombstone,
            1 => Body::Sealed(Sealed { key: "k1".into(), data: data.clone() }),
            _ => Body::Data(data.clone()),
        };
        let space = if kind == 2 { Space::Keys } else { Space::Contacts };
        let r = Record::sign(space, ItemId([5; 16]), Hlc { wall_ms: wall, counter }, body, &key(3));
        let bytes = r.encode();
        prop_assert_eq!(fast::decode(&bytes), Some(r.clone()));
        let mut changed = bytes.clone();
        let i = at % changed.len();
        changed[i] ^= flip;
        if let Some(f) = fast::decode(&changed) {
            prop_assert_eq!(Ok(f), Record::decode_value(&changed));
        }
    }
}

#[test]
fn verify_all_answers_each_record_as_verify_does_and_remembers_the_good() {
    let signed = |n: u8| {
        Record::sign(
            NodeKind::Contacts,
            ItemId([n; 16]),
            Hlc {
                wall_ms: u64::from(n),
                counter: 0,
            },
            sealed(),
            &key(1),
        )
    };
    let verified = Verified::new();
    let known = signed(1);
    verified.verify(&known).expect("signed by its author");
    let fresh = signed(2);
    let mut parts = (*signed(3)).clone();
    parts.signature[40] ^= 1;
    let bad: Record = parts.into();
    let mut parts = (*signed(4)).clone();
    // The identity point: a key of small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    parts.version.device = DeviceId(identity);
    let weak: Record = parts.into();
    let all = [known.clone(), fresh.clone(), bad.clone(), weak.clone()];
    assert!(!verified.knows(&fresh));
    assert_eq!(
        verified.verify_all(&all),
        vec![
            Ok(()),
            Ok(()),
            Err(Error::BadSignature),
            Err(Error::BadSignature)
        ]
    );
    for r in &all {
        assert_eq!(verified.knows(r), r.verify().is_ok(), "{r:?}");
    }
    assert!(verified.knows(&fresh));
}
