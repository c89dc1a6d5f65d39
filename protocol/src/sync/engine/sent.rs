//! What was sent to one peer lately: a record sent is not sent to the same peer
//! again, in the same version, for [`RESEND_AFTER_MS`] (see there for why).
//!
//! Two generations: what was noted since the current one began, and the one
//! before. A generation is retired once it is `RESEND_AFTER_MS` old, so an entry
//! is remembered at least that long and at most twice that, and the memory held is
//! what was sent in the last two such spans, never more than
//! [`MAX_SENT_REMEMBERED`] entries.

use std::collections::BTreeMap;

use super::{MAX_SENT_REMEMBERED, RESEND_AFTER_MS};
use crate::sync::recon::Key;

/// Records sent to one peer lately: key → the record's signature prefix.
#[derive(Debug, Default)]
pub(super) struct Sent {
    current: BTreeMap<Key, u128>,
    previous: BTreeMap<Key, u128>,
    /// When the current generation began.
    since_ms: u64,
}

impl Sent {
    /// Retires what is old enough at `now_ms`.
    pub(super) fn age(&mut self, now_ms: u64) {
        if now_ms < self.since_ms.saturating_add(RESEND_AFTER_MS) {
            return;
        }
        if now_ms < self.since_ms.saturating_add(2 * RESEND_AFTER_MS) {
            // On a fixed grid: the retired generation is gone at most one more
            // window after its own ended, whenever this is called.
            self.previous = std::mem::take(&mut self.current);
            self.since_ms = self.since_ms.saturating_add(RESEND_AFTER_MS);
        } else {
            self.previous.clear();
            self.current.clear();
            self.since_ms = now_ms;
        }
    }

    /// Notes that the record of `key` with signature prefix `sig` was sent at
    /// `now_ms` (unless as many as may be remembered already are).
    pub(super) fn note(&mut self, key: Key, sig: u128, now_ms: u64) {
        self.age(now_ms);
        if self.current.len() + self.previous.len() < MAX_SENT_REMEMBERED {
            self.current.insert(key, sig);
        }
    }

    /// Whether the record of `key` with signature prefix `sig` was sent lately.
    /// `sig` is asked only when something was sent under `key`: finding the record
    /// held now costs a lookup and a read of its signature, for every key a
    /// reconciliation finds the peer lacking, which mostly were never sent.
    pub(super) fn lately(
        &mut self,
        key: &Key,
        sig: impl FnOnce() -> Option<u128>,
        now_ms: u64,
    ) -> bool {
        self.age(now_ms);
        let sent = [self.current.get(key), self.previous.get(key)];
        if sent == [None, None] {
            return false;
        }
        sig().is_some_and(|sig| sent.contains(&Some(&sig)))
    }

    /// Forgets everything (what was sent may not have arrived).
    pub(super) fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// How many records are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> Key {
        Key {
            space: 0,
            item: [i; 16],
        }
    }

    #[test]
    fn an_entry_lasts_at_least_the_window_and_at_most_twice_it() {
        let mut s = Sent::default();
        s.note(key(1), 7, 0);
        assert!(s.lately(&key(1), || Some(7), RESEND_AFTER_MS - 1));
        let unasked =
            || -> Option<u128> { panic!("the record of a key never sent is not looked up") };
        assert!(!s.lately(&key(3), unasked, 1));
        assert!(!s.lately(&key(1), || None, 1), "a record no longer held");
        assert!(
            !s.lately(&key(1), || Some(8), 1),
            "another version is not the one sent"
        );
        s.note(key(2), 9, RESEND_AFTER_MS + 5);
        assert!(
            s.lately(&key(1), || Some(7), RESEND_AFTER_MS + 5),
            "in the previous one"
        );
        assert!(
            !s.lately(&key(1), || Some(7), 2 * RESEND_AFTER_MS + 5),
            "retired"
        );
        assert!(s.lately(&key(2), || Some(9), 2 * RESEND_AFTER_MS + 6));
        assert!(
            !s.lately(&key(2), || Some(9), 4 * RESEND_AFTER_MS),
            "all retired after a lull"
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn an_entry_is_never_held_twice_the_window_whenever_it_is_looked_at() {
        let mut s = Sent::default();
        s.note(key(1), 7, 0);
        assert!(s.lately(&key(1), || Some(7), 2 * RESEND_AFTER_MS - 1));
        assert!(!s.lately(&key(1), || Some(7), 2 * RESEND_AFTER_MS + 1));
    }

    #[test]
    fn no_more_than_the_bound_is_remembered() {
        let mut s = Sent::default();
        for i in 0..=MAX_SENT_REMEMBERED as u32 {
            let mut item = [0u8; 16];
            item[..4].copy_from_slice(&i.to_le_bytes());
            s.note(Key { space: 0, item }, 1, 0);
        }
        assert_eq!(s.len(), MAX_SENT_REMEMBERED);
        s.clear();
        assert_eq!(s.len(), 0);
    }
}
