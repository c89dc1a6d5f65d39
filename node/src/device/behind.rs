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
mod tests {
    use kith_protocol::contacts::Command;
    use kith_protocol::jid::BareJid;

    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).expect("a test JID")
    }

    /// A new device whose index and history may lag, as a running node's do.
    fn lagging() -> (tempfile::TempDir, Device) {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        device.write_index_behind();
        (dir, device)
    }

    fn add(device: &mut Device, j: &str) {
        let command = Command::AddContact {
            jid: jid(j),
            name: Some(format!("name of {j}")),
            groups: vec![],
        };
        device.execute(command).unwrap().unwrap();
    }

    fn logged(device: &mut Device) -> Vec<String> {
        let mut jids: Vec<String> = device
            .history(None, 100)
            .unwrap()
            .into_iter()
            .flat_map(|e| e.jids)
            .collect();
        jids.sort();
        jids
    }

    /// Behind the records, the index waits (not current on disk) until caught up;
    /// then it matches the records and the history tells of every change.
    #[test]
    fn the_index_waits_until_caught_up_and_then_matches() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        add(&mut device, "b@x.lit");
        assert!(device.index_behind().is_some_and(|n| n >= 2));
        let due = device.index_due().expect("due when something waits");
        assert!(due <= Instant::now() + MAX_LAG);
        assert!(!device.store.index_is_current().unwrap(), "written behind");
        device.catch_up_index().unwrap();
        assert_eq!(device.index_behind(), None);
        assert_eq!(device.index_due(), None);
        assert!(device.index_matches_records().unwrap());
        assert_eq!(logged(&mut device), ["a@x.lit", "b@x.lit"]);
    }

    /// The log's answer makes the writes that wait first.
    #[test]
    fn the_log_catches_up_first() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        assert!(device.index_behind().is_some());
        assert_eq!(logged(&mut device), ["a@x.lit"]);
        assert_eq!(device.index_behind(), None);
    }

    /// A deletion does not wait: what it erases from the index and the history goes
    /// in the transaction of its records, with everything that waited.
    #[test]
    fn a_deletion_writes_at_once() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        add(&mut device, "b@x.lit");
        assert!(device.index_behind().is_some());
        device
            .execute(Command::RemoveContact {
                jid: jid("a@x.lit"),
            })
            .unwrap()
            .unwrap();
        assert_eq!(device.index_behind(), None, "written with the deletion");
        assert!(device.store.index_is_current().unwrap());
        let history = device.history(None, 100).unwrap();
        assert!(history.iter().any(|e| e.changes == ["deleted"]));
        assert!(
            !history
                .iter()
                .any(|e| e.jids.contains(&"a@x.lit".to_owned())),
            "the deletion erased what the history held of it: {history:?}"
        );
        assert!(device.index_matches_records().unwrap());
    }

    fn is_reserved(p: &kith_protocol::item::Payload) -> bool {
        matches!(p, kith_protocol::item::Payload::Reserved(_))
    }

    fn is_contact(p: &kith_protocol::item::Payload) -> bool {
        matches!(p, kith_protocol::item::Payload::Contact(_))
    }

    /// The items whose index rows hold a payload `kind` accepts.
    fn indexed(
        device: &Device,
        kind: fn(&kith_protocol::item::Payload) -> bool,
    ) -> BTreeSet<ItemId> {
        let entries = device.store.index_entries(&device.index).unwrap();
        entries
            .into_iter()
            .filter(|e| e.payload.as_ref().is_some_and(kind))
            .map(|e| e.item)
            .collect()
    }

    /// The placeholders an edit's padding adds or takes away hold nothing: their
    /// index rows wait with the rest. A contact an edit replaces held something:
    /// its row goes in the transaction of the edit's records.
    #[test]
    fn placeholders_wait_and_a_replaced_contact_goes_at_once() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        device.catch_up_index().unwrap();
        let rows = |device: &Device| (indexed(device, is_reserved), indexed(device, is_contact));
        let (reserved, contacts) = rows(&device);
        assert!(
            !reserved.is_empty(),
            "the padding's placeholders are indexed"
        );
        // A new contact: padding takes a placeholder away, whose row waits.
        add(&mut device, "b@x.lit");
        let view = device.engine.view();
        let taken: Vec<ItemId> = reserved
            .iter()
            .filter(|item| view.item_is_gone(NodeKind::Contacts, item))
            .copied()
            .collect();
        assert_eq!(taken.len(), 1, "padding took one placeholder away");
        assert_eq!(rows(&device).0, reserved, "its row waits");
        assert!(device.index_behind().is_some());
        assert!(
            !device.store.index_is_current().unwrap(),
            "not current while it waits"
        );
        // An edit replaces a's item: its row goes at once, with what waited or not.
        let edit = Command::EditContact {
            jid: jid("a@x.lit"),
            edit: kith_protocol::contacts::ContactEdit {
                name: Some(Some("renamed".into())),
                ..Default::default()
            },
        };
        device.execute(edit).unwrap().unwrap();
        let (_, now) = rows(&device);
        assert!(
            contacts.iter().all(|item| !now.contains(item)),
            "the replaced contact's row is gone at once"
        );
        device.catch_up_index().unwrap();
        let (after, _) = rows(&device);
        assert!(
            after.iter().all(|item| !taken.contains(item)),
            "gone once caught up"
        );
        assert!(device.index_matches_records().unwrap());
    }

    /// What the index holds of an item: nothing for no row or an empty
    /// placeholder's row, something for a contact's, or for an id a client chose.
    #[test]
    fn the_index_holds_nothing_of_empty_placeholders_only() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        device.catch_up_index().unwrap();
        let of = |f| *indexed(&device, f).first().expect("such an entry");
        let placeholder = of(is_reserved);
        let contact = of(is_contact);
        let holds_nothing = |device: &Device, item: &ItemId| {
            device
                .store
                .index_holds_nothing(&device.index, NodeKind::Contacts, item)
                .unwrap()
        };
        assert!(holds_nothing(&device, &placeholder));
        assert!(holds_nothing(&device, &ItemId([7; 16])), "no row");
        assert!(!holds_nothing(&device, &contact));
        device
            .store
            .set_item_name(NodeKind::Contacts, &placeholder, "juliet@capulet.lit")
            .unwrap();
        assert!(!holds_nothing(&device, &placeholder), "a client named it");
        // A deletion's mark is a placeholder that carries something.
        device
            .execute(Command::RemoveContact {
                jid: jid("a@x.lit"),
            })
            .unwrap()
            .unwrap();
        device.catch_up_index().unwrap();
        let view = device.engine.view();
        let mark = device
            .store
            .index_entries(&device.index)
            .unwrap()
            .into_iter()
            .map(|e| e.item)
            .find(|item| view.marks_deletion(NodeKind::Contacts, item))
            .expect("the deletion's mark is indexed");
        assert!(!holds_nothing(&device, &mark), "a mark holds something");
    }

    /// A device that ends with writes waiting (a crash) leaves the index behind the
    /// records: the next open rebuilds it, and the history lacks nothing.
    #[test]
    fn writes_lost_with_the_process_are_made_again_at_the_next_open() {
        let (dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        device.catch_up_index().unwrap();
        add(&mut device, "b@x.lit");
        add(&mut device, "c@x.lit");
        assert!(device.index_behind().is_some());
        drop(device);

        let mut device = Device::open(dir.path()).unwrap();
        assert!(device.index_repairs() > 0, "rebuilt");
        assert!(device.index_matches_records().unwrap());
        assert_eq!(logged(&mut device), ["a@x.lit", "b@x.lit", "c@x.lit"]);
        assert!(device.authored.is_empty(), "a rebuild is no news to log");
        drop(device);
        let device = Device::open(dir.path()).unwrap();
        assert_eq!(device.index_repairs(), 0, "current since");
    }

    /// What each edit's history is made of is kept when it is stored: two renames
    /// in one wait (the first one's item replaced by the second's before anything
    /// is written) both reach the history.
    #[test]
    fn edits_replaced_while_waiting_keep_their_history() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        for name in ["First", "Second"] {
            let edit = kith_protocol::contacts::ContactEdit {
                name: Some(Some(name.to_owned())),
                ..Default::default()
            };
            device
                .execute(Command::EditContact {
                    jid: jid("a@x.lit"),
                    edit,
                })
                .unwrap()
                .unwrap();
        }
        assert!(device.index_behind().is_some(), "nothing written yet");
        device.catch_up_index().unwrap();
        let changes: Vec<String> = device
            .history(None, 100)
            .unwrap()
            .into_iter()
            .flat_map(|e| e.changes)
            .collect();
        for name in ["name \"First\"", "name \"Second\""] {
            assert!(changes.iter().any(|c| c == name), "{name} in {changes:?}");
        }
        assert!(device.index_matches_records().unwrap());
    }

    /// Nothing is written inside another transaction (it could still roll back),
    /// nor on a failed device.
    #[test]
    fn no_catch_up_inside_a_transaction_or_on_a_failed_device() {
        let (_dir, mut device) = lagging();
        add(&mut device, "a@x.lit");
        device.begin_batch().unwrap();
        device.catch_up_index().unwrap();
        assert!(device.index_behind().is_some(), "still waiting");
        device.end_batch(Ok::<(), store::Error>(())).unwrap();
        device.failed = Some("a test".into());
        device.catch_up_index().unwrap();
        assert!(
            device.index_behind().is_some(),
            "a failed device writes nothing"
        );
        assert!(!device.store.index_is_current().unwrap());
    }

    /// Due after `QUIET` without a change, at most `MAX_LAG` after the first (or
    /// the last made during an exchange), never before a retry's time; while an
    /// exchange is under way, only at `MAX_LAG_EXCHANGING`.
    #[test]
    fn writes_are_due_when_quiet_or_late() {
        let first = Instant::now();
        let mut behind = Behind {
            items: BTreeSet::new(),
            contacts: BTreeMap::new(),
            first,
            last: first + Duration::from_millis(10),
            lag_from: first,
            exchanged: false,
            retry: None,
        };
        assert_eq!(behind.due(false), first + Duration::from_millis(10) + QUIET);
        assert_eq!(behind.due(true), first + MAX_LAG_EXCHANGING);
        behind.last = first + MAX_LAG;
        assert_eq!(
            behind.due(false),
            first + MAX_LAG,
            "never later than MAX_LAG"
        );
        let retry = first + MAX_LAG + RETRY;
        behind.retry = Some(retry);
        assert_eq!(behind.due(false), retry);
        assert_eq!(behind.due(true), first + MAX_LAG_EXCHANGING);
        let retry = first + MAX_LAG_EXCHANGING + RETRY;
        behind.retry = Some(retry);
        assert_eq!(behind.due(true), retry);
        // The last change during an exchange 5 s in: once it ends, the lag counts
        // from there, and the writes are due when quiet.
        behind.retry = None;
        let end = first + Duration::from_secs(5);
        (behind.last, behind.lag_from) = (end, end);
        assert_eq!(behind.due(false), end + QUIET);
    }

    /// A slice takes the first items and contact versions, the rest keeps the
    /// others, and joined back they are what waited.
    #[test]
    fn what_waits_splits_into_slices_and_joins_back() {
        let first = Instant::now();
        let key = |n: u8| (NodeKind::Contacts, ItemId([n; 16]));
        let version = |n: u8| Version {
            hlc: kith_protocol::clock::Hlc {
                wall_ms: u64::from(n),
                counter: 0,
            },
            device: kith_protocol::record::DeviceId([n; 32]),
        };
        let contact = Arc::new(Contact::default());
        let mut behind = Behind {
            items: (0..5).map(key).collect(),
            contacts: (0..3)
                .map(|n| ((ItemId([n; 16]), version(n)), Arc::clone(&contact)))
                .collect(),
            first,
            last: first,
            lag_from: first,
            exchanged: false,
            retry: None,
        };
        let whole = (behind.items.clone(), behind.contacts.clone());
        let rest = behind.split_slice(2).expect("more than a slice waits");
        assert_eq!(behind.items, (0..2).map(key).collect());
        assert_eq!(behind.contacts.len(), 2);
        assert_eq!(rest.items, (2..5).map(key).collect());
        assert_eq!(rest.contacts.len(), 1);
        let mut tail = rest;
        assert!(tail.split_slice(3).is_none(), "a slice holds the rest");
        behind.join(tail);
        assert_eq!((behind.items, behind.contacts), whole);
    }

    /// The newest rows kept are as many changes: a change carried by several
    /// versions of a contact takes one place, not several (a new device kept fewer
    /// than 10,000 when the cut came first).
    #[test]
    fn the_newest_rows_kept_are_distinct_changes() {
        let row = |at_ms: u64| {
            let entry = history::Entry {
                at_ms,
                device: "d".into(),
                contact_id: format!("c{at_ms}"),
                name: None,
                jids: Vec::new(),
                changes: Vec::new(),
            };
            (at_ms.to_be_bytes().to_vec(), entry)
        };
        let max = u64::try_from(history::MAX_ROWS).unwrap();
        let mut rows: Vec<_> = (0..max + 10).map(row).collect();
        // The newest hundred twice, as two versions of each contact carry them.
        rows.extend((max - 90..max + 10).map(row));
        let mut authored = BTreeMap::new();
        keep_newest(&mut rows, &mut authored);
        let kept: BTreeSet<u64> = rows.iter().map(|(_, e)| e.at_ms).collect();
        assert_eq!(rows.len(), kept.len(), "each once");
        assert_eq!(
            kept,
            (10..max + 10).collect::<BTreeSet<u64>>(),
            "the newest"
        );
        assert_eq!(authored["d"].len(), 10, "those cut are counted");
    }

    /// Without `write_index_behind` (a command on a stopped node), nothing waits.
    #[test]
    fn a_device_without_a_node_writes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        add(&mut device, "a@x.lit");
        assert_eq!(device.index_behind(), None);
        assert!(device.store.index_is_current().unwrap());
    }
}
