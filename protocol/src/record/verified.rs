//! Signatures already checked, shared between the holders of records, and (in the
//! simulator) the records themselves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::signature::{self, Key};
use super::{DeviceId, Error, Record, signed_bytes};

/// Records kept by [`Verified::interning`], by signature.
type Interned = Arc<Mutex<HashMap<[u8; 64], Record>>>;

/// Signatures that verified, by a digest of the signed bytes and the signature. The
/// same bytes verify the same way everywhere, so a verification need not be done
/// twice: a device meets the same record again in gossip and reconciliation, and the
/// simulator shares one set among all its devices. Clones share the set.
#[derive(Debug, Clone)]
pub struct Verified {
    set: Arc<Mutex<HashSet<[u8; 32]>>>,
    capacity: usize,
    /// Authors' keys, decompressed once (a point decompression is a tenth of a
    /// verification): the few devices of an account sign everything.
    keys: Arc<Mutex<HashMap<[u8; 32], Key>>>,
    /// With [`Verified::interning`]: every record that verified, by signature, so
    /// that equal records received by different holders become one allocation.
    records: Option<Interned>,
}

impl Default for Verified {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl Verified {
    /// Digests kept by default (about 4 MB); the set starts again when full.
    pub const CAPACITY: usize = 1 << 16;

    /// An empty set of the default capacity.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set keeping at most `capacity` digests (the simulator shares a large
    /// one among all its devices).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            set: Arc::default(),
            capacity,
            keys: Arc::default(),
            records: None,
        }
    }

    /// A set that also keeps every record that verified, at most `capacity` of
    /// them, and hands the kept one back for an equal record
    /// ([`Verified::check`]): the simulator's devices then hold each record once
    /// between them.
    pub fn interning(capacity: usize) -> Self {
        Self {
            records: Some(Arc::default()),
            ..Self::with_capacity(capacity)
        }
    }

    /// How many verified signatures are remembered.
    pub fn len(&self) -> usize {
        self.set.lock().map_or(0, |s| s.len())
    }

    /// Whether no verified signature is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Authors' keys kept decompressed at most (the set starts again when full).
    const KEYS: usize = 4_096;

    fn key(&self, device: &DeviceId) -> Result<Key, Error> {
        if let Some(k) = self
            .keys
            .lock()
            .ok()
            .and_then(|k| k.get(&device.0).copied())
        {
            return Ok(k);
        }
        let key = Key::new(&device.0)?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= Self::KEYS {
                keys.clear();
            }
            keys.insert(device.0, key);
        }
        Ok(key)
    }

    /// [`Record::verify`], remembering success.
    pub fn verify(&self, record: &Record) -> Result<(), Error> {
        self.verified(record).map(|_| ())
    }

    /// [`Verified::verify`], returning the record to keep: with
    /// [`Verified::interning`], the one kept for an equal record if there is one.
    pub fn check(&self, record: Record) -> Result<Record, Error> {
        let Some(records) = &self.records else {
            self.verified(&record)?;
            return Ok(record);
        };
        // A record equal to one kept verified when it was kept. A poisoned lock only
        // loses the sharing.
        if let Ok(records) = records.lock()
            && let Some(kept) = records.get(&record.signature)
            && *kept == record
        {
            return Ok(kept.clone());
        }
        self.verified(&record)?;
        if let Ok(mut records) = records.lock() {
            if records.len() >= self.capacity {
                // Those no holder keeps any more go first (superseded versions).
                records.retain(|_, r| Arc::strong_count(&r.0) > 1);
                if records.len() >= self.capacity {
                    records.clear();
                }
            }
            records.insert(record.signature, record.clone());
        }
        Ok(record)
    }

    /// Whether `record`'s signature is remembered as verified (nothing is checked).
    pub fn knows(&self, record: &Record) -> bool {
        let (_, digest) = digest(record);
        self.set.lock().is_ok_and(|set| set.contains(&digest))
    }

    /// [`Verified::verify`] for each of `records`, answering in their order: those
    /// not already known are checked in one batch (one alone; `signature::verify_all`, about
    /// a quarter of the cost of checking them one by one when one author signed
    /// them), and each answer is the one checking it alone gives.
    pub fn verify_all(&self, records: &[Record]) -> Vec<Result<(), Error>> {
        let mut answers: Vec<Result<(), Error>> = vec![Ok(()); records.len()];
        // Digests outside the lock: the node's checking threads share the set.
        let digests: Vec<(Vec<u8>, [u8; 32])> = records.iter().map(digest).collect();
        let known: Vec<bool> = match self.set.lock() {
            Ok(set) => digests.iter().map(|(_, d)| set.contains(d)).collect(),
            // A poisoned lock only loses the shortcut: verify as if nothing was known.
            Err(_) => vec![false; records.len()],
        };
        let mut pending = Vec::new();
        for ((i, (msg, digest)), known) in digests.into_iter().enumerate().zip(known) {
            if known {
                continue;
            }
            match self.key(&records[i].version.device) {
                Ok(key) => pending.push((i, key, msg, digest)),
                Err(e) => answers[i] = Err(e),
            }
        }
        if pending.is_empty() {
            return answers;
        }
        // The batch's weights from everything it checks (each digest covers the
        // signed bytes, the author among them, and the signature).
        let mut seed = Sha256::new();
        for (.., digest) in &pending {
            seed.update(digest);
        }
        let queued: Vec<signature::Queued<'_>> = pending
            .iter()
            .map(|(i, key, msg, _)| (key, &msg[..], &records[*i].signature))
            .collect();
        let verdicts = signature::verify_all(&queued, seed.finalize().into());
        let mut good = Vec::with_capacity(pending.len());
        for ((i, .., digest), ok) in pending.iter().zip(verdicts) {
            if ok {
                good.push(*digest);
            } else {
                answers[*i] = Err(Error::BadSignature);
            }
        }
        self.remember(good);
        answers
    }

    /// Verifies `record` unless a record of the same digest did; returns the digest.
    fn verified(&self, record: &Record) -> Result<[u8; 32], Error> {
        let (msg, digest) = digest(record);
        // A poisoned lock only loses the shortcut: verify as if nothing was known.
        if self.set.lock().is_ok_and(|set| set.contains(&digest)) {
            return Ok(digest);
        }
        self.key(&record.version.device)?
            .verify(&msg, &record.signature)?;
        self.remember([digest]);
        Ok(digest)
    }

    /// Remembers the digests of signatures that verified.
    fn remember(&self, digests: impl IntoIterator<Item = [u8; 32]>) {
        if let Ok(mut set) = self.set.lock() {
            for digest in digests {
                if set.len() >= self.capacity {
                    set.clear();
                }
                set.insert(digest);
            }
        }
    }
}

/// A record's signed bytes, and the digest of them and its signature that
/// [`Verified`] keeps.
fn digest(record: &Record) -> (Vec<u8>, [u8; 32]) {
    let msg = signed_bytes(record.space, &record.item, &record.version, &record.body);
    let digest = Sha256::new()
        .chain_update(&msg)
        .chain_update(record.signature)
        .finalize()
        .into();
    (msg, digest)
}
