//! What the views of several holders share: payloads read from records and the
//! merges of lone items, for holders whose keyrings agree (the simulator's devices).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Held;
use crate::item::Contact;
use crate::item::fields::Lost;

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

/// What the merge of one contact item alone gives.
#[derive(Debug, Clone)]
pub(super) struct Alone {
    pub(super) contact: Arc<Contact>,
    pub(super) lost: Vec<Lost>,
    pub(super) unsettled: bool,
}

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
            if shared.payloads.len() >= Self::CAPACITY {
                // Those no view holds any more go first.
                shared
                    .payloads
                    .retain(|_, h| matches!(h, Held::Contact(c) if Arc::strong_count(c) > 1));
                if shared.payloads.len() >= Self::CAPACITY {
                    shared.payloads.clear();
                }
            }
            shared.payloads.insert(signature, held.clone());
        }
    }

    pub(super) fn alone(&self, signature: &[u8; 64]) -> Option<Alone> {
        self.0.lock().ok()?.alone.get(signature).cloned()
    }

    pub(super) fn put_alone(&self, signature: [u8; 64], alone: &Alone) {
        if let Ok(mut shared) = self.0.lock() {
            if shared.alone.len() >= Self::CAPACITY {
                shared
                    .alone
                    .retain(|_, a| Arc::strong_count(&a.contact) > 1);
                if shared.alone.len() >= Self::CAPACITY {
                    shared.alone.clear();
                }
            }
            shared.alone.insert(signature, alone.clone());
        }
    }
}
