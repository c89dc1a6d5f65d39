//! The XEP-0473 OpenPGP fast path against sequoia, differentially: for any message
//! bytes and secret, what kith opens sequoia opens to the same plaintext, and what
//! sequoia opens (as UTF-8 text within the limits) kith opens too. Input: one byte
//! choosing the secret, then the OpenPGP message. Messages whose key derivation is
//! costly (an iterated S2K over 64 KiB, Argon2) are skipped: they only measure
//! hashing, and kith caches those derivations.
#![no_main]

use kith_protocol::clock::WallTime;
use kith_protocol::item::NodeKind;
use kith_protocol::seal::{self, MAX_PLAINTEXT_BYTES, Opener, Secret};
use libfuzzer_sys::fuzz_target;

fn secret(n: u8) -> Secret {
    Secret {
        id: format!("k{n}"),
        value: zeroize::Zeroizing::new(format!("fuzzing-secret-{}-0123456789abcdef0123", n % 4)),
        node: NodeKind::Contacts,
        created: WallTime(1),
        revoked: false,
    }
}

/// Whether a symmetric-key packet anywhere in the framing (also where the rest does
/// not parse, as sequoia reads on) asks for a costly derivation.
fn costly_skesk(mut b: &[u8]) -> bool {
    while let Some((&ctb, rest)) = b.split_first() {
        if ctb & 0x80 == 0 {
            return false;
        }
        let (tag, len, rest) = if ctb & 0x40 != 0 {
            let tag = ctb & 0x3f;
            match rest {
                [l, r @ ..] if *l < 192 => (tag, usize::from(*l), r),
                [l, m, r @ ..] if *l < 224 => (
                    tag,
                    ((usize::from(*l) - 192) << 8) + usize::from(*m) + 192,
                    r,
                ),
                [255, a, b2, c, d, r @ ..] => {
                    (tag, u32::from_be_bytes([*a, *b2, *c, *d]) as usize, r)
                }
                // Partial lengths: whatever follows is looked at as it is.
                [_, r @ ..] => (tag, r.len(), r),
                [] => return false,
            }
        } else {
            let tag = (ctb >> 2) & 0x0f;
            match (ctb & 3, rest) {
                (0, [l, r @ ..]) => (tag, usize::from(*l), r),
                (1, [a, c, r @ ..]) => (tag, usize::from(u16::from_be_bytes([*a, *c])), r),
                (2, [a, c, d, e, r @ ..]) => {
                    (tag, u32::from_be_bytes([*a, *c, *d, *e]) as usize, r)
                }
                (_, r) => (tag, r.len(), r),
            }
        };
        let body = &rest[..len.min(rest.len())];
        // sequoia reads packets inside a compressed data packet too: look into
        // uncompressed ones; compressed content is not for this target (kith hands
        // it to sequoia on both sides of the comparison anyway).
        if tag == 8 {
            match body.split_first() {
                Some((0, inner)) if costly_skesk(inner) => return true,
                Some((0, _)) | None => {}
                Some(_) => return true,
            }
        }
        if tag == 3 {
            match body {
                // v4: version, algorithm, S2K type 3 (iterated), hash, salt, count.
                [4, _, 3, _, _, _, _, _, _, _, _, _, count, ..] => {
                    let c = u32::from(*count);
                    if (16 + (c & 15)) << ((c >> 4) + 6) > 65_536 {
                        return true;
                    }
                }
                [4, _, 0..=3, ..] | [4, ..] if body.len() < 3 => {}
                [4, _, 0 | 1 | 3, ..] => {}
                // Argon2, other versions (v5, v6 may use Argon2): not for this target.
                _ => return true,
            }
        }
        b = &rest[len.min(rest.len())..];
    }
    false
}

fuzz_target!(init: {
    // kith contains panics inside sequoia (an `unwrap` sequoia 2.4 reaches on some
    // malformed packets) and reports them as malformed items: let those unwind to
    // where kith catches them. A panic kith does not catch still reaches
    // libfuzzer-sys, which aborts: a crash as before.
    // Printed, so that an artifact says what failed (contained panics print too).
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
}, |data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    if seal::costly_to_open(message) || costly_skesk(message) {
        return;
    }
    let secret = secret(which);
    let kith = Opener::new().open_with(message, &secret);
    let sequoia = seal::open_with_sequoia(message, &secret);
    match (&kith, &sequoia) {
        (Ok(text), Ok(plain)) => {
            let plain = String::from_utf8(plain.clone()).expect("kith opened it as UTF-8");
            assert_eq!(*text, plain.trim_end(), "both open it, to the same text");
        }
        (Ok(text), Err(e)) => panic!("kith opens what sequoia refuses ({e}): {text:?}"),
        (Err(e), Ok(plain)) => {
            if plain.len() <= MAX_PLAINTEXT_BYTES && std::str::from_utf8(plain).is_ok() {
                panic!("sequoia opens what kith refuses: {e}");
            }
        }
        (Err(_), Err(_)) => {}
    }
});
