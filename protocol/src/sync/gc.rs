//! Tombstone collection by acknowledgement, in three phases.
//!
//! Each device (relays too) acknowledges the tombstones it knows in records of
//! [`Space::Acks`], one per shard ([`SHARDS`] of them, by the tombstone's item id),
//! each listing, for every tombstone of its shard, the space, the item id, the first
//! 8 bytes of the tombstone's signature (which name that exact record) and a phase:
//!
//! 1. *holds*: the tombstone is in its replica;
//! 2. *collected*: it removed the tombstone and only remembers its version, refusing
//!    any record no newer (`Replica::collect`);
//! 3. *forgot*: it forgot that memory too, and holds nothing of the item.
//!
//! A device collects a tombstone once every active roster member acknowledges it in
//! phase 1, 2 or 3: no active device can then hold an older version of the item. It
//! forgets the memory once every active member acknowledges phase 2 or 3: no active
//! device holds the tombstone any more, so none can offer it again. A member that
//! lists nothing for a tombstone blocks both: it may hold an older version (a device
//! restored from a backup, a device that has not heard of the deletion).
//!
//! Phase 3 is what makes forgetting happen at all: with phases 1 and 2 only, every
//! member had to list phase 2 at the same moment, and the first to forget stopped
//! listing it before the others' passes saw it there (two nodes kept their collected
//! tombstones, and the versions they replaced, for good: `tests/disk.rs` found it). A
//! device lists a tombstone in phase 3 while its own previous acknowledgement listed
//! it in phase 2 or 3, it holds nothing of the item (no version, no memory, nothing
//! set aside), and some other active member still lists it in phase 1 or 2; so it
//! keeps saying so, across restarts (its acknowledgement is a stored record), until
//! every other member has forgotten too, and then lists it no more.
//!
//! A device that stays away holds everything up until it comes back or is revoked.
//! Frames from revoked devices are refused by the engine, so what they still hold
//! cannot come back. Versions before this one read phase 3 as a malformed record
//! (acknowledging nothing): in an account that mixes them, collection stops, safely.
//!
//! Bounds, whatever the number of tombstones: a shard's record lists at most
//! [`MAX_ACKED`] entries, so that it always fits in a record. Entries in phase 2 come
//! first, then phase 3, then phase 1, each in key order; what does not fit is
//! acknowledged once earlier entries are forgotten. Only the agreed intersection is
//! ever collected or forgotten, so listing less delays both and never makes them
//! unsafe. A member with no record for a shard acknowledges nothing in it.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::record::{Body, DeviceId, ItemId, Record, Space};
use crate::replica::Replica;
use crate::roster::Roster;
use crate::seal::MAX_SEALED_BYTES;

/// Bytes of one acknowledged entry: space, item id, signature prefix, phase.
const ENTRY: usize = 1 + 16 + 8 + 1;
/// Shards of a device's acknowledgements (by the high nibble of the item id).
pub const SHARDS: usize = 16;
/// Most entries one acknowledgement record lists: what fits in a record's body.
pub const MAX_ACKED: usize = MAX_SEALED_BYTES / ENTRY;
/// Phase 1: the tombstone is held.
pub const HOLDS: u8 = 1;
/// Phase 2: the tombstone was collected.
pub const COLLECTED: u8 = 2;
/// Phase 3: the tombstone was collected and forgotten; nothing of its item is held.
pub const FORGOT: u8 = 3;

/// What names one tombstone: space code, item id, signature prefix.
pub type Key = (u8, [u8; 16], [u8; 8]);

/// The acknowledgements of one device: per shard, key → phase.
pub type Acked = [BTreeMap<Key, u8>; SHARDS];

/// The item of `device`'s acknowledgement record for `shard`.
pub fn item(device: &DeviceId, shard: usize) -> ItemId {
    let d = Sha256::new()
        .chain_update(b"kith acks\0")
        .chain_update(device.0)
        .chain_update([shard as u8])
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    ItemId(id)
}

/// The item of the single acknowledgement record earlier versions wrote (no shards,
/// no bound); a device retracts its own when it first acknowledges by shard.
pub fn legacy_item(device: &DeviceId) -> ItemId {
    let d = Sha256::new()
        .chain_update(b"kith acks\0")
        .chain_update(device.0)
        .finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    ItemId(id)
}

/// The shard of an item.
pub fn shard_of(item: &ItemId) -> usize {
    usize::from(item.0[0] >> 4)
}

fn key(space: Space, item: &ItemId, signature: &[u8; 64]) -> Key {
    let mut sig = [0u8; 8];
    sig.copy_from_slice(&signature[..8]);
    (space.code(), item.0, sig)
}

/// Whether `replica` holds nothing of the item `k` names: no version, no collected
/// memory, nothing set aside (`aside`: space code and item of every set-aside record).
fn holds_nothing_of(replica: &Replica, aside: &BTreeSet<(u8, [u8; 16])>, k: &Key) -> bool {
    let Some(space) = Space::from_code(u64::from(k.0)) else {
        return false;
    };
    let item = ItemId(k.1);
    replica.get(space, &item).is_none()
        && replica.collected_version(space, &item).is_none()
        && !aside.contains(&(k.0, k.1))
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
        if !(HOLDS..=FORGOT).contains(&c[25]) {
            return None;
        }
        out.insert((c[0], item, sig), c[25]);
    }
    Some(out)
}

/// `device`'s acknowledgement record for `shard`, if it wrote one.
pub fn record<'a>(replica: &'a Replica, device: &DeviceId, shard: usize) -> Option<&'a Record> {
    replica
        .get(Space::Acks, &item(device, shard))
        .filter(|r| r.author() == *device)
}

/// One device's acknowledgements of one shard, and the signature of the record
/// they were decoded from.
type Decoded = ([u8; 64], BTreeMap<Key, u8>);

/// Decoded acknowledgements, kept by the signature of the record they came from.
#[derive(Debug, Default)]
pub struct Acks {
    decoded: BTreeMap<(DeviceId, usize), Decoded>,
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
    /// What `device` acknowledges in `shard` (nothing when it wrote no record, or
    /// one that does not decode), decoded once per record.
    fn of(&mut self, replica: &Replica, device: &DeviceId, shard: usize) -> &BTreeMap<Key, u8> {
        static NONE: BTreeMap<Key, u8> = BTreeMap::new();
        let Some(record) = record(replica, device, shard) else {
            return &NONE;
        };
        let Body::Data(body) = &record.body else {
            return &NONE;
        };
        let slot = self
            .decoded
            .entry((*device, shard))
            .and_modify(|slot| {
                if slot.0 != record.signature {
                    *slot = (record.signature, decode(body).unwrap_or_default());
                }
            })
            .or_insert_with(|| (record.signature, decode(body).unwrap_or_default()));
        &slot.1
    }

    /// The lowest phase every active member of `roster` acknowledges for each key.
    fn agreed(&mut self, replica: &Replica, roster: &Roster) -> Acked {
        let mut agreed: Acked = Default::default();
        for (shard, agreed) in agreed.iter_mut().enumerate() {
            let mut first = true;
            for m in roster.active() {
                let acks = self.of(replica, &m.entry.device, shard);
                *agreed = if first {
                    acks.clone()
                } else {
                    std::mem::take(agreed)
                        .into_iter()
                        .filter_map(|(k, phase)| acks.get(&k).map(|p| (k, phase.min(*p))))
                        .collect()
                };
                first = false;
                if agreed.is_empty() {
                    break;
                }
            }
        }
        agreed
    }

    /// What `me` acknowledges, per shard: its collected tombstones (phase 2), those
    /// it forgot while another active member of `roster` still holds or remembers
    /// them (phase 3), then those it holds (phase 1), each in key order, at most
    /// [`MAX_ACKED`] a shard.
    pub fn entries(
        &mut self,
        replica: &Replica,
        roster: &Roster,
        me: &DeviceId,
    ) -> [Vec<(Key, u8)>; SHARDS] {
        let mut collected: [Vec<(Key, u8)>; SHARDS] = Default::default();
        let mut holds: [Vec<(Key, u8)>; SHARDS] = Default::default();
        for ((space, item), (_, sig)) in replica.collected() {
            collected[shard_of(item)].push((key(*space, item, sig), COLLECTED));
        }
        for r in replica.records().filter(|r| r.is_tombstone()) {
            holds[shard_of(&r.item)].push((key(r.space, &r.item, &r.signature), HOLDS));
        }
        let aside: BTreeSet<(u8, [u8; 16])> = replica
            .quarantined()
            .map(|r| (r.space.code(), r.item.0))
            .collect();
        let mut out: [Vec<(Key, u8)>; SHARDS] = Default::default();
        for (s, out) in out.iter_mut().enumerate() {
            let mut pending: BTreeSet<Key> = BTreeSet::new();
            for m in roster.active().filter(|m| m.entry.device != *me) {
                pending.extend(
                    self.of(replica, &m.entry.device, s)
                        .iter()
                        .filter(|(_, phase)| **phase == HOLDS || **phase == COLLECTED)
                        .map(|(k, _)| *k),
                );
            }
            let forgot: Vec<(Key, u8)> = self
                .of(replica, me, s)
                .iter()
                .filter(|(k, phase)| {
                    **phase >= COLLECTED
                        && pending.contains(*k)
                        && holds_nothing_of(replica, &aside, k)
                })
                .map(|(k, _)| (*k, FORGOT))
                .collect();
            collected[s].sort_unstable();
            holds[s].sort_unstable();
            out.extend(
                collected[s]
                    .iter()
                    .chain(&forgot)
                    .chain(&holds[s])
                    .copied()
                    .take(MAX_ACKED),
            );
        }
        out
    }

    /// What may be collected and forgotten now.
    pub fn pass(&mut self, replica: &Replica, roster: &Roster) -> Pass {
        let agreed = self.agreed(replica, roster);
        if agreed.iter().all(BTreeMap::is_empty) {
            return Pass::default();
        }
        let collect = replica
            .records()
            .filter(|r| {
                r.is_tombstone()
                    && agreed[shard_of(&r.item)].contains_key(&key(r.space, &r.item, &r.signature))
            })
            .map(|r| (r.space, r.item))
            .collect();
        let forget = replica
            .collected()
            .filter(|((space, item), (_, sig))| {
                agreed[shard_of(item)]
                    .get(&key(*space, item, sig))
                    .is_some_and(|phase| *phase >= COLLECTED)
            })
            .map(|(k, _)| *k)
            .collect();
        Pass { collect, forget }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use ed25519_dalek::SigningKey;

    #[test]
    fn acknowledgements_round_trip_and_reject_garbage() {
        let e = vec![
            ((0u8, [1u8; 16], [2u8; 8]), HOLDS),
            ((1, [3; 16], [4; 8]), COLLECTED),
        ];
        assert_eq!(decode(&encode(&e)), Some(e.into_iter().collect()));
        assert_eq!(decode(&[0; 25]), None);
        assert_eq!(decode(&[0; 26]), None, "phase 0 does not exist");
        let mut four = [0u8; 26];
        four[25] = 4;
        assert_eq!(decode(&four), None, "nor phase 4");
    }

    #[test]
    fn any_number_of_tombstones_fits_in_records() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut replica = Replica::new();
        for i in 0..100_000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            id[4..8].copy_from_slice(&i.to_be_bytes());
            let hlc = Hlc {
                wall_ms: 1,
                counter: i,
            };
            replica.insert(Record::sign(
                Space::Contacts,
                ItemId(id),
                hlc,
                Body::Tombstone,
                &key,
            ));
        }
        let all = Acks::default().entries(
            &replica,
            &Roster::build(DeviceId([1; 32]), &replica),
            &DeviceId([1; 32]),
        );
        for shard in &all {
            assert_eq!(shard.len(), MAX_ACKED, "every shard is full");
            let body = encode(shard);
            assert!(body.len() <= MAX_SEALED_BYTES);
            let r = Record::sign(
                Space::Acks,
                item(&DeviceId([1; 32]), 0),
                Hlc {
                    wall_ms: 2,
                    counter: 0,
                },
                Body::Data(body),
                &key,
            );
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes).as_ref(), Ok(&r), "it reads back");
        }
    }

    #[test]
    fn collected_entries_come_first() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let mut replica = Replica::new();
        let ids: Vec<ItemId> = (0..=MAX_ACKED as u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[12..].copy_from_slice(&i.to_be_bytes());
                ItemId(id)
            })
            .collect();
        for (n, id) in ids.iter().enumerate() {
            let hlc = Hlc {
                wall_ms: 1,
                counter: n as u32,
            };
            replica.insert(Record::sign(
                Space::Contacts,
                *id,
                hlc,
                Body::Tombstone,
                &key,
            ));
        }
        // The largest key is collected: it must still be listed, ahead of the rest.
        let last = *ids.last().expect("not empty");
        assert!(replica.collect(Space::Contacts, &last));
        let none = DeviceId([1; 32]);
        let shard = &Acks::default().entries(&replica, &Roster::build(none, &replica), &none)[0];
        assert_eq!(shard.len(), MAX_ACKED);
        assert_eq!(shard[0].0.1, last.0);
        assert_eq!(shard[0].1, COLLECTED);
    }

    fn acks(device: &SigningKey, entries: &[(Key, u8)], wall_ms: u64) -> Record {
        let me = DeviceId(device.verifying_key().to_bytes());
        Record::sign(
            Space::Acks,
            item(&me, 0),
            Hlc {
                wall_ms,
                counter: 0,
            },
            Body::Data(encode(entries)),
            device,
        )
    }

    #[test]
    fn a_tombstone_is_forgotten_once_every_device_collected_it_whenever_each_forgets() {
        use crate::roster::{Entry, Role};
        let keys = [
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        ];
        let ids = keys
            .each_ref()
            .map(|k| DeviceId(k.verifying_key().to_bytes()));
        let mut replica = Replica::new();
        for (n, id) in ids.iter().enumerate() {
            let entry = Entry {
                device: *id,
                cert: Vec::new(),
                name: String::new(),
                role: Role::Full,
                revoked: false,
            };
            replica.insert(entry.record(
                Hlc {
                    wall_ms: 1,
                    counter: n as u32,
                },
                &keys[0],
            ));
        }
        let roster = Roster::build(ids[0], &replica);
        let gone = ItemId([0; 16]);
        let tombstone = Record::sign(
            Space::Contacts,
            gone,
            Hlc {
                wall_ms: 2,
                counter: 0,
            },
            Body::Tombstone,
            &keys[0],
        );
        let k = key(Space::Contacts, &gone, &tombstone.signature);
        replica.insert(tombstone.clone());
        assert!(replica.collect(Space::Contacts, &gone));
        let mut gc = Acks::default();
        let forget = |gc: &mut Acks, replica: &Replica| gc.pass(replica, &roster).forget;
        // This device collected it; the other still holds it: it is remembered.
        replica.insert(acks(&keys[0], &[(k, COLLECTED)], 3));
        replica.insert(acks(&keys[1], &[(k, HOLDS)], 3));
        assert_eq!(forget(&mut gc, &replica), vec![]);
        // The other lists nothing of it (restored from a backup, say: it may hold an
        // older version): remembered still.
        replica.insert(acks(&keys[1], &[], 4));
        assert_eq!(forget(&mut gc, &replica), vec![]);
        // The other collected it: both in phase 2, forgotten.
        replica.insert(acks(&keys[1], &[(k, COLLECTED)], 5));
        assert_eq!(forget(&mut gc, &replica), vec![(Space::Contacts, gone)]);
        assert!(replica.drop_collected(Space::Contacts, &gone));
        // Having forgotten it, this device says so (phase 3) while the other still
        // remembers it, so that the other can forget it too...
        let mine =
            |gc: &mut Acks, replica: &Replica| gc.entries(replica, &roster, &ids[0])[0].clone();
        assert_eq!(mine(&mut gc, &replica), vec![(k, FORGOT)]);
        replica.insert(acks(&keys[0], &[(k, FORGOT)], 6));
        assert_eq!(mine(&mut gc, &replica), vec![(k, FORGOT)], "across passes");
        // ...which it does on seeing phase 3 where it waited for phase 2 (the other
        // side of this pair of records).
        let mut theirs = Replica::new();
        for r in replica.records() {
            theirs.insert(r.clone());
        }
        theirs.insert(tombstone);
        assert!(theirs.collect(Space::Contacts, &gone));
        assert_eq!(
            Acks::default().pass(&theirs, &roster).forget,
            vec![(Space::Contacts, gone)]
        );
        // Once the other forgot it too (lists it no more), this device stops.
        replica.insert(acks(&keys[1], &[], 7));
        assert_eq!(mine(&mut gc, &replica), vec![]);
        // Phase 3 only from a device holding nothing of the item: one that holds a
        // version of it (a backup restored over it) never says so.
        replica.insert(acks(&keys[1], &[(k, COLLECTED)], 8));
        let mut other = Replica::new();
        for r in replica.records() {
            other.insert(r.clone());
        }
        let mut fresh = Acks::default();
        assert_eq!(
            fresh.entries(&other, &roster, &ids[0])[0],
            vec![(k, FORGOT)]
        );
        other.insert(Record::sign(
            Space::Contacts,
            gone,
            Hlc {
                wall_ms: 1,
                counter: 0,
            },
            Body::Data(vec![1]),
            &keys[0],
        ));
        assert_eq!(fresh.entries(&other, &roster, &ids[0])[0], vec![]);
    }
}
