//! [`Engine`]: gossip, reconciliation sessions, persistence outputs and timers around
//! a device's [`Book`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::recon::{self, Key};
use super::wire::{self, Frame};
use crate::clock::WallTime;
use crate::contacts::{self, Book, Command};
use crate::item::NodeKind;
use crate::keys::{Delivery, KeyWrap};
use crate::record::{Body, DeviceId, ItemId, Record, Space};
use crate::replica::{Outcome, Rejected};
use crate::roster::{Entry, Role, Roster};
use crate::seal::Secret;

/// Timing and size settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Pause between reconciliations with one peer, in milliseconds.
    pub recon_interval_ms: u64,
    /// Random extra pause, up to this many milliseconds, so peers do not align.
    pub recon_jitter_ms: u64,
    /// How long new records wait to be batched into one gossip frame.
    pub gossip_delay_ms: u64,
    /// How often held (future-stamped) records are re-examined.
    pub held_check_ms: u64,
    /// Budget of record bytes in one request or response frame.
    pub frame_record_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            recon_interval_ms: 60_000,
            recon_jitter_ms: 10_000,
            gossip_delay_ms: 50,
            held_check_ms: 1_000,
            frame_record_bytes: wire::MAX_FRAME_BYTES - 64 * 1024,
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

/// Something that happened to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<P> {
    /// A timer the engine asked for came due (or any later time).
    Timeout,
    /// A user command on the contact list.
    Command(Command),
    /// Adds a device to the roster and gives it every secret (older ones marked
    /// revoked), if it is a full device.
    AddDevice(Entry),
    /// Revokes a device: it may author nothing after now, and the secrets rotate.
    RevokeDevice(DeviceId),
    /// New secrets for both nodes, sent to every full device, every item re-sealed.
    RotateSecrets,
    /// A peer is connected.
    Connected(P),
    /// A peer is gone.
    Disconnected(P),
    /// A gossip frame from a peer.
    Gossip {
        /// Who relayed it.
        from: P,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// A request from a peer; answer with [`Output::Respond`] carrying `id`.
    Request {
        /// The peer.
        from: P,
        /// The driver's handle for the response channel.
        id: u64,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// The answer to one of our requests.
    Response {
        /// Our request id.
        id: RequestId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// One of our requests failed (timeout, connection closed).
    RequestFailed {
        /// Our request id.
        id: RequestId,
    },
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<P> {
    /// Store these records durably before carrying out the outputs that follow.
    Persist(Vec<Record>),
    /// Publish a gossip frame to every peer.
    Publish(Vec<u8>),
    /// Send a request to a peer.
    Request {
        /// The peer.
        to: P,
        /// Id to give back in [`Input::Response`] or [`Input::RequestFailed`].
        id: RequestId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Answer the request the driver gave the id of.
    Respond {
        /// The id from [`Input::Request`].
        id: u64,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// For the application.
    Event(Event<P>),
}

/// What the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<P> {
    /// The merged view changed.
    Changed,
    /// A reconciliation with `peer` completed.
    Synced {
        /// The peer.
        peer: P,
        /// Request/response round trips it took.
        round_trips: u32,
    },
    /// A record was refused.
    Rejected {
        /// Who sent it.
        peer: P,
        /// Why.
        reason: Rejected,
    },
    /// A command given as [`Input::Command`] could not be carried out.
    CommandRefused(contacts::Error),
    /// A roster change was refused (unknown device, or this device may not).
    RosterRefused(String),
    /// Secrets addressed here could not be unwrapped.
    KeysRefused(String),
    /// A frame could not be decoded.
    BadFrame {
        /// Who sent it.
        peer: P,
        /// Why.
        reason: wire::Error,
    },
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records refused (bad signature, unknown author, hold full).
    pub rejected_records: u64,
    /// Records dropped because their author was revoked before stamping them.
    pub dropped_after_revocation: u64,
    /// Frames that did not decode.
    pub bad_frames: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Completed reconciliations.
    pub reconciliations: u64,
    /// Most round trips one reconciliation took.
    pub max_round_trips: u32,
}

#[derive(Debug)]
struct Session {
    salt: u64,
    request: RequestId,
    round_trips: u32,
}

#[derive(Debug, Default)]
struct Peer {
    session: Option<Session>,
    /// Keys whose records this peer still has to be sent in the current exchange.
    owed: BTreeSet<Key>,
    next_recon_ms: u64,
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
    /// Key records addressed here that unwrapped: item → (version, secret ids).
    unwrapped: BTreeMap<ItemId, (crate::record::Version, Vec<String>)>,
    rng: ChaCha20Rng,
    peers: BTreeMap<P, Peer>,
    requests: BTreeMap<RequestId, P>,
    next_request: RequestId,
    outputs: VecDeque<Output<P>>,
    gossip: Vec<Record>,
    gossip_due_ms: Option<u64>,
    next_held_check_ms: Option<u64>,
    set: Option<recon::Set>,
    stats: Stats,
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
        let mut engine = Self {
            config,
            book,
            genesis,
            roster,
            wrap,
            base_secrets,
            unwrapped: BTreeMap::new(),
            rng: ChaCha20Rng::from_seed(seed),
            peers: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            outputs: VecDeque::new(),
            gossip: Vec::new(),
            gossip_due_ms: None,
            next_held_check_ms: None,
            set: None,
            stats: Stats::default(),
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
        engine
    }

    /// The roster.
    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The device's contact book.
    pub fn book(&mut self) -> &mut Book {
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

    /// When the engine next needs `Input::Timeout`, in monotonic milliseconds.
    pub fn poll_timeout(&self) -> Option<u64> {
        let recon = self
            .peers
            .values()
            .filter(|p| p.session.is_none())
            .map(|p| p.next_recon_ms)
            .min();
        [recon, self.gossip_due_ms, self.next_held_check_ms]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Now, input: Input<P>) {
        match input {
            Input::Timeout => {}
            Input::Command(cmd) => {
                if let Err(e) = self.execute(now, cmd) {
                    self.outputs
                        .push_back(Output::Event(Event::CommandRefused(e)));
                }
            }
            Input::AddDevice(entry) => self.add_device(now, entry),
            Input::RevokeDevice(device) => self.revoke_device(now, device),
            Input::RotateSecrets => self.rotate(now),
            Input::Connected(p) => {
                self.peers.insert(
                    p,
                    Peer {
                        next_recon_ms: now.mono_ms,
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
            Input::Gossip { from, bytes } => match Frame::decode(&bytes, wire::MAX_GOSSIP_BYTES) {
                Ok(Frame::Gossip { records }) => self.apply(now, &from, records),
                Ok(_) => self.bad_frame(&from, wire::Error::BadField("kind")),
                Err(e) => self.bad_frame(&from, e),
            },
            Input::Request { from, id, bytes } => self.on_request(now, from, id, &bytes),
            Input::Response { id, bytes } => self.on_response(now, id, &bytes),
            Input::RequestFailed { id } => {
                if let Some(p) = self.requests.remove(&id)
                    && let Some(peer) = self.peers.get_mut(&p)
                {
                    peer.session = None;
                    peer.owed.clear();
                    peer.next_recon_ms = now.mono_ms + self.config.recon_interval_ms;
                }
            }
        }
        self.timers(now);
    }

    fn timers(&mut self, now: Now) {
        if self.gossip_due_ms.is_some_and(|t| t <= now.mono_ms) {
            self.flush_gossip();
        }
        if self.next_held_check_ms.is_some_and(|t| t <= now.mono_ms) {
            let released = self.book.release(&self.roster, now.wall);
            if released.iter().any(|r| r.space == Space::Roster) {
                self.after_roster_change();
                self.audit_keys(now);
            }
            if !released.is_empty() {
                self.set = None;
                self.outputs.push_back(Output::Persist(released));
                self.outputs.push_back(Output::Event(Event::Changed));
            }
            self.next_held_check_ms = None;
        }
        if self.book.replica().held().next().is_some() && self.next_held_check_ms.is_none() {
            self.next_held_check_ms = Some(now.mono_ms + self.config.held_check_ms);
        }
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| p.session.is_none() && p.next_recon_ms <= now.mono_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for p in due {
            self.start_session(p);
        }
    }

    /// Carries out a command and returns its result; on success the records are
    /// persisted and gossiped like [`Input::Command`] does.
    pub fn execute(&mut self, now: Now, cmd: Command) -> Result<(), contacts::Error> {
        let mut rng = self.rng.clone();
        let records = self.book.execute(cmd, now.wall, &mut rng)?;
        self.rng = rng;
        self.written(now, records);
        self.timers(now);
        Ok(())
    }

    /// Persists and gossips records just written here.
    fn written(&mut self, now: Now, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.set = None;
        self.outputs.push_back(Output::Persist(records.clone()));
        self.outputs.push_back(Output::Event(Event::Changed));
        self.gossip.extend(records);
        self.gossip_due_ms
            .get_or_insert(now.mono_ms + self.config.gossip_delay_ms);
    }

    fn me(&self) -> DeviceId {
        self.book.device()
    }

    fn refuse(&mut self, why: &str) {
        self.outputs
            .push_back(Output::Event(Event::RosterRefused(why.to_owned())));
    }

    fn add_device(&mut self, now: Now, entry: Entry) {
        if !self.roster.is_active(&self.me()) {
            return self.refuse("this device is not in the roster");
        }
        if self
            .roster
            .get(&entry.device)
            .is_some_and(|m| m.revoked_at.is_some())
        {
            return self.refuse("a revoked device cannot come back");
        }
        let body = Body::Data(entry.encode());
        let record = self
            .book
            .sign(Space::Roster, Entry::item(&entry.device), body, now.wall);
        self.book.insert_local(record.clone());
        self.after_roster_change();
        let mut records = vec![record];
        if entry.role == Role::Full && entry.device != self.me() {
            // Every secret; all but the current ones marked revoked (XEP-0473 §4).
            let keyring = self.book.keyring();
            let current: Vec<&str> = NodeKind::ALL
                .iter()
                .filter_map(|n| keyring.current(*n))
                .map(|s| s.id.as_str())
                .collect();
            let secrets: Vec<Secret> = keyring
                .iter()
                .map(|s| Secret {
                    revoked: s.revoked || !current.contains(&s.id.as_str()),
                    ..s.clone()
                })
                .collect();
            records.extend(self.deliver(now, &[entry.device], &secrets));
        }
        self.written(now, records);
    }

    fn revoke_device(&mut self, now: Now, device: DeviceId) {
        let Some(member) = self.roster.get(&device) else {
            return self.refuse("no such device");
        };
        let entry = Entry {
            revoked: true,
            ..member.entry.clone()
        };
        if !self.roster.is_active(&self.me()) {
            return self.refuse("this device is not in the roster");
        }
        let record = self.book.sign(
            Space::Roster,
            Entry::item(&device),
            Body::Data(entry.encode()),
            now.wall,
        );
        self.book.insert_local(record.clone());
        self.after_roster_change();
        self.written(now, vec![record]);
        self.rotate(now);
    }

    fn rotate(&mut self, now: Now) {
        if self
            .roster
            .get(&self.me())
            .is_some_and(|m| m.entry.role != Role::Full)
        {
            return;
        }
        let fresh: Vec<Secret> = NodeKind::ALL
            .iter()
            .map(|n| Secret::generate(*n, now.wall, &mut self.rng))
            .collect();
        // Every active full device gets them, this one included: a delivery is what
        // vouches for a secret (see `audit_keys`).
        let to: Vec<DeviceId> = self
            .roster
            .active()
            .filter(|m| m.entry.role == Role::Full)
            .map(|m| m.entry.device)
            .collect();
        let mut records = self.deliver(now, &to, &fresh);
        let me = self.me();
        let mine: Vec<Record> = records
            .iter()
            .filter(|r| matches!(&r.body, Body::Data(d) if Delivery::decode(d).is_ok_and(|d| d.to == me)))
            .cloned()
            .collect();
        for r in &mine {
            self.receive_keys(r, now);
        }
        let mut rng = self.rng.clone();
        if let Ok(resealed) = self.book.execute(Command::Reseal, now.wall, &mut rng) {
            records.extend(resealed);
        }
        self.rng = rng;
        self.written(now, records);
    }

    /// Key records carrying `secrets` to each device in `to`.
    fn deliver(&mut self, now: Now, to: &[DeviceId], secrets: &[Secret]) -> Vec<Record> {
        let Some(first) = secrets.first() else {
            return Vec::new();
        };
        let mut records = Vec::new();
        for device in to {
            let Some(member) = self.roster.get(device).cloned() else {
                continue;
            };
            match self.wrap.wrap(secrets, &member, now.wall, &mut self.rng) {
                Ok(wrapped) => {
                    let body = Body::Data(
                        Delivery {
                            to: *device,
                            wrapped,
                        }
                        .encode(),
                    );
                    let record = self.book.sign(
                        Space::Keys,
                        Delivery::item(device, &first.id),
                        body,
                        now.wall,
                    );
                    self.book.insert_local(record.clone());
                    records.push(record);
                }
                Err(e) => self.outputs.push_back(Output::Event(Event::KeysRefused(e))),
            }
        }
        records
    }

    /// Rebuilds the roster after a roster record changed, and drops records whose
    /// author it no longer allows; returns how many were dropped.
    fn after_roster_change(&mut self) -> usize {
        let mut dropped = 0;
        // Setting records aside or putting them back may change the roster itself
        // (a roster record by a revoked device); repeat until it is stable.
        for _ in 0..8 {
            self.roster = Roster::build(self.genesis, self.book.replica());
            let (moved, restored) = self.book.retain_authors(&self.roster);
            dropped += moved;
            if !restored.is_empty() {
                self.outputs.push_back(Output::Persist(restored));
            }
            if moved == 0 && Roster::build(self.genesis, self.book.replica()) == self.roster {
                break;
            }
        }
        self.stats.dropped_after_revocation += dropped as u64;
        self.set = None;
        dropped
    }

    /// Keeps the keyring honest after records were dropped: a secret may seal new
    /// items only while the initial keyring or a key record still present vouches for
    /// it. A secret whose delivery was dropped (it came from a device revoked before
    /// it sent it) stays for reading but is marked revoked, and a full device then
    /// rotates, so that what was sealed with it is sealed again with a secret every
    /// device receives.
    fn audit_keys(&mut self, now: Now) {
        let replica = self.book.replica();
        let vouched: BTreeSet<&String> = self
            .unwrapped
            .iter()
            .filter(|(item, (v, _))| {
                replica
                    .get(Space::Keys, item)
                    .is_some_and(|r| r.version == *v)
            })
            .flat_map(|(_, (_, ids))| ids)
            .chain(&self.base_secrets)
            .collect();
        let orphans: Vec<String> = self
            .book
            .keyring()
            .iter()
            .filter(|s| !s.revoked && !vouched.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        // A current secret delivered to a device that is revoked now (a rotation
        // that crossed the revocation) must be replaced too.
        let revoked: Vec<DeviceId> = self
            .roster
            .members()
            .filter(|m| m.revoked_at.is_some())
            .map(|m| m.entry.device)
            .collect();
        let leaked = NodeKind::ALL
            .iter()
            .filter_map(|n| self.book.keyring().current(*n))
            .any(|s| {
                revoked.iter().any(|d| {
                    self.book
                        .replica()
                        .get(Space::Keys, &Delivery::item(d, &s.id))
                        .is_some()
                })
            });
        if orphans.is_empty() && !leaked {
            return;
        }
        let keyring = self.book.keyring_mut();
        for id in &orphans {
            keyring.revoke(id);
        }
        if self.roster.is_active(&self.me()) {
            self.rotate(now);
        }
    }

    /// Unwraps a key record if it is addressed here.
    fn receive_keys(&mut self, record: &Record, now: Now) {
        let Body::Data(d) = &record.body else { return };
        let Ok(delivery) = Delivery::decode(d) else {
            return;
        };
        if delivery.to != self.me() {
            return;
        }
        let Some(author) = self.roster.get(&record.author()).cloned() else {
            return;
        };
        match self
            .wrap
            .unwrap(&delivery.wrapped, &author, &self.roster, now.wall)
        {
            Ok(secrets) => {
                let ids = secrets.iter().map(|s| s.id.clone()).collect();
                self.unwrapped.insert(record.item, (record.version, ids));
                let keyring = self.book.keyring_mut();
                for s in secrets {
                    keyring.insert(s);
                }
                self.outputs.push_back(Output::Event(Event::Changed));
            }
            Err(e) => self.outputs.push_back(Output::Event(Event::KeysRefused(e))),
        }
    }

    fn flush_gossip(&mut self) {
        self.gossip_due_ms = None;
        let records = std::mem::take(&mut self.gossip);
        let mut batch = Vec::new();
        let mut size = 0;
        for r in records {
            let len = r.encode().len() + 8;
            if size + len > wire::MAX_GOSSIP_BYTES - 64 && !batch.is_empty() {
                self.publish(std::mem::take(&mut batch));
                size = 0;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.publish(batch);
        }
    }

    fn publish(&mut self, records: Vec<Record>) {
        let bytes = Frame::Gossip { records }.encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Publish(bytes));
    }

    fn count_out(&mut self, len: usize) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
    }

    fn bad_frame(&mut self, peer: &P, reason: wire::Error) {
        self.stats.bad_frames += 1;
        self.outputs.push_back(Output::Event(Event::BadFrame {
            peer: peer.clone(),
            reason,
        }));
    }

    /// Applies records from `peer`; persists those that changed the replica. Roster
    /// records go first, so that records by a device added in the same batch are
    /// accepted.
    fn apply(&mut self, now: Now, peer: &P, mut records: Vec<Record>) {
        records.sort_by_key(|r| r.space != Space::Roster);
        let mut changed = Vec::new();
        let mut audit = false;
        for r in records {
            match self.book.receive(r.clone(), &self.roster, now.wall) {
                Ok(o) if o.changed() => {
                    if r.space == Space::Roster {
                        self.after_roster_change();
                        audit = true;
                    }
                    changed.push(r);
                }
                Ok(Outcome::Held) => {
                    self.next_held_check_ms
                        .get_or_insert(now.mono_ms + self.config.held_check_ms);
                }
                Ok(_) => {}
                Err(reason) => {
                    self.stats.rejected_records += 1;
                    self.outputs.push_back(Output::Event(Event::Rejected {
                        peer: peer.clone(),
                        reason,
                    }));
                }
            }
        }
        if !changed.is_empty() {
            self.set = None;
            let keys: Vec<Record> = changed
                .iter()
                .filter(|r| r.space == Space::Keys)
                .cloned()
                .collect();
            self.outputs.push_back(Output::Persist(changed));
            self.outputs.push_back(Output::Event(Event::Changed));
            for r in &keys {
                self.receive_keys(r, now);
            }
        }
        if audit {
            self.audit_keys(now);
        }
    }

    fn set(&mut self) -> &recon::Set {
        if self.set.is_none() {
            let entries = self.book.replica().records().map(|r| {
                let mut h = [0u8; 16];
                h.copy_from_slice(&r.signature[..16]);
                (
                    Key {
                        space: r.space.code(),
                        item: r.item.0,
                    },
                    u128::from_le_bytes(h),
                )
            });
            self.set = Some(recon::Set::new(entries));
        }
        self.set.as_ref().expect("just built")
    }

    /// Records for the keys `owed` to `peer`, within the frame budget; the rest stay
    /// owed.
    fn take_owed(&mut self, p: &P) -> (Vec<Record>, bool) {
        let budget = self.config.frame_record_bytes;
        let Some(peer) = self.peers.get_mut(p) else {
            return (Vec::new(), false);
        };
        let mut out = Vec::new();
        let mut size = 0;
        while let Some(key) = peer.owed.first().copied() {
            let space = Space::from_code(u64::from(key.space)).unwrap_or(Space::Contacts);
            let Some(r) = self.book.replica().get(space, &ItemId(key.item)) else {
                peer.owed.remove(&key);
                continue;
            };
            let len = r.encode().len() + 8;
            if size + len > budget && !out.is_empty() {
                break;
            }
            size += len;
            out.push(r.clone());
            peer.owed.remove(&key);
        }
        (out, !peer.owed.is_empty())
    }

    fn start_session(&mut self, p: P) {
        let salt = self.rng.next_u64();
        let msg = self.set().initiate();
        self.send_request(p, salt, msg, 0);
    }

    fn send_request(&mut self, p: P, salt: u64, msg: recon::Message, round_trips: u32) {
        let (records, more) = self.take_owed(&p);
        let id = self.next_request;
        self.next_request += 1;
        let bytes = Frame::Request {
            salt,
            msg,
            records,
            more,
        }
        .encode();
        self.count_out(bytes.len());
        self.requests.insert(id, p.clone());
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.session = Some(Session {
                salt,
                request: id,
                round_trips: round_trips + 1,
            });
        }
        self.outputs.push_back(Output::Request { to: p, id, bytes });
    }

    fn on_request(&mut self, now: Now, from: P, id: u64, bytes: &[u8]) {
        let (salt, msg, records) = match Frame::decode(bytes, wire::MAX_FRAME_BYTES) {
            Ok(Frame::Request {
                salt, msg, records, ..
            }) => (salt, msg, records),
            Ok(_) => {
                self.bad_frame(&from, wire::Error::BadField("kind"));
                return self.respond_empty(id);
            }
            Err(e) => {
                self.bad_frame(&from, e);
                return self.respond_empty(id);
            }
        };
        self.apply(now, &from, records);
        let (reply, send) = match self.set().respond(&msg, salt) {
            Ok(r) => r,
            Err(e) => {
                self.bad_frame(&from, wire::Error::Recon(e));
                return self.respond_empty(id);
            }
        };
        self.peers
            .entry(from.clone())
            .or_insert_with(|| Peer {
                next_recon_ms: now.mono_ms,
                ..Peer::default()
            })
            .owed
            .extend(send);
        let (records, more) = self.take_owed(&from);
        let bytes = Frame::Response {
            msg: reply,
            records,
            more,
        }
        .encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Respond { id, bytes });
    }

    fn respond_empty(&mut self, id: u64) {
        let bytes = Frame::Response {
            msg: recon::Message::default(),
            records: Vec::new(),
            more: false,
        }
        .encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Respond { id, bytes });
    }

    fn on_response(&mut self, now: Now, id: RequestId, bytes: &[u8]) {
        let Some(p) = self.requests.remove(&id) else {
            return;
        };
        let Some((salt, round_trips)) = self
            .peers
            .get(&p)
            .and_then(|peer| peer.session.as_ref())
            .map(|s| (s.salt, s.round_trips))
        else {
            return;
        };
        let (msg, records, more) = match Frame::decode(bytes, wire::MAX_FRAME_BYTES) {
            Ok(Frame::Response { msg, records, more }) => (msg, records, more),
            Ok(_) => {
                return self.end_session(
                    now,
                    &p,
                    round_trips,
                    false,
                    wire::Error::BadField("kind").into(),
                );
            }
            Err(e) => return self.end_session(now, &p, round_trips, false, Some(e)),
        };
        self.apply(now, &p, records);
        let (reply, send) = match self.set().respond(&msg, salt) {
            Ok(r) => r,
            Err(e) => {
                return self.end_session(now, &p, round_trips, false, Some(wire::Error::Recon(e)));
            }
        };
        let owed_more = match self.peers.get_mut(&p) {
            Some(peer) => {
                peer.owed.extend(send);
                !peer.owed.is_empty()
            }
            None => return,
        };
        if reply.wants_answer() || more || owed_more {
            self.send_request(p, salt, reply, round_trips);
        } else {
            self.end_session(now, &p, round_trips, true, None);
        }
    }

    fn end_session(
        &mut self,
        now: Now,
        p: &P,
        round_trips: u32,
        ok: bool,
        error: Option<wire::Error>,
    ) {
        if let Some(e) = error {
            self.bad_frame(p, e);
        }
        let jitter = if self.config.recon_jitter_ms > 0 {
            self.rng.next_u64() % self.config.recon_jitter_ms
        } else {
            0
        };
        if let Some(peer) = self.peers.get_mut(p) {
            peer.session = None;
            peer.owed.clear();
            peer.next_recon_ms = now.mono_ms + self.config.recon_interval_ms + jitter;
        }
        if ok {
            self.stats.reconciliations += 1;
            self.stats.max_round_trips = self.stats.max_round_trips.max(round_trips);
            self.outputs.push_back(Output::Event(Event::Synced {
                peer: p.clone(),
                round_trips,
            }));
        }
    }
}
