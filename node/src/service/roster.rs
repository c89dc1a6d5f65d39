//! The roster's requests: invitations (`kith pair invite`), revocations (`kith
//! device revoke`), and why a revoked device takes no more changes.

use kith_protocol::record::DeviceId;
use kith_protocol::sync;
use libp2p::Multiaddr;
use serde_json::{Value, json};

use super::{MAX_INVITE_TTL_SECS, NetInfo, input_err, iso, refused};
use crate::control::{Error, ErrorKind};
use crate::device::{Device, wall_now};
use crate::net;
use crate::pair;
use crate::store::Invite;

impl Device {
    /// Why this device takes no more changes, when it was revoked.
    pub(super) fn revoked_here(&self) -> Option<String> {
        let v = self.engine.revoked_by()?;
        let by = match self.engine.roster().get(&v.device) {
            Some(m) if !m.entry.name.is_empty() => format!("{} ({})", m.entry.name, v.device),
            _ => format!("device {}", v.device),
        };
        Some(format!(
            "this device was revoked by {by} at {}: it no longer syncs with the account, \
             so it takes no changes (its contacts stay readable here)",
            iso(v.hlc.wall_ms)
        ))
    }

    pub(super) fn find_device(&mut self, needle: &str) -> Result<DeviceId, Error> {
        let matches: Vec<DeviceId> = self
            .engine
            .roster()
            .members()
            .filter(|m| {
                m.entry.name == needle
                    || (needle.len() >= 4 && m.entry.device.to_string().starts_with(needle))
            })
            .map(|m| m.entry.device)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(refused(format!(
                "no device is named {needle:?} or has an id starting so"
            ))),
            _ => Err(input_err(format!(
                "{needle:?} names several devices; give more of the id"
            ))),
        }
    }

    pub(super) fn revoke(&mut self, needle: &str) -> Result<Value, Error> {
        let device = self.find_device(needle)?;
        if device == self.id() {
            return Err(refused(
                "a device cannot revoke itself; revoke it from another device",
            ));
        }
        if self
            .engine
            .roster()
            .get(&device)
            .is_some_and(|m| m.revoked_at.is_some())
        {
            return Err(refused(format!("device {device} is revoked already")));
        }
        self.execute(sync::Command::RevokeDevice(device))?
            .map_err(refused)?;
        let revoked = self
            .engine
            .roster()
            .get(&device)
            .is_some_and(|m| m.revoked_at.is_some());
        if !revoked {
            return Err(refused(
                "the revocation was refused (is this device in the roster?)",
            ));
        }
        let name = self
            .engine
            .roster()
            .get(&device)
            .map(|m| m.entry.name.clone());
        Ok(json!({ "revoked": device.to_string(), "name": name }))
    }

    pub(super) fn invite(&mut self, net: &NetInfo, ttl_secs: u64) -> Result<Value, Error> {
        if !net.online {
            return Err(Error::new(
                ErrorKind::NotRunning,
                "pairing needs this device's node running: start `kith run` first",
            ));
        }
        if ttl_secs == 0 || ttl_secs > MAX_INVITE_TTL_SECS {
            return Err(input_err(format!(
                "the invite lifetime must be between 1 s and {} days",
                MAX_INVITE_TTL_SECS / 86_400
            )));
        }
        let addrs: Vec<Multiaddr> = net
            .pair_listen
            .iter()
            .filter(|a| !a.to_string().starts_with("/ip4/0.0.0.0"))
            .take(pair::MAX_ADDRS)
            .cloned()
            .collect();
        if addrs.is_empty() {
            return Err(refused("the node listens on no address a peer could dial"));
        }
        let secret: [u8; 16] = rand::RngExt::random(&mut rand::rng());
        let expires_ms = wall_now().0 + ttl_secs * 1000;
        self.store.add_invite(&Invite {
            hash: pair::secret_hash(&secret),
            expires_ms,
            used: false,
        })?;
        let peer = net::peer_of(&self.id())
            .ok_or_else(|| refused("this device's key is not a libp2p key"))?;
        let code = pair::Code {
            secret,
            expires_ms,
            peer,
            addrs,
        };
        Ok(json!({ "code": code.encode(), "expires": iso(expires_ms) }))
    }
}
