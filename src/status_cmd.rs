//! `kith status` and `kith device list`: this device, and where every other device
//! of the account stands against it. With a node running, both first reconcile
//! with every connected device (an in-sync check is one round trip) and wait up to
//! [`CHECK_WAIT`] for the answers, so "up to date" means now, not a minute ago.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use kith_node::control::Request;
use serde_json::Value;

use crate::ops::{call, list, no_progress, print_json, print_table, s, via_node};
use crate::output::outln;
use crate::table::{Table, ago, ago_iso, ms_of, now_ms, output_width};

/// Longest `status` and `device list` wait for connected devices to answer a check.
const CHECK_WAIT: Duration = Duration::from_secs(3);

/// The devices of a `Devices` reply, or of the roster of a `Status` reply.
fn roster(v: &Value) -> &[Value] {
    v.as_array()
        .or_else(|| v["roster"].as_array())
        .map_or(&[], Vec::as_slice)
}

/// When `v["sync"]["as_of"]` was, in Unix ms.
fn as_of(d: &Value) -> Option<u64> {
    ms_of(&d["sync"]["as_of"])
}

/// `request` answered after a check of every connected device, when a node runs,
/// and when that check began (`None` without one).
fn checked(dir: &Path, request: Request) -> Result<(Value, Option<u64>)> {
    let started = now_ms();
    let checking = dir.join("control.sock").exists()
        && via_node(dir, &Request::CheckSync, &mut no_progress)?
            .is_some_and(|c| c["checking"].as_u64().unwrap_or(0) > 0);
    let deadline = Instant::now() + CHECK_WAIT;
    loop {
        let v = call(dir, request.clone(), &mut no_progress)?;
        // Heard from since the check began, and not in the middle of an exchange.
        let answered = |d: &Value| {
            !d["connected"].is_string() || (as_of(d) >= Some(started) && d["exchanging"] != true)
        };
        if !checking || roster(&v).iter().all(answered) || Instant::now() >= deadline {
            return Ok((v, checking.then_some(started)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For people: a connected device that did not answer the check (`started`) is
/// shown as not checked, not as it stood when last heard from.
fn forget_stale(v: &mut Value, started: Option<u64>) {
    let Some(started) = started else { return };
    let entries = if v.is_array() { v } else { &mut v["roster"] };
    let Some(entries) = entries.as_array_mut() else {
        return;
    };
    for d in entries {
        if d["connected"].is_string() && as_of(d) < Some(started) {
            d["sync"] = Value::Null;
        }
    }
}

/// How a roster entry stands, in a word.
fn presence(d: &Value) -> &'static str {
    if d["revoked"] == true {
        "revoked"
    } else if d["this_device"] == true {
        "this"
    } else if d["connected"].is_string() {
        "connected"
    } else {
        "away"
    }
}

/// Where a device stands against what this device holds now, as far as is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stand {
    /// It held what this device holds now.
    UpToDate,
    /// It lacks this many records (at least, for a device away).
    Behind(u64),
    /// It held this many records this device lacked.
    Ahead(u64),
    /// As many records, not the same (changes still crossing).
    Differs,
    /// Not heard from since the node started.
    Unknown,
}

/// The one reading of a roster entry's `sync` that `status` and `device list` share.
fn stand(d: &Value) -> Stand {
    let sync = &d["sync"];
    if !sync.is_object() {
        return Stand::Unknown;
    }
    let by = sync["by"].as_u64().unwrap_or(0);
    let behind_now = sync["behind_now"].as_u64().unwrap_or(0);
    if sync["up_to_date_now"] == true {
        Stand::UpToDate
    } else if behind_now > 0 {
        Stand::Behind(behind_now)
    } else {
        match sync["state"].as_str() {
            Some("ahead") => Stand::Ahead(by),
            Some("behind") => Stand::Behind(by),
            _ => Stand::Differs,
        }
    }
}

/// "record" or "records".
fn records(n: u64) -> String {
    format!("{n} record{}", if n == 1 { "" } else { "s" })
}

/// [`stand`] for the SYNC column (`-` when not heard from).
fn sync_words(d: &Value) -> String {
    match stand(d) {
        Stand::UpToDate => "up to date".into(),
        Stand::Behind(n) => format!("{n} behind"),
        Stand::Ahead(n) => format!("{n} ahead"),
        Stand::Differs => "differs".into(),
        Stand::Unknown => "-".into(),
    }
}

/// The one line `kith status` leads with: every other device in sync, or which
/// are not and how.
pub(crate) fn lead(devices: &[Value], now: u64) -> String {
    let others: Vec<&Value> = devices
        .iter()
        .filter(|d| d["this_device"] != true && d["revoked"] != true)
        .collect();
    if others.is_empty() {
        return "This is the account's only device: pair another with `kith pair invite`.".into();
    }
    let name = |d: &Value| s(&d["name"]).into_owned();
    let mut in_sync = Vec::new();
    let mut not = Vec::new();
    for d in &others {
        if d["connected"].is_string() {
            match stand(d) {
                Stand::UpToDate => in_sync.push(name(d)),
                Stand::Behind(n) => not.push(format!("{} lacks {}", name(d), records(n))),
                Stand::Ahead(n) => not.push(format!(
                    "{} holds {} this device lacks",
                    name(d),
                    records(n)
                )),
                Stand::Differs => not.push(format!("{} has changes still crossing", name(d))),
                Stand::Unknown => not.push(format!("{} is connected, not checked", name(d))),
            }
        } else {
            let seen = ms_of(&d["last_seen"]).map_or_else(
                || "never seen".to_owned(),
                |t| format!("last seen {}", ago(t, now)),
            );
            let then = match stand(d) {
                Stand::UpToDate => ", it has everything".to_owned(),
                Stand::Behind(n) => format!(", it lacks at least {}", records(n)),
                Stand::Ahead(n) => format!(", it held {} this device lacks", records(n)),
                Stand::Differs => ", it held changes this device lacks".to_owned(),
                Stand::Unknown => String::new(),
            };
            not.push(format!("{} is away ({seen}{then})", name(d)));
        }
    }
    if !not.is_empty() {
        let mut line = format!("Not all in sync: {}", not.join("; "));
        if !in_sync.is_empty() {
            line.push_str(&format!("; in sync with {}", in_sync.join(", ")));
        }
        line
    } else if others.len() == 1 {
        format!("In sync with {}.", in_sync.join(""))
    } else {
        format!("All {} devices in sync.", others.len() + 1)
    }
}

/// `kith device list`.
pub(crate) fn devices(dir: &Path, json: bool) -> Result<()> {
    let (mut v, started) = checked(dir, Request::Devices)?;
    if json {
        return print_json(&v);
    }
    forget_stale(&mut v, started);
    let now = now_ms();
    let mut table = Table::new(&["ID", "NAME", "ROLE", "STATE", "SYNC", "LAST SEEN"]).keep(0);
    for d in roster(&v) {
        table.row(vec![
            s(&d["id"]).into_owned(),
            s(&d["name"]).into_owned(),
            s(&d["role"]).into_owned(),
            presence(d).to_owned(),
            sync_words(d),
            if d["connected"].is_string() {
                "now".to_owned()
            } else {
                ago_iso(&d["last_seen"], now)
            },
        ]);
    }
    print_table(&table)
}

/// `kith status`: the lead line, this device, its node, its contacts and the
/// roster; with `verbose`, the engine's counts too.
pub(crate) fn status(dir: &Path, json: bool, verbose: bool) -> Result<()> {
    let (mut v, started) = checked(dir, Request::Status)?;
    if json {
        return print_json(&v);
    }
    forget_stale(&mut v, started);
    let now = now_ms();
    let revoked = &v["device"]["revoked_by"];
    if revoked.is_object() {
        let by = match revoked["name"].as_str().filter(|n| !n.is_empty()) {
            Some(name) => format!("{} ({})", s(&Value::from(name)), s(&revoked["id"])),
            None => format!("device {}", s(&revoked["id"])),
        };
        outln!(
            "This device was revoked by {by} {}: it no longer syncs with the account and takes no changes.",
            ago_iso(&revoked["at"], now)
        );
    } else {
        outln!("{}", lead(roster(&v["roster"]), now));
    }
    let d = &v["device"];
    outln!(
        "device   {} ({}) of {}",
        s(&d["id"]),
        s(&d["name"]),
        s(&d["account"])
    );
    outln!("data     {}", s(&d["data_dir"]));
    if v["node"]["running"] == true {
        outln!(
            "node     running, listening on {}",
            list(&v["node"], "listen")
        );
        outln!(
            "xmpp     XEP-0174 streams and the PEP service on port {}, as {}",
            v["node"]["xmpp_port"],
            s(&v["node"]["xmpp_instance"])
        );
    } else {
        outln!("node     not running (edits are stored and sync at the next `kith run`)");
    }
    let groups = v["groups"].as_u64().unwrap_or(0);
    outln!(
        "contacts {} in {groups} group{}",
        v["contacts"],
        if groups == 1 { "" } else { "s" }
    );
    if v["waiting_for_secret"].as_u64().unwrap_or(0) > 0 {
        outln!(
            "waiting  {} items wait for a secret this device does not have yet",
            v["waiting_for_secret"]
        );
    }
    if v["quarantined_records"].as_u64().unwrap_or(0) > 0 {
        outln!(
            "moved aside {} stored records that did not decode (kept in the quarantine table; \
             the other devices hold what they carried)",
            v["quarantined_records"]
        );
    }
    if verbose {
        outln!(
            "items    {} contact items with padding; {} held future records, {} set aside",
            v["live_items"]["contacts"],
            v["held_future_records"],
            v["set_aside_records"]
        );
        let records: Vec<String> = v["records"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        outln!(
            "records  {} ({} tombstones, {} stored rows)",
            records.join(", "),
            v["tombstones"],
            v["stored_rows"]
        );
    }
    outln!("roster   ({} connected)", v["connected_peers"]);
    // Without titles: the rows stand under the lines' labels.
    let mut table = Table::new(&["", "", "", "", ""]).keep(0);
    for r in roster(&v["roster"]) {
        table.row(vec![
            s(&r["id"]).into_owned(),
            s(&r["name"]).into_owned(),
            presence(r).to_owned(),
            sync_words(r),
            if r["connected"].is_string() || r["this_device"] == true {
                "now".to_owned()
            } else {
                ago_iso(&r["last_seen"], now)
            },
        ]);
    }
    // Under the other lines' labels (nine cells in), without the header.
    const INDENT: &str = "         ";
    let width = output_width().map(|w| w.saturating_sub(INDENT.len()));
    for line in table.lines(width).iter().skip(1) {
        outln!("{INDENT}{line}");
    }
    Ok(())
}
