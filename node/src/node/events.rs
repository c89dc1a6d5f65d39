//! Handling what the swarms and the engine report.

use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use kith_protocol::sync::{Event, Input};
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, gossipsub, identify};
use tracing::{debug, info, warn};

use super::listen::tcp_port;
use super::{Error, Node, addrs, relayed};
use crate::device::wall_now;
use crate::net::{self, BehaviourEvent, PairBehaviourEvent};
use crate::pair;

/// Direct connections kept to one device (more are closed, the newest).
const MAX_DIRECT: usize = 2;

/// Swarm events handled in one transaction at most ([`Node::on_swarm_batch`]).
const BATCH_EVENTS: usize = 256;

/// How long one transaction goes on taking more of the events that are waiting
/// (checked between events: one large frame, and the commit, may take longer).
const BATCH_TIME: Duration = Duration::from_millis(50);

impl Node {
    pub(super) fn on_engine_event(&mut self, event: Event<PeerId>) -> Result<(), Error> {
        match event {
            Event::Synced { peer, round_trips } => {
                debug!(%peer, round_trips, "reconciled with {}", self.who(&peer));
                if let Some(d) = net::device_of(&peer) {
                    self.device.store.set_last_sync(&d.0, wall_now().0)?;
                    self.device.keep_sync_state(&d)?;
                }
            }
            Event::Rejected { peer, reason } => {
                warn!("a record from {} refused: {reason}", self.who(&peer));
            }
            Event::BadFrame { peer, reason } => {
                warn!("a bad frame from {}: {reason}", self.who(&peer));
            }
            Event::KeysRefused(e) => warn!("secrets refused: {e}"),
            Event::Changed => debug!("contact list changed"),
        }
        Ok(())
    }

    /// Handles `first` and the swarm events already waiting behind it (up to
    /// [`BATCH_EVENTS`], for up to [`BATCH_TIME`]) in one transaction: under load,
    /// one durable commit covers many frames. A lone event commits alone, at once;
    /// nothing waits for company. What the events send leaves after the commit.
    pub(super) fn on_swarm_batch(
        &mut self,
        first: SwarmEvent<BehaviourEvent>,
    ) -> Result<(), Error> {
        self.device.begin_batch()?;
        let start = Instant::now();
        let mut result = self.on_swarm(first);
        let mut handled = 1;
        // A frame answered before it is applied ends the batch: its answer leaves
        // at once (after the commit), and the frame is applied after it (`run`).
        while result.is_ok()
            && handled < BATCH_EVENTS
            && start.elapsed() < BATCH_TIME
            && !self.device.engine.has_deferred()
        {
            match self.swarm.next().now_or_never() {
                Some(Some(event)) => {
                    result = self.on_swarm(event);
                    handled += 1;
                }
                _ => break,
            }
        }
        self.device.end_batch(result)
    }

    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), Error> {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                info!("listening on {address}/p2p/{}", self.me);
                // A reservation's circuit address carries the relay's port: never
                // the one advertised.
                let own = !relayed::is_relayed(&address);
                if own
                    && (self.moving.is_empty()
                        || self.moving.iter().any(|(id, _)| *id == listener_id))
                {
                    self.p2p_port = self.p2p_port.or_else(|| tcp_port(&address));
                }
                self.relay_listens_at(&address);
                self.listen.push(address);
                // After the batch's commit (`Node::flush`): the guise comes from the
                // keyring, which may hold a secret not committed yet.
                self.readvertise_due = true;
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen.retain(|a| *a != address);
                self.relay_stops_listening_at(&address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                ..
            } => {
                self.listen.retain(|a| !addresses.contains(a));
                for a in &addresses {
                    self.relay_stops_listening_at(a);
                }
                self.listener_closed(listener_id);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let own_dial = self.own_dials.remove(&connection_id).is_some();
                let remote = endpoint.get_remote_address().clone();
                // A connection relayed to this device shows the relay's circuit
                // address it came in at (its remote address names only the peer).
                let shown = match &endpoint {
                    libp2p::core::ConnectedPoint::Listener { local_addr, .. }
                        if endpoint.is_relayed() =>
                    {
                        local_addr.clone()
                    }
                    _ => remote.clone(),
                };
                if endpoint.is_dialer() {
                    for (addr, peer) in &mut self.configured {
                        if *addr == remote {
                            *peer = Some(peer_id);
                        }
                    }
                }
                if let (true, Some(device)) =
                    (self.allowed.contains(&peer_id), net::device_of(&peer_id))
                {
                    if num_established.get() == 1 {
                        // The address without the peer id the name stands for.
                        let at = relayed::without_peer(&shown);
                        match relayed::relay_of(&shown) {
                            Some(relay) => info!(
                                "{} connected through {}",
                                self.who(&peer_id),
                                self.who(&relay)
                            ),
                            None if relayed::is_relayed(&at) => {
                                info!("{} connected through a relay ({at})", self.who(&peer_id))
                            }
                            None => info!("{} connected ({at})", self.who(&peer_id)),
                        }
                        self.device.input(Input::Connected {
                            peer: peer_id,
                            device,
                        })?;
                    }
                    // Status shows a direct connection when there is one (hole
                    // punching, or a dial, gave one beside the relayed one).
                    let links = self.links.entry(peer_id).or_default();
                    links.insert(connection_id, relayed::without_peer(&shown));
                    if let Some(best) = relayed::shown(links) {
                        self.connected.insert(peer_id, best);
                    }
                    // Two direct connections to one device are plenty (one each
                    // way); more come from AutoNAT's dial-backs and crossed dials,
                    // and would fill the gate's room for it: the newest go (once
                    // made, a dial-back has done its job; a dead old one is found
                    // by ping within a minute). One side decides (the smaller
                    // peer id), so the two never close more between them.
                    let surplus = if self.me < peer_id {
                        relayed::surplus(links, MAX_DIRECT)
                    } else {
                        Vec::new()
                    };
                    let closing = surplus.contains(&connection_id);
                    for id in surplus {
                        self.swarm.close_connection(id);
                    }
                    if closing {
                        return Ok(());
                    }
                    self.reach.backoff.remove(&peer_id);
                    if endpoint.is_dialer() {
                        self.relay_connected(peer_id, &remote);
                    }
                    // Remembered when its identify arrives: where this device's
                    // own dial reached it.
                    if own_dial && !relayed::is_relayed(&remote) {
                        let at = relayed::without_peer(&remote);
                        let reached = self.reached_at.entry(peer_id).or_default();
                        reached.retain(|a| *a != at);
                        reached.insert(0, at);
                        reached.truncate(addrs::MAX_REACHED);
                    }
                } else if self.telling(&peer_id) {
                    // A second connection of a revoked device being told: this one
                    // goes, the one carrying the notice stays.
                    self.swarm.close_connection(connection_id);
                } else if !self.tell_returning(peer_id) {
                    // The gate let in a device the roster has just dropped.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .blacklist_peer(&peer_id);
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } if num_established > 0 => {
                // Another connection stays: status shows the best of those left.
                if let Some(links) = self.links.get_mut(&peer_id) {
                    links.remove(&connection_id);
                    if let (Some(best), true) =
                        (relayed::shown(links), self.connected.contains_key(&peer_id))
                    {
                        self.connected.insert(peer_id, best);
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if self.connected.remove(&peer_id).is_some() => {
                self.links.remove(&peer_id);
                info!("{} disconnected", self.who(&peer_id));
                self.relay_gone(&peer_id);
                // Where it stood when last heard from, for the next run (what it
                // said as the one asking is heard too, not only at `Synced`).
                if let Some(d) = net::device_of(&peer_id) {
                    self.device.keep_sync_state(&d)?;
                }
                self.device.input(Input::Disconnected(peer_id))?;
                self.cut_off(Some(&peer_id));
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event)?,
            SwarmEvent::OutgoingConnectionError { connection_id, .. } => {
                self.own_dials.remove(&connection_id);
            }
            _ => {}
        }
        Ok(())
    }

    pub(super) fn on_behaviour(&mut self, event: BehaviourEvent) -> Result<(), Error> {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                // Messages are anonymous (see `net::Behaviour::new`): the frame comes
                // from the device whose gated connection delivered it.
                let source = net::device_of(&propagation_source);
                if let (true, Some(source)) = (self.allowed.contains(&propagation_source), source) {
                    self.device.input(Input::Gossip {
                        from: propagation_source,
                        source,
                        bytes: message.data,
                    })?;
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            }) => {
                // gossipsub gave up on messages to it (its queue was full, or they
                // waited too long; perhaps our frames): a reconciliation brings it
                // what it may have missed, at most once per GOSSIP_LOST_GAP_MS.
                debug!(peer = %peer_id, ?failed_messages, "gossip to it was dropped");
                if self.connected.contains_key(&peer_id) {
                    self.device.input(Input::GossipLost(peer_id))?;
                }
            }
            BehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => {
                match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        if self.connected.contains_key(&peer) {
                            let id = self.next_inbound;
                            self.next_inbound += 1;
                            self.inbound.insert(id, channel);
                            self.device.input_checked(
                                Input::Request {
                                    from: peer,
                                    id,
                                    bytes: request.bytes,
                                },
                                request.opened,
                            )?;
                        }
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(id) = self.out_requests.remove(&request_id) {
                            self.device.input_checked(
                                Input::Response {
                                    id,
                                    bytes: response.bytes,
                                },
                                response.opened,
                            )?;
                        } else {
                            self.notice_done(&request_id, true);
                        }
                    }
                }
            }
            BehaviourEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) => {
                if let Some(id) = self.out_requests.remove(&request_id) {
                    debug!("sync request failed: {error}");
                    self.device.input(Input::RequestFailed { id })?;
                } else {
                    self.notice_done(&request_id, false);
                }
            }
            BehaviourEvent::Sync(request_response::Event::InboundFailure {
                peer,
                request_id,
                ..
            }) => {
                debug!(?request_id, "inbound sync request failed");
                // The records our response carried may not have arrived.
                if self.connected.contains_key(&peer) {
                    self.device.input(Input::ResponseLost(peer))?;
                }
            }
            BehaviourEvent::Identify(identify::Event::Received {
                connection_id,
                peer_id,
                info,
            }) => {
                if let (true, Some(d)) = (self.allowed.contains(&peer_id), net::device_of(&peer_id))
                {
                    let at = self
                        .links
                        .get(&peer_id)
                        .and_then(|l| l.get(&connection_id))
                        .cloned();
                    // Where this device's dials reached it first: what it announces
                    // may not reach it from here (a private address behind a port
                    // forward).
                    // Best effort: what is remembered only helps find it again.
                    let reached = self.reached_at.get(&peer_id).cloned().unwrap_or_default();
                    match self.device.remembered_addrs(&d.0) {
                        Ok(before) => {
                            let now = addrs::remembered(
                                &reached,
                                &info.listen_addrs,
                                at.as_ref(),
                                &before,
                            );
                            if now.all().next().is_some()
                                && now != before
                                && let Err(e) = self.device.remember_addrs(&d.0, &now.line())
                            {
                                warn!("remembering where {} listens: {e}", self.who(&peer_id));
                            }
                        }
                        Err(e) => warn!("reading where {} listens: {e}", self.who(&peer_id)),
                    }
                    // A relay that dialled this device: reserve at an address it
                    // listens on.
                    if let Some(listens) = addrs::announced(&info.listen_addrs, at.as_ref()).first()
                    {
                        self.relay_connected(peer_id, listens);
                    }
                }
            }
            BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(e),
            }) => {
                debug!("a connection to {} failed its ping: {e}", self.who(&peer));
                self.swarm.close_connection(connection);
            }
            BehaviourEvent::RelayClient(e) => self.on_relay_client(e),
            BehaviourEvent::Relay(e) => self.on_relay_server(e),
            BehaviourEvent::Dcutr(e) => self.on_dcutr(e),
            BehaviourEvent::Autonat(e) => self.on_autonat(e),
            _ => {}
        }
        Ok(())
    }

    pub(super) fn on_pair_swarm(&mut self, event: SwarmEvent<PairBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                debug!("pairing listener on {address}");
                self.pair_listen.push(address);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                debug!(peer = %peer_id, "a device connected to pair");
                self.pairing
                    .insert(peer_id, Instant::now() + Duration::from_secs(60));
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.pairing.remove(&peer_id);
                self.device.invitations.forget(&peer_id);
            }
            SwarmEvent::Behaviour(PairBehaviourEvent::Pair(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let listen = self.listen.clone();
                let me = *self.pair_swarm.local_peer_id();
                let (answer, outcome) = self.device.answer_pairing(&peer, &me, &request, &listen);
                if matches!(outcome, pair::Outcome::Proven) {
                    // It proved it holds a code: its connection is kept from now on.
                    self.pair_swarm.behaviour_mut().gate.prove(&peer);
                }
                let _ = self
                    .pair_swarm
                    .behaviour_mut()
                    .pair
                    .send_response(channel, answer);
                match outcome {
                    pair::Outcome::Step | pair::Outcome::Proven => {}
                    pair::Outcome::Joined { device, .. } => {
                        // The roster's change logs "phone (57b6…) joined".
                        debug!("{} paired with an invite code", self.device_name(&device));
                        self.readvertise();
                    }
                    pair::Outcome::Refused(why) => {
                        info!("refused a device that asked to pair: {why}");
                    }
                }
            }
            _ => {}
        }
    }
}
