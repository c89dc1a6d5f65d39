//! Device and secret management: the roster, key deliveries, revocation, rotation
//! and the keyring audit.

use std::collections::BTreeSet;
use std::fmt::Debug;

use super::{Engine, Error, Event, Now, Output};
use crate::clock::WallTime;
use crate::contacts::Command;
use crate::item::NodeKind;
use crate::keys::{Delivery, SECRETS_PER_DELIVERY};
use crate::record::{Body, DeviceId, Record, Space, Version};
use crate::roster::{Entry, Role, Roster};
use crate::seal::Secret;
use crate::sync::recon;
use crate::sync::wire::Frame;

impl<P: Ord + Clone + Debug> Engine<P> {
    pub(super) fn me(&self) -> DeviceId {
        self.book.device()
    }

    /// The version of the roster record that revoked this device, if one did (its
    /// `device` is the device that revoked it, its stamp when).
    pub fn revoked_by(&self) -> Option<Version> {
        self.roster.get(&self.me()).and_then(|m| m.revoked_at)
    }

    /// A request frame that tells `device` it was revoked, for a driver to send it
    /// before cutting it off: the roster record revoking it first, then the roster
    /// entries that make its author a member, author by author up to the genesis
    /// device (nothing else of the roster: not the devices paired since), within one
    /// frame's record budget. The revoked device's engine applies them as it applies
    /// any request's records, so its roster, too, says it was revoked
    /// ([`Engine::revoked_by`]). `None` when the roster does not say `device` was
    /// revoked.
    pub fn revocation_notice(&self, device: &DeviceId) -> Option<Vec<u8>> {
        self.roster.get(device)?.revoked_at?;
        let replica = self.book.replica();
        let item = Entry::item(device);
        let first = replica.get(Space::Roster, &item)?.clone();
        let mut size = first.encoded_len();
        // The revocation, then the entries that make its author a member, up to the
        // genesis device (a member by definition): what the revoked device needs to
        // accept it, and nothing of the roster since (devices paired after it left,
        // their names).
        let mut author = first.version.device;
        let mut records = vec![first];
        let genesis = self.roster.genesis();
        let mut seen = BTreeSet::new();
        while author != genesis && seen.insert(author) {
            let Some(entry) = replica.get(Space::Roster, &Entry::item(&author)) else {
                break;
            };
            size += entry.encoded_len();
            if size > self.config.frame_record_bytes {
                break;
            }
            author = entry.version.device;
            records.push(entry.clone());
        }
        // An empty message compares nothing: its salt means nothing either.
        Some(
            Frame::Request {
                salt: 0,
                msg: recon::Message::default(),
                records,
                more: false,
                have: None,
            }
            .encode(),
        )
    }

    pub(super) fn add_device(&mut self, now: Now, entry: Entry) -> Result<(), Error> {
        if !self.roster.is_active(&self.me()) {
            return Err(Error::NotInRoster);
        }
        // What no device could read back is never signed.
        if Entry::decode(&entry.encode()).is_err() {
            return Err(Error::EntryTooLarge);
        }
        if self
            .roster
            .get(&entry.device)
            .is_some_and(|m| m.revoked_at.is_some())
        {
            return Err(Error::Revoked(entry.device));
        }
        let body = Body::Data(entry.encode());
        let record = self
            .book
            .sign(Space::Roster, Entry::item(&entry.device), body, now.wall);
        self.book.insert_local(record.clone());
        self.after_roster_change();
        let mut records = vec![record];
        if entry.role == Role::Full && entry.device != self.me() {
            // Every secret; all but the current ones marked revoked (XEP-0473 §4).
            let keyring = self.book.keyring();
            let current: Vec<&str> = NodeKind::ALL
                .iter()
                .filter_map(|n| keyring.current(*n))
                .map(|s| s.id.as_str())
                .collect();
            let secrets: Vec<Secret> = keyring
                .iter()
                .map(|s| Secret {
                    revoked: s.revoked || !current.contains(&s.id.as_str()),
                    ..s.clone()
                })
                .collect();
            records.extend(self.deliver(now, &[entry.device], &secrets));
        }
        self.written(now, records);
        Ok(())
    }

    pub(super) fn revoke_device(&mut self, now: Now, device: DeviceId) -> Result<(), Error> {
        let Some(member) = self.roster.get(&device) else {
            return Err(Error::NoSuchDevice(device));
        };
        let entry = Entry {
            revoked: true,
            ..member.entry.clone()
        };
        if !self.roster.is_active(&self.me()) {
            return Err(Error::NotInRoster);
        }
        self.write_entry(now, &entry);
        self.rotate(now)
    }

    /// Signs `entry` as this device's roster record of its device, and writes it.
    fn write_entry(&mut self, now: Now, entry: &Entry) {
        let record = self.book.sign(
            Space::Roster,
            Entry::item(&entry.device),
            Body::Data(entry.encode()),
            now.wall,
        );
        self.book.insert_local(record.clone());
        self.after_roster_change();
        self.written(now, vec![record]);
    }

    pub(super) fn rename_device(
        &mut self,
        now: Now,
        device: DeviceId,
        name: String,
    ) -> Result<(), Error> {
        if !self.roster.is_active(&self.me()) {
            return Err(Error::NotInRoster);
        }
        let Some(member) = self.roster.get(&device) else {
            return Err(Error::NoSuchDevice(device));
        };
        if member.revoked_at.is_some() {
            return Err(Error::Revoked(device));
        }
        let entry = Entry {
            name,
            ..member.entry.clone()
        };
        // What no device could read back is never signed.
        if Entry::decode(&entry.encode()).is_err() {
            return Err(Error::EntryTooLarge);
        }
        self.write_entry(now, &entry);
        Ok(())
    }

    pub(super) fn rotate(&mut self, now: Now) -> Result<(), Error> {
        if self
            .roster
            .get(&self.me())
            .is_some_and(|m| m.entry.role != Role::Full)
        {
            return Err(Error::Relay);
        }
        // New secrets must be the newest whatever this device's clock says (a clock
        // behind would otherwise leave the old secrets current).
        let newest = self
            .book
            .keyring()
            .iter()
            .map(|s| s.created.0)
            .max()
            .unwrap_or(0);
        let created = WallTime(now.wall.0.max(newest + 1));
        let fresh: Vec<Secret> = NodeKind::ALL
            .iter()
            .map(|n| Secret::generate(*n, created, &mut self.rng))
            .collect();
        // Every active full device gets them, this one included: a delivery is what
        // vouches for a secret (see `audit_keys`).
        let to: Vec<DeviceId> = self
            .roster
            .active()
            .filter(|m| m.entry.role == Role::Full)
            .map(|m| m.entry.device)
            .collect();
        let mut records = self.deliver(now, &to, &fresh);
        let me = self.me();
        let mine: Vec<Record> = records
            .iter()
            .filter(|r| matches!(&r.body, Body::Data(d) if Delivery::decode(d).is_ok_and(|d| d.to == me)))
            .cloned()
            .collect();
        for r in &mine {
            self.receive_keys(r, now);
        }
        let mut rng = self.rng.clone();
        if let Ok(resealed) = self.book.execute(Command::Reseal, now.wall, &mut rng) {
            records.extend(resealed);
        }
        self.rng = rng;
        self.written(now, records);
        Ok(())
    }

    /// Key records carrying `secrets` to each device in `to`: one record per device
    /// and [`SECRETS_PER_DELIVERY`] secrets, so that a record stays within its limits
    /// however many rotations the keyring has seen.
    pub(super) fn deliver(&mut self, now: Now, to: &[DeviceId], secrets: &[Secret]) -> Vec<Record> {
        let mut records = Vec::new();
        for device in to {
            let Some(member) = self.roster.get(device).cloned() else {
                continue;
            };
            for chunk in secrets.chunks(SECRETS_PER_DELIVERY) {
                match self.wrap.wrap(chunk, &member, now.wall, &mut self.rng) {
                    Ok(wrapped) => {
                        let body = Body::Data(
                            Delivery {
                                to: *device,
                                wrapped,
                            }
                            .encode(),
                        );
                        let record = self.book.sign(
                            Space::Keys,
                            Delivery::item(device, &chunk[0].id),
                            body,
                            now.wall,
                        );
                        self.book.insert_local(record.clone());
                        records.push(record);
                    }
                    Err(e) => self.outputs.push_back(Output::Event(Event::KeysRefused(e))),
                }
            }
        }
        records
    }

    /// Rebuilds the roster after a roster record changed, and drops records whose
    /// author it no longer allows; returns how many were dropped.
    pub(super) fn after_roster_change(&mut self) -> usize {
        let mut dropped = 0;
        // Setting records aside or putting them back may change the roster itself
        // (a roster record by a revoked device); repeat until it is stable.
        for _ in 0..8 {
            self.roster = Roster::build(self.genesis, self.book.replica());
            let (moved, restored) = self.book.retain_authors(&self.roster);
            dropped += moved;
            if !restored.is_empty() {
                self.outputs.push_back(Output::Persist(restored));
            }
            if moved == 0 && Roster::build(self.genesis, self.book.replica()) == self.roster {
                break;
            }
        }
        // With the roster settled: a collected deletion by a device revoked before it
        // stamped it gives back what it deleted (stored again, as a winner).
        let back = self.book.uncollect_disallowed(&self.roster);
        if !back.is_empty() {
            self.outputs.push_back(Output::Persist(back));
        }
        self.stats.dropped_after_revocation += dropped as u64;
        self.set = None;
        dropped
    }

    /// Keeps the keyring honest after records were dropped: a secret may seal new
    /// items only while the initial keyring or a key record still present vouches for
    /// it. A secret whose delivery was dropped (it came from a device revoked before
    /// it sent it) stays for reading but is marked revoked, and a full device then
    /// rotates, so that what was sealed with it is sealed again with a secret every
    /// device receives.
    pub(super) fn audit_keys(&mut self, now: Now) {
        // A secret held since the start (from pairing, or from the stored keyring
        // after a restart) that a delivery set aside since carried was never vouched
        // for by being held: it was stored because of that delivery.
        // (Unwrapping is costly: done again only when the set-aside records changed.)
        let set_aside = self
            .book
            .replica()
            .quarantined()
            .filter(|r| r.space == Space::Keys)
            .count();
        if set_aside != self.set_aside_keys {
            self.set_aside_keys = set_aside;
            let disavowed = self.secrets_set_aside(now);
            self.base_secrets.retain(|id| !disavowed.contains(id));
        }
        let replica = self.book.replica();
        let vouched: BTreeSet<&String> = self
            .unwrapped
            .iter()
            .filter(|(item, (v, _))| {
                replica
                    .get(Space::Keys, item)
                    .is_some_and(|r| r.version == *v)
            })
            .flat_map(|(_, (_, ids))| ids)
            .chain(&self.base_secrets)
            .collect();
        let orphans: Vec<String> = self
            .book
            .keyring()
            .iter()
            .filter(|s| !s.revoked && !vouched.contains(&s.id))
            .map(|s| s.id.clone())
            .collect();
        // A current secret delivered to a device that is revoked now (a rotation
        // that crossed the revocation) must be replaced too.
        let revoked: Vec<DeviceId> = self
            .roster
            .members()
            .filter(|m| m.revoked_at.is_some())
            .map(|m| m.entry.device)
            .collect();
        // A delivery is found by the first secret of its batch: a rotation's
        // batch holds a secret of each node, and the current secrets of two
        // rotations that crossed may be of different batches.
        let leaked = NodeKind::ALL
            .iter()
            .filter_map(|n| self.book.keyring().current(*n))
            .any(|s| {
                self.batch_firsts(&s.id).iter().any(|first| {
                    revoked.iter().any(|d| {
                        self.book
                            .replica()
                            .get(Space::Keys, &Delivery::item(d, first))
                            .is_some()
                    })
                })
            });
        // A current secret that some active full device will never receive: its
        // delivery to that device was set aside (its author was revoked between
        // delivering it here and there). Sealing with it would leave that device
        // unable to read: it is replaced too.
        let set_aside: BTreeSet<_> = replica
            .quarantined()
            .filter(|r| r.space == Space::Keys)
            .map(|r| r.item)
            .collect();
        let stranded = !set_aside.is_empty()
            && NodeKind::ALL
                .iter()
                .filter_map(|n| self.book.keyring().current(*n))
                .any(|s| {
                    self.batch_firsts(&s.id).iter().any(|first| {
                        self.roster
                            .active()
                            .filter(|m| m.entry.role == Role::Full)
                            .any(|m| {
                                let item = Delivery::item(&m.entry.device, first);
                                set_aside.contains(&item)
                                    && replica.get(Space::Keys, &item).is_none()
                            })
                    })
                });
        if orphans.is_empty() && !leaked && !stranded {
            return;
        }
        self.book.revoke_secrets(&orphans);
        if self.roster.is_active(&self.me()) {
            // A relay holds no secrets to rotate: nothing to do there.
            let _ = self.rotate(now);
        }
    }

    /// The first secrets of the rotation batches secret `id` was delivered in,
    /// which name the delivery records of those batches to every device
    /// ([`Delivery::item`]): as the deliveries that brought it here say (every
    /// rotation delivers to its own device too). A rotation's batch is its new
    /// secrets, created together; a pairing's chunks of the whole keyring (whose
    /// first secret is of another time) are not one. `id` itself when none is.
    fn batch_firsts(&self, id: &str) -> Vec<String> {
        let keyring = self.book.keyring();
        let created = |i: &str| keyring.get(i).map(|s| s.created);
        let mut firsts: Vec<String> = self
            .unwrapped
            .values()
            .filter(|(_, ids)| ids.iter().any(|i| i == id))
            .filter_map(|(_, ids)| ids.first())
            .filter(|first| created(first) == created(id))
            .cloned()
            .collect();
        if firsts.is_empty() {
            firsts.push(id.to_owned());
        }
        firsts
    }

    /// The ids of the secrets that deliveries addressed here, set aside because their
    /// author was revoked before sending them, carried, and that no delivery still
    /// present carries.
    pub(super) fn secrets_set_aside(&mut self, now: Now) -> BTreeSet<String> {
        let me = self.me();
        let set_aside: Vec<Record> = self
            .book
            .replica()
            .quarantined()
            .filter(|r| r.space == Space::Keys)
            .cloned()
            .collect();
        let mut ids = BTreeSet::new();
        for record in set_aside {
            let Body::Data(d) = &record.body else {
                continue;
            };
            let Ok(delivery) = Delivery::decode(d) else {
                continue;
            };
            if delivery.to != me {
                continue;
            }
            let Some(author) = self.roster.get(&record.author()).cloned() else {
                continue;
            };
            if let Ok(secrets) =
                self.wrap
                    .unwrap(&delivery.wrapped, &author, &self.roster, now.wall)
            {
                ids.extend(secrets.into_iter().map(|s| s.id));
            }
        }
        for (_, carried) in self.unwrapped.values() {
            for id in carried {
                ids.remove(id);
            }
        }
        ids
    }

    /// Unwraps a key record if it is addressed here.
    pub(super) fn receive_keys(&mut self, record: &Record, now: Now) {
        let Body::Data(d) = &record.body else { return };
        let Ok(delivery) = Delivery::decode(d) else {
            return;
        };
        if delivery.to != self.me() {
            return;
        }
        let Some(author) = self.roster.get(&record.author()).cloned() else {
            return;
        };
        match self
            .wrap
            .unwrap(&delivery.wrapped, &author, &self.roster, now.wall)
        {
            Ok(secrets) => {
                let ids = secrets.iter().map(|s| s.id.clone()).collect();
                self.unwrapped.insert(record.item, (record.version, ids));
                self.book.add_secrets(secrets);
                self.outputs.push_back(Output::Event(Event::Changed));
            }
            Err(e) => self.outputs.push_back(Output::Event(Event::KeysRefused(e))),
        }
    }
}
