//! Tombstone collection by acknowledgement, in two phases.
//!
//! Each device (relays too) keeps one record in [`Space::Acks`] listing, for every
//! tombstone it knows, the space, the item id, the first 8 bytes of the tombstone's
//! signature (which name that exact record) and a phase:
//!
//! 1. *holds*: the tombstone is in its replica;
//! 2. *collected*: it removed the tombstone and only remembers its version, refusing
//!    any record no newer (`Replica::collect`).
//!
//! A device collects a tombstone once every active roster member acknowledges it in
//! phase 1 or 2: no active device can then hold an older version of the item. It
//! forgets the memory once every active member acknowledges phase 2: no active device
//! holds the tombstone any more, so none can offer it again. A device that stays away
//! holds everything up until it comes back or is revoked. Frames from revoked devices
//! are refused by the engine, so what they still hold cannot come back.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::record::{Body, DeviceId, ItemId, Space};
use crate::replica::Replica;
use crate::roster::Roster;

/// Bytes of one acknowledged entry: space, item id, signature prefix, phase.
const ENTRY: usize = 1 + 16 + 8 + 1;
/// Most entries one acknowledgement lists.
pub const MAX_ACKED: usize = 100_000;
/// Phase 1: the tombstone is held.
pub const HOLDS: u8 = 1;
/// Phase 2: the tombstone was collected.
pub const COLLECTED: u8 = 2;

/// What names one tombstone: space code, item id, signature prefix.
pub type Key = (u8, [u8; 16], [u8; 8]);

/// The item of `device`'s acknowledgement record.
pub fn item(device: &DeviceId) -> ItemId {
    let d = Sha256::new()
        .chain_update(b"kith acks\0")
        .chain_update(device.0)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    ItemId(id)
}

fn key(space: Space, item: &ItemId, signature: &[u8; 64]) -> Key {
    let mut sig = [0u8; 8];
    sig.copy_from_slice(&signature[..8]);
    (space.code(), item.0, sig)
}

/// What this replica acknowledges: its tombstones (phase 1) and collected ones
/// (phase 2), sorted by key.
pub fn entries(replica: &Replica) -> Vec<(Key, u8)> {
    let mut out: Vec<(Key, u8)> = replica
        .records()
        .filter(|r| r.is_tombstone())
        .map(|r| (key(r.space, &r.item, &r.signature), HOLDS))
        .chain(
            replica
                .collected()
                .map(|((space, item), (_, sig))| (key(*space, item, sig), COLLECTED)),
        )
        .collect();
    out.sort_unstable();
    out.truncate(MAX_ACKED);
    out
}

/// The body of an acknowledgement.
pub fn encode(entries: &[(Key, u8)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for ((space, item, sig), phase) in entries {
        out.push(*space);
        out.extend_from_slice(item);
        out.extend_from_slice(sig);
        out.push(*phase);
    }
    out
}

/// Reads an acknowledgement body; `None` if malformed or over [`MAX_ACKED`].
pub fn decode(body: &[u8]) -> Option<BTreeMap<Key, u8>> {
    if !body.len().is_multiple_of(ENTRY) || body.len() / ENTRY > MAX_ACKED {
        return None;
    }
    let mut out = BTreeMap::new();
    for c in body.chunks_exact(ENTRY) {
        let mut item = [0u8; 16];
        item.copy_from_slice(&c[1..17]);
        let mut sig = [0u8; 8];
        sig.copy_from_slice(&c[17..25]);
        if !(HOLDS..=COLLECTED).contains(&c[25]) {
            return None;
        }
        out.insert((c[0], item, sig), c[25]);
    }
    Some(out)
}

/// Decoded acknowledgements, kept by the signature of the record they came from.
#[derive(Debug, Default)]
pub struct Acks {
    decoded: BTreeMap<DeviceId, ([u8; 64], BTreeMap<Key, u8>)>,
}

/// What a collection pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tombstones to collect.
    pub collect: Vec<(Space, ItemId)>,
    /// Collected tombstones to forget.
    pub forget: Vec<(Space, ItemId)>,
}

impl Acks {
    /// The lowest phase every active member of `roster` acknowledges for each key,
    /// or `None` when some active member has no acknowledgement yet.
    fn agreed(&mut self, replica: &Replica, roster: &Roster) -> Option<BTreeMap<Key, u8>> {
        let mut agreed: Option<BTreeMap<Key, u8>> = None;
        for m in roster.active() {
            let record = replica.get(Space::Acks, &item(&m.entry.device))?;
            let Body::Data(body) = &record.body else {
                return None;
            };
            let cached = self
                .decoded
                .get(&m.entry.device)
                .filter(|(sig, _)| *sig == record.signature);
            let acks = match cached {
                Some((_, acks)) => acks.clone(),
                None => {
                    let acks = decode(body).unwrap_or_default();
                    self.decoded
                        .insert(m.entry.device, (record.signature, acks.clone()));
                    acks
                }
            };
            agreed = Some(match agreed {
                None => acks,
                Some(a) => a
                    .into_iter()
                    .filter_map(|(k, phase)| acks.get(&k).map(|p| (k, phase.min(*p))))
                    .collect(),
            });
        }
        agreed
    }

    /// What may be collected and forgotten now.
    pub fn pass(&mut self, replica: &Replica, roster: &Roster) -> Pass {
        let Some(agreed) = self.agreed(replica, roster) else {
            return Pass::default();
        };
        let collect = replica
            .records()
            .filter(|r| {
                r.is_tombstone() && agreed.contains_key(&key(r.space, &r.item, &r.signature))
            })
            .map(|r| (r.space, r.item))
            .collect();
        let forget = replica
            .collected()
            .filter(|((space, item), (_, sig))| {
                agreed.get(&key(*space, item, sig)) == Some(&COLLECTED)
            })
            .map(|(k, _)| *k)
            .collect();
        Pass { collect, forget }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_round_trip_and_reject_garbage() {
        let e = vec![
            ((0u8, [1u8; 16], [2u8; 8]), HOLDS),
            ((1, [3; 16], [4; 8]), COLLECTED),
        ];
        assert_eq!(decode(&encode(&e)), Some(e.into_iter().collect()));
        assert_eq!(decode(&[0; 25]), None);
        assert_eq!(decode(&[0; 26]), None, "phase 0 does not exist");
    }
}
