//! What an exchange still owes a peer, and in which order it goes: by space in
//! [`SEND_ORDER`](super::session::SEND_ORDER), and tombstones of the XEP-0510
//! nodes (and `<reserved/>` groups, which `take_owed` puts there too) after
//! everything else (an edit, a settle or a rotation's reseal writes a
//! contact as a new item and retracts the old one; a peer given the retraction
//! first, keys being in random order, would not show the contact until the frame
//! with the new item came).

use std::collections::BTreeSet;

use super::recon::Key;
use super::session::SEND_ORDER;

/// Keys whose records a peer is still to be sent in the current exchange.
#[derive(Debug, Default)]
pub(super) struct Owed {
    /// Keys to send in [`SEND_ORDER`].
    keys: BTreeSet<Key>,
    /// Keys of node tombstones, sent once `keys` is empty.
    last: BTreeSet<Key>,
}

impl Owed {
    /// Owes `key`.
    pub(super) fn insert(&mut self, key: Key) {
        self.keys.insert(key);
    }

    /// Nothing owed.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.last.is_empty()
    }

    /// Owes nothing any more.
    pub(super) fn clear(&mut self) {
        self.keys.clear();
        self.last.clear();
    }

    /// The next key to send, and whether it was already put last (see
    /// [`Owed::put_last`]); a key of no known space (which the caller drops, as
    /// nothing is stored under it) after the known ones.
    pub(super) fn next(&self) -> Option<(Key, bool)> {
        SEND_ORDER
            .iter()
            .find_map(|space| {
                let code = space.code();
                self.keys
                    .range(
                        Key {
                            space: code,
                            item: [0; 16],
                        }..=Key {
                            space: code,
                            item: [0xff; 16],
                        },
                    )
                    .next()
                    .copied()
            })
            .or_else(|| self.keys.first().copied())
            .map(|key| (key, false))
            .or_else(|| self.last.first().map(|key| (*key, true)))
    }

    /// Sends `key` (a node tombstone) after everything else.
    pub(super) fn put_last(&mut self, key: Key) {
        self.keys.remove(&key);
        self.last.insert(key);
    }

    /// `key` was sent, or is no longer owed.
    pub(super) fn remove(&mut self, key: &Key) {
        self.keys.remove(key);
        self.last.remove(key);
    }
}
