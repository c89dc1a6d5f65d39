//! XEP-0373 (OpenPGP for XMPP) as kith uses it: device certificates, and
//! `<signcrypt/>` content elements that carry XEP-0473 `<shared-secret/>` and
//! `<revoke/>` to each device, signed by a device of the roster and encrypted to the
//! recipients' certificates.
//!
//! * A device certificate is Cv25519 (Ed25519 primary for certification and
//!   signing, X25519 subkey for encryption), with the User ID `xmpp:<account JID>`
//!   and the features packet announcing SEIPDv1 only, so that what is encrypted to
//!   it is readable by GnuPG 2.2 and every other OX client.
//! * [`signcrypt`] signs and encrypts a [`Content`]; [`open`] decrypts with the
//!   device's key and accepts the result only if a trusted certificate signed it,
//!   one `<to/>` names the account, and the `<time/>` stamp lies in the [`Window`]
//!   (by default no more than 5 minutes ahead of local time and no more than 400
//!   days old) and within 5 minutes of the OpenPGP signature's creation time.
//!
//! Key generation and the ephemeral keys of public-key encryption come from
//! sequoia's own randomness (the OS): these are the only places where kith-protocol
//! does not use the caller's RNG, and neither feeds the merge or a simulation trace.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand_core::CryptoRng;
use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::crypto::SessionKey;
use openpgp::packet::{PKESK, SKESK};
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationError,
    VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{Features, SymmetricAlgorithm};
use openpgp::{Cert, KeyHandle};

use crate::clock::WallTime;
use crate::jid::BareJid;
use crate::xml::{self, Element};

mod secrets;
pub use secrets::SecretMessage;

/// XEP-0373 namespace.
pub const NS: &str = "urn:xmpp:openpgp:0";
/// Largest OpenPGP message [`open`] accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Errors of this layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The content element is not well-formed or over the limits.
    #[error(transparent)]
    Xml(#[from] xml::Error),
    /// Content element other than `<signcrypt/>`.
    #[error("expected an XEP-0373 <signcrypt/>, found <{0}/>")]
    NotSigncrypt(String),
    /// A required child is missing.
    #[error("<signcrypt/> has no {0}")]
    Missing(&'static str),
    /// A `<time stamp>` that is not XEP-0082.
    #[error("<time/> stamp is not an XEP-0082 date-time")]
    BadTime,
    /// No `<to/>` names the account.
    #[error("<signcrypt/> is not addressed to this account")]
    WrongRecipient,
    /// The time stamp is older than the window allows.
    #[error("<signcrypt/> time stamp is too old")]
    Stale,
    /// The time stamp is further ahead than the window allows.
    #[error("<signcrypt/> time stamp is in the future")]
    Future,
    /// Time stamp and OpenPGP signature time disagree.
    #[error("<time/> stamp and signature creation time disagree")]
    TimeMismatch,
    /// The message carries no signature.
    #[error("message is not signed")]
    NoSignature,
    /// The signer is not among the trusted certificates.
    #[error("message is signed by an untrusted key")]
    UntrustedSigner,
    /// A signature that does not verify.
    #[error("message signature does not verify")]
    BadSignature,
    /// The message is not encrypted.
    #[error("message is not encrypted")]
    NotEncrypted,
    /// None of this device's keys decrypts the message.
    #[error("message is not encrypted to this device")]
    NotForThisDevice,
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// Not base64.
    #[error("<openpgp/> content is not valid base64")]
    BadBase64,
    /// Malformed OpenPGP data or key material.
    #[error("OpenPGP error: {0}")]
    OpenPgp(String),
    /// A `<shared-secret/>` or `<revoke/>` missing an attribute or with a bad one.
    #[error("invalid <{0}/> element")]
    BadSecretElement(&'static str),
}

fn pgp_err(e: impl std::fmt::Display) -> Error {
    Error::OpenPgp(e.to_string())
}

fn system_time(t: WallTime) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(t.0)
}

/// A device's OpenPGP key: the certificate with its secret keys.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceKey {
    tsk: Cert,
}

impl DeviceKey {
    /// Generates a Cv25519 key for `account`, created at `now`.
    pub fn generate(account: &BareJid, now: WallTime) -> Result<Self, Error> {
        let (tsk, _rev) = CertBuilder::new()
            .set_cipher_suite(CipherSuite::Cv25519)
            .set_creation_time(system_time(now))
            .set_features(Features::empty().set_seipdv1())
            .map_err(pgp_err)?
            .add_userid(format!("xmpp:{account}"))
            .add_signing_subkey()
            .add_transport_encryption_subkey()
            .generate()
            .map_err(pgp_err)?;
        Ok(Self { tsk })
    }

    /// Reads a key with secrets (binary transferable secret key).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let tsk = Cert::from_bytes(bytes).map_err(pgp_err)?;
        if !tsk.is_tsk() {
            return Err(Error::OpenPgp("no secret key material".into()));
        }
        Ok(Self { tsk })
    }

    /// The key with secrets, binary.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.tsk
            .as_tsk()
            .to_vec()
            .expect("serialising a cert to memory cannot fail")
    }

    /// The public certificate.
    pub fn cert(&self) -> Cert {
        self.tsk.clone().strip_secret_key_material()
    }

    /// The v4 fingerprint, upper-case hex without spaces (XEP-0373 §4).
    pub fn fingerprint(&self) -> String {
        self.tsk.fingerprint().to_hex()
    }
}

/// Reads a public certificate (binary or armored).
pub fn cert_from_bytes(bytes: &[u8]) -> Result<Cert, Error> {
    crate::contained::contained(
        || Cert::from_bytes(bytes).map_err(pgp_err),
        || Error::OpenPgp("a certificate sequoia cannot parse".into()),
    )
}

/// Serialises a public certificate, binary.
pub fn cert_to_bytes(cert: &Cert) -> Vec<u8> {
    let mut out = Vec::new();
    cert.serialize(&mut out)
        .expect("serialising a cert to memory cannot fail");
    out
}

/// The plaintext of a `<signcrypt/>` content element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// `<to jid/>` recipients (bare JIDs).
    pub to: Vec<BareJid>,
    /// `<time stamp/>`.
    pub time: WallTime,
    /// The children of `<payload/>`.
    pub payload: Vec<Element>,
}

impl Content {
    /// Builds the `<signcrypt/>` element, with `<rpad/>` of 0–63 random letters.
    pub fn to_element<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Element {
        let mut el = Element::new(NS, "signcrypt");
        for to in &self.to {
            el.push(Element::new(NS, "to").with_attr("jid", to.to_string()));
        }
        el.push(Element::new(NS, "time").with_attr("stamp", self.time.to_xep0082()));
        let len = (rng.next_u32() % 64) as usize;
        let letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let rpad: String = (0..len)
            .map(|_| char::from(letters[(rng.next_u32() as usize) % letters.len()]))
            .collect();
        let mut pad = Element::new(NS, "rpad");
        pad.push_text(rpad);
        el.push(pad);
        let mut payload = Element::new(NS, "payload");
        for p in &self.payload {
            payload.push(p.clone());
        }
        el.push(payload);
        el
    }

    /// Reads a content element; only `<signcrypt/>` is accepted.
    pub fn from_element(el: &Element) -> Result<Self, Error> {
        if el.ns != NS || el.name != "signcrypt" {
            return Err(Error::NotSigncrypt(el.name.chars().take(32).collect()));
        }
        let mut to = Vec::new();
        let mut time = None;
        let mut payload = None;
        for c in el.elements().filter(|c| c.ns == NS) {
            match c.name.as_ref() {
                "to" => {
                    // A `<to/>` that is not a JID can name no account: skip it.
                    if let Some(j) = c.attr("jid").and_then(|j| BareJid::parse(j).ok()) {
                        to.push(j);
                    }
                }
                "time" if time.is_none() => {
                    let stamp = c.attr("stamp").ok_or(Error::BadTime)?;
                    time = Some(WallTime::parse_xep0082(stamp).map_err(|_| Error::BadTime)?);
                }
                "payload" if payload.is_none() => payload = Some(c.elements().cloned().collect()),
                _ => {}
            }
        }
        if to.is_empty() {
            return Err(Error::Missing("<to/>"));
        }
        Ok(Self {
            to,
            time: time.ok_or(Error::Missing("<time/>"))?,
            payload: payload.ok_or(Error::Missing("<payload/>"))?,
        })
    }
}

/// The `<openpgp xmlns='urn:xmpp:openpgp:0'>` wrapper: base64 of the binary message.
pub fn wrap(message: &[u8]) -> Element {
    let mut el = Element::new(NS, "openpgp");
    el.push_text(STANDARD.encode(message));
    el
}

/// Reads the binary message out of an `<openpgp/>` element.
pub fn unwrap(el: &Element) -> Result<Vec<u8>, Error> {
    if !el.is(NS, "openpgp") {
        return Err(Error::NotSigncrypt(el.name.chars().take(32).collect()));
    }
    let text: String = el
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if text.len() > MAX_MESSAGE_BYTES * 4 / 3 + 4 {
        return Err(Error::TooLarge {
            max: MAX_MESSAGE_BYTES,
        });
    }
    STANDARD.decode(text).map_err(|_| Error::BadBase64)
}

/// Whether a message can be encrypted to `cert` at `now`: it is valid under the
/// standard policy and has a live, unrevoked encryption key.
pub fn can_encrypt_to(cert: &Cert, now: WallTime) -> bool {
    let policy = StandardPolicy::new();
    cert.with_policy(&policy, system_time(now))
        .map(|valid| {
            valid
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption()
                .next()
                .is_some()
        })
        .unwrap_or(false)
}

/// Signs `content` with `signer` and encrypts it to `recipients` (include the
/// signer's own certificate to be able to read it back). Returns the binary
/// OpenPGP message.
pub fn signcrypt<R: CryptoRng + ?Sized>(
    content: &Content,
    signer: &DeviceKey,
    recipients: &[Cert],
    now: WallTime,
    rng: &mut R,
) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let t = system_time(now);
    let signing = signer
        .tsk
        .keys()
        .with_policy(&policy, t)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .secret()
        .next()
        .ok_or_else(|| Error::OpenPgp("device key has no signing key".into()))?
        .key()
        .clone()
        .into_keypair()
        .map_err(pgp_err)?;
    let mut keys = Vec::new();
    for cert in recipients {
        let valid = cert.with_policy(&policy, t).map_err(pgp_err)?;
        let before = keys.len();
        keys.extend(
            valid
                .keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption(),
        );
        if keys.len() == before {
            return Err(Error::OpenPgp(format!(
                "certificate {} has no encryption key",
                cert.fingerprint()
            )));
        }
    }
    let xml = content.to_element(rng).to_xml();
    let mut out = Vec::new();
    let message = Message::new(&mut out);
    let message = Encryptor::for_recipients(message, keys)
        .build()
        .map_err(pgp_err)?;
    let message = Signer::new(message, signing)
        .map_err(pgp_err)?
        .creation_time(t)
        .build()
        .map_err(pgp_err)?;
    let mut literal = LiteralWriter::new(message)
        .date(t)
        .map_err(pgp_err)?
        .build()
        .map_err(pgp_err)?;
    literal.write_all(xml.as_bytes()).map_err(pgp_err)?;
    literal.finalize().map_err(pgp_err)?;
    Ok(out)
}

/// How old or new a `<time/>` stamp may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Most milliseconds a stamp may be ahead of local time.
    pub max_ahead_ms: u64,
    /// Most milliseconds a stamp may be behind local time. Secrets are replicated
    /// to devices that were away, so this is long.
    pub max_age_ms: u64,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            max_ahead_ms: crate::clock::DEFAULT_MAX_AHEAD_MS,
            max_age_ms: 400 * 24 * 3600 * 1000,
        }
    }
}

/// What [`open`] accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The content element.
    pub content: Content,
    /// Fingerprint of the certificate whose key signed it.
    pub signer: String,
}

struct Helper<'a> {
    me: &'a DeviceKey,
    trusted: &'a [Cert],
    policy: &'a StandardPolicy<'a>,
    time: SystemTime,
    signer: RefCell<Option<(String, Option<SystemTime>)>>,
    failure: RefCell<Option<Error>>,
}

impl VerificationHelper for &Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(self.trusted.to_vec())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        let mut encrypted = false;
        let mut failure = Error::NoSignature;
        for layer in structure {
            match layer {
                MessageLayer::Encryption { .. } => encrypted = true,
                MessageLayer::SignatureGroup { results } => {
                    for r in results {
                        match r {
                            Ok(good) => {
                                let fp = good.ka.cert().fingerprint().to_hex();
                                let when = good.sig.signature_creation_time();
                                *self.signer.borrow_mut() = Some((fp, when));
                            }
                            Err(VerificationError::MissingKey { .. }) => {
                                failure = Error::UntrustedSigner
                            }
                            Err(_) => failure = Error::BadSignature,
                        }
                    }
                }
                MessageLayer::Compression { .. } => {}
            }
        }
        let fail = if !encrypted {
            Some(Error::NotEncrypted)
        } else if self.signer.borrow().is_none() {
            Some(failure)
        } else {
            None
        };
        match fail {
            Some(e) => {
                *self.failure.borrow_mut() = Some(e.clone());
                Err(openpgp::Error::InvalidOperation(e.to_string()).into())
            }
            None => Ok(()),
        }
    }
}

impl DecryptionHelper for &Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        let keys = self
            .me
            .tsk
            .keys()
            .with_policy(self.policy, self.time)
            .supported()
            .for_transport_encryption()
            .secret();
        for ka in keys {
            let Ok(mut pair) = ka.key().clone().into_keypair() else {
                continue;
            };
            for pkesk in pkesks {
                if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                    && decrypt(algo, &sk)
                {
                    return Ok(None);
                }
            }
        }
        *self.failure.borrow_mut() = Some(Error::NotForThisDevice);
        Err(openpgp::Error::MissingSessionKey("not for this device".into()).into())
    }
}

/// Decrypts and verifies a signcrypted message for `me`, trusting only `trusted`
/// certificates, for the account `account`, at local time `now`.
pub fn open(
    message: &[u8],
    me: &DeviceKey,
    trusted: &[Cert],
    account: &BareJid,
    now: WallTime,
    window: Window,
) -> Result<Opened, Error> {
    crate::contained::contained(
        || open_unguarded(message, me, trusted, account, now, window),
        || Error::OpenPgp("a message sequoia cannot parse".into()),
    )
}

fn open_unguarded(
    message: &[u8],
    me: &DeviceKey,
    trusted: &[Cert],
    account: &BareJid,
    now: WallTime,
    window: Window,
) -> Result<Opened, Error> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge {
            max: MAX_MESSAGE_BYTES,
        });
    }
    let policy = StandardPolicy::new();
    let helper = Helper {
        me,
        trusted,
        policy: &policy,
        time: system_time(now),
        signer: RefCell::new(None),
        failure: RefCell::new(None),
    };
    let decryptor = DecryptorBuilder::from_bytes(message)
        .and_then(|b| b.with_policy(&policy, system_time(now), &helper));
    let mut decryptor = match decryptor {
        Ok(d) => d,
        Err(e) => {
            return Err(helper
                .failure
                .borrow_mut()
                .take()
                .unwrap_or_else(|| pgp_err(e)));
        }
    };
    let mut plain = Vec::new();
    (&mut decryptor)
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| {
            helper
                .failure
                .borrow_mut()
                .take()
                .unwrap_or_else(|| pgp_err(e))
        })?;
    if !decryptor.message_processed() || plain.len() > MAX_MESSAGE_BYTES {
        return Err(Error::TooLarge {
            max: MAX_MESSAGE_BYTES,
        });
    }
    drop(decryptor);
    let (signer, sig_time) = helper.signer.into_inner().ok_or(Error::NoSignature)?;
    let text =
        String::from_utf8(plain).map_err(|_| Error::OpenPgp("content is not UTF-8".into()))?;
    let limits = xml::Limits {
        max_bytes: MAX_MESSAGE_BYTES,
        max_depth: 8,
        max_elements: 4096,
    };
    let content = Content::from_element(&Element::parse(&text, limits)?)?;
    if !content.to.iter().any(|t| t == account) {
        return Err(Error::WrongRecipient);
    }
    if content.time.0 > now.0.saturating_add(window.max_ahead_ms) {
        return Err(Error::Future);
    }
    if content.time.0 < now.0.saturating_sub(window.max_age_ms) {
        return Err(Error::Stale);
    }
    if let Some(st) = sig_time {
        let sig_ms = st
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if sig_ms.abs_diff(content.time.0) > crate::clock::DEFAULT_MAX_AHEAD_MS {
            return Err(Error::TimeMismatch);
        }
    }
    Ok(Opened { content, signer })
}

#[cfg(test)]
mod tests;
