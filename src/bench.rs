//! `kith bench`: figures of real nodes on loopback (run it from a release build).
//!
//! 1. one edit on A until visible on B (both durable), median and worst of `--edits`;
//! 2. `--contacts` imported on A until present on B and C, for each size;
//! 3. a device paired afterwards until it holds the largest of those imports;
//! 4. resident memory of a node holding `--rss-contacts` contacts.

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
    /// Contacts held when measuring resident memory (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    rss_contacts: usize,
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
    if args.rss_contacts > 0 {
        rss(&root.join("m"), args.rss_contacts)?;
    }
    Ok(())
}

fn rss(dir: &Path, n: usize) -> Result<()> {
    cluster::init(dir, "memory@example.org", "m")?;
    let m = Node::start(dir, false)?;
    let idle = m.rss_kib().unwrap_or(0);
    let t = import(&m, n, "m")?;
    m.wait("the import", LIMIT, |x| Ok(x.count()? >= n))?;
    let after = m.rss_kib().unwrap_or(0);
    drop(m);
    // Restarted: what a node holding them needs from the start.
    let m = Node::start(dir, false)?;
    m.wait("the contacts", LIMIT, |x| Ok(x.count()? >= n))?;
    let restarted = m.rss_kib().unwrap_or(0);
    outln!(
        "resident memory: {} MiB empty, {} MiB after importing {n} contacts ({}), {} MiB restarted holding them",
        idle / 1024,
        after / 1024,
        ms(t),
        restarted / 1024
    );
    Ok(())
}
