//! Who may hold a connection to a listener anyone can reach (the XEP-0174 stream
//! port, the control socket): at most `per_key` connections from one source (an IP
//! address) and `total` in all. At a cap the newcomer is let in and the oldest
//! connection not yet *proven* (one that has not shown it is a legitimate client:
//! for the control socket, one that has not sent its request) is closed in its
//! place: from the newcomer's own source when that source is at its cap, else from
//! the source holding the most. Only when every connection in the way is proven is
//! the newcomer refused. A stranger can thus never exhaust the room a legitimate
//! client needs to get in; together with the listeners' deadlines, what it holds it
//! holds for seconds. Where nothing proves a connection (the XEP-0174 port, whose
//! streams are unauthenticated), a stranger from enough addresses can still cut
//! a client's stream by connecting over and over: the client gets in again at once,
//! but not to stay.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// Caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections in all.
    pub total: usize,
    /// Connections from one source.
    pub per_key: usize,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    since: Instant,
    proven: bool,
    evict: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct State<K> {
    next: u64,
    held: BTreeMap<u64, Entry<K>>,
}

/// The admission of one listener. Cheap to clone; clones share the state.
#[derive(Debug)]
pub struct Admission<K> {
    limits: Limits,
    state: Arc<Mutex<State<K>>>,
}

impl<K> Clone for Admission<K> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits,
            state: self.state.clone(),
        }
    }
}

/// One admitted connection: dropping it frees the place.
#[derive(Debug)]
pub struct Ticket<K: Ord + Clone> {
    id: u64,
    state: Arc<Mutex<State<K>>>,
    /// Resolves when the connection is closed to make room for another.
    pub evicted: oneshot::Receiver<()>,
}

/// One held connection, as [`make_room`] weighs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held<'a, I, K> {
    /// Its id.
    pub(crate) id: I,
    /// Its source.
    pub(crate) key: &'a K,
    /// Since when it is held.
    pub(crate) since: Instant,
    /// Whether it proved itself.
    pub(crate) proven: bool,
}

/// The rule of this module, for any kind of connection: to let a newcomer from `key`
/// in among `held`, `Ok(None)` when there is room, `Ok(Some(id))` when `id` is to be
/// closed for it, `Err(())` when it is refused.
pub(crate) fn make_room<I: Copy + Ord, K: Ord>(
    held: &[Held<'_, I, K>],
    key: &K,
    limits: Limits,
) -> Result<Option<I>, ()> {
    let oldest_unproven = |from: &dyn Fn(&K) -> bool| {
        held.iter()
            .filter(|h| !h.proven && from(h.key))
            .min_by_key(|h| (h.since, h.id))
            .map(|h| h.id)
    };
    if held.iter().filter(|h| h.key == key).count() >= limits.per_key {
        return oldest_unproven(&|k| k == key).map(Some).ok_or(());
    }
    if held.len() >= limits.total {
        let mut counts: BTreeMap<&K, usize> = BTreeMap::new();
        for h in held.iter().filter(|h| !h.proven) {
            *counts.entry(h.key).or_default() += 1;
        }
        let busiest = counts.into_iter().max_by_key(|(_, n)| *n).ok_or(())?.0;
        return oldest_unproven(&|k| k == busiest).map(Some).ok_or(());
    }
    Ok(None)
}

/// The state, also after a panic elsewhere poisoned the lock (it holds no invariant
/// a half-done update could break beyond a stale entry).
fn lock<K>(state: &Mutex<State<K>>) -> MutexGuard<'_, State<K>> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Ord + Clone> Admission<K> {
    /// An admission with these caps.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Arc::new(Mutex::new(State {
                next: 0,
                held: BTreeMap::new(),
            })),
        }
    }

    /// Lets a connection from `key` in, closing another to make room if needed;
    /// `None` when every connection in the way is proven.
    pub fn admit(&self, key: K) -> Option<Ticket<K>> {
        let mut state = lock(&self.state);
        let held: Vec<Held<'_, u64, K>> = state
            .held
            .iter()
            .map(|(id, e)| Held {
                id: *id,
                key: &e.key,
                since: e.since,
                proven: e.proven,
            })
            .collect();
        let victim = make_room(&held, &key, self.limits).ok()?;
        drop(held);
        if let Some(v) = victim
            && let Some(mut e) = state.held.remove(&v)
            && let Some(tx) = e.evict.take()
        {
            let _ = tx.send(());
        }
        let (tx, rx) = oneshot::channel();
        let id = state.next;
        state.next += 1;
        state.held.insert(
            id,
            Entry {
                key,
                since: Instant::now(),
                proven: false,
                evict: Some(tx),
            },
        );
        Some(Ticket {
            id,
            state: self.state.clone(),
            evicted: rx,
        })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        lock(&self.state).held.len()
    }
}

impl<K: Ord + Clone> Ticket<K> {
    /// The connection showed it is legitimate: it is no longer closed to make room.
    pub fn prove(&self) {
        if let Some(e) = lock(&self.state).held.get_mut(&self.id) {
            e.proven = true;
        }
    }
}

impl<K: Ord + Clone> Drop for Ticket<K> {
    fn drop(&mut self) {
        lock(&self.state).held.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_from_one_source_keeps_the_others_in() {
        let a = Admission::new(Limits {
            total: 8,
            per_key: 3,
        });
        let mut flood: Vec<Ticket<u8>> = (0..50).filter_map(|_| a.admit(1)).collect();
        assert_eq!(flood.len(), 50, "each newcomer replaces the oldest");
        let evicted = flood
            .iter_mut()
            .filter_map(|t| t.evicted.try_recv().ok())
            .count();
        assert_eq!(evicted, 47);
        assert_eq!(a.held(), 3);
        let others: Vec<Ticket<u8>> = (2..7).filter_map(|k| a.admit(k)).collect();
        assert_eq!(others.len(), 5);
        assert_eq!(a.held(), 8);
        // Full: a newcomer from a new source evicts from the busiest one.
        let late = a.admit(9).expect("let in");
        assert_eq!(a.held(), 8);
        drop(late);
        assert_eq!(a.held(), 7);
    }

    #[test]
    fn proven_connections_stay() {
        let a = Admission::new(Limits {
            total: 2,
            per_key: 2,
        });
        let t1 = a.admit(1).expect("in");
        let t2 = a.admit(1).expect("in");
        t1.prove();
        t2.prove();
        assert!(a.admit(1).is_none());
        assert!(a.admit(2).is_none());
        drop(t1);
        assert!(a.admit(2).is_some());
    }
}
