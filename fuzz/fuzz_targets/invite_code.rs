//! Invite codes: any text parses or is refused; a parsed code prints back (alone and
//! with its addresses) to text that parses the same.
#![no_main]

use kith_node::pair::Code;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(code) = Code::parse(text) {
        assert_eq!(Code::parse(&code.long()).as_ref(), Ok(&code));
        assert_eq!(
            Code::parse(&code.short()).map(|c| c.nameplate()),
            Ok(code.nameplate())
        );
    }
});
