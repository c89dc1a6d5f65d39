//! The roster's requests: revocations (`kith device revoke`), renames (`kith
//! device rename`), and why a revoked device takes no more changes.

use kith_protocol::record::DeviceId;
use kith_protocol::sync;

use super::{input_err, iso, refused};
use crate::api::Error;
use crate::api::answer::{Renamed, Revoked};
use crate::device::Device;

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
                    || (needle.len() >= 4
                        && m.entry
                            .device
                            .to_string()
                            .starts_with(&needle.to_lowercase()))
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

    pub(super) fn revoke(&mut self, needle: &str) -> Result<Revoked, Error> {
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
        Ok(Revoked {
            revoked: device.to_string(),
            name,
        })
    }

    pub(super) fn rename_device(&mut self, needle: &str, name: &str) -> Result<Renamed, Error> {
        crate::device::check_name(name).map_err(input_err)?;
        let device = self.find_device(needle)?;
        if self.unique_name(name, &device) != name {
            return Err(refused(format!(
                "another device of this account is named {}",
                kith_protocol::text::quoted(name)
            )));
        }
        let old = self
            .engine
            .roster()
            .get(&device)
            .map(|m| m.entry.name.clone())
            .unwrap_or_default();
        if old == name {
            return Ok(Renamed {
                renamed: device.to_string(),
                old,
                name: name.to_owned(),
                changed: false,
            });
        }
        self.execute(sync::Command::RenameDevice(device, name.to_owned()))?
            .map_err(refused)?;
        Ok(Renamed {
            renamed: device.to_string(),
            old,
            name: name.to_owned(),
            changed: true,
        })
    }
}
