//! The libp2p side: the swarm's behaviour (gossipsub, request-response for sync and
//! pairing, identify; circuit relay v2, DCUtR and AutoNAT beyond one LAN), its
//! transports (TCP and QUIC), the length-prefixed frame codec, the gossip topic,
//! and the mapping between libp2p peer ids and kith device ids.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use kith_protocol::record::DeviceId;
use kith_protocol::sync::wire;
pub use libp2p::Multiaddr;
use libp2p::identity::{self, Keypair, PeerId};
pub use libp2p::multiaddr::Protocol;
use libp2p::{StreamProtocol, gossipsub, identify, request_response};
use sha2::{Digest, Sha256};

use crate::device::Ahead;

/// Protocol of reconciliation frames.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/sync/1");
/// Protocol of pairing messages.
pub const PAIR_PROTOCOL: StreamProtocol = StreamProtocol::new("/kith/pair/2");
/// Largest pairing message, bytes (the welcome carries the roster, a few KiB per
/// device).
pub const MAX_PAIR_BYTES: usize = 1024 * 1024;

/// Length-prefixed (u32, big-endian) byte frames of at most `MAX` bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frames<const MAX: usize>;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: Vec<u8>,
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame too large",
        ));
    }
    // Bounded by `max` just above, which is far below u32::MAX.
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl<const MAX: usize> request_response::Codec for Frames<MAX> {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req, MAX).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, res, MAX).await
    }
}

/// A sync frame crossing the swarm: its bytes and, once read, what checking it
/// ahead of the device opened ([`crate::device::Ahead`]); `None` when it was not.
#[derive(Debug, Default)]
pub struct SyncFrame {
    /// The frame as sent.
    pub bytes: Vec<u8>,
    /// What the reading side opened checking it ahead, if it did.
    pub opened: Option<crate::device::Prechecked>,
}

impl From<Vec<u8>> for SyncFrame {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            opened: None,
        }
    }
}

/// The codec of sync frames: [`Frames`] of at most [`wire::MAX_FRAME_BYTES`], each
/// received one checked ahead of the device on the connection's task when there is
/// a checker (see [`crate::device::Ahead`]).
#[derive(Debug, Clone, Default)]
pub struct SyncFrames {
    ahead: Option<Arc<Ahead>>,
}

impl SyncFrames {
    async fn read<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<SyncFrame> {
        let bytes = read_frame(io, wire::MAX_FRAME_BYTES).await?;
        let (bytes, opened) = match &self.ahead {
            Some(ahead) => ahead.check(bytes).await,
            None => (bytes, None),
        };
        Ok(SyncFrame { bytes, opened })
    }
}

impl request_response::Codec for SyncFrames {
    type Protocol = StreamProtocol;
    type Request = SyncFrame;
    type Response = SyncFrame;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<SyncFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: SyncFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req.bytes, wire::MAX_FRAME_BYTES).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: SyncFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, res.bytes, wire::MAX_FRAME_BYTES).await
    }
}

pub use behaviour::{Behaviour, BehaviourEvent, PairBehaviour, PairBehaviourEvent};

mod behaviour {
    // The derive generates `BehaviourEvent` with undocumented variants, one per field.
    #![allow(missing_docs)]
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::swarm::behaviour::toggle::Toggle;
    use libp2p::{autonat, dcutr, gossipsub, identify, ping, relay, request_response};

    use super::{Frames, MAX_PAIR_BYTES};

    /// The node's libp2p behaviour.
    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        /// Refuses connections from peers outside the roster (first, so that it runs
        /// before any other protocol sees the connection).
        pub gate: crate::gate::Gate,
        /// Live pushes of new records.
        pub gossipsub: gossipsub::Behaviour,
        /// Reconciliation frames.
        pub sync: request_response::Behaviour<super::SyncFrames>,
        /// Listen addresses and agent, exchanged on connect.
        pub identify: identify::Behaviour,
        /// Circuit relay v2, serving: on relay devices only. The gate lets only the
        /// account's devices connect, so only they reserve or are relayed to.
        pub relay: Toggle<relay::Behaviour>,
        /// Circuit relay v2, as a client: reservations on the account's relay
        /// devices, and connections through them.
        pub relay_client: relay::client::Behaviour,
        /// Hole punching: a relayed connection is upgraded to a direct one when
        /// both sides' NATs let it.
        pub dcutr: dcutr::Behaviour,
        /// Checks every connection every 15 s: a dead one (a laptop that slept, a
        /// NAT that forgot its mapping) is closed within a minute, and the pings
        /// keep NAT mappings open meanwhile.
        pub ping: ping::Behaviour,
        /// Whether the devices connected could dial this one back. It answers
        /// every device's probes, and probes only with the servers the node names
        /// (on accounts with a relay device: a LAN needs no probes, and sends none).
        pub autonat: autonat::Behaviour,
    }

    /// The pairing listener's behaviour: a separate swarm on its own port, so that
    /// a stranger let in to pair never shares a connection with gossip or sync.
    #[derive(NetworkBehaviour)]
    pub struct PairBehaviour {
        /// Lets peers in only while an invitation is open.
        pub gate: crate::gate::Gate,
        /// Pairing requests.
        pub pair: request_response::Behaviour<Frames<MAX_PAIR_BYTES>>,
    }
}

/// The gossip topic of the roster whose genesis device is `genesis`: nothing on the
/// wire names the account.
pub fn topic(genesis: &DeviceId) -> gossipsub::IdentTopic {
    let d = Sha256::new()
        .chain_update(b"kith gossip topic\0")
        .chain_update(genesis.0)
        .finalize();
    let hex = kith_protocol::hex::encode(&d[..16]);
    gossipsub::IdentTopic::new(format!("kith/{hex}"))
}

impl PairBehaviour {
    /// The behaviour, closed until an invitation opens it.
    pub fn new() -> Self {
        Self {
            gate: crate::gate::Gate::new(crate::gate::Limits::PAIRING),
            pair: request_response::Behaviour::new(
                [(PAIR_PROTOCOL, request_response::ProtocolSupport::Inbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(4),
            ),
        }
    }
}

impl Default for PairBehaviour {
    fn default() -> Self {
        Self::new()
    }
}

/// The application score of a revoked device let in to be told: far below
/// gossipsub's graylist threshold, so it is sent nothing (no publish, no gossip,
/// no answer to IWANT) and what it sends is ignored.
pub const REVOKED_SCORE: f64 = -1_000_000.0;

/// Peer scoring with the application's score alone: every roster device scores 0,
/// a revoked one [`REVOKED_SCORE`]. The rest of gossipsub's scoring stays off: own
/// devices often share an address (loopback, one host), and its penalties are for an
/// open network of strangers the gate never lets in.
fn score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: 0.0,
        behaviour_penalty_weight: 0.0,
        slow_peer_weight: 0.0,
        ..Default::default()
    }
}

/// The relay service a relay device gives its account's devices: room for a
/// household's devices, and circuits large and long enough for a whole
/// reconciliation (libp2p's defaults, 2 minutes and 128 KiB a circuit, are for
/// strangers on a public relay). The gate bounds who may use it at all.
fn relay_config() -> libp2p::relay::Config {
    libp2p::relay::Config {
        max_reservations: 64,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: 64,
        max_circuits_per_peer: 8,
        max_circuit_duration: Duration::from_secs(3600),
        max_circuit_bytes: 256 * 1024 * 1024,
        // No rate limits: libp2p's (30 requests, then one every 2 minutes per peer)
        // are spent by devices trying an absent device through the relay every
        // 10 s, and would then refuse the circuit a device needs when it comes
        // back. The gate (own devices only) and the caps above bound the relay.
        reservation_rate_limiters: Vec::new(),
        circuit_src_rate_limiters: Vec::new(),
    }
}

/// AutoNAT probes among own devices: private addresses count (a LAN, a VPN), and
/// the first probe comes soon after start.
fn autonat_config() -> libp2p::autonat::Config {
    libp2p::autonat::Config {
        boot_delay: Duration::from_secs(5),
        retry_interval: Duration::from_secs(120),
        refresh_interval: Duration::from_secs(30 * 60),
        throttle_server_period: Duration::from_secs(30),
        only_global_ips: false,
        // The node names the devices to probe with (`add_server`).
        use_connected: false,
        ..Default::default()
    }
}

impl Behaviour {
    /// The behaviour for `key`, with settings for a small mesh of own devices; sync
    /// frames are checked ahead of the device by `ahead`, if given; `relay_client`
    /// comes from the transport; `serve_relay` on relay devices.
    pub fn new(
        key: &Keypair,
        ahead: Option<Arc<Ahead>>,
        relay_client: libp2p::relay::client::Behaviour,
        serve_relay: bool,
    ) -> Result<Self, String> {
        let config = gossipsub::ConfigBuilder::default()
            // Messages carry no author, sequence number or signature: every record
            // in a frame is signed by its author and checked by the engine, and the
            // connection that delivers a frame is authenticated (Noise) and gated,
            // so gossipsub's own signature was a second Ed25519 signing and check
            // of every frame (and the author's peer id on the wire) for nothing.
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| {
                let d = Sha256::digest(&m.data);
                gossipsub::MessageId::from(d[..20].to_vec())
            })
            // An RPC may carry a frame plus control messages, or several frames:
            // the engine bounds frames, this bounds what one read may take.
            .max_transmit_size(4 * wire::MAX_GOSSIP_BYTES)
            .mesh_n(4)
            .mesh_n_low(1)
            .mesh_n_high(8)
            .mesh_outbound_min(1)
            .flood_publish(true)
            .heartbeat_interval(Duration::from_millis(700))
            .heartbeat_initial_delay(Duration::from_millis(100))
            .build()
            .map_err(|e| e.to_string())?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config)?;
        gossipsub.with_peer_score(score_params(), gossipsub::PeerScoreThresholds::default())?;
        let rr = request_response::Config::default()
            .with_request_timeout(Duration::from_secs(30))
            .with_max_concurrent_streams(16);
        Ok(Self {
            gate: crate::gate::Gate::default(),
            gossipsub,
            sync: request_response::Behaviour::with_codec(
                SyncFrames { ahead },
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                rr,
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                "/kith/1".into(),
                key.public(),
            )),
            relay: serve_relay
                .then(|| {
                    let mut relay =
                        libp2p::relay::Behaviour::new(key.public().to_peer_id(), relay_config());
                    // Serving whatever AutoNAT concludes: the account's devices
                    // decide to reserve, not the relay's idea of its reachability.
                    relay.set_status(Some(libp2p::relay::Status::Enable));
                    relay
                })
                .into(),
            relay_client,
            dcutr: libp2p::dcutr::Behaviour::new(key.public().to_peer_id()),
            ping: libp2p::ping::Behaviour::new(
                libp2p::ping::Config::new()
                    .with_interval(Duration::from_secs(15))
                    .with_timeout(Duration::from_secs(20)),
            ),
            autonat: libp2p::autonat::Behaviour::new(key.public().to_peer_id(), autonat_config()),
        })
    }
}

/// The device behind a peer id, if it is an Ed25519 key (peer ids of small keys embed
/// the key itself).
pub fn device_of(peer: &PeerId) -> Option<DeviceId> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(DeviceId(key.try_into_ed25519().ok()?.to_bytes()))
}

/// The peer id of a device.
pub fn peer_of(device: &DeviceId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(&device.0).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

/// TCP as every swarm of the node uses it: no Nagle delay.
fn tcp() -> libp2p::tcp::Config {
    libp2p::tcp::Config::default().nodelay(true)
}

/// A swarm over TCP + Noise + yamux with `behaviour`, closing connections idle for
/// `idle`.
pub fn swarm<B: libp2p::swarm::NetworkBehaviour>(
    key: Keypair,
    behaviour: B,
    idle: Duration,
) -> Result<libp2p::Swarm<B>, String> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| behaviour)
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

/// The node's swarm: TCP and QUIC, and circuits through relay devices, each with
/// Noise and yamux (QUIC has its own TLS 1.3); `make` builds the behaviour around
/// the relay client the transport made. Connections idle for `idle` close.
pub fn node_swarm(
    key: Keypair,
    make: impl FnOnce(libp2p::relay::client::Behaviour) -> Result<Behaviour, String>,
    idle: Duration,
) -> Result<libp2p::Swarm<Behaviour>, String> {
    Ok(libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| e.to_string())?
        .with_quic()
        .with_relay_client(libp2p::noise::Config::new, libp2p::yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|_, relay_client| {
            make(relay_client).map_err(Box::<dyn std::error::Error + Send + Sync>::from)
        })
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

/// The libp2p keypair of a device's Ed25519 secret key.
pub fn keypair(secret: &[u8; 32]) -> Keypair {
    let mut bytes = *secret;
    // Invariant: any 32 bytes are a valid Ed25519 secret key.
    Keypair::ed25519_from_bytes(&mut bytes).expect("32 bytes are an Ed25519 secret key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_devices_map_both_ways() {
        let secret = [9u8; 32];
        let key = keypair(&secret);
        let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
        let device = DeviceId(signing.verifying_key().to_bytes());
        assert_eq!(device_of(&key.public().to_peer_id()), Some(device));
        assert_eq!(peer_of(&device), Some(key.public().to_peer_id()));
    }

    #[test]
    fn the_topic_depends_on_the_genesis_only() {
        assert_eq!(
            topic(&DeviceId([1; 32])).hash(),
            topic(&DeviceId([1; 32])).hash()
        );
        assert_ne!(
            topic(&DeviceId([1; 32])).hash(),
            topic(&DeviceId([2; 32])).hash()
        );
        assert!(!topic(&DeviceId([1; 32])).to_string().contains("xmpp"));
    }
}
