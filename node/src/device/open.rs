//! Opening a data directory: creating a device, reading what it stored, and the
//! partial open that loads only the items one command touches.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use ed25519_dalek::SigningKey;
use kith_protocol::clock::Clock as Hlc;
use kith_protocol::contacts::{Book, ItemRead, LostGroup, View};
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::jid::BareJid;
use kith_protocol::keys::{KeyWrap, OxWrap};
use kith_protocol::ox::{self, DeviceKey};
use kith_protocol::record::{DeviceId, ItemId, Space};
use kith_protocol::roster::{Entry, Role};
use kith_protocol::seal::Keyring;
use kith_protocol::sync::{self, Engine, Output};
use rand::RngExt;
use tracing::warn;

use super::{Ahead, Clock, Device, Error, check_name, engine_config, wall_now};
use crate::api::Request;
use crate::store::{self, Account, Lock, Store, index};

/// What every way of opening a data directory reads first.
struct Base {
    lock: Lock,
    store: Store,
    account: Account,
    jid: BareJid,
    secret: [u8; 32],
    ox: DeviceKey,
    keyring: Keyring,
    key_files: store::KeyFiles,
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
        Request::Log { jid, .. } => Some(jid.as_deref().into_iter().collect()),
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
        Request::AddGroup { .. }
        | Request::RenameGroup { .. }
        | Request::Status
        | Request::Wait { .. } => Some(vec![]),
        _ => None,
    }
}

impl Device {
    /// Creates a device in `dir`: keys, the roster's first entry (this device, as
    /// genesis) and the first secrets.
    pub fn init(dir: &Path, jid: &str, name: &str) -> Result<Self, Error> {
        Self::init_with(dir, jid, name, store::KeyFiles::clear())
    }

    /// [`Device::init`], writing the key files as `key_files` says (sealed under a
    /// passphrase, or in clear).
    pub fn init_with(
        dir: &Path,
        jid: &str,
        name: &str,
        key_files: store::KeyFiles,
    ) -> Result<Self, Error> {
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
            },
            secret,
            None,
            &[],
            key_files,
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
        key_files: store::KeyFiles,
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
        key_files.write(dir, &store::pending("device.key"), &secret)?;
        key_files.write(dir, &store::pending("openpgp.key"), &ox.to_bytes())?;
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
        Self::open_with(dir, key_files)
    }

    /// A genesis device writes its own roster entry and the first secrets, in one
    /// transaction; done at `init`, or at the next open if `init` was cut short.
    pub(super) fn finish_genesis(&mut self) -> Result<(), Error> {
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
            Ok(()) => {
                self.store.commit()?;
                Ok(self.flush_secrets()?)
            }
            Err(e) => {
                let _ = self.store.rollback();
                Err(e)
            }
        }
    }

    /// This device's OpenPGP certificate, as its roster entry carries it.
    pub(super) fn engine_cert(&self) -> Result<Vec<u8>, Error> {
        let key = DeviceKey::from_bytes(&self.key_files.read_again(&self.dir, "openpgp.key")?)
            .map_err(|e| Error::BadKey {
                path: self.dir.join("openpgp.key"),
                what: e.to_string(),
            })?;
        Ok(ox::cert_to_bytes(&key.cert()))
    }

    /// Reads the store, account, keys and secrets of `dir`, taking its lock; with
    /// `check_all`, the database's structure is checked first (a read of all of it).
    fn base(dir: &Path, check_all: bool, mut key_files: store::KeyFiles) -> Result<Base, Error> {
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
        // An init that committed its account but stopped before renaming its keys,
        // or a passphrase change cut short.
        store::finish_pending(dir)?;
        store::finish_rekey(dir)?;
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
        let secret: [u8; 32] = key_files
            .read(dir, "device.key")?
            .as_slice()
            .try_into()
            .map_err(|_| bad("device.key", "not 32 bytes".into()))?;
        let ox = DeviceKey::from_bytes(&key_files.read(dir, "openpgp.key")?)
            .map_err(|e| bad("openpgp.key", e.to_string()))?;
        let keyring = if dir.join("secrets.xml").exists() {
            let bytes = key_files.read(dir, "secrets.xml")?;
            let text = std::str::from_utf8(&bytes).map_err(|_| store::Error::Corrupt {
                path: dir.to_owned(),
                what: "secrets.xml: not UTF-8".into(),
            })?;
            store::keyring_from_xml(dir, text)?
        } else {
            Default::default()
        };
        Ok(Base {
            lock,
            store,
            account,
            jid,
            secret,
            ox,
            keyring,
            key_files,
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
            key_files,
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
        let mut book = book;
        // Sealed bodies live in the store once stored (see `Device::shelve_stored`).
        book.set_shelf(std::sync::Arc::new(store.shelf()));
        // The writes of an import or a reseal are checked and signed on every core.
        book.editor_mut()
            .set_spread(std::sync::Arc::new(super::spread::Cores));
        let verified = kith_protocol::record::Verified::new();
        book.share_verified(verified.clone());
        let mut engine = Engine::new(
            config,
            book,
            DeviceId(account.genesis),
            wrap,
            seed,
            clock.now(),
        );
        // Where each device stood when last heard from, in an earlier run (a store
        // that cannot say is no reason not to open: status then shows none). A few
        // rows: partial opens (`status` with the node stopped) read them too.
        let index_keys = index::Keys::new(&secret);
        match store.sync_states(&index_keys) {
            Ok(states) => {
                for (device, bytes) in states {
                    if let Some(state) = sync::SyncState::from_bytes(&bytes) {
                        engine.restore_sync_state(DeviceId(device), state);
                    }
                }
            }
            Err(e) => tracing::warn!("reading where the devices stood: {e}"),
        }
        let (roster, keyring) = (engine.roster().clone(), engine.keyring().clone());
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
            key_files,
            saved_keyring,
            pending_secrets: None,
            failed: None,
            index: index_keys,
            partial,
            may_lag: false,
            behind: None,
            repaired: 0,
            watch: None,
            clients_changed: false,
            changes: 0,
            authored: BTreeMap::new(),
            ahead: std::sync::Arc::new(Ahead::new(verified.clone(), roster, keyring)),
            verified,
            stored: Vec::new(),
            invitations: Default::default(),
        }
    }

    /// Opens the device in `dir`, taking its lock. A directory holding keys but no
    /// store is reported as damaged (never as new, which `init` would write over).
    /// The merged view is built at once, from the item index where it is current.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        Self::open_with(dir, store::KeyFiles::clear())
    }

    /// [`Device::open`], reading the key files as `key_files` says (with the
    /// passphrase they are sealed under).
    pub fn open_with(dir: &Path, key_files: store::KeyFiles) -> Result<Self, Error> {
        let mut base = Self::base(dir, true, key_files)?;
        // Sealed bodies stay in the store (see `Device::shelve_stored`).
        let (replica, quarantined) = base.store.load_shelved()?;
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
        // Peer addresses an earlier version kept in clear are sealed.
        device.store.seal_peer_addrs(&device.index)?;
        device.repaired = changes.len() + gone.len();
        device.finish_genesis()?;
        // Nothing is written when the index was right (a full disk still reads).
        if !current || device.repaired > 0 {
            device.in_own_transaction(|d| d.write_index(changes, None, gone, !current))?;
            if !current {
                // What a rebuilt index adds to the history is no news to log.
                device.authored.clear();
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
    pub fn open_for(
        dir: &Path,
        request: &Request,
        key_files: store::KeyFiles,
    ) -> Result<Option<Self>, Error> {
        let Some(jids) = touched_jids(request) else {
            return Ok(None);
        };
        let mut base = Self::base(dir, false, key_files)?;
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
            // Every stored version kept, as `Store::load` does: rows of an author
            // revoked after writing them may stand above the winner.
            replica.insert_stored(r);
        }
        let (real, contacts) = base.store.index_counts()?;
        let reads: Vec<ItemRead> = entries.into_values().map(index::Entry::into_read).collect();
        let loaded = View::partial(reads.clone(), [0, 0], 0);
        if let Request::RenameGroup { name, .. } = request
            && let named = loaded.groups_named(&kith_protocol::item::clean_name(name))
            && (named.len() > 1
                || loaded.group_conflicts().iter().any(|c| {
                    matches!(c.lost, LostGroup::Removal)
                        && named.iter().any(|g| g.group.id == c.entry.group.id)
                }))
        {
            // A rename folds groups named alike into one, moving their contacts,
            // and keeping a group whose removal lost puts back the contacts the
            // removal took out; this open loaded neither: everything is needed.
            return Ok(None);
        }
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
            if matches!(
                out,
                Output::Persist(_) | Output::Secrets(_) | Output::Collect { .. }
            ) {
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
}
