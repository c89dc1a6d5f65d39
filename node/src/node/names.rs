//! The node's log for people: devices by their names (`phone (57b6…)`) rather than
//! libp2p peer ids, who joined and who revoked whom, and how many contact changes
//! arrived from which device.

use std::collections::BTreeSet;

use kith_protocol::record::DeviceId;
use libp2p::PeerId;
use tracing::info;

use super::Node;
use crate::net;

impl Node {
    /// A device as a person knows it: its name in the roster and the start of its
    /// id, `phone (57b6…)`; one outside the roster by its id alone.
    pub(super) fn device_name(&self, device: &DeviceId) -> String {
        let id = device.to_string();
        let short = id.get(..4).unwrap_or(&id);
        match self.device.engine.roster().get(device) {
            // A name is the device's own choice: no control characters in the log,
            // and nothing that turns the direction of the rest of the line.
            Some(m) => format!(
                "{} ({short}…)",
                m.entry.name.replace(kith_protocol::text::breaks_line, " ")
            ),
            None => format!("device {short}…"),
        }
    }

    /// [`Node::device_name`] for a peer, or its peer id when it is no device.
    pub(super) fn who(&self, peer: &PeerId) -> String {
        match net::device_of(peer) {
            Some(d) => self.device_name(&d),
            None => format!("peer {peer}"),
        }
    }

    /// Logs who joined and who was revoked (by whom) or left, between the active
    /// devices `before` and `after`. At start (`before` empty) nothing is news.
    pub(super) fn tell_roster(&self, before: &BTreeSet<DeviceId>, after: &BTreeSet<DeviceId>) {
        if before.is_empty() {
            return;
        }
        for d in after.difference(before) {
            let relay = self
                .device
                .engine
                .roster()
                .get(d)
                .is_some_and(|m| m.entry.role == kith_protocol::roster::Role::Relay);
            let as_relay = if relay { " as a relay" } else { "" };
            info!("{} joined{as_relay}", self.device_name(d));
        }
        for d in before.difference(after) {
            let gone = self.device_name(d);
            match self
                .device
                .engine
                .roster()
                .get(d)
                .and_then(|m| m.revoked_at)
            {
                Some(v) if v.device == self.device.id() => info!("this device revoked {gone}"),
                Some(v) => info!("{} revoked {gone}", self.device_name(&v.device)),
                None => info!("{gone} left the roster"),
            }
        }
    }

    /// Logs how many contacts were changed since the last call, by the device that
    /// changed them, each contact once (this device's own changes, its commands'
    /// and its XMPP clients', are not logged).
    pub(super) fn tell_changes(&mut self) {
        let authored = std::mem::take(&mut self.device.authored);
        if authored.is_empty() {
            return;
        }
        let me = self.device.id().to_string();
        let roster = self.device.engine.roster();
        for (author, contacts) in authored {
            if author == me {
                continue;
            }
            let n = contacts.len();
            let by = roster
                .members()
                .find(|m| m.entry.device.to_string() == author)
                .map(|m| m.entry.device);
            let by = by.map_or_else(|| format!("device {author}"), |d| self.device_name(&d));
            let s = if n == 1 { "" } else { "s" };
            info!("{n} contact{s} changed by {by}");
        }
    }
}
