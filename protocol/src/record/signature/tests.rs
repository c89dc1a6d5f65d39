use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
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
    // y = 2 is no point's y; and 2 + p encodes it again, not canonically.
    let mut two = [0u8; 32];
    two[0] = 2;
    assert!(Key::new(&two).is_err());
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
        // A flipped bit breaks a signature but with negligible probability.
        let expected: Vec<bool> = made.iter().map(|(.., ok)| *ok).collect();
        prop_assert_eq!(alone, expected);
    }
}
