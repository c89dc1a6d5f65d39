//! The XML tree and XEP-0510 payloads: any bytes parse or are refused with a typed
//! error, never a panic; what parses writes out and reads back the same; an
//! `<encrypted/>` element parses or is refused.
#![no_main]

use kith_protocol::item::Payload;
use kith_protocol::seal::Sealed;
use kith_protocol::xml::{Element, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(el) = Element::parse(text, Limits::ITEM) {
        let again = Element::parse(&el.to_xml(), Limits::ITEM).expect("what was read writes back");
        assert_eq!(again, el, "the tree survives a round trip");
    }
    if let Ok(p) = Payload::parse(text) {
        let back = Payload::parse(&p.to_xml()).expect("a payload writes back");
        assert_eq!(back, p, "the payload survives a round trip");
    }
    let _ = Sealed::parse(text);
});
