//! Invite codes: any text decodes or is refused; a decoded code encodes back to a
//! code that decodes the same.
#![no_main]

use kith_node::pair::Code;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = if text.starts_with("kith1-") {
        text.to_owned()
    } else {
        format!("kith1-{text}")
    };
    if let Ok(code) = Code::decode(&text, 0) {
        assert_eq!(Code::decode(&code.encode(), 0), Ok(code));
    }
});
