//! A scenario: devices, workload and faults; [`run`] plays it and checks the
//! invariants, returning a [`Report`].
//!
//! A run has two phases. During the fault phase (60 s of virtual time by default)
//! devices edit while links lose, duplicate and reorder messages, partitions split
//! and heal, devices go offline and come back, and crash (losing everything not
//! persisted); `offline` devices stay away throughout, so that nothing is collected
//! and they come back far behind. Then every fault but loss and duplication stops,
//! every device comes back online and the run continues until the devices converge
//! (or 10 virtual minutes pass).
//!
//! The simulated devices run the node's engine with the node's limits: frames are
//! decoded by the same code and bounds, and a record the node's store would refuse
//! to write (one it could not read back) fails the run.

use std::collections::BTreeMap;
use std::time::Instant;

use kith_protocol::contacts::{Command, ContactEdit};
use kith_protocol::item::{Contact, Identity};
use kith_protocol::jid::BareJid;
use kith_protocol::sync;

use crate::world::{Faults, World};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Devices.
    pub nodes: usize,
    /// Contacts imported on device 0 at the start.
    pub contacts: usize,
    /// Random edits during the fault phase.
    pub edits: usize,
    /// Message loss probability.
    pub loss: f64,
    /// Message duplication probability.
    pub dup: f64,
    /// One-way latency, ms (jitter up to half of it).
    pub latency_ms: u64,
    /// Partitions during the fault phase.
    pub partitions: usize,
    /// Probability, per device and second, of going offline for 1–5 s.
    pub churn: f64,
    /// Crash-restarts during the fault phase.
    pub crashes: usize,
    /// Clock skew bound, ms (each device gets a random offset within ±skew).
    pub skew_ms: u64,
    /// Relay devices (no secrets).
    pub relays: usize,
    /// Device revocations during the fault phase (each rotates the secrets).
    pub revocations: usize,
    /// Wrap secrets with real XEP-0373 signcrypt instead of the deterministic
    /// stand-in (slower; the trace then varies with sequoia's own randomness).
    pub real_crypto: bool,
    /// Direct links per device for reconciliation (gossip reaches everyone in the
    /// partition); a full mesh when it is at least `nodes - 1`.
    pub degree: usize,
    /// Devices (never device 0) offline for the whole fault phase.
    pub offline: usize,
    /// Length of the fault phase, virtual ms.
    pub fault_ms: u64,
    /// Seed of everything random.
    pub seed: u64,
    /// Handle every event on one core (the trace is the same as on all cores).
    pub sequential: bool,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            nodes: 5,
            contacts: 50,
            edits: 50,
            loss: 0.0,
            dup: 0.0,
            latency_ms: 20,
            partitions: 0,
            churn: 0.0,
            crashes: 0,
            skew_ms: 0,
            relays: 0,
            revocations: 0,
            real_crypto: false,
            degree: 8,
            offline: 0,
            fault_ms: 60_000,
            seed: 1,
            sequential: false,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every device holds the same records and shows the same list.
    pub converged: bool,
    /// Virtual time from the end of the fault phase to the last change.
    pub sim_time_to_converge_ms: u64,
    /// Acknowledged writes not reflected at the end (summed over devices).
    pub lost_writes: usize,
    /// Field changes some device's final list does not reflect although no newer
    /// change of the same field won (summed over devices).
    pub lost_field_edits: usize,
    /// Deletions some device's final state does not reflect (a deleted item back).
    pub resurrections: usize,
    /// Records refused by replicas.
    pub rejected_records: u64,
    /// Records held by an active device although their author was revoked before
    /// stamping them.
    pub accepted_after_revocation: usize,
    /// Revoked or relay devices holding a current secret.
    pub secret_leaks: usize,
    /// Active full devices lacking a current secret.
    pub secret_gaps: usize,
    /// Devices revoked during the run.
    pub revoked: usize,
    /// Tombstones collected (summed over devices).
    pub collected: u64,
    /// Bytes sent by all devices.
    pub bytes_total: u64,
    /// Of those, padding (frames are padded to a few sizes, `sync::wire::bucket`).
    pub padding_total: u64,
    /// Frames sent by all devices.
    pub messages_total: u64,
    /// Most round trips any reconciliation took.
    pub max_reconcile_round_trips: u32,
    /// Frames refused as malformed or over their limits (an engine sent what its
    /// peer cannot read).
    pub bad_frames: u64,
    /// Records the node's store would have refused to write.
    pub unstorable_records: u64,
    /// Wall-clock time of the run.
    pub wall_ms: u128,
    /// Windows of events handed to the engines on all cores (0 with
    /// `--sequential`; see `World::run_until`).
    pub parallel_windows: u64,
    /// Timers handled in their place within such a window.
    pub timers_in_windows: u64,
    /// Devices.
    pub nodes: usize,
    /// The seed, to replay with `run --seed`.
    pub seed: u64,
    /// Hash of the whole event trace (same seed, same hash), up to convergence.
    pub trace: u64,
    /// After convergence, summaries heard in a check of every pair that said two
    /// devices differ (must be 0: `World::wrong_sync_states`).
    pub wrong_sync_states: usize,
}

impl Report {
    /// Whether every invariant holds.
    pub fn ok(&self) -> bool {
        self.converged
            && self.lost_writes == 0
            && self.lost_field_edits == 0
            && self.resurrections == 0
            && self.accepted_after_revocation == 0
            && self.secret_leaks == 0
            && self.secret_gaps == 0
            && self.bad_frames == 0
            && self.unstorable_records == 0
            && self.wrong_sync_states == 0
    }

    /// One JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"converged\":{},\"sim_time_to_converge_ms\":{},\"lost_writes\":{},\"lost_field_edits\":{},\"resurrections\":{},\"rejected_records\":{},\"accepted_after_revocation\":{},\"secret_leaks\":{},\"secret_gaps\":{},\"revoked\":{},\"collected\":{},\"bytes_total\":{},\"padding_total\":{},\"messages_total\":{},\"bytes_per_device\":{},\"messages_per_device\":{},\"max_reconcile_round_trips\":{},\"bad_frames\":{},\"unstorable_records\":{},\"wall_ms\":{},\"parallel_windows\":{},\"timers_in_windows\":{},\"nodes\":{},\"seed\":{},\"trace\":\"{:016x}\",\"wrong_sync_states\":{}}}",
            self.converged,
            self.sim_time_to_converge_ms,
            self.lost_writes,
            self.lost_field_edits,
            self.resurrections,
            self.rejected_records,
            self.accepted_after_revocation,
            self.secret_leaks,
            self.secret_gaps,
            self.revoked,
            self.collected,
            self.bytes_total,
            self.padding_total,
            self.messages_total,
            self.bytes_total / self.nodes.max(1) as u64,
            self.messages_total / self.nodes.max(1) as u64,
            self.max_reconcile_round_trips,
            self.bad_frames,
            self.unstorable_records,
            self.wall_ms,
            self.parallel_windows,
            self.timers_in_windows,
            self.nodes,
            self.seed,
            self.trace,
            self.wrong_sync_states
        )
    }
}

/// How long after every fault heals the devices have to agree. A device whose clock
/// is minutes behind holds what the others write for as long, and tombstone collection
/// needs a few rounds of acknowledgements to reach it (three phases since issue 11).
const HEAL_LIMIT_MS: u64 = 900_000;
const TICK_MS: u64 = 100;

fn jid(k: usize) -> BareJid {
    BareJid::parse(&format!("c{k}@sim.lit")).expect("simulated JIDs are valid")
}

/// Links with `latency_ms` one way (jitter up to half of it), losing and
/// duplicating messages with these probabilities.
pub(crate) fn faults(latency_ms: u64, loss: f64, dup: f64) -> Faults {
    Faults {
        latency_ms,
        jitter_ms: (latency_ms / 2).max(1),
        loss,
        dup,
        request_timeout_ms: 10 * latency_ms + 1_000,
    }
}

/// The engines' settings in simulations: the node's (frames that ask nothing
/// answered before they are applied), with reconciliation and acknowledgements
/// every 5 s.
pub(crate) fn engine_config() -> sync::Config {
    sync::Config {
        recon_interval_ms: 5_000,
        recon_jitter_ms: 1_000,
        gossip_delay_ms: 10,
        ack_interval_ms: 5_000,
        defer_frames: true,
        ..sync::Config::default()
    }
}

/// Plays `s`.
pub fn run(s: &Scenario) -> Report {
    play(s).0
}

/// Plays `s`, and gives back the world as it ended too (for a caller about to
/// exit, which need not take a large world apart: 3 s at 1,000 × 10,000).
pub fn play(s: &Scenario) -> (Report, World) {
    let started = Instant::now();
    let faults = faults(s.latency_ms, s.loss, s.dup);
    let config = engine_config();
    let mut w = World::new(
        s.nodes,
        s.relays.min(s.nodes.saturating_sub(1)),
        s.skew_ms,
        faults,
        config,
        s.seed,
        s.real_crypto,
        s.degree,
    );
    w.parallel = !s.sequential;
    let full = s.nodes - s.relays.min(s.nodes.saturating_sub(1));
    // Devices away throughout miss everything, the import included.
    for i in 1..=s.offline.min(s.nodes.saturating_sub(1)) {
        w.set_online(i, false);
    }
    let mut load = Workload::default();
    if s.contacts > 0 {
        let contacts = (0..s.contacts)
            .map(|_| Contact {
                identities: vec![Identity::jid(&jid(load.fresh()))],
                ..Contact::default()
            })
            .collect();
        w.command(
            0,
            Command::Import {
                contacts,
                replace: false,
            },
        );
    }

    // Schedule the fault phase.
    let fault_ms = s.fault_ms.max(TICK_MS);
    let at = |w: &mut World| w.random(fault_ms);
    let mut edits: Vec<u64> = (0..s.edits).map(|_| at(&mut w)).collect();
    edits.sort_unstable();
    let mut partitions: Vec<(u64, u64)> = (0..s.partitions)
        .map(|_| (at(&mut w), 2_000 + w.random(8_000)))
        .collect();
    partitions.sort_unstable();
    let mut crashes: Vec<u64> = (0..s.crashes).map(|_| at(&mut w)).collect();
    crashes.sort_unstable();
    let mut revocations: Vec<u64> = (0..s.revocations).map(|_| at(&mut w)).collect();
    revocations.sort_unstable();
    let mut r = 0;
    let mut back_online: BTreeMap<usize, u64> = BTreeMap::new();
    let mut heal_at: Option<u64> = None;
    let (mut e, mut p, mut c) = (0, 0, 0);

    let mut t = 0;
    while t < fault_ms {
        t += TICK_MS;
        w.run_until(t);
        while e < edits.len() && edits[e] <= t {
            e += 1;
            let node = w.random(full as u64) as usize;
            if !w.nodes[node].online || w.revoked_in(node, node) {
                continue;
            }
            edit(&mut w, node, full, &mut load);
        }
        while p < partitions.len() && partitions[p].0 <= t {
            let groups = (0..s.nodes).map(|_| w.random(2) as u32).collect();
            w.partition(groups);
            heal_at = Some(t + partitions[p].1);
            p += 1;
        }
        if heal_at.is_some_and(|h| h <= t) {
            w.partition(vec![0; s.nodes]);
            heal_at = None;
        }
        while c < crashes.len() && crashes[c] <= t {
            let node = w.random(s.nodes as u64) as usize;
            w.crash(node);
            c += 1;
        }
        if s.churn > 0.0 && t % 1_000 == 0 {
            for i in 0..s.nodes {
                if w.nodes[i].online && (w.random(1_000_000) as f64) < s.churn * 1_000_000.0 {
                    w.set_online(i, false);
                    let back = t + 1_000 + w.random(4_000);
                    back_online.insert(i, back);
                }
            }
        }
        while r < revocations.len() && revocations[r] <= t {
            r += 1;
            // Keep the genesis device and at least two full devices.
            let active: Vec<usize> = w
                .active()
                .into_iter()
                .filter(|i| !w.nodes[*i].relay)
                .collect();
            if active.len() <= 2 {
                continue;
            }
            let by = active[w.random(active.len() as u64) as usize];
            let candidates: Vec<usize> = w
                .active()
                .into_iter()
                .filter(|i| *i != 0 && *i != by)
                .collect();
            if let Some(&target) = candidates.get(w.random(candidates.len() as u64) as usize) {
                w.revoke(by, target);
            }
        }
        let due: Vec<usize> = back_online
            .iter()
            .filter(|(_, b)| **b <= t)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            back_online.remove(&i);
            w.set_online(i, true);
        }
    }

    // Heal everything but the lossy links, then wait for convergence.
    for i in 0..s.nodes {
        if !w.nodes[i].online {
            w.set_online(i, true);
        }
    }
    w.partition(vec![0; s.nodes]);
    let healed = w.now_ms;
    let mut converged = false;
    while w.now_ms < healed + HEAL_LIMIT_MS {
        w.run_until(w.now_ms + 1_000);
        // Quiet for a while and identical everywhere.
        if w.now_ms >= w.last_change_ms + 2_000 && w.converged() {
            converged = true;
            break;
        }
    }
    if !converged && std::env::var_os("KITH_SIM_DEBUG").is_some() {
        for i in 0..s.nodes {
            eprintln!("device {i}: {}", w.debug(i));
        }
    }
    let (lost_writes, resurrections) = w.lost_writes();
    let lost_field_edits = w.lost_field_edits();
    let accepted_after_revocation = w.accepted_after_revocation();
    let (secret_leaks, secret_gaps) = w.secret_leaks_and_gaps();
    let totals = w.totals();
    let trace = w.trace;
    // Last: its messages are neither counted nor traced.
    let wrong_sync_states = if converged { w.wrong_sync_states() } else { 0 };
    let report = Report {
        converged,
        sim_time_to_converge_ms: w.last_change_ms.saturating_sub(healed),
        lost_writes,
        lost_field_edits,
        resurrections,
        rejected_records: totals.rejected,
        accepted_after_revocation,
        secret_leaks,
        secret_gaps,
        revoked: s.nodes - w.active().len(),
        collected: w.collected(),
        bytes_total: totals.bytes,
        padding_total: totals.padding,
        messages_total: totals.messages,
        max_reconcile_round_trips: totals.max_round_trips,
        bad_frames: totals.bad_frames,
        unstorable_records: totals.unstorable,
        wall_ms: started.elapsed().as_millis(),
        parallel_windows: w.parallel_windows,
        timers_in_windows: w.timers_in_windows,
        nodes: s.nodes,
        seed: s.seed,
        trace,
        wrong_sync_states,
    };
    (report, w)
}

/// The contacts the workload made: the next JID number, and those believed to exist
/// (added and not deleted by a command that succeeded).
#[derive(Debug, Default)]
struct Workload {
    next_jid: usize,
    live: Vec<usize>,
}

impl Workload {
    fn fresh(&mut self) -> usize {
        self.next_jid += 1;
        self.live.push(self.next_jid);
        self.next_jid
    }

    fn pick(&self, w: &mut World) -> Option<usize> {
        self.live
            .get(w.random(self.live.len() as u64) as usize)
            .copied()
    }
}

/// One random edit on `node`.
fn edit(w: &mut World, node: usize, full: usize, load: &mut Workload) {
    match w.random(100) {
        0..40 => {
            let k = load.fresh();
            w.command(
                node,
                Command::AddContact {
                    jid: jid(k),
                    name: None,
                    groups: vec![],
                },
            );
        }
        40..50 => {
            // The same new contact added on two devices at once.
            let k = load.fresh();
            let other = w.random(full as u64) as usize;
            for d in [node, other] {
                w.command(
                    d,
                    Command::AddContact {
                        jid: jid(k),
                        name: Some(format!("N{k}")),
                        groups: vec![],
                    },
                );
            }
        }
        50..75 => {
            if let Some(k) = load.pick(w) {
                let name = format!("name {}", w.random(1000));
                let edit = ContactEdit {
                    name: Some(Some(name)),
                    ..ContactEdit::default()
                };
                w.command(node, Command::EditContact { jid: jid(k), edit });
            }
        }
        75..85 => {
            if let Some(k) = load.pick(w)
                && w.command(node, Command::RemoveContact { jid: jid(k) })
            {
                load.live.retain(|l| *l != k);
            }
        }
        85..95 => {
            if let Some(k) = load.pick(w) {
                let group = format!("G{}", w.random(5));
                let edit = ContactEdit {
                    add_groups: vec![group],
                    ..ContactEdit::default()
                };
                w.command(node, Command::EditContact { jid: jid(k), edit });
            }
        }
        98.. => {
            // A group removed: made apart from a rename, the removal loses and
            // the contacts it took out are put back.
            let name = format!("G{}", w.random(5));
            w.command(node, Command::RemoveGroup { name });
        }
        _ => {
            let from = format!("G{}", w.random(5));
            let to = format!("G{}", w.random(5));
            w.command(
                node,
                Command::RenameGroup {
                    name: from,
                    new_name: to,
                },
            );
        }
    }
}
