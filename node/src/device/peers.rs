//! The devices this one has met, as the device keeps them: where each was reached
//! and where each stood when last heard from (both sealed in the store).

use kith_protocol::record::DeviceId;

use super::Device;
use crate::store;

impl Device {
    /// Keeps where `device` stands now for the next run (see
    /// [`kith_protocol::sync::Engine::restore_sync_state`]).
    pub fn keep_sync_state(&mut self, device: &DeviceId) -> Result<(), store::Error> {
        match self.engine.sync_state(device) {
            Some(state) => self
                .store
                .set_sync_state(&self.index, &device.0, &state.to_bytes()),
            None => Ok(()),
        }
    }

    /// Remembers addresses `device` was reached at (sealed in the store).
    pub fn remember_addrs(&mut self, device: &[u8; 32], addrs: &str) -> Result<(), store::Error> {
        self.store.set_peer_addrs(&self.index, device, addrs)
    }

    /// The addresses remembered for `device` (the ones that parse), in order.
    pub fn remembered_addrs(
        &self,
        device: &[u8; 32],
    ) -> Result<Vec<libp2p::Multiaddr>, store::Error> {
        Ok(self
            .known_peers()?
            .into_iter()
            .find(|p| p.device == *device)
            .map(|p| {
                p.addrs
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The devices met, with the addresses they were reached at.
    pub fn known_peers(&self) -> Result<Vec<store::KnownPeer>, store::Error> {
        self.store.peers(&self.index)
    }
}
