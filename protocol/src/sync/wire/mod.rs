//! Frames the sync engine sends: gossip pushes and reconciliation requests and
//! responses, encoded as CBOR with a version tag, decoded strictly, and padded to a
//! few sizes so that what a frame carries does not show in its length. Frames are
//! written and, in the shortest form kith writes, read directly (`direct`); any
//! other encoding goes through a ciborium value tree.
//!
//! ```text
//! padded frame: u32 BE length of the CBOR frame ‖ CBOR frame ‖ zero bytes
//!               (in all, [`bucket`] of the unpadded length: a power of two, ≥ 2 KiB)
//! tag(0x6B697501, [0, [record-bytes…]])                                  gossip
//! tag(0x6B697501, [1, salt, ranges, need, [record-bytes…], more, have?]) request
//! tag(0x6B697501, [2, ranges, need, [record-bytes…], more, have?])       response
//! have:   [count, fp] (optional: the sender's whole set in brief)
//! ranges: [[bound, part]…]   bound: null (end) | bstr(9)
//! part:   0 (skip) | [count, fp] | bstr(6·n) (entries: 3-byte prefix, 3-byte digest)
//! need:   bstr(3·n) (3-byte prefixes)
//! ```

use ciborium::value::Value;

use super::recon::{self, Bound, Part};
use crate::record::{self, Record};

/// CBOR tag of a frame; the low byte is the format version.
pub const FRAME_TAG_BASE: u64 = 0x6B69_7500;
/// The frame format version written and read.
pub const FRAME_VERSION: u8 = 1;
/// Largest gossip frame, in bytes.
pub const MAX_GOSSIP_BYTES: usize = 64 * 1024;
/// Largest request or response frame, in bytes.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// The smallest size a frame is padded to: one-item operations (an add, an edit, a
/// deletion, a group change, an acknowledgement) all fit, and look the same.
pub const MIN_PADDED_BYTES: usize = 2 * 1024;
/// Bytes of the length in front of a padded frame.
const LENGTH_BYTES: usize = 4;
/// The first byte of an unpadded frame (the CBOR head of its 4-byte tag); a padded
/// frame starts with a zero byte (its length is under 16 MiB).
const UNPADDED_FIRST_BYTE: u8 = 0xDA;

/// The size a frame whose length and CBOR take `len` bytes is padded to: the next
/// power of two, at least [`MIN_PADDED_BYTES`]. Both limits are powers of two, so a
/// frame within its limit stays within it padded.
pub fn bucket(len: usize) -> usize {
    len.max(MIN_PADDED_BYTES).next_power_of_two()
}

#[cfg(test)]
fn pad(cbor: Vec<u8>) -> Vec<u8> {
    // A frame longer than u32 cannot be built within the limits; were it, its
    // length would read as wrong and the frame be refused, not misread.
    let len = u32::try_from(cbor.len()).unwrap_or(u32::MAX);
    let size = bucket(LENGTH_BYTES + cbor.len());
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&cbor);
    out.resize(size, 0);
    out
}

/// How many bytes of `frame` (as sent) are padding; 0 for an unpadded frame or bytes
/// that are no padded frame.
pub fn padding_of(frame: &[u8]) -> usize {
    match frame.split_first_chunk::<LENGTH_BYTES>() {
        Some((len, rest)) if frame[0] != UNPADDED_FIRST_BYTE => {
            rest.len().saturating_sub(u32::from_be_bytes(*len) as usize)
        }
        _ => 0,
    }
}

/// The CBOR frame inside `bytes` (an unpadded frame of an earlier version is read
/// as it is).
fn unpad(bytes: &[u8]) -> Result<&[u8], Error> {
    if bytes.first() == Some(&UNPADDED_FIRST_BYTE) {
        return Ok(bytes);
    }
    let (len, rest) = bytes
        .split_first_chunk::<LENGTH_BYTES>()
        .ok_or(Error::BadField("length"))?;
    let len = usize::try_from(u32::from_be_bytes(*len)).map_err(|_| Error::BadField("length"))?;
    if len > rest.len() {
        return Err(Error::BadField("length"));
    }
    let (frame, padding) = rest.split_at(len);
    if padding.iter().any(|b| *b != 0) {
        return Err(Error::BadField("padding"));
    }
    Ok(frame)
}

/// A frame between two engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// New records, pushed to every peer.
    Gossip {
        /// The records.
        records: Vec<Record>,
    },
    /// A reconciliation step from the initiator.
    Request {
        /// Salt of this exchange's entry digests.
        salt: u64,
        /// The reconciliation message.
        msg: recon::Message,
        /// Records for the responder.
        records: Vec<Record>,
        /// The sender has more records to send in this exchange.
        more: bool,
        /// What the sender holds, in brief, as it sends the frame (absent from
        /// frames of earlier versions).
        have: Option<recon::Summary>,
    },
    /// The responder's answer.
    Response {
        /// The reconciliation message.
        msg: recon::Message,
        /// Records for the initiator.
        records: Vec<Record>,
        /// The sender has more records to send in this exchange.
        more: bool,
        /// What the sender holds, in brief, as it sends the frame (absent from
        /// frames of earlier versions).
        have: Option<recon::Summary>,
    },
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Larger than the limit for its kind.
    #[error("frame is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not CBOR, truncated or nested too deep.
    #[error("frame is not valid CBOR: {0}")]
    Cbor(String),
    /// Not a kith frame.
    #[error("not a kith sync frame")]
    NotAFrame,
    /// A version this code does not read.
    #[error("sync frame version {0} is not supported")]
    UnknownVersion(u64),
    /// A field of the wrong shape.
    #[error("sync frame field {0} is invalid")]
    BadField(&'static str),
    /// A record inside does not decode.
    #[error("record in frame: {0}")]
    Record(#[from] record::Error),
    /// Over the reconciliation limits.
    #[error(transparent)]
    Recon(#[from] recon::Error),
    /// Records of the frame that did not decode were left out.
    #[error("{count} records in the frame do not decode (the first: {first})")]
    Skipped {
        /// How many.
        count: usize,
        /// Why the first did not.
        first: record::Error,
    },
}

#[cfg(test)]
fn records_value(records: &[Record]) -> Value {
    Value::Array(records.iter().map(|r| Value::Bytes(r.encode())).collect())
}

#[cfg(test)]
fn msg_values(msg: &recon::Message) -> (Value, Value) {
    let ranges = msg
        .ranges
        .iter()
        .map(|(b, p)| {
            let bound = match b {
                Bound::End => Value::Null,
                Bound::Key(k) => Value::Bytes(k.to_vec()),
            };
            let part = match p {
                Part::Skip => Value::Integer(0.into()),
                Part::Fingerprint { count, fp } => Value::Array(vec![
                    Value::Integer((*count).into()),
                    Value::Integer((*fp).into()),
                ]),
                Part::Ids(ids) => Value::Bytes(
                    ids.iter()
                        .flat_map(|i| i.to_be_bytes()[2..].to_vec())
                        .collect(),
                ),
            };
            Value::Array(vec![bound, part])
        })
        .collect();
    let need = Value::Bytes(
        msg.need
            .iter()
            .flat_map(|n| n.to_be_bytes()[1..].to_vec())
            .collect(),
    );
    (Value::Array(ranges), need)
}

impl Frame {
    /// Encodes the frame, padded ([`bucket`]), written directly into one buffer of
    /// about its padded size: the records' bytes are copied once.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(bucket(LENGTH_BYTES + self.estimated_len()));
        out.extend_from_slice(&[0; LENGTH_BYTES]);
        self.write(&mut out);
        // A frame longer than u32 cannot be built within the limits; were it, its
        // length would read as wrong and the frame be refused, not misread.
        let len = u32::try_from(out.len() - LENGTH_BYTES).unwrap_or(u32::MAX);
        out[..LENGTH_BYTES].copy_from_slice(&len.to_be_bytes());
        out.resize(bucket(out.len()), 0);
        out
    }

    /// [`Frame::encode`] through a CBOR value tree: the reference the direct
    /// encoder is tested against.
    #[cfg(test)]
    fn encode_value(&self) -> Vec<u8> {
        let body = match self {
            Self::Gossip { records } => vec![Value::Integer(0.into()), records_value(records)],
            Self::Request {
                salt,
                msg,
                records,
                more,
                have,
            } => {
                let (ranges, need) = msg_values(msg);
                let mut body = vec![
                    Value::Integer(1.into()),
                    Value::Integer((*salt).into()),
                    ranges,
                    need,
                    records_value(records),
                    Value::Bool(*more),
                ];
                body.extend(have.map(summary_value));
                body
            }
            Self::Response {
                msg,
                records,
                more,
                have,
            } => {
                let (ranges, need) = msg_values(msg);
                let mut body = vec![
                    Value::Integer(2.into()),
                    ranges,
                    need,
                    records_value(records),
                    Value::Bool(*more),
                ];
                body.extend(have.map(summary_value));
                body
            }
        };
        let value = Value::Tag(
            FRAME_TAG_BASE + u64::from(FRAME_VERSION),
            Box::new(Value::Array(body)),
        );
        pad(crate::cbor::encode(&value))
    }

    /// Decodes a frame of at most `max` bytes, strictly: a record inside that does
    /// not decode fails the frame. Signatures are not checked here.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, Error> {
        match Self::decode_lenient(bytes, max)? {
            (frame, skipped) if skipped.is_empty() => Ok(frame),
            (_, mut skipped) => Err(Error::Record(skipped.remove(0))),
        }
    }

    /// Decodes a frame of at most `max` bytes; records inside that do not decode are
    /// left out and returned with why, so that one bad record does not cost the
    /// others (each record stands on its own signature).
    pub fn decode_lenient(bytes: &[u8], max: usize) -> Result<(Self, Vec<record::Error>), Error> {
        let mut skipped = Vec::new();
        let frame = Self::decode_into(bytes, max, &mut skipped)?;
        Ok((frame, skipped))
    }

    fn decode_into(
        bytes: &[u8],
        max: usize,
        skipped: &mut Vec<record::Error>,
    ) -> Result<Self, Error> {
        if bytes.len() > max {
            return Err(Error::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let cbor = unpad(bytes)?;
        match Self::read(cbor, skipped) {
            Some(frame) => Ok(frame),
            None => Self::decode_tree(cbor, max, skipped),
        }
    }

    /// Decodes the CBOR frame `cbor` through a value tree: any valid encoding, and
    /// the reason a bad frame is bad.
    fn decode_tree(
        cbor: &[u8],
        max: usize,
        skipped: &mut Vec<record::Error>,
    ) -> Result<Self, Error> {
        let value = crate::cbor::decode(cbor, max, 8).map_err(|e| match e {
            crate::cbor::ReadError::TooLarge(len) => Error::TooLarge { len, max },
            crate::cbor::ReadError::Malformed(m) => Error::Cbor(m),
            crate::cbor::ReadError::Trailing(_) => Error::Cbor("trailing bytes".into()),
        })?;
        let Value::Tag(tag, inner) = value else {
            return Err(Error::NotAFrame);
        };
        if !(FRAME_TAG_BASE..FRAME_TAG_BASE + 256).contains(&tag) {
            return Err(Error::NotAFrame);
        }
        if tag != FRAME_TAG_BASE + u64::from(FRAME_VERSION) {
            return Err(Error::UnknownVersion(tag - FRAME_TAG_BASE));
        }
        let Value::Array(fields) = *inner else {
            return Err(Error::BadField("frame"));
        };
        let mut fields = fields.into_iter();
        let kind = int(fields.next(), "kind")?;
        let frame = match kind {
            0 => Self::Gossip {
                records: records(fields.next(), skipped)?,
            },
            1 => {
                let salt = int(fields.next(), "salt")?;
                let msg = message(fields.next(), fields.next())?;
                Self::Request {
                    salt,
                    msg,
                    records: records(fields.next(), skipped)?,
                    more: boolean(fields.next())?,
                    have: summary(fields.next())?,
                }
            }
            2 => {
                let msg = message(fields.next(), fields.next())?;
                Self::Response {
                    msg,
                    records: records(fields.next(), skipped)?,
                    more: boolean(fields.next())?,
                    have: summary(fields.next())?,
                }
            }
            _ => return Err(Error::BadField("kind")),
        };
        if fields.next().is_some() {
            return Err(Error::BadField("frame"));
        }
        Ok(frame)
    }
}

#[cfg(test)]
fn summary_value(s: recon::Summary) -> Value {
    Value::Array(vec![
        Value::Integer(s.count.into()),
        Value::Integer(s.fp.into()),
    ])
}

/// The optional last field of a request or response: `[count, fingerprint]`.
fn summary(v: Option<Value>) -> Result<Option<recon::Summary>, Error> {
    match v {
        None => Ok(None),
        Some(Value::Array(pair)) => {
            let mut pair = pair.into_iter();
            let count = int(pair.next(), "have")?;
            let fp = int(pair.next(), "have")?;
            if pair.next().is_some() {
                return Err(Error::BadField("have"));
            }
            Ok(Some(recon::Summary { count, fp }))
        }
        Some(_) => Err(Error::BadField("have")),
    }
}

fn int(v: Option<Value>, field: &'static str) -> Result<u64, Error> {
    match v {
        Some(Value::Integer(i)) => u64::try_from(i).map_err(|_| Error::BadField(field)),
        _ => Err(Error::BadField(field)),
    }
}

fn boolean(v: Option<Value>) -> Result<bool, Error> {
    match v {
        Some(Value::Bool(b)) => Ok(b),
        _ => Err(Error::BadField("more")),
    }
}

fn records(v: Option<Value>, skipped: &mut Vec<record::Error>) -> Result<Vec<Record>, Error> {
    let Some(Value::Array(items)) = v else {
        return Err(Error::BadField("records"));
    };
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        let Value::Bytes(b) = i else {
            return Err(Error::BadField("records"));
        };
        match Record::decode(&b) {
            Ok(r) => out.push(r),
            Err(e) => skipped.push(e),
        }
    }
    Ok(out)
}

fn message(ranges: Option<Value>, need: Option<Value>) -> Result<recon::Message, Error> {
    let Some(Value::Array(ranges)) = ranges else {
        return Err(Error::BadField("ranges"));
    };
    if ranges.len() > recon::MAX_RANGES {
        return Err(Error::Recon(recon::Error::TooLarge));
    }
    let mut out = recon::Message::default();
    for r in ranges {
        let Value::Array(pair) = r else {
            return Err(Error::BadField("range"));
        };
        let [bound, part]: [Value; 2] = pair.try_into().map_err(|_| Error::BadField("range"))?;
        let bound = match bound {
            Value::Null => Bound::End,
            Value::Bytes(b) => Bound::Key(b.try_into().map_err(|_| Error::BadField("bound"))?),
            _ => return Err(Error::BadField("bound")),
        };
        let part = match part {
            Value::Integer(i) if u64::try_from(i) == Ok(0) => Part::Skip,
            Value::Array(cf) => {
                let [count, fp]: [Value; 2] =
                    cf.try_into().map_err(|_| Error::BadField("fingerprint"))?;
                let count = u32::try_from(int(Some(count), "count")?)
                    .map_err(|_| Error::BadField("count"))?;
                Part::Fingerprint {
                    count,
                    fp: int(Some(fp), "fingerprint")?,
                }
            }
            Value::Bytes(b) if b.len() % 6 == 0 => Part::Ids(
                b.chunks_exact(6)
                    .map(|c| u64::from_be_bytes([0, 0, c[0], c[1], c[2], c[3], c[4], c[5]]))
                    .collect(),
            ),
            _ => return Err(Error::BadField("part")),
        };
        out.ranges.push((bound, part));
    }
    let Some(Value::Bytes(need)) = need else {
        return Err(Error::BadField("need"));
    };
    if need.len() % 3 != 0 || need.len() / 3 > recon::MAX_NEED {
        return Err(Error::BadField("need"));
    }
    out.need = need
        .chunks_exact(3)
        .map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]]))
        .collect();
    Ok(out)
}

mod direct;
#[cfg(test)]
mod tests;
