//! [`Device`]: one data directory opened: keys, store, and the sync engine over them.
//! It carries out the engine's storage outputs itself (durably, before anything that
//! depends on them leaves) and queues the network ones for the node. The CLI uses a
//! `Device` directly when no node runs; the node owns one for its lifetime.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use kith_protocol::clock::{Clock as Hlc, WallTime};
use kith_protocol::contacts::{Book, ItemRead, View};
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::jid::BareJid;
use kith_protocol::keys::{KeyWrap, OxWrap};
use kith_protocol::ox::{self, DeviceKey};
use kith_protocol::record::DeviceId;
use kith_protocol::record::{ItemId, Space};
use kith_protocol::roster::{Entry, Role};
use kith_protocol::seal::Keyring;
use kith_protocol::sync::{self, Engine, Event, Input, Now, Output};
use libp2p::PeerId;
use rand::RngExt;
use tracing::warn;

use crate::control::Request;
use crate::store::{self, Account, Lock, Store, history, index};

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
    _lock: Lock,
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
    /// (id, revoked) of every secret, as last written to `secrets.xml`.
    saved_keyring: BTreeSet<(String, bool)>,
    /// Set when storing failed: the engine then holds what the store does not, so
    /// the node must stop without sending anything more.
    pub(crate) failed: Option<String>,
    /// The keys of the item index.
    index: index::Keys,
    /// Opened for one command on some items only ([`Device::open_for`]).
    pub(crate) partial: bool,
    /// Entries of the item index that opening had to write or remove (it was not
    /// current, or did not match the records).
    repaired: usize,
    /// Items of the view changed since the node last took them, when a node runs
    /// and wants them (for XMPP notifications); `None` keeps nothing.
    pub(crate) watch: Option<Vec<(NodeKind, ItemId)>>,
    /// Set when the approved XMPP clients changed.
    pub(crate) clients_changed: bool,
}

/// Longest device name, in characters (what pairing accepts too).
pub const MAX_NAME_CHARS: usize = 64;

/// A device name must be short enough for every device to read its roster entry.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Error::Name(format!(
            "a device name is at most {MAX_NAME_CHARS} characters, without control characters"
        )));
    }
    Ok(())
}

/// What every way of opening a data directory reads first.
struct Base {
    lock: Lock,
    store: Store,
    account: Account,
    jid: BareJid,
    secret: [u8; 32],
    ox: DeviceKey,
    keyring: Keyring,
}

/// The requests [`Device::open_for`] answers from the items they touch: the JIDs
/// whose contacts (with all they are linked to) must be loaded. `None`: the request
/// needs everything.
fn touched_jids(request: &Request) -> Option<Vec<&str>> {
    match request {
        Request::Contact { jid }
        | Request::AddContact { jid, .. }
        | Request::RemoveContact { jid }
        | Request::RestoreContact { jid, .. } => Some(vec![jid]),
        Request::Log { .. } => Some(vec![]),
        Request::EditContact {
            jid,
            add_jids,
            remove_jids,
            ..
        } => Some(
            std::iter::once(jid)
                .chain(add_jids)
                .chain(remove_jids)
                .map(String::as_str)
                .collect(),
        ),
        Request::AddGroup { .. } | Request::RenameGroup { .. } | Request::Status => Some(vec![]),
        _ => None,
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("dir", &self.dir)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

fn random_label() -> String {
    let mut rng = rand::rng();
    let n: u32 = rng.random();
    format!("kith-{n:08x}")
}

/// The engine settings the node uses: reconciliation every 30 s (plus jitter) as a
/// safety net under gossip; new records wait 10 ms to be batched into one gossip
/// frame (a command's records are written at once anyway).
pub fn engine_config() -> sync::Config {
    sync::Config {
        recon_interval_ms: 30_000,
        recon_jitter_ms: 5_000,
        gossip_delay_ms: 10,
        ..sync::Config::default()
    }
}

impl Device {
    /// Creates a device in `dir`: keys, the roster's first entry (this device, as
    /// genesis) and the first secrets.
    pub fn init(dir: &Path, jid: &str, name: &str) -> Result<Self, Error> {
        let jid = BareJid::parse(jid).map_err(|e| Error::Jid(format!("{jid:?}: {e}")))?;
        check_name(name)?;
        let mut rng = rand::rng();
        let secret: [u8; 32] = rng.random();
        let me = DeviceId(SigningKey::from_bytes(&secret).verifying_key().to_bytes());
        Self::create(
            dir,
            Account {
                jid: jid.to_string(),
                genesis: me.0,
                name: name.to_owned(),
                label: random_label(),
            },
            secret,
            None,
            &[],
        )
    }

    /// Refuses a data directory that holds a device, whole or in part (a key, the
    /// secrets, or a store with an account or records): `init` and `pair join` never
    /// write over one, whatever state it is in.
    pub fn check_new(dir: &Path) -> Result<(), Error> {
        if let Some(name) = store::DEVICE_FILES.iter().find(|n| dir.join(n).exists()) {
            return Err(store::Error::AlreadyInitialised {
                dir: dir.to_owned(),
                what: (*name).to_owned(),
            }
            .into());
        }
        let db = dir.join("kith.db");
        if db.symlink_metadata().is_ok() && !db.exists() {
            // A link to nothing: creating the store would write wherever it points.
            return Err(store::Error::AlreadyInitialised {
                dir: dir.to_owned(),
                what: "kith.db (a link to nothing)".to_owned(),
            }
            .into());
        }
        if db.exists() {
            let _lock = Lock::take(dir)?;
            if Store::holds_anything(dir)? {
                return Err(store::Error::AlreadyInitialised {
                    dir: dir.to_owned(),
                    what: "kith.db".to_owned(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Creates a device: its keys, account and the `records` it starts with (the
    /// roster, after pairing). `ox` is the OpenPGP key made for the account (made
    /// here when `None`). The genesis device also writes its roster entry and the
    /// first secrets.
    ///
    /// The keys are written under temporary names first; the store's transaction
    /// holding the account is the point of no return, after which they are renamed
    /// into place (and [`Device::open`] finishes the renaming after a crash).
    pub fn create(
        dir: &Path,
        account: Account,
        secret: [u8; 32],
        ox: Option<DeviceKey>,
        records: &[kith_protocol::record::Record],
    ) -> Result<Self, Error> {
        store::create_dir(dir)?;
        Self::check_new(dir)?;
        let lock = Lock::take(dir)?;
        let mut store = Store::open(dir)?;
        let jid = BareJid::parse(&account.jid).map_err(|e| Error::Jid(e.to_string()))?;
        let ox = match ox {
            Some(k) => k,
            None => DeviceKey::generate(&jid, wall_now()).map_err(|e| Error::BadKey {
                path: dir.join("openpgp.key"),
                what: e.to_string(),
            })?,
        };
        store::write_private(dir, &store::pending("device.key"), &secret)?;
        store::write_private(dir, &store::pending("openpgp.key"), &ox.to_bytes())?;
        store.begin()?;
        let written = store
            .persist(records)
            .and_then(|()| store.set_account(&account));
        match written {
            Ok(()) => store.commit()?,
            Err(e) => {
                let _ = store.rollback();
                return Err(e.into());
            }
        }
        store::finish_pending(dir)?;
        drop(store);
        drop(lock);
        // `open` finishes a genesis device: its roster entry and first secrets.
        Self::open(dir)
    }

    /// A genesis device writes its own roster entry and the first secrets, in one
    /// transaction; done at `init`, or at the next open if `init` was cut short.
    fn finish_genesis(&mut self) -> Result<(), Error> {
        let me = self.id();
        if self.account.genesis != me.0 {
            return Ok(());
        }
        let has_entry = self.engine.roster().get(&me).is_some();
        let has_secrets = NodeKind::ALL
            .iter()
            .all(|n| self.engine.keyring().current(*n).is_some());
        if has_entry && has_secrets {
            return Ok(());
        }
        let cert = self.engine_cert()?;
        self.store.begin()?;
        let result = (|| {
            let refused =
                |e: sync::Error| Error::Name(format!("this device cannot start its account: {e}"));
            if !has_entry {
                self.execute(sync::Command::AddDevice(Entry {
                    device: me,
                    cert,
                    name: self.account.name.clone(),
                    role: Role::Full,
                    revoked: false,
                }))?
                .map_err(refused)?;
            }
            self.execute(sync::Command::RotateSecrets)?.map_err(refused)
        })();
        match result {
            Ok(()) => Ok(self.store.commit()?),
            Err(e) => {
                let _ = self.store.rollback();
                Err(e)
            }
        }
    }

    /// This device's OpenPGP certificate, as its roster entry carries it.
    fn engine_cert(&self) -> Result<Vec<u8>, Error> {
        let key =
            DeviceKey::from_bytes(&store::read_file(&self.dir, "openpgp.key")?).map_err(|e| {
                Error::BadKey {
                    path: self.dir.join("openpgp.key"),
                    what: e.to_string(),
                }
            })?;
        Ok(ox::cert_to_bytes(&key.cert()))
    }

    /// Reads the store, account, keys and secrets of `dir`, taking its lock; with
    /// `check_all`, the database's structure is checked first (a read of all of it).
    fn base(dir: &Path, check_all: bool) -> Result<Base, Error> {
        let has_keys = store::DEVICE_FILES.iter().any(|n| dir.join(n).exists());
        let missing = || -> Error {
            if has_keys {
                store::Error::Damaged(dir.to_owned()).into()
            } else {
                store::Error::NotInitialised(dir.to_owned()).into()
            }
        };
        // A missing or empty store file is looked at without opening it: opening
        // would write a schema into it (and SQLite would drop a WAL beside it).
        let db = dir.join("kith.db");
        if std::fs::metadata(&db).map_or(true, |m| m.len() == 0) {
            return Err(missing());
        }
        let lock = Lock::take(dir)?;
        let store = if check_all {
            Store::open(dir)?
        } else {
            Store::open_unchecked(dir)?
        };
        let Some(account) = store.account()? else {
            return Err(missing());
        };
        // An init that committed its account but stopped before renaming its keys.
        store::finish_pending(dir)?;
        let jid = BareJid::parse(&account.jid).map_err(|e| store::Error::Corrupt {
            path: dir.to_owned(),
            what: format!("account: {e}"),
        })?;
        let bad = |name: &str, what: String| Error::BadKey {
            path: dir.join(name),
            what,
        };
        if !dir.join("device.key").exists() {
            return Err(bad(
                "device.key",
                "missing: restore it from a backup of this directory (without it this \
                 device cannot be used: pair the machine again, from a fresh --data-dir)"
                    .into(),
            ));
        }
        let secret: [u8; 32] = store::read_file(dir, "device.key")?
            .try_into()
            .map_err(|_| bad("device.key", "not 32 bytes".into()))?;
        let ox = DeviceKey::from_bytes(&store::read_file(dir, "openpgp.key")?)
            .map_err(|e| bad("openpgp.key", e.to_string()))?;
        let keyring = match std::fs::read_to_string(dir.join("secrets.xml")) {
            Ok(text) => store::keyring_from_xml(dir, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(source) => {
                return Err(store::Error::Io {
                    path: dir.join("secrets.xml"),
                    source,
                }
                .into());
            }
        };
        Ok(Base {
            lock,
            store,
            account,
            jid,
            secret,
            ox,
            keyring,
        })
    }

    /// A device over `base` and `book`, with an engine of `config`.
    fn assemble(base: Base, book: Book, config: sync::Config, partial: bool) -> Self {
        let Base {
            lock,
            store,
            account,
            jid,
            secret,
            ox,
            keyring: _,
        } = base;
        let saved_keyring = book
            .keyring()
            .iter()
            .map(|s| (s.id.clone(), s.revoked))
            .collect();
        let clock = Clock::default();
        let wrap: Box<dyn KeyWrap> = Box::new(OxWrap {
            key: ox,
            account: jid.clone(),
        });
        let seed: [u8; 32] = rand::rng().random();
        let engine = Engine::new(
            config,
            book,
            DeviceId(account.genesis),
            wrap,
            seed,
            clock.now(),
        );
        Self {
            dir: store.dir().to_owned(),
            _lock: lock,
            store,
            account,
            jid,
            secret,
            engine,
            clock,
            net: VecDeque::new(),
            events: VecDeque::new(),
            saved_keyring,
            failed: None,
            index: index::Keys::new(&secret),
            partial,
            repaired: 0,
            watch: None,
            clients_changed: false,
        }
    }

    /// Opens the device in `dir`, taking its lock. A directory holding keys but no
    /// store is reported as damaged (never as new, which `init` would write over).
    /// The merged view is built at once, from the item index where it is current.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let mut base = Self::base(dir, true)?;
        let (replica, quarantined) = base.store.load()?;
        for q in &quarantined {
            warn!(
                "moved aside a stored record that does not decode ({}); the other devices \
                 still hold what it carried",
                q.reason
            );
        }
        let keys = index::Keys::new(&base.secret);
        let current = base.store.index_is_current()?;
        let mut cached: std::collections::HashMap<(NodeKind, ItemId), index::Entry> = if current {
            base.store
                .index_entries(&keys)?
                .into_iter()
                .map(|e| ((e.node, e.item), e))
                .collect()
        } else {
            Default::default()
        };
        let mut book = Book::restore(
            SigningKey::from_bytes(&base.secret),
            std::mem::take(&mut base.keyring),
            replica,
            Default::default(),
        );
        let mut hits = std::collections::HashSet::new();
        book.view_cached(&mut |node, record| {
            let e = cached.remove(&(node, record.item))?;
            if e.version != record.version || e.signature != record.signature {
                return None;
            }
            hits.insert((node, record.item));
            e.payload
        });
        // What the index lacked (or holds no more) is written now.
        let changes: Vec<(NodeKind, ItemId)> = book
            .take_view_changes()
            .into_iter()
            .filter(|k| !hits.contains(k))
            .collect();
        let gone: Vec<(NodeKind, ItemId)> = cached.into_keys().collect();
        let mut device = Self::assemble(base, book, engine_config(), false);
        device.repaired = changes.len() + gone.len();
        device.finish_genesis()?;
        // Nothing is written when the index was right (a full disk still reads).
        if !current || device.repaired > 0 {
            device.store.begin()?;
            let written = device.write_index(changes, gone, !current);
            match written {
                Ok(()) => device.store.commit()?,
                Err(e) => {
                    let _ = device.store.rollback();
                    return Err(e.into());
                }
            }
        }
        device.drain()?;
        Ok(device)
    }

    /// Opens the device for `request` alone, loading only the items it touches (the
    /// contacts of the JIDs it names, with all they are linked to, and every group,
    /// reserved and unreadable item) from the item index: a command on a stopped node
    /// then costs the same whatever the size of the list. `None` when the request
    /// needs the whole list, the index is not current, or opening would have more to
    /// do than the request (a key rotation the audit asks for, say): then
    /// [`Device::open`].
    pub fn open_for(dir: &Path, request: &Request) -> Result<Option<Self>, Error> {
        let Some(jids) = touched_jids(request) else {
            return Ok(None);
        };
        let mut base = Self::base(dir, false)?;
        if !base.store.index_is_current()? {
            return Ok(None);
        }
        let keys = index::Keys::new(&base.secret);
        let mut entries: BTreeMap<(NodeKind, ItemId), index::Entry> = base
            .store
            .index_shared(&keys)?
            .into_iter()
            .map(|e| ((e.node, e.item), e))
            .collect();
        // The contacts of the JIDs, and everything linked to them by an identity.
        let mut todo: Vec<(String, String)> = jids
            .iter()
            .filter_map(|j| BareJid::parse(j).ok())
            .map(|j| ("jid".to_owned(), j.to_string()))
            .collect();
        let mut seen = BTreeSet::new();
        while let Some((kind, value)) = todo.pop() {
            if !seen.insert((kind.clone(), value.clone())) {
                continue;
            }
            for e in base.store.index_by_identity(&keys, &kind, &value)? {
                if let Some(Payload::Contact(c)) = &e.payload {
                    todo.extend(
                        kith_protocol::item::fields::links(c)
                            .map(|(k, v)| (k.to_owned(), v.to_owned())),
                    );
                }
                entries.insert((e.node, e.item), e);
            }
        }
        let items: Vec<(Space, ItemId)> =
            entries.keys().map(|(n, i)| (Space::from(*n), *i)).collect();
        let records = base
            .store
            .records_of(&[Space::Roster, Space::Keys, Space::Acks], &items)?;
        let mut replica = kith_protocol::replica::Replica::new();
        for r in records {
            replica.insert(r);
        }
        let (real, contacts) = base.store.index_counts()?;
        let reads: Vec<ItemRead> = entries.into_values().map(index::Entry::into_read).collect();
        let loaded = View::partial(reads.clone(), [0, 0], 0);
        let unloaded = [
            real[0].saturating_sub(
                loaded.live_items(NodeKind::Contacts) - loaded.reserved_count(NodeKind::Contacts),
            ),
            real[1].saturating_sub(
                loaded.live_items(NodeKind::Groups) - loaded.reserved_count(NodeKind::Groups),
            ),
        ];
        let view = View::partial(
            reads,
            unloaded,
            contacts.saturating_sub(loaded.contact_count()),
        );
        let newest = base.store.newest_stamp()?;
        let clock = newest.map_or_else(Hlc::default, |v| Hlc::new(v.hlc));
        let book = Book::restore_with_view(
            SigningKey::from_bytes(&base.secret),
            std::mem::take(&mut base.keyring),
            replica,
            clock,
            view,
        );
        let config = sync::Config {
            // Acknowledgements need every tombstone: not from a partial replica.
            gc_max_devices: 0,
            ..engine_config()
        };
        let mut device = Self::assemble(base, book, config, true);
        // Opening must have nothing to write of its own (an audit's rotation would
        // need the whole list): leave that to a full open.
        let mut pending = Vec::new();
        while let Some(out) = device.engine.poll_output() {
            if matches!(out, Output::Persist(_) | Output::Collect { .. }) {
                return Ok(None);
            }
            pending.push(out);
        }
        for out in pending {
            match out {
                Output::Event(e) => device.events.push_back(e),
                other => device.net.push_back(other),
            }
        }
        Ok(Some(device))
    }

    /// Writes to the item index what the view says of `changes` and that `gone` are
    /// gone; with `rebuilt`, the index is replaced by these entries.
    fn write_index(
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
        let history = if rebuilt {
            // A rebuilt index is no change: history starts from here.
            Vec::new()
        } else {
            history_of(view, &entries)
        };
        self.store
            .write_index(&self.index, &entries, &gone, contacts, rebuilt)?;
        self.record_history(history)
    }

    /// Stores the changes of `history`, naming a deleted contact as the history last
    /// named it.
    fn record_history(
        &mut self,
        history: Vec<(Vec<u8>, history::Entry)>,
    ) -> Result<(), store::Error> {
        let mut rows: Vec<(Vec<u8>, history::Entry)> = Vec::with_capacity(history.len());
        for (key, mut e) in history {
            if e.name.is_none() && e.jids.is_empty() {
                let earlier = rows
                    .iter()
                    .rev()
                    .map(|(_, r)| r.clone())
                    .find(|r| r.contact_id == e.contact_id && !r.jids.is_empty());
                let earlier = match earlier {
                    Some(r) => Some(r),
                    None => self
                        .store
                        .history(&self.index, 1, &|r| {
                            r.contact_id == e.contact_id && !r.jids.is_empty()
                        })?
                        .pop(),
                };
                if let Some(r) = earlier {
                    e.name = r.name;
                    e.jids = r.jids;
                }
            }
            rows.push((key, e));
        }
        self.store.add_history(&self.index, &rows)
    }

    /// The changes this device stored, newest first (at most `limit`), of the
    /// contact with `jid` if given.
    pub fn history(
        &self,
        jid: Option<&BareJid>,
        limit: usize,
    ) -> Result<Vec<history::Entry>, store::Error> {
        let jid = jid.map(ToString::to_string);
        self.store.history(&self.index, limit, &|e| {
            jid.as_ref().is_none_or(|j| e.jids.contains(j))
        })
    }

    /// How many entries of the item index opening had to write or remove: 0 when the
    /// index matched the records (for tests and diagnostics).
    pub fn index_repairs(&self) -> usize {
        self.repaired
    }

    /// Whether the item index holds exactly what a view built from the records alone
    /// says of every item (a check for tests and diagnostics: it reads everything).
    pub fn index_matches_records(&mut self) -> Result<bool, Error> {
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

    /// The account.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The engine.
    pub fn engine(&mut self) -> &mut Engine<PeerId> {
        &mut self.engine
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

    /// Feeds one network or timer input and stores what it wrote.
    pub fn input(&mut self, input: Input<PeerId>) -> Result<(), store::Error> {
        let now = self.clock.now();
        self.engine.handle_input(now, input);
        self.drain()
    }

    /// Carries out the engine's outputs: storage here, durably and in order; network
    /// outputs and events are queued after the storage that precedes them. The
    /// keyring file is rewritten when the secrets changed.
    pub fn drain(&mut self) -> Result<(), store::Error> {
        let result = self.try_drain();
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
                Ok(()) => self.store.commit()?,
                Err(_) => {
                    let _ = self.store.rollback();
                }
            }
        }
        result?;
        // The keyring file follows the records that deliver its secrets: a crash in
        // between leaves the secrets in those records, which the engine unwraps
        // again at the next start.
        match secrets {
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
                    self.store.persist(&records)?;
                    stored = true;
                }
                Output::Collect { collect, forget } => {
                    self.store.collect(&collect, &forget)?;
                    stored = true;
                }
                Output::Secrets(keyring) => *secrets = Some(keyring),
                Output::Event(e) => self.events.push_back(e),
                other => self.net.push_back(other),
            }
        }
        // The item index follows the view, in the same transaction as the records.
        self.engine.view();
        let changes = self.engine.book_mut().take_view_changes();
        if let Some(watch) = &mut self.watch {
            watch.extend(changes.iter().copied());
        }
        if stored || !changes.is_empty() {
            if !self.store.in_transaction() {
                self.store.begin()?;
                *began = true;
            }
            self.write_index(changes.into_iter().collect(), Vec::new(), false)?;
        }
        Ok(())
    }

    /// Runs `f` with every write it causes in one transaction: all of it is stored,
    /// or none (also after a crash). If `f` or the commit fails after something was
    /// written, the engine holds what the store does not: the device is marked
    /// failed, and the node stops without sending.
    pub fn atomically<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, crate::control::Error>,
    ) -> Result<T, crate::control::Error> {
        self.store.begin()?;
        let result = f(self).and_then(|v| self.store.commit().map(|()| v).map_err(Into::into));
        if let Err(e) = &result {
            if self.store.in_transaction() {
                let _ = self.store.rollback();
            }
            self.net.clear();
            self.failed = Some(e.to_string());
        }
        result
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
            store::write_private(&self.dir, "secrets.xml", xml.as_bytes())?;
            self.saved_keyring = now;
        }
        Ok(())
    }
}

/// The history rows of the index entries just written: one per edit a contact item
/// carries (keyed by contact id and edit, so each is kept once), one per deletion.
fn history_of(view: &View, entries: &[index::Entry]) -> Vec<(Vec<u8>, history::Entry)> {
    use kith_protocol::contacts::history::{What, changes_of, describe};
    let group_name = |id: &str| view.groups().get(id).map(|g| g.group.name.clone());
    let mut out = Vec::new();
    for e in entries {
        let Some(payload) = e.payload.as_ref().filter(|_| e.node == NodeKind::Contacts) else {
            continue;
        };
        for change in changes_of(payload, e.version) {
            let mut key = change.contact_id.as_bytes().to_vec();
            key.extend_from_slice(&change.at.hlc.wall_ms.to_be_bytes());
            key.extend_from_slice(&change.at.hlc.counter.to_be_bytes());
            key.extend_from_slice(&change.at.device.0);
            let (name, jids, changes) = match (&change.what, payload) {
                (What::Edit(fields), Payload::Contact(c)) => (
                    c.name.clone(),
                    c.identities
                        .iter()
                        .filter(|i| i.kind == "jid")
                        .map(|i| i.value.clone())
                        .collect(),
                    fields
                        .iter()
                        .map(|(k, v)| describe(k, v, &group_name))
                        .collect(),
                ),
                _ => {
                    key.push(b'd');
                    (None, Vec::new(), vec!["deleted".to_owned()])
                }
            };
            out.push((
                key,
                history::Entry {
                    at_ms: change.at.hlc.wall_ms,
                    device: change.device.to_string(),
                    contact_id: change.contact_id,
                    name,
                    jids,
                    changes,
                },
            ));
        }
    }
    out
}
