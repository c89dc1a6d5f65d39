//! Frames applied after the answer they allow has left. A frame whose
//! reconciliation message is empty (asks nothing: no range, no `need`, which is
//! what a kith peer sends once the key space is settled) and that says more is
//! coming is answered the same whatever this device holds, so with
//! [`Config::defer_frames`](super::Config::defer_frames) the answer (the next
//! request, or the response) is queued first and the frame's records are kept
//! aside for [`Engine::apply_deferred`], a step of their own that the driver runs
//! once it has handed the answer to the network: the peer builds, and the driver
//! checks, the next frame while this one is applied. Every input and command
//! applies a waiting frame first; the getters (`view`, `replica`, `summary`, ...)
//! do not, so a driver applies it before it reads or does anything else. What the
//! answering step's timers do (acknowledgements, held records released, sessions
//! with other peers) happens before the frame is applied, as it would for a frame
//! that arrived a moment later.

use std::fmt::Debug;

use super::{Engine, Now, recon, session};
use crate::record::Record;

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Whether a frame with `msg` and `records`, `more` to come, may wait until its
    /// answer has left: the driver allows it, the message is empty (so the answer
    /// does not depend on the records), more frames follow (otherwise there is
    /// nothing to overlap), and no record is of the roster (one could revoke the
    /// peer the answer goes to, or change who may author what) or a secret (the
    /// frames that follow would be checked ahead with the keyring as it was, and
    /// what the secret opens left for the device to open itself).
    pub(super) fn may_defer(&self, msg: &recon::Message, more: bool, records: &[Record]) -> bool {
        // Empty, not merely asking nothing: a reply to ranges past its budget ends
        // with a fingerprint of this device's set (`recon::Set::respond`).
        self.config.defer_frames
            && more
            && !records.is_empty()
            && msg.ranges.is_empty()
            && msg.need.is_empty()
            && !records.iter().any(session::opens_others)
    }

    /// Applies the records of a frame from `peer` (reconciliation message `msg`,
    /// `more` to come), or, when the frame asks nothing, keeps them to apply after
    /// its answer ([`Engine::may_defer`]).
    pub(super) fn apply_or_defer(
        &mut self,
        now: Now,
        peer: &P,
        msg: &recon::Message,
        more: bool,
        records: Vec<Record>,
    ) {
        if self.may_defer(msg, more, &records) {
            self.defer(now, peer.clone(), records);
        } else {
            self.apply(now, peer, records, true);
        }
    }

    /// Keeps `records` from `peer` to apply in [`Engine::apply_deferred`]; the
    /// payloads offered for them are kept until then.
    fn defer(&mut self, now: Now, peer: P, records: Vec<Record>) {
        // Every input and command applies a waiting frame first, so none waits
        // here; were one to, it is applied now rather than dropped.
        debug_assert!(self.deferred.is_none(), "a frame already waits");
        if let Some((earlier, waiting, noted)) = self.take_deferred() {
            self.apply(now, &earlier, waiting, true);
            if noted {
                self.applied_from(&earlier);
            }
        }
        self.stats.deferred_frames += 1;
        self.book.hold_offers(true);
        self.deferred = Some((peer, records, false));
    }

    /// Whether a frame waits to be applied.
    pub fn has_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Applies the frame whose answer was queued before it, as a step of its own
    /// (its outputs follow). The driver calls this after carrying out the outputs
    /// queued with the answer; it does nothing when no frame waits.
    pub fn apply_deferred(&mut self, now: Now) {
        if let Some((peer, records, noted)) = self.take_deferred() {
            self.apply(now, &peer, records, true);
            if noted {
                self.applied_from(&peer);
            }
            self.timers(now);
            self.finish_step(now);
        }
    }

    /// After a frame from `peer` was applied: where it stands against this device
    /// was noted when the frame came (it carried a summary), before its records
    /// were here. A frame that noted nothing leaves the state as it was.
    fn applied_from(&mut self, peer: &P) {
        let Some(device) = self.peers.get(peer).and_then(|p| p.device) else {
            return;
        };
        if self.sync_states.contains_key(&device) {
            let ours = self.summary();
            if let Some(state) = self.sync_states.get_mut(&device) {
                state.ours = ours;
            }
        }
    }

    fn take_deferred(&mut self) -> Option<(P, Vec<Record>, bool)> {
        let waiting = self.deferred.take();
        if waiting.is_some() {
            self.book.hold_offers(false);
        }
        waiting
    }
}
