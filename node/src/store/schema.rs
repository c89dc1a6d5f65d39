//! The tables of a store, and bringing a store an earlier version wrote up to
//! date (or refusing one a later version wrote).

use kith_protocol::record::Record;
use rusqlite::{Connection, OptionalExtension, params};

use std::path::Path;

use super::records::RowKey;
use super::{Error, Result, Store};

pub(super) const SCHEMA: &str = "
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
DROP TABLE IF EXISTS invites;
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
    seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, at INTEGER NOT NULL,
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
/// index is built at the next full open); version 3 numbered history rows with
/// `AUTOINCREMENT`, which wrote `sqlite_sequence` at every change (opening rebuilds
/// the table without it, rows and order kept); version 4 kept `records` and `items`
/// in `WITHOUT ROWID` tables (opening copies them into rowid tables with unique
/// indexes: [`Store::rowid_tables`]). A new store is created in the old layout and
/// converted at once, while empty: one way to the current layout for every store.
/// Version 5 indexed the rowid `records` table twice, by its key and by its key's
/// first three columns with `tombstone` (opening makes them one:
/// [`Store::one_records_index`]).
pub const SCHEMA_VERSION: i64 = 6;

impl Store {
    /// Brings a store written by an earlier version to [`SCHEMA_VERSION`]; refuses
    /// one written by a later version.
    pub(super) fn migrate(&mut self) -> Result<()> {
        let found = self.schema()?;
        if found > SCHEMA_VERSION {
            return Err(Error::Newer {
                path: self.dir.clone(),
                found,
            });
        }
        let has_tombstone: bool = self
            .shared
            .lock()
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
        let autoincrement: i64 = self
            .shared
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'history'
                 AND sql LIKE '%AUTOINCREMENT%'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        // Schema 4 is noted only once the history was copied.
        let mut copied = true;
        if autoincrement > 0 {
            let result = self.renumber_history();
            copied &= self.copied("copy the history table", result)?;
        }
        let without_rowid: i64 = self
            .shared
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'
                 AND name IN ('records', 'items') AND sql LIKE '%WITHOUT ROWID%'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        if without_rowid > 0 {
            let result = self.rowid_tables();
            if self.copied("copy the records and items tables", result)? {
                self.compact();
            } else {
                copied = false;
            }
        }
        if table_sql(self, "records")?.contains("WITHOUT ROWID") {
            // A schema 4 store left as it was: counting winners and tombstones
            // (status) reads this index, not the records.
            self.shared
                .lock()
                .execute_batch(
                    "CREATE INDEX IF NOT EXISTS records_winners
                     ON records (space, item, version, tombstone)",
                )
                .map_err(|e| self.sql(e))?;
        } else if index_exists(self, "records_winners")?
            || !index_sql(self, "records_key")?.contains("tombstone")
        {
            // Noted as the current schema in the same transaction when nothing
            // before it is left to do: a schema 5 store so converted is never found
            // with the new index under the old note.
            let result = self.one_records_index(copied);
            copied &= self.copied("make the one records index", result)?;
        }
        // Earlier versions kept an mDNS label and the libp2p port across runs: values
        // that named the device on the LAN for good (discovery's guise replaced them).
        // Erased once (a read-only open writes nothing when there is nothing to erase).
        let stale: i64 = self
            .shared
            .lock()
            .query_row(
                "SELECT COUNT(*) FROM meta WHERE key IN ('label', 'listen_port')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        if stale > 0 {
            self.shared
                .lock()
                .execute("DELETE FROM meta WHERE key IN ('label', 'listen_port')", [])
                .map_err(|e| self.sql(e))?;
        }
        if copied && self.schema()? != SCHEMA_VERSION {
            let noted = self
                .shared
                .lock()
                .execute(NOTE_SCHEMA, [SCHEMA_VERSION.to_be_bytes()])
                .map(|_| ())
                .map_err(|e| self.sql(e));
            // The layout is the current one whether or not it is noted: on a full
            // disk the store opens all the same, and the next open notes it.
            self.copied("note the schema version", noted)?;
        }
        Ok(())
    }

    /// Whether a step of [`Store::migrate`] was done (`result`). A table copy needs
    /// room for a second table: on a full disk the old table, which answers the same
    /// statements, stays, the store opens with it (noted as the earlier schema), and
    /// the next open tries again (`false`); so with the other steps (`what` was not
    /// done). Any other failure is the store's and stops the open.
    fn copied(&self, what: &str, result: Result<()>) -> Result<bool> {
        match result {
            Ok(()) => Ok(true),
            Err(Error::Sql { source, .. })
                if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) =>
            {
                tracing::warn!(
                    "{}: no room to {what}; left as it is for now",
                    self.dir.display()
                );
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Schema 3: records say whether they are tombstones (so that counting them needs
    /// no decoding); the rows already there are decoded once to fill it in.
    fn add_tombstone_column(&mut self) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let conn = self.shared.lock();
        let tx = conn.unchecked_transaction().map_err(sql)?;
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

    /// Schema 4: the history table without `AUTOINCREMENT`. A row's number only
    /// orders rows of the same time (insertion order); SQLite's own next rowid (one
    /// past the largest) keeps that order, without the `sqlite_sequence` row that
    /// `AUTOINCREMENT` writes at every insert (expected: a page of the log per edit;
    /// measured: 0.1-0.9 pages fewer, `docs/performance.md`). The
    /// rows are copied, numbers included, in one transaction.
    fn renumber_history(&mut self) -> Result<()> {
        self.in_one_transaction(
            "CREATE TABLE history_v4 (
                 seq INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, at INTEGER NOT NULL,
                 data BLOB NOT NULL);
             INSERT INTO history_v4 (seq, key, at, data) SELECT seq, key, at, data FROM history;
             DROP TABLE history;
             ALTER TABLE history_v4 RENAME TO history;
             CREATE INDEX IF NOT EXISTS history_at ON history (at);",
        )
    }

    /// Schema 5: `records` and `items` in rowid tables, each with a unique index on
    /// what was its primary key (for `records`, now with `tombstone` last: schema
    /// 6, [`Store::one_records_index`]). A `WITHOUT ROWID` table keeps whole rows in its
    /// interior pages too, so rows of 300-900 bytes gave it a fan-out of about four
    /// and a depth of seven at 10,000 contacts: an insert rewrote a path of pages
    /// and split them often. A rowid table appends rows and keeps only numbers
    /// inside; the key index holds about 100 bytes a row. Measured: a third of the
    /// log a record (`docs/performance.md`). Rows are copied in key order, in one
    /// transaction.
    fn rowid_tables(&mut self) -> Result<()> {
        self.in_one_transaction(
            "CREATE TABLE records_v5 (
                 space INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
                 signature BLOB NOT NULL, bytes BLOB NOT NULL,
                 tombstone INTEGER NOT NULL DEFAULT 0);
             INSERT INTO records_v5 (space, item, version, signature, bytes, tombstone)
                 SELECT space, item, version, signature, bytes, tombstone FROM records
                 ORDER BY space, item, version, signature;
             DROP TABLE records;
             ALTER TABLE records_v5 RENAME TO records;
             CREATE UNIQUE INDEX records_key
                 ON records (space, item, version, signature, tombstone);
             CREATE TABLE items_v5 (
                 node INTEGER NOT NULL, item BLOB NOT NULL, version BLOB NOT NULL,
                 signature BLOB NOT NULL, kind INTEGER NOT NULL, data BLOB NOT NULL);
             INSERT INTO items_v5 (node, item, version, signature, kind, data)
                 SELECT node, item, version, signature, kind, data FROM items
                 ORDER BY node, item;
             DROP TABLE items;
             ALTER TABLE items_v5 RENAME TO items;
             CREATE UNIQUE INDEX items_key ON items (node, item);
             CREATE INDEX items_kind ON items (kind, node);",
        )
    }

    /// Schema 6: one index on `records`, its key with `tombstone` last. It is as
    /// unique as the key alone (a record's signature covers whether it is a
    /// tombstone), and it answers the counts of winners and tombstones (status)
    /// without reading the records, which a second index on (space, item, version,
    /// tombstone) did: each stored record wrote both. Measured with the collected
    /// tables' statements skipped when empty: a record stored in a frame of a new
    /// device's sync, 17.4 µs before, 12.3 µs after (`docs/performance.md`).
    /// With `note`, the store is noted as of [`SCHEMA_VERSION`] in the same
    /// transaction.
    pub(super) fn one_records_index(&mut self, note: bool) -> Result<()> {
        self.migration(|tx| {
            tx.execute_batch(
                "DROP INDEX IF EXISTS records_winners;
                 DROP INDEX IF EXISTS records_key;
                 CREATE UNIQUE INDEX records_key
                     ON records (space, item, version, signature, tombstone);",
            )?;
            if note {
                tx.execute(NOTE_SCHEMA, [SCHEMA_VERSION.to_be_bytes()])?;
            }
            Ok(())
        })
    }

    /// Runs `batch` (a migration's statements) in one transaction: all or nothing.
    fn in_one_transaction(&mut self, batch: &str) -> Result<()> {
        self.migration(|tx| tx.execute_batch(batch))
    }

    /// Runs `steps` (a migration's) in one transaction: all or nothing.
    fn migration(
        &mut self,
        steps: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let conn = self.shared.lock();
        let tx = conn.unchecked_transaction().map_err(sql)?;
        steps(&tx).map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Rewrites the file without the pages the old tables freed, which would
    /// otherwise keep the store at about twice its size on disk. Best effort: a
    /// store that cannot be compacted (a full disk: it needs room for a copy) works
    /// the same, only larger. (A copied or compacted table has full pages, so the
    /// first edits after it split pages more often than on a store grown edit by
    /// edit: 24-47 pages of log an edit on a converted store of 2,000 contacts
    /// against 18-25 on a new one, until the pages have room again.)
    fn compact(&mut self) {
        let free: i64 = self
            .shared
            .lock()
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .unwrap_or(0);
        if free == 0 {
            return;
        }
        if let Err(e) = self.shared.lock().execute_batch("VACUUM") {
            tracing::warn!("{}: could not compact the store: {e}", self.dir.display());
        }
    }

    /// The schema version the store was last written with (1: before it was noted).
    pub(super) fn schema(&self) -> Result<i64> {
        Ok(self
            .meta("schema")?
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
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
}

/// Notes the schema version the store is written in (`?1`, big-endian).
const NOTE_SCHEMA: &str = "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1)";

/// How the store declares its `kind` (`table` or `index`) named `name`, if it has
/// one.
fn declared(store: &Store, kind: &str, name: &str) -> Result<Option<String>> {
    store
        .shared
        .lock()
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = ?1 AND name = ?2",
            [kind, name],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| store.sql(e))
}

/// How the store's table `name` is declared (empty when there is no such table).
pub(super) fn table_sql(store: &Store, name: &str) -> Result<String> {
    Ok(declared(store, "table", name)?.unwrap_or_default())
}

/// How the store's index `name` is declared (empty when there is no such index).
fn index_sql(store: &Store, name: &str) -> Result<String> {
    Ok(declared(store, "index", name)?.unwrap_or_default())
}

/// Whether the store has an index named `name`.
fn index_exists(store: &Store, name: &str) -> Result<bool> {
    Ok(declared(store, "index", name)?.is_some())
}
