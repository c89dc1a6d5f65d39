//! Range-based set reconciliation (after Meyer's RBSR and negentropy), over the keys
//! of the winning records and a digest of each one's version.
//!
//! Both sides order their entries by key. A message is a list of consecutive ranges,
//! each closed by an upper bound and carrying one of: `Skip` (nothing to do), a
//! fingerprint (count and a 64-bit sum of entry hashes), or the list of the sender's
//! entries in that range (4-byte key prefix and 4-byte salted version digest each).
//! The receiver answers range by range:
//!
//! * equal fingerprint → `Skip`;
//! * different fingerprint, and few entries on its side (≤ [`LEAF`]) → its entry
//!   list; many → the range split into up to [`BRANCH`] sub-ranges with fingerprints;
//!   a peer that has nothing in the range (count 0) simply gets every record in it;
//! * an entry list → the records the sender lacks or holds in another version are
//!   sent, and the prefixes of entries it lacks are asked for (`need`); the range is
//!   then done.
//!
//! The processing is the same on both sides; the exchange ends when a message holds
//! no fingerprint, no entry list and no need. An in-sync check costs the initiator's
//! first message (at most [`BRANCH`] fingerprints, well under 1 KB) and an empty
//! answer: one round trip. A difference of d records among N costs about
//! `d · log_BRANCH(N)` fingerprints plus `d · LEAF` entries of 6 bytes.
//!
//! Bounds are truncated to 9 bytes (space and the first 8 bytes of the item id);
//! entries whose truncated keys are equal always fall in the same range.

use std::collections::BTreeMap;
use std::ops::Range;

/// Most sub-ranges a range is split into.
pub const BRANCH: usize = 16;
/// Ranges with at most this many entries are answered with the entry list.
pub const LEAF: usize = 48;
/// Most ranges in one message.
pub const MAX_RANGES: usize = 4096;
/// Most entries listed in one message.
pub const MAX_IDS: usize = 16_384;
/// Most needed prefixes in one message.
pub const MAX_NEED: usize = 16_384;
/// Most bytes the ranges and needs of one message take on the wire. A reply that
/// would grow past this (or past [`MAX_RANGES`], [`MAX_IDS`], [`MAX_NEED`]) answers
/// the rest of the key space with one fingerprint, which the next round splits
/// again: every message stays within what the peer accepts, at any divergence.
pub const MAX_MESSAGE_BYTES: usize = 96 * 1024;

/// A set in brief ([`Set::summary`]): devices with equal summaries hold the same
/// records (up to a 64-bit fingerprint collision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Summary {
    /// How many records (winning versions, one per key).
    pub count: u64,
    /// The fingerprint of all of them.
    pub fp: u64,
}

/// Upper bound of the wire size of one range (CBOR: array, bound, part).
fn range_bytes(part: &Part) -> usize {
    12 + match part {
        Part::Skip => 1,
        Part::Fingerprint { .. } => 15,
        Part::Ids(v) => 5 + 6 * v.len(),
    }
}

/// What a reply has taken of its budget.
#[derive(Debug, Default)]
struct Budget {
    bytes: usize,
    ranges: usize,
    ids: usize,
    need: usize,
}

impl Budget {
    /// Room for the worst case of answering one more range with `theirs` entries
    /// listed by the peer, keeping room for the closing fingerprint.
    fn has_room(&self, theirs: usize) -> bool {
        let worst = (BRANCH + 1) * range_bytes(&Part::Fingerprint { count: 0, fp: 0 })
            + range_bytes(&Part::Ids(vec![0; LEAF]))
            + 3 * theirs
            + 32;
        self.bytes + worst <= MAX_MESSAGE_BYTES
            && self.ranges + BRANCH + 2 <= MAX_RANGES
            && self.ids + LEAF <= MAX_IDS
            && self.need + theirs <= MAX_NEED
    }

    fn count(&mut self, reply: &Message, from: usize, need_before: usize) {
        for (_, p) in &reply.ranges[from..] {
            self.bytes += range_bytes(p);
            self.ranges += 1;
            if let Part::Ids(v) = p {
                self.ids += v.len();
            }
        }
        let need = reply.need.len() - need_before;
        self.need += need;
        self.bytes += 3 * need;
    }
}

/// The key of a record: the space (pubsub node, roster, …) and the item id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Which key space.
    pub space: u8,
    /// The item id.
    pub item: [u8; 16],
}

impl Key {
    fn truncated(&self) -> [u8; 9] {
        let mut t = [0u8; 9];
        t[0] = self.space;
        t[1..].copy_from_slice(&self.item[..8]);
        t
    }

    /// The first three bytes of the item id, as listed in entry lists and needs.
    pub fn prefix(&self) -> u32 {
        u32::from_be_bytes([0, self.item[0], self.item[1], self.item[2]])
    }
}

/// The upper end of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bound {
    /// Entries whose truncated key is at most this.
    Key([u8; 9]),
    /// No upper limit.
    End,
}

/// What a message says about one range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Nothing to do.
    Skip,
    /// The sender's count and fingerprint.
    Fingerprint {
        /// Entries the sender has in the range.
        count: u32,
        /// Their fingerprint.
        fp: u64,
    },
    /// The sender's entries: 24-bit key prefix `<< 24 |` 24-bit salted digest of
    /// the version, in key order.
    Ids(Vec<u64>),
}

/// One reconciliation message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Consecutive ranges, the first starting at the beginning of the key space.
    pub ranges: Vec<(Bound, Part)>,
    /// 24-bit prefixes of keys the sender wants the records of.
    pub need: Vec<u32>,
}

impl Message {
    /// Whether the peer has to answer this message.
    pub fn wants_answer(&self) -> bool {
        !self.need.is_empty() || self.ranges.iter().any(|(_, p)| !matches!(p, Part::Skip))
    }
}

/// The fingerprint of `count` entries whose hashes sum (wrapping) to `sum`.
fn mix(sum: u128, count: usize) -> u64 {
    let mixed = sum ^ (count as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    (mixed as u64) ^ ((mixed >> 64) as u64)
}

/// A sorted snapshot of entries, with prefix sums for O(1) range fingerprints, and
/// changes noted but not yet merged into it ([`Set::note`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    keys: Vec<Key>,
    hashes: Vec<u128>,
    /// prefix[i] = wrapping sum of hashes[..i].
    prefix: Vec<u128>,
    /// Changes noted and not merged yet, the last one of each key.
    pending: BTreeMap<Key, Option<u128>>,
    /// The number of entries, with the pending changes made.
    count: usize,
    /// The wrapping sum of their hashes, with the pending changes made.
    sum: u128,
}

impl Set {
    /// Builds a set from (key, hash of the record's version) pairs; the hash must
    /// differ when the winning record differs. Keys must be unique.
    pub fn new(entries: impl IntoIterator<Item = (Key, u128)>) -> Self {
        let mut all: Vec<(Key, u128)> = entries.into_iter().collect();
        all.sort_unstable_by_key(|e| e.0);
        let mut prefix = Vec::with_capacity(all.len() + 1);
        let mut acc = 0u128;
        prefix.push(acc);
        for (_, h) in &all {
            acc = acc.wrapping_add(*h);
            prefix.push(acc);
        }
        let (keys, hashes): (Vec<Key>, Vec<u128>) = all.into_iter().unzip();
        Self {
            count: keys.len(),
            sum: acc,
            keys,
            hashes,
            prefix,
            pending: BTreeMap::new(),
        }
    }

    /// Notes changes as [`Set::update`] takes them, without merging them: the count
    /// and the summary ([`Set::summary`]) follow at once, at a search a change; the
    /// entries, and what reads them, only once [`Set::settle`] or an update merges
    /// them. A device receiving a long sync says its summary with every frame, and
    /// merging each frame's records into the entries then cost a pass over all of
    /// them a frame (measured: docs/performance.md, thirty-fourth session).
    pub fn note(&mut self, changes: impl IntoIterator<Item = (Key, Option<u128>)>) {
        for (key, hash) in changes {
            let old = match self.pending.get(&key) {
                Some(p) => *p,
                None => self.keys.binary_search(&key).ok().map(|i| self.hashes[i]),
            };
            if let Some(o) = old {
                self.sum = self.sum.wrapping_sub(o);
                self.count -= 1;
            }
            if let Some(h) = hash {
                self.sum = self.sum.wrapping_add(h);
                self.count += 1;
            }
            self.pending.insert(key, hash);
        }
    }

    /// Merges the changes noted ([`Set::note`]) into the entries.
    pub fn settle(&mut self) {
        if !self.pending.is_empty() {
            self.update(Vec::new());
        }
    }

    /// Whether changes are noted and not merged.
    pub fn is_settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Sets the hash of each key to the one given, adding the key, or takes the key
    /// out (`None`): the set is then what [`Set::new`] builds from the entries as
    /// changed. Costs a search and a move per change, and one pass over the
    /// entries after the first changed one.
    pub fn update(&mut self, changes: impl IntoIterator<Item = (Key, Option<u128>)>) {
        // The noted changes first: a later change of a key counts.
        let changes: Vec<(Key, Option<u128>)> = std::mem::take(&mut self.pending)
            .into_iter()
            .chain(changes)
            .collect();
        if changes.len() > Self::IN_PLACE {
            self.merge(changes);
            return;
        }
        let mut from = self.keys.len();
        for (key, hash) in changes {
            match (self.keys.binary_search(&key), hash) {
                (Ok(i), Some(h)) => {
                    self.hashes[i] = h;
                    from = from.min(i);
                }
                (Ok(i), None) => {
                    self.keys.remove(i);
                    self.hashes.remove(i);
                    from = from.min(i);
                }
                (Err(i), Some(h)) => {
                    self.keys.insert(i, key);
                    self.hashes.insert(i, h);
                    from = from.min(i);
                }
                (Err(_), None) => {}
            }
        }
        let from = from.min(self.keys.len());
        self.prefix.truncate(from + 1);
        let mut acc = self.prefix[from];
        for h in &self.hashes[from..] {
            acc = acc.wrapping_add(*h);
            self.prefix.push(acc);
        }
        self.count = self.keys.len();
        self.sum = acc;
    }

    /// Most changes made one by one (each moves the entries after it); more are
    /// merged in one pass.
    const IN_PLACE: usize = 16;

    /// [`Set::update`] in one pass over the entries: the changes sorted (the last
    /// one of a key counts), then merged with them.
    fn merge(&mut self, mut changes: Vec<(Key, Option<u128>)>) {
        // Stable: of two changes of one key, the later stays later.
        changes.sort_by_key(|c| c.0);
        let mut last: Vec<(Key, Option<u128>)> = Vec::with_capacity(changes.len());
        for c in changes {
            match last.last_mut() {
                Some(l) if l.0 == c.0 => *l = c,
                _ => last.push(c),
            }
        }
        let old = std::mem::take(&mut self.keys)
            .into_iter()
            .zip(std::mem::take(&mut self.hashes));
        let mut entries: Vec<(Key, u128)> = Vec::with_capacity(old.len() + last.len());
        let mut changes = last.into_iter().peekable();
        for (key, hash) in old {
            while let Some((k, h)) = changes.next_if(|c| c.0 < key) {
                entries.extend(h.map(|h| (k, h)));
            }
            match changes.next_if(|c| c.0 == key) {
                Some((_, h)) => entries.extend(h.map(|h| (key, h))),
                None => entries.push((key, hash)),
            }
        }
        entries.extend(changes.filter_map(|(k, h)| h.map(|h| (k, h))));
        *self = Self::new(entries);
    }

    /// Number of entries (with the changes noted).
    pub fn len(&self) -> usize {
        self.count
    }

    /// The whole set in brief: its count and fingerprint (unsalted, so two devices
    /// holding the same records give the same summary), with the changes noted.
    pub fn summary(&self) -> Summary {
        Summary {
            count: self.count as u64,
            fp: mix(self.sum, self.count),
        }
    }

    /// The summary of the set without the entries of `keys` (each counted once;
    /// keys it lacks change nothing): what a device that holds exactly these
    /// records but those would say.
    pub fn summary_without(&self, keys: impl IntoIterator<Item = Key>) -> Summary {
        debug_assert!(self.is_settled(), "settled before its entries are read");
        let keys: std::collections::BTreeSet<Key> = keys.into_iter().collect();
        let mut sum = self.prefix[self.keys.len()];
        let mut count = self.keys.len();
        for k in keys {
            if let Ok(i) = self.keys.binary_search(&k) {
                sum = sum.wrapping_sub(self.hashes[i]);
                count -= 1;
            }
        }
        Summary {
            count: count as u64,
            fp: mix(sum, count),
        }
    }

    /// Whether the set is empty (with the changes noted).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn upper_index(&self, b: &Bound) -> usize {
        match b {
            Bound::End => self.keys.len(),
            Bound::Key(t) => self.keys.partition_point(|k| k.truncated() <= *t),
        }
    }

    fn fingerprint(&self, r: Range<usize>) -> u64 {
        mix(
            self.prefix[r.end].wrapping_sub(self.prefix[r.start]),
            r.end - r.start,
        )
    }

    /// A 24-bit digest of entry `i`'s version, salted per exchange so that a chance
    /// collision does not hide the same difference twice.
    fn digest(&self, i: usize, salt: u64) -> u64 {
        let h = self.hashes[i] ^ u128::from(salt);
        let m = h.wrapping_mul(0xD6E8_FEB8_6659_FD93_9E37_79B9_7F4A_7C15);
        (m >> 104) as u64
    }

    fn ids(&self, r: Range<usize>, salt: u64) -> Vec<u64> {
        r.map(|i| (u64::from(self.keys[i].prefix()) << 24) | self.digest(i, salt))
            .collect()
    }

    /// Splits `r` into up to [`BRANCH`] sub-ranges closing at `hi`, each with its
    /// fingerprint.
    fn split(&self, r: Range<usize>, hi: Bound, out: &mut Vec<(Bound, Part)>) {
        let n = r.end - r.start;
        let step = n.div_ceil(BRANCH).max(1);
        let mut start = r.start;
        while start < r.end {
            let mut end = (start + step).min(r.end);
            // Never split between two keys with the same truncated form.
            while end < r.end && self.keys[end].truncated() == self.keys[end - 1].truncated() {
                end += 1;
            }
            let bound = if end == r.end {
                hi
            } else {
                Bound::Key(self.keys[end - 1].truncated())
            };
            out.push((
                bound,
                Part::Fingerprint {
                    count: (end - start) as u32,
                    fp: self.fingerprint(start..end),
                },
            ));
            start = end;
        }
        if n == 0 {
            out.push((
                hi,
                Part::Fingerprint {
                    count: 0,
                    fp: self.fingerprint(r),
                },
            ));
        }
    }

    /// The first message of an exchange.
    pub fn initiate(&self) -> Message {
        debug_assert!(self.is_settled(), "settled before its entries are read");
        let mut m = Message::default();
        self.split(0..self.keys.len(), Bound::End, &mut m.ranges);
        m
    }

    /// Keys whose 4-byte prefix is among `need`.
    pub fn resolve(&self, need: &[u32]) -> Vec<Key> {
        debug_assert!(self.is_settled(), "settled before its entries are read");
        let mut wanted: Vec<u32> = need.to_vec();
        wanted.sort_unstable();
        self.keys
            .iter()
            .filter(|k| wanted.binary_search(&k.prefix()).is_ok())
            .copied()
            .collect()
    }

    /// Answers `msg`: the reply, and the keys whose records must be sent to the peer
    /// (including those its `need` asks for). `salt` keys the entry digests and must
    /// be the same on both sides of an exchange.
    pub fn respond(&self, msg: &Message, salt: u64) -> Result<(Message, Vec<Key>), Error> {
        debug_assert!(self.is_settled(), "settled before its entries are read");
        if msg.ranges.len() > MAX_RANGES || msg.need.len() > MAX_NEED {
            return Err(Error::TooLarge);
        }
        let ids: usize = msg
            .ranges
            .iter()
            .map(|(_, p)| if let Part::Ids(v) = p { v.len() } else { 0 })
            .sum();
        if ids > MAX_IDS {
            return Err(Error::TooLarge);
        }
        let mut reply = Message::default();
        let mut send = self.resolve(&msg.need);
        let mut lo = 0usize;
        let mut prev: Option<Bound> = None;
        let mut budget = Budget::default();
        for (hi, part) in &msg.ranges {
            if prev.is_some_and(|p| p >= *hi) || prev == Some(Bound::End) {
                return Err(Error::Unordered);
            }
            let theirs = if let Part::Ids(v) = part { v.len() } else { 0 };
            if prev.is_some() && !budget.has_room(theirs) {
                // Out of room: the rest of the key space is left for the next round.
                reply.ranges.push((
                    Bound::End,
                    Part::Fingerprint {
                        count: (self.keys.len() - lo) as u32,
                        fp: self.fingerprint(lo..self.keys.len()),
                    },
                ));
                prev = Some(Bound::End);
                break;
            }
            prev = Some(*hi);
            let (ranges_before, need_before) = (reply.ranges.len(), reply.need.len());
            let end = self.upper_index(hi).max(lo);
            let r = lo..end;
            lo = end;
            match part {
                Part::Skip => reply.ranges.push((*hi, Part::Skip)),
                Part::Fingerprint { count, fp } => {
                    let mine = r.end - r.start;
                    if mine as u32 == *count && self.fingerprint(r.clone()) == *fp {
                        reply.ranges.push((*hi, Part::Skip));
                    } else if *count == 0 {
                        send.extend_from_slice(&self.keys[r]);
                        reply.ranges.push((*hi, Part::Skip));
                    } else if mine <= LEAF {
                        reply.ranges.push((*hi, Part::Ids(self.ids(r, salt))));
                    } else {
                        self.split(r, *hi, &mut reply.ranges);
                    }
                }
                Part::Ids(theirs) => {
                    let mut theirs_sorted = theirs.clone();
                    theirs_sorted.sort_unstable();
                    let mine: Vec<u64> = self.ids(r.clone(), salt);
                    for (i, id) in r.clone().zip(&mine) {
                        if theirs_sorted.binary_search(id).is_err() {
                            send.push(self.keys[i]);
                        }
                    }
                    let mut mine_sorted = mine;
                    mine_sorted.sort_unstable();
                    for id in theirs {
                        if mine_sorted.binary_search(id).is_err() {
                            reply.need.push((id >> 24) as u32);
                        }
                    }
                    reply.ranges.push((*hi, Part::Skip));
                }
            }
            budget.count(&reply, ranges_before, need_before);
        }
        if prev != Some(Bound::End) && !msg.ranges.is_empty() {
            return Err(Error::Incomplete);
        }
        // Adjacent skips merge into one.
        reply.ranges.dedup_by(|b, a| {
            matches!((&a.1, &b.1), (Part::Skip, Part::Skip)) && {
                a.0 = b.0;
                true
            }
        });
        if !reply.wants_answer() {
            reply.ranges.clear();
        }
        reply.need.sort_unstable();
        reply.need.dedup();
        send.sort_unstable();
        send.dedup();
        Ok((reply, send))
    }
}

/// A reconciliation message that cannot be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// More ranges, entries or needs than allowed.
    #[error("reconciliation message over its limits")]
    TooLarge,
    /// Range bounds not increasing.
    #[error("reconciliation ranges out of order")]
    Unordered,
    /// The ranges do not reach the end of the key space.
    #[error("reconciliation ranges do not cover the key space")]
    Incomplete,
}

#[cfg(test)]
mod tests;
