//! XEP-0473 sealing of item payloads:
//! `<encrypted xmlns='urn:xmpp:openpgp:pubsub:0' key='ID'>base64</encrypted>`, where
//! the base64 is a complete OpenPGP message encrypted with the node's shared secret.
//!
//! This module owns the shared secrets ([`Secret`], [`Keyring`]), the `<encrypted/>`
//! element ([`Sealed`]), size padding, and sealing and opening ([`seal`],
//! [`Opener`]).
//!
//! * Sealing writes SKESK v4 (salted S2K, SHA-256, AES-256) + SEIPD v1 + one literal
//!   packet, with no compression (see [`pgp`]). GnuPG, OpenPGP.js and sequoia read it.
//!   The secret has 256 bits of entropy, so the S2K needs no stretching: one SHA-256
//!   instead of sequoia's default 65 MB of hashing (37 ms per item).
//! * Before sealing, the payload is padded with trailing spaces to a multiple of
//!   [`DEFAULT_PAD_BUCKET`] bytes. XML allows whitespace after the root element, so any
//!   XEP-0510 reader ignores it, and the ciphertext length only tells the bucket.
//! * Opening takes what kith writes on its fast path; anything else a conforming
//!   implementation may write (GnuPG's compressed packets, sequoia's defaults,
//!   SEIPDv2, Argon2) goes to sequoia. Keys from expensive S2Ks are cached.
//! * An item whose key id is not in the keyring gives [`Error::UnknownKey`]: callers
//!   keep such items and report them as waiting for their secret.

mod fallback;
pub(crate) mod pgp;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::clock::WallTime;
use crate::item::NodeKind;
use crate::xml::{self, Element};

/// XEP-0473 namespace.
pub const NS: &str = "urn:xmpp:openpgp:pubsub:0";
/// Default padding bucket for payload plaintext, in bytes.
pub const DEFAULT_PAD_BUCKET: usize = 256;
/// Largest OpenPGP message accepted in one `<encrypted/>` element, in bytes.
pub const MAX_SEALED_BYTES: usize = 32 * 1024;
/// Largest plaintext accepted when opening, in bytes (a decompression bound too).
pub const MAX_PLAINTEXT_BYTES: usize = 20 * 1024;
/// Most derived keys kept by an [`Opener`].
const KEY_CACHE_CAP: usize = 1024;

/// Why an item could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The `<encrypted/>` element is not well-formed or over the limits.
    #[error(transparent)]
    Xml(#[from] xml::Error),
    /// Not an `<encrypted xmlns='urn:xmpp:openpgp:pubsub:0'/>` element.
    #[error("not an XEP-0473 <encrypted/> element")]
    NotEncrypted,
    /// No `key` (or legacy `secret`) attribute.
    #[error("<encrypted/> has no key id")]
    MissingKeyId,
    /// The element text is not base64.
    #[error("<encrypted/> content is not valid base64")]
    BadBase64,
    /// The OpenPGP message is larger than [`MAX_SEALED_BYTES`].
    #[error("sealed item is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No secret with this id is known (yet).
    #[error("no secret with id {0:?} is known; the item waits for it")]
    UnknownKey(String),
    /// The secret does not decrypt the item.
    #[error("the secret does not decrypt this item")]
    WrongSecret,
    /// The integrity check failed.
    #[error("the item was modified: integrity check failed")]
    Tampered,
    /// The OpenPGP message is malformed.
    #[error("malformed OpenPGP message: {0}")]
    Malformed(String),
    /// The plaintext is not UTF-8.
    #[error("decrypted payload is not UTF-8")]
    NotUtf8,
    /// The payload is larger than [`MAX_PLAINTEXT_BYTES`].
    #[error("payload is larger than {max} bytes")]
    PayloadTooLarge {
        /// The limit.
        max: usize,
    },
    /// An item sealed elsewhere is not of the shape kith accepts for publishing
    /// (see [`check_publishable`]).
    #[error("not publishable: {0}")]
    NotPublishable(&'static str),
}

impl From<pgp::Error> for Error {
    fn from(e: pgp::Error) -> Self {
        match e {
            pgp::Error::Malformed(m) | pgp::Error::Unsupported(m) => Self::Malformed(m.into()),
            pgp::Error::WrongSecret => Self::WrongSecret,
            pgp::Error::Tampered => Self::Tampered,
        }
    }
}

/// A shared secret for one pubsub node (XEP-0473 `<shared-secret/>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Unique id, carried in `<encrypted key='…'>`.
    pub id: String,
    /// The passphrase.
    pub value: Zeroizing<String>,
    /// The node it protects.
    pub node: NodeKind,
    /// When it was generated; the newest non-revoked secret seals new items.
    pub created: WallTime,
    /// Whether it was revoked (kept only to open old items).
    pub revoked: bool,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("id", &self.id)
            .field("node", &self.node)
            .field("created", &self.created)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// A fresh secret: 43 characters from 256 random bits, and a random 16-character id.
    pub fn generate<R: CryptoRng + ?Sized>(node: NodeKind, created: WallTime, rng: &mut R) -> Self {
        let mut value = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(value.as_mut());
        let mut id = [0u8; 12];
        rng.fill_bytes(&mut id);
        Self {
            id: URL_SAFE_NO_PAD.encode(id),
            value: Zeroizing::new(URL_SAFE_NO_PAD.encode(&value[..])),
            node,
            created,
            revoked: false,
        }
    }
}

/// The secrets a device holds, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    secrets: BTreeMap<String, Secret>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret; a secret already known with the same id keeps its value, and
    /// becomes revoked if either copy is.
    pub fn insert(&mut self, secret: Secret) {
        match self.secrets.get_mut(&secret.id) {
            Some(known) => known.revoked |= secret.revoked,
            None => {
                self.secrets.insert(secret.id.clone(), secret);
            }
        }
    }

    /// The secret with this id.
    pub fn get(&self, id: &str) -> Option<&Secret> {
        self.secrets.get(id)
    }

    /// The secret that seals new items on `node`: the newest non-revoked one (ties
    /// broken by the larger id, so every device picks the same).
    pub fn current(&self, node: NodeKind) -> Option<&Secret> {
        self.secrets
            .values()
            .filter(|s| s.node == node && !s.revoked)
            .max_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)))
    }

    /// Every secret, by id.
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.secrets.values()
    }

    /// Marks the secret `id` revoked; returns whether it was known.
    pub fn revoke(&mut self, id: &str) -> bool {
        self.secrets.get_mut(id).map(|s| s.revoked = true).is_some()
    }
}

/// A sealed payload: the secret id and the binary OpenPGP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sealed {
    /// The id of the secret it was sealed with.
    pub key: String,
    /// A complete binary OpenPGP message.
    pub data: Vec<u8>,
}

impl Sealed {
    /// The XEP-0473 element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(NS, "encrypted").with_attr("key", self.key.clone());
        el.push_text(STANDARD.encode(&self.data));
        el
    }

    /// The XEP-0473 element, serialised.
    pub fn to_xml(&self) -> String {
        self.to_element().to_xml()
    }

    /// Parses an `<encrypted/>` element.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let limits = xml::Limits {
            max_bytes: MAX_SEALED_BYTES * 4 / 3 + 1024,
            max_depth: 2,
            max_elements: 1,
        };
        Self::from_element(&Element::parse(input, limits)?)
    }

    /// Reads an `<encrypted/>` element; `secret` is accepted for `key` (XEP-0473
    /// before 0.1.1 named it so).
    pub fn from_element(el: &Element) -> Result<Self, Error> {
        if !el.is(NS, "encrypted") {
            return Err(Error::NotEncrypted);
        }
        let key = el
            .attr("key")
            .or_else(|| el.attr("secret"))
            .filter(|k| !k.is_empty())
            .ok_or(Error::MissingKeyId)?;
        let text: String = el
            .text()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if text.len() > MAX_SEALED_BYTES * 4 / 3 + 4 {
            return Err(Error::TooLarge {
                len: text.len() / 4 * 3,
                max: MAX_SEALED_BYTES,
            });
        }
        let data = STANDARD.decode(text).map_err(|_| Error::BadBase64)?;
        if data.len() > MAX_SEALED_BYTES {
            return Err(Error::TooLarge {
                len: data.len(),
                max: MAX_SEALED_BYTES,
            });
        }
        Ok(Self {
            key: key.to_owned(),
            data,
        })
    }
}

/// Pads `payload` with trailing spaces to a multiple of `bucket` bytes (a `bucket` of
/// 0 or 1 leaves it as is).
pub fn pad(payload: &str, bucket: usize) -> String {
    let mut out = String::with_capacity(payload.len() + bucket);
    out.push_str(payload);
    out.extend(std::iter::repeat_n(
        ' ',
        padded_len(payload.len(), bucket) - payload.len(),
    ));
    out
}

/// The length [`pad`] brings `len` bytes to.
pub fn padded_len(len: usize, bucket: usize) -> usize {
    if bucket > 1 {
        len.div_ceil(bucket).max(1) * bucket
    } else {
        len
    }
}

/// Seals `payload` (already serialised XML) with `secret`, padding it to `bucket`.
pub fn seal<R: CryptoRng + ?Sized>(
    payload: &str,
    secret: &Secret,
    bucket: usize,
    rng: &mut R,
) -> Sealed {
    let padded = pad(payload, bucket);
    Sealed {
        key: secret.id.clone(),
        data: pgp::encrypt(secret.value.as_bytes(), padded.as_bytes(), rng),
    }
}

/// Opens sealed items, caching keys derived through expensive S2Ks.
#[derive(Default)]
pub struct Opener {
    /// (SHA-256 of the secret value, S2K, algorithm) → key-encryption key.
    cache: HashMap<([u8; 32], pgp::S2k, u8), Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("cached_keys", &self.cache.len())
            .finish()
    }
}

impl Opener {
    /// An opener with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens `sealed` with the secret its key id names, returning the payload text
    /// with padding removed.
    pub fn open(&mut self, sealed: &Sealed, keyring: &Keyring) -> Result<String, Error> {
        let secret = keyring
            .get(&sealed.key)
            .ok_or_else(|| Error::UnknownKey(sealed.key.clone()))?;
        self.open_with(&sealed.data, secret)
    }

    /// Opens a binary OpenPGP message with `secret`.
    pub fn open_with(&mut self, data: &[u8], secret: &Secret) -> Result<String, Error> {
        if data.len() > MAX_SEALED_BYTES {
            return Err(Error::TooLarge {
                len: data.len(),
                max: MAX_SEALED_BYTES,
            });
        }
        let plain = match pgp::parse(data) {
            Ok(msg) => match self.decrypt_fast(&msg, secret)? {
                Some((_, _, pgp::Plain::Literal(plain))) => plain,
                Some((algo, key, pgp::Plain::Other)) => {
                    fallback::open(data, secret, Some((algo, key)))?
                }
                None => fallback::open(data, secret, None)?,
            },
            Err(pgp::Error::Unsupported(_)) => fallback::open(data, secret, None)?,
            Err(e) => return Err(e.into()),
        };
        if plain.len() > MAX_PLAINTEXT_BYTES {
            return Err(Error::PayloadTooLarge {
                max: MAX_PLAINTEXT_BYTES,
            });
        }
        let text = String::from_utf8(plain).map_err(|_| Error::NotUtf8)?;
        Ok(text.trim_end().to_owned())
    }

    /// Decrypts with the session key the first SKESK yields; `None` when the SKESK
    /// or the content is of a kind the fast path does not read.
    #[allow(clippy::type_complexity)]
    fn decrypt_fast(
        &mut self,
        msg: &pgp::Message,
        secret: &Secret,
    ) -> Result<Option<(u8, Zeroizing<Vec<u8>>, pgp::Plain)>, Error> {
        let mut any_readable = false;
        let fingerprint: [u8; 32] = Sha256::digest(secret.value.as_bytes()).into();
        // One key derivation at most, as in the fallback: kith, GnuPG and OpenPGP.js
        // write one key packet for one secret, and a message of many costly ones must
        // not cost many derivations.
        for skesk in msg.skesks.iter().take(1) {
            let Ok(len) = skesk.kek_len() else { continue };
            let cache_key = (fingerprint, skesk.s2k.clone(), skesk.algo);
            let kek = match self.cache.get(&cache_key) {
                Some(k) => k.clone(),
                None => {
                    let Ok(k) = skesk.s2k.derive(secret.value.as_bytes(), len) else {
                        continue;
                    };
                    if skesk.s2k.is_expensive() {
                        if self.cache.len() >= KEY_CACHE_CAP {
                            self.cache.clear();
                        }
                        self.cache.insert(cache_key, k.clone());
                    }
                    k
                }
            };
            any_readable = true;
            if let Ok((algo, key)) = skesk.session_key(&kek) {
                match msg.decrypt(algo, &key) {
                    Err(pgp::Error::WrongSecret) => continue,
                    Err(pgp::Error::Unsupported(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                    Ok(plain) => return Ok(Some((algo, key, plain))),
                }
            }
        }
        if any_readable {
            Err(Error::WrongSecret)
        } else {
            Ok(None)
        }
    }
}

/// Whether opening `data` may run a costly key derivation: an iterated S2K over
/// 64 KiB, or a key packet the fast path does not read (Argon2 may be among them).
/// kith caches such derivations; the fuzz target skips these inputs, which would
/// only measure hashing.
pub fn costly_to_open(data: &[u8]) -> bool {
    match pgp::parse(data) {
        Ok(msg) => msg.skesks.iter().any(|s| s.s2k.is_expensive()),
        Err(pgp::Error::Unsupported(_)) => true,
        Err(_) => false,
    }
}

/// Whether an item sealed elsewhere (by an XMPP client) may be published: exactly
/// one SKESK v4 (simple, salted or iterated S2K, at most GnuPG's largest count) and
/// one SEIPD v1 packet, as kith, GnuPG and OpenPGP.js write them. Checked before any
/// key is derived, so a message of many costly key packets (or Argon2 with a huge
/// memory setting) costs nothing to refuse; opening then derives one key at most
/// (the first key packet only, and no nested encryption, on both the fast path and
/// sequoia's).
pub fn check_publishable(data: &[u8]) -> Result<(), Error> {
    let msg = pgp::parse(data).map_err(|e| match e {
        pgp::Error::Unsupported(what) => Error::NotPublishable(what),
        other => other.into(),
    })?;
    if msg.skesks.len() != 1 {
        return Err(Error::NotPublishable(
            "one symmetric-key session key packet is expected",
        ));
    }
    Ok(())
}

/// Opens a binary OpenPGP message with `secret` using sequoia alone, without the
/// fast path: the other side of the differential fuzz target (whatever one opens,
/// the other must open to the same plaintext).
pub fn open_with_sequoia(data: &[u8], secret: &Secret) -> Result<Vec<u8>, Error> {
    fallback::open(data, secret, None)
}

#[cfg(test)]
mod tests;
