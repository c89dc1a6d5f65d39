//! Opening what kith's fast path does not read, with sequoia: compressed content
//! (GnuPG's default), SEIPDv2, Argon2 and other S2Ks, signed content. When the fast
//! path already found the session key, it is handed over so the S2K (37 ms for
//! sequoia's and GnuPG's defaults) is not run twice.

use std::io::Read;
use std::time::{Duration, SystemTime};

use sequoia_openpgp as openpgp;

use openpgp::crypto::{Password, SessionKey};
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::types::SymmetricAlgorithm;
use openpgp::{Cert, KeyHandle};
use zeroize::Zeroizing;

use super::{Error, MAX_PLAINTEXT_BYTES, Secret};

/// The time sequoia's policy is evaluated at for symmetric items. It only decides
/// algorithm cut-offs; fixing it keeps `protocol` free of the OS clock and the result
/// reproducible. (2026-01-01T00:00:00Z.)
const POLICY_TIME: Duration = Duration::from_secs(1_767_225_600);

struct Helper<'a> {
    secret: &'a Secret,
    known: Option<(u8, Zeroizing<Vec<u8>>)>,
    decrypted: bool,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        // XEP-0473 items are not signed; authorship is checked on kith records.
        Ok(())
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        _pkesks: &[PKESK],
        skesks: &[SKESK],
        _sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let refuse = |why: &str| Err(openpgp::Error::MissingSessionKey(why.into()).into());
        // An item is one encryption layer: encrypted data nested in the content (each
        // layer's key packets would be tried again, every one a costly S2K) is refused.
        if self.decrypted {
            return refuse("nested encryption");
        }
        if let Some((algo, key)) = &self.known {
            // The fast path found the key: nothing is derived again.
            let sk = SessionKey::from(key.as_slice());
            if decrypt(Some(SymmetricAlgorithm::from(*algo)), &sk) {
                self.decrypted = true;
                return Ok(None);
            }
            return refuse("the session key does not fit");
        }
        // One key derivation at most, whatever the message holds (kith and the XEP-0473
        // implementations write one key packet).
        let password = Password::from(self.secret.value.as_str());
        if let Some(skesk) = skesks.first()
            && let Ok((algo, sk)) = skesk.decrypt(&password)
            && decrypt(algo, &sk)
        {
            self.decrypted = true;
            return Ok(None);
        }
        refuse("no secret fits")
    }
}

/// Opens `data` with sequoia; `known` is a session key found by the fast path.
///
/// sequoia 2.4 panics on some malformed SEIPDv1 packets (an `unwrap` on a short
/// read in `parse.rs`, found by the `openpgp` fuzz target): since items come from
/// peers, a panic there is caught and reported as a malformed item.
pub(super) fn open(
    data: &[u8],
    secret: &Secret,
    known: Option<(u8, Zeroizing<Vec<u8>>)>,
) -> Result<Vec<u8>, Error> {
    crate::contained::contained(
        || open_unguarded(data, secret, known),
        || Error::Malformed("OpenPGP data that sequoia cannot parse".into()),
    )
}

fn open_unguarded(
    data: &[u8],
    secret: &Secret,
    known: Option<(u8, Zeroizing<Vec<u8>>)>,
) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let helper = Helper {
        secret,
        known,
        decrypted: false,
    };
    let time = SystemTime::UNIX_EPOCH + POLICY_TIME;
    let result =
        DecryptorBuilder::from_bytes(data).and_then(|b| b.with_policy(&policy, time, helper));
    let mut decryptor = match result {
        Ok(d) => d,
        Err(e) => return Err(classify(&e)),
    };
    let mut out = Vec::new();
    let limit = MAX_PLAINTEXT_BYTES as u64 + 1;
    (&mut decryptor)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Error::Malformed(e.to_string()))?;
    if out.len() > MAX_PLAINTEXT_BYTES {
        return Err(Error::PayloadTooLarge {
            max: MAX_PLAINTEXT_BYTES,
        });
    }
    if !decryptor.message_processed() {
        return Err(Error::Tampered);
    }
    // sequoia reads a message that is not encrypted at all as its plain content (the
    // `openpgp` fuzz target found it): an item is only what a secret opened.
    if !decryptor.helper_ref().decrypted {
        return Err(Error::Malformed("the item is not encrypted".into()));
    }
    Ok(out)
}

fn classify(e: &openpgp::anyhow::Error) -> Error {
    match e.downcast_ref::<openpgp::Error>() {
        Some(openpgp::Error::MissingSessionKey(_)) => Error::WrongSecret,
        Some(openpgp::Error::ManipulatedMessage) => Error::Tampered,
        _ => Error::Malformed(e.to_string()),
    }
}
