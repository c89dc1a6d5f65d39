//! Frames applied after the answer they allow has left. A frame that asks nothing
//! of this device (its reconciliation message wants no answer) and says more is
//! coming is answered the same whatever this device holds, so with
//! [`Config::defer_frames`](super::Config::defer_frames) the answer (the next
//! request, or the response) is queued first and the frame's records are applied
//! in a step of their own, [`Engine::apply_deferred`], which the driver runs once
//! it has carried out the answer: the peer builds, and the driver checks, the next
//! frame while this one is applied. Any other input or command applies a waiting
//! frame first, so nothing else ever sees the engine with one pending.

use std::fmt::Debug;

use super::{Engine, Now, recon};
use crate::record::{Record, Space};

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Whether a frame with `msg` and `records`, `more` to come, may wait until its
    /// answer has left: the driver allows it, the message asks nothing (so the
    /// answer does not depend on the records), more frames follow (otherwise there
    /// is nothing to overlap), and no record is of the roster (one could revoke the
    /// peer the answer goes to, or change who may author what).
    pub(super) fn may_defer(&self, msg: &recon::Message, more: bool, records: &[Record]) -> bool {
        self.config.defer_frames
            && more
            && !records.is_empty()
            && !msg.wants_answer()
            && records.iter().all(|r| r.space != Space::Roster)
    }

    /// Keeps `records` from `peer` to apply in [`Engine::apply_deferred`]; the
    /// payloads offered for them are kept until then.
    pub(super) fn defer(&mut self, now: Now, peer: P, records: Vec<Record>) {
        // Every input and command applies a waiting frame first, so none waits
        // here; were one to, it is applied now rather than dropped.
        debug_assert!(self.deferred.is_none(), "a frame already waits");
        if let Some((earlier, waiting)) = self.take_deferred() {
            self.apply(now, &earlier, waiting);
        }
        self.stats.deferred_frames += 1;
        self.book.hold_offers(true);
        self.deferred = Some((peer, records));
    }

    /// Whether a frame waits to be applied.
    pub fn has_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Applies the frame whose answer was queued before it, as a step of its own
    /// (its outputs follow). The driver calls this after carrying out the outputs
    /// queued with the answer; it does nothing when no frame waits.
    pub fn apply_deferred(&mut self, now: Now) {
        if let Some((peer, records)) = self.take_deferred() {
            self.apply(now, &peer, records);
            self.timers(now);
            self.finish_step(now);
        }
    }

    fn take_deferred(&mut self) -> Option<(P, Vec<Record>)> {
        let waiting = self.deferred.take();
        if waiting.is_some() {
            self.book.hold_offers(false);
        }
        waiting
    }
}
