//! The device's history of contact changes, for `kith log`: one row per change this
//! device stored (its own edits and those of other devices), newest kept, at most
//! [`MAX_ROWS`]. Rows are sealed like the item index (AES-256-GCM under a key
//! derived from the device key), so the history tells a reader of the disk nothing
//! the sealed records do not.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::index::Keys;
use super::{Error, Result, Store};

/// Most changes remembered; older ones are forgotten.
pub const MAX_ROWS: i64 = 10_000;

/// One change, as `kith log` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When, by the changing device's clock (Unix ms).
    pub at_ms: u64,
    /// The device that made it (its id, 16 hex digits).
    pub device: String,
    /// The contact's id.
    pub contact_id: String,
    /// The contact's name after the change (before it, for a deletion).
    pub name: Option<String>,
    /// The contact's addresses after the change (before it, for a deletion).
    pub jids: Vec<String>,
    /// What changed, in words (`name "Jules"`, `+group Verona`, `deleted`).
    pub changes: Vec<String>,
}

impl Store {
    fn sql_err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sql {
            path: self.dir.join("kith.db"),
            source,
        }
    }

    /// Adds changes (each under a key naming it, so a change stored twice is kept
    /// once), then forgets the oldest past [`MAX_ROWS`]. The stored changes of each
    /// contact of `erase` made no later than the time beside it are erased first
    /// (their names and addresses go with them: what a deletion leaves). Returns
    /// the entries that were new, by index into `entries`.
    pub fn add_history(
        &mut self,
        keys: &Keys,
        entries: &[(Vec<u8>, Entry)],
        erase: &[(String, u64)],
    ) -> Result<Vec<usize>> {
        if entries.is_empty() && erase.is_empty() {
            return Ok(Vec::new());
        }
        let mut new = Vec::new();
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let mut erased = 0;
        let tx = self.atomic().map_err(sql)?;
        {
            // A row's key starts with its contact's id and has a fixed length after
            // it (stamp, device, and a mark for a deletion): see `history_of`.
            let mut drop_contact = tx
                .prepare_cached(
                    "DELETE FROM history WHERE substr(key, 1, ?2) = ?1
                     AND length(key) IN (?2 + 44, ?2 + 45) AND at <= ?3",
                )
                .map_err(sql)?;
            for (id, at) in erase {
                let id = id.as_bytes();
                let at = i64::try_from(*at).unwrap_or(i64::MAX);
                erased += drop_contact
                    .execute(params![id, id.len() as i64, at])
                    .map_err(sql)?;
            }
            let mut put = tx
                .prepare_cached("INSERT OR IGNORE INTO history (key, at, data) VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            let mut added = 0;
            for (i, (key, e)) in entries.iter().enumerate() {
                // Invariant: an Entry is plain data, always serialisable.
                let json = serde_json::to_vec(e).expect("history entry serialises");
                let at = i64::try_from(e.at_ms).unwrap_or(i64::MAX);
                let inserted = put
                    .execute(params![key, at, keys.seal(&json)])
                    .map_err(sql)?;
                if inserted > 0 {
                    new.push(i);
                }
                added += inserted;
            }
            // Past the limit (only inserts add rows), the oldest rows go. Counting
            // walks the index's pages; skipping the newest MAX_ROWS instead stepped
            // through every row, on every change.
            if added > 0 {
                let rows: i64 = tx
                    .prepare_cached("SELECT count(*) FROM history")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(sql)?;
                if rows > MAX_ROWS {
                    tx.prepare_cached(
                        "DELETE FROM history WHERE seq IN
                             (SELECT seq FROM history ORDER BY at ASC, seq ASC LIMIT ?1)",
                    )
                    .and_then(|mut s| s.execute([rows - MAX_ROWS]))
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)?;
        self.erased |= erased > 0;
        Ok(new)
    }

    /// The remembered changes, newest first, at most `limit`, that `keep` keeps.
    pub fn history(
        &self,
        keys: &Keys,
        limit: usize,
        keep: &dyn Fn(&Entry) -> bool,
    ) -> Result<Vec<Entry>> {
        let conn = self.shared.lock();
        let mut stmt = conn
            .prepare_cached("SELECT data FROM history ORDER BY at DESC, seq DESC")
            .map_err(self.sql_err())?;
        let mut rows = stmt.query([]).map_err(self.sql_err())?;
        let mut out = Vec::new();
        while out.len() < limit
            && let Some(row) = rows.next().map_err(self.sql_err())?
        {
            let data: Vec<u8> = row.get(0).map_err(self.sql_err())?;
            // A row that does not open or read (another key, damage) is skipped.
            if let Some(e) = keys
                .open(&data)
                .and_then(|plain| serde_json::from_slice::<Entry>(&plain).ok())
                && keep(&e)
            {
                out.push(e);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at_ms: u64, n: usize) -> (Vec<u8>, Entry) {
        let e = Entry {
            at_ms,
            device: "0123456789abcdef".into(),
            contact_id: format!("c{n}"),
            name: None,
            jids: vec![format!("u{n}@example.org")],
            changes: vec!["added".into()],
        };
        (format!("key {n}").into_bytes(), e)
    }

    #[test]
    fn the_newest_rows_are_kept_and_the_oldest_past_the_limit_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let keys = Keys::new(&[9; 32]);
        let limit = usize::try_from(MAX_ROWS).unwrap();
        // Two rows share each time, so the order of insertion decides among them.
        let first: Vec<_> = (0..limit).map(|n| entry(1_000 + n as u64 / 2, n)).collect();
        store.add_history(&keys, &first, &[]).unwrap();
        let all = store.history(&keys, limit + 10, &|_| true).unwrap();
        assert_eq!(all.len(), limit, "nothing goes below the limit");
        // Three more, one of them older than everything.
        let more = vec![
            entry(10, limit),
            entry(99_999, limit + 1),
            entry(99_999, limit + 2),
        ];
        store.add_history(&keys, &more, &[]).unwrap();
        let kept = store.history(&keys, limit + 10, &|_| true).unwrap();
        assert_eq!(kept.len(), limit);
        let ids: Vec<&str> = kept.iter().map(|e| e.contact_id.as_str()).collect();
        assert_eq!(
            ids[..2],
            [format!("c{}", limit + 2), format!("c{}", limit + 1)]
        );
        // Gone: the older one added now, and the two oldest before (c0, then c1,
        // which shares c0's time but was written after it).
        for gone in [limit, 0, 1] {
            assert!(
                !ids.contains(&format!("c{gone}").as_str()),
                "c{gone} stayed"
            );
        }
        assert!(ids.contains(&"c2"));
    }
}
