//! The XEP-0174 stream port: any bytes, in any chunking, get answers that are
//! well-formed pieces of a stream, and the session ends on garbage; never a panic.
#![no_main]

use kith_node::xmpp::Session;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut session = Session::new("kith-fuzz@host");
    let at = usize::from(cut).min(rest.len());
    let mut written = 0usize;
    for chunk in [&rest[..at], &rest[at..]] {
        for line in session.feed(chunk) {
            written += line.len();
        }
    }
    // Answers are bounded by what came in (one reply per stanza, plus the header).
    assert!(written <= 64 * 1024 + rest.len() * 64, "{written} bytes for {} in", rest.len());
});
