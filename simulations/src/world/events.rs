//! The world's events: what links deliver and timers fire, in virtual-time order,
//! each handed to its device's engine, and what the engines then send, carried
//! out (lost, delayed, duplicated) as the links' faults say.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use kith_protocol::sync::{self, Engine, Input, Now, Output};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use rayon::prelude::*;

use super::{Node, World};

/// One device's part of a window handled in parallel: the event's place in the
/// window, the device, its time, its input and then its outputs (see [`keep`]).
type Work<'a> = (
    usize,
    &'a mut Node,
    Now,
    Option<Input<usize>>,
    Vec<Output<usize>>,
);

/// A window whose events reach this many devices or more is handled in parallel.
const PARALLEL_BATCH: usize = 4;

/// The events of one window: those due before the first's time plus a link's
/// latency (and the request timeout, if shorter), each for a distinct device,
/// taken off the queue in its order.
#[derive(Default)]
struct Window {
    events: Vec<Due>,
    devices: BTreeSet<usize>,
}

impl Window {
    /// How many of the events reach their device.
    fn inputs(&self) -> usize {
        self.events.iter().filter(|d| d.input.is_some()).count()
    }
}

/// One event of a window.
struct Due {
    at: u64,
    seq: u64,
    summary: Summary,
    /// The device it reached, if it did.
    device: Option<usize>,
    /// The device's time then.
    now: Now,
    /// What it gives the device, until handed to the engine.
    input: Option<Input<usize>>,
    /// The engine's outputs, when it was handed the input on all cores.
    outputs: Option<Vec<Output<usize>>>,
}

/// What the trace takes of an event: its kind, devices and a digest of its bytes.
struct Summary {
    kind: u8,
    device: usize,
    other: u64,
    digest: u64,
}

/// Takes every output of `node`'s engine and does what it does to the node alone
/// (its store, its secrets, its counters), in their order; what they do beyond it
/// is left to [`World::carry_out`]. Nothing here touches another device, so the
/// devices of a window do this on all cores.
fn keep(node: &mut Node, now: Now) -> Vec<Output<usize>> {
    let mut outputs = keep_step(node);
    // As a node does: a frame answered before it was applied is applied once its
    // answer has been carried out (queued here ahead of what applying it sends).
    if let Some(engine) = node.engine.as_mut()
        && engine.has_deferred()
    {
        engine.apply_deferred(now);
        outputs.extend(keep_step(node));
    }
    outputs
}

/// [`keep`] of the outputs of one engine step.
fn keep_step(node: &mut Node) -> Vec<Output<usize>> {
    let mut outputs = Vec::new();
    let Node {
        engine: Some(engine),
        store,
        keyring,
        unstorable,
        messages,
        bytes: sent,
        padding,
        largest_frame,
        ..
    } = node
    else {
        return outputs;
    };
    while let Some(mut out) = engine.poll_output() {
        match &mut out {
            Output::Persist(records) => {
                for r in records.iter() {
                    // The node's store writes only what it can read back.
                    if r.encode_checked().is_err() {
                        *unstorable += 1;
                    }
                    store.insert(r.clone());
                }
            }
            Output::Secrets(secrets) => {
                // Restarts begin from it, as a node's from its secrets file.
                *keyring = std::mem::take(secrets);
            }
            Output::Collect { collect, forget } => {
                for (space, item) in collect.iter() {
                    store.collect(*space, item);
                }
                for (space, item) in forget.iter() {
                    store.drop_collected(*space, item);
                }
            }
            Output::Publish(bytes)
            | Output::Request { bytes, .. }
            | Output::Respond { bytes, .. } => {
                *messages += 1;
                *sent += bytes.len() as u64;
                *padding += sync::wire::padding_of(bytes) as u64;
                *largest_frame = (*largest_frame).max(bytes.len());
            }
            Output::Event(_) => {}
        }
        outputs.push(out);
    }
    // Kept for a node's item index; nothing here reads them.
    engine.book_mut().take_view_changes();
    outputs
}

/// Sums up `e` for the trace.
fn summary(e: &Event) -> Summary {
    let (kind, device, other, bytes): (u8, usize, u64, &[u8]) = match e {
        Event::Timer(i) => (0, *i, 0, &[]),
        Event::Gossip { to, from, bytes } => (1, *to, *from as u64, bytes),
        Event::Request { to, rid, bytes, .. } => (2, *to, *rid, bytes),
        Event::Response { to, rid, bytes } => (3, *to, *rid, bytes),
        Event::Timeout { to, rid } => (4, *to, *rid, &[]),
    };
    let mut digest = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        digest = mix(digest, u64::from_le_bytes(b));
    }
    for byte in words.remainder() {
        digest = mix(digest, u64::from(*byte));
    }
    Summary {
        kind,
        device,
        other,
        digest,
    }
}

/// One step of the trace's hash: FNV-1a over 8-byte words (a byte at a time was a
/// tenth of a large run), with a shift so that every bit of a word reaches the low
/// bits.
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x0100_0000_01b3);
    h ^ (h >> 29)
}

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
        let now = self.now(i);
        let outputs = keep(&mut self.nodes[i], now);
        self.carry_out(i, outputs, command);
    }

    /// Carries out what node `i`'s outputs do beyond the node itself (see
    /// [`keep`]), in their order, then sets its timer.
    fn carry_out(&mut self, i: usize, outputs: Vec<Output<usize>>, command: Option<bool>) {
        for out in outputs {
            match out {
                Output::Persist(records) => {
                    let me = self.device(i);
                    for r in records {
                        let seen = self
                            .persisted
                            .entry((r.space, r.item))
                            .or_default()
                            .entry(r.version)
                            .or_insert((r.is_tombstone(), false));
                        seen.1 |= me != r.author();
                        if let Some(deletion) = command {
                            self.acknowledged.push((r, deletion));
                        }
                    }
                    self.last_change_ms = self.now_ms;
                }
                Output::Collect { .. } => self.last_change_ms = self.now_ms,
                Output::Publish(bytes) => {
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
                    if let Some((to, rid)) = self.inbound.remove(&id)
                        && self.connected(i, to)
                    {
                        self.send(Event::Response { to, rid, bytes });
                    }
                }
                Output::Secrets(_) | Output::Event(_) => {}
            }
        }
        let t = self.nodes[i].engine.as_ref().and_then(Engine::poll_timeout);
        if let Some(t) = t
            && self.nodes[i].timer_at != Some(t)
        {
            self.nodes[i].timer_at = Some(t);
            self.push(t.max(self.now_ms), Event::Timer(i));
        }
    }

    /// Folds one processed event, summed up by [`summary`], into the trace.
    fn fold(&mut self, at: u64, s: &Summary) {
        let mut h = self.trace;
        for w in [at, u64::from(s.kind), s.device as u64, s.other, s.digest] {
            h = mix(h, w);
        }
        self.trace = h;
    }

    /// Processes events until virtual time `until` (or the queue empties).
    ///
    /// An event changes only its own device's engine, and what a device sends
    /// arrives a link's latency later at the soonest. So the events due within that
    /// latency of the first, for distinct devices, are handed to their engines on
    /// all cores at once (see [`Window`]); what the devices then send is carried out
    /// afterwards in the events' order, and the trace is the one a single core gives.
    pub fn run_until(&mut self, until: u64) {
        while let Some(Reverse((at, ..))) = self.queue.peek() {
            if *at > until {
                break;
            }
            if self.parallel {
                self.window(until);
            } else {
                self.one();
            }
        }
        self.now_ms = self.now_ms.max(until);
    }

    /// Processes the next event on its own.
    fn one(&mut self) {
        let Some(Reverse((at, _, event))) = self.queue.pop() else {
            return;
        };
        self.now_ms = self.now_ms.max(at);
        self.steps += 1;
        let summary = summary(&event);
        self.fold(at, &summary);
        if let Some((i, input)) = self.accept(event) {
            self.input(i, input);
        }
    }

    /// Takes the events of one window (see [`Window`]) off the queue, hands their
    /// inputs to the engines, in parallel when there are enough of them, then
    /// carries out each device's outputs in the events' order. A device's timer that
    /// its outputs set within the window is handled in its place in that order: a
    /// timer is the only event that can come sooner than a link's latency, and it
    /// is its own device's, whose event of the window is already carried out.
    fn window(&mut self, until: u64) {
        let Some(Reverse((first, ..))) = self.queue.peek() else {
            return;
        };
        let ahead = self
            .faults
            .latency_ms
            .min(self.faults.request_timeout_ms)
            .max(1);
        let end = first.saturating_add(ahead).min(until.saturating_add(1));
        let mut window = Window::default();
        while let Some(Reverse((t, _, e))) = self.queue.peek() {
            if *t >= end || window.devices.contains(&e.device()) {
                break;
            }
            let Some(Reverse((at, seq, event))) = self.queue.pop() else {
                break;
            };
            self.now_ms = self.now_ms.max(at);
            self.steps += 1;
            let summary = summary(&event);
            window.devices.insert(summary.device);
            let now = self.now(summary.device);
            let (device, input) = match self.accept(event) {
                Some((i, input)) => (Some(i), Some(input)),
                None => (None, None),
            };
            window.events.push(Due {
                at,
                seq,
                summary,
                device,
                now,
                input,
                outputs: None,
            });
        }
        let last = self.now_ms;
        if window.inputs() >= PARALLEL_BATCH {
            self.parallel_windows += 1;
            self.handle_all(&mut window.events);
        }
        for due in window.events {
            // Timers its earlier events' outputs set, due before this one.
            while let Some(Reverse((t, s, e))) = self.queue.peek()
                && (*t, *s) < (due.at, due.seq)
            {
                debug_assert!(
                    matches!(e, Event::Timer(_)),
                    "only a timer comes sooner than a link's latency"
                );
                self.now_ms = *t;
                self.timers_in_windows += 1;
                self.one();
            }
            self.now_ms = due.at;
            self.fold(due.at, &due.summary);
            if let Some(i) = due.device {
                if let Some(outputs) = due.outputs {
                    // Handled on all cores above.
                    self.carry_out(i, outputs, None);
                    continue;
                }
                if let Some(input) = due.input
                    && let Some(e) = self.nodes[i].engine.as_mut()
                {
                    e.handle_input(due.now, input);
                }
                self.drain(i, None);
            }
        }
        self.now_ms = self.now_ms.max(last);
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

    /// Hands the window's inputs to their engines on all cores (the devices are
    /// distinct), each device then keeping what its outputs do to it alone
    /// ([`keep`]); the outputs are left in the window's events, to carry out.
    fn handle_all(&mut self, events: &mut [Due]) {
        let mut inputs: Vec<(usize, usize, Now, Input<usize>)> = events
            .iter_mut()
            .enumerate()
            .filter_map(|(k, d)| Some((k, d.device?, d.now, d.input.take()?)))
            .collect();
        inputs.sort_unstable_by_key(|(_, i, ..)| *i);
        // Each device, taken off the front of what is left (the devices are
        // distinct, in increasing order): as many steps as inputs, not devices.
        let mut work: Vec<Work<'_>> = Vec::with_capacity(inputs.len());
        let mut rest = &mut self.nodes[..];
        let mut first = 0;
        for (k, i, now, input) in inputs {
            // The window's devices are distinct and exist (see `window`); one that
            // were not would get no input rather than another's.
            let Some(at) = i.checked_sub(first).filter(|at| *at < rest.len()) else {
                debug_assert!(false, "device {i} twice in a window, or unknown");
                continue;
            };
            let Some((node, tail)) = std::mem::take(&mut rest)[at..].split_first_mut() else {
                continue;
            };
            first = i + 1;
            rest = tail;
            work.push((k, node, now, Some(input), Vec::new()));
        }
        work.par_iter_mut()
            .for_each(|(_, node, now, input, outputs)| {
                if let Some(e) = node.engine.as_mut()
                    && let Some(input) = input.take()
                {
                    e.handle_input(*now, input);
                }
                *outputs = keep(node, *now);
            });
        for (k, _, _, _, outputs) in work {
            events[k].outputs = Some(outputs);
        }
    }
}
