//! The records table and what goes with it: storing an engine step's records and
//! the versions they replaced, collecting and forgetting tombstones, loading the
//! replica back (moving aside rows that do not decode), and the counts `status`
//! shows.

use kith_protocol::record::{ItemId, Record, Space, Version};
use kith_protocol::replica::{Replica, SHADOW_DEPTH};
use rusqlite::{OptionalExtension, params};

use super::{Counts, Error, Quarantined, Result, Store};

/// The primary key of a row of `records`: space, item, version, signature.
pub(super) type RowKey = (i64, Vec<u8>, Vec<u8>, Vec<u8>);

/// Sortable bytes of a version: wall time, counter, device, big-endian.
pub(super) fn version_key(v: &Version) -> Vec<u8> {
    let mut k = Vec::with_capacity(44);
    k.extend_from_slice(&v.hlc.wall_ms.to_be_bytes());
    k.extend_from_slice(&v.hlc.counter.to_be_bytes());
    k.extend_from_slice(&v.device.0);
    k
}

/// A record's place in the order of the records table's key columns (space, item,
/// [`version_key`], signature).
fn row_order(r: &Record) -> (u8, &[u8; 16], u64, u32, &[u8; 32], &[u8; 64]) {
    (
        r.space.code(),
        &r.item.0,
        r.version.hlc.wall_ms,
        r.version.hlc.counter,
        &r.version.device.0,
        &r.signature,
    )
}

impl Store {
    /// Stores records (durably when no [`Store::begin`] is open); for each record,
    /// the versions of its item older than it are dropped beyond the newest
    /// [`SHADOW_DEPTH`] (the versions it replaced that the replica keeps). Versions
    /// newer than it stay: a record is stored as its item's winner, so a newer row
    /// is one of an author set aside by a revocation, which must not push the
    /// winner out. Nothing is written if any record is over the limits a reader
    /// enforces.
    pub fn persist(&mut self, records: &[Record]) -> Result<()> {
        self.persist_pruning(records, |_| true)
    }

    /// [`Store::persist`], dropping older versions only of the items `prune` names:
    /// the caller knows that the others hold no version to drop (an item never
    /// replaced, see [`Replica::shadowed`]), and each of them saves a seek in the
    /// records' index. An item that `prune` wrongly passes over keeps its old
    /// versions until its next record is stored.
    pub fn persist_pruning(
        &mut self,
        records: &[Record],
        prune: impl Fn(&Record) -> bool,
    ) -> Result<()> {
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
        let tx = self.atomic().map_err(sql)?;
        // A record stored takes its item out of the collected tables, which are
        // nearly always empty: then there is nothing to take, a statement a record
        // fewer.
        let collected: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM collected)
                     OR EXISTS (SELECT 1 FROM collected_shadows)",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO records (space, item, version, signature, bytes,
                     tombstone) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql)?;
            let mut drop_older = tx
                .prepare_cached(
                    "DELETE FROM records WHERE space = ?1 AND item = ?2 AND version <
                     (SELECT version FROM records WHERE space = ?1 AND item = ?2
                      AND version <= ?4 ORDER BY version DESC LIMIT 1 OFFSET ?3)",
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
                let version = version_key(&r.version);
                insert
                    .execute(params![
                        space,
                        &r.item.0[..],
                        &version,
                        &r.signature[..],
                        bytes,
                        r.is_tombstone()
                    ])
                    .map_err(sql)?;
                if prune(r) {
                    pruned += drop_older
                        .execute(params![space, &r.item.0[..], SHADOW_DEPTH as i64, &version])
                        .map_err(sql)?;
                }
                if !collected {
                    continue;
                }
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

    /// Carries out an engine's `Output::Collect`: each tombstone of `collect`, the
    /// exact record the engine collected (its winner: version and signature), leaves
    /// the records table and is remembered with the versions it replaced; `forget` is
    /// forgotten. Stored versions above the collected one (records of an author
    /// set aside by a revocation) stay; [`Store::load`] sets them aside again.
    pub fn collect(
        &mut self,
        collect: &[(Space, ItemId, Version, [u8; 64])],
        forget: &[(Space, ItemId)],
    ) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.atomic().map_err(sql)?;
        for (space, item, version, signature) in collect {
            let at = version_key(version);
            let winner: Option<Vec<u8>> = tx
                .prepare_cached(
                    "SELECT bytes FROM records WHERE space = ?1 AND item = ?2 AND version = ?3
                     AND signature = ?4",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![space.code(), &item.0[..], &at, &signature[..]],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(sql)?;
            if let Some(bytes) = winner {
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO collected (space, item, bytes) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![space.code(), &item.0[..], bytes]))
                .map_err(sql)?;
                // The versions it replaced stay beside it until it is forgotten (the
                // replica's shadows: they come back if its author turns out revoked).
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO collected_shadows
                     SELECT space, item, version, signature, bytes FROM records
                     WHERE space = ?1 AND item = ?2 AND version < ?3",
                )
                .and_then(|mut s| s.execute(params![space.code(), &item.0[..], &at]))
                .map_err(sql)?;
                tx.prepare_cached(
                    "DELETE FROM records WHERE space = ?1 AND item = ?2 AND version <= ?3",
                )
                .and_then(|mut s| s.execute(params![space.code(), &item.0[..], &at]))
                .map_err(sql)?;
            }
        }
        for (space, item) in forget {
            for table in ["collected", "collected_shadows"] {
                tx.prepare_cached(&format!(
                    "DELETE FROM {table} WHERE space = ?1 AND item = ?2"
                ))
                .and_then(|mut s| s.execute(params![space.code(), &item.0[..]]))
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
            let conn = self.shared.lock();
            let mut stmt = conn
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
        let conn = self.shared.lock();
        let mut stmt = conn
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
        let conn = self.shared.lock();
        let mut stmt = conn
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
            // Read in the table's order (a walk of its pages) and sorted below.
            "records" => "SELECT bytes, space, item, version, signature FROM records",
            "collected_shadows" => {
                "SELECT bytes, space, item, version, signature FROM collected_shadows
                 ORDER BY space, item, version, signature"
            }
            _ => "SELECT bytes, space, item, NULL, NULL FROM collected",
        };
        type Key = (i64, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let mut out = Vec::new();
        let mut key_ids = kith_protocol::record::KeyIds::default();
        let mut bad: Vec<(Key, Vec<u8>, String)> = Vec::new();
        {
            let sql = |e| Error::Sql {
                path: self.dir.join("kith.db"),
                source: e,
            };
            let conn = self.shared.lock();
            let mut stmt = conn.prepare(query).map_err(sql)?;
            let mut rows = stmt.query([]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let bytes: Vec<u8> = row.get(0).map_err(sql)?;
                match Record::decode(&bytes) {
                    Ok(r) if self.shelving => out.push(r.to_shelved(&mut key_ids).unwrap_or(r)),
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
            let tx = self.atomic().map_err(sql)?;
            for ((space, item, version, signature), bytes, reason) in bad {
                tx.execute(
                    "INSERT INTO quarantine (bytes, reason, at_ms) VALUES (?1, ?2, ?3)",
                    params![bytes, format!("{table}: {reason}"), now],
                )
                .map_err(sql)?;
                match (version, signature) {
                    // The row itself (its bytes too): a valid row may share its key,
                    // one flagged a tombstone where this one was not.
                    (Some(v), Some(sig)) => tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE space = ?1 AND item = ?2
                             AND version = ?3 AND signature = ?4 AND bytes = ?5"
                        ),
                        params![space, item, v, sig, bytes],
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
        if table == "records" {
            // Key order, as the replica needs it: each item's versions oldest first
            // (it keeps the replaced ones). The same order as the key's columns.
            out.sort_unstable_by(|a, b| row_order(a).cmp(&row_order(b)));
        }
        Ok(out)
    }

    /// Rebuilds the replica from what is stored. Rows that do not decode are moved
    /// to the quarantine table (returned, to be reported), never refusing the device.
    pub fn load(&mut self) -> Result<(Replica, Vec<Quarantined>)> {
        self.load_with(false)
    }

    /// [`Store::load`], each sealed record shelved as it is read (its body left in
    /// the store, see [`super::Shelf`]), into a replica whose shelf is this store:
    /// the body of a record is never held for long, so loading needs little more
    /// memory than what it loads.
    pub fn load_shelved(&mut self) -> Result<(Replica, Vec<Quarantined>)> {
        self.load_with(true)
    }

    fn load_with(&mut self, shelve: bool) -> Result<(Replica, Vec<Quarantined>)> {
        let mut quarantined = Vec::new();
        let mut replica = Replica::new();
        if shelve {
            replica.set_shelf(std::sync::Arc::new(self.shelf()));
        }
        self.shelving = shelve;
        let records = self.read_table("records", &mut quarantined);
        self.shelving = false;
        let records = records?;
        let collected = self.read_table("collected", &mut quarantined)?;
        let keys: std::collections::BTreeSet<(Space, ItemId)> =
            collected.iter().map(|r| (r.space, r.item)).collect();
        // Rows of a collected item left beside its tombstone (newer ones, set aside
        // when it was collected) wait until the tombstone is back.
        let mut beside = Vec::new();
        for record in records {
            if keys.contains(&(record.space, record.item)) {
                beside.push(record);
            } else {
                // Every stored version kept: rows of an author revoked after
                // writing them may stand above the winner (see `persist`).
                replica.insert_stored(record);
            }
        }
        // A collected tombstone's shadows (oldest first), then the tombstone over
        // them, collected again.
        self.shelving = shelve;
        let shadows = self.read_table("collected_shadows", &mut quarantined);
        self.shelving = false;
        for record in shadows? {
            if keys.contains(&(record.space, record.item)) {
                replica.insert(record);
            }
        }
        for record in collected {
            let (space, item) = (record.space, record.item);
            replica.insert(record);
            replica.collect(space, &item);
        }
        for record in beside {
            replica.insert_beside_collected(record);
        }
        Ok((replica, quarantined))
    }

    /// Row counts.
    pub fn counts(&self) -> Result<Counts> {
        let count = |table: &str| -> Result<u64> {
            self.shared
                .lock()
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
}
