//! `kith bench`: figures of real nodes on loopback (run it from a release build).
//!
//! 1. one edit on A until visible on B (both durable), median and worst of `--edits`;
//! 2. `--contacts` imported on A until present on B and C, for each size;
//! 3. a device paired afterwards until it holds the largest of those imports;
//! 4. at `--scale` contacts on one node: the import (time, peak memory), edits through
//!    the control socket one after another (rate, median, 99th percentile), a command
//!    on the stopped node, and the memory of a node restarted holding them.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use kith_node::control::{ImportFormat, Request};

use crate::cluster::{self, Node};
use crate::output::outln;

/// Options of `kith bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Single edits to time.
    #[arg(long, default_value_t = 20)]
    edits: usize,
    /// Import sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    contacts: Vec<usize>,
    /// Contacts of the scale measures (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    scale: usize,
    /// Edits timed at that scale.
    #[arg(long, default_value_t = 2_000)]
    scale_edits: usize,
}

const LIMIT: Duration = Duration::from_secs(900);

fn roster(n: usize, tag: &str) -> String {
    let mut s = String::from("<query xmlns='jabber:iq:roster'>");
    for i in 0..n {
        let _ = write!(
            s,
            "<item jid='c{i}-{tag}@example.org' name='Contact {i}'><group>G{}</group></item>",
            i % 20
        );
    }
    s.push_str("</query>");
    s
}

fn import(node: &Node, n: usize, tag: &str) -> Result<Duration> {
    let start = Instant::now();
    node.call(Request::Import {
        format: ImportFormat::Roster,
        text: roster(n, tag),
        replace: false,
    })?;
    Ok(start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub(crate) fn run(args: Args) -> Result<()> {
    if cfg!(debug_assertions) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: a debug build; figures mean little (use cargo run --release -- bench)"
        );
    }
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let dir = |n: &str| root.join(n);
    cluster::init(&dir("a"), "bench@example.org", "a")?;
    let a = Node::start(&dir("a"), false)?;
    cluster::pair(&a, &dir("b"), "b")?;
    let b = Node::start(&dir("b"), false)?;
    cluster::pair(&a, &dir("c"), "c")?;
    let c = Node::start(&dir("c"), false)?;
    for n in [&b, &c] {
        n.wait("pairing", LIMIT, |n| {
            Ok(n.call(Request::Status)?["waiting_for_secret"] == 0
                && n.call(Request::Status)?["records"]["keys"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0)
        })?;
    }
    // Connected both ways before timing.
    a.wait("connections", LIMIT, |n| {
        Ok(n.call(Request::Status)?["connected_peers"] == 2)
    })?;

    outln!("kith bench: nodes on 127.0.0.1, SQLite synchronous=FULL");
    let mut times = Vec::new();
    for i in 0..args.edits {
        let jid = format!("edit{i}@example.org");
        let start = Instant::now();
        a.call(Request::AddContact {
            jid: jid.clone(),
            name: None,
            groups: vec![],
        })?;
        b.wait("an edit", LIMIT, |n| Ok(n.jids()?.contains(&jid)))?;
        times.push(start.elapsed());
    }
    times.sort();
    if !times.is_empty() {
        outln!(
            "one edit on A until visible on B (durable on both): median {}, worst {} ({} edits)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            times.len()
        );
    }
    let base = a.count()?;
    let mut total = base;
    for (k, n) in args.contacts.iter().enumerate() {
        let start = Instant::now();
        let t_import = import(&a, *n, &format!("s{k}"))?;
        total += n;
        for node in [&b, &c] {
            node.wait("the import", LIMIT, |x| Ok(x.count()? >= total))?;
        }
        outln!(
            "{n} contacts imported on A ({}) until present on B and C: {}",
            ms(t_import),
            ms(start.elapsed())
        );
    }
    let start = Instant::now();
    cluster::pair(&a, &dir("d"), "d")?;
    let d = Node::start(&dir("d"), false)?;
    d.wait("the new device's contacts", LIMIT, |x| {
        Ok(x.count()? >= total)
    })?;
    outln!(
        "a newly paired device receiving {total} contacts (pair, start, sync): {}",
        ms(start.elapsed())
    );
    drop((a, b, c, d));
    if args.scale > 0 {
        scale(&root.join("m"), args.scale, args.scale_edits)?;
    }
    Ok(())
}

/// The `p`-th percentile of sorted `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    times[(times.len() * p / 100).min(times.len() - 1)]
}

fn scale(dir: &Path, n: usize, edits: usize) -> Result<()> {
    cluster::init(dir, "memory@example.org", "m")?;
    let mut m = Node::start(dir, false)?;
    let idle = m.rss_kib().unwrap_or(0);
    let t = import(&m, n, "m")?;
    m.wait("the import", LIMIT, |x| Ok(x.count()? >= n))?;
    let (after, peak) = (m.rss_kib().unwrap_or(0), m.peak_kib().unwrap_or(0));
    outln!(
        "{n} contacts imported on one node in {}: resident memory {} MiB empty, {} MiB after, {} MiB at the peak",
        ms(t),
        idle / 1024,
        after / 1024,
        peak / 1024
    );
    // Edits one after another through the control socket, as the CLI sends them.
    let mut times = Vec::with_capacity(edits);
    let all = Instant::now();
    for i in 0..edits {
        let start = Instant::now();
        m.call(Request::EditContact {
            jid: format!("c{}-m@example.org", (i * 7_919) % n),
            name: Some(format!("Edited {i}")),
            clear_name: false,
            add_groups: vec![],
            remove_groups: vec![],
            add_jids: vec![],
            remove_jids: vec![],
            merge: false,
        })?;
        times.push(start.elapsed());
    }
    let elapsed = all.elapsed();
    times.sort();
    if !times.is_empty() {
        outln!(
            "{edits} edits through the control socket at {n} contacts: {:.0} edits/s, median {}, 99th percentile {}, worst {}",
            edits as f64 / elapsed.as_secs_f64(),
            ms(percentile(&times, 50)),
            ms(percentile(&times, 99)),
            ms(times[times.len() - 1])
        );
    }
    m.stop();
    // A command on the stopped node: the CLI opens the store itself.
    let exe = std::env::current_exe()?;
    let mut offline = Vec::new();
    for args in [
        &["contact", "show", "c1-m@example.org"][..],
        &["contact", "add", "new-offline@example.org"],
        &["status"],
    ] {
        let start = Instant::now();
        let out = std::process::Command::new(&exe)
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .output()?;
        anyhow::ensure!(out.status.success(), "kith {args:?} failed");
        offline.push(format!(
            "{} {}",
            args[..2.min(args.len())].join(" "),
            ms(start.elapsed())
        ));
    }
    outln!(
        "commands on the stopped node at {n} contacts: {}",
        offline.join(", ")
    );
    let m = Node::start(dir, false)?;
    m.wait("the contacts", LIMIT, |x| Ok(x.count()? >= n))?;
    outln!(
        "a node restarted holding {n} contacts: {} MiB resident",
        m.rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}
