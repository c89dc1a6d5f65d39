//! The simulated world: N engines, a virtual clock, an event queue, a lossy link
//! model, partitions, churn, crashes and clock skew. Everything is driven by one
//! seeded RNG, so a seed replays the same trace.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use ed25519_dalek::SigningKey;
use kith_protocol::clock::{Clock, WallTime};
use kith_protocol::contacts::merge::ORIGIN;
use kith_protocol::contacts::{Book, Command, Reads};
use kith_protocol::item::NodeKind;
use kith_protocol::item::fields::{Key, Seen, State};
use kith_protocol::jid::BareJid;
use kith_protocol::keys::{KeyWrap, OxWrap};
use kith_protocol::ox::DeviceKey;
use kith_protocol::record::{DeviceId, ItemId, Record, Space, Verified, Version};
use kith_protocol::replica::Replica;
use kith_protocol::roster::{Entry, Role};
use kith_protocol::seal::{Keyring, Secret};
use kith_protocol::sync::{self, Engine, Input, Now};

use kith_protocol::clear_wrap::PlainWrap;

mod checks;
mod events;

use events::Event;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Wall time at the start of every simulation.
pub const EPOCH: WallTime = WallTime(1_780_000_000_000);

/// Link and fault settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// One-way latency, ms.
    pub latency_ms: u64,
    /// Extra random latency, up to this many ms (reorders messages).
    pub jitter_ms: u64,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is delivered twice.
    pub dup: f64,
    /// How long a request waits for its response before failing, ms.
    pub request_timeout_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 20,
            jitter_ms: 10,
            loss: 0.0,
            dup: 0.0,
            request_timeout_ms: 2_000,
        }
    }
}

/// Counters summed over every device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Frames sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Of those, padding.
    pub padding: u64,
    /// Records refused by replicas.
    pub rejected: u64,
    /// Frames refused as malformed or over their limits.
    pub bad_frames: u64,
    /// Records the node's store would refuse to write.
    pub unstorable: u64,
    /// The largest frame any device sent, bytes.
    pub largest_frame: usize,
    /// Most round trips one reconciliation took.
    pub max_round_trips: u32,
}

/// One simulated device.
pub struct Node {
    key: SigningKey,
    keyring: Keyring,
    /// `None` while crashed or offline.
    engine: Option<Engine<usize>>,
    /// What it persisted: survives crashes.
    store: Replica,
    /// Clock offset, ms (may be negative).
    pub skew_ms: i64,
    /// A relay holds no secret.
    pub relay: bool,
    /// Online (not churned out).
    pub online: bool,
    /// Its OpenPGP key, when the run uses real XEP-0373 key wrapping.
    ox: Option<DeviceKey>,
    /// Frames and bytes sent.
    pub messages: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Of those, padding.
    pub padding: u64,
    /// Records refused, summed over restarts.
    pub rejected: u64,
    /// Most reconciliation round trips, over restarts.
    pub max_round_trips: u32,
    /// Frames refused as malformed or over their limits, over restarts.
    pub bad_frames: u64,
    /// Records it was told to persist that the node's store would refuse (over the
    /// record limits): on a real device, a store it could not open again.
    pub unstorable: u64,
    /// The largest frame it sent, bytes.
    pub largest_frame: usize,
    timer_at: Option<u64>,
}

/// The world.
pub struct World {
    /// The devices.
    pub nodes: Vec<Node>,
    /// Link settings.
    pub faults: Faults,
    /// Engine settings.
    pub config: sync::Config,
    /// Virtual monotonic time, ms.
    pub now_ms: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    rng: ChaCha20Rng,
    genesis: DeviceId,
    account: BareJid,
    /// Partition group of each node; nodes talk only within a group.
    pub group: Vec<u32>,
    /// Pairs that connect directly when both are up (the overlay): a ring plus
    /// random chords, about `degree` per device.
    neighbours: Vec<(usize, usize)>,
    /// Per device, the indices in `neighbours` of its pairs.
    adjacent: Vec<Vec<usize>>,
    links: BTreeSet<(usize, usize)>,
    /// inbound request handle → (requester, its request id)
    inbound: BTreeMap<u64, (usize, u64)>,
    next_inbound: u64,
    /// Requests in flight: (node, rid).
    pending: BTreeSet<(usize, u64)>,
    /// Every record a command produced (acknowledged writes), and whether the
    /// command was a deletion.
    pub acknowledged: Vec<(Record, bool)>,
    /// Sim time of the last change to any replica.
    pub last_change_ms: u64,
    /// Every field change a command made.
    pub field_edits: Vec<FieldEdit>,
    /// Every contact deletion a command made: the contact id and what it knew.
    pub deletions: Vec<(String, Seen)>,
    /// Every version any device persisted, per item: version → (is a tombstone,
    /// reached a device other than its author).
    persisted: Persisted,
    /// Total steps run.
    pub steps: u64,
    /// Hash (FNV-1a over words) of every event processed (time, kind, nodes, a
    /// digest of its bytes): equal traces give equal hashes. Traces of builds
    /// before be711403 hashed the bytes themselves and are not comparable.
    pub trace: u64,
    /// Signatures verified, shared by every device: the same bytes verify the same
    /// way everywhere, so the simulation's cost follows the protocol's work.
    verified: Verified,
    /// Payloads read, shared by every device the same way.
    reads: Reads,
    /// Whether events due within a link's latency for several devices are
    /// handled on all cores (the trace is the same either way).
    pub parallel: bool,
    /// Windows whose events were handed to the engines on all cores.
    pub parallel_windows: u64,
    /// Timers handled in their place within a window, set by an earlier event's
    /// outputs there.
    pub timers_in_windows: u64,
}

/// Every version some device persisted, by item: (a tombstone, stored by a device
/// other than its author).
type Persisted = BTreeMap<(Space, ItemId), BTreeMap<Version, (bool, bool)>>;

impl World {
    /// A world of `n` devices, the last `relays` of them relays, sharing one secret
    /// per node (the relays none), with per-device clock skew up to `skew_ms`.
    /// Device 0 is the roster's genesis and has signed every device's entry. With
    /// `real_crypto`, secrets are wrapped with XEP-0373 signcrypt (sequoia draws its
    /// own randomness, so the trace is then not reproducible byte for byte);
    /// otherwise with a deterministic stand-in ([`PlainWrap`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        relays: usize,
        skew_ms: u64,
        faults: Faults,
        config: sync::Config,
        seed: u64,
        real_crypto: bool,
        degree: usize,
    ) -> Self {
        let account = BareJid::parse("sim@kith.invalid").expect("valid JID");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut keyring = Keyring::new();
        for node in NodeKind::ALL {
            keyring.insert(Secret::generate(node, EPOCH, &mut rng));
        }
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                let relay = i >= n.saturating_sub(relays);
                let skew = if skew_ms == 0 {
                    0
                } else {
                    (rng.next_u64() % (2 * skew_ms + 1)) as i64 - skew_ms as i64
                };
                let ox = real_crypto
                    .then(|| DeviceKey::generate(&account, EPOCH).expect("key generation"));
                Node {
                    ox,
                    key: SigningKey::from_bytes(&k),
                    keyring: if relay {
                        Keyring::new()
                    } else {
                        keyring.clone()
                    },
                    engine: None,
                    store: Replica::new(),
                    skew_ms: skew,
                    relay,
                    online: true,
                    messages: 0,
                    bytes: 0,
                    padding: 0,
                    rejected: 0,
                    max_round_trips: 0,
                    bad_frames: 0,
                    unstorable: 0,
                    largest_frame: 0,
                    timer_at: None,
                }
            })
            .collect();
        let genesis = DeviceId(nodes[0].key.verifying_key().to_bytes());
        // The roster as pairing left it: device 0 signed every entry.
        let mut clock = Clock::default();
        let entries: Vec<Record> = nodes
            .iter()
            .map(|node| {
                let entry = Entry {
                    device: DeviceId(node.key.verifying_key().to_bytes()),
                    cert: node
                        .ox
                        .as_ref()
                        .map(|k| kith_protocol::ox::cert_to_bytes(&k.cert()))
                        .unwrap_or_default(),
                    name: String::new(),
                    role: if node.relay { Role::Relay } else { Role::Full },
                    revoked: false,
                };
                entry.record(clock.tick(EPOCH), &nodes[0].key)
            })
            .collect();
        let mut nodes = nodes;
        for node in &mut nodes {
            for r in &entries {
                node.store.insert(r.clone());
            }
        }
        let mut w = Self {
            group: vec![0; n],
            nodes,
            faults,
            config,
            now_ms: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            rng,
            genesis,
            account,
            neighbours: Vec::new(),
            adjacent: vec![Vec::new(); n],
            links: BTreeSet::new(),
            inbound: BTreeMap::new(),
            next_inbound: 1,
            pending: BTreeSet::new(),
            acknowledged: Vec::new(),
            field_edits: Vec::new(),
            deletions: Vec::new(),
            last_change_ms: 0,
            persisted: BTreeMap::new(),
            steps: 0,
            trace: 0xcbf2_9ce4_8422_2325,
            // Far more than the distinct records of a run; those no device holds any more
            // go when it is full.
            verified: Verified::interning(1 << 18),
            reads: Reads::default(),
            parallel: true,
            parallel_windows: 0,
            timers_in_windows: 0,
        };
        w.neighbours = if degree + 1 >= n {
            (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect()
        } else {
            let mut pairs = BTreeSet::new();
            for a in 0..n {
                pairs.insert((a.min((a + 1) % n), a.max((a + 1) % n)));
                for _ in 0..degree.saturating_sub(2).div_ceil(2) {
                    let b = (w.rng.next_u64() % n as u64) as usize;
                    if a != b {
                        pairs.insert((a.min(b), a.max(b)));
                    }
                }
            }
            pairs.into_iter().collect()
        };
        for (k, &(a, b)) in w.neighbours.iter().enumerate() {
            w.adjacent[a].push(k);
            w.adjacent[b].push(k);
        }
        for i in 0..n {
            w.start(i);
        }
        w.relink();
        w
    }

    fn now(&self, i: usize) -> Now {
        let wall = (EPOCH.0 + self.now_ms) as i64 + self.nodes[i].skew_ms;
        Now {
            mono_ms: self.now_ms,
            wall: WallTime(wall.max(0) as u64),
        }
    }

    /// (Re)starts node `i` from what it persisted.
    fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut book = Book::restore(
            node.key.clone(),
            node.keyring.clone(),
            node.store.clone(),
            Clock::default(),
        );
        book.share_verified(self.verified.clone());
        book.share_reads(self.reads.clone());
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let wrap: Box<dyn KeyWrap> = match &node.ox {
            Some(key) => Box::new(OxWrap {
                key: key.clone(),
                account: self.account.clone(),
            }),
            None => Box::new(PlainWrap {
                me: DeviceId(node.key.verifying_key().to_bytes()),
            }),
        };
        let wall = (EPOCH.0 + self.now_ms) as i64 + node.skew_ms;
        let now = Now {
            mono_ms: self.now_ms,
            wall: WallTime(wall.max(0) as u64),
        };
        node.engine = Some(Engine::new(
            self.config.clone(),
            book,
            self.genesis,
            wrap,
            seed,
            now,
        ));
        node.timer_at = None;
        // Starting may already produce outputs (a rotation after an audit).
        self.drain(i, None);
    }

    /// Drops node `i`'s memory; it restarts from its store.
    pub fn crash(&mut self, i: usize) {
        self.disconnect_all(i);
        if let Some(e) = self.nodes[i].engine.take() {
            self.absorb_stats(i, &e);
        }
        self.start(i);
        self.relink_one(i);
    }

    fn absorb_stats(&mut self, i: usize, e: &Engine<usize>) {
        let s = e.stats();
        let n = &mut self.nodes[i];
        n.rejected += s.rejected_records;
        n.bad_frames += s.bad_frames;
        n.max_round_trips = n.max_round_trips.max(s.max_round_trips);
    }

    /// Takes node `i` off the network, or brings it back.
    pub fn set_online(&mut self, i: usize, online: bool) {
        self.nodes[i].online = online;
        self.relink_one(i);
    }

    /// Puts each node in a partition group (nodes talk only within their group).
    pub fn partition(&mut self, groups: Vec<u32>) {
        self.group = groups;
        self.relink();
    }

    fn disconnect_all(&mut self, i: usize) {
        let gone: Vec<(usize, usize)> = self
            .links
            .iter()
            .filter(|(a, b)| *a == i || *b == i)
            .copied()
            .collect();
        for (a, b) in gone {
            self.links.remove(&(a, b));
            self.input(a, Input::Disconnected(b));
            self.input(b, Input::Disconnected(a));
        }
    }

    /// Connects exactly the pairs that are online and in the same group.
    fn relink(&mut self) {
        self.relink_pairs(0..self.neighbours.len());
    }

    /// [`World::relink`] for the pairs of device `i` only (nothing else changed).
    fn relink_one(&mut self, i: usize) {
        let pairs = self.adjacent[i].clone();
        self.relink_pairs(pairs);
    }

    /// [`World::relink`] for the pairs at these indices of `neighbours`.
    fn relink_pairs(&mut self, pairs: impl IntoIterator<Item = usize>) {
        for k in pairs {
            let (a, b) = self.neighbours[k];
            let up = self.reachable(a, b);
            let is = self.links.contains(&(a, b));
            if up && !is {
                self.links.insert((a, b));
                let (da, db) = (self.device(a), self.device(b));
                self.input(
                    a,
                    Input::Connected {
                        peer: b,
                        device: db,
                    },
                );
                self.input(
                    b,
                    Input::Connected {
                        peer: a,
                        device: da,
                    },
                );
            } else if !up && is {
                self.links.remove(&(a, b));
                self.input(a, Input::Disconnected(b));
                self.input(b, Input::Disconnected(a));
            }
        }
    }

    /// Whether gossip from `a` can reach `b`: both online, same partition (the
    /// gossipsub mesh spans the partition).
    fn reachable(&self, a: usize, b: usize) -> bool {
        self.nodes[a].online && self.nodes[b].online && self.group[a] == self.group[b]
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Runs a user command on node `i`; returns whether it was carried out.
    pub fn command(&mut self, i: usize, cmd: Command) -> bool {
        let now = self.now(i);
        let me = self.device(i);
        let Some(engine) = self.nodes[i].engine.as_mut() else {
            return false;
        };
        let deletion = matches!(
            cmd,
            Command::RemoveContact { .. } | Command::RemoveGroup { .. }
        );
        let edited = match &cmd {
            Command::EditContact { jid, .. }
            | Command::AddContact { jid, .. }
            | Command::RemoveContact { jid } => Some(jid.clone()),
            _ => None,
        };
        let removal = matches!(cmd, Command::RemoveContact { .. });
        let before = edited.as_ref().and_then(|j| marks(engine, j));
        let ok = engine.execute(now, cmd).is_ok();
        if ok
            && removal
            && let Some(b) = &before
            && let Some(cid) = &b.contact_id
        {
            self.deletions.push((cid.clone(), b.seen.clone()));
        } else if ok && let Some(j) = &edited {
            let after = marks(engine, j);
            if let Some(after) = after
                && let Some(contact_id) = after.contact_id.clone()
            {
                for (key, (mark, _)) in &after.fields {
                    let old = before.as_ref().and_then(|b| b.fields.get(key)).map(|f| f.0);
                    if old != Some(*mark) && mark.at.device == me {
                        self.field_edits.push(FieldEdit {
                            contact_id: contact_id.clone(),
                            key: key.clone(),
                            at: mark.at,
                        });
                    }
                }
            }
        }
        self.drain(i, Some(deletion));
        ok
    }

    /// Node `i` revokes node `target`; returns whether it could.
    pub fn revoke(&mut self, i: usize, target: usize) -> bool {
        let device = self.device(target);
        let now = self.now(i);
        let me = self.device(i);
        let Some(engine) = self.nodes[i].engine.as_mut() else {
            return false;
        };
        if !engine.roster().is_active(&me) || !engine.roster().is_active(&device) {
            return false;
        }
        let ok = engine
            .execute(now, sync::Command::RevokeDevice(device))
            .is_ok();
        self.drain(i, Some(true));
        ok
    }

    /// The device id of node `i`.
    pub fn device(&self, i: usize) -> DeviceId {
        DeviceId(self.nodes[i].key.verifying_key().to_bytes())
    }

    /// Whether node `i` is revoked in node `by`'s roster.
    pub fn revoked_in(&self, by: usize, i: usize) -> bool {
        let d = self.device(i);
        self.nodes[by]
            .engine
            .as_ref()
            .is_some_and(|e| e.roster().get(&d).is_some_and(|m| m.revoked_at.is_some()))
    }

    /// Tombstones collected, summed over the running engines.
    pub fn collected(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.engine.as_ref())
            .map(|e| e.stats().collected)
            .sum()
    }

    /// Random number in `0..n`.
    pub fn random(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.rng.next_u64() % n }
    }

    /// Totals over all nodes (live engines included).
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for n in &self.nodes {
            t.messages += n.messages;
            t.bytes += n.bytes;
            t.padding += n.padding;
            t.rejected += n.rejected;
            t.bad_frames += n.bad_frames;
            t.unstorable += n.unstorable;
            t.largest_frame = t.largest_frame.max(n.largest_frame);
            t.max_round_trips = t.max_round_trips.max(n.max_round_trips);
            if let Some(e) = &n.engine {
                t.rejected += e.stats().rejected_records;
                t.bad_frames += e.stats().bad_frames;
                t.max_round_trips = t.max_round_trips.max(e.stats().max_round_trips);
            }
        }
        t
    }
}

/// One field change a command made.
#[derive(Debug, Clone)]
pub struct FieldEdit {
    /// The contact's id.
    pub contact_id: String,
    /// Which field.
    pub key: Key,
    /// The edit's stamp (its author is `at.device`).
    pub at: Version,
}

/// The field marks of the contact with `jid` in `engine`'s view.
fn marks(engine: &mut Engine<usize>, jid: &BareJid) -> Option<State> {
    let c = engine.view().contact_by_jid(jid)?;
    State::of(&c.contact, ORIGIN).ok()
}
