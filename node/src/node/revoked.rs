//! Revocation, told: a device the roster drops is sent the roster records (the
//! revocation among them) before it is cut off; one that was away is let in when
//! it comes back, told the same way, and cut off (at most once per
//! [`TELL_AGAIN_AFTER`]). A device that learns it was revoked stops syncing: it
//! disconnects, dials nobody, and (see [`crate::service`]) takes no more changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::{debug, info};

use super::Node;
use crate::net;

/// How long gossip waits for a revoked device to be cut off, at least (the deadline
/// is looked at on the node's 2 s tick, so about 7 s at most).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(5);
/// How long a revoked device that came back and was told waits before the gate
/// lets it in to be told again (it may not have stored the notice: a crash).
pub(super) const TELL_AGAIN_AFTER: Duration = Duration::from_secs(600);
/// How long after its revocation a revoked device not told yet is dialled.
pub(super) const DIAL_REVOKED_FOR: Duration = Duration::from_secs(14 * 24 * 3600);

/// A revoked device of the roster, as this node tells it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Revoked {
    /// When it was revoked (Unix ms, the revocation's stamp).
    at_ms: u64,
    /// When it was last sent a notice in this run.
    told: Option<Instant>,
}

impl Revoked {
    /// Whether it may be let in (or told) now.
    fn due(&self) -> bool {
        self.told.is_none_or(|t| t.elapsed() >= TELL_AGAIN_AFTER)
    }
}

impl Node {
    /// Sends `peer`, just dropped from the roster, a revocation notice when it is
    /// connected; its connection is closed when the notice is answered or fails.
    /// Whether one was sent (otherwise the caller disconnects it at once).
    pub(super) fn tell_revoked(&mut self, peer: PeerId) -> bool {
        if !self.connected.contains_key(&peer) {
            return false;
        }
        // Only a device the roster says was revoked (one whose entry was set aside
        // with its author's is simply cut off: it was never told it was in).
        let Some(bytes) =
            net::device_of(&peer).and_then(|d| self.device.engine.revocation_notice(&d))
        else {
            return false;
        };
        // Gossip waits until it is gone: what the revocation reseals under the new
        // secrets is not for it (it could not open it, and would show its contacts
        // as waiting for a secret).
        self.cutting.insert(peer, Instant::now() + CUT_OFF_WITHIN);
        self.send_notice(peer, bytes);
        debug!(%peer, "told it was revoked");
        true
    }

    /// The revoked devices of the roster, kept out of gossipsub (blacklisted before
    /// any connects: gossipsub exchanges subscriptions as soon as a connection is
    /// up; scored far below its graylist once one does, [`net::REVOKED_SCORE`]),
    /// and let in by the gate to be told, unless told lately.
    pub(super) fn update_revoked(&mut self) {
        if self.device.engine.revoked_by().is_some() {
            // This device was revoked itself: it tells nobody anything.
            return;
        }
        let me = self.me;
        let roster = self.device.engine.roster();
        let now: BTreeMap<PeerId, u64> = roster
            .members()
            .filter_map(|m| Some((net::peer_of(&m.entry.device)?, m.revoked_at?.hlc.wall_ms)))
            .filter(|(p, _)| *p != me)
            .collect();
        for (p, at_ms) in &now {
            if !self.revoked_peers.contains_key(p) {
                self.swarm.behaviour_mut().gossipsub.blacklist_peer(p);
                self.revoked_peers.insert(
                    *p,
                    Revoked {
                        at_ms: *at_ms,
                        told: None,
                    },
                );
            }
        }
        self.revoked_peers.retain(|p, _| now.contains_key(p));
        let due: BTreeSet<PeerId> = self
            .revoked_peers
            .iter()
            .filter(|(_, r)| r.due())
            .map(|(p, _)| *p)
            .collect();
        self.swarm.behaviour_mut().gate.set_to_tell(due);
    }

    /// Revoked devices not told yet and revoked less than [`DIAL_REVOKED_FOR`] ago:
    /// dialled with the roster's devices (a lost phone is not dialled for ever).
    pub(super) fn untold(&self, peer: &PeerId) -> bool {
        self.revoked_peers.get(peer).is_some_and(|r| {
            r.told.is_none()
                && crate::device::wall_now().0
                    < r.at_ms.saturating_add(DIAL_REVOKED_FOR.as_millis() as u64)
        })
    }

    /// A revoked device came back (the gate let it in to be told): it is sent the
    /// revocation notice, then cut off when the notice is answered or fails.
    /// Whether it was one.
    pub(super) fn tell_returning(&mut self, peer: PeerId) -> bool {
        if !self.revoked_peers.get(&peer).is_some_and(Revoked::due) {
            return false;
        }
        let Some(bytes) =
            net::device_of(&peer).and_then(|d| self.device.engine.revocation_notice(&d))
        else {
            return false;
        };
        self.send_notice(peer, bytes);
        info!("{} came back: told it was revoked", self.who(&peer));
        self.update_revoked();
        true
    }

    /// Whether a revocation notice to `peer` is in flight.
    pub(super) fn telling(&self, peer: &PeerId) -> bool {
        self.notices.values().any(|p| p == peer)
    }

    /// Sends `peer` a revocation notice (its connection closes when it is answered
    /// or fails, [`Node::notice_done`]), and notes when it was told. Gossipsub sends
    /// it nothing meanwhile and ignores what it sends.
    fn send_notice(&mut self, peer: PeerId, bytes: Vec<u8>) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, net::REVOKED_SCORE);
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, net::SyncFrame::from(bytes));
        self.notices.insert(rid, peer);
        if let Some(r) = self.revoked_peers.get_mut(&peer) {
            // Told now: not again the moment it reconnects.
            r.told = Some(Instant::now());
        }
    }

    /// Publishes a gossip frame, or holds it while a revoked device is being cut off.
    pub(super) fn gossip(&mut self, bytes: Vec<u8>) {
        if !self.cutting.is_empty() {
            self.held.push(bytes);
            return;
        }
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            // Reconciliation delivers what gossip could not.
            debug!("gossip not sent: {e}");
        }
    }

    /// `peer`'s last connection closed, or (with `None`) time passed: the devices
    /// cut off, or past [`CUT_OFF_WITHIN`], no longer hold gossip back.
    pub(super) fn cut_off(&mut self, peer: Option<&PeerId>) {
        if let Some(p) = peer {
            self.cutting.remove(p);
        }
        let now = Instant::now();
        let late: Vec<PeerId> = self
            .cutting
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in late {
            self.cutting.remove(&p);
            let _ = self.swarm.disconnect_peer_id(p);
        }
        if self.cutting.is_empty() {
            for bytes in std::mem::take(&mut self.held) {
                self.gossip(bytes);
            }
        }
    }

    /// A revocation notice was answered, or failed: its peer is cut off. Whether
    /// `rid` was one.
    pub(super) fn notice_done(
        &mut self,
        rid: &libp2p::request_response::OutboundRequestId,
        answered: bool,
    ) -> bool {
        match self.notices.remove(rid) {
            Some(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
                if !answered && let Some(r) = self.revoked_peers.get_mut(&peer) {
                    // Not told after all: it may be reached (or come back) again.
                    r.told = None;
                }
                true
            }
            None => false,
        }
    }

    /// This device's roster says it was revoked: it says so once, disconnects from
    /// every device, and dials none again ([`Node::dials`]). The gate stays as the
    /// roster says: should the revocation be set aside (its author was revoked
    /// before it), a device that still counts this one active can reach it, and
    /// the next roster change finds it in again.
    pub(super) fn follow_own_revocation(&mut self) {
        if self.revoked_here {
            return;
        }
        if let Some(v) = self.device.engine.revoked_by() {
            info!(
                "this device was revoked by {} at {}: it no longer syncs with the account",
                self.device_name(&v.device),
                crate::service::iso(v.hlc.wall_ms)
            );
        }
        self.revoked_here = true;
        let peers: Vec<PeerId> = self.connected.keys().copied().collect();
        for p in peers {
            let _ = self.swarm.disconnect_peer_id(p);
        }
    }

    /// Whether this node dials other devices: not once it was revoked.
    pub(super) fn dials(&self) -> bool {
        !self.revoked_here
    }
}
