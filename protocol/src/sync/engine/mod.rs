//! [`Engine`]: gossip, reconciliation sessions, persistence outputs and timers around
//! a device's [`Book`]. Sessions are in `session`, roster and secrets in `devices`.

mod command;
mod deferred;
mod devices;
#[cfg(test)]
mod gossip_tests;
#[cfg(test)]
mod harness;
mod io;
mod owed;
mod peer;
mod records;
mod relay;
#[cfg(test)]
mod relay_tests;
#[cfg(test)]
mod roster_tests;
mod sent;
mod session;
mod state;
#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod tests;

pub use command::{Command, Error};
pub use io::{Event, Input, Output};
pub use relay::{RELAY_MAX_WAIT_MS, RELAY_QUIET_MS};
pub use state::{Relation, SyncState};

use peer::Peer;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::gc;
use super::recon;
use super::wire::{self, Frame};
use crate::clock::WallTime;
use crate::contacts::{Book, View};
use crate::keys::KeyWrap;
use crate::record::{Body, DeviceId, ItemId, Record, Space};
use crate::replica::Replica;
use crate::roster::Roster;
use crate::seal::Keyring;

/// Record bytes a request or response frame carries at most: what the frame limit
/// leaves beside the largest reconciliation message, with room for the framing.
pub const RECORD_BUDGET: usize = wire::MAX_FRAME_BYTES - recon::MAX_MESSAGE_BYTES - 16 * 1024;
const _: () =
    assert!(RECORD_BUDGET + recon::MAX_MESSAGE_BYTES + 16 * 1024 <= wire::MAX_FRAME_BYTES);

/// Gossip flushes that go out at once in one `gossip_delay_ms` window; past them,
/// writes are coalesced until the window ends (batching only under load).
pub const GOSSIP_BURST: usize = 8;

/// Most records waiting to be gossiped; a larger change goes by reconciliation.
pub const MAX_GOSSIP_QUEUE: usize = 4_096;

/// After word of gossip or a response lost to a peer ([`Input::GossipLost`],
/// [`Input::ResponseLost`]) brought a reconciliation with it forward, further word
/// within this many milliseconds brings none forward.
pub const GOSSIP_LOST_GAP_MS: u64 = 5_000;

/// After a request to a peer failed (no answer within the transport's timeout, a
/// peer paused or overloaded), the next reconciliation with it starts this many
/// milliseconds later, twice as long after each further failure in a row, at most
/// the reconciliation interval: a peer back from a pause is synced with again within
/// about as long as it was away, not a whole interval later.
pub const RETRY_AFTER_MS: u64 = 1_000;

/// A record sent to a peer is not sent to it again within this many milliseconds
/// by another exchange that finds the peer lacks it: the two reconciliations that
/// run at once with a peer (each side starts one on connecting) would otherwise
/// both send it, and a new device would receive and check much of its first sync
/// twice. Past it (a frame lost on the way, say) the record goes again.
pub const RESEND_AFTER_MS: u64 = 10_000;

/// Most records remembered as sent to one peer (see [`RESEND_AFTER_MS`]); past
/// it, nothing more is remembered until older entries expire: a record may then be
/// sent twice, never left out.
pub const MAX_SENT_REMEMBERED: usize = 1 << 17;

/// Timing and size settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pause between reconciliations with one peer, in milliseconds.
    pub recon_interval_ms: u64,
    /// Random extra pause, up to this many milliseconds, so peers do not align.
    pub recon_jitter_ms: u64,
    /// Coalescing of gossip: the first [`GOSSIP_BURST`] writes in a window this long
    /// are published at once; later ones wait for the window's end and go together
    /// (batching only under load).
    pub gossip_delay_ms: u64,
    /// How often held (future-stamped) records are re-examined.
    pub held_check_ms: u64,
    /// Budget of record bytes in one request or response frame (at most
    /// [`RECORD_BUDGET`], so that a frame stays within the peer's limit).
    pub frame_record_bytes: usize,
    /// How often this device acknowledges its tombstones and collects those every
    /// device acknowledged.
    pub ack_interval_ms: u64,
    /// Largest roster (active devices) for which tombstones are collected. Every
    /// device's acknowledgement reaches every other device, so the cost grows with
    /// the square of the roster; above this, tombstones are simply kept.
    pub gc_max_devices: usize,
    /// Whether a frame that asks nothing of this device, with more to come, may be
    /// applied after its answer has left (see [`Engine::apply_deferred`]): the
    /// driver then calls `apply_deferred` once it has carried out the outputs.
    pub defer_frames: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            recon_interval_ms: 60_000,
            recon_jitter_ms: 10_000,
            gossip_delay_ms: 50,
            held_check_ms: 1_000,
            frame_record_bytes: RECORD_BUDGET,
            ack_interval_ms: 60_000,
            gc_max_devices: 64,
            defer_frames: false,
        }
    }
}

/// The time, as the driver reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Now {
    /// Monotonic milliseconds (any origin); never goes backwards.
    pub mono_ms: u64,
    /// Wall-clock time, for record stamps.
    pub wall: WallTime,
}

/// Correlates a request with its response or failure.
pub type RequestId = u64;

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records refused (bad signature, unknown author, hold full).
    pub rejected_records: u64,
    /// Records received that were already here, exactly: sent for nothing.
    pub duplicate_records: u64,
    /// Records dropped because their author was revoked before stamping them.
    pub dropped_after_revocation: u64,
    /// Frames that did not decode.
    pub bad_frames: u64,
    /// Frames refused because their sender is not an active roster device.
    pub refused_frames: u64,
    /// Tombstones collected.
    pub collected: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Completed reconciliations.
    pub reconciliations: u64,
    /// Most round trips one reconciliation took.
    pub max_round_trips: u32,
    /// Frames applied after their answer had left ([`Config::defer_frames`]).
    pub deferred_frames: u64,
}

#[derive(Debug)]
struct Session {
    salt: u64,
    request: RequestId,
    round_trips: u32,
}

/// One device's sync engine.
#[derive(Debug)]
pub struct Engine<P> {
    config: Config,
    book: Book,
    genesis: DeviceId,
    roster: Roster,
    wrap: Box<dyn KeyWrap>,
    /// Secret ids the keyring held at start (from pairing or the local store).
    base_secrets: BTreeSet<String>,
    /// When acknowledgements and collection run next.
    next_ack_ms: u64,
    /// Decoded acknowledgements of every device.
    acks: gc::Acks,
    /// Key records addressed here that unwrapped: item → (version, secret ids).
    unwrapped: BTreeMap<ItemId, (crate::record::Version, Vec<String>)>,
    rng: ChaCha20Rng,
    peers: BTreeMap<P, Peer>,
    requests: BTreeMap<RequestId, P>,
    next_request: RequestId,
    outputs: VecDeque<Output<P>>,
    gossip: Vec<Record>,
    gossip_due_ms: Option<u64>,
    /// Set while [`Engine::execute_bulk`] runs: what is written goes by
    /// reconciliation, not gossip.
    bulk: bool,
    /// The current gossip window (`gossip_delay_ms` long): when it began, and how
    /// many flushes went out in it. The first [`GOSSIP_BURST`] writes of a window go
    /// at once; later ones wait for its end and go together.
    gossip_window: (u64, usize),
    next_held_check_ms: Option<u64>,
    set: Option<recon::Set>,
    /// Where each device stood when this one last heard from it ([`state`]).
    sync_states: BTreeMap<DeviceId, SyncState>,
    stats: Stats,
    /// The keyring as last handed out to persist.
    saved_keyring: command::KeyringState,
    /// How many set-aside key records the last audit looked at.
    set_aside_keys: usize,
    /// A frame's records waiting to be applied, the peer that sent them, and
    /// whether where that peer stands was noted with the frame ([`Engine::apply_deferred`]).
    deferred: Option<(P, Vec<Record>, bool)>,
    /// Changes by reconciliation to pass on to the other peers ([`relay`]).
    relay: Option<relay::Pending<P>>,
}

impl<P: Ord + Clone + Debug> Engine<P> {
    /// An engine over `book` (restored from what was persisted), for the account
    /// whose roster starts at `genesis`, wrapping secrets with `wrap`, with
    /// randomness from `seed`. Drain [`Engine::poll_output`] after construction too:
    /// checking what was persisted may already produce outputs.
    pub fn new(
        config: Config,
        book: Book,
        genesis: DeviceId,
        wrap: Box<dyn KeyWrap>,
        seed: [u8; 32],
        now: Now,
    ) -> Self {
        let roster = Roster::build(genesis, book.replica());
        let base_secrets = book.keyring().iter().map(|s| s.id.clone()).collect();
        let saved_keyring = book
            .keyring()
            .iter()
            .map(|s| (s.id.clone(), s.revoked))
            .collect();
        let mut engine = Self {
            config,
            book,
            genesis,
            roster,
            wrap,
            base_secrets,
            unwrapped: BTreeMap::new(),
            next_ack_ms: now.mono_ms,
            acks: gc::Acks::default(),
            rng: ChaCha20Rng::from_seed(seed),
            peers: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            outputs: VecDeque::new(),
            gossip: Vec::new(),
            gossip_due_ms: None,
            bulk: false,
            gossip_window: (0, 0),
            next_held_check_ms: None,
            set: None,
            sync_states: BTreeMap::new(),
            stats: Stats::default(),
            saved_keyring,
            set_aside_keys: 0,
            deferred: None,
            relay: None,
        };
        // What was persisted is checked again: records dropped after a revocation
        // may still be in the store.
        engine.after_roster_change();
        // Secrets addressed here that the keyring lacks (after a crash, say).
        let mine: Vec<Record> = engine.book.replica().space(Space::Keys).cloned().collect();
        for r in &mine {
            engine.receive_keys(r, now);
        }
        engine.audit_keys(now);
        engine.finish(now, false);
        engine
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The merged contact list, as of the last step (kept up to date by every
    /// input and command).
    pub fn view(&self) -> &View {
        self.book.current_view()
    }

    /// The records.
    pub fn replica(&self) -> &Replica {
        self.book.replica()
    }

    /// The secrets.
    pub fn keyring(&self) -> &Keyring {
        self.book.keyring()
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.book.device()
    }

    /// The device's contact book, for a driver that reads it in ways the getters do
    /// not (a view built from a cache, its changes for an index, a check of a
    /// command without writing). Changes made through it are not persisted: commands
    /// go through [`Engine::execute`].
    pub fn book_mut(&mut self) -> &mut Book {
        &mut self.book
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &P> {
        self.peers.keys()
    }

    /// The next output to carry out.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// Changes how often this device acknowledges tombstones and collects what
    /// every device acknowledged (between every second and once a day); the next
    /// round is due at most that long after `now`.
    pub fn set_ack_interval(&mut self, now: Now, ms: u64) {
        self.config.ack_interval_ms = ms.clamp(1_000, 86_400_000);
        self.next_ack_ms = self
            .next_ack_ms
            .min(now.mono_ms.saturating_add(self.config.ack_interval_ms));
    }

    /// When the engine next needs `Input::Timeout`, in monotonic milliseconds.
    pub fn poll_timeout(&self) -> Option<u64> {
        let recon = self
            .peers
            .values()
            .filter(|p| p.session.is_none() && p.device.is_none_or(|d| self.roster.is_active(&d)))
            .map(|p| p.next_recon_ms)
            .min();
        [
            recon,
            self.gossip_due_ms,
            self.next_held_check_ms,
            self.relay.as_ref().map(|r| r.due_ms),
            Some(self.next_ack_ms),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Now, input: Input<P>) {
        self.apply_deferred(now);
        match input {
            Input::Timeout => {}
            Input::Connected { peer, device } => {
                self.peers.insert(
                    peer,
                    Peer {
                        next_recon_ms: now.mono_ms,
                        device: Some(device),
                        ..Peer::default()
                    },
                );
            }
            Input::Disconnected(p) => {
                if let Some(peer) = self.peers.remove(&p)
                    && let Some(s) = peer.session
                {
                    self.requests.remove(&s.request);
                }
            }
            Input::Gossip { source, .. } if !self.roster.is_active(&source) => {
                // A revoked device (or a stranger) delivers nothing; what an active
                // device relays is checked record by record.
                self.stats.refused_frames += 1;
            }
            Input::Gossip { from, bytes, .. } => {
                match Frame::decode_lenient(&bytes, wire::MAX_GOSSIP_BYTES) {
                    Ok((Frame::Gossip { records }, skipped)) => {
                        self.skipped(&from, skipped);
                        self.apply(now, &from, records, false);
                    }
                    Ok(_) => self.bad_frame(&from, wire::Error::BadField("kind")),
                    Err(e) => self.bad_frame(&from, e),
                }
            }
            Input::Request { from, id, bytes } => self.on_request(now, from, id, &bytes),
            Input::Response { id, bytes } => self.on_response(now, id, &bytes),
            Input::RequestFailed { id } => {
                if let Some(p) = self.requests.remove(&id) {
                    let draw = self.rng.next_u64();
                    if let Some(peer) = self.peers.get_mut(&p) {
                        peer.session = None;
                        peer.owed.clear();
                        // What that request carried may not have arrived.
                        peer.sent.clear();
                        peer.failed(now, &self.config, draw);
                    }
                }
            }
            Input::ResponseLost(p) => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.sent.clear();
                    peer.bring_forward(now);
                }
            }
            Input::GossipLost(p) => {
                if let Some(peer) = self.peers.get_mut(&p) {
                    peer.bring_forward(now);
                }
            }
            Input::CheckNow => self.check_now(now),
        }
        self.timers(now);
        self.finish_step(now);
    }

    /// Acknowledges the tombstones held and collected here (when that changed), and
    /// collects and forgets what every active device acknowledged (see `sync::gc`).
    fn ack_and_collect(&mut self, now: Now) {
        self.next_ack_ms = now.mono_ms.saturating_add(self.config.ack_interval_ms);
        let me = self.me();
        if !self.roster.is_active(&me) || self.roster.active().count() > self.config.gc_max_devices
        {
            return;
        }
        let pass = self.acks.pass(self.book.replica(), &self.roster);
        if !pass.collect.is_empty() || !pass.forget.is_empty() {
            for (space, item) in &pass.collect {
                self.book.collect(*space, item);
            }
            for (space, item) in &pass.forget {
                self.book.drop_collected(*space, item);
            }
            self.stats.collected += pass.collect.len() as u64;
            self.outputs.push_back(Output::Collect {
                collect: pass.collect,
                forget: pass.forget,
            });
        }
        let mut records = Vec::new();
        let entries = self.acks.entries(self.book.replica(), &self.roster, &me);
        for (shard, entries) in entries.into_iter().enumerate() {
            let body = gc::encode(&entries);
            let written = gc::record(self.book.replica(), &me, shard).map(|r| &r.body);
            let unchanged = match written {
                Some(Body::Data(old)) => *old == body,
                _ => body.is_empty(),
            };
            if !unchanged {
                let item = gc::item(&me, shard);
                records.push(
                    self.book
                        .sign(Space::Acks, item, Body::Data(body), now.wall),
                );
            }
        }
        // Earlier versions acknowledged in one unbounded record: retract it.
        let legacy = gc::legacy_item(&me);
        if self
            .book
            .replica()
            .get(Space::Acks, &legacy)
            .is_some_and(|r| r.author() == me && !r.is_tombstone())
        {
            records.push(
                self.book
                    .sign(Space::Acks, legacy, Body::Tombstone, now.wall),
            );
        }
        for r in &records {
            self.book.insert_local(r.clone());
        }
        self.written(now, records);
    }

    fn timers(&mut self, now: Now) {
        if self.next_ack_ms <= now.mono_ms {
            self.ack_and_collect(now);
        }
        if self.gossip_due_ms.is_some_and(|t| t <= now.mono_ms) {
            self.flush_gossip(now);
        }
        if self.next_held_check_ms.is_some_and(|t| t <= now.mono_ms) {
            let released = self.book.release(&self.roster, now.wall);
            let keys: Vec<Record> = released
                .iter()
                .filter(|r| r.space == Space::Keys)
                .cloned()
                .collect();
            if released.iter().any(|r| r.space == Space::Roster) {
                self.after_roster_change();
            }
            for r in &keys {
                self.receive_keys(r, now);
            }
            if !keys.is_empty() || released.iter().any(|r| r.space == Space::Roster) {
                self.audit_keys(now);
            }
            if !released.is_empty() {
                // From whichever peer: passed on to all (gossip the transport
                // passed on already finds nothing to exchange).
                self.note_relay(now, None);
                self.outputs.push_back(Output::Persist(released));
                self.outputs.push_back(Output::Event(Event::Changed));
            }
            self.next_held_check_ms = None;
        }
        if self.book.replica().held().next().is_some() && self.next_held_check_ms.is_none() {
            self.next_held_check_ms = Some(now.mono_ms + self.config.held_check_ms);
        }
        self.relay_due(now);
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.session.is_none()
                    && p.next_recon_ms <= now.mono_ms
                    && p.device.is_none_or(|d| self.roster.is_active(&d))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for p in due {
            self.start_session(now, p);
        }
    }
}
