//! The devices this one has met (their addresses, sealed, the last reconciliation
//! with each, and where each stood then, sealed).

use rusqlite::params;

use super::{KnownPeer, Result, Store, index};

/// The `meta` key of a device's sync state, before its id in hex.
const SYNC_STATE: &str = "sync:";
/// What a sealed sync state starts with, so that no other sealed value reads as one.
const SYNC_TAG: &[u8] = b"kith sync state\0";

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

impl Store {
    /// Remembers addresses a device was reached at (multiaddrs, space-separated),
    /// sealed like the item index (`sealed:` and base64).
    pub fn set_peer_addrs(
        &mut self,
        keys: &index::Keys,
        device: &[u8; 32],
        addrs: &str,
    ) -> Result<()> {
        self.shared
            .lock()
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
            let conn = self.shared.lock();
            let mut stmt = conn
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
        self.shared
            .lock()
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
        let conn = self.shared.lock();
        let mut stmt = conn
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

    /// Keeps where `device` stood when last heard from (`sync::SyncState::to_bytes`),
    /// sealed like the addresses, for the next run's `kith status`.
    pub fn set_sync_state(
        &mut self,
        keys: &index::Keys,
        device: &[u8; 32],
        state: &[u8],
    ) -> Result<()> {
        let key = format!("{SYNC_STATE}{}", kith_protocol::hex::encode(device));
        let mut plain = SYNC_TAG.to_vec();
        plain.extend_from_slice(device);
        plain.extend_from_slice(state);
        self.set_meta(&key, &keys.seal(&plain))
    }

    /// Every kept sync state, by device (those that do not open are left out).
    pub fn sync_states(&self, keys: &index::Keys) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        let conn = self.shared.lock();
        let mut stmt = conn
            .prepare("SELECT value FROM meta WHERE key LIKE 'sync:%' ORDER BY key")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            // Sealed: the tag, the device id, then the state.
            let Some(plain) = keys.open(&row.map_err(|e| self.sql(e))?) else {
                continue;
            };
            if let Some((device, state)) = plain
                .strip_prefix(SYNC_TAG)
                .and_then(<[u8]>::split_first_chunk::<32>)
            {
                out.push((*device, state.to_vec()));
            }
        }
        Ok(out)
    }
}
