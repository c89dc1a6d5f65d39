//! A device's contact book: its replica, its secrets, its editor, and the merged view,
//! brought up to date with the items that changed each time it is asked for.

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;

use super::edit::{Command, Editor, Error};
use super::view::View;
use crate::clock::{Clock, WallTime};
use crate::record::{Body, DeviceId, ItemId, Record, Space};
use crate::replica::{Authors, Outcome, Rejected, Replica};
use crate::seal::{Keyring, Opener};

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
        }
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.editor.device()
    }

    /// The records.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The secrets.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The secrets, to add or revoke some; the view is rebuilt afterwards.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        self.keys_changed = true;
        &mut self.keyring
    }

    /// The editor (padding policy, clock).
    pub fn editor_mut(&mut self) -> &mut Editor {
        &mut self.editor
    }

    /// The merged view.
    pub fn view(&mut self) -> &View {
        let touched = self.replica.take_touched();
        if self.stale {
            self.view = View::build(&self.replica, &self.keyring, &mut self.opener);
            self.stale = false;
        } else {
            let waiting: Vec<_> = if self.keys_changed {
                self.view.waiting().collect()
            } else {
                Vec::new()
            };
            let changed = touched
                .into_iter()
                .filter_map(|(space, item)| space.node().map(|n| (n, item)));
            self.view.update(
                &self.replica,
                &self.keyring,
                &mut self.opener,
                changed.chain(waiting),
            );
        }
        self.keys_changed = false;
        &self.view
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
        let records = self
            .editor
            .execute(&self.view, command, &self.keyring, now, rng)?;
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
        self.editor.check(&self.view, command, &self.keyring, rng)
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
