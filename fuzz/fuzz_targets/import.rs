//! Imported documents: RFC 6121 rosters and XEP-0209 metacontacts. Any text is read
//! or refused; what is read is valid XEP-0510 contacts.
#![no_main]

use kith_protocol::import;
use kith_protocol::item::Payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for read in [import::roster(text), import::metacontacts(text)] {
        if let Ok(imported) = read {
            for c in imported.contacts {
                Payload::parse(&Payload::Contact(c).to_xml())
                    .expect("an imported contact is valid");
            }
        }
    }
});
