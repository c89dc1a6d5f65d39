//! `kith bench`: figures of real nodes on loopback (run it from a release build),
//! each beside the floors measured in the same run ([`floors`]).
//!
//! 1. one edit on A until visible on B (both durable), median and worst of `--edits`
//!    (B watched from a second thread while A is asked; the figure is the later of
//!    A's answer and B's);
//!    then `--paced` more, each after a pause of 2.5 s (a person's pace: the nodes
//!    checkpoint their stores meanwhile), beside a durable commit after the same
//!    pause;
//! 2. `--contacts` imported on A until present on B and C, for each size;
//! 3. a device paired afterwards until it holds the largest of those imports;
//! 4. at `--scale` contacts on one node: the import (time, peak memory), edits through
//!    the control socket one after another (rate, median, 99th percentile), a command
//!    on the stopped node, and the memory of a node restarted holding them.
//!
//! Every timed wait is on the node's own word ([`Request::Wait`] answers when it
//! stored something), never a polling interval (setting up, pairing and the
//! connections are waited for by polling, untimed).

mod cpu;
mod floors;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use kith_node::api::answer::{Changes, ContactChanged, Imported};
use kith_node::api::status::Status;
use kith_node::api::{ImportFormat, Request};
use serde::Serialize;

use crate::cluster::{self, Node};

use crate::output::outln;

/// Waits until `node` has written its item index and history (on the node's word:
/// the write counts as a change, which a wait answers).
fn index_written(node: &Node) -> Result<Duration> {
    node.wait_counts(0, "the item index", LIMIT, |c| c.index_behind.is_none())
}

/// Options of `kith bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Single edits to time, one right after another.
    #[arg(long, default_value_t = 50)]
    edits: usize,
    /// Single edits to time at a person's pace: each after a pause of 2.5 s, in
    /// which the nodes' housekeeping (the store's checkpoint) runs; each beside a
    /// durable commit after the same pause (5 s a pair).
    #[arg(long, default_value_t = 5)]
    paced: usize,
    /// Import sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    contacts: Vec<usize>,
    /// Contacts of the scale measures (0 skips them).
    #[arg(long, default_value_t = 100_000)]
    scale: usize,
    /// Edits timed at that scale.
    #[arg(long, default_value_t = 2_000)]
    scale_edits: usize,
    /// Prints the figures as one JSON document (with the floors) instead of lines.
    #[arg(long)]
    json: bool,
}

const LIMIT: Duration = Duration::from_secs(900);

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
struct Figures {
    /// The lower of each floor measured before the nodes started and after the new
    /// device's sync: the ratios of the large rows are to these.
    floors: Option<floors::Floors>,
    /// The floors measured before the nodes started.
    floors_before: Option<floors::Floors>,
    /// The floors measured again after the new device's sync.
    floors_after: Option<floors::Floors>,
    /// One edit on A until visible on B, durable on both.
    edit: Option<Edit>,
    /// The same at a person's pace.
    paced: Option<Paced>,
    imports: Vec<Import>,
    new_device: Option<NewDevice>,
    scale: Option<Scale>,
}

#[derive(Debug, Serialize)]
struct Edit {
    edits: usize,
    median_ms: f64,
    worst_ms: f64,
    /// The median over two durable commits (one on each device) and one round trip.
    median_over_floor: f64,
    /// Of it, the median of the command on A alone (answered when durable on A).
    command_median_ms: f64,
    /// The median of one control-socket call that does nothing (a wait that is due
    /// at once): what each of the three calls timed per edit costs at least.
    control_call_median_ms: f64,
}

/// Edits made after a pause ([`PACE`]), as a person makes them.
#[derive(Debug, Serialize)]
struct Paced {
    edits: usize,
    /// Their median, as [`Edit::median_ms`].
    median_ms: f64,
    /// Their worst.
    worst_ms: f64,
    /// The median of the command on A alone.
    command_median_ms: f64,
    /// The median durable commit (as in the floors) after the same pause.
    floor_commit_us: f64,
}

/// The pause before each paced edit: longer than the nodes' 2-s housekeeping, so
/// each edit comes after the store's log was checkpointed, as at a person's pace.
const PACE: Duration = Duration::from_millis(2_500);

#[derive(Debug, Serialize)]
struct Import {
    contacts: usize,
    /// The import on A alone.
    import_ms: f64,
    /// From the start of the import until B and C hold every contact.
    present_on_b_and_c_ms: f64,
    /// From the start of the import until A, B and C have also written their item
    /// index and history (a running node writes them behind the records).
    index_written_ms: f64,
    /// Per contact, over one signature check (what B and C do for each).
    per_contact_over_verify: f64,
    /// The least time these contacts can take on this machine
    /// ([`floors::Floors::chain`] of [`Figures::floors`]).
    floor_ms: f64,
    /// [`Import::present_on_b_and_c_ms`] over [`Import::floor_ms`].
    over_floor: f64,
    /// Processor time spent in it, until [`Import::index_written_ms`].
    cpu: cpu::Spent,
    /// The processor time A, B and C spent per contact beyond the floor's work
    /// for it ([`floors::Floors::chain_us`]), µs: what the design adds to sealing,
    /// signing, checking, opening and storing, with the row's other work (the
    /// bench's calls, the padding items); null when a node's did not read.
    beyond_floor_us: Option<f64>,
    /// How far off [`Import::beyond_floor_us`] may be, µs: a clock tick of each
    /// node's processor time, per contact.
    beyond_floor_resolution_us: f64,
}

#[derive(Debug, Serialize)]
struct NewDevice {
    contacts: usize,
    /// Pairing, starting and the first sync, until it holds every contact.
    ms: f64,
    /// Until it has also written its item index and history.
    index_written_ms: f64,
    per_contact_over_verify: f64,
    /// The least time these contacts can take on this machine
    /// ([`floors::Floors::new_device`] of [`Figures::floors`]).
    floor_ms: f64,
    /// [`NewDevice::ms`] over [`NewDevice::floor_ms`].
    over_floor: f64,
    /// Records it was sent that it already had: work done twice.
    duplicates_received: u64,
    /// Of [`NewDevice::ms`], the pairing (in this process).
    pair_ms: f64,
    /// Of it, starting the node after the pairing, until it listens.
    start_ms: f64,
    /// Processor time spent in it, until [`NewDevice::index_written_ms`].
    cpu: cpu::Spent,
    /// The processor time the new device spent per contact beyond the floor's
    /// work for it ([`floors::Floors::new_device_us`]), µs, with the row's other
    /// work (its start, the bench's calls); null when it did not read. The senders'
    /// work is not in it.
    beyond_floor_us: Option<f64>,
    /// How far off [`NewDevice::beyond_floor_us`] may be, µs (a clock tick per
    /// contact).
    beyond_floor_resolution_us: f64,
}

#[derive(Debug, Serialize)]
struct Scale {
    contacts: usize,
    import_ms: f64,
    rss_empty_kib: u64,
    rss_after_kib: u64,
    rss_peak_kib: u64,
    /// Resident memory per contact above the empty node, bytes.
    bytes_per_contact: f64,
    edits: usize,
    edits_per_s: f64,
    edit_median_ms: f64,
    edit_p99_ms: f64,
    edit_worst_ms: f64,
    /// `contact show`, `contact add`, `status` on the stopped node.
    offline_ms: Vec<(String, f64)>,
    rss_restarted_kib: u64,
}

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
    node.call::<Imported>(Request::Import {
        format: ImportFormat::Roster,
        text: roster(n, tag),
        replace: false,
    })?;
    Ok(start.elapsed())
}

/// One contact added on A until visible on B: (A's answer, the later of it and
/// B's), each from the start of the command.
fn one_edit(a: &Node, b: &Node, jid: &str) -> Result<(Duration, Duration)> {
    let before = b.counts()?;
    // B is watched from a second thread while A is asked, the way a second device
    // sees an edit: B's answer does not wait for A's to reach the bench. The edit
    // adds a contact no device holds, so it is visible on B when B holds one more
    // (the wait's answer says so: no call to look the contact up after it).
    // `refused` is set when A refused the edit: the watcher then stops within one
    // wait (1 s) instead of waiting for an edit that will not come.
    let refused = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<_> {
        let watcher = s.spawn(|| -> Result<Duration> {
            b.wait_counts(before.changes, "an edit", LIMIT, |c| {
                refused.load(Ordering::Relaxed) || c.contacts > before.contacts
            })?;
            Ok(start.elapsed())
        });
        let sent = a.call::<ContactChanged>(Request::AddContact {
            jid: jid.to_owned(),
            name: None,
            groups: vec![],
        });
        let command = start.elapsed();
        if sent.is_err() {
            refused.store(true, Ordering::Relaxed);
        }
        let visible = watcher
            .join()
            .map_err(|_| anyhow::anyhow!("the thread watching B panicked"))?;
        sent?;
        // Durable on both: A answered (durable on A), and B answers once stored.
        Ok((command, visible?.max(command)))
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
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
    let mut fig = Figures::default();
    let floors = floors::measure(&dir("floor"))?;
    fig.floors_before = Some(floors);
    let json = args.json;
    let say = |line: String| -> Result<()> {
        if !json {
            outln!("{line}");
        }
        Ok(())
    };
    say(format!(
        "kith bench: nodes on 127.0.0.1, SQLite synchronous=FULL\nfloors: durable commit {:.0} µs, Ed25519 verification {:.1} µs ({:.1} µs a record in a batch of {}), signature {:.1} µs, a contact sealed {:.1} µs, opened and read {:.1} µs, a record stored among {} {:.1} µs, loopback round trip {:.0} µs, {} cores",
        floors.durable_commit_us,
        floors.verify_us,
        floors.verify_batched_us,
        floors::BATCH,
        floors.sign_us,
        floors.seal_us,
        floors.open_us,
        floors::BULK,
        floors.stored_record_us,
        floors.loopback_round_trip_us,
        floors.cores
    ))?;
    cluster::init(&dir("a"), "bench@example.org", "a")?;
    let a = Node::start(&dir("a"), false)?;
    cluster::pair(&a, &dir("b"), "b")?;
    let b = Node::start(&dir("b"), false)?;
    cluster::pair(&a, &dir("c"), "c")?;
    let c = Node::start(&dir("c"), false)?;
    for n in [&b, &c] {
        n.wait("pairing", LIMIT, |n| {
            let s: Status = n.call(Request::Status)?;
            Ok(s.waiting_for_secret == 0 && s.records.get("keys").is_some_and(|k| *k > 0))
        })?;
    }
    // Connected both ways before timing.
    a.wait("connections", LIMIT, |n| {
        Ok(n.call::<Status>(Request::Status)?.connected_peers == 2)
    })?;

    let mut times = Vec::new();
    let mut commands = Vec::new();
    for i in 0..args.edits {
        let (command, visible) = one_edit(&a, &b, &format!("edit{i}@example.org"))?;
        commands.push(command);
        times.push(visible);
    }
    times.sort();
    commands.sort();
    let (mut paced, mut paced_commands, mut paced_floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut commits = floors::Commits::open(&dir("floor"))?;
    for i in 0..args.paced {
        // Not a synchronisation: the pause is the workload (a person's pace). The
        // floor after the same pause, on its own: this machine's disk answers a
        // sync after a pause several times slower than one in a stream.
        std::thread::sleep(PACE);
        paced_floor.push(commits.one()?);
        std::thread::sleep(PACE);
        let (command, visible) = one_edit(&a, &b, &format!("paced{i}@example.org"))?;
        paced_commands.push(command);
        paced.push(visible);
    }
    paced.sort();
    paced_commands.sort();
    let median_of = |v: &[Duration]| v.get(v.len() / 2).map_or(0.0, |d| ms(*d));
    let mut calls = Vec::new();
    for _ in 0..args.edits {
        let start = Instant::now();
        b.call::<Changes>(Request::Wait {
            after: u64::MAX,
            timeout_ms: 0,
        })?;
        calls.push(start.elapsed());
    }
    calls.sort();
    if let (Some(median), Some(worst), Some(command), Some(call)) = (
        times.get(times.len() / 2),
        times.last(),
        commands.get(commands.len() / 2),
        calls.get(calls.len() / 2),
    ) {
        let floor = 2.0 * floors.durable_commit_us + floors.loopback_round_trip_us;
        let edit = Edit {
            edits: times.len(),
            median_ms: ms(*median),
            worst_ms: ms(*worst),
            median_over_floor: ms(*median) * 1000.0 / floor,
            command_median_ms: ms(*command),
            control_call_median_ms: ms(*call),
        };
        say(format!(
            "one edit on A until visible on B (durable on both): median {:.2} ms (the command on A {:.2} ms; a control call doing nothing {:.2} ms), worst {:.2} ms ({} edits); {:.1}× two durable commits and a round trip",
            edit.median_ms,
            edit.command_median_ms,
            edit.control_call_median_ms,
            edit.worst_ms,
            edit.edits,
            edit.median_over_floor
        ))?;
        fig.edit = Some(edit);
    }
    if !paced.is_empty() {
        let p = Paced {
            edits: paced.len(),
            median_ms: median_of(&paced),
            worst_ms: paced.last().map_or(0.0, |d| ms(*d)),
            command_median_ms: median_of(&paced_commands),
            floor_commit_us: floors::median(paced_floor),
        };
        say(format!(
            "one edit after a pause of {:.1} s (a person's pace): median {:.2} ms (the command on A {:.2} ms), worst {:.2} ms ({} edits); a durable commit after the same pause {:.0} µs",
            PACE.as_secs_f64(),
            p.median_ms,
            p.command_median_ms,
            p.worst_ms,
            p.edits,
            p.floor_commit_us
        ))?;
        fig.paced = Some(p);
    }
    let base = a.count()?;
    let mut total = base;
    for (k, n) in args.contacts.iter().enumerate() {
        let seen = [b.changes()?, c.changes()?];
        let abc = [("a", &a), ("b", &b), ("c", &c)];
        let mark = cpu::Mark::now(&abc);
        let start = Instant::now();
        let t_import = import(&a, *n, &format!("s{k}"))?;
        total += n;
        for (node, seen) in [&b, &c].into_iter().zip(seen) {
            node.wait_contacts(seen, "the import", LIMIT, total)?;
        }
        let all = start.elapsed();
        for node in [&a, &b, &c] {
            index_written(node)?;
        }
        let written = start.elapsed();
        let cpu = mark.until(&cpu::Mark::now(&abc), written, floors.cores);
        let i = Import {
            contacts: *n,
            import_ms: ms(t_import),
            present_on_b_and_c_ms: ms(all),
            index_written_ms: ms(written),
            per_contact_over_verify: ms(all) * 1000.0 / *n as f64 / floors.verify_us,
            // Set once the floors were measured again, below.
            floor_ms: 0.0,
            over_floor: 0.0,
            cpu,
            beyond_floor_us: None,
            beyond_floor_resolution_us: 0.0,
        };
        say(format!(
            "{n} contacts imported on A ({:.1} ms) until present on B and C: {:.1} ms (item index and history written on all three after {:.1} ms; {})",
            i.import_ms,
            i.present_on_b_and_c_ms,
            i.index_written_ms,
            cpu::words(&i.cpu)
        ))?;
        fig.imports.push(i);
    }
    let mark = cpu::Mark::now(&[("a", &a), ("b", &b), ("c", &c)]);
    let start = Instant::now();
    cluster::pair(&a, &dir("d"), "d")?;
    let paired = start.elapsed();
    let d = Node::start(&dir("d"), false)?;
    let started = start.elapsed();
    d.wait_contacts(0, "the new device's contacts", LIMIT, total)?;
    let t = start.elapsed();
    index_written(&d)?;
    let written = start.elapsed();
    let cpu = mark.until(
        &cpu::Mark::now(&[("a", &a), ("b", &b), ("c", &c), ("d", &d)]),
        written,
        floors.cores,
    );
    let duplicates_received = d.call::<Status>(Request::Status)?.sync.duplicate_records;
    let mut nd = NewDevice {
        contacts: total,
        ms: ms(t),
        index_written_ms: ms(written),
        per_contact_over_verify: ms(t) * 1000.0 / total.max(1) as f64 / floors.verify_us,
        // Set once the floors were measured again, below.
        floor_ms: 0.0,
        over_floor: 0.0,
        duplicates_received,
        pair_ms: ms(paired),
        start_ms: ms(started - paired),
        cpu,
        beyond_floor_us: None,
        beyond_floor_resolution_us: 0.0,
    };
    say(format!(
        "a newly paired device receiving {total} contacts (pair {:.0} ms, start {:.0} ms, sync): {:.1} ms (item index and history written after {:.1} ms; {duplicates_received} records received twice; {})",
        nd.pair_ms,
        nd.start_ms,
        nd.ms,
        nd.index_written_ms,
        cpu::words(&nd.cpu)
    ))?;
    drop((a, b, c, d));
    // This machine's floors move by half from one minute to the next (other work
    // on the host): measured again with the nodes stopped, the lower of each is
    // what the machine can do.
    let after = floors::measure(&dir("floor-after"))?;
    let low = floors.lower(after);
    fig.floors_after = Some(after);
    fig.floors = Some(low);
    let mut against = Vec::new();
    for i in &mut fig.imports {
        i.floor_ms = low.chain(i.contacts);
        i.over_floor = i.present_on_b_and_c_ms / i.floor_ms;
        let abc = ["a", "b", "c"];
        i.beyond_floor_us = per_contact(&i.cpu, &abc, i.contacts).map(|us| us - low.chain_us());
        i.beyond_floor_resolution_us = resolution(&abc, i.contacts);
        against.push(format!(
            "{} contacts until on B and C {:.1}× the floor of {:.1} ms{}",
            i.contacts,
            i.over_floor,
            i.floor_ms,
            beyond_words(
                i.beyond_floor_us,
                i.beyond_floor_resolution_us,
                low.chain_us(),
                "A, B and C"
            )
        ));
    }
    nd.floor_ms = low.new_device(nd.contacts);
    nd.over_floor = nd.ms / nd.floor_ms;
    nd.beyond_floor_us =
        per_contact(&nd.cpu, &["d"], nd.contacts).map(|us| us - low.new_device_us());
    nd.beyond_floor_resolution_us = resolution(&["d"], nd.contacts);
    against.push(format!(
        "the new device {:.1}× the floor of {:.1} ms{}",
        nd.over_floor,
        nd.floor_ms,
        beyond_words(
            nd.beyond_floor_us,
            nd.beyond_floor_resolution_us,
            low.new_device_us(),
            "it"
        )
    ));
    say(format!(
        "floors again: Ed25519 verification {:.1} µs ({:.1} µs in a batch), signature {:.1} µs, a contact sealed {:.1} µs, opened and read {:.1} µs, a record stored among {} {:.1} µs\nagainst the lower of each (a contact sealed and signed once, checked and opened twice and stored three times, or checked, opened and stored on the new device, on {} cores): {}",
        after.verify_us,
        after.verify_batched_us,
        after.sign_us,
        after.seal_us,
        after.open_us,
        floors::BULK,
        after.stored_record_us,
        low.cores,
        against.join("; ")
    ))?;
    fig.new_device = Some(nd);
    if args.scale > 0 {
        let s = scale(&root.join("m"), args.scale, args.scale_edits)?;
        say(format!(
            "{} contacts imported on one node in {:.1} ms: resident memory {} MiB empty, {} MiB after ({:.0} bytes a contact above empty), {} MiB at the peak",
            s.contacts,
            s.import_ms,
            s.rss_empty_kib / 1024,
            s.rss_after_kib / 1024,
            s.bytes_per_contact,
            s.rss_peak_kib / 1024
        ))?;
        say(format!(
            "{} edits through the control socket at {} contacts: {:.0} edits/s, median {:.2} ms, 99th percentile {:.2} ms, worst {:.2} ms",
            s.edits, s.contacts, s.edits_per_s, s.edit_median_ms, s.edit_p99_ms, s.edit_worst_ms
        ))?;
        say(format!(
            "commands on the stopped node at {} contacts: {}",
            s.contacts,
            s.offline_ms
                .iter()
                .map(|(c, t)| format!("{c} {t:.1} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        say(format!(
            "a node restarted holding {} contacts: {} MiB resident",
            s.contacts,
            s.rss_restarted_kib / 1024
        ))?;
        fig.scale = Some(s);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&fig)?);
    }
    Ok(())
}

/// The processor time `nodes` spent in a row, per one of its `n` contacts, µs
/// (`None` when one of them did not read).
fn per_contact(spent: &cpu::Spent, nodes: &[&str], n: usize) -> Option<f64> {
    let mut sum = 0.0;
    for node in nodes {
        sum += (*spent.nodes_ms.get(node)?)?;
    }
    Some(sum * 1000.0 / n.max(1) as f64)
}

/// How far the processor time of `nodes` per one of `n` contacts may be off, µs:
/// each node's is read in whole clock ticks.
fn resolution(nodes: &[&str], n: usize) -> f64 {
    let tick_ms = cluster::cpu_tick().map_or(10.0, ms);
    tick_ms * nodes.len() as f64 * 1000.0 / n.max(1) as f64
}

/// " (`who` spent X ± E µs a contact beyond the floor's Y µs)", or nothing when
/// it did not read or the ticks make it say nothing (E above the floor itself).
fn beyond_words(beyond: Option<f64>, resolution_us: f64, floor_us: f64, who: &str) -> String {
    match beyond {
        Some(b) if resolution_us <= floor_us => format!(
            " ({who} spent {b:.0} ± {resolution_us:.0} µs of processor a contact beyond the floor's {floor_us:.0} µs)"
        ),
        _ => String::new(),
    }
}

/// The `p`-th percentile of sorted `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    times[(times.len() * p / 100).min(times.len() - 1)]
}

fn scale(dir: &Path, n: usize, edits: usize) -> Result<Scale> {
    cluster::init(dir, "memory@example.org", "m")?;
    let mut m = Node::start(dir, false)?;
    let idle = m.rss_kib().unwrap_or(0);
    let t = import(&m, n, "m")?;
    m.wait_contacts(0, "the import", LIMIT, n)?;
    // Memory once the item index is written too (its writing is in the peak).
    index_written(&m)?;
    let (after, peak) = (m.rss_kib().unwrap_or(0), m.peak_kib().unwrap_or(0));
    // Edits one after another through the control socket, as the CLI sends them.
    let mut times = Vec::with_capacity(edits);
    let all = Instant::now();
    for i in 0..edits {
        let start = Instant::now();
        m.call::<ContactChanged>(Request::EditContact {
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
        offline.push((args[..2.min(args.len())].join(" "), ms(start.elapsed())));
    }
    let m = Node::start(dir, false)?;
    m.wait_contacts(0, "the contacts", LIMIT, n)?;
    let pct = |p| {
        if times.is_empty() {
            0.0
        } else {
            ms(percentile(&times, p))
        }
    };
    Ok(Scale {
        contacts: n,
        import_ms: ms(t),
        rss_empty_kib: idle,
        rss_after_kib: after,
        rss_peak_kib: peak,
        bytes_per_contact: (after.saturating_sub(idle) * 1024) as f64 / n.max(1) as f64,
        edits,
        edits_per_s: edits as f64 / elapsed.as_secs_f64(),
        edit_median_ms: pct(50),
        edit_p99_ms: pct(99),
        edit_worst_ms: times.last().map_or(0.0, |t| ms(*t)),
        offline_ms: offline,
        rss_restarted_kib: m.rss_kib().unwrap_or(0),
    })
}
