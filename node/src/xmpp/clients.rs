//! Approving XMPP clients (the `kith client` requests) and the secrets message they
//! receive: every secret of both nodes as XEP-0473 `<shared-secret/>` (revoked ones
//! marked and followed by `<revoke/>`), in one XEP-0373 `<signcrypt/>` signed by
//! this device's OpenPGP key and encrypted to every approved certificate.

use base64::Engine as _;
use kith_protocol::ox::{self, DeviceKey, SecretMessage};
use kith_protocol::sync::Input;
use kith_protocol::xml::Element;
use serde_json::{Value, json};

use crate::control::Error;
use crate::device::{Device, wall_now};
use crate::service::{input_err, iso, refused};
use crate::store::clients::{Client, MAX_CLIENTS};

/// Largest certificate accepted, bytes.
pub const MAX_CERT_BYTES: usize = 64 * 1024;

/// A fingerprint as typed: hex digits, spaces and case ignored.
fn normalise(fingerprint: &str) -> String {
    fingerprint
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase()
}

impl Device {
    /// Approves the certificate `cert` (base64 of its bytes): it must be an OpenPGP
    /// certificate with a valid encryption key.
    pub(crate) fn add_client(&mut self, cert: &str) -> Result<Value, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cert.trim())
            .map_err(|_| input_err("the certificate is not base64"))?;
        if bytes.len() > MAX_CERT_BYTES {
            return Err(input_err(format!(
                "the certificate is {} bytes, more than the limit of {MAX_CERT_BYTES}",
                bytes.len()
            )));
        }
        let parsed = ox::cert_from_bytes(&bytes)
            .map_err(|e| input_err(format!("not an OpenPGP certificate: {e}")))?;
        if parsed.is_tsk() {
            return Err(input_err(
                "this file holds a secret key: give the client's public certificate",
            ));
        }
        // The certificate must be one a secrets message can be encrypted to now.
        let probe = ox::Content {
            to: vec![self.jid.clone()],
            time: wall_now(),
            payload: Vec::new(),
        };
        let key = self.ox_key()?;
        ox::signcrypt(
            &probe,
            &key,
            std::slice::from_ref(&parsed),
            wall_now(),
            &mut rand::rng(),
        )
        .map_err(|e| input_err(format!("cannot encrypt to this certificate: {e}")))?;
        let fingerprint = parsed.fingerprint().to_hex();
        let clients = self.store.clients()?;
        if clients.len() >= MAX_CLIENTS && !clients.iter().any(|c| c.fingerprint == fingerprint) {
            return Err(refused(format!(
                "{MAX_CLIENTS} clients are approved already: remove one first"
            )));
        }
        self.store.add_client(&Client {
            fingerprint: fingerprint.clone(),
            cert: ox::cert_to_bytes(&parsed),
            added_ms: wall_now().0,
        })?;
        self.clients_changed = true;
        Ok(json!({ "fingerprint": fingerprint, "approved": true }))
    }

    /// The approved clients as JSON.
    pub(crate) fn clients_json(&mut self) -> Result<Value, Error> {
        let clients = self.store.clients()?;
        Ok(Value::Array(
            clients
                .iter()
                .map(|c| {
                    let uids: Vec<String> = ox::cert_from_bytes(&c.cert)
                        .map(|cert| cert.userids().map(|u| u.userid().to_string()).collect())
                        .unwrap_or_default();
                    json!({ "fingerprint": c.fingerprint, "user_ids": uids, "added": iso(c.added_ms) })
                })
                .collect(),
        ))
    }

    /// Removes a client, then rotates the secrets: it receives nothing new.
    pub(crate) fn remove_client(&mut self, fingerprint: &str) -> Result<Value, Error> {
        let fingerprint = normalise(fingerprint);
        if !self.store.remove_client(&fingerprint)? {
            return Err(refused(format!(
                "no approved client has the fingerprint {fingerprint}"
            )));
        }
        self.clients_changed = true;
        self.input(Input::RotateSecrets)?;
        Ok(json!({ "fingerprint": fingerprint, "removed": true, "rotated": true }))
    }

    /// This device's OpenPGP key (read from `openpgp.key`).
    pub(crate) fn ox_key(&self) -> Result<DeviceKey, Error> {
        let bytes = crate::store::read_file(self.dir(), "openpgp.key")?;
        DeviceKey::from_bytes(&bytes).map_err(|e| {
            Error::new(
                crate::control::ErrorKind::Store,
                format!("openpgp.key does not hold a key: {e}"),
            )
        })
    }

    /// The `<openpgp/>` element carrying every secret to every approved client, or
    /// `None` when no client is approved.
    pub(crate) fn secrets_element(&mut self, key: &DeviceKey) -> Result<Option<Element>, String> {
        let clients = self.store.clients().map_err(|e| e.to_string())?;
        let certs: Vec<_> = clients
            .iter()
            .filter_map(|c| ox::cert_from_bytes(&c.cert).ok())
            .collect();
        if certs.is_empty() {
            return Ok(None);
        }
        let jid = self.jid.clone();
        let mut payload = Vec::new();
        let keyring = self.engine.book().keyring();
        let current: Vec<&str> = kith_protocol::item::NodeKind::ALL
            .into_iter()
            .filter_map(|n| keyring.current(n).map(|s| s.id.as_str()))
            .collect();
        for secret in keyring.iter() {
            // Every secret but the current ones is revoked for the clients: they
            // read old items with it and seal nothing new.
            let mut secret = secret.clone();
            secret.revoked |= !current.contains(&secret.id.as_str());
            payload.push(
                SecretMessage::Share {
                    jid: jid.clone(),
                    secret: secret.clone(),
                }
                .to_element(),
            );
            if secret.revoked {
                payload.push(
                    SecretMessage::Revoke {
                        jid: jid.clone(),
                        node: secret.node,
                        id: secret.id.clone(),
                        reasons: Vec::new(),
                    }
                    .to_element(),
                );
            }
        }
        let now = wall_now();
        let content = ox::Content {
            to: vec![jid],
            time: now,
            payload,
        };
        let message = ox::signcrypt(&content, key, &certs, now, &mut rand::rng())
            .map_err(|e| e.to_string())?;
        Ok(Some(ox::wrap(&message)))
    }
}
