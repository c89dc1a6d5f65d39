//! Secrets addressed to one device, replicated as records in [`Space::Keys`] so that
//! a device that was away receives them when it comes back, from any peer, with no
//! store-and-forward server. Every device (relays too) stores and forwards them; only
//! the addressee can unwrap them.
//!
//! The record body is CBOR `[to, wrapped]`; `wrapped` is what a [`KeyWrap`] made. The
//! real one, [`OxWrap`], is an XEP-0373 `<signcrypt/>` carrying XEP-0473
//! `<shared-secret/>` elements, signed by the author device and encrypted to the
//! addressee's certificate from the roster.

use std::fmt;

use ciborium::value::Value;
use rand_chacha::ChaCha20Rng;
use sha2::{Digest, Sha256};

use crate::clock::WallTime;
use crate::jid::BareJid;
use crate::ox::{self, DeviceKey, SecretMessage};
use crate::record::{DeviceId, ItemId};
use crate::roster::{Member, Roster};
use crate::seal::Secret;

/// Most secrets wrapped in one key record: a signcrypt of 16 secrets is about 6 KB,
/// well within a record however many rotations the keyring has seen.
pub const SECRETS_PER_DELIVERY: usize = 16;
/// Largest delivery accepted, in bytes.
pub const MAX_DELIVERY_BYTES: usize = 32 * 1024;

/// A wrapped batch of secrets for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The addressee.
    pub to: DeviceId,
    /// The secrets, wrapped for it.
    pub wrapped: Vec<u8>,
}

/// Why delivery bytes are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid key delivery")]
pub struct BadDelivery;

impl Delivery {
    /// The item of a delivery to `to` whose first secret is `first_id`.
    pub fn item(to: &DeviceId, first_id: &str) -> ItemId {
        let d = Sha256::new()
            .chain_update(b"kith keys\0")
            .chain_update(to.0)
            .chain_update(first_id.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        ItemId(id)
    }

    /// CBOR `[to, wrapped]`.
    pub fn encode(&self) -> Vec<u8> {
        let v = Value::Array(vec![
            Value::Bytes(self.to.0.to_vec()),
            Value::Bytes(self.wrapped.clone()),
        ]);
        crate::cbor::encode(&v)
    }

    /// Reads a delivery, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadDelivery> {
        let v = crate::cbor::decode(bytes, MAX_DELIVERY_BYTES, 4).map_err(|_| BadDelivery)?;
        let Value::Array(f) = v else {
            return Err(BadDelivery);
        };
        let [to, wrapped]: [Value; 2] = f.try_into().map_err(|_| BadDelivery)?;
        match (to, wrapped) {
            (Value::Bytes(to), Value::Bytes(wrapped)) => Ok(Self {
                to: DeviceId(to.try_into().map_err(|_| BadDelivery)?),
                wrapped,
            }),
            _ => Err(BadDelivery),
        }
    }
}

/// How secrets are wrapped for one device and unwrapped by it.
pub trait KeyWrap: fmt::Debug + Send {
    /// Wraps `secrets` for the roster member `to`.
    fn wrap(
        &mut self,
        secrets: &[Secret],
        to: &Member,
        now: WallTime,
        rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, String>;
    /// Unwraps what `author` wrapped for this device, checking it came from `author`.
    fn unwrap(
        &mut self,
        wrapped: &[u8],
        author: &Member,
        roster: &Roster,
        now: WallTime,
    ) -> Result<Vec<Secret>, String>;
}

/// XEP-0373 signcrypt of XEP-0473 `<shared-secret/>` elements.
#[derive(Debug, Clone)]
pub struct OxWrap {
    /// This device's OpenPGP key.
    pub key: DeviceKey,
    /// The account the secrets belong to.
    pub account: BareJid,
}

impl KeyWrap for OxWrap {
    fn wrap(
        &mut self,
        secrets: &[Secret],
        to: &Member,
        now: WallTime,
        rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, String> {
        let cert = ox::cert_from_bytes(&to.entry.cert).map_err(|e| e.to_string())?;
        let content = ox::Content {
            to: vec![self.account.clone()],
            time: now,
            payload: secrets
                .iter()
                .map(|s| {
                    SecretMessage::Share {
                        jid: self.account.clone(),
                        secret: s.clone(),
                    }
                    .to_element()
                })
                .collect(),
        };
        ox::signcrypt(&content, &self.key, &[cert], now, rng).map_err(|e| e.to_string())
    }

    fn unwrap(
        &mut self,
        wrapped: &[u8],
        author: &Member,
        _roster: &Roster,
        now: WallTime,
    ) -> Result<Vec<Secret>, String> {
        let cert = ox::cert_from_bytes(&author.entry.cert).map_err(|e| e.to_string())?;
        let opened = ox::open(
            wrapped,
            &self.key,
            &[cert],
            &self.account,
            now,
            ox::Window::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(opened
            .content
            .payload
            .iter()
            .filter_map(|el| match SecretMessage::from_element(el) {
                Some(Ok(SecretMessage::Share { jid, secret })) if jid == self.account => {
                    Some(secret)
                }
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_round_trip_and_reject_garbage() {
        let d = Delivery {
            to: DeviceId([7; 32]),
            wrapped: vec![1, 2, 3],
        };
        assert_eq!(Delivery::decode(&d.encode()), Ok(d));
        assert_eq!(Delivery::decode(&[0x82, 0x00, 0x00]), Err(BadDelivery));
        assert_eq!(
            Delivery::decode(&vec![0; MAX_DELIVERY_BYTES + 1]),
            Err(BadDelivery)
        );
        assert_ne!(
            Delivery::item(&DeviceId([1; 32]), "a"),
            Delivery::item(&DeviceId([2; 32]), "a")
        );
    }
}
