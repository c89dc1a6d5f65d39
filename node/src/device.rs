//! [`Device`]: one data directory opened: keys, store, and the sync engine over them.
//! It carries out the engine's storage outputs itself (durably, before anything that
//! depends on them leaves) and queues the network ones for the node. The CLI uses a
//! `Device` directly when no node runs; the node owns one for its lifetime.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use kith_protocol::clock::WallTime;
use kith_protocol::contacts::Book;
use kith_protocol::jid::BareJid;
use kith_protocol::keys::{KeyWrap, OxWrap};
use kith_protocol::ox::{self, DeviceKey};
use kith_protocol::record::DeviceId;
use kith_protocol::roster::{Entry, Role};
use kith_protocol::sync::{self, Engine, Event, Input, Now, Output};
use libp2p::PeerId;
use rand::RngExt;
use tracing::warn;

use crate::store::{self, Account, Lock, Store};

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
        if dir.join("kith.db").exists() {
            let _lock = Lock::take(dir)?;
            if !Store::open(dir)?.is_empty()? {
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
        let genesis = account.genesis == SigningKey::from_bytes(&secret).verifying_key().to_bytes();
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
        let mut device = Self::open(dir)?;
        if genesis {
            let entry = Entry {
                device: device.id(),
                cert: ox::cert_to_bytes(&ox.cert()),
                name: account.name.clone(),
                role: Role::Full,
                revoked: false,
            };
            device.input(Input::AddDevice(entry))?;
            device.input(Input::RotateSecrets)?;
        }
        Ok(device)
    }

    /// Opens the device in `dir`, taking its lock. A directory holding keys but no
    /// store is reported as damaged (never as new, which `init` would write over).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let has_keys = store::DEVICE_FILES.iter().any(|n| dir.join(n).exists());
        let missing = || -> Error {
            if has_keys {
                store::Error::Damaged(dir.to_owned()).into()
            } else {
                store::Error::NotInitialised(dir.to_owned()).into()
            }
        };
        if !dir.join("kith.db").exists() {
            return Err(missing());
        }
        let lock = Lock::take(dir)?;
        let mut store = Store::open(dir)?;
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
        let saved_keyring = keyring.iter().map(|s| (s.id.clone(), s.revoked)).collect();
        let (replica, quarantined) = store.load()?;
        for q in &quarantined {
            warn!(
                "moved aside a stored record that does not decode ({}); the other devices \
                 still hold what it carried",
                q.reason
            );
        }
        let book = Book::restore(
            SigningKey::from_bytes(&secret),
            keyring,
            replica,
            Default::default(),
        );
        let clock = Clock::default();
        let wrap: Box<dyn KeyWrap> = Box::new(OxWrap {
            key: ox,
            account: jid.clone(),
        });
        let seed: [u8; 32] = rand::rng().random();
        let engine = Engine::new(
            engine_config(),
            book,
            DeviceId(account.genesis),
            wrap,
            seed,
            clock.now(),
        );
        let mut device = Self {
            dir: dir.to_owned(),
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
        };
        device.drain()?;
        Ok(device)
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
        let result = self.drain_outputs(&mut began);
        if began {
            match &result {
                Ok(()) => self.store.commit()?,
                Err(_) => {
                    let _ = self.store.rollback();
                }
            }
        }
        result?;
        self.save_keyring()
    }

    fn drain_outputs(&mut self, began: &mut bool) -> Result<(), store::Error> {
        while let Some(out) = self.engine.poll_output() {
            let storage = matches!(out, Output::Persist(_) | Output::Collect { .. });
            if storage && !self.store.in_transaction() {
                self.store.begin()?;
                *began = true;
            }
            match out {
                Output::Persist(records) => {
                    self.store.persist(&records)?;
                }
                Output::Collect { collect, forget } => {
                    self.store.collect(&collect, &forget)?;
                }
                Output::Event(e) => self.events.push_back(e),
                other => self.net.push_back(other),
            }
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

    fn save_keyring(&mut self) -> Result<(), store::Error> {
        let book = self.engine.book();
        let now: BTreeSet<(String, bool)> = book
            .keyring()
            .iter()
            .map(|s| (s.id.clone(), s.revoked))
            .collect();
        if now != self.saved_keyring {
            let xml = store::keyring_to_xml(book.keyring(), &self.jid);
            store::write_private(&self.dir, "secrets.xml", xml.as_bytes())?;
            self.saved_keyring = now;
        }
        Ok(())
    }
}
