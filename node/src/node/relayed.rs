//! Beyond one LAN: reservations on the account's relay devices, dialling other
//! devices through them, and what circuit relay, DCUtR (hole punching) and AutoNAT
//! report.
//!
//! A full device connected to a relay device of its roster asks it for a
//! reservation (it then listens at `RELAY/p2p/R/p2p-circuit`), and every
//! [`REDIAL`] tries each roster device it is not connected to through each relay
//! device it is connected to. Once a relayed connection stands, DCUtR on both
//! sides tries a direct one (hole punching); the relayed connection stays as well
//! until its circuit ends. Relay devices serve circuits to the account's devices
//! only: the gate refuses every other peer before any protocol runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kith_protocol::roster::Role;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, autonat, dcutr, relay};
use tracing::{debug, info};

use super::Node;
use crate::net;

/// How often a device not connected is tried through the relay devices.
pub(super) const REDIAL: Duration = Duration::from_secs(10);

/// A relay device this device is connected to.
#[derive(Debug, Clone)]
pub(super) struct Relay {
    /// Where it is reached (without `/p2p`).
    pub(super) addr: Multiaddr,
    /// The reservation's listener, while one is asked for or held.
    pub(super) listener: Option<ListenerId>,
    /// Whether the relay accepted the reservation.
    pub(super) reserved: bool,
}

/// Longest wait between two tries of one absent device through the relays.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What this device learnt about reaching the others, for `status`.
#[derive(Debug, Clone, Default)]
pub(super) struct Reach {
    /// What AutoNAT concluded: `None` until a probe ended.
    pub(super) nat: Option<autonat::NatStatus>,
    /// When devices were last tried through the relays.
    pub(super) last_tried: Option<Instant>,
    /// The devices AutoNAT probes with (see [`Node::update_nat_servers`]).
    pub(super) nat_servers: BTreeSet<PeerId>,
    /// Devices tried through the relays and not reached: when to try each next,
    /// and the wait after that (doubling to [`MAX_BACKOFF`]; forgotten once it
    /// connects).
    pub(super) backoff: BTreeMap<PeerId, (Instant, Duration)>,
}

/// Every connection to one peer, with the address `status` would show for each.
pub(super) type Links = BTreeMap<ConnectionId, Multiaddr>;

/// The address to show for a peer's connections: a direct one if there is one.
pub(super) fn shown(links: &Links) -> Option<Multiaddr> {
    links
        .values()
        .find(|a| !is_relayed(a))
        .or_else(|| links.values().next())
        .cloned()
}

/// The direct connections beyond the oldest `keep` (connection ids grow with
/// time): the new ones go, and what the old ones carry (a request under way, an
/// AutoNAT probe waiting for its dial-back) goes on. Relayed ones are left alone
/// (their circuits end by themselves).
pub(super) fn surplus(links: &Links, keep: usize) -> Vec<ConnectionId> {
    links
        .iter()
        .filter(|(_, a)| !is_relayed(a))
        .map(|(id, _)| *id)
        .skip(keep)
        .collect()
}

/// Whether `addr` is on the unspecified address (`0.0.0.0`, `::`): every address
/// of the host, nowhere to dial.
pub(super) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| {
        matches!(p, Protocol::Ip4(ip) if ip.is_unspecified())
            || matches!(p, Protocol::Ip6(ip) if ip.is_unspecified())
    })
}

/// Whether `addr` is an IPv6 link-local address (`fe80::/10`): meaningless
/// without an interface, which multiaddrs do not carry.
pub(super) fn is_link_local(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::Ip6(ip) if ip.is_unicast_link_local()))
}

/// Whether `addr` goes through a relay.
pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The relay a relayed address goes through (the `/p2p` before `/p2p-circuit`).
pub(super) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

/// `addr` without the `/p2p` that ends it (the peer it names; a relayed address
/// keeps its relay's): one address, written one way whoever wrote it.
pub(super) fn without_peer(addr: &Multiaddr) -> Multiaddr {
    let mut addr = addr.clone();
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}

impl Node {
    /// The roster's active relay devices other than this one.
    pub(super) fn relay_devices(&self) -> BTreeSet<PeerId> {
        self.device
            .engine
            .roster()
            .active()
            .filter(|m| m.entry.role == Role::Relay && m.entry.device != self.device.id())
            .filter_map(|m| net::peer_of(&m.entry.device))
            .collect()
    }

    /// A roster relay device connected at `addr` (where this device dialled it, or
    /// one of its listen addresses): this device asks it for a reservation, unless
    /// it is a relay itself or has one there already.
    pub(super) fn relay_connected(&mut self, peer: PeerId, addr: &Multiaddr) {
        if self.device.is_relay() || !self.relay_devices().contains(&peer) || is_relayed(addr) {
            return;
        }
        let addr = without_peer(addr);
        if is_unspecified(&addr) {
            return;
        }
        let relay = self.relays.entry(peer).or_insert_with(|| Relay {
            addr: addr.clone(),
            listener: None,
            reserved: false,
        });
        if relay.listener.is_some() {
            return;
        }
        relay.addr = addr.clone();
        let circuit = addr.with(Protocol::P2p(peer)).with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                debug!("asking {} for a relay reservation", self.who(&peer));
                if let Some(r) = self.relays.get_mut(&peer) {
                    r.listener = Some(id);
                }
            }
            Err(e) => debug!("cannot listen at {circuit}: {e}"),
        }
    }

    /// A relay device disconnected: its reservation went with it.
    pub(super) fn relay_gone(&mut self, peer: &PeerId) {
        if let Some(r) = self.relays.remove(peer)
            && let Some(id) = r.listener
        {
            self.swarm.remove_listener(id);
        }
    }

    /// A listener closed: if it was a reservation, the next connection (or
    /// identify) to that relay asks again.
    pub(super) fn listener_closed(&mut self, id: ListenerId) {
        for r in self.relays.values_mut() {
            if r.listener == Some(id) {
                r.listener = None;
                r.reserved = false;
            }
        }
    }

    /// Tries every roster device this one is not connected to through every relay
    /// device it is connected to (at most every [`REDIAL`]).
    pub(super) fn dial_through_relays(&mut self) {
        if !self.dials() || self.relays.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.reach.last_tried.is_some_and(|t| now < t + REDIAL) {
            return;
        }
        self.reach.last_tried = Some(now);
        self.reserve_again();
        // `dial` adds the circuit addresses of those due a try (`circuits_due`).
        let peers: Vec<PeerId> = self.allowed.iter().copied().collect();
        for peer in peers {
            self.dial(peer, Vec::new());
        }
    }

    /// [`Node::circuit_addrs`] for `peer` if it is due a try through the relays
    /// (an active full device this one is not connected to, and its backoff
    /// allows). Empty otherwise. The caller advances the backoff
    /// ([`Node::tried_through_relays`]) once a dial carrying them is under way.
    pub(super) fn circuits_due(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let now = Instant::now();
        let due = self.allowed.contains(peer)
            && !self.connected.contains_key(peer)
            && !self.relay_devices().contains(peer)
            && self
                .reach
                .backoff
                .get(peer)
                .is_none_or(|(next, _)| *next <= now);
        if due {
            self.circuit_addrs(peer)
        } else {
            Vec::new()
        }
    }

    /// Advances `peer`'s backoff through the relays: tried again after 10 s, 20 s,
    /// 40 s… up to 5 min while it stays away.
    pub(super) fn tried_through_relays(&mut self, peer: &PeerId) {
        let wait = self
            .reach
            .backoff
            .get(peer)
            .map_or(REDIAL, |(_, w)| (*w * 2).min(MAX_BACKOFF));
        self.reach
            .backoff
            .insert(*peer, (Instant::now() + wait, wait));
    }

    /// Where `peer` may be reached through each relay device this one is
    /// connected to.
    pub(super) fn circuit_addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.relays
            .iter()
            .filter(|(r, _)| *r != peer)
            .map(|(r, relay)| {
                relay
                    .addr
                    .clone()
                    .with(Protocol::P2p(*r))
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(*peer))
            })
            .collect()
    }

    /// Names the devices AutoNAT probes with: every roster device connected, on
    /// accounts with a relay device (or on a relay); none on a LAN-only account,
    /// which then sends no probe (it still answers the others'). Follows the
    /// roster: a relay paired or revoked counts at once.
    pub(super) fn update_nat_servers(&mut self) {
        let beyond_lan = self.device.is_relay() || !self.relay_devices().is_empty();
        let wanted: BTreeSet<PeerId> = if beyond_lan {
            self.connected
                .keys()
                .filter(|p| self.allowed.contains(p))
                .copied()
                .collect()
        } else {
            BTreeSet::new()
        };
        let autonat = &mut self.swarm.behaviour_mut().autonat;
        for gone in self.reach.nat_servers.difference(&wanted) {
            autonat.remove_server(gone);
        }
        for new in wanted.difference(&self.reach.nat_servers) {
            autonat.add_server(*new, None);
        }
        self.reach.nat_servers = wanted;
    }

    /// Logs what the relay client reports, and notes accepted reservations.
    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } => {
                let first = self
                    .relays
                    .get_mut(&relay_peer_id)
                    .is_some_and(|r| !std::mem::replace(&mut r.reserved, true));
                if first {
                    // The others may hold reservations there too: try them now.
                    self.reach.last_tried = None;
                    info!(
                        "{} relays for this device: the others can reach it through it",
                        self.who(&relay_peer_id)
                    );
                }
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                debug!("a circuit through {}", self.who(&relay_peer_id));
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                debug!("{} came in through a relay", self.who(&src_peer_id));
            }
        }
    }

    /// Logs what the relay service (on a relay device) reports.
    pub(super) fn on_relay_server(&mut self, event: relay::Event) {
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
                info!("relaying for {}", self.who(&src_peer_id));
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                debug!(
                    "a circuit from {} to {}",
                    self.who(&src_peer_id),
                    self.who(&dst_peer_id)
                );
            }
            other => debug!("relay: {other:?}"),
        }
    }

    /// Logs how hole punching went.
    pub(super) fn on_dcutr(&mut self, event: dcutr::Event) {
        match event.result {
            Ok(_) => info!(
                "{}: hole punched, connected directly",
                self.who(&event.remote_peer_id)
            ),
            Err(e) => info!(
                "{}: hole punching failed, staying relayed: {e}",
                self.who(&event.remote_peer_id)
            ),
        }
    }

    /// A relay device's own listen address: it serves as the address of its
    /// reservations (a relay answers a reservation with its external addresses,
    /// and a reservation without any is refused by the client). A relay device is
    /// meant to be reached where it listens (a server, a VPS).
    pub(super) fn relay_listens_at(&mut self, addr: &Multiaddr) {
        // Listening on every address, the loopback ones mean nothing elsewhere;
        // listening on loopback alone (a test, one machine), they are all it has.
        let loopback = addr.iter().any(|p| {
            matches!(p, Protocol::Ip4(ip) if ip.is_loopback())
                || matches!(p, Protocol::Ip6(ip) if ip.is_loopback())
        });
        if self.device.is_relay()
            && !is_unspecified(addr)
            && !is_relayed(addr)
            && !is_link_local(addr)
            && (!loopback || !self.listen_any)
        {
            self.swarm.add_external_address(addr.clone());
        }
    }

    /// A listen address went away: a relay device no longer hands it out.
    pub(super) fn relay_stops_listening_at(&mut self, addr: &Multiaddr) {
        if self.device.is_relay() {
            self.swarm.remove_external_address(addr);
        }
    }

    /// Asks again, for a reservation lost or refused, at the relay devices still
    /// connected.
    pub(super) fn reserve_again(&mut self) {
        let lost: Vec<(PeerId, Multiaddr)> = self
            .relays
            .iter()
            .filter(|(_, r)| r.listener.is_none())
            .map(|(p, r)| (*p, r.addr.clone()))
            .collect();
        for (peer, addr) in lost {
            self.relay_connected(peer, &addr);
        }
    }

    /// Notes and logs what AutoNAT concluded.
    pub(super) fn on_autonat(&mut self, event: autonat::Event) {
        if let autonat::Event::StatusChanged { new, .. } = event {
            match &new {
                autonat::NatStatus::Public(addr) => {
                    info!("the devices connected could dial this one back (at {addr})")
                }
                autonat::NatStatus::Private => info!(
                    "the devices connected could not dial this one back (behind a NAT or a \
                     firewall?): the others reach it through a relay device, if any"
                ),
                autonat::NatStatus::Unknown => {}
            }
            self.reach.nat = Some(new);
        }
    }

    /// What `status` says of reaching this device: `public`, `private` or
    /// `unknown` (AutoNAT), `None` before any probe ended.
    pub(super) fn reachability(&self) -> Option<String> {
        self.reach.nat.as_ref().map(|n| {
            match n {
                autonat::NatStatus::Public(_) => "public",
                autonat::NatStatus::Private => "private",
                autonat::NatStatus::Unknown => "unknown",
            }
            .to_owned()
        })
    }
}
