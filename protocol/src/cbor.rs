//! CBOR helpers shared by the record, roster, key and frame codecs: encoding a
//! value, and strict decoding (size bound, nesting bound, nothing after the value).

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
