//! Revocation, told: a device the roster drops is sent the roster records (the
//! revocation among them) before it is cut off; one that was away is let in when
//! it comes back, told the same way, and cut off (at most once per
//! [`TELL_AGAIN_AFTER`]). A device that learns it was revoked stops syncing: it
//! disconnects, dials nobody, and (see [`crate::service`]) takes no more changes.

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
    /// up), and let in by the gate to be told, unless told lately.
    pub(super) fn update_revoked(&mut self) {
        let me = self.me;
        let roster = self.device.engine.roster();
        let now: std::collections::BTreeSet<PeerId> = roster
            .members()
            .filter(|m| m.revoked_at.is_some())
            .filter_map(|m| net::peer_of(&m.entry.device))
            .filter(|p| *p != me)
            .collect();
        for p in &now {
            if !self.revoked_peers.contains_key(p) {
                self.swarm.behaviour_mut().gossipsub.blacklist_peer(p);
                self.revoked_peers.insert(*p, None);
            }
        }
        self.revoked_peers.retain(|p, _| now.contains(p));
        let due: std::collections::BTreeSet<PeerId> = self
            .revoked_peers
            .iter()
            .filter(|(_, told)| told.is_none_or(|t| t.elapsed() >= TELL_AGAIN_AFTER))
            .map(|(p, _)| *p)
            .collect();
        self.swarm.behaviour_mut().gate.set_to_tell(due);
    }

    /// A revoked device came back (the gate let it in to be told): it is sent the
    /// revocation notice, then cut off when the notice is answered or fails.
    /// Whether it was one.
    pub(super) fn tell_returning(&mut self, peer: PeerId) -> bool {
        let Some(told) = self.revoked_peers.get(&peer) else {
            return false;
        };
        if told.is_some_and(|t| t.elapsed() < TELL_AGAIN_AFTER) {
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

    /// Sends `peer` a revocation notice (its connection closes when it is answered
    /// or fails, [`Node::notice_done`]), and notes when it was told.
    fn send_notice(&mut self, peer: PeerId, bytes: Vec<u8>) {
        let rid = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, net::SyncFrame::from(bytes));
        self.notices.insert(rid, peer);
        if let Some(told) = self.revoked_peers.get_mut(&peer) {
            // Told now: not again the moment it reconnects.
            *told = Some(Instant::now());
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
