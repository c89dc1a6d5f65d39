//! The replica's shelf ([`kith_protocol::replica::Shelf`]): a node keeps the sealed
//! bodies of the records it stored in the store only, not also in memory, and reads
//! one back when a peer or a client asks for it (or the view must open it again).
//! It reads through the store's own connection (SQLite's lock is exclusive), so what
//! it finds is what the store holds, committed or inside the transaction at hand.

use std::sync::Arc;

use kith_protocol::record::{ItemId, Record, Space, Version};
use parking_lot::ReentrantMutex;
use rusqlite::{Connection, OptionalExtension, params};

use super::Store;
use super::records::version_key;

/// Reads stored records back by their key.
pub struct Shelf {
    shared: Arc<ReentrantMutex<Connection>>,
}

impl Store {
    /// A shelf over this store, for the replica (see [`Shelf`]).
    pub fn shelf(&self) -> Shelf {
        Shelf {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Where a stored version of an item is, by table: a replaced version of an item
/// whose tombstone was collected is kept in `collected_shadows`, every other in
/// `records`. Written out whole, so that each read finds its prepared statement.
const QUERIES: [&str; 2] = [
    "SELECT bytes FROM records WHERE space = ?1 AND item = ?2 AND version = ?3
     AND signature = ?4",
    "SELECT bytes FROM collected_shadows WHERE space = ?1 AND item = ?2 AND version = ?3
     AND signature = ?4",
];

impl Shelf {
    fn read(
        &self,
        query: &str,
        space: Space,
        item: &ItemId,
        version: &Version,
        signature: &[u8; 64],
    ) -> rusqlite::Result<Option<Vec<u8>>> {
        let conn = self.shared.lock();
        let mut stmt = conn.prepare_cached(query)?;
        stmt.query_row(
            params![
                space.code(),
                &item.0[..],
                version_key(version),
                &signature[..]
            ],
            |r| r.get(0),
        )
        .optional()
    }
}

impl kith_protocol::replica::Shelf for Shelf {
    fn load(
        &self,
        space: Space,
        item: &ItemId,
        version: &Version,
        signature: &[u8; 64],
    ) -> Option<Record> {
        for query in QUERIES {
            match self.read(query, space, item, version, signature) {
                Ok(Some(bytes)) => match Record::decode(&bytes) {
                    Ok(r) => return Some(r),
                    Err(e) => {
                        tracing::warn!("stored record {space:?} {item} does not decode: {e}");
                        return None;
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("stored record {space:?} {item} could not be read: {e}");
                    return None;
                }
            }
        }
        None
    }
}
