//! What the engine keeps of each connected peer: its device, the exchange under
//! way, what it is owed and was sent, and when the next reconciliation with it
//! is due (after failures, or brought forward).

use super::{Config, GOSSIP_LOST_GAP_MS, Now, RETRY_AFTER_MS, Session, owed, sent};
use crate::record::DeviceId;

#[derive(Debug, Default)]
pub(super) struct Peer {
    /// The device behind the peer, as its transport authenticated it.
    pub(super) device: Option<DeviceId>,
    pub(super) session: Option<Session>,
    /// Keys whose records this peer still has to be sent in the current exchange.
    pub(super) owed: owed::Owed,
    /// Records sent to this peer lately (see [`super::RESEND_AFTER_MS`]).
    pub(super) sent: sent::Sent,
    pub(super) next_recon_ms: u64,
    /// A bulk change was left to reconciliation: reconcile again as soon as the
    /// current exchange ends.
    pub(super) catch_up: bool,
    /// When word of gossip lost to this peer last brought a reconciliation forward.
    pub(super) lost_at_ms: Option<u64>,
    /// Requests to this peer that failed in a row (see [`RETRY_AFTER_MS`]).
    pub(super) failures: u32,
}

impl Peer {
    /// Notes a failed request: the next reconciliation is tried after
    /// [`RETRY_AFTER_MS`], doubled for each earlier failure in a row, at most the
    /// reconciliation interval, plus a jitter (from `draw`) of at most the
    /// configured one and the delay itself, so that devices that lost a peer
    /// together do not all try it again at once.
    pub(super) fn failed(&mut self, now: Now, config: &Config, draw: u64) {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(20);
        let delay = RETRY_AFTER_MS
            .saturating_mul(1 << doublings)
            .min(config.recon_interval_ms);
        let jitter = match config.recon_jitter_ms.min(delay) {
            0 => 0,
            span => draw % span,
        };
        self.next_recon_ms = now.mono_ms.saturating_add(delay).saturating_add(jitter);
    }

    /// Brings a reconciliation with the peer forward, as something sent to it was
    /// lost: at once, or right after the one under way. A peer that stays slow is
    /// reported again and again (every heartbeat of the transport): at most one
    /// starts per [`GOSSIP_LOST_GAP_MS`], so it is not loaded further; a report
    /// within the gap brings one to the gap's end.
    pub(super) fn bring_forward(&mut self, now: Now) {
        let at = match self.lost_at_ms {
            // Within the gap: postponed to its end, not dropped.
            Some(t) if now.mono_ms < t.saturating_add(GOSSIP_LOST_GAP_MS) => {
                t.saturating_add(GOSSIP_LOST_GAP_MS)
            }
            _ => {
                self.lost_at_ms = Some(now.mono_ms);
                now.mono_ms
            }
        };
        if self.session.is_some() {
            // The session may have passed what was lost: another follows.
            self.catch_up = true;
        } else {
            self.next_recon_ms = self.next_recon_ms.min(at);
        }
    }
}
