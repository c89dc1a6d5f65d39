//! Revocation, told: a device the roster drops is sent the roster records (the
//! revocation among them) before it is cut off, and a device that learns it was
//! revoked stops syncing: it disconnects, dials nobody, and (see
//! [`crate::service`]) takes no more changes.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::{debug, info};

use super::Node;
use crate::net;

/// How long gossip waits for a revoked device to be cut off, at least (the deadline
/// is looked at on the node's 2 s tick, so about 7 s at most).
const CUT_OFF_WITHIN: Duration = Duration::from_secs(5);

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
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, net::SyncFrame::from(bytes));
        self.notices.insert(rid, peer);
        debug!(%peer, "told it was revoked");
        true
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
    ) -> bool {
        match self.notices.remove(rid) {
            Some(peer) => {
                let _ = self.swarm.disconnect_peer_id(peer);
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
