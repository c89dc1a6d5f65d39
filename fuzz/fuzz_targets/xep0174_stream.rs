//! The XEP-0174 stream port: any bytes, in any two chunks, are cut into frames
//! without panic; every stanza is read as the PEP service reads it, and its error
//! answer (when refused) is well-formed XML.
#![no_main]

use kith_node::xmpp::stanza::{self, Incoming};
use kith_node::xmpp::stream::{Frame, Framer};
use kith_protocol::xml::{Element, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut framer = Framer::new();
    let at = usize::from(cut).min(rest.len());
    for chunk in [&rest[..at], &rest[at..]] {
        framer.push(chunk);
        while let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Stanza(el) => {
                    if let Incoming::Iq { id, query: Err(r) } = stanza::read(&el) {
                        let reply = stanza::error("iq", Some(&id), "me@host", None, &r).to_xml();
                        assert!(Element::parse(&reply, Limits::IMPORT).is_ok(), "{reply}");
                    }
                }
                Frame::Close | Frame::Error(_) => assert!(framer.is_done()),
                Frame::Header { .. } => {}
            }
        }
    }
});
