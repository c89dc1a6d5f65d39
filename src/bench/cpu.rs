//! The processor time of a bench row, by process: whether the row's time went to
//! work on the cores or to waiting (a row whose cores were busy throughout gets
//! faster only by less work; one whose cores idled, also by better overlap).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::ms;
use crate::cluster::Node;

/// The processor time a row took, by process: whether its time went to work on
/// the cores or to waiting. Each node's figure is read in the kernel's clock ticks
/// (10 ms here), so each is up to a tick off: rows of a few contacts say little.
#[derive(Debug, Default, Serialize)]
pub(super) struct Spent {
    /// Each node's processor time in the row (all its threads, user and system;
    /// answering the bench's waits and status calls included), ms, by node;
    /// `None` (null) when its `/proc` entry did not read.
    pub(super) nodes_ms: BTreeMap<&'static str, Option<f64>>,
    /// This process's (pairing the new device runs in it, and building the roster
    /// an import is given), ms.
    pub(super) bench_ms: f64,
    /// All of it (of the processes read) over the row's time on every core: kith's
    /// share of the cores, 1.0 when every core did kith's work from start to end
    /// (other work on the host is not counted).
    pub(super) busy: f64,
}

/// The processor time used so far by each of `nodes` (`None`: it did not read)
/// and by this process.
#[derive(Debug, Clone, Default)]
pub(super) struct Mark {
    nodes: BTreeMap<&'static str, Option<Duration>>,
    bench: Duration,
}

impl Mark {
    pub(super) fn now(nodes: &[(&'static str, &Node)]) -> Self {
        let nodes = nodes.iter().map(|(name, n)| (*name, n.cpu())).collect();
        Self {
            nodes,
            bench: own_cpu(),
        }
    }

    /// What was used from `self` until `later`, over `wall` on `cores` cores. A
    /// node missing from `self` had not started (it counts from nothing); one that
    /// did not read at either end is not known.
    pub(super) fn until(&self, later: &Self, wall: Duration, cores: usize) -> Spent {
        let mut total = Duration::ZERO;
        let mut nodes_ms = BTreeMap::new();
        for (name, t) in &later.nodes {
            let before = self
                .nodes
                .get(name)
                .copied()
                .unwrap_or(Some(Duration::ZERO));
            let used = t.zip(before).map(|(t, before)| t.saturating_sub(before));
            total += used.unwrap_or_default();
            nodes_ms.insert(*name, used.map(ms));
        }
        let bench = later.bench.saturating_sub(self.bench);
        total += bench;
        Spent {
            nodes_ms,
            bench_ms: ms(bench),
            busy: total.as_secs_f64() / (wall.as_secs_f64() * cores.max(1) as f64).max(1e-9),
        }
    }
}

/// This process's processor time so far (all threads, user and system).
fn own_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the buffer it is given, which is
    // that size; on failure it writes nothing and the zeroed value is read.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// `cpu` in words: each process's share and how busy the cores were.
pub(super) fn words(cpu: &Spent) -> String {
    let mut parts: Vec<String> = cpu
        .nodes_ms
        .iter()
        .map(|(name, t)| match t {
            Some(t) => format!("{name} {t:.0}"),
            None => format!("{name} ?"),
        })
        .collect();
    parts.push(format!("bench {:.0}", cpu.bench_ms));
    format!(
        "processor ms {}; kith's share of the cores {:.0} %",
        parts.join(", "),
        cpu.busy * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_counts_what_each_process_used_in_it_and_a_node_started_in_it_from_nothing() {
        let s = Duration::from_millis;
        let before = Mark {
            nodes: [("a", Some(s(500))), ("b", Some(s(100))), ("c", None)].into(),
            bench: s(40),
        };
        let after = Mark {
            nodes: [
                ("a", Some(s(900))),
                ("b", Some(s(100))),
                ("c", Some(s(300))),
                ("d", Some(s(700))),
            ]
            .into(),
            bench: s(60),
        };
        let cpu = before.until(&after, s(1000), 2);
        assert_eq!(
            cpu.nodes_ms,
            [
                ("a", Some(400.0)),
                ("b", Some(0.0)),
                ("c", None),
                ("d", Some(700.0))
            ]
            .into()
        );
        assert_eq!(cpu.bench_ms, 20.0);
        // 1.12 s of processor over 1 s on two cores (c not known).
        assert!((cpu.busy - 0.56).abs() < 1e-9, "{}", cpu.busy);
        assert_eq!(
            words(&cpu),
            "processor ms a 400, b 0, c ?, d 700, bench 20; kith's share of the cores 56 %"
        );
    }

    #[test]
    fn a_process_reads_as_much_processor_time_as_it_used() {
        // Work until this process has used 200 ms more (its other threads count
        // too), reading /proc between two readings of getrusage.
        let start = own_cpu();
        let mut x = 1u64;
        while own_cpu() < start + Duration::from_millis(200) {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let before = own_cpu();
        let read = crate::cluster::process_cpu(std::process::id()).expect("/proc reads");
        let after = own_cpu();
        // /proc counts whole clock ticks (up to one short), getrusage finer.
        let tick = Duration::from_millis(20);
        assert!(
            read + tick >= before && read <= after + tick,
            "{read:?} not within {before:?}..{after:?}"
        );
        assert!(read >= Duration::from_millis(180), "{read:?}");
        assert_eq!(
            crate::cluster::process_cpu(u32::MAX),
            None,
            "no such process"
        );
    }
}
