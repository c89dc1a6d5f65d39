//! What the item index and the history are written from, and when: with the records
//! that change them, or, on a running node, a moment behind them
//! ([`Device::write_index_behind`]).
//!
//! Both are derived from the records: the index is a cache of what the view read
//! (rebuilt when its generation is not the store's), the history what the stored
//! items tell of their edits. On a running node they wait until the device has been
//! quiet for [`QUIET`] with no exchange it began under way (at most [`MAX_LAG`]
//! after the first change that waits, and at most [`MAX_ITEMS`] items), and are
//! then written in one transaction: a sync or
//! an import of many frames writes them once, off the path of the frames, and a
//! lone edit is durable and sent without them. A change that empties an item (a
//! deletion, an item gone) writes them at once, in the transaction of its records:
//! what a deletion erases from the history and the index must not outlive it on
//! disk. A crash while writes wait leaves the index's generation behind the store's:
//! the next open rebuilds it, and the history with it (a change is kept once,
//! whatever writes it again).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kith_protocol::contacts::View;
use kith_protocol::item::NodeKind;
use kith_protocol::record::ItemId;

use super::changes::history_of;
use super::{Device, Error};
use crate::store::{self, index};

/// How long the device must have been quiet before the writes that wait are made.
pub(crate) const QUIET: Duration = Duration::from_millis(50);

/// How long writes may wait at most, however busy the device is.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(2);

/// How many items may wait at most: past it they are written with the records.
pub(crate) const MAX_ITEMS: usize = 50_000;

/// After a failed write (a full disk), how long until the next try.
const RETRY: Duration = Duration::from_secs(2);

/// The index and history writes that wait.
#[derive(Debug)]
pub(crate) struct Behind {
    /// The items whose index entries and history rows wait.
    items: BTreeSet<(NodeKind, ItemId)>,
    /// When the first of them changed.
    first: Instant,
    /// When the last did.
    last: Instant,
    /// Not before, after a failed write.
    retry: Option<Instant>,
}

impl Behind {
    /// When the writes are due: [`QUIET`] after the last change, unless an exchange
    /// is under way (a frame being checked ahead or on its way leaves the device's
    /// thread quiet without being done), and at most [`MAX_LAG`] after the first.
    fn due(&self, exchanging: bool) -> Instant {
        let most = self.first + MAX_LAG;
        let due = if exchanging {
            most
        } else {
            (self.last + QUIET).min(most)
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
    /// nothing waits (the index matches the records as stored).
    pub fn index_behind(&self) -> Option<usize> {
        self.behind.as_ref().map(|b| b.items.len())
    }

    /// When the writes that wait are due; `None` when nothing waits.
    pub fn index_due(&self) -> Option<Instant> {
        let exchanging = self.engine.is_exchanging();
        self.behind.as_ref().map(|b| b.due(exchanging))
    }

    /// Makes the index and history writes that wait, in a transaction of their own
    /// (or the caller's). On failure they wait again, tried anew after a pause: the
    /// records are stored, and the next open rebuilds the index if it never is.
    pub fn catch_up_index(&mut self) -> Result<(), store::Error> {
        let Some(mut behind) = self.behind.take() else {
            return Ok(());
        };
        let own = !self.store.in_transaction();
        let items: Vec<_> = behind.items.iter().copied().collect();
        let mut result = if own { self.store.begin() } else { Ok(()) };
        result = result.and_then(|()| self.write_index(items, Vec::new(), false));
        if own {
            result = match result {
                Ok(()) => self.store.commit(),
                Err(e) => {
                    let _ = self.store.rollback();
                    Err(e)
                }
            };
        }
        match result {
            Ok(()) => {
                self.changes += 1;
                Ok(())
            }
            Err(e) => {
                behind.retry = Some(Instant::now() + RETRY);
                self.behind = Some(behind);
                Err(e)
            }
        }
    }

    /// What of the view's `changes` (and what waited) to write to the index now:
    /// all of it, unless the index may lag. Then the items gone from the view are
    /// removed at once (a few deletions: their entries and the ids clients chose
    /// for them go with them), and the others wait, unless one of them marks a
    /// deletion (whose erasing of the history must not wait) or too many wait.
    pub(super) fn index_now(
        &mut self,
        changes: BTreeSet<(NodeKind, ItemId)>,
    ) -> Option<Vec<(NodeKind, ItemId)>> {
        if !self.may_lag {
            return Some(changes.into_iter().collect());
        }
        let view = self.engine.view();
        let (gone, live): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(node, item)| view.item_is_gone(*node, item));
        let deletes = live
            .iter()
            .any(|(node, item)| view.marks_deletion(*node, item));
        let now = Instant::now();
        let behind = self.behind.get_or_insert_with(|| Behind {
            items: BTreeSet::new(),
            first: now,
            last: now,
            retry: None,
        });
        behind.items.extend(live);
        behind.last = now;
        if deletes || behind.items.len() >= MAX_ITEMS {
            let mut all: Vec<_> = self
                .behind
                .take()
                .map_or_else(Vec::new, |b| b.items.into_iter().collect());
            all.extend(gone);
            return Some(all);
        }
        (!gone.is_empty()).then_some(gone)
    }

    /// Writes to the item index what the view says of `changes` and that `gone` are
    /// gone, and to the history what their items tell; with `rebuilt`, the index is
    /// replaced by these entries.
    pub(super) fn write_index(
        &mut self,
        changes: Vec<(NodeKind, ItemId)>,
        mut gone: Vec<(NodeKind, ItemId)>,
        rebuilt: bool,
    ) -> Result<(), store::Error> {
        let view = self.engine.view();
        let mut entries = Vec::with_capacity(changes.len());
        for (node, item) in changes {
            match view.item(node, &item) {
                Some(read) => entries.push(index::Entry::from(read)),
                None => gone.push((node, item)),
            }
        }
        let contacts = view.contact_count() as u64;
        // The index is current once nothing waits any more.
        let complete = self.behind.is_none();
        // Also for a rebuilt index: what the items tell that the history lacks (a
        // crash while writes waited) is added, what it holds is kept once.
        let (history, erase) = history_of(view, &entries);
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

#[cfg(test)]
mod tests {
    use kith_protocol::contacts::Command;
    use kith_protocol::jid::BareJid;

    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::parse(s).expect("a test JID")
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
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        device.write_index_behind();
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
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        device.write_index_behind();
        add(&mut device, "a@x.lit");
        assert!(device.index_behind().is_some());
        assert_eq!(logged(&mut device), ["a@x.lit"]);
        assert_eq!(device.index_behind(), None);
    }

    /// A deletion does not wait: what it erases from the index and the history goes
    /// in the transaction of its records, with everything that waited.
    #[test]
    fn a_deletion_writes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        device.write_index_behind();
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

    /// A device that ends with writes waiting (a crash) leaves the index behind the
    /// records: the next open rebuilds it, and the history lacks nothing.
    #[test]
    fn writes_lost_with_the_process_are_made_again_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(dir.path(), "romeo@montague.lit", "laptop").unwrap();
        device.write_index_behind();
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

    /// Due after `QUIET` without a change, at most `MAX_LAG` after the first, never
    /// before a retry's time; while an exchange is under way, only at `MAX_LAG`.
    #[test]
    fn writes_are_due_when_quiet_or_late() {
        let first = Instant::now();
        let mut behind = Behind {
            items: BTreeSet::new(),
            first,
            last: first + Duration::from_millis(10),
            retry: None,
        };
        assert_eq!(behind.due(false), first + Duration::from_millis(10) + QUIET);
        assert_eq!(behind.due(true), first + MAX_LAG);
        behind.last = first + MAX_LAG;
        assert_eq!(
            behind.due(false),
            first + MAX_LAG,
            "never later than MAX_LAG"
        );
        let retry = first + MAX_LAG + RETRY;
        behind.retry = Some(retry);
        assert_eq!(behind.due(false), retry);
        assert_eq!(behind.due(true), retry);
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
