//! The control protocol: any line is a request or a typed error; requests and
//! replies survive a JSON round trip.
#![no_main]

use kith_node::api::{Reply, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<Request>(data) {
        let line = serde_json::to_vec(&r).expect("a request writes");
        assert_eq!(
            serde_json::from_slice::<Request>(&line).expect("and reads back"),
            r
        );
    }
    if let Ok(r) = serde_json::from_slice::<Reply>(data) {
        let line = serde_json::to_vec(&r).expect("a reply writes");
        let _ = serde_json::from_slice::<Reply>(&line).expect("and reads back");
    }
});
