//! The XMPP clients the user approved: OpenPGP certificates, by fingerprint, that
//! receive the node secrets (XEP-0473). Local to this device: a client talks to
//! the node on its own machine.

use rusqlite::params;

use super::{Result, Store};

/// Most clients one device approves.
pub const MAX_CLIENTS: usize = 16;

/// An approved client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The certificate's fingerprint, upper-case hex.
    pub fingerprint: String,
    /// The certificate, binary OpenPGP.
    pub cert: Vec<u8>,
    /// When it was approved, ms since the epoch.
    pub added_ms: u64,
}

impl Store {
    /// Every approved client, by fingerprint.
    pub fn clients(&self) -> Result<Vec<Client>> {
        let read = || -> rusqlite::Result<Vec<Client>> {
            let mut stmt = self
                .conn
                .prepare("SELECT fingerprint, cert, added_ms FROM clients ORDER BY fingerprint")?;
            stmt.query_map([], |r| {
                Ok(Client {
                    fingerprint: r.get(0)?,
                    cert: r.get(1)?,
                    added_ms: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Approves a client (again: its certificate is replaced).
    pub fn add_client(&mut self, client: &Client) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO clients (fingerprint, cert, added_ms) VALUES (?1, ?2, ?3)",
                params![client.fingerprint, client.cert, client.added_ms as i64],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Removes a client; returns whether it was approved.
    pub fn remove_client(&mut self, fingerprint: &str) -> Result<bool> {
        self.conn
            .execute("DELETE FROM clients WHERE fingerprint = ?1", [fingerprint])
            .map(|n| n > 0)
            .map_err(|e| self.sql(e))
    }
}
