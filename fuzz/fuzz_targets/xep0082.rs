//! XEP-0082 date-times: any text parses or is refused (a stamp with a multibyte
//! character once panicked); what parses prints in the canonical form and reads
//! back to the same instant.
#![no_main]

use kith_protocol::clock::WallTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = WallTime::parse_xep0082(text) {
        let printed = t.to_xep0082();
        assert_eq!(WallTime::parse_xep0082(&printed), Ok(t), "{printed}");
    }
});
