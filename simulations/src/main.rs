//! `kith-sim`: run, soak and sweep simulations of many kith devices.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kith_sim::scenario::{self, Scenario};

/// mimalloc: the simulator allocates and frees small blocks on both cores all the
/// time (docs/performance.md, thirteenth round).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` (its v3 option list; the crate's
/// constants stop short of it): whether an arena's memory is committed whole when
/// it is made. Committed lazily, the run zeroes far fewer huge pages (the kernel's
/// time at 1,000 devices fell from 6.4 s to 2.5 s; docs/performance.md).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Simulates many kith devices in virtual time.
#[derive(Debug, Parser)]
#[command(name = "kith-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One run; exits 0 if and only if every invariant holds.
    Run {
        #[command(flatten)]
        opts: Opts,
        /// Devices.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Runs seeds FIRST..=K and prints the failing ones (progress every 100 seeds on
    /// stderr).
    Soak {
        #[command(flatten)]
        opts: Opts,
        /// Devices.
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// The last seed.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed (to split a soak between processes: `--first 501
        /// --seeds 1000` runs the second half).
        #[arg(long, default_value_t = 1)]
        first: u64,
    },
    /// Runs a series of device counts and plots convergence time and bytes per device.
    Sweep {
        #[command(flatten)]
        opts: Opts,
        /// Device counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        nodes: Vec<usize>,
        /// Where to write the SVG plot.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
    /// Offline-first meshes: full devices online a share of the time, with and
    /// without one always-on relay device; how long an edit takes to reach every
    /// device. Exits 1 if an edit did not reach every device with the relay on.
    Meet {
        /// Full devices.
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Shares of the time each device is online, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.02,0.05,0.1,0.2,0.5")]
        online: Vec<f64>,
        /// One session online, virtual seconds.
        #[arg(long, default_value_t = 60)]
        session_secs: u64,
        /// Edits, one after another.
        #[arg(long, default_value_t = 20)]
        edits: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write the SVG plot.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Args)]
struct Opts {
    /// Contacts imported at the start.
    #[arg(long, default_value_t = 50)]
    contacts: usize,
    /// Random edits during the fault phase.
    #[arg(long, default_value_t = 50)]
    edits: usize,
    /// Message loss probability.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Message duplication probability.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// One-way latency, ms.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Partitions during the fault phase.
    #[arg(long, default_value_t = 0)]
    partitions: usize,
    /// Probability per device and second of going offline.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Crash-restarts.
    #[arg(long, default_value_t = 0)]
    crashes: usize,
    /// Clock skew bound, ms.
    #[arg(long, default_value_t = 0)]
    skew_ms: u64,
    /// Relay devices.
    #[arg(long, default_value_t = 0)]
    relays: usize,
    /// Device revocations (each rotates the secrets and re-seals every item).
    #[arg(long, default_value_t = 0)]
    revocations: usize,
    /// Wrap secrets with real XEP-0373 signcrypt (slower, not byte-reproducible).
    #[arg(long)]
    real_crypto: bool,
    /// Direct links per device for reconciliation (gossip reaches every device).
    #[arg(long, default_value_t = 8)]
    degree: usize,
    /// Devices offline for the whole fault phase (they miss the import and every
    /// edit, and hold back tombstone collection).
    #[arg(long, default_value_t = 0)]
    offline: usize,
    /// Length of the fault phase, virtual seconds.
    #[arg(long, default_value_t = 60)]
    fault_secs: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Handle every event on one core (the trace is the same as on all cores).
    #[arg(long)]
    sequential: bool,
}

impl Opts {
    fn scenario(&self, nodes: usize) -> Result<Scenario, String> {
        for (name, p) in [
            ("--loss", self.loss),
            ("--dup", self.dup),
            ("--churn", self.churn),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be a probability between 0 and 1"));
            }
        }
        if nodes == 0 {
            return Err("--nodes must be at least 1".into());
        }
        if self.offline >= nodes {
            return Err("--offline must leave device 0 and be below --nodes".into());
        }
        Ok(Scenario {
            nodes,
            contacts: self.contacts,
            edits: self.edits,
            loss: self.loss,
            dup: self.dup,
            latency_ms: self.latency_ms,
            partitions: self.partitions,
            churn: self.churn,
            crashes: self.crashes,
            skew_ms: self.skew_ms,
            relays: self.relays,
            revocations: self.revocations,
            real_crypto: self.real_crypto,
            degree: self.degree,
            offline: self.offline,
            fault_ms: self.fault_secs.saturating_mul(1_000),
            seed: self.seed,
            sequential: self.sequential,
        })
    }
}

/// `kith-sim meet`: each share online with and without a relay; prints one JSON
/// line per run and plots the median time for an edit to reach every device.
fn meet(
    nodes: usize,
    online: &[f64],
    session_secs: u64,
    edits: usize,
    seed: u64,
    plot: Option<&std::path::Path>,
) -> bool {
    use kith_sim::meet::{self, Meetings};
    let mut ok = true;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for &share in online {
        for relay in [true, false] {
            let r = meet::run(&Meetings {
                nodes,
                relay,
                online: share,
                session_ms: session_secs * 1_000,
                edits,
                seed,
                ..Meetings::default()
            });
            println!("{}", r.to_json());
            ok &= !relay || r.unfinished == 0;
            let minutes = r.median_ms() as f64 / 60_000.0;
            // Percent on the x axis; an edit that never arrived is left out.
            if !r.spread_ms.is_empty() {
                let point = (share * 100.0, minutes);
                if relay {
                    with.push(point);
                } else {
                    without.push(point);
                }
            }
        }
    }
    if let Some(path) = plot {
        let svg = kith_sim::plot::svg_shared(
            "kith-sim meet: median time for an edit to reach every device",
            "% of the time each device is online",
            "minutes",
            &[
                ("with one relay device always on", with),
                ("devices alone", without),
            ],
        );
        if let Err(e) = std::fs::write(path, svg) {
            eprintln!("kith-sim: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    ok
}

fn main() -> ExitCode {
    // SAFETY: sets one of mimalloc's options, an integer it reads when it next
    // makes an arena; no pointer is passed.
    unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    let cli = Cli::parse();
    // On one of the pool's threads: the runs' parallel steps then share work with
    // the other threads without handing it over from outside the pool (a wake-up
    // and a wait each time). With the main thread's stack size, 8 MiB.
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global()
    {
        eprintln!("kith-sim: {e}");
        return ExitCode::from(2);
    }
    rayon::scope(|_| command(cli))
}

fn command(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Cmd::Run { opts, nodes, json } => opts.scenario(nodes).map(|s| {
            let (r, world) = scenario::play(&s);
            // The process ends next and takes the memory back at once; taking a
            // world of 1,000 × 10,000 apart first took 3 s.
            std::mem::forget(world);
            if json {
                println!("{}", r.to_json());
            } else {
                println!(
                    "{} devices, seed {}: converged {} in {} ms of simulated time; lost writes {}, lost field edits {}, resurrections {}, rejected {}, bad frames {}, unstorable records {}, wrong sync states {}; {} messages, {} bytes ({} of them padding); at most {} round trips; {} ms wall",
                    r.nodes, r.seed, r.converged, r.sim_time_to_converge_ms, r.lost_writes, r.lost_field_edits, r.resurrections,
                    r.rejected_records, r.bad_frames, r.unstorable_records, r.wrong_sync_states, r.messages_total, r.bytes_total, r.padding_total, r.max_reconcile_round_trips, r.wall_ms
                );
            }
            r.ok()
        }),
        Cmd::Soak {
            opts,
            nodes,
            seeds,
            first,
        } => opts.scenario(nodes).map(|base| {
            let mut failing = 0;
            for seed in first..=seeds {
                let r = scenario::run(&Scenario { seed, ..base.clone() });
                if !r.ok() {
                    failing += 1;
                    println!("FAIL seed {seed}: {}", r.to_json());
                }
                if seed % 100 == 0 && seed < seeds {
                    eprintln!("{seed} of {seeds} seeds run, {failing} failing so far");
                }
            }
            println!(
                "{} seeds ({first} to {seeds}), {failing} failing",
                (seeds + 1).saturating_sub(first)
            );
            failing == 0
        }),
        Cmd::Meet {
            nodes,
            online,
            session_secs,
            edits,
            seed,
            plot,
        } => Ok(meet(nodes, &online, session_secs, edits, seed, plot.as_deref())),
        Cmd::Sweep { opts, nodes, plot } => nodes.iter().map(|n| opts.scenario(*n)).collect::<Result<Vec<_>, _>>().map(|all| {
            let mut ok = true;
            let (mut time, mut bytes) = (Vec::new(), Vec::new());
            for s in &all {
                let r = scenario::run(s);
                println!("{}", r.to_json());
                ok &= r.ok();
                time.push((s.nodes as f64, r.sim_time_to_converge_ms as f64));
                bytes.push((s.nodes as f64, (r.bytes_total / s.nodes as u64) as f64));
            }
            if let Some(path) = plot {
                let svg = kith_sim::plot::svg(
                    "kith-sim: convergence after the fault phase",
                    "devices",
                    &[("simulated ms to converge", time), ("bytes sent per device", bytes)],
                );
                if let Err(e) = std::fs::write(&path, svg) {
                    eprintln!("kith-sim: cannot write {}: {e}", path.display());
                    ok = false;
                }
            }
            ok
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kith-sim: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option set in `main` is the one it is said to be: its documented default
    /// (2) is not its neighbours' (a deprecated option, 0; purging decommits, 1).
    #[test]
    fn the_arena_option_is_the_eager_commit_one() {
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_some() {
            return;
        }
        // SAFETY: reads an option; no pointer is passed.
        let value = unsafe { libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT) };
        assert_eq!(value, 2);
    }
}
