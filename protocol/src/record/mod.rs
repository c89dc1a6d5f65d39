//! Records: the unit of replication. A record names a space (one of the two pubsub
//! nodes, the device roster, or the keys addressed to devices) and an item
//! id, carries a version (hybrid logical clock, authoring device) and a body (a
//! sealed XEP-0473 payload or a tombstone), and is signed with the authoring
//! device's Ed25519 key over all of that.
//!
//! The replica layer moves records without ever opening them, so a device without
//! secrets (a relay) can still store and forward them, and still check who wrote
//! them.
//!
//! Wire form (CBOR, via ciborium), see `docs/wire-format.md`:
//! `tag(0x6B697401, [space, item-id, hlc-ms, hlc-counter, device, body, signature])`
//! where `body` is `null` (tombstone) or `[key-id, openpgp-bytes]`. The tag carries
//! the format version (`0x6B6974` is "kit", the low byte the version). Decoding is
//! strict: the input is at most [`MAX_RECORD_BYTES`], nesting is bounded, every field
//! has its exact type and size, and nothing may follow the record.

use std::fmt;
use std::sync::Arc;

use ciborium::value::Value;
use ed25519_dalek::{Signer, SigningKey};
use rand_core::CryptoRng;

use crate::clock::Hlc;
use crate::item::NodeKind;
use crate::seal::{MAX_SEALED_BYTES, Sealed};

/// Largest encoded record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = MAX_SEALED_BYTES + 1024;
/// CBOR tag of a record; the low byte is the format version.
pub const RECORD_TAG_BASE: u64 = 0x6B69_7400;
/// The record format version this code writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Domain separator of the signed bytes.
const SIGNING_CONTEXT: &[u8] = b"kith record v1\0";
/// Longest secret id accepted in a record, in bytes.
const MAX_KEY_ID_BYTES: usize = 256;

/// Why bytes are not a valid record, or a record is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input larger than [`MAX_RECORD_BYTES`].
    #[error("record is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not decodable CBOR (truncated, malformed, nested too deep).
    #[error("record is not valid CBOR: {0}")]
    Cbor(String),
    /// Bytes after the record.
    #[error("record is followed by {0} extra bytes")]
    TrailingBytes(usize),
    /// Not tagged as a kith record.
    #[error("not a kith record")]
    NotARecord,
    /// A record format version this code does not read.
    #[error("record format version {0} is not supported (this build reads version 1)")]
    UnknownVersion(u64),
    /// A field with the wrong type, size or value.
    #[error("record field {0} is invalid")]
    BadField(&'static str),
    /// The signature does not verify for the named device.
    #[error("record signature does not verify")]
    BadSignature,
}

/// A device's identity: its Ed25519 public key (the key behind its libp2p PeerId).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; 32]);

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// A random 128-bit pubsub item id, never derived from contact data.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemId(pub [u8; 16]);

impl ItemId {
    /// A fresh random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Parses the 32-hex-digit form used as pubsub item id.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(b))
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ItemId({self})")
    }
}

/// Where a record lives: one of the two XEP-0510 nodes, the device roster, or the
/// secrets addressed to devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Space {
    /// `urn:xmpp:contacts` items (sealed).
    Contacts,
    /// `urn:xmpp:contacts-groups` items (sealed).
    Groups,
    /// Device roster entries.
    Roster,
    /// Secrets, each addressed to one device.
    Keys,
    /// Each device's acknowledgement of the tombstones it holds or has collected.
    Acks,
}

impl Space {
    /// Every space, in key order.
    pub const ALL: [Self; 5] = [
        Self::Contacts,
        Self::Groups,
        Self::Roster,
        Self::Keys,
        Self::Acks,
    ];

    /// The XEP-0510 node, for the two spaces that are one.
    pub fn node(self) -> Option<NodeKind> {
        match self {
            Self::Contacts => Some(NodeKind::Contacts),
            Self::Groups => Some(NodeKind::Groups),
            Self::Roster | Self::Keys | Self::Acks => None,
        }
    }

    /// The one-byte code used on the wire and in reconciliation keys.
    pub fn code(self) -> u8 {
        match self {
            Self::Contacts => 0,
            Self::Groups => 1,
            Self::Roster => 2,
            Self::Keys => 3,
            Self::Acks => 4,
        }
    }

    /// The space with this code.
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| u64::from(s.code()) == code)
    }
}

impl From<NodeKind> for Space {
    fn from(n: NodeKind) -> Self {
        match n {
            NodeKind::Contacts => Self::Contacts,
            NodeKind::Groups => Self::Groups,
        }
    }
}

/// A record's version: the greatest version wins for an item id. Ordered by HLC,
/// then by device id, so any two distinct versions compare the same way everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// When, by the author's hybrid logical clock.
    pub hlc: Hlc,
    /// Who.
    pub device: DeviceId,
}

/// What a record says about its item.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Body {
    /// The item's sealed payload (contacts and groups spaces).
    Sealed(Sealed),
    /// The item was retracted.
    Tombstone,
    /// Roster entry or addressed secret (roster and keys spaces), CBOR.
    Data(Vec<u8>),
    /// A sealed payload left in the device's store instead of memory (see
    /// [`crate::replica::Shelf`]): the replica reads it back when it is needed. A
    /// shelved record is never encoded, stored or verified; only what the replica
    /// holds is shelved.
    Shelved(Shelved),
}

impl Body {
    /// The id of the secret a sealed body (held or shelved) was sealed with.
    pub fn sealed_key(&self) -> Option<&str> {
        match self {
            Self::Sealed(s) => Some(&s.key),
            Self::Shelved(s) => Some(&s.key),
            Self::Tombstone | Self::Data(_) => None,
        }
    }
}

/// What a shelved record keeps of its sealed body: the secret id (to know whether a
/// secret for it is at hand) and the length of the OpenPGP message (to know its
/// encoded size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shelved {
    /// The id of the secret it was sealed with, held once for all the records
    /// shelved through one [`KeyIds`].
    pub key: Arc<str>,
    /// The length of the OpenPGP message, in bytes.
    pub len: usize,
}

/// Secret ids, each held once however many shelved records name it: a device
/// shelves every sealed record it holds, nearly all sealed with one or two secrets.
#[derive(Debug, Clone, Default)]
pub struct KeyIds(std::collections::BTreeSet<Arc<str>>);

impl KeyIds {
    /// The held copy of `id`, made on first use.
    pub fn get(&mut self, id: &str) -> Arc<str> {
        if let Some(held) = self.0.get(id) {
            return Arc::clone(held);
        }
        let held: Arc<str> = id.into();
        self.0.insert(Arc::clone(&held));
        held
    }
}

/// A signed, versioned statement about one item of one space: its [`Parts`] behind
/// an [`Arc`], so that a record is held once however many places keep it (the
/// replica, the store's queue, frames being built, and in the simulator every device
/// that holds it, see [`Verified::interning`]). Read the parts through `Deref`
/// (`record.version`); a record is built with [`Record::sign`] or decoded.
#[derive(Clone, Eq)]
pub struct Record(Arc<Parts>);

/// Equal parts, found at once when both share them.
impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

/// The parts' hash, consistent with equality (equal parts, equal hashes).
impl std::hash::Hash for Record {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Record {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

impl From<Parts> for Record {
    fn from(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }
}

/// What a [`Record`] is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parts {
    /// Which space (pubsub node, roster, keys).
    pub space: Space,
    /// Which item.
    pub item: ItemId,
    /// Version; `version.device` is the author.
    pub version: Version,
    /// Sealed payload or tombstone.
    pub body: Body,
    /// Ed25519 signature of the author over everything above.
    pub signature: [u8; 64],
}

fn signed_bytes(space: Space, item: &ItemId, version: &Version, body: &Body) -> Vec<u8> {
    let mut m = Vec::with_capacity(160 + body_len(body));
    m.extend_from_slice(SIGNING_CONTEXT);
    m.push(space.code());
    m.extend_from_slice(&item.0);
    m.extend_from_slice(&version.hlc.wall_ms.to_be_bytes());
    m.extend_from_slice(&version.hlc.counter.to_be_bytes());
    m.extend_from_slice(&version.device.0);
    match body {
        Body::Tombstone => m.push(0),
        Body::Sealed(s) => {
            m.push(1);
            m.extend_from_slice(&(s.key.len() as u64).to_be_bytes());
            m.extend_from_slice(s.key.as_bytes());
            m.extend_from_slice(&(s.data.len() as u64).to_be_bytes());
            m.extend_from_slice(&s.data);
        }
        Body::Data(d) => {
            m.push(2);
            m.extend_from_slice(&(d.len() as u64).to_be_bytes());
            m.extend_from_slice(d);
        }
        // Not the bytes any author signed: a shelved record never verifies.
        Body::Shelved(_) => m.push(3),
    }
    m
}

fn body_len(body: &Body) -> usize {
    match body {
        Body::Tombstone => 0,
        Body::Sealed(s) => s.key.len() + s.data.len(),
        Body::Data(d) => d.len(),
        Body::Shelved(s) => s.key.len() + s.len,
    }
}

impl Record {
    /// Builds and signs a record; the author is `key`'s device.
    pub fn sign(
        space: impl Into<Space>,
        item: ItemId,
        hlc: Hlc,
        body: Body,
        key: &SigningKey,
    ) -> Self {
        let space = space.into();
        let version = Version {
            hlc,
            device: DeviceId(key.verifying_key().to_bytes()),
        };
        let signature = key
            .sign(&signed_bytes(space, &item, &version, &body))
            .to_bytes();
        Parts {
            space,
            item,
            version,
            body,
            signature,
        }
        .into()
    }

    /// The parts, to change (a copy is made if the record is shared). Changing them
    /// breaks the signature: for tests of what a forged record does.
    #[doc(hidden)]
    pub fn parts_mut(&mut self) -> &mut Parts {
        Arc::make_mut(&mut self.0)
    }

    /// Whether both are the same allocation (not only equal).
    pub fn shares(&self, other: &Record) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The author.
    pub fn author(&self) -> DeviceId {
        self.version.device
    }

    /// Whether the record is a tombstone.
    pub fn is_tombstone(&self) -> bool {
        matches!(self.body, Body::Tombstone)
    }

    /// Whether the record's sealed body was left in the store (see
    /// [`crate::replica::Shelf`]).
    pub fn is_shelved(&self) -> bool {
        matches!(self.body, Body::Shelved(_))
    }

    /// The record with its sealed body left out (see [`Body::Shelved`]), its secret
    /// id taken from `ids`; `None` for a record without a sealed body.
    pub fn to_shelved(&self, ids: &mut KeyIds) -> Option<Record> {
        let Body::Sealed(s) = &self.body else {
            return None;
        };
        Some(
            Parts {
                space: self.space,
                item: self.item,
                version: self.version,
                body: Body::Shelved(Shelved {
                    key: ids.get(&s.key),
                    len: s.data.len(),
                }),
                signature: self.signature,
            }
            .into(),
        )
    }

    /// Whether `full` is this record, with the body this one may have shelved: the
    /// same item, version and signature, and a body that agrees with a shelved one
    /// (the signature covers the body, so for verified records this is equality).
    pub fn same_as(&self, full: &Record) -> bool {
        if self.shares(full) {
            return true;
        }
        let head = self.space == full.space
            && self.item == full.item
            && self.version == full.version
            && self.signature == full.signature;
        head && match (&self.body, &full.body) {
            (Body::Shelved(a), Body::Sealed(b)) | (Body::Sealed(b), Body::Shelved(a)) => {
                *a.key == *b.key && a.len == b.data.len()
            }
            (a, b) => a == b,
        }
    }

    /// Checks the signature against the author's key.
    pub fn verify(&self) -> Result<(), Error> {
        self.verify_message(&signed_bytes(
            self.space,
            &self.item,
            &self.version,
            &self.body,
        ))
    }

    fn verify_message(&self, msg: &[u8]) -> Result<(), Error> {
        signature::Key::new(&self.version.device.0)?.verify(msg, &self.signature)
    }

    /// Encodes the record as CBOR, in the shortest form (what [`Record::decode`]
    /// reads fastest), written directly.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        fast::encode(self, &mut out);
        out
    }

    /// Appends [`Record::encode`]'s bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        fast::encode(self, out);
    }

    /// The length of [`Record::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        fast::encoded_len(self)
    }

    /// [`Record::encode`] through a CBOR value tree: the reference the direct
    /// encoder is tested against.
    #[cfg(test)]
    fn encode_value(&self) -> Vec<u8> {
        let body = match &self.body {
            Body::Tombstone => Value::Null,
            Body::Sealed(s) => Value::Array(vec![
                Value::Text(s.key.clone()),
                Value::Bytes(s.data.clone()),
            ]),
            Body::Data(d) => Value::Bytes(d.clone()),
            Body::Shelved(_) => Value::Null,
        };
        let value = Value::Tag(
            RECORD_TAG_BASE + u64::from(RECORD_VERSION),
            Box::new(Value::Array(vec![
                Value::Integer(self.space.code().into()),
                Value::Bytes(self.item.0.to_vec()),
                Value::Integer(self.version.hlc.wall_ms.into()),
                Value::Integer(self.version.hlc.counter.into()),
                Value::Bytes(self.version.device.0.to_vec()),
                body,
                Value::Bytes(self.signature.to_vec()),
            ])),
        );
        crate::cbor::encode(&value)
    }

    /// Encodes the record, checking that it is within every limit
    /// [`Record::decode`] enforces: what is stored or sent can always be read back.
    pub fn encode_checked(&self) -> Result<Vec<u8>, Error> {
        check_body(self.space, &self.body)?;
        let bytes = self.encode();
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        Ok(bytes)
    }

    /// Decodes a record from CBOR. The signature is not checked here: see
    /// [`Record::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() <= MAX_RECORD_BYTES
            && let Some(r) = fast::decode(bytes)
        {
            return Ok(r);
        }
        Self::decode_value(bytes)
    }

    /// The general decoder: any CBOR encoding of a record (the fast path reads only
    /// the shortest form, the one every encoder here writes).
    fn decode_value(bytes: &[u8]) -> Result<Self, Error> {
        let value = crate::cbor::decode(bytes, MAX_RECORD_BYTES, 8).map_err(|e| match e {
            crate::cbor::ReadError::TooLarge(len) => Error::TooLarge {
                len,
                max: MAX_RECORD_BYTES,
            },
            crate::cbor::ReadError::Malformed(m) => Error::Cbor(m),
            crate::cbor::ReadError::Trailing(n) => Error::TrailingBytes(n),
        })?;
        let Value::Tag(tag, inner) = value else {
            return Err(Error::NotARecord);
        };
        if !(RECORD_TAG_BASE..RECORD_TAG_BASE + 256).contains(&tag) {
            return Err(Error::NotARecord);
        }
        if tag != RECORD_TAG_BASE + u64::from(RECORD_VERSION) {
            return Err(Error::UnknownVersion(tag - RECORD_TAG_BASE));
        }
        let Value::Array(fields) = *inner else {
            return Err(Error::BadField("record"));
        };
        let [node, item, wall, counter, device, body, sig]: [Value; 7] =
            fields.try_into().map_err(|_| Error::BadField("record"))?;
        let space = Space::from_code(int(node, "node")?).ok_or(Error::BadField("node"))?;
        let item = ItemId(bytes_n(item, "item")?);
        let hlc = Hlc {
            wall_ms: int(wall, "hlc")?,
            counter: u32::try_from(int(counter, "hlc counter")?)
                .map_err(|_| Error::BadField("hlc counter"))?,
        };
        let device = DeviceId(bytes_n(device, "device")?);
        let body = match body {
            Value::Null => Body::Tombstone,
            Value::Array(parts) => {
                let [key, data]: [Value; 2] =
                    parts.try_into().map_err(|_| Error::BadField("body"))?;
                let (Value::Text(key), Value::Bytes(data)) = (key, data) else {
                    return Err(Error::BadField("body"));
                };
                Body::Sealed(Sealed { key, data })
            }
            Value::Bytes(d) => Body::Data(d),
            _ => return Err(Error::BadField("body")),
        };
        check_body(space, &body)?;
        let signature = bytes_n(sig, "signature")?;
        Ok(Parts {
            space,
            item,
            version: Version { hlc, device },
            body,
            signature,
        }
        .into())
    }
}

mod fast;
mod signature;
mod verified;

pub use verified::Verified;

/// The limits [`Record::decode`] enforces on a body: sizes, and sealed payloads in
/// the XEP-0510 nodes only, data in the roster, keys and acknowledgements only.
fn check_body(space: Space, body: &Body) -> Result<(), Error> {
    let fits = match body {
        Body::Tombstone => true,
        Body::Sealed(s) => {
            space.node().is_some()
                && !s.key.is_empty()
                && s.key.len() <= MAX_KEY_ID_BYTES
                && s.data.len() <= MAX_SEALED_BYTES
        }
        Body::Data(d) => space.node().is_none() && d.len() <= MAX_SEALED_BYTES,
        // Only the replica holds a shelved record: it is never stored or sent.
        Body::Shelved(_) => false,
    };
    if fits {
        Ok(())
    } else {
        Err(Error::BadField("body"))
    }
}

fn int(v: Value, field: &'static str) -> Result<u64, Error> {
    match v {
        Value::Integer(i) => u64::try_from(i).map_err(|_| Error::BadField(field)),
        _ => Err(Error::BadField(field)),
    }
}

fn bytes_n<const N: usize>(v: Value, field: &'static str) -> Result<[u8; N], Error> {
    match v {
        Value::Bytes(b) => b.try_into().map_err(|_| Error::BadField(field)),
        _ => Err(Error::BadField(field)),
    }
}

#[cfg(test)]
mod tests;
