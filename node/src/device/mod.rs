//! [`Device`]: one data directory opened: keys, store, and the sync engine over them.
//! It carries out the engine's storage outputs itself (durably, before anything that
//! depends on them leaves) and queues the network ones for the node. The CLI uses a
//! `Device` directly when no node runs; the node owns one for its lifetime.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use kith_protocol::clock::WallTime;
use kith_protocol::item::NodeKind;
use kith_protocol::jid::BareJid;
use kith_protocol::record::{DeviceId, ItemId, Record};
use kith_protocol::seal::Keyring;
use kith_protocol::sync::{self, Engine, Event, Input, Now, Output};
use libp2p::PeerId;

mod ahead;
mod behind;
mod changes;
mod open;
mod peers;
mod spread;
mod verify;

pub use ahead::{Ahead, Prechecked};
pub use peers::Remembered;

use crate::store::{self, Account, Lock, Store, index};

/// Why a device cannot be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store or a file of the data directory.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A key file does not decode.
    #[error("{path}: {what}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The JID given is not valid.
    #[error("{0}")]
    Jid(String),
    /// The device name given is not valid.
    #[error("{0}")]
    Name(String),
}

/// The current time, as the engine wants it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock {
    /// The instant of a monotonic time in milliseconds.
    pub fn instant_of(&self, mono_ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(mono_ms)
    }

    /// Monotonic and wall time now.
    pub fn now(&self) -> Now {
        Now {
            mono_ms: self.start.elapsed().as_millis() as u64,
            wall: wall_now(),
        }
    }
}

/// Wall-clock time now.
pub fn wall_now() -> WallTime {
    WallTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}

/// One opened data directory.
pub struct Device {
    dir: PathBuf,
    pub(crate) store: Store,
    pub(crate) account: Account,
    pub(crate) jid: BareJid,
    pub(crate) secret: [u8; 32],
    pub(crate) engine: Engine<PeerId>,
    pub(crate) clock: Clock,
    /// Network outputs waiting for the node (dropped when no node runs: the records
    /// reach the peers by reconciliation later).
    pub(crate) net: VecDeque<Output<PeerId>>,
    /// Events for the node (reconciliations done, records refused…).
    pub(crate) events: VecDeque<Event<PeerId>>,
    /// How the key files are read and written (sealed under a passphrase or not).
    pub(crate) key_files: store::KeyFiles,
    /// (id, revoked) of every secret, as last written to `secrets.xml`.
    saved_keyring: BTreeSet<(String, bool)>,
    /// A keyring the engine handed out, to write once the transaction holding the
    /// records that deliver its secrets is committed.
    pending_secrets: Option<Keyring>,
    /// Set when storing failed: the engine then holds what the store does not, so
    /// the node must stop without sending anything more.
    pub(crate) failed: Option<String>,
    /// The keys of the item index.
    index: index::Keys,
    /// Opened for one command on some items only ([`Device::open_for`]).
    pub(crate) partial: bool,
    /// Whether the item index and the history may be written behind the records
    /// (on a running node: [`Device::write_index_behind`]).
    may_lag: bool,
    /// The index and history writes that wait, when they may.
    behind: Option<behind::Behind>,
    /// Entries of the item index that opening had to write or remove (it was not
    /// current, or did not match the records).
    repaired: usize,
    /// Items of the view changed since the node last took them, when a node runs
    /// and wants them (for XMPP notifications); `None` keeps nothing.
    pub(crate) watch: Option<Vec<(NodeKind, ItemId)>>,
    /// Set when the approved XMPP clients changed.
    pub(crate) clients_changed: bool,
    /// How many times this device stored something since it was opened (what
    /// `Request::Wait` waits on).
    pub(crate) changes: u64,
    /// Contacts changed since the node last took them (their ids), by the id (16
    /// hex digits) of the device that changed them: the node logs "3 contacts
    /// changed by phone".
    pub(crate) authored: BTreeMap<String, BTreeSet<String>>,
    /// The signatures that verified, shared with the engine's replica: frames of many
    /// records are checked on every core before the engine applies them.
    verified: kith_protocol::record::Verified,
    /// Checks sync frames as they arrive, with the roster and keyring made known
    /// after every step (shares `verified`).
    ahead: Arc<Ahead>,
    /// Items whose sealed records this step stored: shelved at its end
    /// ([`Device::shelve_stored`]).
    stored: Vec<(kith_protocol::record::Space, ItemId)>,
    /// Open pairing invitations (in memory only: a code is a password).
    pub(crate) invitations: crate::pair::invitations::Invitations,
    /// The directory's lock, declared last so that it goes last: after the engine,
    /// whose replica's shelf shares the store's connection.
    _lock: Lock,
}

/// Longest device name, in characters (what pairing accepts too).
pub const MAX_NAME_CHARS: usize = 64;

/// A device name must be short enough for every device to read its roster entry,
/// not blank, and without what would break or reorder a line where it is shown.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() {
        return Err(Error::Name("a device name cannot be empty".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(kith_protocol::text::breaks_line) {
        return Err(Error::Name(format!(
            "a device name is at most {MAX_NAME_CHARS} characters, without control characters \
             or direction overrides"
        )));
    }
    Ok(())
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("dir", &self.dir)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// The engine settings the node uses: reconciliation every 30 s (plus jitter) as a
/// safety net under gossip; the first `sync::GOSSIP_BURST` writes in 10 ms go out at
/// once, later ones in those 10 ms go together at their end; a sync frame that asks
/// nothing is answered before it is applied ([`Device::apply_deferred`]).
pub fn engine_config() -> sync::Config {
    sync::Config {
        recon_interval_ms: 30_000,
        recon_jitter_ms: 5_000,
        gossip_delay_ms: 10,
        defer_frames: true,
        ..sync::Config::default()
    }
}

impl Device {
    /// Whether the device was opened for one command on some items only
    /// ([`Device::open_for`]).
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This device.
    pub fn id(&self) -> DeviceId {
        DeviceId(
            SigningKey::from_bytes(&self.secret)
                .verifying_key()
                .to_bytes(),
        )
    }

    /// Whether the roster makes this device a relay: it stores and forwards the
    /// account's sealed records and is never sent a secret, so it reads no contact.
    pub fn is_relay(&self) -> bool {
        self.engine
            .roster()
            .get(&self.id())
            .is_some_and(|m| m.entry.role == kith_protocol::roster::Role::Relay)
    }

    /// The account.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The engine.
    pub fn engine(&mut self) -> &mut Engine<PeerId> {
        &mut self.engine
    }

    /// Empties SQLite's log if something was erased since the last checkpoint (for
    /// a command that ends its process without closing the store).
    pub fn fold_log_if_erased(&mut self) -> Result<(), store::Error> {
        if self.store.erased() && !self.store.in_transaction() {
            self.store.checkpoint()?;
        }
        Ok(())
    }

    /// Changes how often the device acknowledges its tombstones and collects (then
    /// erases) what every device acknowledged: 60 s unless set (at least 1 s).
    pub fn set_ack_interval(&mut self, every: std::time::Duration) {
        let now = self.clock.now();
        let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        self.engine.set_ack_interval(now, ms);
    }

    /// Feeds the engine one input and carries out its storage outputs.
    /// Carries out `command` (contacts, devices, rotation) and stores what it wrote.
    /// The outer error is the store's; the inner one says why the engine refused
    /// (then nothing was written).
    pub fn execute(
        &mut self,
        command: impl Into<sync::Command>,
    ) -> Result<Result<(), sync::Error>, store::Error> {
        let now = self.clock.now();
        let result = self.engine.execute(now, command);
        self.drain()?;
        Ok(result)
    }

    /// The checker of sync frames ahead of this device (for the swarm's codec).
    pub fn ahead(&self) -> Arc<Ahead> {
        Arc::clone(&self.ahead)
    }

    /// Feeds one network or timer input and stores what it wrote.
    pub fn input(&mut self, input: Input<PeerId>) -> Result<(), store::Error> {
        self.input_checked(input, None)
    }

    /// [`Device::input`] of a sync frame that [`Ahead::check`] may have checked:
    /// what it opened (`Some`) is taken instead of checking the frame here.
    pub fn input_checked(
        &mut self,
        input: Input<PeerId>,
        ahead: Option<Prechecked>,
    ) -> Result<(), store::Error> {
        // A frame still waiting is applied before this input is checked and its
        // payloads offered (the step applying it would drop them).
        self.apply_deferred()?;
        let (roster, keyring) = (self.engine.roster(), self.engine.keyring());
        let replica = self.engine.replica();
        // The permit of a frame checked ahead is held until its payloads are
        // handed over (the end of this step).
        let (ahead, _permit) = ahead.map(Prechecked::take).unzip();
        // A frame not checked ahead: its bytes, and whether it is gossip.
        let frame = match &input {
            Input::Gossip { source, bytes, .. } if roster.is_active(source) => Some((bytes, true)),
            Input::Request { bytes, .. } | Input::Response { bytes, .. } => Some((bytes, false)),
            _ => None,
        };
        let opened = match (ahead, frame) {
            (Some(opened), _) => opened,
            (None, Some((bytes, gossip))) => {
                verify::in_parallel(
                    verify::Threads::AsTheDevice,
                    bytes,
                    gossip,
                    roster,
                    &self.verified,
                    keyring,
                    Some(replica),
                )
                .0
            }
            (None, None) => Vec::new(),
        };
        self.engine.book_mut().offer(opened);
        let now = self.clock.now();
        self.engine.handle_input(now, input);
        self.drain()
    }

    /// Applies the sync frame the engine answered before applying it, if one waits
    /// (`sync::Engine::apply_deferred`), and stores what it wrote (in the caller's
    /// transaction if one is open, else in one of its own). The node calls this
    /// once the answer has left, so that the peer
    /// builds, and this device checks ahead, the next frame meanwhile. True when a
    /// frame was applied.
    pub fn apply_deferred(&mut self) -> Result<bool, store::Error> {
        if !self.engine.has_deferred() {
            return Ok(false);
        }
        let now = self.clock.now();
        self.engine.apply_deferred(now);
        self.drain()?;
        Ok(true)
    }

    /// Carries out the engine's outputs: storage here, durably and in order; network
    /// outputs and events are queued after the storage that precedes them. The
    /// keyring file is rewritten when the secrets changed.
    pub fn drain(&mut self) -> Result<(), store::Error> {
        let result = self.try_drain();
        self.ahead
            .make_known(self.engine.roster(), self.engine.keyring());
        if let Err(e) = &result {
            // Nothing that may depend on what was not stored leaves.
            self.net.clear();
            self.failed = Some(e.to_string());
        }
        result
    }

    /// Carries out the outputs of one engine step; its storage outputs go in one
    /// transaction (unless the caller holds one open, as an import does), committed
    /// before anything that depends on them can leave.
    fn try_drain(&mut self) -> Result<(), store::Error> {
        let mut began = false;
        let mut secrets = None;
        let result = self.drain_outputs(&mut began, &mut secrets);
        if began {
            match &result {
                Ok(()) => {
                    if let Err(e) = self.store.commit() {
                        // A failed commit may leave the transaction open (a full
                        // disk): nothing may be written into it after.
                        if self.store.in_transaction() {
                            let _ = self.store.rollback();
                        }
                        return Err(e);
                    }
                }
                Err(_) => {
                    let _ = self.store.rollback();
                }
            }
        }
        if result.is_err() {
            self.stored.clear();
        }
        result?;
        if secrets.is_some() {
            self.pending_secrets = secrets;
        }
        if self.store.in_transaction() {
            // The caller's transaction (an import, a publish) commits later.
            return Ok(());
        }
        self.flush_secrets()
    }

    /// Writes the keyring the engine last handed out, if not written yet. The file
    /// follows the records that deliver its secrets: a crash in between leaves the
    /// secrets in those records, which the engine unwraps again at the next start.
    pub(crate) fn flush_secrets(&mut self) -> Result<(), store::Error> {
        match self.pending_secrets.take() {
            Some(keyring) => self.save_keyring(&keyring),
            None => Ok(()),
        }
    }

    fn drain_outputs(
        &mut self,
        began: &mut bool,
        secrets: &mut Option<Keyring>,
    ) -> Result<(), store::Error> {
        let mut stored = false;
        while let Some(out) = self.engine.poll_output() {
            let storage = matches!(out, Output::Persist(_) | Output::Collect { .. });
            if storage && !self.store.in_transaction() {
                self.store.begin()?;
                *began = true;
            }
            match out {
                Output::Persist(records) => {
                    // The engine hands back whole what it stores again (see
                    // `Replica::restore`); should one still be shelved (its read-back
                    // failed there), it is read back here or the store is damaged.
                    let records = records
                        .into_iter()
                        .map(|r| self.whole(r))
                        .collect::<Result<Vec<_>, _>>()?;
                    // An item never replaced in the replica holds no older version
                    // in the store to drop: the first record of an item (a new
                    // contact, each record of a new device's first sync) skips the
                    // prune.
                    let replica = self.engine.replica();
                    self.store
                        .persist_pruning(&records, |r| replica.shadowed(r.space, &r.item))?;
                    self.stored.extend(
                        records
                            .iter()
                            .filter(|r| r.body.sealed_key().is_some())
                            .map(|r| (r.space, r.item)),
                    );
                    stored = true;
                }
                Output::Collect { collect, forget } => {
                    // Stored as the exact record the engine collected, never another
                    // row of the item.
                    let replica = self.engine.replica();
                    let collect: Vec<_> = collect
                        .into_iter()
                        .filter_map(|(space, item)| {
                            replica
                                .collected_record(space, &item)
                                .map(|r| (space, item, r.version, r.signature))
                        })
                        .collect();
                    self.store.collect(&collect, &forget)?;
                    stored = true;
                }
                Output::Secrets(keyring) => *secrets = Some(keyring),
                Output::Event(e) => self.events.push_back(e),
                other => self.net.push_back(other),
            }
        }
        // The item index follows the view, in the same transaction as the records
        // or a moment behind them (`behind`).
        self.engine.view();
        let changes = self.engine.book_mut().take_view_changes();
        if let Some(watch) = &mut self.watch {
            watch.extend(changes.iter().copied());
        }
        if stored || !changes.is_empty() {
            self.changes += 1;
            if let Some((items, waited)) = self.index_now(changes) {
                if !self.store.in_transaction() {
                    self.store.begin()?;
                    *began = true;
                }
                self.write_index(items, waited.as_ref(), Vec::new(), false)?;
            }
        }
        self.shelve_stored();
        Ok(())
    }

    /// Runs `f` with every write it causes in one transaction: all of it is stored,
    /// or none (also after a crash). If `f` or the commit fails after something was
    /// written, the engine holds what the store does not: the device is marked
    /// failed, and the node stops without sending.
    pub fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, crate::api::Error>,
    ) -> Result<T, crate::api::Error> {
        self.store.begin()?;
        let result = f(self);
        self.end_batch(result)
    }

    /// Opens a transaction that every input fed until [`Device::end_batch`] writes
    /// into: under load, one durable commit covers many frames.
    pub(crate) fn begin_batch(&mut self) -> Result<(), store::Error> {
        debug_assert!(!self.store.in_transaction(), "a batch inside a transaction");
        self.store.begin()
    }

    /// Commits what was written since [`Device::begin_batch`] when `result` (what
    /// the inputs came to) is a success; otherwise, or if the commit fails, as
    /// [`Device::atomically`] does: rolled back, the device marked failed and
    /// nothing sent.
    pub(crate) fn end_batch<T, E>(&mut self, result: Result<T, E>) -> Result<T, E>
    where
        E: From<store::Error> + std::fmt::Display,
    {
        let result = result
            .and_then(|v| self.store.commit().map(|()| v).map_err(Into::into))
            .and_then(|v| self.flush_secrets().map(|()| v).map_err(Into::into));
        if let Err(e) = &result {
            self.stored.clear();
            if self.store.in_transaction() {
                let _ = self.store.rollback();
            }
            self.pending_secrets = None;
            self.net.clear();
            self.failed = Some(e.to_string());
        }
        result
    }

    /// `record` with its body, read back from the store if it is shelved; a store
    /// that no longer has it is damaged.
    fn whole(&self, record: Record) -> Result<Record, store::Error> {
        if !record.is_shelved() {
            return Ok(record);
        }
        self.engine
            .replica()
            .unshelved(&record)
            .ok_or_else(|| store::Error::Corrupt {
                path: self.dir.clone(),
                what: format!(
                    "the stored record of item {} could not be read back",
                    record.item
                ),
            })
    }

    /// Leaves the sealed bodies of what was just written to the store, and only
    /// there (see [`kith_protocol::replica::Shelf`]): the replica and the view hold
    /// the records without them, and read them back from the store when needed.
    /// Called once the view has read them, inside the transaction that stores them
    /// (the shelf reads through the same connection, so it finds them): if that
    /// transaction rolls back, the device is failed and stops, as for any failed
    /// write (what the engine holds is no longer what the store does).
    fn shelve_stored(&mut self) {
        if !self.stored.is_empty() {
            let keys = std::mem::take(&mut self.stored);
            self.engine.book_mut().shelve(keys);
        }
    }

    /// (id, revoked) of every secret, as last written to `secrets.xml`.
    pub(crate) fn keyring_state(&self) -> &BTreeSet<(String, bool)> {
        &self.saved_keyring
    }

    /// Writes `keyring` to `secrets.xml` (the engine hands it out when it changed).
    fn save_keyring(&mut self, keyring: &Keyring) -> Result<(), store::Error> {
        let now: BTreeSet<(String, bool)> =
            keyring.iter().map(|s| (s.id.clone(), s.revoked)).collect();
        if now != self.saved_keyring {
            let xml = store::keyring_to_xml(keyring, &self.jid);
            self.key_files
                .write(&self.dir, "secrets.xml", xml.as_bytes())?;
            self.saved_keyring = now;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
