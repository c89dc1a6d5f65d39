//! The running node: one tokio task owning the [`Device`] (engine and store), the
//! libp2p swarm, the mDNS daemon and the local listeners; a cloneable [`Handle`]
//! talks to it over a bounded channel, and the control socket serves the CLI
//! through such a handle. Swarm and engine events are handled in `events`,
//! discovery and re-dialling in `discover`.

mod addrs;
pub(crate) use addrs::invited;
mod discover;
mod events;
mod listen;
mod names;
mod outputs;
mod pep;
mod relayed;
mod revoked;
mod sightings;
mod start;
pub use start::start;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_protocol::record::DeviceId;
use kith_protocol::sync::{Input, RequestId};
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::warn;

use self::listen::{
    bind_ip, bind_stream, default_listen, is_ip6, listen_moving, port_of, reason, tcp_port,
    tcp_port_free,
};
use crate::api::{self, Call, Handle, Reply, Request};
use crate::device::Device;
use crate::discovery::{self, Advert, Discovery, Guise};
use crate::net::{self, Behaviour, PairBehaviour};
use crate::service::NetInfo;
use crate::{store, xmpp};

/// Most network events the node handles in a row while a sync frame waits to be
/// applied (each may leave another waiting) before it applies the frame and takes
/// its other work: a bound on how long a stream of frames holds that work back.
const DEFERRED_PASSES: u32 = 16;

/// Most control calls already waiting that the node answers before the item
/// index's writes that are due (which can take seconds after a large sync).
const CALLS_BEFORE_INDEX: usize = 64;

/// How a node runs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// libp2p listen addresses (default `/ip4/0.0.0.0/tcp/0`).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial whatever discovery finds.
    pub peers: Vec<Multiaddr>,
    /// Whether to run mDNS discovery.
    pub mdns: bool,
    /// Interfaces mDNS uses (all when empty).
    pub mdns_interfaces: Vec<String>,
    /// XEP-0174 stream port (any free port when `None`).
    pub xmpp_port: Option<u16>,
    /// Serve pubsub on the stream port to other users and machines too (the node's
    /// own user on this machine only when false; disco is served to all; retract
    /// stays the node's user's).
    pub xmpp_lan: bool,
    /// Where discovery reads the day its guise changes with (the system clock by
    /// default).
    pub calendar: discovery::Calendar,
}

/// Why the node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed; the node stops rather than send what it could not keep.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A listener could not be opened.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// libp2p could not be set up.
    #[error("network: {0}")]
    Network(String),
    /// mDNS could not be set up.
    #[error(transparent)]
    Discovery(#[from] discovery::Error),
    /// Storing failed while answering a request; the node stopped.
    #[error("the store failed: {0}")]
    Failed(String),
}

/// A node started by [`start`].
#[derive(Debug)]
pub struct Running {
    /// Talks to it.
    pub handle: Handle,
    /// Stops it (dropping this stops it, too).
    pub stop: oneshot::Sender<()>,
    /// Its task; ends with the node.
    pub task: tokio::task::JoinHandle<Result<(), Error>>,
}

struct Node {
    device: Device,
    /// This device's OpenPGP key, signing the secrets message for XMPP clients.
    ox_key: kith_protocol::ox::DeviceKey,
    /// Notices to the XEP-0174 streams.
    pep_notices: broadcast::Sender<Arc<xmpp::Notice>>,
    /// The secrets message for the approved clients, and the keyring it was made for.
    pep_secrets: watch::Sender<Option<Arc<kith_protocol::xml::Element>>>,
    pep_secrets_for: Option<BTreeSet<(String, bool)>>,
    /// The ids of the secrets the current message shares.
    pep_secrets_keys: BTreeSet<String>,
    /// Names of retracted items, forgotten once the retraction is notified.
    pep_forget: Vec<(kith_protocol::item::NodeKind, kith_protocol::record::ItemId)>,
    /// Item ids clients chose that are not kith's form (see `store::names`).
    pep_names: BTreeMap<(kith_protocol::item::NodeKind, kith_protocol::record::ItemId), String>,
    swarm: Swarm<Behaviour>,
    /// The pairing listener: its own port, open only while an invitation is.
    pair_swarm: Swarm<PairBehaviour>,
    pair_listen: Vec<Multiaddr>,
    topic: gossipsub::IdentTopic,
    me: PeerId,
    out_requests: HashMap<OutboundRequestId, RequestId>,
    /// Devices the roster says were revoked (their peer ids), and when each was
    /// last told so on coming back ([`Node::tell_returning`]).
    revoked_peers: BTreeMap<PeerId, revoked::Revoked>,
    /// Revocation notices in flight ([`Node::tell_revoked`]): the peer is cut off
    /// when its answer comes, or the request fails.
    notices: HashMap<OutboundRequestId, PeerId>,
    /// This device was revoked and has stopped syncing ([`Node::follow_own_revocation`]).
    revoked_here: bool,
    /// Devices just revoked that are being cut off, until when at most: while any
    /// is, gossip waits in `held` (gossipsub would still send it to them).
    cutting: BTreeMap<PeerId, Instant>,
    /// Gossip frames waiting for the devices in `cutting` to be gone.
    held: Vec<Vec<u8>>,
    inbound: HashMap<u64, ResponseChannel<net::SyncFrame>>,
    next_inbound: u64,
    /// Roster peers connected, with the remote address of their first connection.
    connected: BTreeMap<PeerId, Multiaddr>,
    /// Active roster devices other than this one.
    allowed: BTreeSet<PeerId>,
    /// The active roster devices `allowed` was derived from.
    allowed_devices: BTreeSet<DeviceId>,
    /// Peers connected to the pairing listener, and until when they may stay.
    pairing: BTreeMap<PeerId, Instant>,
    /// Configured addresses, and the peer found there.
    configured: Vec<(Multiaddr, Option<PeerId>)>,
    listen: Vec<Multiaddr>,
    /// The libp2p listeners that move with the guise (those asked for on port 0), with
    /// the address asked for; the port advertised, once known.
    moving: Vec<(ListenerId, Multiaddr)>,
    /// A listen address appeared: the mDNS advert follows at the next flush.
    readvertise_due: bool,
    p2p_port: Option<u16>,
    xmpp_port: u16,
    /// New XEP-0174 stream listeners for the server task (none when the port is
    /// configured), and the address they bind.
    stream_rebind: Option<(mpsc::Sender<tokio::net::TcpListener>, IpAddr)>,
    xmpp_instance: String,
    instance_tx: watch::Sender<xmpp::Names>,
    calendar: discovery::Calendar,
    /// What this device shows on the LAN now.
    guise: Guise,
    discovery: Option<Discovery>,
    advert: Option<Advert>,
    /// mDNS sightings of roster devices, and advertisements kept unrecognised.
    sightings: sightings::Sightings,
    /// `Request::Wait`s held: the count each waits past, its deadline, its reply.
    waiters: Vec<(u64, Instant, mpsc::Sender<Reply>)>,
    /// The roster's relay devices connected, and this device's reservations there.
    relays: BTreeMap<PeerId, relayed::Relay>,
    /// Every connection to each roster device, with its address.
    links: BTreeMap<PeerId, relayed::Links>,
    /// The direct addresses this run's own dials reached each roster device at
    /// (most recent first, at most `addrs::MAX_REACHED`): remembered first when
    /// its identify arrives (`addrs::remembered`).
    reached_at: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// The connections of this device's own dials under way (`Node::dial_own`),
    /// with the peer each dials when known.
    own_dials: BTreeMap<libp2p::swarm::ConnectionId, Option<PeerId>>,
    /// Rounds of redials so far (`Node::reuses_port` alternates by it).
    redial_rounds: u64,
    /// Whether a listen address is unspecified (`0.0.0.0`, `::`): the node then
    /// listens on every interface, loopback among them.
    listen_any: bool,
    /// What AutoNAT and the relays say about reaching this device.
    reach: relayed::Reach,
}

/// Sleeps until `t`; never ends without one.
async fn until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}

impl Node {
    async fn run(
        &mut self,
        calls: &mut mpsc::Receiver<Call>,
        mut xmpp_calls: mpsc::Receiver<xmpp::Call>,
        mut seen: Option<mpsc::Receiver<discovery::Event>>,
        mut stop: oneshot::Receiver<()>,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut ticks: u64 = 0;
        // Network events handled in a row while a frame waited to be applied.
        let mut deferred_passes = 0;
        loop {
            self.flush()?;
            if self.device.engine.has_deferred() {
                // A sync frame was answered before it is applied. The answer is in
                // the behaviour until the swarm is polled: polled once here, it is
                // handed to its connection (any event that comes of it is handled,
                // applying the frame first). Then this task yields before the
                // frame's work: tokio runs a task woken from a worker next on that
                // same worker, and other workers do not take it, so without the
                // yield the connection's task wrote the answer only once the frame
                // was applied (measured: docs/performance.md, twenty-sixth session).
                // At most `DEFERRED_PASSES` events so: then the frame is applied
                // at once, and stopping, calls and timers have their turn.
                if deferred_passes < DEFERRED_PASSES {
                    deferred_passes += 1;
                    tokio::select! {
                        biased;
                        event = self.swarm.select_next_some() => {
                            tokio::task::yield_now().await;
                            self.on_swarm_batch(event)?;
                            continue;
                        }
                        () = std::future::ready(()) => {}
                    }
                }
                tokio::task::yield_now().await;
                // Applied while the peer builds the next frame and this device
                // checks it ahead; what applying it sends leaves in turn.
                if self.device.apply_deferred()? {
                    self.flush()?;
                }
            }
            deferred_passes = 0;
            self.pep_notify()?;
            self.answer_waiters();
            let wait_due = self.waiters.iter().map(|w| w.1).min();
            let index_due = self.device.index_due();
            let due = self
                .device
                .engine
                .poll_timeout()
                .map(|ms| self.device.clock.instant_of(ms))
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                _ = &mut stop => {
                    // Where the connected devices stand, for the next run.
                    self.catch_up_index();
                    for d in self.connected.keys().filter_map(net::device_of) {
                        self.device.keep_sync_state(&d)?;
                    }
                    return Ok(());
                }
                event = self.swarm.select_next_some() => self.on_swarm_batch(event)?,
                event = self.pair_swarm.select_next_some() => {
                    self.on_pair_swarm(event);
                    // Pairing answers a store failure with a refusal: the device
                    // is failed all the same.
                    if let Some(e) = self.device.failed.take() {
                        return Err(Error::Failed(e));
                    }
                }
                call = calls.recv() => match call {
                    Some(call) => {
                        self.on_call(call);
                        if let Some(e) = self.device.failed.take() {
                            return Err(Error::Failed(e));
                        }
                    }
                    None => {
                        self.catch_up_index();
                        return Ok(());
                    }
                },
                Some(call) = xmpp_calls.recv() => {
                    self.on_xmpp(call);
                    if let Some(e) = self.device.failed.take() {
                        return Err(Error::Failed(e));
                    }
                }
                Some(s) = async { match seen.as_mut() { Some(rx) => rx.recv().await, None => None } } => match s {
                    discovery::Event::Seen(s) => self.on_seen(s),
                    discovery::Event::Gone(fullname) => self.on_gone(&fullname),
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {
                    self.device.input(Input::Timeout)?;
                }
                () = until(wait_due) => {}
                () = until(index_due) => {
                    // Calls already waiting are answered first: the writes can take
                    // seconds after a large sync, and a wait for what the sync
                    // brought would otherwise be answered only after them
                    // (measured: docs/performance.md, thirty-fourth session).
                    for _ in 0..CALLS_BEFORE_INDEX {
                        let Ok(call) = calls.try_recv() else { break };
                        self.on_call(call);
                        if let Some(e) = self.device.failed.take() {
                            return Err(Error::Failed(e));
                        }
                    }
                    // What they sent (an edit's gossip) leaves before the writes.
                    self.flush()?;
                    self.answer_waiters();
                    // The answers' tasks were woken on this worker, where tokio
                    // runs them next, and no other worker takes them: yielded to,
                    // they leave before the writes hold this worker.
                    tokio::task::yield_now().await;
                    // A slice at a time: what is left is due at once, after the
                    // node's other work that is ready.
                    if let Err(e) = self.device.catch_up_index_slice() {
                        warn!("writing the item index and the history: {e}");
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.housekeeping(ticks.is_multiple_of(5))?;
                }
            }
        }
    }

    fn net_info(&self) -> NetInfo {
        NetInfo {
            online: true,
            listen: self.listen.clone(),
            pair_listen: self.pair_listen.clone(),
            connected: self
                .connected
                .iter()
                .filter_map(|(p, a)| Some((net::device_of(p)?, a.to_string())))
                .collect(),
            xmpp_port: Some(self.xmpp_port),
            xmpp_instance: Some(self.xmpp_instance.clone()),
            reachable: self.reachability(),
            relayed_by: self
                .relays
                .iter()
                .filter(|(_, r)| r.reserved)
                .filter_map(|(p, _)| net::device_of(p))
                .collect(),
        }
    }

    /// Writes the item index and history entries that wait (`Device::catch_up_index`).
    /// A failure (a full disk) is logged: the records are stored, the writes are
    /// tried again later, and the next open rebuilds the index if they never are.
    fn catch_up_index(&mut self) {
        if let Err(e) = self.device.catch_up_index() {
            warn!("writing the item index and the history: {e}");
        }
    }

    /// Answers the waits whose count was passed or whose deadline came.
    fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let (changes, now) = (self.device.changes, Instant::now());
        let index_behind = self.device.index_behind();
        let contacts = self.device.engine.view().contact_count() as u64;
        self.waiters.retain(|(after, deadline, reply)| {
            if changes <= *after && now < *deadline {
                return true;
            }
            let answer = Reply::Ok(
                api::answer::Changes {
                    changes,
                    contacts,
                    index_behind,
                }
                .into(),
            );
            // A wait's channel carries nothing else: it has room.
            if let Err(mpsc::error::TrySendError::Full(answer)) = reply.try_send(answer) {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let _ = reply.send(answer).await;
                });
            }
            false
        });
    }

    fn on_call(&mut self, call: Call) {
        if let Request::Wait { after, timeout_ms } = call.request {
            if self.waiters.len() >= api::MAX_WAITERS {
                let reply = call.reply;
                tokio::spawn(async move {
                    let error = api::Error::new(
                        api::ErrorKind::Busy,
                        "as many waits as the node holds are waiting",
                    );
                    let _ = reply.send(Reply::Error(error)).await;
                });
                return;
            }
            let timeout = Duration::from_millis(timeout_ms.min(api::MAX_WAIT_MS));
            self.waiters
                .push((after, Instant::now() + timeout, call.reply));
            return;
        }
        let net = self.net_info();
        let reply = call.reply.clone();
        let mut progress = |done, total| {
            let _ = reply.try_send(Reply::Progress { done, total });
        };
        let pairing = matches!(
            call.request,
            Request::Invite { .. } | Request::CancelInvites { .. }
        );
        // A long call (an import) holds this task; other tasks (the control socket's
        // clients sending its progress lines, XEP-0174 streams) go on elsewhere. A
        // quick one (an edit) runs here: handing the worker over costs it two
        // thread switches, a sixth of an edit's time on the processor.
        let multi = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
            && !call.request.is_quick();
        let device = &mut self.device;
        let call_it = || device.handle(call.request, &net, &mut progress);
        let result = if multi {
            tokio::task::block_in_place(call_it)
        } else {
            call_it()
        };
        if pairing {
            // An invitation opens the pairing gate and shows on mDNS at once.
            self.update_pairing();
            self.readvertise();
        }
        let line = match result {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Error(e),
        };
        let reply = call.reply;
        // The client's channel has room for the answer unless progress lines filled
        // it; then a task waits for room.
        let line = match reply.try_send(line) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
            Err(mpsc::error::TrySendError::Full(line)) => line,
        };
        tokio::spawn(async move {
            let _ = reply.send(line).await;
        });
    }
}
