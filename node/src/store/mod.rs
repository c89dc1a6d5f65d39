//! The data directory: the SQLite store (WAL) of records, collected tombstones,
//! peers, and the owner-only files holding this device's private keys and
//! secrets.
//!
//! Layout of a data directory (mode 0700):
//!
//! | file | what |
//! |---|---|
//! | `kith.db` (+ `-wal`, `-shm`) | records, collected tombstones, account, known peers |
//! | `device.key` | Ed25519 secret key (32 bytes), mode 0600 |
//! | `openpgp.key` | OpenPGP transferable secret key, mode 0600 |
//! | `secrets.xml` | the keyring: XEP-0473 `<shared-secret/>` elements, mode 0600 |
//! | `lock` | held (`flock`) by whoever has the store open |
//! | `control.sock` | the running node's control socket, mode 0600 |
//!
//! The store keeps, per item, the winning record and the [`SHADOW_DEPTH`](kith_protocol::replica::SHADOW_DEPTH) versions it
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
use std::sync::Arc;

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};
use rusqlite::{Connection, params};

pub mod clients;
mod files;
pub mod history;
pub mod index;
pub mod names;
mod peers;
mod records;
mod schema;
mod shelf;
pub mod vault;

pub use schema::SCHEMA_VERSION;
pub use shelf::Shelf;

pub use files::{
    DEVICE_FILES, KeyFiles, Lock, create_dir, finish_pending, finish_rekey, keyring_from_xml,
    keyring_to_xml, locked, pending, read_file, rekey, write_private,
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
    /// The connection, shared with the replica's shelf ([`Shelf`]): one connection
    /// (SQLite's lock is exclusive), used by one thread at a time, re-entrant so
    /// that a shelf read inside a store call cannot deadlock.
    shared: Arc<ReentrantMutex<Connection>>,
    /// Whether [`Store::load_shelved`] is reading: records are shelved as read.
    shelving: bool,
    /// SQLite's count of changed rows at the last checkpoint.
    checkpointed_at: u64,
    /// Whether rows holding something erased (replaced versions, collected
    /// tombstones, history) were deleted since the last checkpoint: the next one
    /// then empties the log, where their old pages still are.
    erased: bool,
    /// Whether the log's next write would start it over (it was checkpointed, or
    /// the store just opened): [`Store::checkpoint_if_written`] then starts it over
    /// itself ([`Store::restart_log`]).
    restart_due: bool,
}

/// The store's connection, held for a while.
type Conn<'a> = ReentrantMutexGuard<'a, Connection>;

/// Prepared statements kept per connection.
const STATEMENTS_CACHED: usize = 64;

/// Pages the write-ahead log may grow to before SQLite checkpoints inside a commit
/// (32 MiB of 4 KiB pages): the node checkpoints well before, between requests.
const WAL_PAGES_MAX: i64 = 8192;

/// What [`Store::atomic`] opened: the connection, inside a savepoint of its own or
/// inside the caller's transaction.
pub(super) struct Atomic<'a> {
    conn: Conn<'a>,
    own: bool,
}

impl Atomic<'_> {
    /// Keeps what was written (in the caller's transaction, it commits with that).
    pub(super) fn commit(mut self) -> rusqlite::Result<()> {
        if self.own {
            // Marked done only once released: a failed release (SQLite may keep the
            // transaction after a full disk) is rolled back by `drop`.
            self.conn.execute_batch("RELEASE kith_atomic")?;
            self.own = false;
        }
        Ok(())
    }
}

impl std::ops::Deref for Atomic<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for Atomic<'_> {
    fn drop(&mut self) {
        if self.own {
            // Best effort, as rusqlite's own savepoints do on drop.
            let _ = self
                .conn
                .execute_batch("ROLLBACK TO kith_atomic; RELEASE kith_atomic");
        }
    }
}

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
        // A log left by a process that did not close the store (a kill -9) may hold
        // pages of something erased since: the first checkpoint empties it.
        let left_log = fs::metadata(dir.join("kith.db-wal")).is_ok_and(|m| m.len() > 0);
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
        // Room for every statement a write or a read prepares again and again (the
        // default, 16, is fewer than one edit uses: they would be parsed anew).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
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
        conn.execute_batch(schema::SCHEMA).map_err(sql)?;
        let mut store = Self {
            dir: dir.to_owned(),
            shared: Arc::new(ReentrantMutex::new(conn)),
            shelving: false,
            checkpointed_at: 0,
            erased: left_log,
            restart_due: true,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Moves what the write-ahead log holds into the database file and empties the
    /// log (after a large write, so that the next open does not pay for it).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.shared
            .lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .map_err(|e| self.sql(e))?;
        self.erased = false;
        self.checkpointed_at = self.shared.lock().total_changes();
        self.restart_due = true;
        Ok(())
    }

    /// Checkpoints the write-ahead log if anything was written since the last call;
    /// returns whether it did. The node calls it every two seconds, between
    /// requests. Usually a passive checkpoint (it waits for nothing and leaves the
    /// log's file as it is); after an erasure ([`Store::erased`]) the log is emptied
    /// too, since the pages it holds still carry what was erased. Either way the log
    /// is then started over ([`Store::restart_log`]), also after a
    /// [`Store::checkpoint`] or an open with nothing written since.
    pub fn checkpoint_if_written(&mut self) -> Result<bool> {
        let conn = self.shared.lock();
        let changes = conn.total_changes();
        if self.in_transaction() {
            return Ok(false);
        }
        if changes == self.checkpointed_at && !self.erased {
            if std::mem::take(&mut self.restart_due) {
                // Best effort, as below.
                let _ = self.restart_log();
            }
            return Ok(false);
        }
        let mode = if self.erased { "TRUNCATE" } else { "PASSIVE" };
        self.shared
            .lock()
            .execute_batch(&format!("PRAGMA wal_checkpoint({mode})"))
            .map_err(|e| self.sql(e))?;
        self.checkpointed_at = changes;
        self.erased = false;
        self.restart_due = false;
        // Best effort: should it fail (a full disk, after a `TRUNCATE` left the log
        // empty), the next commit starts the log over itself, as SQLite always
        // did; the checkpoint is done either way.
        let _ = self.restart_log();
        Ok(true)
    }

    /// Starts the log over now, between requests, rather than in the next commit
    /// (two syncs here, off any request's path, instead of one more in it).
    /// After a checkpoint the next write rewinds the log to its start and writes a
    /// new header, which `synchronous=FULL` syncs on its own before the frames: two
    /// syncs for that commit instead of one, and every edit made at a person's pace
    /// (seconds apart, so after the 2-s checkpoint) paid them. Rewriting the user
    /// version in page 1's header with the value it has is a write that changes
    /// nothing; it counts as no change ([`rusqlite::Connection::total_changes`]
    /// counts rows), so it brings no checkpoint of its own.
    fn restart_log(&self) -> Result<()> {
        let conn = self.shared.lock();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))?;
        conn.execute_batch(&format!("PRAGMA user_version = {version}"))
            .map_err(|e| self.sql(e))
    }

    /// Whether something was erased since the last checkpoint (the next one empties
    /// the log).
    pub fn erased(&self) -> bool {
        self.erased
    }

    /// Starts a transaction that the writes up to [`Store::commit`] join: all of
    /// them reach the disk, or (after a crash or [`Store::rollback`]) none.
    pub fn begin(&mut self) -> Result<()> {
        self.shared
            .lock()
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sql(e))
    }

    /// Commits what [`Store::begin`] started, durably.
    pub fn commit(&mut self) -> Result<()> {
        self.shared
            .lock()
            .execute_batch("COMMIT")
            .map_err(|e| self.sql(e))
    }

    /// Drops what [`Store::begin`] started.
    pub fn rollback(&mut self) -> Result<()> {
        self.shared
            .lock()
            .execute_batch("ROLLBACK")
            .map_err(|e| self.sql(e))
    }

    /// Makes what follows atomic until [`Atomic::commit`]. In a transaction the
    /// caller opened ([`Store::begin`]) it is simply part of that: on an error the
    /// caller rolls the whole back (every caller does), and a savepoint there would
    /// first copy every page it touches to a statement journal, about a tenth of an
    /// import's time. Otherwise it is a transaction of its own, rolled back if not
    /// committed.
    pub(super) fn atomic(&self) -> rusqlite::Result<Atomic<'_>> {
        let own = !self.in_transaction();
        if own {
            self.shared.lock().execute_batch("SAVEPOINT kith_atomic")?;
        }
        Ok(Atomic {
            conn: self.shared.lock(),
            own,
        })
    }

    /// The connection, for tests that look into the file.
    #[cfg(test)]
    fn conn(&self) -> Conn<'_> {
        self.shared.lock()
    }

    /// Whether a transaction of [`Store::begin`] is open.
    pub fn in_transaction(&self) -> bool {
        !self.shared.lock().is_autocommit()
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
        let get = |key: &str| self.meta(key);
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
        let tx = self.atomic().map_err(|e| Error::Sql {
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
}

#[cfg(test)]
mod tests;
