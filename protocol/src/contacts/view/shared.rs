//! What the views of several holders share: payloads read from records and the
//! merges of lone items, for holders whose keyrings agree (the simulator's devices).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Held, MergedContact};

/// Payloads read from records, by the record's signature, shared between the views
/// of holders whose keyrings agree on every key id (the simulator's devices): the
/// same sealed bytes open to the same payload with the same secret, so each record
/// is opened and parsed once between them, and its contact held once. Clones share
/// the map; it starts again when it holds [`Reads::CAPACITY`] payloads.
/// The merge of a contact item alone (no other item, no deletion) depends on that
/// item only, so it is shared the same way.
#[derive(Debug, Clone, Default)]
pub struct Reads(Arc<Mutex<SharedReads>>);

#[derive(Debug, Default)]
struct SharedReads {
    payloads: HashMap<[u8; 64], Held>,
    alone: HashMap<[u8; 64], Alone>,
}

/// What the merge of one contact item alone gives: the merged contact, as the first
/// holder to merge it saw it (its unknown groups are that holder's).
#[derive(Debug, Clone)]
pub(super) struct Alone(pub(super) Arc<MergedContact>);

impl Reads {
    /// Payloads (and lone merges) kept at most; when full, those no view holds
    /// any more are dropped.
    pub const CAPACITY: usize = 1 << 18;

    pub(super) fn get(&self, signature: &[u8; 64]) -> Option<Held> {
        // A poisoned lock only loses the sharing.
        self.0.lock().ok()?.payloads.get(signature).cloned()
    }

    pub(super) fn put(&self, signature: [u8; 64], held: &Held) {
        if let Ok(mut shared) = self.0.lock() {
            // Those no view holds any more go first.
            let held_elsewhere =
                |h: &Held| matches!(h, Held::Contact(c) if Arc::strong_count(c) > 1);
            put_bounded(
                &mut shared.payloads,
                signature,
                held.clone(),
                held_elsewhere,
            );
        }
    }

    pub(super) fn alone(&self, signature: &[u8; 64]) -> Option<Alone> {
        self.0.lock().ok()?.alone.get(signature).cloned()
    }

    pub(super) fn put_alone(&self, signature: [u8; 64], alone: &Alone) {
        if let Ok(mut shared) = self.0.lock() {
            let held_elsewhere = |a: &Alone| Arc::strong_count(&a.0) > 1;
            put_bounded(&mut shared.alone, signature, alone.clone(), held_elsewhere);
        }
    }
}

/// Inserts into a table of at most [`Reads::CAPACITY`] entries: when it is full,
/// the entries `keep` refuses go, and if that is not enough, all of them.
fn put_bounded<V>(
    table: &mut HashMap<[u8; 64], V>,
    key: [u8; 64],
    value: V,
    keep: impl Fn(&V) -> bool,
) {
    if table.len() >= Reads::CAPACITY {
        table.retain(|_, v| keep(v));
        if table.len() >= Reads::CAPACITY {
            table.clear();
        }
    }
    table.insert(key, value);
}
