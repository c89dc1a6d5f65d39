//! The end-of-run checks: convergence and the invariants of `scenario::run`.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::contacts::View;
use kith_protocol::item::NodeKind;
use kith_protocol::item::fields::Seen;
use kith_protocol::record::{DeviceId, ItemId, Record, Space, Version};
use kith_protocol::replica::{Authors, Replica};
use kith_protocol::roster::Roster;
use kith_protocol::sync::Engine;
use rayon::prelude::*;

use super::{FieldEdit, Persisted, World};

/// What the checks read of one device.
struct Parts<'a> {
    device: usize,
    roster: &'a Roster,
    replica: &'a Replica,
    view: &'a View,
}

impl World {
    /// The parts the checks read of each active device with an engine (an engine
    /// itself is not shared between threads: its key wrapping need not be).
    fn parts(&self) -> Vec<Parts<'_>> {
        self.active()
            .into_iter()
            .filter_map(|i| {
                let e = self.nodes[i].engine.as_ref()?;
                Some(Parts {
                    device: i,
                    roster: e.roster(),
                    replica: e.replica(),
                    view: e.view(),
                })
            })
            .collect()
    }

    /// A one-line summary of device `i`, for debugging a failing seed.
    pub fn debug(&mut self, i: usize) -> String {
        let devices: Vec<DeviceId> = (0..self.nodes.len()).map(|j| self.device(j)).collect();
        let online = self.nodes[i].online;
        let Some(e) = self.nodes[i].engine.as_mut() else {
            return "no engine".into();
        };
        let roster: Vec<String> = devices
            .iter()
            .map(|d| match e.roster().get(d) {
                None => "-".into(),
                Some(m) if m.revoked_at.is_some() => "R".into(),
                Some(_) => "+".into(),
            })
            .collect();
        let n = e.replica().len();
        let held = e.replica().held().count();
        let peers = e.peers().count();
        let keys: Vec<String> = e
            .keyring()
            .iter()
            .map(|s| format!("{}{}", &s.id[..4], if s.revoked { "r" } else { "" }))
            .collect();
        let view = e.view();
        let unreadable: Vec<String> = view
            .unreadable()
            .iter()
            .take(3)
            .map(|((node, item), why)| {
                let r = e.replica().get(*node, item);
                format!(
                    "{item} by {:?} {:?}: {why:?}",
                    r.map(|r| r.author()),
                    r.map(|r| r.version.hlc)
                )
            })
            .collect();
        let me = e.device();
        let quarantined_keys = e
            .replica()
            .quarantined()
            .filter(|r| r.space == Space::Keys)
            .count();
        format!(
            "{me} q-keys {quarantined_keys} online {online} peers {peers} records {n} held {held} roster {} keys {:?} contacts {} unreadable {} {unreadable:?}",
            roster.join(""),
            keys,
            view.contact_count(),
            view.unreadable().len()
        )
    }

    /// Whether node `i`'s list shows a contact with address `jid`.
    pub fn shows(&self, i: usize, jid: &kith_protocol::jid::BareJid) -> bool {
        self.nodes[i]
            .engine
            .as_ref()
            .is_some_and(|e| e.view().contact_by_jid(jid).is_some())
    }

    /// Nodes not revoked (as node 0, the genesis, sees the roster).
    pub fn active(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| !self.revoked_in(0, i))
            .collect()
    }

    /// Whether every active node holds the same records and every active full node
    /// shows the same list (compared in place: a copy of every device's view would
    /// be the size of the whole simulation again).
    pub fn converged(&mut self) -> bool {
        let active = self.active();
        let replicas: Vec<Option<&Replica>> = active
            .iter()
            .map(|&i| self.nodes[i].engine.as_ref().map(Engine::replica))
            .collect();
        fn records<'a>(
            r: Option<&'a Replica>,
        ) -> impl Iterator<Item = (Space, ItemId, Version, [u8; 64])> + 'a {
            r.into_iter()
                .flat_map(Replica::records)
                .map(|r| (r.space, r.item, r.version, r.signature))
        }
        // Each pair of neighbours on its own core: equal in pairs, equal all.
        if !replicas
            .par_windows(2)
            .all(|w| records(w[0]).eq(records(w[1])))
        {
            return false;
        }
        let views: Vec<&View> = active
            .iter()
            .filter(|&&i| !self.nodes[i].relay)
            .filter_map(|&i| self.nodes[i].engine.as_ref().map(|e| e.view()))
            .collect();
        views.par_windows(2).all(|w| w[0] == w[1])
    }

    /// After convergence: every active node checks with every peer it reaches
    /// (`Input::CheckNow`), the world runs 3 s more, and, when nothing was stored
    /// anywhere meanwhile, every summary heard during that time must say the two
    /// hold the same records. Returns how many said otherwise.
    pub fn wrong_sync_states(&mut self) -> usize {
        let active = self.active();
        let started = self.now_ms;
        for &i in &active {
            let now = self.now(i);
            if let Some(e) = self.nodes[i].engine.as_mut() {
                e.handle_input(now, kith_protocol::sync::Input::CheckNow);
            }
            self.drain(i, None);
        }
        self.run_until(started + 3_000);
        // Something was stored meanwhile (an acknowledgement, a collection): then
        // two devices may rightly have differed for a moment; nothing to judge.
        if self.last_change_ms >= started {
            if std::env::var_os("KITH_SIM_DEBUG").is_some() {
                eprintln!(
                    "sync states not judged: a change at {}",
                    self.last_change_ms
                );
            }
            return 0;
        }
        let mut wrong = 0;
        for &i in &active {
            let Some(e) = self.nodes[i].engine.as_ref() else {
                continue;
            };
            for &j in active.iter().filter(|&&j| j != i) {
                let device = self.device(j);
                if let Some(state) = e.sync_state(&device)
                    && state.at.mono_ms >= started
                    && state.relation() != kith_protocol::sync::Relation::UpToDate
                {
                    wrong += 1;
                }
            }
        }
        wrong
    }

    /// Records an active node holds although their author was revoked before
    /// stamping them (by that node's own roster).
    pub fn accepted_after_revocation(&self) -> usize {
        // Each device on its own core.
        self.parts()
            .par_iter()
            .map(|p| {
                let roster = p.roster;
                p.replica
                    .records()
                    .filter(|r| {
                        r.space != Space::Roster
                            && !roster.may_author_in(r.space, &r.author(), &r.version)
                    })
                    .count()
            })
            .sum()
    }

    /// (revoked or relay nodes holding a current secret, active full nodes lacking one).
    pub fn secret_leaks_and_gaps(&mut self) -> (usize, usize) {
        let Some(current) = self.nodes[0].engine.as_mut().map(|e| {
            NodeKind::ALL
                .iter()
                .filter_map(|n| e.keyring().current(*n).map(|s| s.id.clone()))
                .collect::<Vec<_>>()
        }) else {
            return (0, 0);
        };
        let (mut leaks, mut gaps) = (0, 0);
        for i in 0..self.nodes.len() {
            let revoked = self.revoked_in(0, i);
            let relay = self.nodes[i].relay;
            let Some(e) = self.nodes[i].engine.as_mut() else {
                continue;
            };
            let holds = current
                .iter()
                .filter(|id| e.keyring().get(id).is_some())
                .count();
            if (revoked || relay) && holds > 0 {
                leaks += 1;
            }
            if !revoked && !relay && holds < current.len() {
                gaps += 1;
            }
        }
        (leaks, gaps)
    }

    /// Acknowledged writes that some active node's final replica does not reflect
    /// (its record for the item is older), as (writes lost, deletions undone): a
    /// deletion undone is a deleted item that came back. Writes a device stamped
    /// after its own revocation are refused by design and not counted.
    pub fn lost_writes(&self) -> (usize, usize) {
        // Each device on its own core (the world itself is not shared between
        // threads: an engine's key wrapping need not be).
        let (acked, persisted) = (&self.acknowledged, &self.persisted);
        self.parts()
            .par_iter()
            .map(|p| lost_writes_on(p, acked, persisted))
            .reduce(|| (0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Field changes some active full device's final list does not reflect: the
    /// contact (by contact id) is there, but the field's mark is older than a change
    /// a command made to it (by a device still trusted). A change may lose only to a
    /// newer one; a deleted contact takes its fields with it.
    pub fn lost_field_edits(&self) -> usize {
        let edited: BTreeSet<&str> = self
            .field_edits
            .iter()
            .map(|e| e.contact_id.as_str())
            .collect();
        // Each device on its own core.
        let (edits, deletions) = (&self.field_edits, &self.deletions);
        self.parts()
            .par_iter()
            .map(|p| lost_field_edits_on(p, &edited, edits, deletions))
            .sum()
    }
}

/// [`World::lost_writes`] on one device: `acked` are the writes acknowledged,
/// `persisted` every version some device stored (see `World::persisted`).
fn lost_writes_on(
    p: &Parts<'_>,
    acked: &[(Record, bool)],
    persisted: &Persisted,
) -> (usize, usize) {
    let (mut lost, mut resurrected) = (0, 0);
    let (roster, replica) = (p.roster, p.replica);
    for (a, deletion) in acked {
        // A device revoked by the end is shut out: what it wrote and had not
        // passed on is lost with it, by design.
        if !roster.is_active(&a.author()) || !roster.may_author(&a.author(), &a.version) {
            continue;
        }
        // A collected tombstone counts at the version it was collected at.
        let current = replica
            .get(a.space, &a.item)
            .map(|r| r.version)
            .or_else(|| replica.collected_version(a.space, &a.item));
        // Gone altogether: the newest valid version that could reach the
        // active devices is a tombstone, which every device collected and
        // forgot. A version written before its author's revocation that never
        // left it went with the device and does not count.
        let newest_valid = persisted.get(&(a.space, a.item)).and_then(|all| {
            all.iter().rev().find(|(v, (_, elsewhere))| {
                roster.may_author(&v.device, v) && (*elsewhere || roster.is_active(&v.device))
            })
        });
        let forgotten = current.is_none()
            && newest_valid.is_some_and(|(v, (tomb, _))| *tomb && *v >= a.version);
        if !forgotten && current.is_none_or(|v| v < a.version) {
            lost += 1;
            resurrected += usize::from(*deletion);
        }
    }
    (lost, resurrected)
}

/// [`World::lost_field_edits`] on one device; `edited` are the contact ids the
/// commands changed, `edits` the changes and `deletions` the contacts deleted
/// (see `World::deletions`).
fn lost_field_edits_on(
    p: &Parts<'_>,
    edited: &BTreeSet<&str>,
    edits: &[FieldEdit],
    deletions: &[(String, Seen)],
) -> usize {
    let (i, roster, view) = (p.device, p.roster, p.view);
    if !view.is_whole() {
        return 0;
    }
    // The final marks of the contacts edited (not of every contact: that is
    // most of a large run's checking time).
    let mut finals: BTreeMap<String, kith_protocol::item::fields::State> = BTreeMap::new();
    for c in view.contacts() {
        if kith_protocol::item::fields::contact_id(&c.contact)
            .is_some_and(|cid| edited.contains(cid))
            && let Ok(state) = kith_protocol::item::fields::State::of(
                &c.contact,
                kith_protocol::contacts::merge::ORIGIN,
            )
            && let Some(cid) = state.contact_id.clone()
        {
            finals.insert(cid, state);
        }
    }
    let mut lost = 0;
    for edit in edits {
        if !roster.is_active(&edit.at.device) || !roster.may_author(&edit.at.device, &edit.at) {
            continue;
        }
        let Some(state) = finals.get(&edit.contact_id) else {
            continue;
        };
        // A deletion that knew of the change took it away; what keeps the
        // contact is an edit the deletion did not know of.
        let deleted = deletions.iter().any(|(cid, seen)| {
            *cid == edit.contact_id && seen.get(&edit.at.device).is_some_and(|v| *v >= edit.at)
        });
        if deleted {
            continue;
        }
        if state
            .fields
            .get(&edit.key)
            .is_none_or(|(m, _)| m.at < edit.at)
        {
            if std::env::var_os("KITH_SIM_DEBUG").is_some() {
                // One print per finding: devices are checked on several threads.
                use std::fmt::Write as _;
                let mut text = format!(
                    "device {i}: lost field edit {edit:?}; final {:?}\n",
                    state.fields.get(&edit.key)
                );
                if let Some(c) = view.contacts().find(|c| {
                    kith_protocol::item::fields::contact_id(&c.contact)
                        == Some(edit.contact_id.as_str())
                }) {
                    let _ = writeln!(text, "  contact {:?}", c.contact);
                    for (m, v) in c.members() {
                        if let Some(read) = view.item(NodeKind::Contacts, &m) {
                            let _ = writeln!(text, "  member {m} {v:?}: {:?}", read.4);
                        }
                    }
                }
                eprint!("{text}");
            }
            lost += 1;
        }
    }
    lost
}
