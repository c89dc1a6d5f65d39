//! Signatures of a received frame checked on every core before the engine applies
//! it: the engine (single-threaded, sans-IO) then finds each record in the shared
//! [`Verified`] set instead of checking it again. Checking is the costliest step of
//! receiving records (about 50 µs each); a frame carries up to a few thousand.

use kith_protocol::record::{Record, Verified};
use kith_protocol::sync::wire::{Frame, MAX_FRAME_BYTES};

/// Records below this many are left to the engine: threads would cost more.
const MIN_RECORDS: usize = 64;

/// Checks the signatures of the records in `bytes` (a sync frame) on up to
/// `available_parallelism` threads, remembering in `verified` those that hold.
/// Anything that does not decode or verify is left for the engine to refuse, with
/// its reasons, exactly as it would without this step.
pub(crate) fn in_parallel(bytes: &[u8], verified: &Verified) {
    let Ok((frame, _)) = Frame::decode_lenient(bytes, MAX_FRAME_BYTES) else {
        return;
    };
    let records = match &frame {
        Frame::Gossip { records }
        | Frame::Request { records, .. }
        | Frame::Response { records, .. } => records,
    };
    if records.len() < MIN_RECORDS {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 {
        return;
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in records.chunks(chunk) {
            s.spawn(move || check(part, verified));
        }
    });
}

fn check(records: &[Record], verified: &Verified) {
    for r in records {
        // A failure is the engine's to report.
        let _ = verified.verify(r);
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use kith_protocol::clock::Hlc;
    use kith_protocol::record::{Body, ItemId, Space};

    use super::*;

    fn records(n: usize) -> Vec<Record> {
        let key = SigningKey::from_bytes(&[3; 32]);
        (0..n)
            .map(|i| {
                Record::sign(
                    Space::Roster,
                    ItemId([(i % 251) as u8; 16]),
                    Hlc {
                        wall_ms: i as u64 + 1,
                        counter: 0,
                    },
                    Body::Data(vec![1; 40]),
                    &key,
                )
            })
            .collect()
    }

    #[test]
    fn a_large_frame_is_checked_ahead_and_a_forged_record_is_left_out() {
        let mut records = records(200);
        records[17].signature[5] ^= 1;
        let bytes = Frame::Gossip { records }.encode();
        let verified = Verified::new();
        in_parallel(&bytes, &verified);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(verified.len(), if cores > 1 { 199 } else { 0 });
    }

    #[test]
    fn small_frames_and_garbage_are_left_to_the_engine() {
        let verified = Verified::new();
        in_parallel(
            &Frame::Gossip {
                records: records(5),
            }
            .encode(),
            &verified,
        );
        in_parallel(b"not a frame", &verified);
        assert!(verified.is_empty());
    }
}
