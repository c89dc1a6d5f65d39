//! Item ids XMPP clients chose that are not kith's own form (32 hex digits): the
//! record's id is derived from the name (see [`item_for_name`]), and the name is
//! kept here so that this device answers with it. Other devices show the derived id.

use kith_protocol::item::NodeKind;
use kith_protocol::record::{ItemId, Space};
use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{Result, Store};

/// Longest item id a client may choose, bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The record id of the client's item id `name` on `node`: `name` itself when it is
/// 32 lower-case hex digits, else the first 16 bytes of SHA-256 over a context,
/// the node and the name (so the same name is the same item on every device).
pub fn item_for_name(node: NodeKind, name: &str) -> ItemId {
    if let Some(id) = ItemId::parse(name).filter(|i| i.to_string() == name) {
        return id;
    }
    let mut h = Sha256::new();
    h.update(b"kith pubsub item id\0");
    h.update(node.node_name().as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    ItemId(b)
}

impl Store {
    /// Every stored name.
    pub fn item_names(&self) -> Result<Vec<(NodeKind, ItemId, String)>> {
        let read = || -> rusqlite::Result<Vec<(NodeKind, ItemId, String)>> {
            let conn = self.shared.lock();
            let mut stmt = conn.prepare("SELECT node, item, name FROM item_names")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (code, item, name) = row?;
                // A row naming no node or not 16 bytes cannot name a record: skipped.
                let node = u64::try_from(code)
                    .ok()
                    .and_then(Space::from_code)
                    .and_then(Space::node);
                if let (Some(node), Ok(b)) = (node, <[u8; 16]>::try_from(item.as_slice())) {
                    out.push((node, ItemId(b), name));
                }
            }
            Ok(out)
        };
        read().map_err(|e| self.sql(e))
    }

    /// Forgets the name of an item (retracted, or no longer live).
    pub fn remove_item_name(&mut self, node: NodeKind, item: &ItemId) -> Result<()> {
        self.shared
            .lock()
            .execute(
                "DELETE FROM item_names WHERE node = ?1 AND item = ?2",
                params![Space::from(node).code(), &item.0[..]],
            )
            .map(|n| self.erased |= n > 0)
            .map_err(|e| self.sql(e))
    }

    /// Forgets the names of `items` (gone, or placeholders): one cheap query when no
    /// client named any item, as on most devices.
    pub fn remove_item_names(
        &mut self,
        items: impl IntoIterator<Item = (NodeKind, ItemId)>,
    ) -> Result<()> {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            return Ok(());
        }
        let any: bool = self
            .shared
            .lock()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM item_names)")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.sql(e))?;
        if !any {
            return Ok(());
        }
        for (node, item) in items {
            self.remove_item_name(node, &item)?;
        }
        Ok(())
    }

    /// Remembers the name of an item.
    pub fn set_item_name(&mut self, node: NodeKind, item: &ItemId, name: &str) -> Result<()> {
        self.shared
            .lock()
            .prepare_cached(
                "INSERT OR REPLACE INTO item_names (node, item, name) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![Space::from(node).code(), &item.0[..], name]))
            .map(drop)
            .map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kith_ids_are_themselves_and_names_are_derived_per_node() {
        let hex = "00112233445566778899aabbccddeeff";
        assert_eq!(item_for_name(NodeKind::Contacts, hex).to_string(), hex);
        let a = item_for_name(NodeKind::Contacts, "a1b2c3d4");
        assert_eq!(a, item_for_name(NodeKind::Contacts, "a1b2c3d4"));
        assert_ne!(a, item_for_name(NodeKind::Groups, "a1b2c3d4"));
        assert_ne!(
            item_for_name(NodeKind::Contacts, &hex.to_uppercase()).to_string(),
            hex.to_uppercase()
        );
    }
}
