//! Signatures of a received frame checked on every core before the engine applies
//! it: the engine (single-threaded, sans-IO) then finds each record in the shared
//! [`Verified`] set instead of checking it again. Checking is the costliest step of
//! receiving records (about 50 µs each); a frame carries up to a few thousand.

use std::sync::OnceLock;

use kith_protocol::contacts::Opened;
use kith_protocol::item::Payload;
use kith_protocol::record::{Body, Record, Verified};
use kith_protocol::replica::Authors;
use kith_protocol::seal::{Keyring, Opener};
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
///
/// The same threads open and parse the sealed records that verified, with
/// `keyring`: the payloads are returned for the view to take instead of opening
/// them on the engine's thread ([`kith_protocol::contacts::Book::offer`]), where
/// they were a fifth of a new device's time. One that does not open or parse is
/// left to the view, which finds why.
pub(crate) fn in_parallel(
    bytes: &[u8],
    gossip: bool,
    authors: &dyn Authors,
    verified: &Verified,
    keyring: &Keyring,
) -> Vec<Opened> {
    if cores() < 2 {
        return Vec::new();
    }
    let max = if gossip {
        MAX_GOSSIP_BYTES
    } else {
        MAX_FRAME_BYTES
    };
    let Ok((frame, _)) = Frame::decode_lenient(bytes, max) else {
        return Vec::new();
    };
    let (Frame::Gossip { records }
    | Frame::Request { records, .. }
    | Frame::Response { records, .. }) = frame;
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| authors.may_author_in(r.space, &r.author(), &r.version))
        .collect();
    if records.len() < MIN_RECORDS {
        return Vec::new();
    }
    let chunk = records.len().div_ceil(cores()).max(MIN_CHUNK);
    std::thread::scope(|s| {
        let mut threads = Vec::new();
        for part in records.chunks(chunk) {
            let spawned = std::thread::Builder::new()
                .name("kith-verify".into())
                .spawn_scoped(s, move || check(part, verified, keyring));
            match spawned {
                Ok(t) => threads.push(t),
                // No thread: the engine checks the rest itself.
                Err(_) => break,
            }
        }
        threads
            .into_iter()
            // A thread that panicked opened nothing for the view: it opens it.
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    })
}

fn check(records: &[Record], verified: &Verified, keyring: &Keyring) -> Vec<Opened> {
    let mut opener = Opener::new();
    let mut opened = Vec::new();
    for r in records {
        // A failure is the engine's to report.
        if verified.verify(r).is_err() {
            continue;
        }
        let (Some(node), Body::Sealed(sealed)) = (r.space.node(), &r.body) else {
            continue;
        };
        if let Ok(text) = opener.open(sealed, keyring)
            && let Ok(payload) = Payload::parse(&text)
            && payload.check_node(node).is_ok()
        {
            opened.push(Opened {
                item: r.item,
                version: r.version,
                signature: r.signature,
                payload,
            });
        }
    }
    opened
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
        in_parallel(&bytes, false, &Anyone, &verified, &Keyring::new());
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
            &Keyring::new(),
        );
        in_parallel(b"not a frame", true, &Anyone, &verified, &Keyring::new());
        // Records of authors the roster does not allow are the engine's to refuse.
        let bytes = Frame::Gossip {
            records: records(200),
        }
        .encode();
        in_parallel(&bytes, false, &Nobody, &verified, &Keyring::new());
        assert!(verified.is_empty());
    }
}
