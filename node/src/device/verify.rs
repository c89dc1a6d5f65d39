//! Signatures of a received frame checked on every core before the engine applies
//! it: the engine (single-threaded, sans-IO) then finds each record in the shared
//! [`Verified`] set instead of checking it again. Checking is the costliest step of
//! receiving records (about 50 µs each); a frame carries up to a few thousand.

use kith_protocol::contacts::Opened;
use kith_protocol::item::Payload;
use kith_protocol::record::{Body, Record, Verified};
use kith_protocol::replica::{Authors, Replica};
use kith_protocol::seal::{Keyring, Opener};
use kith_protocol::sync::wire::{Frame, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES};

use super::spread::cores;

/// Records below this many are left to the engine: threads would cost more.
const MIN_RECORDS: usize = 64;

/// Bytes of opened text the threads hand the view per byte of the frame, at most.
const OPENED_PER_FRAME_BYTE: usize = 4;

/// Fewest records one thread is given.
const MIN_CHUNK: usize = 32;

/// Checks the signatures of the records in `bytes` (a sync frame, a gossip frame
/// when `gossip`) on up to as many threads as there are cores, remembering in
/// `verified` those that hold; only records `authors` allows are checked, as the
/// engine checks no others. Anything that does not decode or verify is left for
/// the engine to refuse, with its reasons, exactly as it would without this step;
/// so is everything when threads cannot be had.
///
/// The same threads open and parse the sealed records that verified, with
/// `keyring` (those newer than what `replica` holds, when there is one): the
/// payloads are returned for the view to take instead of opening them on the
/// engine's thread ([`kith_protocol::contacts::Book::offer`]), where
/// they were a fifth of a new device's time. One that does not open or parse is
/// left to the view, which finds why.
///
/// Also says whether `authors` allowed every record the frame holds (when not, a
/// roster that changed since may allow more: the caller may check the frame again
/// with it). The threads run at `priority`.
pub(crate) fn in_parallel(
    priority: Threads,
    bytes: &[u8],
    gossip: bool,
    authors: &dyn Authors,
    verified: &Verified,
    keyring: &Keyring,
    replica: Option<&Replica>,
) -> (Vec<Opened>, bool) {
    if cores() < 2 {
        return (Vec::new(), true);
    }
    let max = if gossip {
        MAX_GOSSIP_BYTES
    } else {
        MAX_FRAME_BYTES
    };
    let Ok((frame, _)) = Frame::decode_lenient(bytes, max) else {
        return (Vec::new(), true);
    };
    let (Frame::Gossip { records }
    | Frame::Request { records, .. }
    | Frame::Response { records, .. }) = frame;
    let held = records.len();
    let records: Vec<Record> = records
        .into_iter()
        .filter(|r| authors.may_author_in(r.space, &r.author(), &r.version))
        .collect();
    let every_author = records.len() == held;
    if records.len() < MIN_RECORDS {
        return (Vec::new(), every_author);
    }
    // Only records newer than what the replica holds of their item are opened: a
    // duplicate, a stale version or a replayed frame costs a lookup, as before.
    let fresh: Vec<bool> = records
        .iter()
        .map(|r| {
            replica.is_none_or(|replica| {
                replica
                    .get(r.space, &r.item)
                    .is_none_or(|held| held.version < r.version)
            })
        })
        .collect();
    let chunk = records.len().div_ceil(cores()).max(MIN_CHUNK);
    // What is opened is held until the view's next update: at most a few times
    // the frame's own size, shared between the threads; the rest the view opens.
    let budget = bytes.len() * OPENED_PER_FRAME_BYTE / records.len().div_ceil(chunk);
    let opened = std::thread::scope(|s| {
        let mut threads = Vec::new();
        for (part, fresh) in records.chunks(chunk).zip(fresh.chunks(chunk)) {
            let spawned = std::thread::Builder::new()
                .name("kith-verify".into())
                .spawn_scoped(s, move || {
                    if priority == Threads::Niced {
                        yield_to_device();
                    }
                    check(part, fresh, verified, keyring, budget)
                });
            match spawned {
                Ok(t) => threads.push(t),
                // No thread: the engine checks the rest itself.
                Err(_) => break,
            }
        }
        threads
            .into_iter()
            // What a thread that stopped did not hand over, the view opens itself.
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    });
    (opened, every_author)
}

/// At what priority the checking threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// As the caller's: the device's thread waits for them.
    AsTheDevice,
    /// Lowered by [`CHECK_NICE`]: they check a frame ahead while the device's
    /// thread applies the one before.
    Niced,
}

/// How much less of a core a checking thread gets than the device's own (a nice
/// value). A frame checked ahead is verified while the device's thread applies the
/// one before, and that thread is the longer of the two: at the same priority, two
/// checking threads on two cores take a third of its core; niced, they take what it
/// leaves. A frame the device's thread waits for (not checked ahead) is checked at
/// its priority ([`Threads::AsTheDevice`]).
const CHECK_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority by [`CHECK_NICE`], to 19 at most (on Linux
/// the nice value is a thread's own). A thread may always lower its own priority;
/// where it cannot, it runs as it was.
fn yield_to_device() {
    // SAFETY: getpriority and setpriority read and write no memory of this
    // process; `who` 0 is the calling thread. (getpriority's -1 may be an error:
    // the nice value set is then 9, still lower than the device's thread's.)
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + CHECK_NICE).min(19));
    }
}

fn check(
    records: &[Record],
    fresh: &[bool],
    verified: &Verified,
    keyring: &Keyring,
    mut budget: usize,
) -> Vec<Opened> {
    let mut opener = Opener::new();
    let mut opened = Vec::new();
    // In one batch (`Verified::verify_all`); a failure is the engine's to report.
    let checked = verified.verify_all(records);
    for ((r, &fresh), checked) in records.iter().zip(fresh).zip(checked) {
        if checked.is_err() || !fresh {
            continue;
        }
        let (Some(node), Body::Sealed(sealed)) = (r.space.node(), &r.body) else {
            continue;
        };
        if let Ok(text) = opener.open(sealed, keyring)
            && let Some(left) = budget.checked_sub(text.len())
            && let Ok(payload) = Payload::parse(&text)
            && payload.check_node(node).is_ok()
        {
            budget = left;
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
pub(super) mod tests {
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

    /// `n` roster records signed by the key of bytes `[3; 32]`.
    pub(crate) fn records(n: usize) -> Vec<Record> {
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
    fn a_checking_thread_lowers_its_own_priority_and_no_other() {
        // SAFETY (the three calls): getpriority reads no memory of this process.
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let inside = std::thread::spawn(|| {
            yield_to_device();
            unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
        })
        .join()
        .expect("the thread ran");
        assert_eq!(inside, (before + CHECK_NICE).min(19));
        assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, before);
    }

    #[test]
    fn a_large_frame_is_checked_ahead_and_a_forged_record_is_left_out() {
        let mut records = records(200);
        records[17].parts_mut().signature[5] ^= 1;
        let bytes = Frame::Gossip { records }.encode();
        let verified = Verified::new();
        in_parallel(
            Threads::AsTheDevice,
            &bytes,
            false,
            &Anyone,
            &verified,
            &Keyring::new(),
            Some(&Replica::new()),
        );
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(verified.len(), if cores > 1 { 199 } else { 0 });
    }

    #[test]
    fn small_frames_and_garbage_are_left_to_the_engine() {
        let verified = Verified::new();
        in_parallel(
            Threads::AsTheDevice,
            &Frame::Gossip {
                records: records(5),
            }
            .encode(),
            true,
            &Anyone,
            &verified,
            &Keyring::new(),
            Some(&Replica::new()),
        );
        in_parallel(
            Threads::AsTheDevice,
            b"not a frame",
            true,
            &Anyone,
            &verified,
            &Keyring::new(),
            Some(&Replica::new()),
        );
        // Records of authors the roster does not allow are the engine's to refuse.
        let bytes = Frame::Gossip {
            records: records(200),
        }
        .encode();
        in_parallel(
            Threads::AsTheDevice,
            &bytes,
            false,
            &Nobody,
            &verified,
            &Keyring::new(),
            Some(&Replica::new()),
        );
        assert!(verified.is_empty());
    }

    /// Sealed contacts of a large frame are opened on the threads that check them:
    /// each as the view would read it, none for a forged record, a record the
    /// replica already holds, or one sealed with a secret this device lacks.
    #[test]
    fn sealed_records_that_verify_are_opened_on_the_threads() {
        use kith_protocol::clock::WallTime;
        use kith_protocol::item::{Contact, Identity, NodeKind};
        use kith_protocol::seal::{Secret, seal};
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let secret = Secret::generate(NodeKind::Contacts, WallTime(1), &mut rng);
        let other = Secret::generate(NodeKind::Contacts, WallTime(1), &mut rng);
        let mut keyring = Keyring::new();
        keyring.insert(secret.clone());
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut records: Vec<Record> = (0..100u8)
            .map(|i| {
                let contact = Payload::Contact(Contact {
                    name: Some(format!("Contact {i}")),
                    identities: vec![Identity::new("jid", &format!("c{i}@x.lit")).unwrap()],
                    ..Contact::default()
                });
                let with = if i == 7 { &other } else { &secret };
                let sealed = seal(&contact.to_xml(), with, 256, &mut rng);
                Record::sign(
                    Space::Contacts,
                    ItemId([i; 16]),
                    Hlc {
                        wall_ms: 1,
                        counter: 0,
                    },
                    Body::Sealed(sealed),
                    &key,
                )
            })
            .collect();
        records[17].parts_mut().signature[5] ^= 1;
        let mut replica = Replica::new();
        replica.insert(records[23].clone());
        let bytes = Frame::Gossip {
            records: records.clone(),
        }
        .encode();
        let (opened, _) = in_parallel(
            Threads::AsTheDevice,
            &bytes,
            false,
            &Anyone,
            &Verified::new(),
            &keyring,
            Some(&replica),
        );
        let items: Vec<u8> = opened.iter().map(|o| o.item.0[0]).collect();
        let expected: Vec<u8> = (0..100).filter(|i| ![7, 17, 23].contains(i)).collect();
        assert_eq!(items, expected);
        for o in &opened {
            let r = &records[usize::from(o.item.0[0])];
            assert_eq!((o.version, o.signature), (r.version, r.signature));
            let Body::Sealed(s) = &r.body else {
                unreachable!("sealed above")
            };
            let text = Opener::new().open(s, &keyring).unwrap();
            assert_eq!(o.payload, Payload::parse(&text).unwrap());
        }
    }
}
