//! Sync frames checked as they arrive, on the task of the connection that read
//! them, while the device's thread applies what came before: the signatures of a
//! frame's records go into the shared [`Verified`] set and its sealed records are
//! opened (see [`verify::in_parallel`]), with the roster and keyring the device last
//! made known here. The device's thread then finds that work done instead of
//! waiting on it. Whatever is not checked ahead (no permit free, a small frame, a
//! record by a device the roster known here lacks) the device checks as before,
//! so what is applied never depends on this step: only when the work is done.

use std::sync::{Arc, PoisonError, RwLock};

use kith_protocol::contacts::Opened;
use kith_protocol::record::Verified;
use kith_protocol::roster::Roster;
use kith_protocol::seal::Keyring;
use tokio::sync::Semaphore;

use super::verify;

/// Frames checked ahead at once, at most: each holds its frame and what it opened
/// (a few times the frame), so a peer's flood of frames is bounded here.
const PERMITS: usize = 2;

/// Frames smaller than this are left to the device's thread: too few records to
/// be worth a hand-over.
const MIN_FRAME_BYTES: usize = 16 * 1024;

/// What the device's thread made known: the roster (who may author) and the
/// keyring (what opens).
#[derive(Debug)]
struct Known {
    roster: Roster,
    keyring: Keyring,
}

/// The shared checker of sync frames ahead of the device (see the module).
#[derive(Debug)]
pub struct Ahead {
    verified: Verified,
    known: RwLock<Arc<Known>>,
    permits: Arc<Semaphore>,
}

/// A frame as read, and what checking it ahead opened: `None` when it was not
/// checked ahead (the device checks it itself).
pub type Checked = (Vec<u8>, Option<Vec<Opened>>);

impl Ahead {
    pub(super) fn new(verified: Verified, roster: Roster, keyring: Keyring) -> Self {
        Self {
            verified,
            known: RwLock::new(Arc::new(Known { roster, keyring })),
            permits: Arc::new(Semaphore::new(PERMITS)),
        }
    }

    /// Makes `roster` and `keyring` the ones frames are checked with, if they
    /// changed.
    pub(super) fn make_known(&self, roster: &Roster, keyring: &Keyring) {
        let known = self.known();
        if known.roster != *roster || known.keyring != *keyring {
            // A poisoned lock held only a snapshot: replacing it is safe.
            *self.known.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(Known {
                roster: roster.clone(),
                keyring: keyring.clone(),
            });
        }
    }

    fn known(&self) -> Arc<Known> {
        // A poisoned lock held only a snapshot: reading it is safe.
        Arc::clone(&self.known.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks the sync frame `bytes` on a blocking thread if a permit is free;
    /// hands back the bytes with what it opened.
    pub async fn check(&self, bytes: Vec<u8>) -> Checked {
        if bytes.len() < MIN_FRAME_BYTES {
            return (bytes, None);
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return (bytes, None);
        };
        let known = self.known();
        let verified = self.verified.clone();
        let shared = Arc::new(bytes);
        let frame = Arc::clone(&shared);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify::in_parallel(
                &frame,
                false,
                &known.roster,
                &verified,
                &known.keyring,
                None,
            )
        });
        let opened = task.await.ok();
        // The task is over (done or unwound): its copy of the frame is dropped, so
        // the bytes come back without a copy; should one remain, they are copied.
        let bytes = Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.to_vec());
        (bytes, opened)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use kith_protocol::clock::Hlc;
    use kith_protocol::record::{Body, DeviceId, ItemId, Record, Space};
    use kith_protocol::replica::Replica;
    use kith_protocol::sync::wire::Frame;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    /// A frame of `n` roster records, each signed by [`key`].
    fn frame(n: usize) -> Vec<u8> {
        let records = (0..n)
            .map(|i| {
                Record::sign(
                    Space::Roster,
                    ItemId([(i % 251) as u8; 16]),
                    Hlc {
                        wall_ms: i as u64 + 1,
                        counter: 0,
                    },
                    Body::Data(vec![1; 40]),
                    &key(),
                )
            })
            .collect();
        Frame::Gossip { records }.encode()
    }

    fn ahead(author: DeviceId) -> Ahead {
        let roster = Roster::build(author, &Replica::new());
        Ahead::new(Verified::new(), roster, Keyring::new())
    }

    fn cores() -> usize {
        std::thread::available_parallelism().map_or(1, usize::from)
    }

    #[tokio::test]
    async fn a_large_frame_is_checked_ahead_by_the_roster_made_known() {
        let me = DeviceId(key().verifying_key().to_bytes());
        let bytes = frame(400);
        assert!(bytes.len() >= MIN_FRAME_BYTES, "{} bytes", bytes.len());
        let checker = ahead(me);
        let (back, opened) = checker.check(bytes.clone()).await;
        assert_eq!(back, bytes, "the frame comes back as it was read");
        assert!(opened.is_some(), "checked ahead");
        let expected = if cores() > 1 { 400 } else { 0 };
        assert_eq!(checker.verified.len(), expected, "every record verified");
        // Under a roster that does not know the author, nothing is verified ahead:
        // the device's engine refuses or checks those records itself.
        let stranger = ahead(DeviceId([9; 32]));
        let (_, opened) = stranger.check(bytes.clone()).await;
        assert!(opened.is_some());
        assert!(stranger.verified.is_empty());
        // Made known later, the author's records are checked.
        let roster = Roster::build(me, &Replica::new());
        stranger.make_known(&roster, &Keyring::new());
        stranger.check(bytes).await;
        assert_eq!(stranger.verified.len(), expected);
    }

    #[tokio::test]
    async fn small_frames_and_frames_past_the_permits_are_left_to_the_device() {
        let me = DeviceId(key().verifying_key().to_bytes());
        let checker = ahead(me);
        let (_, opened) = checker.check(frame(5)).await;
        assert!(opened.is_none(), "a small frame");
        // Every permit taken (frames being checked): the next is not held back.
        let held = Arc::clone(&checker.permits)
            .try_acquire_many_owned(PERMITS as u32)
            .expect("free permits");
        let (_, opened) = checker.check(frame(400)).await;
        assert!(opened.is_none(), "no permit free");
        assert!(checker.verified.is_empty());
        drop(held);
        let (_, opened) = checker.check(frame(400)).await;
        assert!(opened.is_some(), "a permit free again");
    }
}
