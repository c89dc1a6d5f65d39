//! The devices this one has met, as the device keeps them: where each was reached
//! and where each stood when last heard from (both sealed in the store).

use kith_protocol::record::DeviceId;
use libp2p::Multiaddr;

use super::Device;
use crate::store;

impl Device {
    /// Keeps where `device` stands now for the next run (see
    /// [`kith_protocol::sync::Engine::restore_sync_state`]); a frame waiting to be
    /// applied is applied first, so that what is kept counts it.
    pub fn keep_sync_state(&mut self, device: &DeviceId) -> Result<(), store::Error> {
        self.apply_deferred()?;
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

    /// The addresses remembered for `device`.
    pub fn remembered_addrs(&self, device: &[u8; 32]) -> Result<Remembered, store::Error> {
        Ok(self
            .known_peers()?
            .into_iter()
            .find(|p| p.device == *device)
            .map(|p| Remembered::parse(&p.addrs))
            .unwrap_or_default())
    }

    /// The devices met, with the addresses they were reached at.
    pub fn known_peers(&self) -> Result<Vec<store::KnownPeer>, store::Error> {
        self.store.peers(&self.index)
    }
}

/// The addresses remembered for a device, as stored: those this device's own dials
/// reached it at, most recent first, then the others (what it announced), written
/// as one line with `|` between the two parts (a line without one, as earlier
/// versions wrote, is all others). A reader that splits the line on spaces and
/// parses multiaddrs gets them all in order, the `|` left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// Where dials of this device reached it.
    pub reached: Vec<Multiaddr>,
    /// The others.
    pub rest: Vec<Multiaddr>,
}

impl Remembered {
    /// Reads a stored line; what does not parse is left out.
    pub fn parse(line: &str) -> Self {
        let parse = |part: &str| -> Vec<Multiaddr> {
            part.split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect()
        };
        match line.split_once('|') {
            Some((reached, rest)) => Self {
                reached: parse(reached),
                rest: parse(rest),
            },
            None => Self {
                reached: Vec::new(),
                rest: parse(line),
            },
        }
    }

    /// The stored line.
    pub fn line(&self) -> String {
        let words = |v: &[Multiaddr]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let mut all = words(&self.reached);
        all.push("|".to_owned());
        all.extend(words(&self.rest));
        all.join(" ")
    }

    /// Every address, in order.
    pub fn all(&self) -> impl Iterator<Item = &Multiaddr> {
        self.reached.iter().chain(&self.rest)
    }
}
