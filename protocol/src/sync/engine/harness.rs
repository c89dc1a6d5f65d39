//! Engines of one account wired to each other in memory, for the engine's tests:
//! gossip to the sides linked to its publisher, requests and responses between
//! linked sides, time advanced through the timers, frames lost on purpose, and a
//! restart from exactly what an engine persisted.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::clear_wrap::PlainWrap;
use crate::clock::{Clock, Hlc};
use crate::contacts::Command as Edit;
use crate::item::NodeKind;
use crate::jid::BareJid;
use crate::roster::{Entry, Role};
use crate::seal::Secret;

const T0: u64 = 1_780_000_000_000;

/// One side: its engine and what it persisted.
pub(super) struct Side {
    pub(super) key: SigningKey,
    pub(super) engine: Engine<u8>,
    pub(super) records: Replica,
    pub(super) keyring: Keyring,
}

/// Devices of one account (two unless made with [`Harness::with_sides`]); device 0
/// is the genesis.
pub(super) struct Harness {
    pub(super) sides: Vec<Side>,
    pub(super) mono: u64,
    /// The pairs of sides (lower first) that carry what one sends the other.
    pub(super) links: BTreeSet<(usize, usize)>,
    /// Requests in flight: responder's handle → (requester, its request id).
    pub(super) inbound: BTreeMap<u64, (usize, RequestId)>,
    pub(super) next_inbound: u64,
    /// The length of every gossip frame published, and every request and response.
    pub(super) published: Vec<usize>,
    pub(super) exchanged: Vec<usize>,
    /// The spaces of the records of every request and response, in frame order,
    /// with the side that sent it.
    pub(super) carried: Vec<(usize, Vec<(Space, ItemId)>)>,
    /// Requests, then responses, carrying records still to be lost on the way (the
    /// requester's transport then reports its request failed; the responder's, that
    /// its response was lost).
    pub(super) lose_requests: usize,
    pub(super) lose_responses: usize,
    /// (side, contacts): `reached_at` is when that side first held that many.
    pub(super) watch: Option<(usize, usize)>,
    pub(super) reached_at: Option<u64>,
    /// The fewest contacts side 1 showed after any frame it was given, when set.
    pub(super) low_water: Option<usize>,
    /// Every side's settings.
    pub(super) config: Config,
    /// Requests and responses that left while their sender had a frame waiting
    /// ([`Config::defer_frames`]).
    pub(super) answered_ahead: usize,
    /// A frame answered first is left waiting (the next input applies it) instead
    /// of applied once its answer is carried out; with `stop_when_deferred` too,
    /// `pump` returns as soon as one waits (a crash would find it so).
    pub(super) hold_deferred: bool,
    pub(super) stop_when_deferred: bool,
}

pub(super) fn now(mono: u64) -> Now {
    Now {
        mono_ms: mono,
        wall: WallTime(T0 + mono),
    }
}

pub(super) fn jid(s: &str) -> BareJid {
    BareJid::parse(s).expect("a test JID")
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// Two sides with `config`.
    pub(super) fn with_config(config: Config) -> Self {
        Self::with_sides(config, 2)
    }

    /// `n` sides (at most 255) with `config`, none linked.
    pub(super) fn with_sides(config: Config, n: u8) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut keyring = Keyring::new();
        for node in NodeKind::ALL {
            keyring.insert(Secret::generate(node, WallTime(T0), &mut rng));
        }
        let keys: Vec<SigningKey> = (1..=n).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
        let mut clock = Clock::default();
        let roster: Vec<Record> = keys
            .iter()
            .map(|k| {
                Entry {
                    device: DeviceId(k.verifying_key().to_bytes()),
                    cert: Vec::new(),
                    name: String::new(),
                    role: Role::Full,
                    revoked: false,
                }
                .record(clock.tick(WallTime(T0)), &keys[0])
            })
            .collect();
        let mut records = Replica::new();
        for r in roster {
            records.insert(r);
        }
        let mut h = Self {
            sides: Vec::new(),
            mono: 0,
            links: BTreeSet::new(),
            inbound: BTreeMap::new(),
            next_inbound: 1,
            published: Vec::new(),
            exchanged: Vec::new(),
            carried: Vec::new(),
            lose_requests: 0,
            lose_responses: 0,
            watch: None,
            reached_at: None,
            low_water: None,
            config,
            answered_ahead: 0,
            hold_deferred: false,
            stop_when_deferred: false,
        };
        for key in keys {
            let engine = h.start(&key, records.clone(), keyring.clone());
            h.sides.push(Side {
                key,
                engine,
                records: records.clone(),
                keyring: keyring.clone(),
            });
        }
        h.pump();
        h
    }

    pub(super) fn genesis(&self) -> DeviceId {
        DeviceId(self.sides[0].key.verifying_key().to_bytes())
    }

    pub(super) fn start(&self, key: &SigningKey, records: Replica, keyring: Keyring) -> Engine<u8> {
        let me = DeviceId(key.verifying_key().to_bytes());
        let genesis = self
            .sides
            .first()
            .map_or(me, |s| DeviceId(s.key.verifying_key().to_bytes()));
        let book = Book::restore(key.clone(), keyring, records, Clock::new(Hlc::default()));
        // Each side draws its own randomness, as devices do (the same draws would
        // give two sides the same new item ids).
        let mut seed = [7; 32];
        seed[0] = key.to_bytes()[0];
        Engine::new(
            self.config.clone(),
            book,
            genesis,
            Box::new(PlainWrap { me }),
            seed,
            now(self.mono),
        )
    }

    /// Restarts side `i` from what it persisted.
    pub(super) fn restart(&mut self, i: usize) {
        let s = &self.sides[i];
        let engine = self.start(&s.key, s.records.clone(), s.keyring.clone());
        self.sides[i].engine = engine;
        self.pump();
    }

    pub(super) fn connect(&mut self, up: bool) {
        self.connect_seen_by(up, &[0, 1]);
    }

    /// Whether what `a` sends reaches `b`.
    pub(super) fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    /// Makes what `a` and `b` send each other reach the other, or not, without
    /// either hearing of it.
    pub(super) fn set_link(&mut self, a: usize, b: usize, up: bool) {
        if up {
            self.links.insert((a.min(b), a.max(b)));
        } else {
            self.links.remove(&(a.min(b), a.max(b)));
        }
    }

    /// Connects (or not) sides 0 and 1, only `sides` hearing of it (the other
    /// learns of the peer from its first request).
    pub(super) fn connect_seen_by(&mut self, up: bool, sides: &[usize]) {
        self.connect_pair(0, 1, up, sides);
    }

    /// Connects (or not) sides `a` and `b`, only those of them in `sides`
    /// hearing of it.
    pub(super) fn connect_pair(&mut self, a: usize, b: usize, up: bool, sides: &[usize]) {
        self.set_link(a, b, up);
        for &i in sides {
            let other = if i == a { b } else { a };
            let device = DeviceId(self.sides[other].key.verifying_key().to_bytes());
            let input = if up {
                Input::Connected {
                    peer: other as u8,
                    device,
                }
            } else {
                Input::Disconnected(other as u8)
            };
            self.sides[i].engine.handle_input(now(self.mono), input);
        }
        self.pump();
    }

    /// Adds contacts `c0@example.org` … (named `Contact 0` …) on side `i`.
    pub(super) fn add_contacts(&mut self, i: usize, n: usize) {
        for k in 0..n {
            self.execute(
                i,
                Edit::AddContact {
                    jid: jid(&format!("c{k}@example.org")),
                    name: Some(format!("Contact {k}")),
                    groups: vec![],
                },
            )
            .expect("added");
        }
    }

    pub(super) fn execute(&mut self, i: usize, command: impl Into<Command>) -> Result<(), Error> {
        let r = self.sides[i].engine.execute(now(self.mono), command);
        self.pump();
        r
    }

    /// Carries out every output, advancing time through the timers, until quiet.
    pub(super) fn pump(&mut self) {
        for _ in 0..200 {
            if self.watch.is_some_and(|(side, n)| {
                self.reached_at.is_none() && self.sides[side].engine.view().contact_count() >= n
            }) {
                self.reached_at = Some(self.mono);
            }
            let mut moved = false;
            for i in 0..self.sides.len() {
                while let Some(out) = self.sides[i].engine.poll_output() {
                    moved = true;
                    self.carry(i, out);
                }
                // As a node does: a frame answered first is applied once its answer
                // has been carried out.
                if self.sides[i].engine.has_deferred() {
                    if self.stop_when_deferred {
                        return;
                    }
                    if !self.hold_deferred {
                        moved = true;
                        self.sides[i].engine.apply_deferred(now(self.mono));
                        if i == 1 {
                            self.sample_low_water();
                        }
                    }
                }
            }
            if !moved {
                let next = self
                    .sides
                    .iter()
                    .filter_map(|s| s.engine.poll_timeout())
                    .min();
                match next {
                    Some(t) if t <= self.mono + 120_000 => {
                        self.mono = self.mono.max(t);
                        for s in &mut self.sides {
                            s.engine.handle_input(now(self.mono), Input::Timeout);
                        }
                    }
                    _ => return,
                }
            }
        }
    }

    pub(super) fn carry(&mut self, i: usize, out: Output<u8>) {
        self.carry_to(i, out);
        if i != 1 {
            self.sample_low_water();
        }
    }

    /// Notes side 1's contact count, when the fewest it showed is watched.
    pub(super) fn sample_low_water(&mut self) {
        if let Some(low) = self.low_water {
            let shown = self.sides[1].engine.view().contact_count();
            self.low_water = Some(low.min(shown));
        }
    }

    pub(super) fn carry_to(&mut self, i: usize, out: Output<u8>) {
        let t = now(self.mono);
        match &out {
            Output::Publish(bytes) => self.published.push(bytes.len()),
            Output::Request { bytes, .. } | Output::Respond { bytes, .. } => {
                self.exchanged.push(bytes.len());
                if self.sides[i].engine.has_deferred() {
                    self.answered_ahead += 1;
                }
                let (frame, _) =
                    Frame::decode_lenient(bytes, wire::MAX_FRAME_BYTES).expect("a frame");
                let (Frame::Request { records, .. }
                | Frame::Response { records, .. }
                | Frame::Gossip { records }) = frame;
                self.carried
                    .push((i, records.iter().map(|r| (r.space, r.item)).collect()));
            }
            _ => {}
        }
        match out {
            Output::Request { id, .. }
                if self.lose_requests > 0
                    && self.carried.last().is_some_and(|(_, r)| !r.is_empty()) =>
            {
                self.lose_requests -= 1;
                self.sides[i]
                    .engine
                    .handle_input(t, Input::RequestFailed { id });
            }
            Output::Respond { id, .. }
                if self.lose_responses > 0
                    && self.carried.last().is_some_and(|(_, r)| !r.is_empty()) =>
            {
                self.lose_responses -= 1;
                if let Some((to, rid)) = self.inbound.remove(&id) {
                    self.sides[i]
                        .engine
                        .handle_input(t, Input::ResponseLost(to as u8));
                    self.sides[to]
                        .engine
                        .handle_input(t, Input::RequestFailed { id: rid });
                }
            }
            Output::Persist(records) => {
                for r in records {
                    self.sides[i].records.insert(r);
                }
            }
            Output::Secrets(k) => self.sides[i].keyring = k,
            Output::Collect { collect, .. } => {
                for (space, item) in collect {
                    self.sides[i].records.collect(space, &item);
                }
            }
            Output::Publish(bytes) => {
                let source = DeviceId(self.sides[i].key.verifying_key().to_bytes());
                for other in 0..self.sides.len() {
                    if other != i && self.linked(i, other) {
                        self.sides[other].engine.handle_input(
                            t,
                            Input::Gossip {
                                from: i as u8,
                                source,
                                bytes: bytes.clone(),
                            },
                        );
                    }
                }
            }
            Output::Request { to, id, bytes } if self.linked(i, usize::from(to)) => {
                let handle = self.next_inbound;
                self.next_inbound += 1;
                self.inbound.insert(handle, (i, id));
                self.sides[usize::from(to)].engine.handle_input(
                    t,
                    Input::Request {
                        from: i as u8,
                        id: handle,
                        bytes,
                    },
                );
            }
            Output::Request { id, .. } => {
                self.sides[i]
                    .engine
                    .handle_input(t, Input::RequestFailed { id });
            }
            Output::Respond { id, bytes } => {
                if let Some((to, rid)) = self.inbound.remove(&id) {
                    self.sides[to]
                        .engine
                        .handle_input(t, Input::Response { id: rid, bytes });
                }
            }
            Output::Event(_) => {}
        }
    }
}
