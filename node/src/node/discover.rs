//! Finding roster devices: mDNS sightings (recognised, or kept until they can be,
//! and dialled again when the other side did not dial), the advertisement and the
//! guise it shows (rotated with the listeners it names), re-dialling known
//! addresses, and the periodic housekeeping.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use kith_protocol::item::NodeKind;
use kith_protocol::record::DeviceId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, warn};

use super::listen::{bind_stream, listen_moving, tcp_port};
use super::sightings::{Recognition, Sighted};
use super::{Error, Node};
use crate::device::{Device, wall_now};
use crate::discovery::{self, Advert, Calendar, Guise, Seen};
use crate::{net, store, xmpp};

/// How many remembered IP addresses of one device are tried with its guise's ports.
const MAX_REDIAL_IPS: usize = 4;
/// How many of the newest contacts secrets its guise's ports are worked out under.
const REDIAL_SECRETS: usize = 3;
/// How long the side with the larger peer id leaves a device it saw on mDNS to
/// dial first.
const DIAL_AFTER: Duration = Duration::from_secs(8);
/// Most dials of this device's own under way at once (a bound: each is taken off
/// when it ends).
const MAX_OWN_DIALS: usize = 1024;
/// Most of this device's own dials of one device under way at once, by rounds of
/// redials.
const MAX_DIALS_OF_ONE: usize = 2;

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
    /// Matches an advertisement against the roster's tags and dials the device; one
    /// not recognised is kept, to be tried again when this device can recognise
    /// more ([`Node::retry_sightings`]).
    pub(super) fn on_seen(&mut self, seen: Seen) {
        if !self.dials()
            || self.discovery.as_ref().and_then(|d| d.fullname()) == Some(seen.fullname.as_str())
        {
            return;
        }
        // Taken out while `recognise` reads the rest of the node.
        let mut sightings = std::mem::take(&mut self.sightings);
        let sighted = sightings.advertised(seen, Instant::now(), |s| self.recognise(s));
        self.sightings = sightings;
        if let Some(s) = sighted {
            self.sighted(s);
        }
    }

    /// The roster device whose tag `seen` shows, under a secret this device holds
    /// or the genesis key, for yesterday, today or tomorrow.
    fn recognise(&self, seen: &Seen) -> Option<PeerId> {
        let today = self.calendar.today();
        let mut keys: Vec<Vec<u8>> = self
            .device
            .engine
            .keyring()
            .iter()
            .map(|s| s.value.as_bytes().to_vec())
            .collect();
        keys.push(self.device.account.genesis.to_vec());
        self.allowed.iter().copied().find(|p| {
            let Some(d) = net::device_of(p) else {
                return false;
            };
            keys.iter().any(|k| {
                (today.saturating_sub(1)..=today + 1)
                    .any(|day| discovery::tag(k, day, &d) == seen.tag)
            })
        })
    }

    /// A roster device sighted anew (`sightings::Sightings::sight`): dialled at
    /// once by the side with the smaller peer id, by the other once it has known
    /// for [`DIAL_AFTER`] (both sides see each other at once, and two dials
    /// crossing make two connections).
    fn sighted(&mut self, s: Sighted) {
        debug!(peer = %s.peer, "seen on mDNS at {:?}", s.addrs);
        if !self.connected.contains_key(&s.peer)
            && (self.me < s.peer || s.first.elapsed() > DIAL_AFTER)
        {
            self.dial(s.peer, s.addrs);
        }
    }

    /// An advertisement was withdrawn or expired: it is no longer kept, and the
    /// device it showed is no longer dialled at its addresses for having been seen
    /// (only as a known device, [`Node::redial_known`]), until seen again.
    pub(super) fn on_gone(&mut self, fullname: &str) {
        for peer in self.sightings.gone(fullname) {
            debug!(%peer, "its advertisement withdrawn");
        }
    }

    /// Tries again what mDNS showed and did not lead to a connection, since mdns-sd
    /// tells of an advertisement once (again only when it changes):
    ///
    /// * advertisements not recognised when seen, once this device holds more
    ///   secrets, another set of allowed roster devices or another day than when
    ///   it last tried (a device that has just joined sees the others'
    ///   advertisements before it holds the secret their tags are made with);
    ///   those older than [`super::sightings::UNRECOGNISED_FOR`] are dropped;
    /// * on a round of redials (`redial`), the roster devices seen at least
    ///   [`DIAL_AFTER`] ago and not connected, and not being dialled already (by
    ///   [`Node::redial_known`], which runs first): the side that waits for the
    ///   other to dial first dials itself, even when the other never saw it.
    ///
    /// A device that no longer dials (it was revoked) forgets what it kept.
    pub(super) fn retry_sightings(&mut self, redial: bool) {
        if !self.dials() {
            self.sightings.forget_kept();
            return;
        }
        let recognition = Recognition {
            devices: self.allowed.clone(),
            secrets: self.device.engine.keyring().iter().count(),
            day: self.calendar.today(),
        };
        // Taken out while `recognise` reads the rest of the node.
        let mut sightings = std::mem::take(&mut self.sightings);
        let sighted = sightings.retry(Instant::now(), recognition, |s| self.recognise(s));
        self.sightings = sightings;
        for s in sighted {
            self.sighted(s);
        }
        if !redial {
            return;
        }
        let due = self.sightings.due(Instant::now(), DIAL_AFTER, |p| {
            self.allowed.contains(p) && !self.connected.contains_key(p) && self.dialing(p) == 0
        });
        for (peer, addrs) in due {
            // Checked above, not left to libp2p's condition: a dial that goes
            // through relays too is made under a weaker one.
            self.dial(peer, addrs);
        }
    }

    pub(super) fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        self.dial_when(peer, addrs, PeerCondition::DisconnectedAndNotDialing);
    }

    /// Dials `peer` at `addrs` (and through relays) under `condition`.
    fn dial_when(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, condition: PeerCondition) {
        // Through the relay devices too, in the same dial and among the first
        // addresses tried (libp2p dials 8 at once): a direct address that a router
        // silently drops would otherwise hold the relayed way back until it times
        // out. Under the same backoff as `dial_through_relays`.
        let mut addrs = addrs;
        let circuits = self.circuits_due(&peer);
        let relayed = !circuits.is_empty();
        let at = addrs.len().min(6);
        addrs.splice(at..at, circuits);
        if addrs.is_empty() {
            return;
        }
        // A try through the relays goes even while a direct dial is under way (one
        // held up by dropped addresses would otherwise keep the relayed way back,
        // try after try); the backoff advances only once it is under way.
        let condition = if relayed {
            PeerCondition::Disconnected
        } else {
            condition
        };
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(condition);
        let opts = if self.reuses_port(Some(&peer)) {
            opts.build()
        } else {
            opts.allocate_new_port().build()
        };
        match self.dial_own(opts) {
            Ok(()) if relayed => self.tried_through_relays(&peer),
            Ok(()) => {}
            Err(e) => debug!(%peer, "dial: {e}"),
        }
    }

    /// A dial of `peer` (`None`: not known yet) from this device's own listen port,
    /// rather than a new one: only by a full device, of relays, whose view of where
    /// this device is (identify's observed address, the NAT's mapping of the listen
    /// port) is what a hole punch starts from; and of unknown peers every other
    /// round of redials (one may be a relay). Not for other devices: two that redial
    /// each other from their listen ports at once (after both restarted) can make a
    /// TCP simultaneous open, which Noise cannot take; where a firewall drops one
    /// side's dial, the other side's then always meets it and they never connect.
    /// Two devices that both dial unknown peers meet so at most every other round;
    /// a relay never dials from its listen port (it holds no reservations, so two
    /// relays would be such a pair).
    pub(super) fn reuses_port(&self, peer: Option<&PeerId>) -> bool {
        !self.device.is_relay()
            && match peer {
                Some(p) => self.relay_devices().contains(p),
                None => self.redial_rounds.is_multiple_of(2),
            }
    }

    /// Dials configured address `addr`, known to reach `peer` when `Some`.
    pub(super) fn dial_configured(
        &mut self,
        addr: Multiaddr,
        peer: Option<PeerId>,
    ) -> Result<(), libp2p::swarm::DialError> {
        let opts = DialOpts::unknown_peer_id().address(addr);
        let opts = if self.reuses_port(peer.as_ref()) {
            opts.build()
        } else {
            opts.allocate_new_port().build()
        };
        self.dial_own(opts)
    }

    /// Dials, noting the connection as this device's own dial: only those tell
    /// where a device can be reached (not a hole punch's, nor an AutoNAT
    /// dial-back's, both through a NAT's passing mapping).
    pub(super) fn dial_own(&mut self, opts: DialOpts) -> Result<(), libp2p::swarm::DialError> {
        let id = opts.connection_id();
        let peer = opts.get_peer_id();
        self.swarm.dial(opts)?;
        // Each is taken off when the dial ends; a bound in case one never does.
        if self.own_dials.len() >= MAX_OWN_DIALS {
            self.own_dials.clear();
        }
        self.own_dials.insert(id, peer);
        Ok(())
    }

    /// How many of this device's own dials of `peer` are under way.
    fn dialing(&self, peer: &PeerId) -> usize {
        self.own_dials
            .values()
            .filter(|p| p.as_ref() == Some(peer))
            .count()
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
        // In the order remembered (most useful first), each once.
        let mut ips: Vec<Ipv4Addr> = Vec::new();
        for ip in remembered
            .iter()
            .flat_map(|a| a.iter())
            .filter_map(|p| match p {
                Protocol::Ip4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            })
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
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
            if let Some(seen) = self.sightings.get(&peer) {
                addrs.extend(seen.addrs.iter().cloned());
            }
            // Even while an earlier dial is under way: one held up by addresses a
            // router drops (10 s each, eight at a time) would otherwise keep this
            // round from trying the ones that may answer now. At most
            // `MAX_DIALS_OF_ONE` at once (each holds up to eight sockets).
            if !addrs.is_empty() && self.dialing(&peer) < MAX_DIALS_OF_ONE {
                self.dial_when(peer, addrs, PeerCondition::Disconnected);
            }
        }
        let configured: Vec<(Multiaddr, Option<PeerId>)> = self
            .configured
            .iter()
            .filter(|(_, p)| p.is_none_or(|p| !self.connected.contains_key(&p)))
            .cloned()
            .collect();
        for (addr, peer) in configured {
            let _ = self.dial_configured(addr, peer);
        }
        self.redial_rounds += 1;
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
        // Not while an exchange this device began is under way: its frames keep
        // coming, and a checkpoint would stall them (the log's size stays bounded
        // by SQLite's own checkpoint, `WAL_PAGES_MAX`), unless something was erased:
        // the log is then emptied within two seconds all the same. A failure (a
        // full disk) leaves the log as it is: nothing is lost, and the next tick
        // tries again.
        if (!self.device.engine.is_exchanging() || self.device.store.erased())
            && let Err(e) = self.device.store.checkpoint_if_written()
        {
            warn!("checkpointing the store's log: {e}");
        }
        // Known devices first: the sightings' round then leaves those dialled.
        let redialled = if redial { self.redial_known() } else { Ok(()) };
        self.retry_sightings(redial);
        redialled?;
        self.dial_through_relays();
        self.update_nat_servers();
        Ok(())
    }
}
