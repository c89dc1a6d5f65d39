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

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use ciborium::value::Value;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

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
    }
    m
}

fn body_len(body: &Body) -> usize {
    match body {
        Body::Tombstone => 0,
        Body::Sealed(s) => s.key.len() + s.data.len(),
        Body::Data(d) => d.len(),
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
        let key =
            VerifyingKey::from_bytes(&self.version.device.0).map_err(|_| Error::BadSignature)?;
        self.verify_with(&key, msg)
    }

    fn verify_with(&self, key: &VerifyingKey, msg: &[u8]) -> Result<(), Error> {
        key.verify_strict(msg, &Signature::from_bytes(&self.signature))
            .map_err(|_| Error::BadSignature)
    }

    /// Encodes the record as CBOR, in the shortest form (what [`Record::decode`]
    /// reads fastest), written directly.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        fast::encode(self, &mut out);
        out
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

/// Reading the shortest CBOR form of a record without building a value tree: the
/// form every kith encoder writes, so nearly every record is read here. Anything
/// else (another valid encoding, or garbage) is left to the general decoder, so the
/// two accept exactly the same records.
mod fast {
    use super::{Body, DeviceId, Hlc, ItemId, Parts, Record, Sealed, Space, Version, check_body};

    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn byte(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (a, b) = self.0.split_at_checked(n)?;
            self.0 = b;
            Some(a)
        }

        /// The argument of an item of `major` type, in its shortest form.
        fn arg(&mut self, major: u8) -> Option<u64> {
            let b = self.byte()?;
            if b >> 5 != major {
                return None;
            }
            // The value, and the least value that needs this length.
            let (v, least) = match b & 0x1f {
                n @ 0..=23 => (u64::from(n), 0),
                24 => (u64::from(self.byte()?), 24),
                25 => (
                    u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
                    256,
                ),
                26 => (
                    u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
                    65_536,
                ),
                27 => (u64::from_be_bytes(self.take(8)?.try_into().ok()?), 1 << 32),
                _ => return None,
            };
            (v >= least).then_some(v)
        }

        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.arg(2)?).ok()?;
            self.take(n)
        }

        fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.bytes()?.try_into().ok()
        }
    }

    /// The length of the head of a CBOR item whose argument is `n`.
    fn head_len(n: u64) -> usize {
        match n {
            0..=23 => 1,
            24..=0xff => 2,
            0x100..=0xffff => 3,
            0x1_0000..=0xffff_ffff => 5,
            _ => 9,
        }
    }

    /// Writes the head of a CBOR item of `major` type with argument `n`, shortest.
    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        match n {
            // Each arm's range makes the cast exact.
            0..=23 => out.push(m | n as u8),
            24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
    }

    fn bytes_len(b: &[u8]) -> usize {
        head_len(b.len() as u64) + b.len()
    }

    fn put_bytes(out: &mut Vec<u8>, major: u8, b: &[u8]) {
        head(out, major, b.len() as u64);
        out.extend_from_slice(b);
    }

    pub(super) fn encoded_len(r: &Record) -> usize {
        let body = match &r.body {
            Body::Tombstone => 1,
            Body::Sealed(s) => 1 + bytes_len(s.key.as_bytes()) + bytes_len(&s.data),
            Body::Data(d) => bytes_len(d),
        };
        6 + head_len(u64::from(r.space.code()))
            + bytes_len(&r.item.0)
            + head_len(r.version.hlc.wall_ms)
            + head_len(u64::from(r.version.hlc.counter))
            + bytes_len(&r.version.device.0)
            + body
            + bytes_len(&r.signature)
    }

    pub(super) fn encode(r: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0xda, 0x6b, 0x69, 0x74, super::RECORD_VERSION, 0x87]);
        head(out, 0, u64::from(r.space.code()));
        put_bytes(out, 2, &r.item.0);
        head(out, 0, r.version.hlc.wall_ms);
        head(out, 0, u64::from(r.version.hlc.counter));
        put_bytes(out, 2, &r.version.device.0);
        match &r.body {
            Body::Tombstone => out.push(0xf6),
            Body::Sealed(s) => {
                out.push(0x82);
                put_bytes(out, 3, s.key.as_bytes());
                put_bytes(out, 2, &s.data);
            }
            Body::Data(d) => put_bytes(out, 2, d),
        }
        put_bytes(out, 2, &r.signature);
    }

    pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
        let mut r = Reader(bytes);
        let tag = [0xda, 0x6b, 0x69, 0x74, super::RECORD_VERSION];
        if r.take(5)? != tag || r.byte()? != 0x87 {
            return None;
        }
        let space = Space::from_code(r.arg(0)?)?;
        let item = ItemId(r.fixed()?);
        let wall_ms = r.arg(0)?;
        let counter = u32::try_from(r.arg(0)?).ok()?;
        let device = DeviceId(r.fixed()?);
        let body = match r.0.first()? {
            0xf6 => {
                r.byte()?;
                Body::Tombstone
            }
            0x82 => {
                r.byte()?;
                let n = usize::try_from(r.arg(3)?).ok()?;
                let key = std::str::from_utf8(r.take(n)?).ok()?.to_owned();
                let data = r.bytes()?.to_vec();
                Body::Sealed(Sealed { key, data })
            }
            _ => Body::Data(r.bytes()?.to_vec()),
        };
        let signature = r.fixed()?;
        if !r.0.is_empty() || check_body(space, &body).is_err() {
            return None;
        }
        Some(
            Parts {
                space,
                item,
                version: Version {
                    hlc: Hlc { wall_ms, counter },
                    device,
                },
                body,
                signature,
            }
            .into(),
        )
    }
}

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
    };
    if fits {
        Ok(())
    } else {
        Err(Error::BadField("body"))
    }
}

/// Records kept by [`Verified::interning`], by signature.
type Interned = Arc<Mutex<HashMap<[u8; 64], Record>>>;

/// Signatures that verified, by a digest of the signed bytes and the signature. The
/// same bytes verify the same way everywhere, so a verification need not be done
/// twice: a device meets the same record again in gossip and reconciliation, and the
/// simulator shares one set among all its devices. Clones share the set.
#[derive(Debug, Clone)]
pub struct Verified {
    set: Arc<Mutex<HashSet<[u8; 32]>>>,
    capacity: usize,
    /// Authors' keys, decompressed once (a point decompression is a tenth of a
    /// verification): the few devices of an account sign everything.
    keys: Arc<Mutex<HashMap<[u8; 32], VerifyingKey>>>,
    /// With [`Verified::interning`]: every record that verified, by signature, so
    /// that equal records received by different holders become one allocation.
    records: Option<Interned>,
}

impl Default for Verified {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl Verified {
    /// Digests kept by default (about 4 MB); the set starts again when full.
    pub const CAPACITY: usize = 1 << 16;

    /// An empty set of the default capacity.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set keeping at most `capacity` digests (the simulator shares a large
    /// one among all its devices).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            set: Arc::default(),
            capacity,
            keys: Arc::default(),
            records: None,
        }
    }

    /// A set that also keeps every record that verified, at most `capacity` of
    /// them, and hands the kept one back for an equal record
    /// ([`Verified::check`]): the simulator's devices then hold each record once
    /// between them.
    pub fn interning(capacity: usize) -> Self {
        Self {
            records: Some(Arc::default()),
            ..Self::with_capacity(capacity)
        }
    }

    /// How many verified signatures are remembered.
    pub fn len(&self) -> usize {
        self.set.lock().map_or(0, |s| s.len())
    }

    /// Whether no verified signature is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Authors' keys kept decompressed at most (the set starts again when full).
    const KEYS: usize = 4_096;

    fn key(&self, device: &DeviceId) -> Result<VerifyingKey, Error> {
        if let Some(k) = self
            .keys
            .lock()
            .ok()
            .and_then(|k| k.get(&device.0).copied())
        {
            return Ok(k);
        }
        let key = VerifyingKey::from_bytes(&device.0).map_err(|_| Error::BadSignature)?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= Self::KEYS {
                keys.clear();
            }
            keys.insert(device.0, key);
        }
        Ok(key)
    }

    /// [`Record::verify`], remembering success.
    pub fn verify(&self, record: &Record) -> Result<(), Error> {
        self.verified(record).map(|_| ())
    }

    /// [`Verified::verify`], returning the record to keep: with
    /// [`Verified::interning`], the one kept for an equal record if there is one.
    pub fn check(&self, record: Record) -> Result<Record, Error> {
        let Some(records) = &self.records else {
            self.verified(&record)?;
            return Ok(record);
        };
        // A record equal to one kept verified when it was kept. A poisoned lock only
        // loses the sharing.
        if let Ok(records) = records.lock()
            && let Some(kept) = records.get(&record.signature)
            && *kept == record
        {
            return Ok(kept.clone());
        }
        self.verified(&record)?;
        if let Ok(mut records) = records.lock() {
            if records.len() >= self.capacity {
                // Those no holder keeps any more go first (superseded versions).
                records.retain(|_, r| Arc::strong_count(&r.0) > 1);
                if records.len() >= self.capacity {
                    records.clear();
                }
            }
            records.insert(record.signature, record.clone());
        }
        Ok(record)
    }

    /// Verifies `record` unless a record of the same digest did; returns the digest.
    fn verified(&self, record: &Record) -> Result<[u8; 32], Error> {
        let msg = signed_bytes(record.space, &record.item, &record.version, &record.body);
        let digest: [u8; 32] = Sha256::new()
            .chain_update(&msg)
            .chain_update(record.signature)
            .finalize()
            .into();
        // A poisoned lock only loses the shortcut: verify as if nothing was known.
        if self.set.lock().is_ok_and(|set| set.contains(&digest)) {
            return Ok(digest);
        }
        record.verify_with(&self.key(&record.version.device)?, &msg)?;
        if let Ok(mut set) = self.set.lock() {
            if set.len() >= self.capacity {
                set.clear();
            }
            set.insert(digest);
        }
        Ok(digest)
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
mod tests {
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
}
