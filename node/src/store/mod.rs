//! The data directory: the SQLite store (WAL) of records, collected tombstones,
//! invites and peers, and the owner-only files holding this device's private keys and
//! secrets.
//!
//! Layout of a data directory (mode 0700):
//!
//! | file | what |
//! |---|---|
//! | `kith.db` (+ `-wal`, `-shm`) | records, collected tombstones, account, invites, known peers |
//! | `device.key` | Ed25519 secret key (32 bytes), mode 0600 |
//! | `openpgp.key` | OpenPGP transferable secret key, mode 0600 |
//! | `secrets.xml` | the keyring: XEP-0473 `<shared-secret/>` elements, mode 0600 |
//! | `lock` | held (`flock`) by whoever has the store open |
//! | `control.sock` | the running node's control socket, mode 0600 |
//!
//! The store keeps, per item, the winning record and the [`SHADOW_DEPTH`] versions it
//! replaced, so that [`Store::load`] rebuilds the same replica the engine had:
//! each item's records are re-inserted oldest first, set-aside records are set aside again
//! by the engine's roster check, and collected tombstones are collected again.
//!
//! It never writes what it could not read back: every record is checked against the
//! limits `Record::decode` enforces before it is written ([`Error::OverLimits`]). A
//! row that does not decode anyway (written by an earlier version, or damaged) does
//! not stop the device: [`Store::load`] moves it to the `quarantine` table with the
//! reason, logs a warning, and goes on; what it held comes back from the other
//! devices. Writes of one engine step (or one import) go in one transaction
//! ([`Store::begin`], [`Store::commit`]): after a crash, all of it is there or none.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kith_protocol::record::{ItemId, Record, Space, Version};
use kith_protocol::replica::{Replica, SHADOW_DEPTH};
use rusqlite::{Connection, OptionalExtension, params};

pub mod clients;
mod files;
pub mod history;
pub mod index;
pub mod names;
pub mod vault;

pub use files::{
    DEVICE_FILES, KeyFiles, Lock, create_dir, finish_pending, keyring_from_xml, keyring_to_xml,
    locked, pending, read_file, write_private,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key files are sealed under a passphrase and none was given.
    #[error(
        "the keys in {0} are locked with a passphrase: give it in the file named by \
         KITH_PASSPHRASE_FILE, or run the command on a terminal"
    )]
    NeedsPassphrase(PathBuf),
    /// A key file sealed under a passphrase does not open.
    #[error("{path}: {source}")]
    Vault {
        /// The file.
        path: PathBuf,
        /// Why.
        source: vault::Error,
    },
    /// SQLite failed (disk full, corrupt file, …).
    #[error("store {path}: {source}")]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A file of the data directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process (a running node, or another command) has the store open.
    #[error(
        "the data directory {0} is in use by another kith process (a `kith run` that is \
         starting or stopping, or a command that takes long)"
    )]
    Locked(PathBuf),
    /// The data directory holds no device yet.
    #[error("no kith device in {0} (run `kith init --jid JID` or `kith pair join CODE` first)")]
    NotInitialised(PathBuf),
    /// The data directory holds a device already, whole or in part.
    #[error(
        "{dir} already holds a kith device ({what} is there); init and pair join never \
         write over one: give another --data-dir"
    )]
    AlreadyInitialised {
        /// The data directory.
        dir: PathBuf,
        /// The file found.
        what: String,
    },
    /// This device holds keys but its store is missing or empty: it is not new, and
    /// must not be initialised again over its keys.
    #[error(
        "{0} holds this device's keys but its store (kith.db) is missing or empty. \
         Restore kith.db (with kith.db-wal, if any) from a backup of this directory; \
         or move the whole directory aside and pair this machine again as a new device \
         (`kith pair join CODE`, with a fresh --data-dir). Nothing here was changed."
    )]
    Damaged(PathBuf),
    /// A later version of kith wrote this store.
    #[error(
        "the store in {path} was written by a later version of kith (schema {found}): \
         run that version, or a newer one"
    )]
    Newer {
        /// The data directory.
        path: PathBuf,
        /// The schema version found.
        found: i64,
    },
    /// A record is over the limits a reader enforces: it is not written.
    #[error("refusing to store a record that could not be read back: {0}")]
    OverLimits(String),
    /// Something stored does not decode.
    #[error("the store in {path} is corrupt: {what}")]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// The account a device belongs to, as stored at init or pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The bare JID, as text.
    pub jid: String,
    /// The roster's genesis device.
    pub genesis: [u8; 32],
    /// This device's name.
    pub name: String,
}

/// An open invitation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// SHA-256 of the invite's secret.
    pub hash: [u8; 32],
    /// Unix milliseconds after which it is refused.
    pub expires_ms: u64,
    /// Whether a device joined with it.
    pub used: bool,
}

/// The primary key of a row of `records`: space, item, version, signature.
type RowKey = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

/// Sortable bytes of a version: wall time, counter, device, big-endian.
fn version_key(v: &Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(44);
    k.extend_from_slice(&v.hlc.wall_ms.to_be_bytes());
    k.extend_from_slice(&v.hlc.counter.to_be_bytes());
    k.extend_from_slice(&v.device.0);
    k
}

/// How sealed peer addresses start (earlier versions stored them in clear).
const SEALED_ADDRS: &str = "sealed:";

fn seal_addrs(keys: &index::Keys, addrs: &str) -> String {
    use base64::Engine as _;
    if addrs.is_empty() {
        return String::new();
    }
    format!(
        "{SEALED_ADDRS}{}",
        base64::engine::general_purpose::STANDARD.encode(keys.seal(addrs.as_bytes()))
    )
}

fn open_addrs(keys: &index::Keys, stored: &str) -> String {
    use base64::Engine as _;
    let Some(b64) = stored.strip_prefix(SEALED_ADDRS) else {
        return stored.to_owned();
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .and_then(|sealed| keys.open(&sealed))
        .and_then(|plain| String::from_utf8(plain).ok())
        .unwrap_or_default()
}

/// Record counts, for `kith status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Rows in the records table (winners and replaced versions).
    pub rows: u64,
    /// Collected tombstones remembered.
    pub collected: u64,
    /// Rows moved aside because they did not decode.
    pub quarantined: u64,
}

/// A device this one has met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// Its device id.
    pub device: [u8; 32],
    /// Where it was reached (multiaddrs, space-separated).
    pub addrs: String,
    /// When this device last completed a reconciliation with it (Unix ms).
    pub last_sync_ms: Option<u64>,
}

/// The SQLite store of one data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    conn: Connection,
    /// SQLite's count of changed rows at the last checkpoint.
    checkpointed_at: u64,
    /// Whether rows holding something erased (replaced versions, collected
    /// tombstones, history) were deleted since the last checkpoint: the next one
    /// then empties the log, where their old pages still are.
    erased: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    space INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
    signature BLOB NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (space, item, version, signature)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS collected (
    space INTEGER NOT NULL, item BLOB NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (space, item)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS collected_shadows (
    space INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
    signature BLOB NOT NULL, bytes BLOB NOT NULL,
    PRIMARY KEY (space, item, version, signature)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS invites (
    hash BLOB PRIMARY KEY, expires_ms INTEGER NOT NULL, used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS peers (
    device BLOB PRIMARY KEY, addrs TEXT NOT NULL, last_sync_ms INTEGER);
CREATE TABLE IF NOT EXISTS quarantine (
    bytes BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    node INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
    signature BLOB NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (node, item)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_kind ON items (kind, node);
CREATE TABLE IF NOT EXISTS identities (
    hash BLOB NOT NULL, item BLOB NOT NULL,
    PRIMARY KEY (hash, item)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS identities_item ON identities (item);
CREATE TABLE IF NOT EXISTS clients (
    fingerprint TEXT PRIMARY KEY, cert BLOB NOT NULL, added_ms INTEGER NOT NULL,
    approved INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL UNIQUE, at INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS history_at ON history (at);
CREATE TABLE IF NOT EXISTS item_names (
    node INTEGER NOT NULL, item BLOB NOT NULL, name TEXT NOT NULL,
    PRIMARY KEY (node, item)) WITHOUT ROWID;
";

/// The schema this code writes. Version 1 (the first release) lacked the quarantine
/// table and could hold records over the limits (opening adds the table, and
/// [`Store::load`] moves such records aside); version 2 lacked the item index and
/// the `tombstone` column of records (opening adds both, fills the column, and the
/// index is built at the next full open).
pub const SCHEMA_VERSION: i64 = 3;

/// Pages the write-ahead log may grow to before SQLite checkpoints inside a commit
/// (32 MiB of 4 KiB pages): the node checkpoints well before, between requests.
const WAL_PAGES_MAX: i64 = 8192;

/// A row moved aside by [`Store::load`] because it does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The table it came from.
    pub table: &'static str,
    /// Why it does not decode.
    pub reason: String,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, checking the database's
    /// structure first (SQLite's quick check, a read of the whole file). The caller
    /// holds the [`Lock`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, true)
    }

    /// [`Store::open`] without the whole-file check: for a command that reads a few
    /// pages (SQLite still reports any page it finds damaged).
    pub fn open_unchecked(dir: &Path) -> Result<Self> {
        Self::open_with(dir, false)
    }

    fn open_with(dir: &Path, check_all: bool) -> Result<Self> {
        let path = dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
        // One process at a time holds the directory's lock anyway: with SQLite's own
        // lock exclusive, the log's index lives in memory, not in a `-shm` file that
        // would have to be created (and could not be, on a full disk, for a read).
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        // What is deleted is overwritten with zeros, not left in free pages for a
        // reader of the disk (docs/node.md § What the store keeps).
        conn.pragma_update(None, "secure_delete", "ON")
            .map_err(sql)?;
        // Checkpoints run between requests (`Store::checkpoint_if_written`, from the
        // node's housekeeping): one inside an edit's commit would cost that edit
        // 10-15 ms at 100,000 contacts. This is only the bound on the log's size.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_PAGES_MAX)
            .map_err(sql)?;
        // And the log file shrinks back to this after a checkpoint.
        conn.pragma_update(None, "journal_size_limit", WAL_PAGES_MAX * 4096)
            .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        let check: String = if check_all {
            conn.query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(sql)?
        } else {
            "ok".to_owned()
        };
        if check != "ok" {
            return Err(Error::Corrupt {
                path: dir.to_owned(),
                what: check,
            });
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let mut store = Self {
            dir: dir.to_owned(),
            conn,
            checkpointed_at: 0,
            erased: false,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Brings a store written by an earlier version to [`SCHEMA_VERSION`]; refuses
    /// one written by a later version.
    fn migrate(&mut self) -> Result<()> {
        let found = self.schema()?;
        if found > SCHEMA_VERSION {
            return Err(Error::Newer {
                path: self.dir.clone(),
                found,
            });
        }
        let has_tombstone: bool = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM pragma_table_info('records') WHERE name = 'tombstone'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.sql(e))?;
        if !has_tombstone {
            self.add_tombstone_column()?;
        }
        // Counting winners and tombstones (status) reads this index, not the records.
        self.conn
            .execute_batch(
                "CREATE INDEX IF NOT EXISTS records_winners
                 ON records (space, item, version, tombstone)",
            )
            .map_err(|e| self.sql(e))?;
        // Earlier versions kept an mDNS label and the libp2p port across runs: values
        // that named the device on the LAN for good (discovery's guise replaced them).
        // Erased once (a read-only open writes nothing when there is nothing to erase).
        let stale: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key IN ('label', 'listen_port')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        if stale > 0 {
            self.conn
                .execute("DELETE FROM meta WHERE key IN ('label', 'listen_port')", [])
                .map_err(|e| self.sql(e))?;
        }
        if self.schema()? != SCHEMA_VERSION {
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION.to_be_bytes()],
                )
                .map_err(|e| self.sql(e))?;
        }
        Ok(())
    }

    /// Schema 3: records say whether they are tombstones (so that counting them needs
    /// no decoding); the rows already there are decoded once to fill it in.
    fn add_tombstone_column(&mut self) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        tx.execute_batch("ALTER TABLE records ADD COLUMN tombstone INTEGER NOT NULL DEFAULT 0")
            .map_err(sql)?;
        let tombstones: Vec<RowKey> = {
            let mut stmt = tx
                .prepare("SELECT space, item, version, signature, bytes FROM records")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| {
                    let key: RowKey = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                    Ok((key, r.get::<_, Vec<u8>>(4)?))
                })
                .map_err(sql)?;
            rows.filter_map(|r| r.ok())
                .filter(|(_, b): &(RowKey, Vec<u8>)| {
                    Record::decode(b).is_ok_and(|r| r.is_tombstone())
                })
                .map(|(key, _)| key)
                .collect()
        };
        for (space, item, version, signature) in tombstones {
            tx.execute(
                "UPDATE records SET tombstone = 1 WHERE space = ?1 AND item = ?2
                 AND version = ?3 AND signature = ?4",
                params![space, item, version, signature],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The schema version the store was last written with (1: before it was noted).
    fn schema(&self) -> Result<i64> {
        let v: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(v.and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(1, i64::from_be_bytes))
    }

    /// Whether the store file in `dir` holds anything (an account or a record),
    /// read without writing to it.
    pub fn holds_anything(dir: &Path) -> Result<bool> {
        let path = dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sql)?;
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('meta', 'records')",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        if tables < 2 {
            return Ok(false);
        }
        let rows: i64 = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM meta WHERE key = 'account')
                      + (SELECT COUNT(*) FROM records)",
                [],
                |r| r.get(0),
            )
            .map_err(sql)?;
        Ok(rows > 0)
    }

    /// Moves what the write-ahead log holds into the database file and empties the
    /// log (after a large write, so that the next open does not pay for it).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| self.sql(e))
    }

    /// Checkpoints the write-ahead log if anything was written since the last call;
    /// returns whether it did. The node calls it every two seconds, between
    /// requests. Usually a passive checkpoint (it waits for nothing and leaves the
    /// log's file as it is); after an erasure ([`Store::erased`]) the log is emptied
    /// too, since the pages it holds still carry what was erased.
    pub fn checkpoint_if_written(&mut self) -> Result<bool> {
        let changes = self.conn.total_changes();
        if changes == self.checkpointed_at || self.in_transaction() {
            return Ok(false);
        }
        let mode = if self.erased { "TRUNCATE" } else { "PASSIVE" };
        self.conn
            .execute_batch(&format!("PRAGMA wal_checkpoint({mode})"))
            .map_err(|e| self.sql(e))?;
        self.checkpointed_at = changes;
        self.erased = false;
        Ok(true)
    }

    /// Whether something was erased since the last checkpoint (the next one empties
    /// the log).
    pub fn erased(&self) -> bool {
        self.erased
    }

    /// Starts a transaction that the writes up to [`Store::commit`] join: all of
    /// them reach the disk, or (after a crash or [`Store::rollback`]) none.
    pub fn begin(&mut self) -> Result<()> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))
    }

    /// Commits what [`Store::begin`] started, durably.
    pub fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT").map_err(|e| self.sql(e))
    }

    /// Drops what [`Store::begin`] started.
    pub fn rollback(&mut self) -> Result<()> {
        self.conn.execute_batch("ROLLBACK").map_err(|e| self.sql(e))
    }

    /// Whether a transaction of [`Store::begin`] is open.
    pub fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn sql(&self, source: rusqlite::Error) -> Error {
        Error::Sql {
            path: self.dir.join("kith.db"),
            source,
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.dir.clone(),
            what: what.into(),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account, if the device was initialised.
    pub fn account(&self) -> Result<Option<Account>> {
        let get = |key: &str| -> Result<Option<Vec<u8>>> {
            self.conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| self.sql(e))
        };
        let Some(jid) = get("account")? else {
            return Ok(None);
        };
        let text = |v: Option<Vec<u8>>| v.and_then(|b| String::from_utf8(b).ok());
        let genesis: [u8; 32] = get("genesis")?
            .and_then(|g| g.try_into().ok())
            .ok_or_else(|| self.corrupt("genesis device missing"))?;
        Ok(Some(Account {
            jid: text(Some(jid)).ok_or_else(|| self.corrupt("account is not UTF-8"))?,
            genesis,
            name: text(get("name")?).unwrap_or_default(),
        }))
    }

    /// Stores the account.
    pub fn set_account(&mut self, account: &Account) -> Result<()> {
        let tx = self.conn.savepoint().map_err(|e| Error::Sql {
            path: self.dir.join("kith.db"),
            source: e,
        })?;
        for (k, v) in [
            ("account", account.jid.as_bytes()),
            ("genesis", &account.genesis[..]),
            ("name", account.name.as_bytes()),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![k, v],
            )
            .map_err(|e| Error::Sql {
                path: self.dir.join("kith.db"),
                source: e,
            })?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Stores records (durably when no [`Store::begin`] is open); for each item,
    /// versions beyond the newest `1 + SHADOW_DEPTH` are dropped. Nothing is written
    /// if any record is over the limits a reader enforces.
    pub fn persist(&mut self, records: &[Record]) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let encoded = records
            .iter()
            .map(|r| {
                r.encode_checked()
                    .map_err(|e| Error::OverLimits(format!("{:?} {}: {e}", r.space, r.item)))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut pruned = 0;
        let tx = self.conn.savepoint().map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records (space, item, version, signature, bytes,
                     tombstone) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            let mut prune = tx
                .prepare_cached(
                    "DELETE FROM records WHERE space = ?1 AND item = ?2 AND version <
                     (SELECT version FROM records WHERE space = ?1 AND item = ?2
                      ORDER BY version DESC LIMIT 1 OFFSET ?3)",
                )
                .map_err(sql)?;
            let mut uncollect = tx
                .prepare_cached("DELETE FROM collected WHERE space = ?1 AND item = ?2")
                .map_err(sql)?;
            let mut unshadow = tx
                .prepare_cached("DELETE FROM collected_shadows WHERE space = ?1 AND item = ?2")
                .map_err(sql)?;
            for (r, bytes) in records.iter().zip(encoded) {
                let space = r.space.code();
                insert
                    .execute(params![
                        space,
                        &r.item.0[..],
                        version_key(&r.version),
                        &r.signature[..],
                        bytes,
                        r.is_tombstone()
                    ])
                    .map_err(sql)?;
                pruned += prune
                    .execute(params![space, &r.item.0[..], SHADOW_DEPTH as i64])
                    .map_err(sql)?;
                uncollect
                    .execute(params![space, &r.item.0[..]])
                    .map_err(sql)?;
                unshadow
                    .execute(params![space, &r.item.0[..]])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        self.erased |= pruned > 0;
        if let Some(newest) = records.iter().map(|r| r.version).max() {
            self.raise_newest(&newest)?;
            self.bump_generation()?;
        }
        Ok(())
    }

    /// Carries out an engine's `Output::Collect`: the tombstones of `collect` leave
    /// the records table and are remembered; `forget` is forgotten.
    pub fn collect(
        &mut self,
        collect: &[(Space, ItemId)],
        forget: &[(Space, ItemId)],
    ) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.savepoint().map_err(sql)?;
        for (space, item) in collect {
            let newest: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT bytes FROM records WHERE space = ?1 AND item = ?2
                     ORDER BY version DESC LIMIT 1",
                    params![space.code(), &item.0[..]],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(bytes) = newest {
                tx.execute(
                    "INSERT OR REPLACE INTO collected (space, item, bytes) VALUES (?1, ?2, ?3)",
                    params![space.code(), &item.0[..], bytes],
                )
                .map_err(sql)?;
                // The versions it replaced stay beside it until it is forgotten (the
                // replica's shadows: they come back if its author turns out revoked).
                tx.execute(
                    "INSERT OR REPLACE INTO collected_shadows
                     SELECT space, item, version, signature, bytes FROM records
                     WHERE space = ?1 AND item = ?2 AND version <
                     (SELECT MAX(version) FROM records WHERE space = ?1 AND item = ?2)",
                    params![space.code(), &item.0[..]],
                )
                .map_err(sql)?;
                tx.execute(
                    "DELETE FROM records WHERE space = ?1 AND item = ?2",
                    params![space.code(), &item.0[..]],
                )
                .map_err(sql)?;
            }
        }
        for (space, item) in forget {
            for table in ["collected", "collected_shadows"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE space = ?1 AND item = ?2"),
                    params![space.code(), &item.0[..]],
                )
                .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        self.erased |= !collect.is_empty() || !forget.is_empty();
        self.bump_generation()
    }

    /// The stored versions of the given items (winners and the versions they
    /// replaced), and every record of the spaces `whole`: what a command that
    /// touches only these items needs (see [`crate::Device::open_for`]).
    pub fn records_of(&self, whole: &[Space], items: &[(Space, ItemId)]) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let decode = |bytes: Vec<u8>, out: &mut Vec<Record>| {
            // A row that does not decode is left to the full open, which moves it
            // aside; here it is simply not loaded.
            if let Ok(r) = Record::decode(&bytes) {
                out.push(r);
            }
        };
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT bytes FROM records WHERE space = ?1 ORDER BY item, version, signature",
                )
                .map_err(|e| self.sql(e))?;
            for space in whole {
                let rows = stmt
                    .query_map([space.code()], |r| r.get::<_, Vec<u8>>(0))
                    .map_err(|e| self.sql(e))?;
                for b in rows {
                    decode(b.map_err(|e| self.sql(e))?, &mut out);
                }
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT bytes FROM records WHERE space = ?1 AND item = ?2
                 ORDER BY version, signature",
            )
            .map_err(|e| self.sql(e))?;
        for (space, item) in items {
            let rows = stmt
                .query_map(params![space.code(), &item.0[..]], |r| {
                    r.get::<_, Vec<u8>>(0)
                })
                .map_err(|e| self.sql(e))?;
            for b in rows {
                decode(b.map_err(|e| self.sql(e))?, &mut out);
            }
        }
        Ok(out)
    }

    /// Winning records per space, and how many of them are tombstones, counted in
    /// the store (for `kith status` without loading the records).
    pub fn winner_counts(&self) -> Result<(std::collections::BTreeMap<u8, u64>, u64)> {
        let mut per_space = std::collections::BTreeMap::new();
        let mut tombstones = 0;
        // SQLite takes the bare `tombstone` from the row holding MAX(version).
        let mut stmt = self
            .conn
            .prepare(
                "SELECT space, tombstone, COUNT(*) FROM
                   (SELECT space, tombstone, MAX(version) FROM records GROUP BY space, item)
                 GROUP BY space, tombstone",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let (space, tomb, n) = row.map_err(|e| self.sql(e))?;
            *per_space.entry(space as u8).or_insert(0) += n as u64;
            if tomb == 1 {
                tombstones += n as u64;
            }
        }
        Ok((per_space, tombstones))
    }

    /// The records of `table` (`records` in key order, or `collected`); rows
    /// that do not decode are moved to the quarantine table and reported.
    fn read_table(
        &mut self,
        table: &'static str,
        quarantined: &mut Vec<Quarantined>,
    ) -> Result<Vec<Record>> {
        // Each row with the columns of its primary key, to move it aside by.
        let query = match table {
            // Key order: each item's versions oldest first (which is what the replica
            // needs to keep the replaced ones), and no sort to run.
            "records" => {
                "SELECT bytes, space, item, version, signature FROM records
                 ORDER BY space, item, version, signature"
            }
            "collected_shadows" => {
                "SELECT bytes, space, item, version, signature FROM collected_shadows
                 ORDER BY space, item, version, signature"
            }
            _ => "SELECT bytes, space, item, NULL, NULL FROM collected",
        };
        type Key = (i64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let mut out = Vec::new();
        let mut bad: Vec<(Key, Vec<u8>, String)> = Vec::new();
        {
            let sql = |e| Error::Sql {
                path: self.dir.join("kith.db"),
                source: e,
            };
            let mut stmt = self.conn.prepare(query).map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let bytes: Vec<u8> = row.get(0).map_err(sql)?;
                match Record::decode(&bytes) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        let key = (
                            row.get(1).map_err(sql)?,
                            row.get(2).map_err(sql)?,
                            row.get(3).map_err(sql)?,
                            row.get(4).map_err(sql)?,
                        );
                        bad.push((key, bytes, e.to_string()));
                    }
                }
            }
        }
        if !bad.is_empty() {
            let path = self.dir.join("kith.db");
            let sql = |e| Error::Sql {
                path: path.clone(),
                source: e,
            };
            let now = crate::device::wall_now().0 as i64;
            let tx = self.conn.savepoint().map_err(sql)?;
            for ((space, item, version, signature), bytes, reason) in bad {
                tx.execute(
                    "INSERT INTO quarantine (bytes, reason, at_ms) VALUES (?1, ?2, ?3)",
                    params![bytes, format!("{table}: {reason}"), now],
                )
                .map_err(sql)?;
                match (version, signature) {
                    (Some(v), Some(sig)) => tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE space = ?1 AND item = ?2
                             AND version = ?3 AND signature = ?4"
                        ),
                        params![space, item, v, sig],
                    ),
                    // A collected tombstone goes with the versions it replaced.
                    _ => tx
                        .execute(
                            "DELETE FROM collected WHERE space = ?1 AND item = ?2",
                            params![space, item],
                        )
                        .and_then(|_| {
                            tx.execute(
                                "DELETE FROM collected_shadows WHERE space = ?1 AND item = ?2",
                                params![space, item],
                            )
                        }),
                }
                .map_err(sql)?;
                quarantined.push(Quarantined { table, reason });
            }
            tx.commit().map_err(sql)?;
        }
        Ok(out)
    }

    /// Rebuilds the replica from what is stored. Rows that do not decode are moved
    /// to the quarantine table (returned, to be reported), never refusing the device.
    pub fn load(&mut self) -> Result<(Replica, Vec<Quarantined>)> {
        let mut quarantined = Vec::new();
        let mut replica = Replica::new();
        for record in self.read_table("records", &mut quarantined)? {
            replica.insert(record);
        }
        // A collected tombstone's shadows (oldest first), then the tombstone over
        // them, collected again.
        let collected = self.read_table("collected", &mut quarantined)?;
        let keys: std::collections::BTreeSet<(Space, ItemId)> =
            collected.iter().map(|r| (r.space, r.item)).collect();
        for record in self.read_table("collected_shadows", &mut quarantined)? {
            if keys.contains(&(record.space, record.item)) {
                replica.insert(record);
            }
        }
        for record in collected {
            let (space, item) = (record.space, record.item);
            replica.insert(record);
            replica.collect(space, &item);
        }
        Ok((replica, quarantined))
    }

    /// Row counts.
    pub fn counts(&self) -> Result<Counts> {
        let count = |table: &str| -> Result<u64> {
            self.conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(|e| self.sql(e))
        };
        Ok(Counts {
            rows: count("records")?,
            collected: count("collected")?,
            quarantined: count("quarantine")?,
        })
    }

    /// Stores an open invitation.
    pub fn add_invite(&mut self, invite: &Invite) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO invites (hash, expires_ms, used) VALUES (?1, ?2, ?3)",
                params![&invite.hash[..], invite.expires_ms as i64, invite.used],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The invitation whose secret hashes to `hash`.
    pub fn invite(&self, hash: &[u8; 32]) -> Result<Option<Invite>> {
        self.conn
            .query_row(
                "SELECT expires_ms, used FROM invites WHERE hash = ?1",
                [&hash[..]],
                |r| {
                    Ok(Invite {
                        hash: *hash,
                        expires_ms: r.get::<_, i64>(0)? as u64,
                        used: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Whether an invitation is open (unused, not expired) at `now_ms`.
    pub fn has_open_invite(&self, now_ms: u64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM invites WHERE used = 0 AND expires_ms > ?1",
                [now_ms as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| self.sql(e))
    }

    /// Marks an invitation used.
    pub fn use_invite(&mut self, hash: &[u8; 32]) -> Result<()> {
        self.conn
            .execute("UPDATE invites SET used = 1 WHERE hash = ?1", [&hash[..]])
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Remembers addresses a device was reached at (multiaddrs, space-separated),
    /// sealed like the item index (`sealed:` and base64).
    pub fn set_peer_addrs(
        &mut self,
        keys: &index::Keys,
        device: &[u8; 32],
        addrs: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO peers (device, addrs) VALUES (?1, ?2)
                 ON CONFLICT(device) DO UPDATE SET addrs = ?2",
                params![&device[..], seal_addrs(keys, addrs)],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Seals the peer addresses an earlier version stored in clear; returns how many.
    pub fn seal_peer_addrs(&mut self, keys: &index::Keys) -> Result<usize> {
        let clear: Vec<KnownPeer> = self
            .peers(keys)?
            .into_iter()
            .filter(|p| !p.addrs.is_empty())
            .collect();
        let stored: Vec<(Vec<u8>, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT device, addrs FROM peers")
                .map_err(|e| self.sql(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.sql(e))?;
            rows.filter_map(std::result::Result::ok).collect()
        };
        let mut n = 0;
        for p in clear {
            let in_clear = stored
                .iter()
                .any(|(d, a)| d[..] == p.device[..] && !a.starts_with(SEALED_ADDRS));
            if in_clear {
                self.set_peer_addrs(keys, &p.device, &p.addrs)?;
                n += 1;
            }
        }
        if n > 0 {
            self.erased = true;
        }
        Ok(n)
    }

    /// Remembers when this device last completed a reconciliation with `device`.
    pub fn set_last_sync(&mut self, device: &[u8; 32], unix_ms: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO peers (device, addrs, last_sync_ms) VALUES (?1, '', ?2)
                 ON CONFLICT(device) DO UPDATE SET last_sync_ms = ?2",
                params![&device[..], unix_ms as i64],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Known peers, by device (addresses that do not open are left out).
    pub fn peers(&self, keys: &index::Keys) -> Result<Vec<KnownPeer>> {
        let mut stmt = self
            .conn
            .prepare("SELECT device, addrs, last_sync_ms FROM peers ORDER BY device")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (d, a, t) = row.map_err(|e| self.sql(e))?;
            if let Ok(device) = <[u8; 32]>::try_from(d) {
                out.push(KnownPeer {
                    device,
                    addrs: open_addrs(keys, &a),
                    last_sync_ms: t.map(|t| t as u64),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use kith_protocol::clock::Hlc;
    use kith_protocol::jid::BareJid;
    use kith_protocol::record::Body;
    use kith_protocol::seal::{Keyring, Secret};
    use rand_core::SeedableRng;

    use super::*;

    fn record(key: &SigningKey, item: u8, wall_ms: u64, tomb: bool) -> Record {
        Record::sign(
            Space::Roster,
            ItemId([item; 16]),
            Hlc {
                wall_ms,
                counter: 0,
            },
            if tomb {
                Body::Tombstone
            } else {
                Body::Data(vec![item])
            },
            key,
        )
    }

    #[test]
    fn records_survive_reopening_with_their_replaced_versions() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let versions: Vec<Record> = (1..=8).map(|t| record(&key, 1, t, false)).collect();
        // Newest first, as records may arrive in any order.
        for r in versions.iter().rev() {
            store.persist(std::slice::from_ref(r)).unwrap();
        }
        assert_eq!(store.counts().unwrap().rows, 1 + SHADOW_DEPTH as u64);
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let (replica, quarantined) = store.load().unwrap();
        assert!(quarantined.is_empty());
        assert_eq!(
            replica.get(Space::Roster, &ItemId([1; 16])),
            versions.last()
        );
    }

    /// An acknowledgement with a body of `len` bytes, as the first release could write.
    fn oversize(key: &SigningKey, len: usize) -> Record {
        let hlc = Hlc {
            wall_ms: 1,
            counter: 0,
        };
        Record::sign(
            Space::Acks,
            ItemId([2; 16]),
            hlc,
            Body::Data(vec![0; len]),
            key,
        )
    }

    #[test]
    fn the_log_is_checkpointed_only_after_writes_and_never_inside_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        store.checkpoint_if_written().unwrap();
        assert!(
            !store.checkpoint_if_written().unwrap(),
            "nothing written since"
        );
        store.persist(&[record(&key, 2, 4, false)]).unwrap();
        store.begin().unwrap();
        assert!(
            !store.checkpoint_if_written().unwrap(),
            "inside a transaction"
        );
        store.commit().unwrap();
        assert!(store.checkpoint_if_written().unwrap());
        assert!(!store.checkpoint_if_written().unwrap());
        let wal: i64 = store
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(wal, WAL_PAGES_MAX);
    }

    #[test]
    fn a_record_over_the_limits_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let good = record(&key, 1, 1, false);
        let big = oversize(&key, kith_protocol::record::MAX_RECORD_BYTES);
        let err = store.persist(&[good, big]).unwrap_err();
        assert!(matches!(err, Error::OverLimits(_)), "{err}");
        assert_eq!(store.counts().unwrap().rows, 0, "nothing of the batch");
    }

    /// What an earlier version could write (an acknowledgement over the record
    /// limit) is moved aside with a warning; the store opens with everything else.
    #[test]
    fn a_stored_record_that_does_not_decode_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let good = record(&key, 1, 1, false);
        store.persist(std::slice::from_ref(&good)).unwrap();
        let big = oversize(&key, 37_000);
        store
            .conn
            .execute(
                "INSERT INTO records (space, item, version, signature, bytes)
                 VALUES (4, ?1, ?2, ?3, ?4)",
                params![
                    &big.item.0[..],
                    version_key(&big.version),
                    &big.signature[..],
                    big.encode()
                ],
            )
            .unwrap();
        store
            .conn
            .execute(
                "INSERT INTO collected (space, item, bytes) VALUES (0, ?1, ?2)",
                params![&[9u8; 16][..], b"not a record"],
            )
            .unwrap();
        drop(store);
        let mut store = Store::open(dir.path()).unwrap();
        let (replica, quarantined) = store.load().unwrap();
        assert_eq!(quarantined.len(), 2);
        assert!(
            quarantined[0].reason.contains("more than the limit"),
            "{quarantined:?}"
        );
        assert_eq!(replica.records().collect::<Vec<_>>(), vec![&good]);
        let counts = store.counts().unwrap();
        assert_eq!(
            (counts.rows, counts.collected, counts.quarantined),
            (1, 0, 2)
        );
        // Moved for good: the next load finds nothing to move.
        assert!(store.load().unwrap().1.is_empty());
    }

    #[test]
    fn a_batch_lands_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        store.begin().unwrap();
        store.persist(&[record(&key, 1, 1, false)]).unwrap();
        store.persist(&[record(&key, 2, 1, false)]).unwrap();
        store.rollback().unwrap();
        assert_eq!(store.counts().unwrap().rows, 0);
        store.begin().unwrap();
        store.persist(&[record(&key, 1, 1, false)]).unwrap();
        store.persist(&[record(&key, 2, 1, false)]).unwrap();
        drop(store); // a crash before the commit
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.counts().unwrap().rows, 0);
    }

    #[test]
    fn values_that_named_the_device_on_the_lan_are_erased_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // As an earlier version left them.
        store
            .conn
            .execute_batch(
                "INSERT INTO meta (key, value) VALUES ('label', X'6B6974682D3132'),
                 ('listen_port', X'5633')",
            )
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let left: i64 = store
            .conn
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key IN ('label', 'listen_port')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn collected_tombstones_are_remembered_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let tomb = record(&key, 2, 5, true);
        store
            .persist(&[record(&key, 2, 4, false), tomb.clone()])
            .unwrap();
        let k = (Space::Roster, ItemId([2; 16]));
        store.collect(&[k], &[]).unwrap();
        let (replica, _) = store.load().unwrap();
        assert!(replica.get(k.0, &k.1).is_none());
        assert_eq!(replica.collected_version(k.0, &k.1), Some(tomb.version));
        store.collect(&[], &[k]).unwrap();
        assert_eq!(store.load().unwrap().0.collected().count(), 0);
    }

    #[test]
    fn a_collected_tombstone_keeps_what_it_replaced_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut store = Store::open(dir.path()).unwrap();
        let older = record(&key, 2, 3, false);
        let replaced = record(&key, 2, 4, false);
        store
            .persist(&[older.clone(), replaced.clone(), record(&key, 2, 5, true)])
            .unwrap();
        let k = (Space::Roster, ItemId([2; 16]));
        store.collect(&[k], &[]).unwrap();
        let (replica, _) = store.load().unwrap();
        assert!(replica.get(k.0, &k.1).is_none());
        assert_eq!(replica.collected_shadows(k.0, &k.1), [replaced, older]);
        // Forgotten, nothing of the item is left.
        store.collect(&[], &[k]).unwrap();
        let (replica, _) = store.load().unwrap();
        assert!(replica.collected_shadows(k.0, &k.1).is_empty());
        assert!(replica.get(k.0, &k.1).is_none());
        let rows: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM collected_shadows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn a_second_lock_is_refused_and_a_corrupt_file_reported() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = Lock::take(dir.path()).unwrap();
        assert!(matches!(Lock::take(dir.path()), Err(Error::Locked(_))));
        fs::write(
            dir.path().join("kith.db"),
            b"this is not a database, not at all....",
        )
        .unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, Error::Sql { .. } | Error::Corrupt { .. }),
            "{err}"
        );
    }

    #[test]
    fn the_keyring_round_trips_through_its_file() {
        let mut keyring = Keyring::new();
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        for node in kith_protocol::item::NodeKind::ALL {
            keyring.insert(Secret::generate(
                node,
                kith_protocol::clock::WallTime(5),
                &mut rng,
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let jid = BareJid::parse("a@b.c").unwrap();
        let back = keyring_from_xml(dir.path(), &keyring_to_xml(&keyring, &jid)).unwrap();
        let ids = |k: &Keyring| {
            k.iter()
                .map(|s| (s.id.clone(), s.value.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&back), ids(&keyring));
    }

    proptest::proptest! {
        /// Whatever order versions arrive in, what the store loads has the same
        /// winners as a replica that saw the same records.
        #[test]
        fn the_store_rebuilds_the_replica(
            ops in proptest::collection::vec((0u8..4, 1u64..30, proptest::bool::ANY, 0usize..2), 1..40)
        ) {
            let keys = [SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32])];
            let dir = tempfile::tempdir().unwrap();
            let mut store = Store::open(dir.path()).unwrap();
            let mut memory = Replica::new();
            for (item, wall_ms, tomb, author) in ops {
                let r = Record::sign(
                    Space::Keys,
                    ItemId([item; 16]),
                    Hlc { wall_ms, counter: 0 },
                    if tomb { Body::Tombstone } else { Body::Data(vec![item, wall_ms as u8]) },
                    &keys[author],
                );
                memory.insert(r.clone());
                store.persist(&[r]).unwrap();
            }
            let (loaded, _) = store.load().unwrap();
            proptest::prop_assert!(loaded.records().eq(memory.records()));
        }
    }
}
