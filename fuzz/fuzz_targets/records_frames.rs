//! CBOR records and sync frames, and what travels inside them: any bytes decode or
//! are refused; a record that decodes encodes within the limits and decodes back to
//! the same record; a frame that decodes encodes back to the same frame; a reconciliation
//! message that decodes is answered without panic; roster entries, key deliveries
//! and acknowledgements decode or are refused.
#![no_main]

use kith_protocol::record::Record;
use kith_protocol::sync::gc;
use kith_protocol::sync::recon::{Key, Set};
use kith_protocol::sync::wire::{self, Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::decode(data) {
        let back = r
            .encode_checked()
            .expect("a decoded record is within the limits");
        assert_eq!(Record::decode(&back), Ok(r));
    }
    if let Ok((frame, _)) = Frame::decode_lenient(data, wire::MAX_FRAME_BYTES) {
        let msg = match &frame {
            Frame::Request { msg, .. } | Frame::Response { msg, .. } => Some(msg),
            Frame::Gossip { .. } => None,
        };
        if let Some(msg) = msg {
            let set = Set::new((0u8..64).map(|i| {
                let mut item = [0u8; 16];
                item[0] = i.wrapping_mul(37);
                (Key { space: i % 5, item }, u128::from(i) * 0x9E37_79B9)
            }));
            let _ = set.respond(msg, 7);
        }
        let again = Frame::decode_lenient(&frame.encode(), wire::MAX_FRAME_BYTES)
            .expect("a decoded frame encodes back");
        assert_eq!(again.0, frame);
    }
    let _ = kith_protocol::roster::Entry::decode(data);
    let _ = kith_protocol::keys::Delivery::decode(data);
    let _ = gc::decode(data);
});
