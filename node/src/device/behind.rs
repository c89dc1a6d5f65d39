//! What the item index and the history are written from, and when: with the records
//! that change them, or, on a running node, a moment behind them
//! ([`Device::write_index_behind`]).
//!
//! Both are derived from the records: the index is a cache of what the view read
//! (rebuilt when its generation is not the store's), the history what the stored
//! items tell of their edits. An edit replaces its contact's item, so the contact
//! each step stored is taken from the view while it lives (shared, not copied) and
//! kept; its history rows are made from it when they are written. On a running
//! node, the index entries of the items a step changed, and their history, wait
//! until the device has been quiet for [`QUIET`] with no exchange it began under
//! way (at most [`MAX_LAG`] after the first change that waits, [`MAX_LAG_EXCHANGING`]
//! while such an exchange is under way, and at most [`MAX_ITEMS`] items or contact
//! versions), and are then written in one
//! transaction: a sync or an import of many frames writes them once, off the path
//! of the frames, and a lone edit is durable and sent without them. Items gone from
//! the view and `<reserved/>` placeholders are written at once, in the transaction
//! of their records (what they held must not outlive it on disk), unless the index
//! holds nothing of them (`Store::index_holds_nothing`: the empty placeholders an
//! edit's padding adds and takes away, whose rows wait with the rest: a new
//! contact's commit then writes four pages of the log instead of eight), and a deletion
//! writes everything that waits with it (what it erases from the history goes with
//! it). The index is marked current only when nothing waits: a crash while writes
//! wait leaves its generation behind the store's, and the next open rebuilds it, and
//! the history with it (a change is kept once, whatever writes it again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_protocol::contacts::View;
use kith_protocol::item::{Contact, NodeKind};
use kith_protocol::record::{ItemId, Version};

use super::changes::{history_of, history_of_contacts, keep_newest};
use super::{Device, Error};
use crate::store::{self, history, index};

/// How long the device must have been quiet before the writes that wait are made.
pub(crate) const QUIET: Duration = Duration::from_millis(50);

/// How long writes may wait at most, however busy the device is, when no exchange
/// it began is under way.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(2);

/// How long writes may wait at most while an exchange this device began is under
/// way: a new device's first sync of 100,000 contacts takes seconds, and writing
/// the index in its middle stalled its frames for most of a second (measured:
/// docs/performance.md, thirty-fourth session). Once the exchange is over, the
/// writes are due at once.
pub(crate) const MAX_LAG_EXCHANGING: Duration = Duration::from_secs(30);

/// How many items (and contact versions kept for the history) may wait at most:
/// past it they are written with the records.
pub(crate) const MAX_ITEMS: usize = 50_000;

/// The same for writes that began to wait during an exchange this device began
/// (a new device's first sync of 100,000 contacts is not stalled in its middle).
/// Not for all: an import of 100,000 contacts on one node left 20 % more resident
/// after it when its index waited whole (measured: docs/performance.md,
/// thirty-fourth session).
pub(crate) const MAX_ITEMS_EXCHANGING: usize = 200_000;

/// Most items (and contact versions) one catch-up writes: more wait for the next,
/// due at once. A catch-up holds the node's thread and builds every entry it
/// writes in memory first; 100,000 at once, after a new device's first sync, held
/// the node for 2.5 s and left 55 MB more resident (measured: docs/performance.md,
/// thirty-fourth session).
pub(crate) const SLICE: usize = 25_000;

/// An item of one of the two nodes.
type Key = (NodeKind, ItemId);

/// After a failed write (a full disk), how long until the next try.
const RETRY: Duration = Duration::from_secs(2);

/// The index and history writes that wait.
#[derive(Debug)]
pub(crate) struct Behind {
    /// The items whose index entries wait.
    items: BTreeSet<Key>,
    /// The contacts their changes stored, as each step read them from the view
    /// (an item an edit replaces is gone by the time the writes are made), with
    /// the version of each one's record: the history is made from them. Each
    /// version once, however often a step reports it. Deletions never wait, so
    /// nothing here erases.
    contacts: BTreeMap<(ItemId, Version), Arc<Contact>>,
    /// When the first of them changed.
    first: Instant,
    /// When the last did.
    last: Instant,
    /// Where [`MAX_LAG`] counts from: the first change, or the last one made while
    /// an exchange was under way (the lag is not counted during one, so the writes
    /// wait [`QUIET`] after it ends, for what waits on the sync's end to be
    /// answered first).
    lag_from: Instant,
    /// Whether a change waits that was made during an exchange (up to
    /// [`MAX_ITEMS_EXCHANGING`] may then wait).
    exchanged: bool,
    /// Not before, after a failed write.
    retry: Option<Instant>,
}

impl Behind {
    /// Splits off what waits beyond the first `n` items and `n` contact versions
    /// (the index and the history are written apart, so the two need not match);
    /// `None` when nothing does.
    fn split_slice(&mut self, n: usize) -> Option<Self> {
        let items = self
            .items
            .iter()
            .nth(n)
            .copied()
            .map(|k| self.items.split_off(&k))
            .unwrap_or_default();
        let contacts = self
            .contacts
            .keys()
            .nth(n)
            .copied()
            .map(|k| self.contacts.split_off(&k))
            .unwrap_or_default();
        (!items.is_empty() || !contacts.is_empty()).then_some(Self {
            items,
            contacts,
            ..*self
        })
    }

    /// Takes back what [`Behind::split_slice`] split off (or what waited since).
    fn join(&mut self, rest: Self) {
        self.items.extend(rest.items);
        self.contacts.extend(rest.contacts);
        self.first = self.first.min(rest.first);
        self.last = self.last.max(rest.last);
        self.lag_from = self.lag_from.max(rest.lag_from);
        self.exchanged |= rest.exchanged;
    }

    /// When the writes are due: [`QUIET`] after the last change and at most
    /// [`MAX_LAG`] after the first (or after the last made during an exchange);
    /// while an exchange is under way (a frame being checked ahead or on its way
    /// leaves the device's thread quiet without being done), [`MAX_LAG_EXCHANGING`]
    /// after the first.
    fn due(&self, exchanging: bool) -> Instant {
        let due = if exchanging {
            self.first + MAX_LAG_EXCHANGING
        } else {
            (self.last + QUIET).min(self.lag_from + MAX_LAG)
        };
        self.retry.map_or(due, |r| r.max(due))
    }
}

impl Device {
    /// Lets the item index and the history be written a moment behind the records
    /// (see the module): the node then calls [`Device::catch_up_index`] at
    /// [`Device::index_due`], and before it stops.
    pub fn write_index_behind(&mut self) {
        self.may_lag = true;
    }

    /// How many items wait to be written to the index and the history; `None` when
    /// nothing waits.
    pub fn index_behind(&self) -> Option<usize> {
        self.behind.as_ref().map(|b| b.items.len())
    }

    /// When the writes that wait are due; `None` when nothing waits.
    pub fn index_due(&self) -> Option<Instant> {
        let exchanging = self.engine.is_exchanging();
        self.behind.as_ref().map(|b| b.due(exchanging))
    }

    /// Makes the index and history writes that wait, in transactions of their own
    /// of at most a [`SLICE`] each. Nothing is done inside another transaction (it
    /// could still roll back), nor on a failed device (its engine holds what the store does not: the index
    /// stays behind, and the next open rebuilds it). On failure the writes wait
    /// again, tried anew after a pause; the records are stored whatever becomes of
    /// them.
    pub fn catch_up_index(&mut self) -> Result<(), store::Error> {
        while self.catch_up_index_slice()? {}
        Ok(())
    }

    /// [`Device::catch_up_index`], at most a [`SLICE`] of it: what is left waits,
    /// due at once (the node writes a slice at a time, between its other work).
    /// True when a slice was written and more waits.
    pub fn catch_up_index_slice(&mut self) -> Result<bool, store::Error> {
        if self.failed.is_some() || self.store.in_transaction() {
            return Ok(false);
        }
        let Some(mut behind) = self.behind.take() else {
            return Ok(false);
        };
        // The rest waits meanwhile (the index is then not marked current).
        self.behind = behind.split_slice(SLICE);
        match self
            .in_own_transaction(|d| d.write_index(Vec::new(), Some(&behind), Vec::new(), false))
        {
            Ok(()) => {
                self.changes += 1;
                Ok(self.behind.is_some())
            }
            Err(e) => {
                if let Some(rest) = self.behind.take() {
                    behind.join(rest);
                }
                self.behind = Some(Behind {
                    retry: Some(Instant::now() + RETRY),
                    ..behind
                });
                Err(e)
            }
        }
    }

    /// Runs `f` in a transaction of its own: committed when it succeeds, rolled
    /// back otherwise, also when the commit fails (a full disk may leave it open).
    pub(super) fn in_own_transaction(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), store::Error>,
    ) -> Result<(), store::Error> {
        self.store.begin()?;
        let result = f(self).and_then(|()| self.store.commit());
        if result.is_err() && self.store.in_transaction() {
            let _ = self.store.rollback();
        }
        result
    }

    /// What of the view's `changes` to write now, and what waited that goes with
    /// it; `None` when it all waits. Without lag: all of it. With: the items gone
    /// from the view and the `<reserved/>` placeholders go at once (their entries,
    /// and the ids clients chose for them, must not outlive what they held) unless
    /// the index holds nothing of them (`Store::index_holds_nothing`), the
    /// others wait with the contacts they hold; everything goes at once when one of
    /// them marks a deletion (whose erasing of the history must not wait) or when
    /// too many wait.
    pub(super) fn index_now(
        &mut self,
        changes: BTreeSet<Key>,
    ) -> Option<(Vec<Key>, Option<Behind>)> {
        if !self.may_lag {
            return Some((changes.into_iter().collect(), None));
        }
        let exchanging = self.engine.is_exchanging();
        let view = self.engine.view();
        let (store, keys) = (&self.store, &self.index);
        // Gone or a placeholder now: at once, unless the index holds nothing of the
        // item (what padding adds and takes away with each edit), which waits with
        // the rest; a deletion's mark is always at once. Should the look fail, at
        // once.
        let deletes = changes
            .iter()
            .any(|(node, item)| view.marks_deletion(*node, item));
        let (now, live): (Vec<_>, Vec<_>) = changes.into_iter().partition(|(node, item)| {
            (view.item_is_gone(*node, item) || view.is_reserved(*node, item))
                && (view.marks_deletion(*node, item)
                    || !store
                        .index_holds_nothing(keys, *node, item)
                        .unwrap_or(false))
        });
        if !live.is_empty() {
            // What the history is made of is kept now, while its items live.
            let contacts = live
                .iter()
                .filter(|(node, _)| *node == NodeKind::Contacts)
                .filter_map(|(_, item)| {
                    let (version, contact) = view.contact_item(item)?;
                    Some(((*item, version), contact))
                });
            let at = Instant::now();
            let behind = self.behind.get_or_insert_with(|| Behind {
                items: BTreeSet::new(),
                contacts: BTreeMap::new(),
                first: at,
                last: at,
                lag_from: at,
                exchanged: false,
                retry: None,
            });
            behind.contacts.extend(contacts);
            behind.items.extend(live);
            behind.last = at;
            if exchanging {
                behind.lag_from = at;
                behind.exchanged = true;
            }
        }
        let many = self.behind.as_ref().is_some_and(|b| {
            let most = if b.exchanged {
                MAX_ITEMS_EXCHANGING
            } else {
                MAX_ITEMS
            };
            b.items.len().max(b.contacts.len()) >= most
        });
        if deletes || many {
            return Some((now, self.behind.take()));
        }
        if now.is_empty() && self.behind.is_some() {
            return None;
        }
        Some((now, None))
    }

    /// Writes to the item index what the view says of `changes` and that `gone` are
    /// gone, and to the history what the items of `changes` tell; then the same of
    /// what `waited` (its history made from the contacts it kept). The index is
    /// marked current when nothing waits any more. With `rebuilt`, the index is
    /// replaced by these entries.
    pub(super) fn write_index(
        &mut self,
        changes: Vec<Key>,
        waited: Option<&Behind>,
        mut gone: Vec<Key>,
        rebuilt: bool,
    ) -> Result<(), store::Error> {
        let view = self.engine.view();
        let mut entries = Vec::with_capacity(changes.len());
        read_items(view, changes, &mut entries, &mut gone);
        // Also for a rebuilt index: what the items tell that the history lacks (a
        // crash while writes waited) is added, what it holds is kept once.
        let (mut history, erase) = history_of(view, &entries);
        if let Some(waited) = waited {
            // Their history is made of the contacts as they were when they changed
            // (a deletion never waits: nothing there erases). The history keeps
            // only its newest rows: those past them are let go as they are made,
            // so no more than twice them are held at once.
            read_items(view, waited.items.iter().copied(), &mut entries, &mut gone);
            let max = usize::try_from(history::MAX_ROWS).unwrap_or(usize::MAX);
            let kept: Vec<(Version, &Contact)> = waited
                .contacts
                .iter()
                .map(|((_, version), contact)| (*version, contact.as_ref()))
                .collect();
            for part in kept.chunks(max) {
                history.extend(history_of_contacts(view, part));
                if history.len() > max.saturating_mul(2) {
                    keep_newest(&mut history, &mut self.authored);
                }
            }
        }
        let contacts = view.contact_count() as u64;
        // Current once nothing waits, and never on a failed device.
        let complete = self.behind.is_none() && self.failed.is_none();
        self.store
            .write_index(&self.index, &entries, &gone, contacts, rebuilt, complete)?;
        // An item id a client chose (maybe a JID) goes with its item's content: once
        // the item is gone or only a `<reserved/>` placeholder.
        let emptied = entries
            .iter()
            .filter(|e| matches!(e.payload, Some(kith_protocol::item::Payload::Reserved(_))))
            .map(|e| (e.node, e.item))
            .chain(gone.iter().copied());
        self.store.remove_item_names(emptied)?;
        self.record_history(history, erase)
    }

    /// How many entries of the item index opening had to write or remove: 0 when the
    /// index matched the records (for tests and diagnostics).
    pub fn index_repairs(&self) -> usize {
        self.repaired
    }

    /// Whether the item index holds exactly what a view built from the records alone
    /// says of every item (a check for tests and diagnostics: it reads everything,
    /// after making the writes that wait).
    pub fn index_matches_records(&mut self) -> Result<bool, Error> {
        self.catch_up_index()?;
        let stored: BTreeMap<(NodeKind, ItemId), index::Entry> = self
            .store
            .index_entries(&self.index)?
            .into_iter()
            .map(|e| ((e.node, e.item), e))
            .collect();
        let engine = &self.engine;
        let view = View::build(
            engine.replica(),
            engine.keyring(),
            &mut kith_protocol::seal::Opener::new(),
        );
        let expected: BTreeMap<(NodeKind, ItemId), index::Entry> = engine
            .replica()
            .records()
            .filter_map(|r| r.space.node().map(|n| (n, r.item)))
            .filter_map(|(n, i)| view.item(n, &i))
            .map(|read| ((read.0, read.1), index::Entry::from(read)))
            .collect();
        Ok(stored == expected && self.store.index_is_current()?)
    }
}

/// What the view says of `items`: an entry for each it holds, the others `gone`.
fn read_items(
    view: &View,
    items: impl IntoIterator<Item = Key>,
    entries: &mut Vec<index::Entry>,
    gone: &mut Vec<Key>,
) {
    for (node, item) in items {
        match view.item(node, &item) {
            Some(read) => entries.push(index::Entry::from(read)),
            None => gone.push((node, item)),
        }
    }
}

#[cfg(test)]
mod tests;
