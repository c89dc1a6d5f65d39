//! XMPP clients: OpenPGP certificates, by fingerprint, that the user approved to
//! receive the node secrets (XEP-0473), and those clients offered on the stream
//! (XEP-0373 public-key publish) that wait for approval. Local to this device: a
//! client talks to the node on its own machine.

use rusqlite::params;

use super::{Result, Store};

/// Most clients one device approves.
pub const MAX_CLIENTS: usize = 16;
/// Most offered certificates kept waiting for approval (the oldest go first).
pub const MAX_PENDING: usize = 16;

/// A client's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The certificate's fingerprint, upper-case hex.
    pub fingerprint: String,
    /// The certificate, binary OpenPGP.
    pub cert: Vec<u8>,
    /// When it was approved or offered, ms since the epoch.
    pub added_ms: u64,
    /// Whether the user approved it (else it waits for `kith client approve`).
    pub approved: bool,
}

impl Store {
    /// Every client, approved or waiting, by fingerprint.
    pub fn clients(&self) -> Result<Vec<Client>> {
        let read = || -> rusqlite::Result<Vec<Client>> {
            let conn = self.shared.lock();
            let mut stmt = conn.prepare(
                "SELECT fingerprint, cert, added_ms, approved FROM clients ORDER BY fingerprint",
            )?;
            stmt.query_map([], |r| {
                Ok(Client {
                    fingerprint: r.get(0)?,
                    cert: r.get(1)?,
                    added_ms: r.get::<_, i64>(2)? as u64,
                    approved: r.get(3)?,
                })
            })?
            .collect()
        };
        read().map_err(|e| self.sql(e))
    }

    /// Stores a client (again: its certificate and state are replaced).
    pub fn put_client(&mut self, client: &Client) -> Result<()> {
        self.shared
            .lock()
            .execute(
                "INSERT OR REPLACE INTO clients (fingerprint, cert, added_ms, approved)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    client.fingerprint,
                    client.cert,
                    client.added_ms as i64,
                    client.approved
                ],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Keeps a certificate offered on the stream, waiting for approval: at most
    /// [`MAX_PENDING`] wait, the oldest giving way. An approved client is left as is.
    pub fn offer_client(&mut self, client: &Client) -> Result<()> {
        let clients = self.clients()?;
        if clients
            .iter()
            .any(|c| c.fingerprint == client.fingerprint && c.approved)
        {
            return Ok(());
        }
        let mut pending: Vec<&Client> = clients
            .iter()
            .filter(|c| !c.approved && c.fingerprint != client.fingerprint)
            .collect();
        pending.sort_by_key(|c| c.added_ms);
        let surplus = (pending.len() + 1).saturating_sub(MAX_PENDING);
        for old in &pending[..surplus] {
            self.remove_client(&old.fingerprint)?;
        }
        self.put_client(&Client {
            approved: false,
            ..client.clone()
        })
    }

    /// Removes a client; returns it as it was, if it was there.
    pub fn remove_client(&mut self, fingerprint: &str) -> Result<Option<Client>> {
        let found = self
            .clients()?
            .into_iter()
            .find(|c| c.fingerprint == fingerprint);
        if found.is_some() {
            self.shared
                .lock()
                .execute("DELETE FROM clients WHERE fingerprint = ?1", [fingerprint])
                .map_err(|e| self.sql(e))?;
        }
        Ok(found)
    }
}
