//! Work the caller may spread over threads. The protocol starts no thread of its
//! own: a [`Spread`] given by the caller (the node gives one running on its cores)
//! runs independent jobs, and [`map`] uses it for steps whose results do not
//! depend on the order they are computed in (signing and checking the writes of a
//! large command), so the records are the same bytes however many threads ran.

use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};

/// Fewest items a job is given: fewer cost more to hand over than to compute.
pub const MIN_JOB: usize = 64;

/// Runs independent jobs, perhaps on several threads at once.
pub trait Spread: Debug + Send + Sync {
    /// How many jobs may run at the same time (1: one after another).
    fn width(&self) -> usize;

    /// Calls `job(i)` once for each `i` in `0..n`, in any order and perhaps at the
    /// same time, and returns when every call has returned. A job that panics
    /// makes this panic too, as the call would have without spreading.
    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync));
}

/// One job after another on the caller's thread: what a book does unless given
/// another [`Spread`] (the simulator's devices already run side by side).
#[derive(Debug, Clone, Copy, Default)]
pub struct InOrder;

impl Spread for InOrder {
    fn width(&self) -> usize {
        1
    }

    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(job);
    }
}

/// `items` through `f`, in their order, the work split between the jobs of
/// `spread` when there is enough of it.
pub fn map<T: Send, U: Send>(
    spread: &dyn Spread,
    items: Vec<T>,
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    let width = spread.width().max(1);
    if width < 2 || items.len() < 2 * MIN_JOB {
        return items.into_iter().map(f).collect();
    }
    let len = items.len();
    let per_job = len.div_ceil(width).max(MIN_JOB);
    let mut parts = Vec::with_capacity(len.div_ceil(per_job));
    let mut rest = items;
    while !rest.is_empty() {
        let tail = rest.split_off(per_job.min(rest.len()));
        parts.push(std::mem::replace(&mut rest, tail));
    }
    // Each job takes its part and leaves its results in its own slot; the locks are
    // never contended (one job a slot), only there to hand the parts across threads.
    let slots: Vec<Mutex<(Vec<T>, Vec<U>)>> = parts
        .into_iter()
        .map(|part| Mutex::new((part, Vec::new())))
        .collect();
    spread.run(slots.len(), &|i| {
        let mut slot = slots[i].lock().unwrap_or_else(PoisonError::into_inner);
        let part = std::mem::take(&mut slot.0);
        slot.1 = part.into_iter().map(&f).collect();
    });
    let mut out = Vec::with_capacity(len);
    for slot in slots {
        let (left, done) = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
        // A job the spread did not run (it broke its contract) is done here, so
        // that nothing is ever lost.
        out.extend(done);
        out.extend(left.into_iter().map(&f));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;

    /// Runs each job on a thread of its own.
    #[derive(Debug)]
    struct Threads(usize);

    impl Spread for Threads {
        fn width(&self) -> usize {
            self.0
        }

        fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
            std::thread::scope(|s| {
                for i in 0..n {
                    s.spawn(move || job(i));
                }
            });
        }
    }

    /// Runs only the first job: a spread that breaks its contract.
    #[derive(Debug)]
    struct FirstOnly(AtomicUsize);

    impl Spread for FirstOnly {
        fn width(&self) -> usize {
            4
        }

        fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
            self.0.store(n, Ordering::Relaxed);
            job(0);
        }
    }

    proptest! {
        #[test]
        fn map_keeps_the_order_on_any_width(len in 0usize..700, width in 1usize..6) {
            let items: Vec<usize> = (0..len).collect();
            let out = map(&Threads(width), items, |x| x * 3 + 1);
            prop_assert_eq!(out, (0..len).map(|x| x * 3 + 1).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_large_map_is_split_between_jobs() {
        let spread = FirstOnly(AtomicUsize::new(0));
        let out = map(&spread, (0..1000).collect(), |x: u32| x + 1);
        assert_eq!(spread.0.load(Ordering::Relaxed), 4);
        // The jobs the spread skipped were done by `map` itself.
        assert_eq!(out, (1..=1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_small_map_stays_on_the_callers_thread() {
        let spread = FirstOnly(AtomicUsize::new(0));
        let out = map(&spread, (0..100).collect(), |x: u32| x * 2);
        assert_eq!(spread.0.load(Ordering::Relaxed), 0);
        assert_eq!(out.len(), 100);
    }
}
