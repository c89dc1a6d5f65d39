//! The world's events: what links deliver and timers fire, in virtual-time order,
//! each handed to its device's engine, and what the engines then send, carried
//! out (lost, delayed, duplicated) as the links' faults say.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use kith_protocol::sync::{self, Engine, Input, Now, Output};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use rayon::prelude::*;

use super::World;

/// One device's part of a batch handled in parallel: its engine, its time and its
/// input (taken when handled).
type Work<'a> = (&'a mut Engine<usize>, Now, Option<Input<usize>>);

/// Events due at one moment for this many devices or more are handled in parallel.
const PARALLEL_BATCH: usize = 4;

/// Something due at a moment of virtual time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    Timer(usize),
    Gossip {
        to: usize,
        from: usize,
        /// One copy for every receiver of a publication.
        bytes: std::sync::Arc<[u8]>,
    },
    Request {
        to: usize,
        from: usize,
        rid: u64,
        bytes: Vec<u8>,
    },
    Response {
        to: usize,
        rid: u64,
        bytes: Vec<u8>,
    },
    Timeout {
        to: usize,
        rid: u64,
    },
}

impl Event {
    /// The device the event is for.
    pub(super) fn device(&self) -> usize {
        match self {
            Self::Timer(i) => *i,
            Self::Gossip { to, .. }
            | Self::Request { to, .. }
            | Self::Response { to, .. }
            | Self::Timeout { to, .. } => *to,
        }
    }
}

impl World {
    pub(super) fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, e)));
    }

    /// Sends `e` over the link: lost, delayed, maybe duplicated.
    pub(super) fn send(&mut self, e: Event) {
        let f = &self.faults;
        let roll = |rng: &mut ChaCha20Rng| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        if roll(&mut self.rng) < f.loss {
            return;
        }
        let copies = if roll(&mut self.rng) < f.dup { 2 } else { 1 };
        for _ in 0..copies {
            let jitter = if self.faults.jitter_ms > 0 {
                self.rng.next_u64() % self.faults.jitter_ms
            } else {
                0
            };
            let at = self.now_ms + self.faults.latency_ms + jitter;
            self.push(at, e.clone());
        }
    }

    pub(super) fn input(&mut self, i: usize, input: Input<usize>) {
        let now = self.now(i);
        if let Some(e) = self.nodes[i].engine.as_mut() {
            e.handle_input(now, input);
        }
        self.drain(i, None);
    }

    /// Carries out node `i`'s outputs; `command` is `Some(is_deletion)` when they
    /// come from a user command.
    pub(super) fn drain(&mut self, i: usize, command: Option<bool>) {
        while let Some(out) = self.nodes[i].engine.as_mut().and_then(Engine::poll_output) {
            match out {
                Output::Persist(records) => {
                    for r in records {
                        // The node's store writes only what it can read back.
                        if r.encode_checked().is_err() {
                            self.nodes[i].unstorable += 1;
                        }
                        let elsewhere = self.device(i) != r.author();
                        let seen = self
                            .persisted
                            .entry((r.space, r.item))
                            .or_default()
                            .entry(r.version)
                            .or_insert((r.is_tombstone(), false));
                        seen.1 |= elsewhere;
                        if let Some(deletion) = command {
                            self.acknowledged.push((r.clone(), deletion));
                        }
                        self.nodes[i].store.insert(r);
                    }
                    self.last_change_ms = self.now_ms;
                }
                Output::Secrets(keyring) => {
                    // Restarts begin from it, as a node's from its secrets file.
                    self.nodes[i].keyring = keyring;
                }
                Output::Collect { collect, forget } => {
                    for (space, item) in collect {
                        self.nodes[i].store.collect(space, &item);
                    }
                    for (space, item) in forget {
                        self.nodes[i].store.drop_collected(space, &item);
                    }
                    self.last_change_ms = self.now_ms;
                }
                Output::Publish(bytes) => {
                    self.count(i, &bytes);
                    let bytes: std::sync::Arc<[u8]> = bytes.into();
                    let peers: Vec<usize> = (0..self.nodes.len())
                        .filter(|&p| p != i && self.reachable(i, p))
                        .collect();
                    for p in peers {
                        self.send(Event::Gossip {
                            to: p,
                            from: i,
                            bytes: std::sync::Arc::clone(&bytes),
                        });
                    }
                }
                Output::Request { to, id, bytes } => {
                    self.count(i, &bytes);
                    self.pending.insert((i, id));
                    let timeout = self.now_ms + self.faults.request_timeout_ms;
                    self.push(timeout, Event::Timeout { to: i, rid: id });
                    if self.connected(i, to) {
                        self.send(Event::Request {
                            to,
                            from: i,
                            rid: id,
                            bytes,
                        });
                    }
                }
                Output::Respond { id, bytes } => {
                    self.count(i, &bytes);
                    if let Some((to, rid)) = self.inbound.remove(&id)
                        && self.connected(i, to)
                    {
                        self.send(Event::Response { to, rid, bytes });
                    }
                }
                Output::Event(_) => {}
            }
        }
        if let Some(e) = self.nodes[i].engine.as_mut() {
            // Kept for a node's item index; nothing here reads them.
            e.book_mut().take_view_changes();
        }
        let t = self.nodes[i].engine.as_ref().and_then(Engine::poll_timeout);
        if let Some(t) = t
            && self.nodes[i].timer_at != Some(t)
        {
            self.nodes[i].timer_at = Some(t);
            self.push(t.max(self.now_ms), Event::Timer(i));
        }
    }

    fn hash_event(&mut self, at: u64, e: &Event) {
        let (kind, a, b, bytes): (u8, usize, u64, &[u8]) = match e {
            Event::Timer(i) => (0, *i, 0, &[]),
            Event::Gossip { to, from, bytes } => (1, *to, *from as u64, bytes),
            Event::Request { to, rid, bytes, .. } => (2, *to, *rid, bytes),
            Event::Response { to, rid, bytes } => (3, *to, *rid, bytes),
            Event::Timeout { to, rid } => (4, *to, *rid, &[]),
        };
        let mut h = self.trace;
        // FNV-1a over 8-byte words (a byte at a time was a tenth of a large run),
        // with a shift so that every bit of a word reaches the low bits.
        let mut mix = |w: u64| {
            h = (h ^ w).wrapping_mul(0x0100_0000_01b3);
            h ^= h >> 29;
        };
        let mut feed = |x: &[u8]| {
            let mut words = x.chunks_exact(8);
            for w in &mut words {
                let mut b = [0u8; 8];
                b.copy_from_slice(w);
                mix(u64::from_le_bytes(b));
            }
            for byte in words.remainder() {
                mix(u64::from(*byte));
            }
        };
        feed(&at.to_le_bytes());
        feed(&[kind]);
        feed(&(a as u64).to_le_bytes());
        feed(&b.to_le_bytes());
        feed(bytes);
        self.trace = h;
    }

    fn count(&mut self, i: usize, frame: &[u8]) {
        let len = frame.len();
        self.nodes[i].messages += 1;
        self.nodes[i].bytes += len as u64;
        self.nodes[i].padding += sync::wire::padding_of(frame) as u64;
        self.nodes[i].largest_frame = self.nodes[i].largest_frame.max(len);
    }

    /// Processes events until virtual time `until` (or the queue empties).
    ///
    /// Events due at the same moment for different devices are independent: each
    /// changes only its own device's engine, and what the devices then send is
    /// carried out afterwards in the events' order. So they are handed to the
    /// engines on all cores at once, and the trace is the one a single core gives.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            let at = *at;
            if at > until {
                break;
            }
            self.now_ms = self.now_ms.max(at);
            let mut batch: Vec<(usize, Input<usize>)> = Vec::new();
            let mut seen: BTreeSet<usize> = BTreeSet::new();
            while let Some(Reverse((t, _, e))) = self.queue.peek() {
                if *t != at || !seen.insert(e.device()) {
                    break;
                }
                let Some(Reverse((_, _, event))) = self.queue.pop() else {
                    break;
                };
                self.steps += 1;
                self.hash_event(at, &event);
                if let Some(input) = self.accept(event) {
                    batch.push(input);
                }
            }
            self.handle(batch);
        }
        self.now_ms = self.now_ms.max(until);
    }

    /// What event `e` gives its device, if it still reaches it.
    fn accept(&mut self, e: Event) -> Option<(usize, Input<usize>)> {
        match e {
            Event::Timer(i) => {
                if self.nodes[i].timer_at.is_some_and(|t| t <= self.now_ms) {
                    self.nodes[i].timer_at = None;
                    return Some((i, Input::Timeout));
                }
            }
            Event::Gossip { to, from, bytes } => {
                if self.reachable(to, from) {
                    let source = self.device(from);
                    return Some((
                        to,
                        Input::Gossip {
                            from,
                            source,
                            bytes: bytes.to_vec(),
                        },
                    ));
                }
            }
            Event::Request {
                to,
                from,
                rid,
                bytes,
            } => {
                if self.connected(to, from) {
                    let id = self.next_inbound;
                    self.next_inbound += 1;
                    self.inbound.insert(id, (from, rid));
                    return Some((to, Input::Request { from, id, bytes }));
                }
            }
            Event::Response { to, rid, bytes } => {
                if self.pending.remove(&(to, rid)) {
                    return Some((to, Input::Response { id: rid, bytes }));
                }
            }
            Event::Timeout { to, rid } => {
                if self.pending.remove(&(to, rid)) {
                    return Some((to, Input::RequestFailed { id: rid }));
                }
            }
        }
        None
    }

    /// Hands each device its input (devices distinct), in parallel, then carries out
    /// their outputs in the inputs' order.
    fn handle(&mut self, batch: Vec<(usize, Input<usize>)>) {
        // Handing a few inputs to other threads costs more than it saves.
        if !self.parallel || batch.len() < PARALLEL_BATCH {
            for (i, input) in batch {
                self.input(i, input);
            }
            return;
        }
        let order: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let mut inputs: Vec<(usize, Now, Input<usize>)> = batch
            .into_iter()
            .map(|(i, input)| (i, self.now(i), input))
            .collect();
        inputs.sort_unstable_by_key(|(i, ..)| *i);
        // Each device's engine, taken off the front of what is left (the devices
        // are distinct, in increasing order): as many steps as inputs, not devices.
        let mut work: Vec<Work<'_>> = Vec::with_capacity(inputs.len());
        let mut rest = &mut self.nodes[..];
        let mut first = 0;
        for (i, now, input) in inputs {
            // The batch's devices are distinct and exist (see `batch`); one that
            // were not would get no input rather than another's.
            let Some(at) = i.checked_sub(first).filter(|at| *at < rest.len()) else {
                debug_assert!(false, "device {i} twice in a batch, or unknown");
                continue;
            };
            let Some((node, tail)) = std::mem::take(&mut rest)[at..].split_first_mut() else {
                continue;
            };
            first = i + 1;
            rest = tail;
            if let Some(e) = node.engine.as_mut() {
                work.push((e, now, Some(input)));
            }
        }
        work.par_iter_mut().for_each(|(e, now, input)| {
            if let Some(input) = input.take() {
                e.handle_input(*now, input);
            }
        });
        drop(work);
        for i in order {
            self.drain(i, None);
        }
    }
}
