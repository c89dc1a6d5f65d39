//! Passing on what a reconciliation brought. Gossip is passed on by the
//! transport (gossipsub forwards a message through its mesh), but records a
//! device receives in a reconciliation reach it alone: in a star or a chain of
//! configured addresses, the devices connected only through it would wait for
//! its next reconciliation with them (the interval, 30 s by default). So once
//! such records changed something here and a short quiet followed, the
//! reconciliations with the other peers are brought forward, at most one per
//! peer per [`GOSSIP_LOST_GAP_MS`](super::GOSSIP_LOST_GAP_MS) (the gap word of
//! lost gossip keeps too: the two share it). Records held until their time (a
//! clock ahead) are passed on to every peer when released. A peer that has the
//! records already finds nothing to exchange in one round trip.

use std::collections::BTreeSet;
use std::fmt::Debug;

use super::{Engine, Now};

/// Milliseconds without further changes by reconciliation before they are passed
/// on: a reconciliation that brings many frames passes them on once, at its end.
pub const RELAY_QUIET_MS: u64 = 200;

/// Longest a change by reconciliation waits to be passed on while more keep
/// coming (a long first sync): at most this long after the first.
pub const RELAY_MAX_WAIT_MS: u64 = 2_000;

/// Changes by reconciliation not yet passed on.
#[derive(Debug)]
pub(super) struct Pending<P> {
    /// The peers whose records changed something.
    from: BTreeSet<P>,
    /// Whether records from no peer in particular changed something.
    anyone: bool,
    /// When the first of them came.
    first_ms: u64,
    /// When they are passed on.
    pub(super) due_ms: u64,
}

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Notes that records `peer` sent in a reconciliation changed something here;
    /// `None` for records from no peer in particular (held until their time and
    /// released now), which go to every peer.
    pub(super) fn note_relay(&mut self, now: Now, peer: Option<&P>) {
        let pending = self.relay.get_or_insert_with(|| Pending {
            from: BTreeSet::new(),
            anyone: false,
            first_ms: now.mono_ms,
            due_ms: now.mono_ms,
        });
        match peer {
            Some(p) => {
                pending.from.insert(p.clone());
            }
            None => pending.anyone = true,
        }
        pending.due_ms = now
            .mono_ms
            .saturating_add(RELAY_QUIET_MS)
            .min(pending.first_ms.saturating_add(RELAY_MAX_WAIT_MS));
    }

    /// Brings forward the reconciliations with every peer but the one the changes
    /// came from (every peer when they came from several: each may lack what the
    /// others sent), once they are due.
    pub(super) fn relay_due(&mut self, now: Now) {
        let Some(pending) = self.relay.take_if(|p| p.due_ms <= now.mono_ms) else {
            return;
        };
        let only = (pending.from.len() == 1 && !pending.anyone)
            .then(|| pending.from.first().cloned())
            .flatten();
        for (p, peer) in &mut self.peers {
            if only.as_ref() == Some(p) || peer.device.is_some_and(|d| !self.roster.is_active(&d)) {
                continue;
            }
            peer.bring_forward(now);
        }
    }
}
