//! The device roster: which devices belong to the account, with what role, and since
//! and until when. It is itself replicated as signed records in
//! [`Space::Roster`], one item per device (the item id is the first 16 bytes of the
//! device's public key).
//!
//! * The genesis device (chosen at `init`) is a member by definition; every other
//!   entry must be signed by a device that may author records at the entry's version
//!   (the replica checks this through [`Authors`]).
//! * A revocation is an entry with `revoked = true`. It wins over any addition of
//!   the same device whatever the versions (see [`outranks`]), so a revoked device
//!   never comes back with the same keys.
//! * A revoked device may still have authored records before its revocation; those
//!   stay. Records it stamps later than its revocation are refused, and dropped if
//!   they were accepted before the revocation arrived.
//! * Only `full` devices author records. A `relay` replicates and never receives
//!   secrets.

use std::collections::BTreeMap;

use ciborium::value::Value;
use ed25519_dalek::SigningKey;

use crate::clock::Hlc;
use crate::record::{Body, DeviceId, ItemId, Record, Space, Version};
use crate::replica::{Authors, Replica};

/// Longest device name, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest roster entry accepted, in bytes (certificates are a few KiB).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// What a device does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads and writes contacts; holds the secrets.
    Full,
    /// Stores and forwards records; never holds a secret.
    Relay,
}

/// One device's roster entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The device (its Ed25519 public key).
    pub device: DeviceId,
    /// Its OpenPGP certificate (binary), to which secrets are encrypted.
    pub cert: Vec<u8>,
    /// A name for people ("laptop").
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether this entry revokes the device.
    pub revoked: bool,
}

/// Why roster entry bytes are not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid roster entry")]
pub struct BadEntry;

impl Entry {
    /// The roster item of `device`.
    pub fn item(device: &DeviceId) -> ItemId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&device.0[..16]);
        ItemId(id)
    }

    /// CBOR `[device, cert, name, role, revoked]`.
    pub fn encode(&self) -> Vec<u8> {
        let v = Value::Array(vec![
            Value::Bytes(self.device.0.to_vec()),
            Value::Bytes(self.cert.clone()),
            Value::Text(self.name.clone()),
            Value::Integer(u8::from(self.role == Role::Relay).into()),
            Value::Bool(self.revoked),
        ]);
        crate::cbor::encode(&v)
    }

    /// Reads an entry, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, BadEntry> {
        let v = crate::cbor::decode(bytes, MAX_ENTRY_BYTES, 4).map_err(|_| BadEntry)?;
        let Value::Array(f) = v else {
            return Err(BadEntry);
        };
        let [device, cert, name, role, revoked]: [Value; 5] = f.try_into().map_err(|_| BadEntry)?;
        match (device, cert, name, role, revoked) {
            (
                Value::Bytes(d),
                Value::Bytes(cert),
                Value::Text(name),
                Value::Integer(role),
                Value::Bool(revoked),
            ) if name.len() <= MAX_NAME_BYTES => {
                let role = match u64::try_from(role) {
                    Ok(0) => Role::Full,
                    Ok(1) => Role::Relay,
                    _ => return Err(BadEntry),
                };
                Ok(Self {
                    device: DeviceId(d.try_into().map_err(|_| BadEntry)?),
                    cert,
                    name,
                    role,
                    revoked,
                })
            }
            _ => Err(BadEntry),
        }
    }

    /// This entry as a record signed by `key` at `hlc`.
    pub fn record(&self, hlc: Hlc, key: &SigningKey) -> Record {
        Record::sign(
            Space::Roster,
            Self::item(&self.device),
            hlc,
            Body::Data(self.encode()),
            key,
        )
    }
}

/// Whether the roster record `a` wins over `b` for the same device whatever their
/// versions: a revocation outranks an addition.
pub fn outranks(a: &Record, b: &Record) -> Option<bool> {
    let revoked = |r: &Record| match &r.body {
        Body::Data(d) => Entry::decode(d).is_ok_and(|e| e.revoked),
        _ => false,
    };
    match (revoked(a), revoked(b)) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// A member of the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its current entry.
    pub entry: Entry,
    /// The version of the record that added (or last changed) it.
    pub version: Version,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Version>,
}

/// The roster as the records in a replica say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roster {
    genesis: DeviceId,
    members: BTreeMap<DeviceId, Member>,
}

impl Roster {
    /// The roster of `replica`, rooted at `genesis`.
    pub fn build(genesis: DeviceId, replica: &Replica) -> Self {
        let mut members = BTreeMap::new();
        for r in replica.space(Space::Roster) {
            let Body::Data(d) = &r.body else { continue };
            let Ok(entry) = Entry::decode(d) else {
                continue;
            };
            if Entry::item(&entry.device) != r.item {
                continue;
            }
            let revoked_at = entry.revoked.then_some(r.version);
            members.insert(
                entry.device,
                Member {
                    entry,
                    version: r.version,
                    revoked_at,
                },
            );
        }
        Self { genesis, members }
    }

    /// The genesis device.
    pub fn genesis(&self) -> DeviceId {
        self.genesis
    }

    /// The member entry of `device`.
    pub fn get(&self, device: &DeviceId) -> Option<&Member> {
        self.members.get(device)
    }

    /// Every member, revoked ones included.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Members not revoked.
    pub fn active(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| m.revoked_at.is_none())
    }

    /// Whether `device` is a member and not revoked.
    pub fn is_active(&self, device: &DeviceId) -> bool {
        self.members
            .get(device)
            .is_some_and(|m| m.revoked_at.is_none())
            || (*device == self.genesis && !self.members.contains_key(device))
    }
}

impl Authors for Roster {
    fn may_author(&self, device: &DeviceId, version: &Version) -> bool {
        match self.members.get(device) {
            // Genesis authors until its own entry says otherwise.
            None => *device == self.genesis,
            Some(m) => {
                m.entry.role == Role::Full && m.revoked_at.is_none_or(|r| version.hlc <= r.hlc)
            }
        }
    }

    /// Relays author one kind of record: their acknowledgements of tombstones.
    fn may_author_in(&self, space: Space, device: &DeviceId, version: &Version) -> bool {
        match (space, self.members.get(device)) {
            (Space::Acks, Some(m)) => m.revoked_at.is_none_or(|r| version.hlc <= r.hlc),
            _ => self.may_author(device, version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallTime;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn id(k: &SigningKey) -> DeviceId {
        DeviceId(k.verifying_key().to_bytes())
    }

    fn entry(k: &SigningKey, role: Role, revoked: bool) -> Entry {
        Entry {
            device: id(k),
            cert: vec![1, 2],
            name: "d".into(),
            role,
            revoked,
        }
    }

    fn hlc(ms: u64) -> Hlc {
        Hlc {
            wall_ms: ms,
            counter: 0,
        }
    }

    #[test]
    fn entries_round_trip_and_reject_garbage() {
        let e = entry(&key(1), Role::Relay, true);
        assert_eq!(Entry::decode(&e.encode()), Ok(e));
        assert_eq!(Entry::decode(&[0x80]), Err(BadEntry));
        assert_eq!(Entry::decode(&[]), Err(BadEntry));
    }

    #[test]
    fn membership_authorship_and_sticky_revocation() {
        let (g, a, r) = (key(1), key(2), key(3));
        let mut replica = Replica::new();
        let now = WallTime(1_000);
        let roster = |rep: &Replica| Roster::build(id(&g), rep);
        // The genesis device adds itself, a full device and a relay.
        for (e, t) in [
            (entry(&g, Role::Full, false), 1),
            (entry(&a, Role::Full, false), 2),
            (entry(&r, Role::Relay, false), 3),
        ] {
            let rec = e.record(hlc(t), &g);
            assert!(replica.apply(rec, &roster(&replica), now).is_ok());
        }
        let ro = roster(&replica);
        assert!(ro.is_active(&id(&a)) && ro.is_active(&id(&r)));
        let v = |t| Version {
            hlc: hlc(t),
            device: id(&a),
        };
        assert!(ro.may_author(&id(&a), &v(10)));
        assert!(!ro.may_author(&id(&r), &v(10)), "relays author nothing");
        assert!(
            !ro.may_author(&id(&key(9)), &v(10)),
            "strangers author nothing"
        );
        // a is revoked at 20; an older re-addition (or a newer one) cannot undo it.
        let revoke = entry(&a, Role::Full, true).record(hlc(20), &g);
        assert!(replica.apply(revoke, &ro, now).is_ok());
        let readd = entry(&a, Role::Full, false).record(hlc(30), &g);
        assert!(replica.apply(readd, &roster(&replica), now).is_ok());
        let ro = roster(&replica);
        assert!(
            !ro.is_active(&id(&a)),
            "revocation wins over a later addition"
        );
        assert!(
            ro.may_author(&id(&a), &v(20)),
            "records up to the revocation stay"
        );
        assert!(
            !ro.may_author(&id(&a), &v(21)),
            "records after it are refused"
        );
    }
}
