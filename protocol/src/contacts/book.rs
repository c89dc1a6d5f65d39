//! A device's contact book: its replica, its secrets, its editor, and the merged view,
//! brought up to date with the items that changed each time it is asked for.

use std::collections::{BTreeSet, HashMap};

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;

use super::edit::{Command, Editor, Error};
use super::view::{Reads, View};
use crate::clock::{Clock, WallTime};
use crate::item::{NodeKind, Payload};
use crate::record::{Body, DeviceId, ItemId, Record, Space, Version};
use crate::replica::{Authors, Outcome, Rejected, Replica};
use crate::seal::{Keyring, Opener};

/// A payload opened and parsed from a record elsewhere (see [`Book::offer`]).
#[derive(Debug, Clone)]
pub struct Opened {
    /// The record's item.
    pub item: ItemId,
    /// The record's version.
    pub version: Version,
    /// The record's signature.
    pub signature: [u8; 64],
    /// What its sealed body opens and parses to.
    pub payload: Payload,
}

/// One device's local state.
#[derive(Debug)]
pub struct Book {
    replica: Replica,
    keyring: Keyring,
    editor: Editor,
    opener: Opener,
    view: View,
    /// The view must be built from scratch (a restored replica).
    stale: bool,
    /// The keyring gained secrets: items waiting for one are read again.
    keys_changed: bool,
    /// Items of the view that may have changed since [`Book::take_view_changes`].
    view_changes: BTreeSet<(NodeKind, ItemId)>,
    /// Payloads of the records this device sealed since the view was last brought
    /// up to date, as a reader reads them, and those offered ([`Book::offer`]) for
    /// the records of the input at hand (by item, version and signature): the view
    /// takes them instead of opening and parsing the record, and drops the rest at
    /// its next update.
    written: HashMap<(ItemId, Version), ([u8; 64], Payload)>,
    /// Set while records whose payloads were offered wait to be applied (a frame
    /// applied after its answer, see `sync::Engine::apply_deferred`): an update of
    /// the view keeps the payloads it did not take instead of dropping them.
    hold_offers: bool,
    /// Reads shared with other books (see [`Book::share_reads`]).
    reads: Option<Reads>,
}

impl Book {
    /// An empty book for the device whose signing key is `key`.
    pub fn new(key: SigningKey, keyring: Keyring) -> Self {
        Self::restore(key, keyring, Replica::new(), Clock::default())
    }

    /// A book over records already stored, its clock having seen `clock`.
    pub fn restore(key: SigningKey, keyring: Keyring, replica: Replica, clock: Clock) -> Self {
        let mut clock = clock;
        for r in replica.records() {
            clock = Clock::new(clock.last().max(r.version.hlc));
        }
        Self {
            replica,
            keyring,
            editor: Editor::new(key, clock),
            opener: Opener::new(),
            view: View::default(),
            stale: true,
            keys_changed: false,
            view_changes: BTreeSet::new(),
            written: HashMap::new(),
            hold_offers: false,
            reads: None,
        }
    }

    /// A book over records already stored whose view is given (built from a cache,
    /// or [`View::partial`]) instead of built from the replica.
    pub fn restore_with_view(
        key: SigningKey,
        keyring: Keyring,
        replica: Replica,
        clock: Clock,
        view: View,
    ) -> Self {
        let mut book = Self::restore(key, keyring, replica, clock);
        book.replica.take_touched();
        book.view = view;
        book.stale = false;
        book
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.editor.device()
    }

    /// The records.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Payloads opened and parsed elsewhere (another thread) from exactly these
    /// records: the view takes each instead of opening its record again, at its next
    /// update, when the record is the one the view reads then (same item, version
    /// and signature) and its secret is at hand; those it does not take are dropped
    /// then.
    pub fn offer(&mut self, opened: Vec<Opened>) {
        self.written.reserve(opened.len());
        for o in opened {
            self.written
                .insert((o.item, o.version), (o.signature, o.payload));
        }
    }

    /// Keeps the payloads offered ([`Book::offer`]) across updates of the view
    /// while `hold` (their records wait to be applied); the first update after
    /// `hold` is false again drops those it does not take.
    pub fn hold_offers(&mut self, hold: bool) {
        self.hold_offers = hold;
    }

    /// Gives the replica a shelf (see [`Replica::set_shelf`]).
    pub fn set_shelf(&mut self, shelf: std::sync::Arc<dyn crate::replica::Shelf>) {
        self.replica.set_shelf(shelf);
    }

    /// Leaves the sealed bodies of the winning records of `keys` in the shelf (the
    /// caller has stored them where the shelf reads them back, see
    /// [`Replica::shelve`]): the replica and the view then hold the
    /// shelved record, and the body's memory is freed. Nothing changes without a
    /// shelf. Returns how many records were shelved.
    pub fn shelve(&mut self, keys: impl IntoIterator<Item = (Space, ItemId)>) -> usize {
        let shelved = self.replica.shelve(keys);
        self.view.hold_shelved(&shelved);
        shelved.len()
    }

    /// See [`Replica::take_set_changes`].
    pub fn take_set_changes(&mut self) -> BTreeSet<(Space, ItemId)> {
        self.replica.take_set_changes()
    }

    /// The secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The secrets, to change in any way; the view is built anew afterwards. To
    /// add or revoke secrets, [`Book::add_secrets`] and [`Book::revoke_secrets`]
    /// cost less.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        self.stale = true;
        // What was sealed may no longer open with what the keyring will hold.
        self.written.clear();
        &mut self.keyring
    }

    /// Adds secrets; items waiting for them are read again.
    pub fn add_secrets(&mut self, secrets: impl IntoIterator<Item = crate::seal::Secret>) {
        for s in secrets {
            self.keyring.insert(s);
        }
        self.keys_changed = true;
    }

    /// Marks secrets revoked: they still open what they sealed, so the view stays.
    pub fn revoke_secrets<'a>(&mut self, ids: impl IntoIterator<Item = &'a String>) {
        for id in ids {
            self.keyring.revoke(id);
        }
    }

    /// The editor (padding policy, clock).
    pub fn editor_mut(&mut self) -> &mut Editor {
        &mut self.editor
    }

    /// The merged view.
    pub fn view(&mut self) -> &View {
        self.view_cached(&mut |_, _| None)
    }

    /// [`Book::view`], taking payloads from `cache` where it has the one of exactly
    /// that record (the node's item index) instead of opening them.
    pub fn view_cached(
        &mut self,
        cache: &mut dyn FnMut(NodeKind, &Record) -> Option<Payload>,
    ) -> &View {
        let touched = self.replica.take_touched();
        let mut written = std::mem::take(&mut self.written);
        let keyring = &self.keyring;
        // Only what the keyring opens: the view would read anything else as waiting.
        let mut or_written = |node: NodeKind, r: &Record| match written.remove(&(r.item, r.version))
        {
            Some((signature, p))
                if signature == r.signature
                    && r.body
                        .sealed_key()
                        .is_some_and(|k| keyring.get(k).is_some()) =>
            {
                Some(p)
            }
            _ => cache(node, r),
        };
        let cache: &mut dyn FnMut(NodeKind, &Record) -> Option<Payload> = &mut or_written;
        if self.stale {
            self.view = View::build_cached(
                &self.replica,
                &self.keyring,
                &mut self.opener,
                cache,
                self.reads.as_ref(),
            );
            self.stale = false;
            self.view_changes.extend(
                self.replica
                    .records()
                    .filter(|r| !r.is_tombstone())
                    .filter_map(|r| r.space.node().map(|n| (n, r.item))),
            );
        } else {
            let waiting: Vec<_> = if self.keys_changed {
                self.view.waiting().collect()
            } else {
                Vec::new()
            };
            let changed: Vec<(NodeKind, ItemId)> = touched
                .into_iter()
                .filter_map(|(space, item)| space.node().map(|n| (n, item)))
                .chain(waiting)
                .collect();
            self.view_changes.extend(changed.iter().copied());
            self.view.update_cached(
                &self.replica,
                &self.keyring,
                &mut self.opener,
                changed,
                cache,
                self.reads.as_ref(),
            );
        }
        self.keys_changed = false;
        if self.hold_offers {
            self.written = written;
        }
        &self.view
    }

    /// The merged view as last brought up to date by [`Book::view`] (the engine does
    /// so at the end of every step).
    pub fn current_view(&self) -> &View {
        &self.view
    }

    /// The items whose part of the view may have changed since the last call (all of
    /// them after the view was built from scratch), to keep an index of it.
    pub fn take_view_changes(&mut self) -> BTreeSet<(NodeKind, ItemId)> {
        std::mem::take(&mut self.view_changes)
    }

    /// Carries out a command; the new records are already applied here and are
    /// returned to be stored and sent.
    pub fn execute<R: CryptoRng + ?Sized>(
        &mut self,
        command: Command,
        now: WallTime,
        rng: &mut R,
    ) -> Result<Vec<Record>, Error> {
        self.view();
        let (records, reads) = self.editor.execute(
            &self.view,
            command,
            &self.keyring,
            &mut self.opener,
            now,
            rng,
        )?;
        for (i, payload) in reads {
            if let Some(r) = records.get(i) {
                self.written
                    .insert((r.item, r.version), (r.signature, payload));
            }
        }
        for r in &records {
            self.replica.insert(r.clone());
        }
        Ok(records)
    }

    /// Whether `command` would be carried out, without writing anything (see
    /// [`Editor::check`]).
    pub fn check<R: CryptoRng + ?Sized>(
        &mut self,
        command: Command,
        rng: &mut R,
    ) -> Result<(), Error> {
        self.view();
        self.editor
            .check(&self.view, command, &self.keyring, &mut self.opener, rng)
    }

    /// [`Book::check`] of an import of `contacts`, and what it would do, without
    /// writing anything (see [`super::edit::Editor::check_import`]).
    pub fn check_import<R: CryptoRng + ?Sized>(
        &mut self,
        contacts: Vec<crate::item::Contact>,
        replace: bool,
        rng: &mut R,
    ) -> Result<super::edit::ImportSummary, Error> {
        self.view();
        self.editor
            .check_import(&self.view, contacts, replace, &self.keyring, rng)
    }

    /// Signs a record authored here, stamped by this device's clock.
    pub fn sign(&mut self, space: Space, item: ItemId, body: Body, now: WallTime) -> Record {
        self.editor.sign(space, item, body, now)
    }

    /// Applies a record authored here (already checked).
    pub fn insert_local(&mut self, record: Record) {
        self.replica.insert(record);
    }

    /// Checks signatures against `verified` (see [`Replica::share_verified`]).
    pub fn share_verified(&mut self, verified: crate::record::Verified) {
        self.replica.share_verified(verified);
    }

    /// Takes payloads from, and gives them to, `reads`, shared with other books
    /// whose keyrings agree on every key id (the simulator's devices).
    pub fn share_reads(&mut self, reads: Reads) {
        self.reads = Some(reads);
    }

    /// Collects a tombstone (see `sync::gc`).
    pub fn collect(&mut self, space: Space, item: &ItemId) -> bool {
        self.replica.collect(space, item)
    }

    /// Forgets a collected tombstone altogether.
    pub fn drop_collected(&mut self, space: Space, item: &ItemId) -> bool {
        self.replica.drop_collected(space, item)
    }

    /// Sets aside records by authors no longer allowed, and puts back those allowed
    /// again; returns (how many were set aside, the records put back).
    pub fn retain_authors(&mut self, authors: &dyn Authors) -> (usize, Vec<Record>) {
        let dropped = self.replica.retain_authors(authors);
        let restored = self.replica.restore(authors);
        (dropped, restored)
    }

    /// See [`Replica::uncollect_disallowed`].
    pub fn uncollect_disallowed(&mut self, authors: &dyn Authors) -> Vec<Record> {
        self.replica.uncollect_disallowed(authors)
    }

    /// Checks and applies a record from elsewhere.
    pub fn receive(
        &mut self,
        record: Record,
        authors: &dyn Authors,
        now: WallTime,
    ) -> Result<Outcome, Rejected> {
        let hlc = record.version.hlc;
        let outcome = self.replica.apply(record, authors, now)?;
        if outcome != Outcome::Held {
            self.editor.observe(hlc, now);
        }
        Ok(outcome)
    }

    /// Applies held records whose time has come; returns those that changed the book.
    pub fn release(&mut self, authors: &dyn Authors, now: WallTime) -> Vec<Record> {
        let released = self.replica.release(authors, now);
        for r in &released {
            self.editor.observe(r.version.hlc, now);
        }
        released
    }
}
