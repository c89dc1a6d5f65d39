//! Carrying out what the engine queued (gossip, requests, responses, and the
//! engine's events) after each step, and keeping the gate, gossipsub's blacklist
//! and the connections in step with the roster.

use std::collections::BTreeSet;

use kith_protocol::record::DeviceId;
use kith_protocol::sync::{Input, Output};
use libp2p::PeerId;
use tracing::debug;

use super::{Error, Node};
use crate::net;

impl Node {
    /// Carries out what the engine queued, and follows roster changes.
    pub(super) fn flush(&mut self) -> Result<(), Error> {
        loop {
            // The roster first: a device just revoked is blacklisted before the
            // records sealed under the new secrets are published (it could not open
            // them, and would show its contacts as waiting for a secret).
            self.update_roster();
            let mut failed = Vec::new();
            while let Some(out) = self.device.net.pop_front() {
                match out {
                    Output::Publish(bytes) => self.gossip(bytes),
                    Output::Request { to, id, bytes } => {
                        if self.connected.contains_key(&to) {
                            let rid = self
                                .swarm
                                .behaviour_mut()
                                .sync
                                .send_request(&to, bytes.into());
                            self.out_requests.insert(rid, id);
                        } else {
                            failed.push(id);
                        }
                    }
                    Output::Respond { id, bytes } => {
                        if let Some(ch) = self.inbound.remove(&id) {
                            let _ = self
                                .swarm
                                .behaviour_mut()
                                .sync
                                .send_response(ch, bytes.into());
                        }
                    }
                    Output::Persist(_)
                    | Output::Secrets(_)
                    | Output::Collect { .. }
                    | Output::Event(_) => {}
                }
            }
            while let Some(event) = self.device.events.pop_front() {
                self.on_engine_event(event)?;
            }
            self.tell_changes();
            self.update_roster();
            if std::mem::take(&mut self.readvertise_due) {
                self.readvertise();
            }
            if failed.is_empty() {
                return Ok(());
            }
            for id in failed {
                self.device.input(Input::RequestFailed { id })?;
            }
        }
    }

    /// Keeps the gate, gossipsub's blacklist and connections in step with the roster.
    pub(super) fn update_roster(&mut self) {
        if self.device.engine.revoked_by().is_some() {
            return self.follow_own_revocation();
        }
        if std::mem::take(&mut self.revoked_here) {
            tracing::info!("this device is in the roster again (its revocation was set aside)");
        }
        let roster = self.device.engine.roster();
        let genesis = roster.genesis();
        let devices: BTreeSet<DeviceId> = roster
            .active()
            .map(|m| m.entry.device)
            // The genesis device is a member before its entry arrives.
            .chain(roster.is_active(&genesis).then_some(genesis))
            .collect();
        // Runs after every event: the peer ids (a key decompression each) are
        // derived only when the devices changed.
        if devices == self.allowed_devices {
            return;
        }
        self.update_revoked();
        self.tell_roster(&self.allowed_devices, &devices);
        let me = self.me;
        let allowed: BTreeSet<PeerId> = devices
            .iter()
            .filter_map(net::peer_of)
            .filter(|p| *p != me)
            .collect();
        self.allowed_devices = devices;
        let behaviour = self.swarm.behaviour_mut();
        behaviour.gate.set_allowed(allowed.clone());
        for p in allowed.difference(&self.allowed) {
            behaviour.gossipsub.remove_blacklisted_peer(p);
            // A revocation set aside: it scores as any device again.
            behaviour.gossipsub.set_application_score(p, 0.0);
        }
        let gone: Vec<PeerId> = self.allowed.difference(&allowed).copied().collect();
        for p in gone {
            self.reached_at.remove(&p);
            debug!(peer = %p, "no longer in the roster: disconnecting");
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&p);
            // A connected one is told first, then cut off.
            if !self.tell_revoked(p) {
                let _ = self.swarm.disconnect_peer_id(p);
            }
        }
        self.allowed = allowed;
    }
}
