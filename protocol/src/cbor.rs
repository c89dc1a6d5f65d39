//! CBOR helpers shared by the record, roster, key and frame codecs: encoding a
//! value, strict decoding (size bound, nesting bound, nothing after the value), and
//! for the direct codecs the shortest-form heads written and read without a value
//! tree ([`head`], [`put_bytes`], [`Reader`]).

use ciborium::value::Value;

/// Why bytes are not one bounded CBOR value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// More bytes than allowed.
    TooLarge(usize),
    /// Not CBOR, truncated, or nested too deep.
    Malformed(String),
    /// Bytes after the value.
    Trailing(usize),
}

/// The length of the head of a CBOR item whose argument is `n`.
pub(crate) fn head_len(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Writes the head of a CBOR item of `major` type with argument `n`, shortest (as
/// ciborium writes it).
pub(crate) fn head(out: &mut Vec<u8>, major: u8, n: u64) {
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

/// Writes a byte (`major` 2) or text (`major` 3) string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, major: u8, b: &[u8]) {
    head(out, major, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads CBOR items in their shortest form, straight from the bytes (`None` for
/// anything else: the caller leaves it to the general decoder).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    /// The next byte.
    pub(crate) fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        Some(a)
    }

    /// The argument of an item of `major` type, in its shortest form.
    pub(crate) fn arg(&mut self, major: u8) -> Option<u64> {
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

    /// A byte string.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.arg(2)?).ok()?;
        self.take(n)
    }

    /// A byte string of exactly `N` bytes.
    pub(crate) fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes()?.try_into().ok()
    }
}

/// Encodes `value`.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("writing CBOR to a Vec cannot fail");
    out
}

/// Decodes exactly one value of at most `max` bytes, nested at most `depth` deep.
pub(crate) fn decode(bytes: &[u8], max: usize, depth: usize) -> Result<Value, ReadError> {
    if bytes.len() > max {
        return Err(ReadError::TooLarge(bytes.len()));
    }
    let mut rest = bytes;
    let value = ciborium::de::from_reader_with_recursion_limit(&mut rest, depth)
        .map_err(|e| ReadError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ReadError::Trailing(rest.len()));
    }
    Ok(value)
}
