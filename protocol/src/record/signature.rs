//! kith's rule for a record's Ed25519 signature, checked alone or many at once.
//!
//! A signature `(R, s)` by the key `A` over a message verifies when:
//!
//! * `A` and `R` are canonical encodings of points not of small order (RFC 8032's
//!   encoding; `verify_strict` refused the same small-order points, and a key no
//!   one can sign for, a non-canonical `A`, is now refused as well);
//! * `s` is less than the group's order ℓ;
//! * the *cofactored* equation `[8][s]B = [8]R + [8][k]A` holds, with `k` the
//!   SHA-512 of `R ‖ A ‖ message` (ZIP-215's equation, as `ed25519-zebra` checks it).
//!
//! The cofactored equation is the one a batch can check: a batch of signatures
//! verifies exactly when each verifies alone, except with probability at most 2⁻¹²⁸
//! for a batch holding one that does not (each is weighted by its own 128-bit
//! scalar). The cofactorless equation of `verify_strict`, which kith used before,
//! has no such batch: a signature whose `R` carries a small-order part fails it
//! alone and passes a cofactorless batch half of the time, so devices checking the
//! same record alone (gossip) and in a batch (a frame) could disagree about it, and
//! the merge is only deterministic if all of them accept the same records. Only the
//! holder of a key can make a signature the two equations judge differently (its `k`
//! covers `R`), so the cofactored rule admits no forgery the other refuses. A device
//! of a build before this rule refuses such signatures: in a mesh of mixed builds a
//! paired device that made them on purpose could leave the old builds without
//! records the new ones hold, until all are updated (`docs/wire-format.md` §4).
//!
//! A batch of signatures by one author costs about a quarter of checking them one
//! by one (`docs/performance.md`, twenty-ninth session): the author's key terms
//! fold into one.

use std::sync::OnceLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::scalar::Scalar;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes, batch};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;

use super::Error;

/// An author's key, checked once ([`Key::new`]) and kept decompressed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key(VerificationKey);

impl Key {
    /// The key `bytes` encode, if they are a canonical encoding of a point not of
    /// small order.
    pub(crate) fn new(bytes: &[u8; 32]) -> Result<Key, Error> {
        if !acceptable(bytes) {
            return Err(Error::BadSignature);
        }
        VerificationKey::try_from(*bytes)
            .map(Key)
            .map_err(|_| Error::BadSignature)
    }

    /// Checks one signature by this key over `msg`.
    pub(crate) fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> Result<(), Error> {
        if !acceptable_r(signature) {
            return Err(Error::BadSignature);
        }
        self.0
            .verify(&Signature::from_bytes(signature), msg)
            .map_err(|_| Error::BadSignature)
    }
}

/// One signature to check in a batch: the key, the signed message, the signature.
pub(crate) type Queued<'a> = (&'a Key, &'a [u8], &'a [u8; 64]);

/// Checks every signature of `queued`, answering for each whether it verifies (the
/// same answers [`Key::verify`] gives one by one). Those whose encodings already
/// refuse them (an unacceptable `R`, an `s` not below ℓ) are refused without
/// more; the others are checked in one batch ([`batch_holds`]), and only if the
/// batch fails is each of them checked alone: a batch holding a bad signature
/// costs its own check and then each alone, about 1.25× checking them alone from
/// the start. A lone signature (a frame with one record to check) is checked
/// alone: a batch of one costs about 1.4× that (it decodes the key again and weighs
/// three points, not two), a batch of two already less (`docs/performance.md`,
/// thirty-fifth session).
/// The batch's weights come from a generator seeded with `seed`, which
/// must be a digest of every key, message and signature queued, so that whoever
/// chose them could not choose the weights apart from them.
pub(crate) fn verify_all(queued: &[Queued<'_>], seed: [u8; 32]) -> Vec<bool> {
    let mut answers = vec![false; queued.len()];
    let (batch, held): (Vec<usize>, Vec<Queued<'_>>) = queued
        .iter()
        .enumerate()
        .filter(|(_, (_, _, signature))| acceptable_r(signature) && canonical_s(signature))
        .map(|(i, q)| (i, *q))
        .unzip();
    if let ([i], [(key, msg, signature)]) = (&batch[..], &held[..]) {
        answers[*i] = key.verify(msg, signature).is_ok();
        return answers;
    }
    if batch_holds(&held, seed) {
        for i in batch {
            answers[i] = true;
        }
    } else {
        for (i, (key, msg, signature)) in batch.into_iter().zip(held) {
            answers[i] = key.verify(msg, signature).is_ok();
        }
    }
    answers
}

/// Whether every signature of `queued` holds, checked together: the cofactored
/// equation summed over them, each weighted by a 128-bit scalar drawn from a
/// ChaCha20 generator seeded with `seed`. True when each holds alone; false, except
/// with probability at most 2⁻¹²⁸, when one does not. The weights follow from the
/// inputs, so someone choosing signatures could try again and again offline: q tries
/// succeed with probability at most q · 2⁻¹²⁸. (Which weight goes to which signature
/// also depends on the order of ed25519-zebra's map of keys, not only on `seed`;
/// the answer does not.) An empty batch holds.
fn batch_holds(queued: &[Queued<'_>], seed: [u8; 32]) -> bool {
    let mut batch = batch::Verifier::new();
    for (key, msg, signature) in queued {
        batch.queue((
            VerificationKeyBytes::from(key.0),
            Signature::from_bytes(signature),
            *msg,
        ));
    }
    batch.verify(ChaCha20Rng::from_seed(seed)).is_ok()
}

/// Whether the signature's `s` is below the group's order ℓ.
fn canonical_s(signature: &[u8; 64]) -> bool {
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    bool::from(Scalar::from_canonical_bytes(s).is_some())
}

/// Whether the signature's `R` is acceptable ([`acceptable`]).
fn acceptable_r(signature: &[u8; 64]) -> bool {
    let mut r = [0u8; 32];
    r.copy_from_slice(&signature[..32]);
    acceptable(&r)
}

/// Whether `point` is a canonical encoding (its y below p = 2²⁵⁵ − 19) of a y that
/// no point of small order has. Either sign of x is allowed: the small-order points
/// are refused by their y alone, and every point with x = 0 is of small order. The
/// encoding is not decoded here; a y that is no point's fails later.
fn acceptable(point: &[u8; 32]) -> bool {
    let mut y = *point;
    y[31] &= 0x7f;
    below_p(&y) && !small_order_ys().contains(&y)
}

/// Whether the little-endian 255-bit `y` is below p = 2²⁵⁵ − 19.
fn below_p(y: &[u8; 32]) -> bool {
    // p's bytes, little-endian: 0xed, thirty 0xff, 0x7f.
    if y[31] != 0x7f || y[1..31].iter().any(|&b| b != 0xff) {
        return true;
    }
    y[0] < 0xed
}

/// The y coordinates of the eight points of small order (five distinct values),
/// each as its encoding with the sign bit clear.
fn small_order_ys() -> &'static [[u8; 32]] {
    static YS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    YS.get_or_init(|| {
        let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|p| {
                let mut y = p.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort_unstable();
        ys.dedup();
        ys
    })
}

#[cfg(test)]
mod tests;
