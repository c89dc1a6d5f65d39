//! The engine's one way in for what a user (or the application) asks: [`Command`],
//! carried out by [`Engine::execute`] with a typed [`Error`]. Network and timer
//! input go through `handle_input`; every change to persist, the keyring included,
//! leaves through the output queue.

use std::collections::BTreeSet;
use std::fmt::Debug;

use super::{Engine, Now, Output};
use crate::contacts;
use crate::record::DeviceId;
use crate::roster::Entry;

/// What a user or the application asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A change to the contact list.
    Contacts(contacts::Command),
    /// Adds a device to the roster and gives it every secret (older ones marked
    /// revoked), if it is a full device.
    AddDevice(Entry),
    /// Revokes a device: it may author nothing after now, and the secrets rotate.
    RevokeDevice(DeviceId),
    /// Gives a device of the roster a new name (a revoked one keeps its last: a
    /// revocation outranks any later entry of its device).
    RenameDevice(DeviceId, String),
    /// New secrets for both nodes, sent to every full device, every item re-sealed.
    RotateSecrets,
}

impl From<contacts::Command> for Command {
    fn from(c: contacts::Command) -> Self {
        Self::Contacts(c)
    }
}

/// Why a command was not carried out. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The contact list refused the change.
    #[error(transparent)]
    Contacts(#[from] contacts::Error),
    /// This device is not (or no more) in the roster: it may change nothing.
    #[error("this device is not in the roster")]
    NotInRoster,
    /// A roster entry that no device could read back (a name too long?).
    #[error("the roster entry is over its limits (a name too long?)")]
    EntryTooLarge,
    /// A revoked device never comes back.
    #[error("device {0} is revoked and cannot come back")]
    Revoked(DeviceId),
    /// No such device in the roster.
    #[error("no device {0} in the roster")]
    NoSuchDevice(DeviceId),
    /// A relay device holds no secrets and cannot rotate them.
    #[error("a relay device cannot rotate the secrets")]
    Relay,
}

/// What the keyring holds, to tell when it changed: secret ids and whether revoked.
pub(super) type KeyringState = BTreeSet<(String, bool)>;

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Carries out `command`. On success its records are persisted and gossiped
    /// (and a changed keyring persisted) through the output queue; on error the
    /// command wrote nothing (a frame waiting to be applied, see
    /// [`Engine::apply_deferred`], is applied first either way).
    pub fn execute(&mut self, now: Now, command: impl Into<Command>) -> Result<(), Error> {
        self.apply_deferred(now);
        let result = match command.into() {
            Command::Contacts(cmd) => {
                let mut rng = self.rng.clone();
                let records = self.book.execute(cmd, now.wall, &mut rng)?;
                self.rng = rng;
                self.written(now, records);
                Ok(())
            }
            Command::AddDevice(entry) => self.add_device(now, entry),
            Command::RevokeDevice(device) => self.revoke_device(now, device),
            Command::RenameDevice(device, name) => self.rename_device(now, device, name),
            Command::RotateSecrets => self.rotate(now),
        };
        self.timers(now);
        self.finish_step(now);
        result
    }

    /// [`Engine::execute`] for one part of a bulk change that the caller carries
    /// out in parts (a large import, for its progress): what it writes reaches peers
    /// the way any write past [`super::MAX_GOSSIP_QUEUE`] records does, by a
    /// reconciliation started at once (records in frames of up to a megabyte), not
    /// by gossip frames of 64 KiB each that a slow peer's queue may drop.
    pub fn execute_bulk(&mut self, now: Now, command: impl Into<Command>) -> Result<(), Error> {
        // A waiting frame is applied as it would be, not as part of the bulk change.
        self.apply_deferred(now);
        self.bulk = true;
        let result = self.execute(now, command);
        self.bulk = false;
        result
    }

    /// The keyring as a set of (id, revoked).
    pub(super) fn keyring_state(&self) -> KeyringState {
        self.book
            .keyring()
            .iter()
            .map(|s| (s.id.clone(), s.revoked))
            .collect()
    }

    /// Ends a step: contacts this device must settle are written, a keyring that
    /// changed is handed out to persist, and the view is brought up to date for the
    /// `&self` getters.
    pub(super) fn finish_step(&mut self, now: Now) {
        self.finish(now, true);
    }

    /// [`Engine::finish_step`]; without `settle` (at construction: opening a device
    /// writes nothing of its own accord) contacts are left as they are.
    pub(super) fn finish(&mut self, now: Now, settle: bool) {
        if settle {
            self.settle(now);
        }
        let now = self.keyring_state();
        if now != self.saved_keyring {
            self.saved_keyring = now;
            self.outputs
                .push_back(Output::Secrets(self.book.keyring().clone()));
        }
        self.book.view();
    }
}
