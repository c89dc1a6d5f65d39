//! The processor time of a bench row, by process: whether the row's time went to
//! work on the cores or to waiting (a row whose cores were busy throughout gets
//! faster only by less work; one whose cores idled, also by better overlap).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::ms;
use crate::cluster::Node;

/// The processor time a row took, by process: whether its time went to work on
/// the cores or to waiting.
#[derive(Debug, Default, Serialize)]
pub(super) struct Spent {
    /// Each node's processor time in the row (all its threads, user and system),
    /// ms, by node.
    pub(super) nodes_ms: BTreeMap<&'static str, f64>,
    /// This process's (pairing the new device runs in it), ms.
    pub(super) bench_ms: f64,
    /// All of it over the row's time on every core: 1.0 is every core busy from
    /// start to end.
    pub(super) busy: f64,
}

/// The processor time used so far by each of `nodes` and by this process.
#[derive(Debug, Clone, Default)]
pub(super) struct Mark {
    nodes: BTreeMap<&'static str, Duration>,
    bench: Duration,
}

impl Mark {
    pub(super) fn now(nodes: &[(&'static str, &Node)]) -> Self {
        let nodes = nodes
            .iter()
            .map(|(name, n)| (*name, n.cpu().unwrap_or_default()))
            .collect();
        Self {
            nodes,
            bench: own_cpu(),
        }
    }

    /// What was used from `self` until `later`, over `wall` on `cores` cores. A
    /// node missing from `self` had not started (it counts from nothing).
    pub(super) fn until(&self, later: &Self, wall: Duration, cores: usize) -> Spent {
        let mut total = Duration::ZERO;
        let mut nodes_ms = BTreeMap::new();
        for (name, t) in &later.nodes {
            let used = t.saturating_sub(self.nodes.get(name).copied().unwrap_or_default());
            total += used;
            nodes_ms.insert(*name, ms(used));
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
        .map(|(name, t)| format!("{name} {t:.0}"))
        .collect();
    parts.push(format!("bench {:.0}", cpu.bench_ms));
    format!(
        "processor ms {}; the cores {:.0} % busy",
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
            nodes: [("a", s(500)), ("b", s(100))].into(),
            bench: s(40),
        };
        let after = Mark {
            nodes: [("a", s(900)), ("b", s(100)), ("d", s(700))].into(),
            bench: s(60),
        };
        let cpu = before.until(&after, s(1000), 2);
        assert_eq!(
            cpu.nodes_ms,
            [("a", 400.0), ("b", 0.0), ("d", 700.0)].into()
        );
        assert_eq!(cpu.bench_ms, 20.0);
        // 1.12 s of processor over 1 s on two cores.
        assert!((cpu.busy - 0.56).abs() < 1e-9, "{}", cpu.busy);
        assert_eq!(
            words(&cpu),
            "processor ms a 400, b 0, d 700, bench 20; the cores 56 % busy"
        );
    }
}
