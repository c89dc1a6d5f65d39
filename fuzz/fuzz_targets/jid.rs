//! RFC 7622 JIDs: any text is a JID or refused; normalising is idempotent, so a
//! normalised JID parses to itself.
#![no_main]

use kith_protocol::jid::BareJid;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(j) = BareJid::parse(text) {
        let again = BareJid::parse(&j.to_string()).expect("a normalised JID parses");
        assert_eq!(again, j);
    }
});
