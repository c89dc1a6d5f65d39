//! Tests of `seal`.

use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn secret(rng: &mut ChaCha20Rng) -> Secret {
    Secret::generate(NodeKind::Contacts, WallTime(1), rng)
}

/// Found by the `openpgp` fuzz target: sequoia 2.4 panics (an `unwrap` on a short
/// read) on this SEIPDv1 packet; it is a malformed item, not a crash.
#[test]
fn a_packet_that_panics_sequoia_is_a_malformed_item() {
    let message = [
        0x8c, 0x0c, 0x04, 0x09, 0x01, 0x02, 0x25, 0xe5, 0xe3, 0x1e, 0xf2, 0x34, 0xe9, 0x64, 0xd2,
        0x59, 0x01, 0xdf, 0x6b, 0x31, 0xc9, 0x4c, 0xac, 0x12, 0x9a, 0xc2, 0xc0, 0x71, 0x97, 0xa3,
        0x7e, 0x1b, 0x0e, 0x5a, 0x11, 0xb3, 0x70, 0x98, 0xf0, 0x8a, 0x0f, 0xb2, 0xb1, 0x70, 0x51,
        0x96, 0xe5, 0x1a, 0xf1, 0x22, 0xb0, 0x40, 0xce, 0xbc, 0x8e, 0x40,
    ];
    let secret = Secret {
        id: "k1".into(),
        value: Zeroizing::new("fuzzing-secret-1-0123456789abcdef0123".into()),
        node: NodeKind::Contacts,
        created: WallTime(1),
        revoked: false,
    };
    assert!(open_with_sequoia(&message, &secret).is_err());
    assert!(Opener::new().open_with(&message, &secret).is_err());
}

/// Found by the `openpgp` fuzz target: sequoia reads a bare literal data packet
/// (nothing encrypted) as its content; no item is opened without a secret.
#[test]
fn an_unencrypted_message_is_not_an_item() {
    let secret = Secret {
        id: "k1".into(),
        value: Zeroizing::new("fuzzing-secret-0-0123456789abcdef0123".into()),
        node: NodeKind::Contacts,
        created: WallTime(1),
        revoked: false,
    };
    // Old-format literal data packet, indeterminate length, binary, "<a/>".
    let literal = [0xaf, b'b', 0, 0, 0, 0, 0, b'<', b'a', b'/', b'>'];
    assert!(open_with_sequoia(&literal, &secret).is_err());
    assert!(Opener::new().open_with(&literal, &secret).is_err());
    let fuzzed = [0xaf, 0, 0, 0, 0xe3, 0xde, 0x09, 0x1c, 0x1c, 0x1c, 0x1c];
    assert!(open_with_sequoia(&fuzzed, &secret).is_err());
}

#[test]
fn seal_open_round_trip_with_padding() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let s = secret(&mut rng);
    assert!(s.value.len() >= 32);
    let mut ring = Keyring::new();
    ring.insert(s.clone());
    let payload = "<reserved xmlns='urn:xmpp:contacts:0'/>";
    let sealed = seal(payload, &s, DEFAULT_PAD_BUCKET, &mut rng);
    let other = seal(&"x".repeat(200), &s, DEFAULT_PAD_BUCKET, &mut rng);
    assert_eq!(
        sealed.data.len(),
        other.data.len(),
        "same bucket, same size"
    );
    let parsed = Sealed::parse(&sealed.to_xml()).expect("own element parses");
    assert_eq!(parsed, sealed);
    assert_eq!(Opener::new().open(&parsed, &ring).as_deref(), Ok(payload));
}

#[test]
fn each_bad_input_has_its_error() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let s = secret(&mut rng);
    let sealed = seal("<x/>", &s, 256, &mut rng);
    let mut ring = Keyring::new();
    let mut o = Opener::new();
    assert_eq!(o.open(&sealed, &ring), Err(Error::UnknownKey(s.id.clone())));
    let mut wrong = secret(&mut rng);
    wrong.id = s.id.clone();
    ring.insert(wrong);
    assert_eq!(o.open(&sealed, &ring), Err(Error::WrongSecret));
    let mut ring = Keyring::new();
    ring.insert(s.clone());
    let mut tampered = sealed.clone();
    let n = tampered.data.len();
    tampered.data[n - 30] ^= 0x40;
    assert_eq!(o.open(&tampered, &ring), Err(Error::Tampered));
    let mut truncated = sealed.clone();
    truncated.data.truncate(20);
    assert!(matches!(
        o.open(&truncated, &ring),
        Err(Error::Malformed(_))
    ));
    let e = |x: &str| Sealed::parse(x).expect_err("rejected");
    assert_eq!(
        e("<encrypted xmlns='urn:other' key='k'>AA==</encrypted>"),
        Error::NotEncrypted
    );
    assert_eq!(
        e("<encrypted xmlns='urn:xmpp:openpgp:pubsub:0'>AA==</encrypted>"),
        Error::MissingKeyId
    );
    assert_eq!(
        e("<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='k'>!!</encrypted>"),
        Error::BadBase64
    );
    assert!(matches!(e("<encrypted"), Error::Xml(_)));
    let huge = format!(
        "<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='k'>{}</encrypted>",
        "A".repeat(MAX_SEALED_BYTES * 2)
    );
    assert!(matches!(e(&huge), Error::Xml(xml::Error::TooLarge { .. })));
    let legacy = "<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' secret='k'>AA==</encrypted>";
    assert_eq!(Sealed::parse(legacy).map(|s| s.key), Ok("k".into()));
}

#[test]
fn items_made_with_sequoia_defaults_open() {
    use sequoia_openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
    use std::io::Write;
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let s = secret(&mut rng);
    let mut data = Vec::new();
    let message = Message::new(&mut data);
    let message = Encryptor::with_passwords(message, Some(s.value.as_str()))
        .build()
        .expect("encryptor");
    let mut w = LiteralWriter::new(message).build().expect("literal");
    w.write_all(b"<reserved xmlns='urn:xmpp:contacts:0'/>")
        .expect("write");
    w.finalize().expect("finalize");
    let mut opener = Opener::new();
    assert_eq!(
        opener.open_with(&data, &s).as_deref(),
        Ok("<reserved xmlns='urn:xmpp:contacts:0'/>")
    );
    let mut wrong = secret(&mut rng);
    wrong.id = s.id.clone();
    assert_eq!(opener.open_with(&data, &wrong), Err(Error::WrongSecret));
}

/// An item whose content is itself encrypted (with key packets that would each
/// cost a derivation) is refused, not opened layer by layer.
#[test]
fn nested_encryption_is_refused() {
    use sequoia_openpgp::serialize::stream::{Compressor, Encryptor, LiteralWriter, Message};
    use std::io::Write;
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let s = secret(&mut rng);
    let mut data = Vec::new();
    let message = Message::new(&mut data);
    let outer = Encryptor::with_passwords(message, Some(s.value.as_str()))
        .build()
        .expect("encryptor");
    let compressed = Compressor::new(outer).build().expect("compressor");
    let inner = Encryptor::with_passwords(compressed, [s.value.as_str(), "b", "c"])
        .build()
        .expect("inner encryptor");
    let mut w = LiteralWriter::new(inner).build().expect("literal");
    w.write_all(b"<reserved xmlns='urn:xmpp:contacts:0'/>")
        .expect("write");
    w.finalize().expect("finalize");
    assert!(Opener::new().open_with(&data, &s).is_err());
    assert!(open_with_sequoia(&data, &s).is_err());
}

#[test]
fn keyring_picks_newest_unrevoked_secret() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut ring = Keyring::new();
    let mut a = secret(&mut rng);
    a.created = WallTime(10);
    let mut b = secret(&mut rng);
    b.created = WallTime(20);
    ring.insert(a.clone());
    ring.insert(b.clone());
    assert_eq!(ring.current(NodeKind::Contacts).map(|s| &s.id), Some(&b.id));
    assert!(ring.revoke(&b.id));
    assert_eq!(ring.current(NodeKind::Contacts).map(|s| &s.id), Some(&a.id));
    assert_eq!(ring.current(NodeKind::Groups), None);
}
