//! Sync frames checked as they arrive, on the task of the connection that read
//! them, while the device's thread applies what came before: the signatures of a
//! frame's records go into the shared [`Verified`] set and its sealed records are
//! opened (see [`verify::in_parallel`]), with the roster and keyring the device last
//! made known here. The device's thread then finds that work done instead of
//! waiting on it. A frame not checked ahead (no permit free, a small frame, or a
//! record by a device the roster known here does not allow, which the device's own
//! roster may) the device checks itself as before, so what is applied never
//! depends on this step: only when the work is done.

use std::sync::{Arc, PoisonError, RwLock};

use kith_protocol::contacts::Opened;
use kith_protocol::record::Verified;
use kith_protocol::roster::Roster;
use kith_protocol::seal::Keyring;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::verify;

/// Frames checked ahead (or waiting their turn to be) and not yet taken by the
/// device, at most: each holds what it opened (a few times the frame) until then,
/// so what a peer's flood of frames makes this step hold is bounded here; frames
/// past it wait as bytes, as before.
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
    /// Frames are checked one after the other, in the order they came: each is
    /// checked on every core, so two at once would only finish both late, while
    /// the device's thread waits for the first.
    turn: Arc<Mutex<()>>,
}

/// What checking a frame ahead opened, holding its permit until the device takes
/// it ([`Prechecked::take`]) or it is dropped.
#[derive(Debug)]
pub struct Prechecked {
    opened: Vec<Opened>,
    permit: OwnedSemaphorePermit,
}

impl Prechecked {
    /// The payloads opened, and the permit: the caller keeps it until it has
    /// handed them over.
    pub fn take(self) -> (Vec<Opened>, OwnedSemaphorePermit) {
        (self.opened, self.permit)
    }
}

/// A frame as read, and what checking it ahead opened: `None` when it was not
/// checked ahead (the device checks it itself).
pub(crate) type Checked = (Vec<u8>, Option<Prechecked>);

impl Ahead {
    pub(super) fn new(verified: Verified, roster: Roster, keyring: Keyring) -> Self {
        Self {
            verified,
            known: RwLock::new(Arc::new(Known { roster, keyring })),
            permits: Arc::new(Semaphore::new(PERMITS)),
            turn: Arc::new(Mutex::new(())),
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

    /// Checks the sync frame `bytes` on a blocking thread if a permit is free, once
    /// the frames that came before it are checked; hands back the bytes with what
    /// it opened.
    pub async fn check(&self, bytes: Vec<u8>) -> Checked {
        if bytes.len() < MIN_FRAME_BYTES {
            return (bytes, None);
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return (bytes, None);
        };
        // In turn (tokio's lock is first come, first served); the roster and keyring
        // are read once it is this frame's, so as late as can be. The turn goes
        // with the work, as the permit does: a check whose reader went away ends
        // before the next begins.
        let turn = Arc::clone(&self.turn).lock_owned().await;
        let known = self.known();
        let verified = self.verified.clone();
        let shared = Arc::new(bytes);
        let frame = Arc::clone(&shared);
        // The permit goes with the work: a check whose reader went away (a closed
        // stream) still holds it until the blocking thread is done.
        let task = tokio::task::spawn_blocking(move || {
            let checked = verify::in_parallel(
                verify::Threads::Niced,
                &frame,
                false,
                &known.roster,
                &verified,
                &known.keyring,
                None,
            );
            drop(turn);
            (checked, permit)
        });
        let done = task.await.ok();
        // The task is over (done or unwound): its copy of the frame is dropped, so
        // the bytes come back without a copy; should one remain, they are copied.
        let bytes = Arc::try_unwrap(shared).unwrap_or_else(|shared| shared.to_vec());
        let prechecked = match done {
            Some(((opened, true), permit)) => Some(Prechecked { opened, permit }),
            // Some author was not allowed by the roster known here: the device
            // checks the frame with its own (the permit is freed here).
            _ => None,
        };
        (bytes, prechecked)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use kith_protocol::record::DeviceId;
    use kith_protocol::replica::Replica;
    use kith_protocol::sync::wire::Frame;

    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    /// A frame of `n` roster records, each signed by [`key`].
    fn frame(n: usize) -> Vec<u8> {
        Frame::Gossip {
            records: verify::tests::records(n),
        }
        .encode()
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
        // Under a roster that does not allow the author, nothing is verified ahead
        // and the frame is handed over unchecked: the device checks it with its
        // own roster, which may allow more.
        let stranger = ahead(DeviceId([9; 32]));
        let (_, opened) = stranger.check(bytes.clone()).await;
        if cores() > 1 {
            assert!(opened.is_none(), "left to the device");
        }
        assert!(stranger.verified.is_empty());
        // Made known later, the author's records are checked.
        let roster = Roster::build(me, &Replica::new());
        stranger.make_known(&roster, &Keyring::new());
        let (_, opened) = stranger.check(bytes).await;
        assert!(opened.is_some());
        assert_eq!(stranger.verified.len(), expected);
    }

    /// A frame waits for the one before it to be checked: nothing of it is checked
    /// while that one holds the turn, and it is checked once the turn is free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_are_checked_one_after_the_other() {
        let me = DeviceId(key().verifying_key().to_bytes());
        let checker = Arc::new(ahead(me));
        // The turn of a frame being checked.
        let turn = Arc::clone(&checker.turn).lock_owned().await;
        let next = tokio::spawn({
            let checker = Arc::clone(&checker);
            async move { checker.check(frame(400)).await }
        });
        // Until the permit is taken, the next frame has not reached its turn.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while checker.permits.available_permits() == PERMITS {
            assert!(
                std::time::Instant::now() < deadline,
                "the check never began"
            );
            tokio::task::yield_now().await;
        }
        assert!(checker.verified.is_empty(), "checked out of turn");
        assert!(!next.is_finished());
        drop(turn);
        let (_, opened) = next.await.expect("the check ends");
        assert!(opened.is_some(), "checked in its turn");
        let expected = if cores() > 1 { 400 } else { 0 };
        assert_eq!(checker.verified.len(), expected);
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
        // What was checked ahead holds its permit until the device takes it and
        // lets it go: no more than the permits wait for the device at once.
        let mut waiting = Vec::new();
        for _ in 0..PERMITS {
            let (_, opened) = checker.check(frame(400)).await;
            waiting.push(opened.expect("a permit free"));
        }
        let (_, opened) = checker.check(frame(400)).await;
        assert!(
            opened.is_none(),
            "every permit held by a frame not taken yet"
        );
        let (_, permit) = waiting.pop().expect("checked").take();
        drop(permit);
        let (_, opened) = checker.check(frame(400)).await;
        assert!(opened.is_some(), "a permit free again");
    }
}
