//! The cores of this machine, for the protocol's [`Spread`]: the writes of a large
//! command (an import, a reseal) are checked and signed on all of them.

use std::sync::OnceLock;

use kith_protocol::spread::Spread;

/// How many threads this machine runs at once (1 when it cannot say).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// Runs jobs on the caller's thread and on threads started for the call, one a
/// core; a job whose thread cannot be had runs on the caller's thread.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cores;

impl Spread for Cores {
    fn width(&self) -> usize {
        cores()
    }

    fn run(&self, n: usize, job: &(dyn Fn(usize) + Sync)) {
        if n == 0 {
            return;
        }
        std::thread::scope(|s| {
            let mut threads = Vec::new();
            let mut here = vec![0];
            for i in 1..n {
                let spawned = std::thread::Builder::new()
                    .name("kith-spread".into())
                    .spawn_scoped(s, move || job(i));
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(_) => here.push(i),
                }
            }
            here.into_iter().for_each(job);
            for t in threads {
                // A job that panicked panics here, as it would have on this thread.
                if let Err(panic) = t.join() {
                    std::panic::resume_unwind(panic);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn every_job_runs_once() {
        let seen = Mutex::new(Vec::new());
        Cores.run(7, &|i| seen.lock().expect("no job panics").push(i));
        let mut seen = seen.into_inner().expect("no job panics");
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "job 3")]
    fn a_panicking_job_panics_the_caller() {
        Cores.run(5, &|i| assert_ne!(i, 3, "job 3"));
    }
}
