//! Approving XMPP clients (the `kith client` requests, and certificates clients
//! publish on the stream, kept until approved) and the secrets message they
//! receive: as XEP-0473 `<shared-secret/>`, the current secret of each node and the
//! older ones that still seal a live item (marked revoked and followed by
//! `<revoke/>`), plus `<revoke/>` for the newest retired ones, in one XEP-0373
//! `<signcrypt/>` signed by this device's OpenPGP key and encrypted to every usable
//! approved certificate.

use std::collections::BTreeSet;

use base64::Engine as _;
use kith_protocol::ox::{self, DeviceKey, SecretMessage};
use kith_protocol::xml::Element;

use crate::api::Error;
use crate::api::answer::{
    Client as ApiClient, ClientApproved, ClientList, ClientRemoved, ClientState,
};
use crate::device::{Device, wall_now};
use crate::service::{input_err, iso, refused};
use crate::store::clients::{Client, MAX_CLIENTS};

/// Why the secrets message could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The clients could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Signing or encrypting failed.
    #[error(transparent)]
    OpenPgp(#[from] ox::Error),
}

/// Retired secrets (no longer sealing any live item) whose `<revoke/>` the secrets
/// message still carries, per node.
pub const RETIRED_REVOKES: usize = 8;

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

/// Why a certificate is not accepted.
fn bad_cert(e: impl std::fmt::Display) -> Error {
    input_err(e)
}

impl Device {
    /// Reads a client's certificate: an OpenPGP certificate (no secret key) that a
    /// secrets message can be encrypted to now. Returns it and its fingerprint.
    fn check_cert(&self, bytes: &[u8]) -> Result<(Vec<u8>, String), Error> {
        if bytes.len() > MAX_CERT_BYTES {
            return Err(bad_cert(format!(
                "the certificate is {} bytes, more than the limit of {MAX_CERT_BYTES}",
                bytes.len()
            )));
        }
        let parsed = ox::cert_from_bytes(bytes)
            .map_err(|e| bad_cert(format!("not an OpenPGP certificate: {e}")))?;
        if parsed.is_tsk() {
            return Err(bad_cert(
                "this file holds a secret key: give the client's public certificate",
            ));
        }
        if !ox::can_encrypt_to(&parsed, wall_now()) {
            return Err(bad_cert(
                "cannot encrypt to this certificate: it has no valid encryption key",
            ));
        }
        Ok((ox::cert_to_bytes(&parsed), parsed.fingerprint().to_hex()))
    }

    fn approved_count(&self, except: &str) -> Result<usize, Error> {
        Ok(self
            .store
            .clients()?
            .iter()
            .filter(|c| c.approved && c.fingerprint != except)
            .count())
    }

    /// Approves the certificate `cert` (base64 of its bytes).
    pub(crate) fn add_client(&mut self, cert: &str) -> Result<ClientApproved, Error> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(cert.trim())
            .map_err(|_| input_err("the certificate is not base64"))?;
        let (cert, fingerprint) = self.check_cert(&bytes)?;
        if self.approved_count(&fingerprint)? >= MAX_CLIENTS {
            return Err(refused(format!(
                "{MAX_CLIENTS} clients are approved already: remove one first"
            )));
        }
        self.store.put_client(&Client {
            fingerprint: fingerprint.clone(),
            cert,
            added_ms: wall_now().0,
            approved: true,
        })?;
        self.clients_changed = true;
        Ok(ClientApproved {
            fingerprint,
            approved: true,
        })
    }

    /// Approves a client that offered its certificate on the stream.
    pub(crate) fn approve_client(&mut self, fingerprint: &str) -> Result<ClientApproved, Error> {
        let fingerprint = normalise(fingerprint);
        let mut client = self
            .store
            .clients()?
            .into_iter()
            .find(|c| c.fingerprint == fingerprint)
            .ok_or_else(|| {
                refused(format!(
                    "no client offered the fingerprint {fingerprint} (kith client list)"
                ))
            })?;
        if !client.approved {
            if self.approved_count(&fingerprint)? >= MAX_CLIENTS {
                return Err(refused(format!(
                    "{MAX_CLIENTS} clients are approved already: remove one first"
                )));
            }
            client.approved = true;
            client.added_ms = wall_now().0;
            self.store.put_client(&client)?;
            self.clients_changed = true;
        }
        Ok(ClientApproved {
            fingerprint,
            approved: true,
        })
    }

    /// Keeps a certificate a client published on the stream (XEP-0373 §4.1) as
    /// waiting for approval; `claimed` is the fingerprint its node names.
    pub(crate) fn offer_client(&mut self, bytes: &[u8], claimed: &str) -> Result<(), Error> {
        let (cert, fingerprint) = self.check_cert(bytes)?;
        if fingerprint != normalise(claimed) {
            return Err(bad_cert(format!(
                "the certificate is {fingerprint}, not {claimed}"
            )));
        }
        self.store.offer_client(&Client {
            fingerprint,
            cert,
            added_ms: wall_now().0,
            approved: false,
        })?;
        Ok(())
    }

    /// The clients, approved or waiting.
    pub(crate) fn clients(&mut self) -> Result<ClientList, Error> {
        let clients = self.store.clients()?;
        Ok(ClientList(
            clients
                .iter()
                .map(|c| {
                    let cert = ox::cert_from_bytes(&c.cert).ok();
                    let uids: Vec<String> = cert
                        .as_ref()
                        .map(|cert| cert.userids().map(|u| u.userid().to_string()).collect())
                        .unwrap_or_default();
                    let usable = cert.is_some_and(|c| ox::can_encrypt_to(&c, wall_now()));
                    let state = match (c.approved, usable) {
                        (_, false) => ClientState::Unusable,
                        (true, true) => ClientState::Approved,
                        (false, true) => ClientState::Waiting,
                    };
                    ApiClient {
                        fingerprint: c.fingerprint.clone(),
                        state,
                        user_ids: uids,
                        added: iso(c.added_ms),
                    }
                })
                .collect(),
        ))
    }

    /// Removes a client; an approved one also rotates the secrets, so it receives
    /// nothing new.
    pub(crate) fn remove_client(&mut self, fingerprint: &str) -> Result<ClientRemoved, Error> {
        let fingerprint = normalise(fingerprint);
        let removed = self
            .store
            .remove_client(&fingerprint)?
            .ok_or_else(|| refused(format!("no client has the fingerprint {fingerprint}")))?;
        if removed.approved {
            self.clients_changed = true;
            self.execute(kith_protocol::sync::Command::RotateSecrets)?
                .map_err(refused)?;
        }
        Ok(ClientRemoved {
            fingerprint,
            removed: true,
            rotated: removed.approved,
        })
    }

    /// This device's OpenPGP key (read from `openpgp.key`).
    pub(crate) fn ox_key(&self) -> Result<DeviceKey, Error> {
        let bytes = self.key_files.read_again(self.dir(), "openpgp.key")?;
        DeviceKey::from_bytes(&bytes).map_err(|e| {
            Error::new(
                crate::api::ErrorKind::Store,
                format!("openpgp.key does not hold a key: {e}"),
            )
        })
    }

    /// The `<openpgp/>` element carrying the secrets to every approved client, with
    /// the ids of the secrets it shares, or `None` when no client is approved.
    pub(crate) fn secrets_element(
        &mut self,
        key: &DeviceKey,
    ) -> Result<Option<(Element, BTreeSet<String>)>, SecretsError> {
        let clients = self.store.clients()?;
        let now = wall_now();
        // A certificate that expired or was revoked since its approval is left out
        // (and shown as such by `kith client list`); the others still get the secrets.
        let certs: Vec<_> = clients
            .iter()
            .filter(|c| c.approved)
            .filter_map(|c| ox::cert_from_bytes(&c.cert).ok())
            .filter(|c| ox::can_encrypt_to(c, now))
            .collect();
        if certs.is_empty() {
            return Ok(None);
        }
        let jid = self.jid.clone();
        let mut payload = Vec::new();
        // The secrets a client needs: the current ones, and older ones that still
        // seal a live item (re-sealing after a rotation retires them): the message
        // stays small however many rotations there were.
        let replica = self.engine.replica();
        let used: BTreeSet<String> = kith_protocol::item::NodeKind::ALL
            .into_iter()
            .flat_map(|n| replica.space(n))
            .filter_map(|r| r.body.sealed_key().map(str::to_owned))
            .collect();
        let keyring = self.engine.keyring();
        let current: Vec<&str> = kith_protocol::item::NodeKind::ALL
            .into_iter()
            .filter_map(|n| keyring.current(n).map(|s| s.id.as_str()))
            .collect();
        // Retired secrets no live item uses any more are only revoked: the newest
        // RETIRED_REVOKES of each node, so that a client holding one learns it.
        let mut retired: Vec<&kith_protocol::seal::Secret> = keyring
            .iter()
            .filter(|s| !current.contains(&s.id.as_str()) && !used.contains(&s.id))
            .collect();
        retired.sort_by_key(|s| std::cmp::Reverse(s.created));
        let mut revoked_only: Vec<&kith_protocol::seal::Secret> = Vec::new();
        for node in kith_protocol::item::NodeKind::ALL {
            revoked_only.extend(
                retired
                    .iter()
                    .filter(|s| s.node == node)
                    .take(RETIRED_REVOKES)
                    .copied(),
            );
        }
        let revoke = |secret: &kith_protocol::seal::Secret| {
            SecretMessage::Revoke {
                jid: jid.clone(),
                node: secret.node,
                id: secret.id.clone(),
                reasons: Vec::new(),
            }
            .to_element()
        };
        let mut shared = BTreeSet::new();
        for secret in keyring
            .iter()
            .filter(|s| current.contains(&s.id.as_str()) || used.contains(&s.id))
        {
            shared.insert(secret.id.clone());
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
                payload.push(revoke(&secret));
            }
        }
        for secret in revoked_only {
            payload.push(revoke(secret));
        }
        let now = wall_now();
        let content = ox::Content {
            to: vec![jid],
            time: now,
            payload,
        };
        let message = ox::signcrypt(&content, key, &certs, now, &mut rand::rng())?;
        Ok(Some((ox::wrap(&message), shared)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kith_protocol::jid::BareJid;
    use kith_protocol::ox::SecretMessage;

    /// The secrets message opens for an approved client, holds the current secret
    /// of each node, and stays small however many rotations there were.
    #[test]
    fn the_secrets_message_holds_what_a_client_needs_and_stays_small() {
        let dir = tempfile::tempdir().unwrap();
        let mut device = Device::init(&dir.path().join("d"), "romeo@montague.lit", "a").unwrap();
        let account = BareJid::parse("romeo@montague.lit").unwrap();
        let client = DeviceKey::generate(&account, wall_now()).unwrap();
        let cert =
            base64::engine::general_purpose::STANDARD.encode(ox::cert_to_bytes(&client.cert()));
        device.add_client(&cert).unwrap();
        let key = device.ox_key().unwrap();
        let read = |device: &mut Device| {
            let (el, _) = device
                .secrets_element(&key)
                .unwrap()
                .expect("a client is approved");
            let bytes = ox::unwrap(&el).unwrap();
            let opened = ox::open(
                &bytes,
                &client,
                &[key.cert()],
                &account,
                wall_now(),
                ox::Window {
                    max_ahead_ms: 60_000,
                    max_age_ms: 60_000,
                },
            )
            .unwrap();
            (bytes.len(), opened.content.payload)
        };
        let (first, _) = read(&mut device);
        for _ in 0..40 {
            device
                .execute(kith_protocol::sync::Command::RotateSecrets)
                .unwrap()
                .unwrap();
        }
        let (after, payload) = read(&mut device);
        let current: Vec<_> = payload
            .iter()
            .filter_map(|e| match SecretMessage::from_element(e) {
                Some(Ok(SecretMessage::Share { secret, .. })) if !secret.revoked => Some(secret),
                _ => None,
            })
            .collect();
        assert_eq!(current.len(), 2, "one current secret a node");
        let keyring = device.engine.keyring().clone();
        assert!(keyring.iter().count() > 80, "the rotations happened");
        for s in &current {
            assert_eq!(keyring.current(s.node).map(|c| &c.id), Some(&s.id));
        }
        assert!(
            after < first + 4 * 1024,
            "{first} bytes before 40 rotations, {after} after"
        );
    }
}
