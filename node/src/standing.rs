//! Where each device of the roster stands, for `kith status` and `kith device list`:
//! up to date with this one, behind or ahead (from the summaries reconciliation
//! frames carry, see [`kith_protocol::sync::SyncState`]), and when it was last seen.

use std::collections::BTreeMap;

use kith_protocol::record::{Body, DeviceId, ItemId, Space};
use kith_protocol::roster::Role;
use kith_protocol::sync::Relation;
use kith_protocol::sync::gc;

use crate::api::answer::DeviceList;
use crate::api::status::{Member, MemberSync, Role as ApiRole, SyncWord};
use crate::device::{Device, wall_now};
use crate::service::{NetInfo, iso};

/// How far before a device was last heard from its own records are taken to be
/// ones it holds that this device did not count then (its clock may run ahead).
const OWN_RECORDS_SKEW_MS: u64 = 60 * 1000;

impl Device {
    /// For each other device heard from, how many records it wrote from a little
    /// before it was last heard: it holds those, though they may have come here
    /// through another device. A little before, for clock skew: taking off too
    /// many only lowers a lower bound. One pass over the replica.
    fn own_records_since_heard(&self, me: &DeviceId) -> BTreeMap<DeviceId, u64> {
        let since: BTreeMap<DeviceId, u64> = self
            .engine
            .roster()
            .members()
            .map(|m| m.entry.device)
            .filter(|d| d != me)
            .filter_map(|d| {
                let s = self.engine.sync_state(&d)?;
                Some((d, s.at.wall.0.saturating_sub(OWN_RECORDS_SKEW_MS)))
            })
            .collect();
        let mut own = BTreeMap::new();
        if since.is_empty() {
            return own;
        }
        for r in self.engine.replica().records() {
            if since
                .get(&r.version.device)
                .is_some_and(|t| r.version.hlc.wall_ms >= *t)
            {
                *own.entry(r.version.device).or_insert(0u64) += 1;
            }
        }
        own
    }

    /// For each other device, the tombstones this device still holds that the
    /// device acknowledged as collected (or forgotten) in its latest acknowledgement
    /// records here: it no longer holds them, and lacks nothing by them. At most
    /// [`gc::SHARDS`] records a device, each bounded.
    fn tombstones_collected_there(
        &self,
        me: &DeviceId,
    ) -> BTreeMap<DeviceId, Vec<(Space, ItemId)>> {
        let replica = self.engine.replica();
        let mut out = BTreeMap::new();
        for m in self.engine.roster().members() {
            let d = m.entry.device;
            if d == *me || self.engine.sync_state(&d).is_none() {
                continue;
            }
            let mut keys = Vec::new();
            for shard in 0..gc::SHARDS {
                let Some(Body::Data(body)) = gc::record(replica, &d, shard).map(|r| &r.body) else {
                    continue;
                };
                for ((space, item, sig), phase) in gc::decode(body).unwrap_or_default() {
                    let Some(space) = Space::from_code(u64::from(space)) else {
                        continue;
                    };
                    let held = replica
                        .get(space, &ItemId(item))
                        .is_some_and(|t| t.is_tombstone() && t.signature[..8] == sig);
                    if held && phase >= gc::COLLECTED {
                        keys.push((space, ItemId(item)));
                    }
                }
            }
            if !keys.is_empty() {
                out.insert(d, keys);
            }
        }
        out
    }

    /// The roster: each device with its role and state, and, for the others,
    /// `sync` (where it stood when last heard from: `state` `up_to_date`, `behind`,
    /// `ahead` or `differs`, `by` how many records, `as_of`; and against what this
    /// device holds now, `up_to_date_now` and `behind_now`, how many records more
    /// this device holds; `null` when never heard from, kept across restarts),
    /// `last_seen` (now when connected) and `exchanging` (an exchange this device
    /// began with it is under way).
    pub(crate) fn devices(&mut self, net: &NetInfo) -> DeviceList {
        let me = self.id();
        let now = wall_now().0;
        let peers: BTreeMap<[u8; 32], (Option<u64>, String)> = self
            .known_peers()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.device, (p.last_sync_ms, p.addrs)))
            .collect();
        let ours_now = self.engine.summary();
        let own = self.own_records_since_heard(&me);
        let collected = self.tombstones_collected_there(&me);
        // The devices that, when last heard from, held exactly what this device
        // holds now but for tombstones they have collected since (or before).
        let all_but_collected: BTreeMap<DeviceId, bool> = collected
            .iter()
            .map(|(d, keys)| {
                let theirs = self.engine.sync_state(d).map(|s| s.theirs);
                (
                    *d,
                    theirs == Some(self.engine.summary_without(keys.iter().copied())),
                )
            })
            .collect();
        let roster = self.engine.roster();
        DeviceList(
            roster
                .members()
                .map(|m| {
                    let d = m.entry.device;
                    let state = (d != me).then(|| self.engine.sync_state(&d)).flatten();
                    let sync = state.map(|s| {
                        let (word, by) = match s.relation() {
                            Relation::UpToDate => (SyncWord::UpToDate, 0),
                            Relation::Behind(n) => (SyncWord::Behind, n),
                            Relation::Ahead(n) => (SyncWord::Ahead, n),
                            Relation::Differs => (SyncWord::Differs, 0),
                        };
                        // Against what this device holds now: an away device lacks
                        // at least what was added here since, but for what it
                        // wrote itself (`own_records_since_heard`) and the
                        // tombstones it collected (`tombstones_collected_there`).
                        let own = own.get(&d).copied().unwrap_or(0);
                        let collected = collected.get(&d).map_or(0, |k| k.len() as u64);
                        let added = ours_now.count.saturating_sub(s.theirs.count);
                        // It held exactly this device's records but tombstones it
                        // erased (summaries compared, not counts).
                        let exact = all_but_collected.get(&d).copied().unwrap_or(false);
                        let behind_now = if s.theirs == ours_now || exact {
                            0
                        } else {
                            added.saturating_sub(own + collected)
                        };
                        // Everything added here since it was heard (up to date
                        // then) can be its own: as far as this device knows, it
                        // has all of it.
                        let all_its_own = word == SyncWord::UpToDate && added > 0 && added <= own;
                        MemberSync {
                            state: word,
                            by,
                            as_of: iso(s.at.wall.0),
                            up_to_date_now: s.theirs == ours_now || exact || all_its_own,
                            behind_now,
                        }
                    });
                    let (last_sync, remembered) = peers
                        .get(&d.0)
                        .map(|(t, a)| {
                            let r = crate::device::Remembered::parse(a);
                            (*t, r.all().map(|a| a.to_string()).collect())
                        })
                        .unwrap_or_default();
                    let last_seen = if net.connected.contains_key(&d) {
                        Some(now)
                    } else {
                        last_sync.max(state.map(|s| s.at.wall.0))
                    };
                    Member {
                        id: d.to_string(),
                        name: m.entry.name.clone(),
                        role: if m.entry.role == Role::Full {
                            ApiRole::Full
                        } else {
                            ApiRole::Relay
                        },
                        revoked: m.revoked_at.is_some(),
                        genesis: d == roster.genesis(),
                        this_device: d == me,
                        connected: net.connected.get(&d).cloned(),
                        last_sync: last_sync.map(iso),
                        last_seen: (d != me).then_some(last_seen).flatten().map(iso),
                        exchanging: self.engine.exchanging(&d),
                        sync,
                        remembered,
                    }
                })
                .collect(),
        )
    }
}
