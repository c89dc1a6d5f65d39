//! Finding roster devices: mDNS sightings, the advertisement and the guise it
//! shows (rotated with the listeners it names), re-dialling known addresses, and the
//! periodic housekeeping.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kith_protocol::item::NodeKind;
use kith_protocol::record::DeviceId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, warn};

use super::listen::{bind_stream, listen_moving, tcp_port};
use super::{Error, Node};
use crate::device::{Device, wall_now};
use crate::discovery::{self, Advert, Calendar, Guise, Seen};
use crate::{net, store, xmpp};

/// How many remembered IP addresses of one device are tried with its guise's ports.
const MAX_REDIAL_IPS: usize = 4;
/// How many of the newest contacts secrets its guise's ports are worked out under.
const REDIAL_SECRETS: usize = 3;
/// Most addresses remembered for one device.
pub(super) const MAX_REMEMBERED: usize = 8;
/// Most addresses of one device that dials reached this run, kept to be
/// remembered first.
pub(super) const MAX_REACHED: usize = 3;

/// What to remember of where a device listens, most useful first: the addresses
/// this device's dials reached it at in this run (most recent first), then the
/// first [`MAX_REACHED`] remembered before (the runs before put theirs there), then
/// what the device announces, then the rest remembered before; each once, at most
/// [`MAX_REMEMBERED`]. What a device announces may not reach it from here (behind a
/// port forward it announces its private address), and what a dial reached it at
/// stays until fresher addresses push it out.
pub(super) fn remembered(
    reached: &[Multiaddr],
    announced: &[&Multiaddr],
    before: &[Multiaddr],
) -> Vec<Multiaddr> {
    let mut out: Vec<Multiaddr> = Vec::with_capacity(MAX_REMEMBERED);
    let (first, rest) = before.split_at(before.len().min(MAX_REACHED));
    for a in reached
        .iter()
        .chain(first)
        .chain(announced.iter().copied())
        .chain(rest)
    {
        if out.len() == MAX_REMEMBERED {
            break;
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out
}

/// The guise `device` wears today: from its current contacts secret, or the genesis
/// key before it has one (what its own devices try when they see a tag).
pub(super) fn guise(device: &Device, calendar: &Calendar) -> Guise {
    let key = match device.engine.keyring().current(NodeKind::Contacts) {
        Some(s) => s.value.as_bytes().to_vec(),
        None => device.account.genesis.to_vec(),
    };
    Guise::of(&key, calendar.today(), &device.id())
}

impl Node {
    /// Matches an advertisement against the roster's tags and dials the device.
    pub(super) fn on_seen(&mut self, seen: Seen) {
        if !self.dials()
            || self.discovery.as_ref().and_then(|d| d.fullname()) == Some(seen.fullname.as_str())
        {
            return;
        }
        let today = self.calendar.today();
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
        // Through the relay devices too, in the same dial and among the first
        // addresses tried (libp2p dials 8 at once): a direct address that a router
        // silently drops would otherwise hold the relayed way back until it times
        // out. Under the same backoff as `dial_through_relays`.
        let mut addrs = addrs;
        let circuits = self.circuits_due(&peer);
        let at = addrs.len().min(6);
        addrs.splice(at..at, circuits);
        if addrs.is_empty() {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, "dial: {e}");
        }
    }

    /// Opens the pairing gate while an invitation is open (or ended lately, to be
    /// told so), closes it otherwise. The caller re-advertises (the nameplates).
    pub(super) fn update_pairing(&mut self) {
        let now = wall_now().0;
        self.device.invitations.prune(now);
        let open = !self.device.invitations.nameplates(now).is_empty();
        self.pair_swarm.behaviour_mut().gate.set_pairing_open(open);
    }

    /// Puts on the guise of the day (after a day change or a rotation of the secrets)
    /// and advertises it: the instance and the stream's address change, and the
    /// listeners on default ports move to the guise's ports (connections stay).
    pub(super) fn readvertise(&mut self) {
        let guise = guise(&self.device, &self.calendar);
        if guise != self.guise {
            self.put_on(guise);
        }
        if self.discovery.is_none() {
            return;
        }
        let Some(p2p_port) = self.p2p_port else {
            return;
        };
        let advert = Advert {
            label: self.guise.label.clone(),
            host: self.guise.host.clone(),
            srv_port: self.xmpp_port,
            p2p_port,
            tag: self.guise.tag.clone(),
            pairing: self.pairing_advert(),
        };
        if self.advert.as_ref() == Some(&advert) {
            return;
        }
        if let Some(d) = self.discovery.as_mut() {
            match d.advertise(&advert) {
                Ok(()) => info!("advertised {} on mDNS", d.fullname().unwrap_or("")),
                Err(e) => {
                    // Not remembered as advertised: the next tick tries again.
                    warn!("{e}");
                    return;
                }
            }
        }
        self.advert = Some(advert);
    }

    /// The pairing port and the nameplates to advertise, while there are any.
    fn pairing_advert(&self) -> Option<(u16, Vec<String>)> {
        let plates = self.device.invitations.nameplates(wall_now().0);
        // The IPv4 listener's: joiners dial the advertised IPv4 addresses.
        let port = self
            .pair_listen
            .iter()
            .filter(|a| a.iter().any(|p| matches!(p, Protocol::Ip4(_))))
            .find_map(tcp_port)?;
        (!plates.is_empty()).then_some((port, plates))
    }

    fn put_on(&mut self, guise: Guise) {
        debug!("new guise {}", guise.instance());
        let mut moved = false;
        for (old, addr) in std::mem::take(&mut self.moving) {
            match listen_moving(&mut self.swarm, &addr, guise.p2p_port) {
                Ok(id) => {
                    self.swarm.remove_listener(old);
                    self.moving.push((id, addr));
                    moved = true;
                }
                Err(e) => {
                    warn!("cannot move the libp2p listener: {e}");
                    self.moving.push((old, addr));
                }
            }
        }
        if moved {
            // Advertised once the swarm reports the port it listens on.
            self.p2p_port = None;
        }
        if let Some((tx, ip)) = &self.stream_rebind {
            let bound = bind_stream(*ip, guise.stream_port).or_else(|_| bind_stream(*ip, 0));
            match bound.and_then(|l| Ok((l.local_addr()?.port(), l))) {
                Ok((port, listener)) => {
                    if tx.try_send(listener).is_ok() {
                        self.xmpp_port = port;
                    }
                }
                Err(e) => warn!("cannot move the XEP-0174 listener: {e}"),
            }
        }
        let before = std::mem::replace(&mut self.xmpp_instance, guise.instance());
        self.instance_tx.send_replace(xmpp::Names {
            now: self.xmpp_instance.clone(),
            before: Some(before),
        });
        self.guise = guise;
    }

    /// Where a roster device may listen: the addresses remembered for it, and on
    /// each of their IP addresses the ports of its guises of yesterday, today and
    /// tomorrow under the newest contacts secrets and the genesis key (it moved them
    /// unless its addresses are configured; it may have missed a rotation, or its
    /// clock be a little off).
    fn likely_addrs(&self, device: &DeviceId, remembered: Vec<Multiaddr>) -> Vec<Multiaddr> {
        let today = self.calendar.today();
        let mut secrets: Vec<_> = self
            .device
            .engine
            .keyring()
            .iter()
            .filter(|s| s.node == NodeKind::Contacts)
            .collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.created));
        let mut keys: Vec<Vec<u8>> = secrets
            .iter()
            .take(REDIAL_SECRETS)
            .map(|s| s.value.as_bytes().to_vec())
            .collect();
        keys.push(self.device.account.genesis.to_vec());
        let ips: BTreeSet<Ipv4Addr> = remembered
            .iter()
            .flat_map(|a| a.iter())
            .filter_map(|p| match p {
                Protocol::Ip4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            })
            .collect();
        let mut addrs = remembered;
        for ip in ips.into_iter().take(MAX_REDIAL_IPS) {
            for key in &keys {
                for day in today.saturating_sub(1)..=today + 1 {
                    let port = Guise::of(key, day, device).p2p_port;
                    let addr = Multiaddr::from(ip).with(Protocol::Tcp(port));
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
            }
        }
        addrs
    }

    pub(super) fn redial_known(&mut self) -> Result<(), Error> {
        if !self.dials() {
            return Ok(());
        }
        let known = self.device.known_peers()?;
        for store::KnownPeer { device, addrs, .. } in known {
            let Some(peer) = net::peer_of(&DeviceId(device)) else {
                continue;
            };
            // A device revoked while away and not told yet is dialled too: it
            // cannot find this one (the revocation rotated the secrets, and with
            // them this device's port and advertisement), and is told when reached.
            let untold = self.untold(&peer);
            if !(self.allowed.contains(&peer) || untold) || self.connected.contains_key(&peer) {
                continue;
            }
            let remembered: Vec<Multiaddr> = addrs
                .split_whitespace()
                .filter_map(|a| a.parse().ok())
                .collect();
            let mut addrs = self.likely_addrs(&DeviceId(device), remembered);
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
        self.cut_off(None);
        self.update_pairing();
        // A revoked device told a while ago may be told again.
        self.update_revoked();
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
        self.dial_through_relays();
        self.update_nat_servers();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().expect("a test address")
    }

    #[test]
    fn what_a_dial_reached_is_remembered_first_and_kept_across_runs() {
        let public = a("/ip4/203.0.113.7/tcp/4001");
        let private = a("/ip4/192.168.1.5/tcp/4001");
        let quic = a("/ip4/192.168.1.5/udp/4001/quic-v1");
        // Reached at the forwarded address; the device announces its private ones.
        let first = remembered(std::slice::from_ref(&public), &[&private, &quic], &[]);
        assert_eq!(first, [public.clone(), private.clone(), quic.clone()]);
        // A later run reaches it on the LAN: the forwarded address stays, second.
        let second = remembered(std::slice::from_ref(&private), &[&private, &quic], &first);
        assert_eq!(second, [private.clone(), public.clone(), quic.clone()]);
        // A run that only heard from it (it dialled here) keeps both first.
        let third = remembered(&[], &[&quic], &second);
        assert_eq!(third, [private, public, quic]);
    }

    #[test]
    fn remembered_addresses_are_bounded_and_each_once() {
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| a(&format!("/ip4/10.0.0.{i}/tcp/4001")))
            .collect();
        let announced: Vec<&Multiaddr> = many[5..15].iter().collect();
        let out = remembered(&many[..2], &announced, &many[10..20]);
        assert_eq!(out.len(), MAX_REMEMBERED);
        let mut seen = out.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), out.len(), "{out:?}");
        assert_eq!(out[..2], many[..2]);
        // Then the first remembered before, then the announced ones.
        assert_eq!(out[2..5], many[10..13]);
        assert_eq!(out[5], many[5]);
    }
}
