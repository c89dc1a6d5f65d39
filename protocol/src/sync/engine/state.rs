//! Where each device stands against this one: the summary of its records it last
//! made known (every reconciliation frame that compared something carries the
//! sender's, see [`crate::sync::wire::Frame`]) beside this device's own at that
//! moment, after applying the frame's records, so that `kith status` can say "up to
//! date", "5 behind" or "ahead by 2", and as of when. Nothing is assumed: an
//! exchange that ends without a summary (a peer of an earlier version, a refused
//! request) leaves the state as it was.

use std::fmt::Debug;

use super::{Engine, Now};
use crate::record::DeviceId;
use crate::sync::recon::Summary;

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
        self.set().summary()
    }

    /// Where `device` stood when this device last heard from it: kept across
    /// disconnections for as long as the engine runs.
    pub fn sync_state(&self, device: &DeviceId) -> Option<SyncState> {
        self.sync_states.get(device).copied()
    }

    /// Whether an exchange this device began with `device` is under way: what was
    /// heard from it may be from the middle of one.
    pub fn exchanging(&self, device: &DeviceId) -> bool {
        self.peers
            .values()
            .any(|p| p.device == Some(*device) && p.session.is_some())
    }

    /// Notes what the peer `p` holds (`theirs`, from a frame it sent, after this
    /// device applied that frame's records).
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
