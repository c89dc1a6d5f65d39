//! Where each device stands against this one: the summary of its records it last
//! made known (every reconciliation frame that compared something carries the
//! sender's, see [`crate::sync::wire::Frame`]) beside this device's own at that
//! moment, after applying the frame's records, so that `kith status` can say "up to
//! date", "5 behind" or "ahead by 2", and as of when. Nothing is assumed: an
//! exchange that ends without a summary (a peer of an earlier version, a refused
//! request) leaves the state as it was.

use std::fmt::Debug;

use super::{Engine, Now};
use crate::record::{DeviceId, ItemId, Space};
use crate::sync::recon::{self, Summary};

/// A device's records against this device's, as of one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    /// What the device held.
    pub theirs: Summary,
    /// What this device held then.
    pub ours: Summary,
    /// When that was (this device's clock).
    pub at: Now,
}

/// How a device's records stood against this device's ([`SyncState::relation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The same records.
    UpToDate,
    /// Fewer records than this device: this many.
    Behind(u64),
    /// More records than this device: this many.
    Ahead(u64),
    /// As many records, not the same ones (a change on each side not yet crossed).
    Differs,
}

impl SyncState {
    /// Bytes of [`SyncState::to_bytes`].
    pub const BYTES: usize = 40;

    /// The state to keep across runs: both summaries and the wall time, big-endian
    /// (the monotonic time means nothing in another run).
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        for (i, v) in [
            self.theirs.count,
            self.theirs.fp,
            self.ours.count,
            self.ours.fp,
            self.at.wall.0,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        b
    }

    /// Reads [`SyncState::to_bytes`] (monotonic time 0); `None` for other bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; Self::BYTES] = bytes.try_into().ok()?;
        let at = |i: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_be_bytes(v)
        };
        Some(Self {
            theirs: Summary {
                count: at(0),
                fp: at(1),
            },
            ours: Summary {
                count: at(2),
                fp: at(3),
            },
            at: Now {
                mono_ms: 0,
                wall: crate::clock::WallTime(at(4)),
            },
        })
    }

    /// How the two stood.
    pub fn relation(&self) -> Relation {
        let (t, o) = (self.theirs, self.ours);
        if t == o {
            Relation::UpToDate
        } else if t.count < o.count {
            Relation::Behind(o.count - t.count)
        } else if t.count > o.count {
            Relation::Ahead(t.count - o.count)
        } else {
            Relation::Differs
        }
    }
}

impl<P: Ord + Clone + Debug> Engine<P> {
    /// What this device holds, in brief.
    pub fn summary(&mut self) -> Summary {
        self.set_summary()
    }

    /// What this device holds, in brief, but for the records of `keys` (space and
    /// item): what a device holding all the rest, and none of those, would say.
    pub fn summary_without(&mut self, keys: impl IntoIterator<Item = (Space, ItemId)>) -> Summary {
        self.set()
            .summary_without(keys.into_iter().map(|(space, item)| recon::Key {
                space: space.code(),
                item: item.0,
            }))
    }

    /// Where `device` stood when this device last heard from it: kept across
    /// disconnections for as long as the engine runs.
    pub fn sync_state(&self, device: &DeviceId) -> Option<SyncState> {
        self.sync_states.get(device).copied()
    }

    /// Where `device` stood when it was last heard from in an earlier run (kept by
    /// the application, [`SyncState::to_bytes`]); what this run heard wins.
    pub fn restore_sync_state(&mut self, device: DeviceId, state: SyncState) {
        self.sync_states.entry(device).or_insert(state);
    }

    /// Whether an exchange this device began with `device` is under way: what was
    /// heard from it may be from the middle of one.
    pub fn exchanging(&self, device: &DeviceId) -> bool {
        self.peers
            .values()
            .any(|p| p.device == Some(*device) && p.session.is_some())
    }

    /// Whether an exchange this device began with any peer is under way: more of
    /// it is on its way.
    pub fn is_exchanging(&self) -> bool {
        self.peers.values().any(|p| p.session.is_some())
    }

    /// Notes what the peer `p` holds (`theirs`, from a frame it sent, after this
    /// device applied that frame's records; for a frame answered before it is
    /// applied, before, and `ours` is noted again once it is, `deferred`).
    pub(super) fn heard(&mut self, now: Now, p: &P, theirs: Option<Summary>) {
        let Some(theirs) = theirs else { return };
        let Some(device) = self.peers.get(p).and_then(|peer| peer.device) else {
            return;
        };
        let ours = self.summary();
        self.sync_states.insert(
            device,
            SyncState {
                theirs,
                ours,
                at: now,
            },
        );
        // A frame of `p` waiting to be applied: noted with it, noted again after.
        if let Some((q, _, noted)) = self.deferred.as_mut()
            && q == p
        {
            *noted = true;
        }
    }

    /// [`super::Input::CheckNow`]: every connected peer not in an exchange is reconciled
    /// with at once (an in-sync check is one round trip, a padded 2 KiB frame each way).
    pub(super) fn check_now(&mut self, now: Now) {
        for peer in self.peers.values_mut() {
            if peer.session.is_none() {
                peer.next_recon_ms = peer.next_recon_ms.min(now.mono_ms);
            }
        }
    }
}
