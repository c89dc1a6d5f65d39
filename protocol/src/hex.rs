//! Lowercase hexadecimal, written without a formatter: device keys and ids are
//! written into every contact's stamps, so this is on the path of every merge.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The lowercase hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn writes_what_the_formatter_writes(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let slow: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            prop_assert_eq!(super::encode(&bytes), slow);
        }
    }
}
