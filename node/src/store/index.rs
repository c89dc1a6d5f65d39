//! The item index: for every live item of the two XEP-0510 nodes, what the merged
//! view read from its record (the payload in binary form, or why it is unreadable),
//! and which contact items carry which identity. It lets a device start without
//! opening every item again, and lets a command on a stopped node load only the
//! items it touches ([`crate::Device::open_for`]).
//!
//! Nothing in it is plaintext: payloads are sealed with AES-256-GCM under a key
//! derived from the device key, identities are stored as keyed hashes (HMAC-SHA-256
//! under another derived key), so the index tells a reader of the disk no more than
//! the sealed records do.
//!
//! It is written in the same transaction as the records it reflects, and carries the
//! store's generation (bumped by every write of records): when the two differ (an
//! index from an earlier version, or none), it is not used and is rebuilt.

use std::collections::BTreeSet;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use kith_protocol::contacts::{ItemRead, Unreadable};
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::record::{ItemId, Space, Version};
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::records::version_key;
use super::{Error, Result, Store};

/// What the index holds of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node.
    pub node: NodeKind,
    /// The item.
    pub item: ItemId,
    /// The version of the record it was read from.
    pub version: Version,
    /// The signature of that record.
    pub signature: [u8; 64],
    /// The payload, or `None` when the item is unreadable (then `waiting` names
    /// the secret it waits for, if that is why).
    pub payload: Option<Payload>,
    /// The secret an unreadable item waits for.
    pub waiting: Option<String>,
}

/// What kind of item a row is.
const CONTACT: i64 = 0;
const GROUP: i64 = 1;
const RESERVED: i64 = 2;
const UNREADABLE: i64 = 3;

fn node_code(node: NodeKind) -> i64 {
    match node {
        NodeKind::Contacts => 0,
        NodeKind::Groups => 1,
    }
}

fn node_of(code: i64) -> Option<NodeKind> {
    match code {
        0 => Some(NodeKind::Contacts),
        1 => Some(NodeKind::Groups),
        _ => None,
    }
}

/// The keys of a device's index.
pub struct Keys {
    seal: Aes256Gcm,
    hash: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("index::Keys")
    }
}

impl Keys {
    /// The keys derived from the device's secret key.
    pub fn new(device_secret: &[u8; 32]) -> Self {
        let derive = |label: &[u8]| -> Zeroizing<[u8; 32]> {
            Zeroizing::new(
                Sha256::new()
                    .chain_update(b"kith item index\0")
                    .chain_update(label)
                    .chain_update(device_secret)
                    .finalize()
                    .into(),
            )
        };
        let seal_key = derive(b"seal");
        Self {
            seal: Aes256Gcm::new(seal_key.as_slice().into()),
            hash: derive(b"identity"),
        }
    }

    /// The keyed hash an identity is indexed under.
    pub fn identity(&self, kind: &str, value: &str) -> [u8; 16] {
        // Invariant: HMAC takes keys of any length.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.hash.as_slice()).expect("HMAC key");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
    }

    /// Seals `plain` (AES-256-GCM, random nonce first).
    pub(crate) fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 12] = rand::RngExt::random(&mut rand::rng());
        let mut out = nonce.to_vec();
        // Invariant: AES-GCM encryption of a buffer in memory cannot fail.
        out.extend(
            self.seal
                .encrypt(Nonce::from_slice(&nonce), plain)
                .expect("AES-GCM encrypts"),
        );
        out
    }

    /// Opens what [`Keys::seal`] sealed; `None` when it does not open.
    pub(crate) fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, data) = sealed.split_at_checked(12)?;
        self.seal.decrypt(Nonce::from_slice(nonce), data).ok()
    }
}

/// A row as stored: kind and sealed data.
fn row_of(keys: &Keys, e: &Entry) -> (i64, Vec<u8>) {
    match (&e.payload, &e.waiting) {
        (Some(p), _) => {
            let kind = match p {
                Payload::Contact(_) => CONTACT,
                Payload::Group(_) => GROUP,
                Payload::Reserved(_) => RESERVED,
            };
            (kind, keys.seal(&p.to_bytes()))
        }
        (None, Some(w)) => (UNREADABLE, keys.seal(w.as_bytes())),
        (None, None) => (UNREADABLE, Vec::new()),
    }
}

/// What the index says of an item whose row is (`kind`, `data`).
fn entry_of(
    keys: &Keys,
    node: NodeKind,
    item: ItemId,
    version: Version,
    signature: [u8; 64],
    kind: i64,
    data: &[u8],
) -> Option<Entry> {
    let (payload, waiting) = match kind {
        UNREADABLE if data.is_empty() => (None, None),
        UNREADABLE => (None, Some(String::from_utf8(keys.open(data)?).ok()?)),
        _ => (Some(Payload::from_bytes(&keys.open(data)?)?), None),
    };
    Some(Entry {
        node,
        item,
        version,
        signature,
        payload,
        waiting,
    })
}

impl From<ItemRead> for Entry {
    /// What the index keeps of what the view read.
    fn from((node, item, version, signature, payload): ItemRead) -> Self {
        let (payload, waiting) = match payload {
            Ok(p) => (Some(p), None),
            Err(Unreadable::Waiting(w)) => (None, Some(w)),
            Err(_) => (None, None),
        };
        Self {
            node,
            item,
            version,
            signature,
            payload,
            waiting,
        }
    }
}

impl Entry {
    /// The entry as a read for [`kith_protocol::contacts::View::partial`].
    pub fn into_read(self) -> ItemRead {
        let payload = match (self.payload, self.waiting) {
            (Some(p), _) => Ok(p),
            (None, Some(w)) => Err(Unreadable::Waiting(w)),
            (None, None) => Err(Unreadable::Sealing(kith_protocol::seal::Error::Malformed(
                "unreadable (from the index)".into(),
            ))),
        };
        (self.node, self.item, self.version, self.signature, payload)
    }
}

fn version_of(key: &[u8]) -> Option<Version> {
    if key.len() != 44 {
        return None;
    }
    Some(Version {
        hlc: kith_protocol::clock::Hlc {
            wall_ms: u64::from_be_bytes(key[..8].try_into().ok()?),
            counter: u32::from_be_bytes(key[8..12].try_into().ok()?),
        },
        device: kith_protocol::record::DeviceId(key[12..].try_into().ok()?),
    })
}

impl Store {
    /// A value of the `meta` table.
    pub(super) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.shared
            .lock()
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.sql(e))
    }

    /// Writes a value of the `meta` table. An upsert keeps the row (and its entry in
    /// the key's index) in place: a replace would delete and insert it, writing the
    /// index's page at every edit.
    pub(super) fn set_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.shared
            .lock()
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = ?2",
            )
            .and_then(|mut s| s.execute(params![key, value]))
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    fn meta_u64(&self, key: &str) -> Result<u64> {
        Ok(self
            .meta(key)?
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes))
    }

    pub(super) fn set_meta_u64(&self, key: &str, value: u64) -> Result<()> {
        self.set_meta(key, &value.to_be_bytes())
    }

    /// Marks a write of records: the index no longer matches until written again.
    pub(super) fn bump_generation(&self) -> Result<()> {
        self.set_meta_u64("generation", self.meta_u64("generation")? + 1)
    }

    /// Whether the index reflects exactly the records stored.
    pub fn index_is_current(&self) -> Result<bool> {
        Ok(
            self.meta_u64("index_generation")? == self.meta_u64("generation")?
                && self.meta_u64("index_built")? == 1,
        )
    }

    /// Writes what the view now says of `entries`, removes the items of `gone`,
    /// records the number of merged contacts, and, when `complete` (no other entry
    /// waits to be written), marks the index current. With `rebuilt`, the index is
    /// first emptied (the entries are all there is).
    pub fn write_index(
        &mut self,
        keys: &Keys,
        entries: &[Entry],
        gone: &[(NodeKind, ItemId)],
        contacts: u64,
        rebuilt: bool,
        complete: bool,
    ) -> Result<()> {
        let path = self.dir.join("kith.db");
        let sql = |source| Error::Sql {
            path: path.clone(),
            source,
        };
        let mut erased_any = false;
        let tx = self.atomic().map_err(sql)?;
        {
            if rebuilt {
                tx.execute_batch("DELETE FROM items; DELETE FROM identities;")
                    .map_err(sql)?;
            }
            let mut put = tx
                .prepare_cached(
                    // In place: the row keeps its number and its key's index entry.
                    "INSERT INTO items (node, item, version, signature, kind, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (node, item) DO UPDATE SET version = excluded.version,
                     signature = excluded.signature, kind = excluded.kind, data = excluded.data",
                )
                .map_err(sql)?;
            let mut drop_item = tx
                .prepare_cached("DELETE FROM items WHERE node = ?1 AND item = ?2")
                .map_err(sql)?;
            let mut drop_ids = tx
                .prepare_cached("DELETE FROM identities WHERE item = ?1")
                .map_err(sql)?;
            let mut put_id = tx
                .prepare_cached("INSERT OR IGNORE INTO identities (hash, item) VALUES (?1, ?2)")
                .map_err(sql)?;
            let mut drop_id = tx
                .prepare_cached("DELETE FROM identities WHERE hash = ?1 AND item = ?2")
                .map_err(sql)?;
            let mut ids_of = tx
                .prepare_cached("SELECT hash FROM identities WHERE item = ?1")
                .map_err(sql)?;
            for (node, item) in gone {
                erased_any = true;
                drop_item
                    .execute(params![node_code(*node), &item.0[..]])
                    .map_err(sql)?;
                if *node == NodeKind::Contacts {
                    drop_ids.execute([&item.0[..]]).map_err(sql)?;
                }
            }
            for e in entries {
                let (kind, data) = row_of(keys, e);
                put.execute(params![
                    node_code(e.node),
                    &e.item.0[..],
                    version_key(&e.version),
                    &e.signature[..],
                    kind,
                    data
                ])
                .map_err(sql)?;
                if e.node == NodeKind::Contacts {
                    // Real identities and the contact id: what links items. Only what
                    // changed is written (a rename writes none of them).
                    let new: BTreeSet<Vec<u8>> = match &e.payload {
                        Some(Payload::Contact(c)) => kith_protocol::item::fields::links(c)
                            .map(|(kind, value)| keys.identity(kind, value).to_vec())
                            .collect(),
                        _ => BTreeSet::new(),
                    };
                    // A rebuilt index started empty: nothing to read back.
                    let old: BTreeSet<Vec<u8>> = if rebuilt {
                        BTreeSet::new()
                    } else {
                        ids_of
                            .query_map([&e.item.0[..]], |r| r.get(0))
                            .and_then(|rows| rows.collect())
                            .map_err(sql)?
                    };
                    for h in old.difference(&new) {
                        drop_id.execute(params![h, &e.item.0[..]]).map_err(sql)?;
                    }
                    for h in new.difference(&old) {
                        put_id.execute(params![h, &e.item.0[..]]).map_err(sql)?;
                    }
                }
            }
        }
        tx.commit().map_err(sql)?;
        self.erased |= erased_any;
        self.set_meta_u64("contacts", contacts)?;
        if !complete {
            return Ok(());
        }
        self.set_meta_u64("index_built", 1)?;
        self.set_meta_u64("index_generation", self.meta_u64("generation")?)
    }

    fn entries(&self, keys: &Keys, query: &str, args: impl rusqlite::Params) -> Result<Vec<Entry>> {
        let conn = self.shared.lock();
        let mut stmt = conn.prepare_cached(query).map_err(|e| self.sql(e))?;
        let mut rows = stmt.query(args).map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.sql(e))? {
            let get = |i| -> Result<Vec<u8>> { row.get(i).map_err(|e| self.sql(e)) };
            let node: i64 = row.get(0).map_err(|e| self.sql(e))?;
            let kind: i64 = row.get(4).map_err(|e| self.sql(e))?;
            let (item, version, signature, data) = (get(1)?, get(2)?, get(3)?, get(5)?);
            let parsed = (|| {
                entry_of(
                    keys,
                    node_of(node)?,
                    ItemId(item.try_into().ok()?),
                    version_of(&version)?,
                    signature.try_into().ok()?,
                    kind,
                    &data,
                )
            })();
            // A row that does not open is as if absent: the item is read from its
            // record instead.
            out.extend(parsed);
        }
        Ok(out)
    }

    /// Whether the index holds nothing of the item beyond its id: no row, or the
    /// row of a `<reserved/>` item that carries nothing (what padding adds and
    /// takes away), and no id a client chose for it (`item_names`). Such a row may
    /// be written or removed a moment after its record (`Device::index_now`); any
    /// other must go with the record.
    pub fn index_holds_nothing(&self, keys: &Keys, node: NodeKind, item: &ItemId) -> Result<bool> {
        let conn = self.shared.lock();
        let named: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM item_names WHERE node = ?1 AND item = ?2)",
            )
            .and_then(|mut s| {
                s.query_row(params![Space::from(node).code(), &item.0[..]], |r| r.get(0))
            })
            .map_err(|e| self.sql(e))?;
        if named {
            return Ok(false);
        }
        let row: Option<(i64, Vec<u8>)> = conn
            .prepare_cached("SELECT kind, data FROM items WHERE node = ?1 AND item = ?2")
            .and_then(|mut s| {
                s.query_row(params![node_code(node), &item.0[..]], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| self.sql(e))?;
        Ok(match row {
            None => true,
            Some((RESERVED, data)) => keys
                .open(&data)
                .and_then(|plain| Payload::from_bytes(&plain))
                .is_some_and(|p| matches!(p, Payload::Reserved(extra) if extra.is_empty())),
            Some(_) => false,
        })
    }

    /// Every entry of the index.
    pub fn index_entries(&self, keys: &Keys) -> Result<Vec<Entry>> {
        self.entries(
            keys,
            "SELECT node, item, version, signature, kind, data FROM items",
            [],
        )
    }

    /// The entries of the groups, the reserved and the unreadable items: what every
    /// command may need whatever contact it is about.
    pub fn index_shared(&self, keys: &Keys) -> Result<Vec<Entry>> {
        self.entries(
            keys,
            "SELECT node, item, version, signature, kind, data FROM items WHERE kind IN (1, 2, 3)",
            [],
        )
    }

    /// The entries of the contact items carrying the identity `kind`/`value`.
    pub fn index_by_identity(&self, keys: &Keys, kind: &str, value: &str) -> Result<Vec<Entry>> {
        let h = keys.identity(kind, value);
        self.entries(
            keys,
            "SELECT i.node, i.item, i.version, i.signature, i.kind, i.data
             FROM identities d JOIN items i ON i.node = 0 AND i.item = d.item
             WHERE d.hash = ?1",
            [&h[..]],
        )
    }

    /// Real items (contacts or groups) per node, and the merged contacts, as the
    /// index last counted them.
    pub fn index_counts(&self) -> Result<([usize; 2], usize)> {
        let count = |node: i64, kind: i64| -> Result<usize> {
            self.shared
                .lock()
                .query_row(
                    "SELECT COUNT(*) FROM items WHERE kind = ?2 AND node = ?1",
                    [node, kind],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n as usize)
                .map_err(|e| self.sql(e))
        };
        Ok((
            [count(0, CONTACT)?, count(1, GROUP)?],
            self.meta_u64("contacts")? as usize,
        ))
    }

    /// The highest stamp of any record written here (a new record must be stamped
    /// later).
    pub fn newest_stamp(&self) -> Result<Option<Version>> {
        Ok(self.meta("newest")?.and_then(|k| version_of(&k)))
    }

    /// Raises the highest stamp written to `v`, if higher.
    pub(super) fn raise_newest(&self, v: &Version) -> Result<()> {
        if self.newest_stamp()?.is_some_and(|n| n >= *v) {
            return Ok(());
        }
        self.set_meta("newest", &version_key(v))
    }
}
