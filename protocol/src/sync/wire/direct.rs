//! The frame codec's direct half: writing a frame into one buffer, and reading the
//! shortest form every kith encoder writes straight from the bytes, without a CBOR
//! value tree (records are decoded from their slices). Anything the reader does not
//! take (another valid encoding, or garbage) is left to the general decoder in the
//! parent module, so the two accept exactly the same frames.

use super::recon::{self, Bound, Part};
use super::{FRAME_TAG_BASE, FRAME_VERSION, Frame};
use crate::cbor::{Reader, head, put_bytes};
use crate::record::{self, Record};

/// CBOR's simple values.
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;

impl Frame {
    /// About the length of the CBOR frame (exact for its records).
    pub(super) fn estimated_len(&self) -> usize {
        let (msg, records) = match self {
            Self::Gossip { records } => (None, records),
            Self::Request { msg, records, .. } | Self::Response { msg, records, .. } => {
                (Some(msg), records)
            }
        };
        let msg = msg.map_or(0, |m| {
            let ids: usize = m
                .ranges
                .iter()
                .map(|(_, p)| match p {
                    Part::Ids(ids) => 6 * ids.len(),
                    _ => 0,
                })
                .sum();
            32 * m.ranges.len() + ids + 3 * m.need.len() + 18
        });
        let records: usize = records
            .iter()
            .map(|r| {
                let n = r.encoded_len();
                crate::cbor::head_len(n as u64) + n
            })
            .sum();
        64 + msg + records
    }

    /// Writes the CBOR frame, as the value tree would (tested against it).
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        head(out, 6, FRAME_TAG_BASE + u64::from(FRAME_VERSION));
        match self {
            Self::Gossip { records } => {
                head(out, 4, 2);
                head(out, 0, 0);
                write_records(out, records);
            }
            Self::Request {
                salt,
                msg,
                records,
                more,
                have,
            } => {
                head(out, 4, 6 + u64::from(have.is_some()));
                head(out, 0, 1);
                head(out, 0, *salt);
                write_msg(out, msg);
                write_records(out, records);
                write_end(out, *more, *have);
            }
            Self::Response {
                msg,
                records,
                more,
                have,
            } => {
                head(out, 4, 5 + u64::from(have.is_some()));
                head(out, 0, 2);
                write_msg(out, msg);
                write_records(out, records);
                write_end(out, *more, *have);
            }
        }
    }

    /// Reads the CBOR frame `cbor` if it is in the shortest form kith writes; the
    /// records inside that do not decode are added to `skipped`. `None` leaves it to
    /// the general decoder (which also says what is wrong with a bad frame).
    pub(super) fn read(cbor: &[u8], skipped: &mut Vec<record::Error>) -> Option<Self> {
        let mut r = Reader(cbor);
        if r.arg(6)? != FRAME_TAG_BASE + u64::from(FRAME_VERSION) {
            return None;
        }
        let fields = r.arg(4)?;
        let kind = r.arg(0)?;
        let mut bad = Vec::new();
        let frame = match (kind, fields) {
            (0, 2) => Self::Gossip {
                records: read_records(&mut r, &mut bad)?,
            },
            (1, 6 | 7) => Self::Request {
                salt: r.arg(0)?,
                msg: read_msg(&mut r)?,
                records: read_records(&mut r, &mut bad)?,
                more: read_bool(&mut r)?,
                have: read_have(&mut r, fields == 7)?,
            },
            (2, 5 | 6) => Self::Response {
                msg: read_msg(&mut r)?,
                records: read_records(&mut r, &mut bad)?,
                more: read_bool(&mut r)?,
                have: read_have(&mut r, fields == 6)?,
            },
            _ => return None,
        };
        if !r.0.is_empty() {
            return None;
        }
        skipped.append(&mut bad);
        Some(frame)
    }
}

fn write_records(out: &mut Vec<u8>, records: &[Record]) {
    head(out, 4, records.len() as u64);
    for r in records {
        head(out, 2, r.encoded_len() as u64);
        r.encode_into(out);
    }
}

fn write_msg(out: &mut Vec<u8>, msg: &recon::Message) {
    head(out, 4, msg.ranges.len() as u64);
    for (b, p) in &msg.ranges {
        head(out, 4, 2);
        match b {
            Bound::End => out.push(NULL),
            Bound::Key(k) => put_bytes(out, 2, k),
        }
        match p {
            Part::Skip => head(out, 0, 0),
            Part::Fingerprint { count, fp } => {
                head(out, 4, 2);
                head(out, 0, u64::from(*count));
                head(out, 0, *fp);
            }
            Part::Ids(ids) => {
                head(out, 2, 6 * ids.len() as u64);
                for i in ids {
                    out.extend_from_slice(&i.to_be_bytes()[2..]);
                }
            }
        }
    }
    head(out, 2, 3 * msg.need.len() as u64);
    for n in &msg.need {
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
}

/// `more`, then the summary if there is one.
fn write_end(out: &mut Vec<u8>, more: bool, have: Option<recon::Summary>) {
    out.push(if more { TRUE } else { FALSE });
    if let Some(s) = have {
        head(out, 4, 2);
        head(out, 0, s.count);
        head(out, 0, s.fp);
    }
}

fn read_records(r: &mut Reader<'_>, skipped: &mut Vec<record::Error>) -> Option<Vec<Record>> {
    let n = usize::try_from(r.arg(4)?).ok()?;
    // A record that decodes takes well over 64 bytes: room for what can be there.
    let mut out = Vec::with_capacity(n.min(r.0.len() / 64));
    for _ in 0..n {
        match Record::decode(r.bytes()?) {
            Ok(rec) => out.push(rec),
            Err(e) => skipped.push(e),
        }
    }
    Some(out)
}

fn read_msg(r: &mut Reader<'_>) -> Option<recon::Message> {
    let n = usize::try_from(r.arg(4)?).ok()?;
    if n > recon::MAX_RANGES {
        return None;
    }
    let mut msg = recon::Message::default();
    msg.ranges.reserve(n.min(r.0.len()));
    for _ in 0..n {
        if r.arg(4)? != 2 {
            return None;
        }
        let bound = if r.0.first() == Some(&NULL) {
            r.byte()?;
            Bound::End
        } else {
            Bound::Key(r.fixed()?)
        };
        let part = match r.0.first()? >> 5 {
            0 if r.arg(0)? == 0 => Part::Skip,
            4 if r.arg(4)? == 2 => Part::Fingerprint {
                count: u32::try_from(r.arg(0)?).ok()?,
                fp: r.arg(0)?,
            },
            2 => {
                let ids = r.bytes()?;
                if ids.len() % 6 != 0 {
                    return None;
                }
                Part::Ids(
                    ids.chunks_exact(6)
                        .map(|c| u64::from_be_bytes([0, 0, c[0], c[1], c[2], c[3], c[4], c[5]]))
                        .collect(),
                )
            }
            _ => return None,
        };
        msg.ranges.push((bound, part));
    }
    let need = r.bytes()?;
    if need.len() % 3 != 0 || need.len() / 3 > recon::MAX_NEED {
        return None;
    }
    msg.need = need
        .chunks_exact(3)
        .map(|c| u32::from_be_bytes([0, c[0], c[1], c[2]]))
        .collect();
    Some(msg)
}

fn read_bool(r: &mut Reader<'_>) -> Option<bool> {
    match r.byte()? {
        TRUE => Some(true),
        FALSE => Some(false),
        _ => None,
    }
}

/// The summary at the end, when `present`; `Some(None)` when not.
fn read_have(r: &mut Reader<'_>, present: bool) -> Option<Option<recon::Summary>> {
    if !present {
        return Some(None);
    }
    if r.arg(4)? != 2 {
        return None;
    }
    Some(Some(recon::Summary {
        count: r.arg(0)?,
        fp: r.arg(0)?,
    }))
}
