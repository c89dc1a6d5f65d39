use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signature as DalekSignature;
use proptest::prelude::*;
use sha2::{Digest, Sha512};

use super::*;

/// A signature made by hand: nonce `r`, and `R` = [r]B plus the small-order point
/// `EIGHT_TORSION[torsion]` (index 0 is the identity: an ordinary signature).
fn signed(a: Scalar, r: Scalar, torsion: usize, msg: &[u8]) -> ([u8; 32], [u8; 64]) {
    let key = EdwardsPoint::mul_base(&a).compress().to_bytes();
    let big_r = (EdwardsPoint::mul_base(&r) + EIGHT_TORSION[torsion])
        .compress()
        .to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r)
            .chain_update(key)
            .chain_update(msg)
            .finalize()
            .into(),
    );
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(&s.to_bytes());
    (key, sig)
}

fn scalar(seed: u8) -> Scalar {
    Scalar::from_bytes_mod_order([seed.wrapping_mul(37).wrapping_add(11); 32])
}

fn strict(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let sig = DalekSignature::from_bytes(sig);
    ed25519_dalek::VerifyingKey::from_bytes(key)
        .and_then(|k| k.verify_strict(msg, &sig))
        .is_ok()
}

#[test]
fn the_small_order_points_have_five_ys() {
    assert_eq!(small_order_ys().len(), 5);
    for p in EIGHT_TORSION {
        assert!(!acceptable(&p.compress().to_bytes()));
        let mut other_sign = p.compress().to_bytes();
        other_sign[31] ^= 0x80;
        assert!(!acceptable(&other_sign));
    }
}

#[test]
fn a_y_of_p_or_more_is_not_canonical() {
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    assert!(!acceptable(&p));
    let mut below = p;
    below[0] = 0xec;
    assert!(below_p(&below));
    assert!(!below_p(&p));
    let mut top = [0xff; 32];
    top[31] = 0x7f;
    assert!(!below_p(&top));
    assert!(!acceptable(&[0xff; 32]));
    let base = EdwardsPoint::mul_base(&Scalar::ONE).compress().to_bytes();
    assert!(acceptable(&base));
}

#[test]
fn an_ordinary_signature_verifies_alone_and_in_a_batch() {
    let (key, sig) = signed(scalar(1), scalar(2), 0, b"hello");
    assert!(strict(&key, b"hello", &sig));
    let k = Key::new(&key).expect("a key of prime order");
    assert_eq!(k.verify(b"hello", &sig), Ok(()));
    assert_eq!(k.verify(b"hellO", &sig), Err(Error::BadSignature));
    assert_eq!(verify_all(&[(&k, b"hello", &sig)], [7; 32]), vec![true]);
    assert_eq!(verify_all(&[(&k, b"hellO", &sig)], [7; 32]), vec![false]);
    assert_eq!(
        verify_all(&[(&k, b"hello", &sig), (&k, b"hellO", &sig)], [7; 32]),
        vec![true, false]
    );
    assert!(batch_holds(&[(&k, b"hello", &sig)], [7; 32]));
    assert!(!batch_holds(&[(&k, b"hellO", &sig)], [7; 32]));
}

#[test]
fn a_nonce_with_a_small_order_part_verifies_alone_and_in_a_batch_alike() {
    // The case `verify_strict` refuses and a cofactorless batch accepts half of the
    // time: under the cofactored rule both ways accept it, always.
    let a = scalar(3);
    for torsion in 1..8 {
        let (key, sig) = signed(a, scalar(4), torsion, b"m");
        assert!(!strict(&key, b"m", &sig), "torsion {torsion}");
        let k = Key::new(&key).expect("a key of prime order");
        assert_eq!(k.verify(b"m", &sig), Ok(()), "torsion {torsion}");
        for seed in 0..16 {
            assert_eq!(verify_all(&[(&k, b"m", &sig)], [seed; 32]), vec![true]);
            assert!(batch_holds(&[(&k, b"m", &sig)], [seed; 32]));
        }
    }
}

#[test]
fn a_nonce_of_small_order_is_refused_alone_and_in_a_batch() {
    let a = scalar(5);
    for torsion in 0..8 {
        let (key, sig) = signed(a, Scalar::ZERO, torsion, b"m");
        let k = Key::new(&key).expect("a key of prime order");
        assert_eq!(k.verify(b"m", &sig), Err(Error::BadSignature));
        assert_eq!(verify_all(&[(&k, b"m", &sig)], [1; 32]), vec![false]);
    }
}

#[test]
fn a_key_of_small_order_or_badly_encoded_is_refused() {
    for p in EIGHT_TORSION {
        assert!(Key::new(&p.compress().to_bytes()).is_err());
    }
}

/// A point not of small order whose y is below 19, so that y + p also encodes it (not
/// canonically), with that second encoding.
fn twice_encoded() -> ([u8; 32], [u8; 32]) {
    for y in 2u8..19 {
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        let Some(point) = CompressedEdwardsY(canonical).decompress() else {
            continue;
        };
        if point.is_small_order() {
            continue;
        }
        // y + p, little-endian: p is 0xed, thirty 0xff, 0x7f.
        let mut other = [0xff; 32];
        other[0] = 0xed + y;
        other[31] = 0x7f;
        return (canonical, other);
    }
    unreachable!("some y below 19 is a point's, not of small order")
}

#[test]
fn a_point_encoded_not_canonically_is_refused_as_key_and_as_nonce() {
    let (canonical, other) = twice_encoded();
    // ed25519-zebra would take either encoding; the rule takes only the first.
    assert!(CompressedEdwardsY(other).decompress().is_some());
    assert!(Key::new(&canonical).is_ok());
    assert!(Key::new(&other).is_err());
    let (key, mut sig) = signed(scalar(8), scalar(9), 0, b"m");
    sig[..32].copy_from_slice(&other);
    let k = Key::new(&key).expect("a key of prime order");
    assert_eq!(k.verify(b"m", &sig), Err(Error::BadSignature));
    assert_eq!(verify_all(&[(&k, b"m", &sig)], [1; 32]), vec![false]);
}

#[test]
fn a_key_with_a_small_order_part_verifies_alone_and_in_a_batch_alike() {
    // A = [a]B + T: `verify_strict` refuses what it signs (unless k·T vanishes);
    // the cofactored rule accepts it both ways.
    let a = scalar(10);
    for (torsion, part) in EIGHT_TORSION.iter().enumerate().skip(1) {
        let key_point = EdwardsPoint::mul_base(&a) + part;
        let key = key_point.compress().to_bytes();
        let r = scalar(11);
        let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(big_r)
                .chain_update(key)
                .chain_update(b"m")
                .finalize()
                .into(),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&big_r);
        sig[32..].copy_from_slice(&(r + k * a).to_bytes());
        let held = Key::new(&key).expect("not of small order");
        assert_eq!(held.verify(b"m", &sig), Ok(()), "torsion {torsion}");
        assert!(batch_holds(&[(&held, b"m", &sig)], [2; 32]));
        assert_eq!(verify_all(&[(&held, b"m", &sig)], [2; 32]), vec![true]);
    }
}

#[test]
fn refused_encodings_do_not_keep_the_others_from_a_batch() {
    let (key, good) = signed(scalar(12), scalar(13), 0, b"m");
    let (_, small_nonce) = signed(scalar(12), Scalar::ZERO, 3, b"m");
    let k = Key::new(&key).expect("a key of prime order");
    let answers = verify_all(&[(&k, b"m", &good), (&k, b"m", &small_nonce)], [3; 32]);
    assert_eq!(answers, vec![true, false]);
    assert!(!acceptable_r(&small_nonce));
    assert!(batch_holds(&[(&k, b"m", &good)], [3; 32]));
    assert!(!batch_holds(&[(&k, b"n", &good)], [3; 32]));
}

#[test]
fn an_s_of_the_group_order_or_more_is_refused() {
    let a = scalar(6);
    let (key, mut sig) = signed(a, scalar(7), 0, b"m");
    // s + ℓ: the same scalar, not canonically written.
    let s = Scalar::from_canonical_bytes(sig[32..].try_into().expect("32 bytes"))
        .expect("a canonical s");
    let l: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut sum = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s.to_bytes()[i]) + u16::from(l[i]) + carry;
        sum[i] = v as u8;
        carry = v >> 8;
    }
    sig[32..].copy_from_slice(&sum);
    let k = Key::new(&key).expect("a key of prime order");
    assert_eq!(k.verify(b"m", &sig), Err(Error::BadSignature));
    assert_eq!(verify_all(&[(&k, b"m", &sig)], [1; 32]), vec![false]);
}

/// One signature of a drawn batch, and whether it should verify.
#[derive(Debug, Clone)]
enum Kind {
    Ordinary,
    SmallOrderPart(usize),
    SmallOrderNonce(usize),
    OtherMessage,
    BitFlipped(usize),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Ordinary),
        1 => (1usize..8).prop_map(Kind::SmallOrderPart),
        1 => (0usize..8).prop_map(Kind::SmallOrderNonce),
        1 => Just(Kind::OtherMessage),
        1 => (0usize..512).prop_map(Kind::BitFlipped),
    ]
}

proptest! {
    /// However a batch is made up, checking it answers for each signature what
    /// checking that signature alone answers, and that answer is the rule's.
    #[test]
    fn a_batch_answers_as_each_signature_alone(
        drawn in proptest::collection::vec((kind(), any::<u8>(), any::<u8>(), any::<[u8; 8]>()), 1..24),
        seed in any::<[u8; 32]>(),
    ) {
        let keys: Vec<Scalar> = (0..3).map(|i| scalar(100 + i)).collect();
        let mut made = Vec::new();
        for (kind, who, nonce, msg) in &drawn {
            let a = keys[usize::from(*who) % keys.len()];
            let r = scalar(*nonce) + Scalar::ONE;
            let (key, mut sig, shown, ok) = match kind {
                Kind::Ordinary => { let (k, s) = signed(a, r, 0, msg); (k, s, msg.to_vec(), true) }
                Kind::SmallOrderPart(t) => { let (k, s) = signed(a, r, *t, msg); (k, s, msg.to_vec(), true) }
                Kind::SmallOrderNonce(t) => { let (k, s) = signed(a, Scalar::ZERO, *t, msg); (k, s, msg.to_vec(), false) }
                Kind::OtherMessage => { let (k, s) = signed(a, r, 0, msg); (k, s, b"other".to_vec(), false) }
                Kind::BitFlipped(_) => { let (k, s) = signed(a, r, 0, msg); (k, s, msg.to_vec(), false) }
            };
            if let Kind::BitFlipped(bit) = kind {
                sig[bit / 8] ^= 1 << (bit % 8);
            }
            made.push((Key::new(&key).expect("a key of prime order"), shown, sig, ok));
        }
        let queued: Vec<Queued<'_>> = made.iter().map(|(k, m, s, _)| (k, &m[..], s)).collect();
        let alone: Vec<bool> = made.iter().map(|(k, m, s, _)| k.verify(m, s).is_ok()).collect();
        prop_assert_eq!(verify_all(&queued, seed), alone.clone());
        // The batch itself, not only its fallback: it holds exactly when each of
        // its signatures does (those with encodings already refused left out, as
        // `verify_all` leaves them out).
        let kept: Vec<(Queued<'_>, bool)> = queued
            .iter()
            .zip(&alone)
            .filter(|((_, _, sig), _)| acceptable_r(sig) && canonical_s(sig))
            .map(|(q, ok)| (*q, *ok))
            .collect();
        let held: Vec<Queued<'_>> = kept.iter().map(|(q, _)| *q).collect();
        prop_assert_eq!(batch_holds(&held, seed), kept.iter().all(|(_, ok)| *ok));
        let good: Vec<Queued<'_>> = kept.iter().filter(|(_, ok)| *ok).map(|(q, _)| *q).collect();
        prop_assert!(batch_holds(&good, seed));
        // A flipped bit breaks a signature but with negligible probability.
        let expected: Vec<bool> = made.iter().map(|(.., ok)| *ok).collect();
        prop_assert_eq!(alone, expected);
    }
}
