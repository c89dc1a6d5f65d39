//! The replica: for each pubsub node, item id → the winning record. It never opens
//! a record; it checks who wrote it and keeps the greatest version.
//!
//! Rules, applied in this order by [`Replica::apply`]:
//! 1. the signature must verify and the author must be allowed ([`Authors`]);
//!    otherwise the record is rejected and nothing changes;
//! 2. a record stamped more than `max_ahead_ms` ahead of local wall time is held,
//!    neither applied nor lost, until [`Replica::release`] finds that local time has
//!    caught up (at most [`MAX_HELD`] records are held; past that the record is
//!    refused with [`Rejected::HoldFull`], and reconciliation will offer it again);
//! 3. per item id the greatest [`Version`] wins; a tombstone is a record like any
//!    other. Two different records with the same version (only a misbehaving author
//!    can produce them) are ordered by their signature bytes, so every replica keeps
//!    the same one.
//!
//! The outcome does not depend on the order records arrive in, nor on duplicates:
//! the property tests in `tests/convergence.rs` check this.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::clock::{DEFAULT_MAX_AHEAD_MS, Hlc, WallTime};
use crate::record::{DeviceId, ItemId, Record, Space, Verified, Version};

/// Most records held for being stamped in the future.
pub const MAX_HELD: usize = 10_000;
/// Most records set aside because a roster change disallowed their author.
pub const MAX_QUARANTINED: usize = 100_000;
/// Replaced versions kept per item, newest first, to fall back on when the versions
/// above them turn out to be stamped by a device after its revocation.
pub const SHADOW_DEPTH: usize = 4;

/// Who may author records.
pub trait Authors {
    /// Whether `device` may author a record with `version`.
    fn may_author(&self, device: &DeviceId, version: &Version) -> bool;

    /// Whether `device` may author a record with `version` in `space`; by default
    /// the same in every space.
    fn may_author_in(&self, space: Space, device: &DeviceId, version: &Version) -> bool {
        let _ = space;
        self.may_author(device, version)
    }
}

impl Authors for BTreeSet<DeviceId> {
    fn may_author(&self, device: &DeviceId, _version: &Version) -> bool {
        self.contains(device)
    }
}

/// Where a device keeps the records it stored, for the replica to read back the
/// bodies it shelved (see [`Replica::shelve`]): a node keeps a sealed record's body
/// (most of its size) in its store rather than in memory, and reads it back when a
/// peer or a client asks for it. Implemented outside this crate (the node's store);
/// the replica only calls it.
pub trait Shelf: Send + Sync {
    /// The stored record of `space`/`item` with this version and signature, or
    /// `None` if the store does not have it (or cannot read it).
    fn load(
        &self,
        space: Space,
        item: &ItemId,
        version: &Version,
        signature: &[u8; 64],
    ) -> Option<Record>;
}

/// The replica's shelf, if it has one.
#[derive(Clone, Default)]
struct Shelving(Option<Arc<dyn Shelf>>);

impl fmt::Debug for Shelving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Shelf" } else { "NoShelf" })
    }
}

/// Why a record was not accepted. The replica is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The signature does not verify.
    #[error("record signature does not verify")]
    BadSignature,
    /// The author is not in the roster (or was revoked before this version).
    #[error("record author {0} is not a trusted device")]
    UnknownAuthor(DeviceId),
    /// The record is stamped in the future and the hold is full.
    #[error("record is stamped in the future and {max} records are already held")]
    HoldFull {
        /// The limit.
        max: usize,
    },
}

/// What applying an accepted record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First record for this item.
    Inserted,
    /// It replaced an older version.
    Replaced,
    /// The same record was already there.
    Duplicate,
    /// A newer version was already there.
    Stale,
    /// The item's tombstone, newer than the record, was collected (see
    /// [`Replica::collected_record`]: the sender may not know it).
    Collected,
    /// Stamped too far in the future: held until local time catches up.
    Held,
}

impl Outcome {
    /// Whether the replica's contents changed.
    pub fn changed(self) -> bool {
        matches!(self, Self::Inserted | Self::Replaced)
    }
}

/// The records of both nodes.
#[derive(Debug, Clone)]
pub struct Replica {
    records: BTreeMap<(Space, ItemId), Record>,
    held: BTreeMap<(Hlc, Space, ItemId, [u8; 64]), Record>,
    /// Records whose author a roster change disallowed, kept in case a later roster
    /// change (the revocation itself turning out invalid) allows them again.
    quarantine: BTreeMap<(Space, ItemId, [u8; 64]), Record>,
    /// For each item, the last [`SHADOW_DEPTH`] records that were replaced, newest
    /// first: the newest one still allowed comes back if the winner is set aside
    /// (its author turns out revoked before stamping it).
    shadows: BTreeMap<(Space, ItemId), Vec<Record>>,
    /// Tombstones collected (see `sync::gc`): item → the collected tombstone's
    /// version and signature. A record no newer than it is refused, as the
    /// tombstone would have refused it.
    collected: BTreeMap<(Space, ItemId), (Version, [u8; 64])>,
    /// How far ahead of local wall time a record may be stamped and still apply.
    pub max_ahead_ms: u64,
    /// Items whose winning record changed since [`Replica::take_touched`].
    touched: BTreeSet<(Space, ItemId)>,
    /// The same since [`Replica::take_set_changes`] (a second reader: the sync
    /// engine's reconciliation set).
    set_changes: BTreeSet<(Space, ItemId)>,
    /// Signatures already checked.
    verified: Verified,
    /// Where shelved bodies are read back from.
    shelf: Shelving,
    /// The secret ids of shelved records.
    key_ids: crate::record::KeyIds,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new()
    }
}

/// True when `a` wins over `b` for the same item: the greater version, except that
/// in the roster a revocation outranks an addition.
fn wins(a: &Record, b: &Record) -> bool {
    if a.space == Space::Roster
        && let Some(rank) = crate::roster::outranks(a, b)
    {
        return rank;
    }
    (a.version, a.signature) > (b.version, b.signature)
}

impl Replica {
    /// An empty replica.
    pub fn new() -> Self {
        Self {
            records: BTreeMap::new(),
            held: BTreeMap::new(),
            quarantine: BTreeMap::new(),
            shadows: BTreeMap::new(),
            collected: BTreeMap::new(),
            max_ahead_ms: DEFAULT_MAX_AHEAD_MS,
            touched: BTreeSet::new(),
            set_changes: BTreeSet::new(),
            verified: Verified::new(),
            shelf: Shelving::default(),
            key_ids: Default::default(),
        }
    }

    /// Gives the replica a shelf: from now on [`Replica::shelve`] leaves sealed
    /// bodies in it.
    pub fn set_shelf(&mut self, shelf: Arc<dyn Shelf>) {
        self.shelf = Shelving(Some(shelf));
    }

    /// Drops from memory the sealed bodies of the winning records of `keys` (the
    /// caller has stored them where its shelf reads them back: durably, or in the
    /// transaction at hand, the device failing if that rolls back), when the
    /// replica has a shelf; returns
    /// the records as now held, shelved, for other holders (the view) to hold the
    /// same. Records without a sealed body, or already shelved, stay as they are.
    pub fn shelve(&mut self, keys: impl IntoIterator<Item = (Space, ItemId)>) -> Vec<Record> {
        if self.shelf.0.is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for key in keys {
            if let Some(r) = self.records.get_mut(&key)
                && let Some(shelved) = r.to_shelved(&mut self.key_ids)
            {
                *r = shelved.clone();
                out.push(shelved);
            }
        }
        out
    }

    /// The record with its body: `record` itself unless it is shelved, then the
    /// record read back from the shelf (checked to be the same record); `None` if
    /// it cannot be read back.
    pub fn unshelved(&self, record: &Record) -> Option<Record> {
        if !record.is_shelved() {
            return Some(record.clone());
        }
        let shelf = self.shelf.0.as_ref()?;
        shelf
            .load(
                record.space,
                &record.item,
                &record.version,
                &record.signature,
            )
            .filter(|full| !full.is_shelved() && record.same_as(full))
    }

    /// The winning record for an item, with its body (see [`Replica::unshelved`]).
    pub fn get_unshelved(&self, space: impl Into<Space>, item: &ItemId) -> Option<Record> {
        self.unshelved(self.get(space, item)?)
    }

    /// Checks and applies one record received at local wall time `now`.
    pub fn apply(
        &mut self,
        record: Record,
        authors: &dyn Authors,
        now: WallTime,
    ) -> Result<Outcome, Rejected> {
        if !authors.may_author_in(record.space, &record.author(), &record.version) {
            return Err(Rejected::UnknownAuthor(record.author()));
        }
        let record = self
            .verified
            .check(record)
            .map_err(|_| Rejected::BadSignature)?;
        if record.version.hlc.wall_ms > now.0.saturating_add(self.max_ahead_ms) {
            let key = (
                record.version.hlc,
                record.space,
                record.item,
                record.signature,
            );
            if self.held.contains_key(&key) {
                return Ok(Outcome::Held);
            }
            if self.held.len() >= MAX_HELD {
                return Err(Rejected::HoldFull { max: MAX_HELD });
            }
            self.held.insert(key, record);
            return Ok(Outcome::Held);
        }
        Ok(self.insert(record))
    }

    /// Applies a record already checked (from the local store, or just authored).
    /// The caller vouches for signature and author.
    pub fn insert(&mut self, record: Record) -> Outcome {
        self.insert_keeping(record, SHADOW_DEPTH)
    }

    /// [`Replica::insert`] for a store's rows, read back oldest first: every version
    /// replaced is kept as a shadow, not only the newest [`SHADOW_DEPTH`]. A store
    /// that follows the replica holds that many below the winner, and besides them
    /// records of an author revoked after writing them, which may be stamped above
    /// the winner: once the roster check sets them aside, the winner must be there
    /// to fall back on, however many they are. The store bounds how many rows it
    /// gives; the next replacing version trims the shadows back to the depth.
    pub fn insert_stored(&mut self, record: Record) -> Outcome {
        self.insert_keeping(record, usize::MAX)
    }

    fn insert_keeping(&mut self, record: Record, depth: usize) -> Outcome {
        let key = (record.space, record.item);
        if let Some((version, signature)) = self.collected.get(&key) {
            if (record.version, record.signature) <= (*version, *signature) {
                return if record.signature == *signature {
                    Outcome::Duplicate
                } else {
                    Outcome::Collected
                };
            }
            // Newer than a collected tombstone: what that tombstone replaced can
            // never win again (the tombstone is gone, and a fallback past it would
            // undo a valid deletion).
            self.collected.remove(&key);
            self.shadows.remove(&key);
        }
        let outcome = self.insert_winner(key, record, depth);
        if outcome.changed() {
            self.drop_quarantined_below(key);
        }
        outcome
    }

    /// Set-aside records of `key` older than its winner (or its collected tombstone)
    /// can never win again: they go, so that nothing brings them back after the newer
    /// version is collected and forgotten.
    fn drop_quarantined_below(&mut self, key: (Space, ItemId)) {
        let newest = self.records.get(&key).map(|r| r.version);
        let Some(newest) = newest.or_else(|| self.collected.get(&key).map(|(v, _)| *v)) else {
            return;
        };
        let range = (key.0, key.1, [0u8; 64])..=(key.0, key.1, [0xFF; 64]);
        let stale: Vec<_> = self
            .quarantine
            .range(range)
            .filter(|(_, r)| r.version < newest)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.quarantine.remove(&k);
        }
    }

    fn insert_winner(&mut self, key: (Space, ItemId), record: Record, depth: usize) -> Outcome {
        let outcome = self.replace_winner(key, record, depth);
        if outcome.changed() {
            self.touch(key);
        }
        outcome
    }

    fn replace_winner(&mut self, key: (Space, ItemId), record: Record, depth: usize) -> Outcome {
        match self.records.get_mut(&key) {
            None => {
                self.records.insert(key, record);
                Outcome::Inserted
            }
            Some(old) if old.same_as(&record) => Outcome::Duplicate,
            Some(old) if wins(&record, old) => {
                let previous = std::mem::replace(old, record);
                let shadows = self.shadows.entry(key).or_default();
                shadows.insert(0, previous);
                shadows.truncate(depth);
                Outcome::Replaced
            }
            Some(_) => Outcome::Stale,
        }
    }

    /// Applies held records whose stamp local time `now` has caught up with, if their
    /// author is still allowed; returns those that changed the replica.
    pub fn release(&mut self, authors: &dyn Authors, now: WallTime) -> Vec<Record> {
        let limit = Hlc {
            wall_ms: now.0.saturating_add(self.max_ahead_ms),
            counter: u32::MAX,
        };
        let later = self
            .held
            .split_off(&(limit, Space::Keys, ItemId([0xFF; 16]), [0xFF; 64]));
        let due = std::mem::replace(&mut self.held, later);
        let mut changed = Vec::new();
        for (_, record) in due {
            if authors.may_author_in(record.space, &record.author(), &record.version)
                && self.insert(record.clone()).changed()
            {
                changed.push(record);
            }
        }
        changed
    }

    /// The winning record for an item.
    pub fn get(&self, space: impl Into<Space>, item: &ItemId) -> Option<&Record> {
        self.records.get(&(space.into(), *item))
    }

    /// Every winning record, ordered by node then item id.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// The winning records of one space.
    pub fn space(&self, space: impl Into<Space>) -> impl Iterator<Item = &Record> {
        let space = space.into();
        self.records
            .range((space, ItemId([0; 16]))..=(space, ItemId([0xFF; 16])))
            .map(|(_, r)| r)
    }

    /// Number of items (tombstones included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records held for being stamped in the future.
    pub fn held(&self) -> impl Iterator<Item = &Record> {
        self.held.values()
    }

    /// Collects a tombstone: the record goes, its version is remembered; returns
    /// whether there was a tombstone to collect.
    pub fn collect(&mut self, space: Space, item: &ItemId) -> bool {
        let key = (space, *item);
        if !self.records.get(&key).is_some_and(Record::is_tombstone) {
            return false;
        }
        let Some(r) = self.records.remove(&key) else {
            return false;
        };
        self.touch(key);
        // The shadows stay until the tombstone is forgotten: if its author turns out
        // revoked before stamping it, what it deleted comes back.
        self.collected.insert(key, (r.version, r.signature));
        self.drop_quarantined_below(key);
        true
    }

    /// Forgets a collected tombstone altogether (every device has collected it).
    pub fn drop_collected(&mut self, space: Space, item: &ItemId) -> bool {
        let key = (space, *item);
        if self.collected.remove(&key).is_none() {
            return false;
        }
        if !self.records.contains_key(&key) {
            self.shadows.remove(&key);
        }
        true
    }

    /// Whether a version of `space`/`item` has been replaced here since it was loaded
    /// or last collected (it has a shadow list, maybe emptied since by a fall-back
    /// after a revocation). An item never replaced holds in a store that follows the
    /// replica only its winner and records set aside by a roster change (see
    /// [`Replica::quarantined`]): nothing a prune would drop.
    pub fn shadowed(&self, space: Space, item: &ItemId) -> bool {
        self.shadows.contains_key(&(space, *item))
    }

    /// The versions a collected tombstone replaced (its shadows), newest first: kept
    /// with the tombstone's version until it is forgotten.
    pub fn collected_shadows(&self, space: Space, item: &ItemId) -> &[Record] {
        let key = (space, *item);
        match self.shadows.get(&key) {
            Some(s) if self.collected.contains_key(&key) && !self.records.contains_key(&key) => s,
            _ => &[],
        }
    }

    /// Collected tombstones: item → (version, signature).
    pub fn collected(&self) -> impl Iterator<Item = (&(Space, ItemId), &(Version, [u8; 64]))> {
        self.collected.iter()
    }

    /// The version an item was collected at, if it was.
    pub fn collected_version(&self, space: Space, item: &ItemId) -> Option<Version> {
        self.collected.get(&(space, *item)).map(|(v, _)| *v)
    }

    /// Sets aside the records (held ones included) of authors no longer allowed
    /// (after a revocation); returns how many. They come back through
    /// [`Replica::restore`] if a later roster change allows them again.
    pub fn retain_authors(&mut self, authors: &dyn Authors) -> usize {
        let mut moved = 0;
        let disallowed: Vec<(Space, ItemId)> = self
            .records
            .iter()
            .filter(|(_, r)| !authors.may_author_in(r.space, &r.author(), &r.version))
            .map(|(k, _)| *k)
            .collect();
        for k in disallowed {
            if let Some(r) = self.records.remove(&k) {
                self.touch(k);
                self.quarantine.insert((r.space, r.item, r.signature), r);
                moved += 1;
                self.fall_back(k, authors);
            }
        }
        let before = self.held.len();
        self.held
            .retain(|_, r| authors.may_author_in(r.space, &r.author(), &r.version));
        moved += before - self.held.len();
        while self.quarantine.len() > MAX_QUARANTINED {
            self.quarantine.pop_first();
        }
        moved
    }

    /// Forgets collected tombstones whose author turns out disallowed (they refuse
    /// nothing), and makes the newest allowed version each replaced the winner again;
    /// returns those versions (to be stored again). Unlike a winner set aside, this is
    /// not undone by a later roster change: call it once the roster is settled.
    /// The versions come whole (read back from the shelf if they were shelved).
    pub fn uncollect_disallowed(&mut self, authors: &dyn Authors) -> Vec<Record> {
        let disallowed: Vec<(Space, ItemId)> = self
            .collected
            .iter()
            .filter(|((space, _), (v, _))| !authors.may_author_in(*space, &v.device, v))
            .map(|(k, _)| *k)
            .collect();
        let mut back = Vec::new();
        for k in disallowed {
            self.collected.remove(&k);
            if self.records.contains_key(&k) {
                continue;
            }
            self.fall_back(k, authors);
            self.shadows.remove(&k);
            if let Some(r) = self.records.get(&k).cloned() {
                self.touch(k);
                // To be stored again: whole, read back if it was shelved.
                back.push(self.unshelved(&r).unwrap_or(r));
            }
        }
        back
    }

    /// The collected tombstone of an item, as it was signed (a tombstone carries
    /// nothing but its key, version and signature): to answer a device that still
    /// offers an older version.
    pub fn collected_record(&self, space: Space, item: &ItemId) -> Option<Record> {
        self.collected
            .get(&(space, *item))
            .map(|(version, signature)| {
                crate::record::Parts {
                    space,
                    item: *item,
                    version: *version,
                    body: crate::record::Body::Tombstone,
                    signature: *signature,
                }
                .into()
            })
    }

    /// Makes the newest shadow of `k` whose author is allowed the winner (the ones
    /// newer than it go).
    fn fall_back(&mut self, k: (Space, ItemId), authors: &dyn Authors) {
        if let Some(shadows) = self.shadows.get_mut(&k)
            && let Some(at) = shadows
                .iter()
                .position(|r| authors.may_author_in(r.space, &r.author(), &r.version))
        {
            let shadow = shadows.remove(at);
            shadows.drain(..at);
            self.records.insert(k, shadow);
        }
    }

    /// Puts back quarantined records whose author is allowed again (by the usual
    /// last-writer-wins); returns those that changed the replica, whole (read back
    /// from the shelf if they were shelved), to be stored again.
    pub fn restore(&mut self, authors: &dyn Authors) -> Vec<Record> {
        let allowed: Vec<(Space, ItemId, [u8; 64])> = self
            .quarantine
            .iter()
            .filter(|(_, r)| authors.may_author_in(r.space, &r.author(), &r.version))
            .map(|(k, _)| *k)
            .collect();
        let mut changed = Vec::new();
        for k in allowed {
            if let Some(r) = self.quarantine.remove(&k)
                && self.insert(r.clone()).changed()
            {
                // To be stored again: whole, read back if it was shelved.
                changed.push(self.unshelved(&r).unwrap_or(r));
            }
        }
        changed
    }

    /// Checks in one batch the signatures of those of `records` that `authors` let
    /// their authors write (`Verified::verify_all`), so that applying them one by
    /// one ([`Replica::apply`]) finds them checked. Gives the same answers as
    /// applying them alone; only faster for several records by one author. When the
    /// first of them is already known checked, they were checked ahead together (as
    /// the node does for a frame, on its other threads) and nothing is done: their
    /// digests are not computed twice on this thread. (A peer may put a known record
    /// first to have the others checked one by one on apply, as before batches: that
    /// costs it nothing it could not cost before, and skips no check.)
    pub fn verify_ahead(&self, records: &[Record], authors: &dyn Authors) {
        if records.len() < 2 {
            // A lone record (an edit's gossip) is checked as it is applied.
            return;
        }
        let mine: Vec<Record> = records
            .iter()
            .filter(|r| authors.may_author_in(r.space, &r.author(), &r.version))
            .cloned()
            .collect();
        if mine.len() > 1 && !mine.first().is_some_and(|r| self.verified.knows(r)) {
            self.verified.verify_all(&mine);
        }
    }

    /// Checks signatures against `verified`, shared with other replicas (the
    /// simulator's devices share one: the same bytes verify the same way).
    pub fn share_verified(&mut self, verified: Verified) {
        self.verified = verified;
    }

    /// The items whose winning record changed (appeared, was replaced, went) since
    /// the last call, and forgets them.
    pub fn take_touched(&mut self) -> BTreeSet<(Space, ItemId)> {
        std::mem::take(&mut self.touched)
    }

    /// [`Replica::take_touched`] for a second reader, kept apart from the first.
    pub fn take_set_changes(&mut self) -> BTreeSet<(Space, ItemId)> {
        std::mem::take(&mut self.set_changes)
    }

    /// Notes that the winner of `key` changed, for both readers.
    fn touch(&mut self, key: (Space, ItemId)) {
        self.touched.insert(key);
        self.set_changes.insert(key);
    }

    /// Puts back a stored record of an item whose tombstone was collected (for a
    /// store rebuilding the replica): one newer than the collected tombstone can only
    /// have been set aside when the tombstone was collected (its author disallowed),
    /// so it is set aside again, for [`Replica::restore`] to bring back if its author
    /// is allowed again; any other is inserted as usual.
    pub fn insert_beside_collected(&mut self, record: Record) {
        let key = (record.space, record.item);
        match self.collected.get(&key) {
            Some(newest) if (record.version, record.signature) > *newest => {
                self.quarantine
                    .insert((record.space, record.item, record.signature), record);
                while self.quarantine.len() > MAX_QUARANTINED {
                    self.quarantine.pop_first();
                }
            }
            _ => {
                self.insert(record);
            }
        }
    }

    /// Records set aside by [`Replica::retain_authors`].
    pub fn quarantined(&self) -> impl Iterator<Item = &Record> {
        self.quarantine.values()
    }
}

#[cfg(test)]
mod tests;
