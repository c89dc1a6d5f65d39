//! Signatures of a received frame checked on every core before the engine applies
//! it: the engine (single-threaded, sans-IO) then finds each record in the shared
//! [`Verified`] set instead of checking it again. Checking is the costliest step of
//! receiving records (about 50 µs each); a frame carries up to a few thousand.

use std::sync::OnceLock;

use kith_protocol::record::{Record, Verified};
use kith_protocol::replica::Authors;
use kith_protocol::sync::wire::{Frame, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES};

/// Records below this many are left to the engine: threads would cost more.
const MIN_RECORDS: usize = 64;

/// Fewest records one thread is given.
const MIN_CHUNK: usize = 32;

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Checks the signatures of the records in `bytes` (a sync frame, a gossip frame
/// when `gossip`) on up to as many threads as there are cores, remembering in
/// `verified` those that hold; only records `authors` allows are checked, as the
/// engine checks no others. Anything that does not decode or verify is left for
/// the engine to refuse, with its reasons, exactly as it would without this step;
/// so is everything when threads cannot be had.
pub(crate) fn in_parallel(bytes: &[u8], gossip: bool, authors: &dyn Authors, verified: &Verified) {
    if cores() < 2 {
        return;
    }
    let max = if gossip {
        MAX_GOSSIP_BYTES
    } else {
        MAX_FRAME_BYTES
    };
    let Ok((frame, _)) = Frame::decode_lenient(bytes, max) else {
        return;
    };
    let (Frame::Gossip { records }
    | Frame::Request { records, .. }
    | Frame::Response { records, .. }) = frame;
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| authors.may_author_in(r.space, &r.author(), &r.version))
        .collect();
    if records.len() < MIN_RECORDS {
        return;
    }
    let chunk = records.len().div_ceil(cores()).max(MIN_CHUNK);
    std::thread::scope(|s| {
        for part in records.chunks(chunk) {
            let spawned = std::thread::Builder::new()
                .name("kith-verify".into())
                .spawn_scoped(s, move || check(part, verified));
            if spawned.is_err() {
                // No thread: the engine checks the rest itself.
                break;
            }
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

    use kith_protocol::record::{DeviceId, Version};

    use super::*;

    struct Anyone;
    impl Authors for Anyone {
        fn may_author(&self, _: &DeviceId, _: &Version) -> bool {
            true
        }
    }

    struct Nobody;
    impl Authors for Nobody {
        fn may_author(&self, _: &DeviceId, _: &Version) -> bool {
            false
        }
    }

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
        records[17].parts_mut().signature[5] ^= 1;
        let bytes = Frame::Gossip { records }.encode();
        let verified = Verified::new();
        in_parallel(&bytes, false, &Anyone, &verified);
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
            true,
            &Anyone,
            &verified,
        );
        in_parallel(b"not a frame", true, &Anyone, &verified);
        // Records of authors the roster does not allow are the engine's to refuse.
        let bytes = Frame::Gossip {
            records: records(200),
        }
        .encode();
        in_parallel(&bytes, false, &Nobody, &verified);
        assert!(verified.is_empty());
    }
}
