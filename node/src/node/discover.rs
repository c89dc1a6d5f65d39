//! Finding roster devices: mDNS sightings, the advertisement, re-dialling known
//! addresses, and the periodic housekeeping.

use std::time::{Duration, Instant};

use kith_protocol::item::NodeKind;
use kith_protocol::record::DeviceId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, warn};

use super::{Error, Node, tcp_port};
use crate::device::wall_now;
use crate::discovery::{self, Advert, Seen};
use crate::{net, store};

impl Node {
    /// Matches an advertisement against the roster's tags and dials the device.
    pub(super) fn on_seen(&mut self, seen: Seen) {
        if self.discovery.as_ref().and_then(|d| d.fullname()) == Some(seen.fullname.as_str()) {
            return;
        }
        let today = discovery::day(wall_now().0);
        let mut keys: Vec<Vec<u8>> = self
            .device
            .engine
            .keyring()
            .iter()
            .map(|s| s.value.as_bytes().to_vec())
            .collect();
        keys.push(self.device.account.genesis.to_vec());
        let found = self.allowed.iter().copied().find(|p| {
            let Some(d) = net::device_of(p) else {
                return false;
            };
            keys.iter().any(|k| {
                (today.saturating_sub(1)..=today + 1)
                    .any(|day| discovery::tag(k, day, &d) == seen.tag)
            })
        });
        let Some(peer) = found else {
            return;
        };
        debug!(%peer, "seen on mDNS at {:?}", seen.addrs);
        let first = self.seen.get(&peer).map_or_else(Instant::now, |s| s.0);
        self.seen.insert(peer, (first, seen.addrs.clone()));
        // Both sides see each other at once: the smaller peer id dials first.
        if !self.connected.contains_key(&peer)
            && (self.me < peer || first.elapsed() > Duration::from_secs(8))
        {
            self.dial(peer, seen.addrs);
        }
    }

    pub(super) fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, "dial: {e}");
        }
    }

    /// The tag this device advertises: from the current contacts secret, or the
    /// genesis key before it has one.
    pub(super) fn own_tag(&mut self) -> String {
        let me = self.device.id();
        let key = match self.device.engine.keyring().current(NodeKind::Contacts) {
            Some(s) => s.value.as_bytes().to_vec(),
            None => self.device.account.genesis.to_vec(),
        };
        discovery::tag(&key, discovery::day(wall_now().0), &me)
    }

    pub(super) fn readvertise(&mut self) {
        if self.discovery.is_none() {
            return;
        }
        let Some(p2p_port) = self.listen.iter().find_map(tcp_port) else {
            return;
        };
        let advert = Advert {
            label: self.device.account.label.clone(),
            srv_port: self.xmpp_port,
            p2p_port,
            tag: self.own_tag(),
        };
        if self.advert.as_ref().is_some_and(|a| a.tag == advert.tag) {
            return;
        }
        if let Some(d) = self.discovery.as_mut() {
            match d.advertise(&advert) {
                Ok(()) => info!("advertised {} on mDNS", d.fullname().unwrap_or("")),
                Err(e) => warn!("{e}"),
            }
        }
        self.advert = Some(advert);
    }

    pub(super) fn redial_known(&mut self) -> Result<(), Error> {
        let known = self.device.store.peers()?;
        for store::KnownPeer { device, addrs, .. } in known {
            let Some(peer) = net::peer_of(&DeviceId(device)) else {
                continue;
            };
            if !self.allowed.contains(&peer) || self.connected.contains_key(&peer) {
                continue;
            }
            let mut addrs: Vec<Multiaddr> = addrs
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect();
            if let Some((_, seen)) = self.seen.get(&peer) {
                addrs.extend(seen.iter().cloned());
            }
            if !addrs.is_empty() {
                self.dial(peer, addrs);
            }
        }
        let configured: Vec<Multiaddr> = self
            .configured
            .iter()
            .filter(|(_, p)| p.is_none_or(|p| !self.connected.contains_key(&p)))
            .map(|(a, _)| a.clone())
            .collect();
        for addr in configured {
            let _ = self.swarm.dial(addr);
        }
        Ok(())
    }

    pub(super) fn housekeeping(&mut self, redial: bool) -> Result<(), Error> {
        let open = self.device.store.has_open_invite(wall_now().0)?;
        self.pair_swarm.behaviour_mut().gate.set_pairing_open(open);
        let now = Instant::now();
        let late: Vec<PeerId> = self
            .pairing
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in late {
            self.pairing.remove(&p);
            let _ = self.pair_swarm.disconnect_peer_id(p);
        }
        self.pair_swarm.behaviour_mut().gate.expire(now);
        self.swarm.behaviour_mut().gate.expire(now);
        self.readvertise();
        // Between requests: a checkpoint inside an edit's commit would cost that edit.
        // A failure (a full disk) leaves the log as it is: nothing is lost, and the
        // next tick tries again.
        if let Err(e) = self.device.store.checkpoint_if_written() {
            warn!("checkpointing the store's log: {e}");
        }
        if redial {
            self.redial_known()?;
        }
        Ok(())
    }
}
