//! `kith status` and `kith device list`: this device, and where every other device
//! of the account stands against it. With a node running, both first reconcile
//! with every connected device (an in-sync check is one round trip) and wait up to
//! [`CHECK_WAIT`] for the answers, so "up to date" means now, not a minute ago.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use kith_node::api::answer::{Checking, DeviceList};
use kith_node::api::status::{Member, Status, SyncWord};
use kith_node::api::{Payload, Request};

use crate::Exit;
use crate::ops::{ago_of, call, joined, no_progress, opt, print_json, print_table, text, via_node};
use crate::output::outln;
use crate::table::{Table, ago, ms_of, now_ms, output_width};

/// Longest `status` and `device list` wait for connected devices to answer a check.
const CHECK_WAIT: Duration = Duration::from_secs(3);

/// When a device was last heard from by a reconciliation, in Unix ms.
fn as_of(d: &Member) -> Option<u64> {
    d.sync.as_ref().and_then(|s| ms_of(&s.as_of))
}

/// A request whose answer holds the roster: `Status` or `Devices`.
trait WithRoster: Payload + serde::Serialize {
    fn roster(&self) -> &[Member];
    fn roster_mut(&mut self) -> &mut Vec<Member>;
}

impl WithRoster for Status {
    fn roster(&self) -> &[Member] {
        &self.roster
    }
    fn roster_mut(&mut self) -> &mut Vec<Member> {
        &mut self.roster
    }
}

impl WithRoster for DeviceList {
    fn roster(&self) -> &[Member] {
        &self.0
    }
    fn roster_mut(&mut self) -> &mut Vec<Member> {
        &mut self.0
    }
}

/// `request` answered after a check of every connected device, when a node runs,
/// and when that check began (`None` without one).
fn checked<T: WithRoster>(dir: &Path, request: Request) -> Result<(T, Option<u64>)> {
    let started = now_ms();
    let checking = dir.join("control.sock").exists()
        && via_node(dir, &Request::CheckSync, &mut no_progress)?
            .map(Checking::try_from)
            .transpose()
            .map_err(Exit::from)?
            .is_some_and(|c| c.checking > 0);
    let deadline = Instant::now() + CHECK_WAIT;
    loop {
        let v = T::try_from(call(dir, request.clone(), &mut no_progress)?).map_err(Exit::from)?;
        // Heard from since the check began, and not in the middle of an exchange.
        let answered =
            |d: &Member| d.connected.is_none() || (as_of(d) >= Some(started) && !d.exchanging);
        if !checking || v.roster().iter().all(answered) || Instant::now() >= deadline {
            return Ok((v, checking.then_some(started)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For people: a connected device that did not answer the check (`started`) is
/// shown as not checked, not as it stood when last heard from.
fn forget_stale(roster: &mut [Member], started: Option<u64>) {
    let Some(started) = started else { return };
    for d in roster {
        if d.connected.is_some() && as_of(d) < Some(started) {
            d.sync = None;
        }
    }
}

/// How a roster entry stands, in a word.
fn presence(d: &Member) -> &'static str {
    if d.revoked {
        "revoked"
    } else if d.this_device {
        "this"
    } else if d.connected.is_some() {
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
    /// Never heard from (or a connected device that did not answer the check).
    Unknown,
}

/// The one reading of a roster entry's `sync` that `status` and `device list` share.
fn stand(d: &Member) -> Stand {
    let Some(sync) = &d.sync else {
        return Stand::Unknown;
    };
    if sync.up_to_date_now {
        Stand::UpToDate
    } else if sync.behind_now > 0 {
        Stand::Behind(sync.behind_now)
    } else {
        match sync.state {
            SyncWord::Ahead => Stand::Ahead(sync.by),
            SyncWord::Behind => Stand::Behind(sync.by),
            SyncWord::UpToDate | SyncWord::Differs => Stand::Differs,
        }
    }
}

/// "record" or "records".
fn records(n: u64) -> String {
    format!("{n} record{}", if n == 1 { "" } else { "s" })
}

/// [`stand`] for the SYNC column (`-` when not heard from).
fn sync_words(d: &Member) -> String {
    if d.revoked {
        // It syncs no more: what it held then says nothing now.
        return "-".into();
    }
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
pub(crate) fn lead(devices: &[Member], now: u64) -> String {
    let others: Vec<&Member> = devices
        .iter()
        .filter(|d| !d.this_device && !d.revoked)
        .collect();
    if others.is_empty() {
        return "This is the account's only device: pair another with `kith pair invite`.".into();
    }
    let name = |d: &Member| text(&d.name).into_owned();
    let mut in_sync = Vec::new();
    let mut not = Vec::new();
    for d in &others {
        if d.connected.is_some() {
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
            let seen = d.last_seen.as_deref().and_then(ms_of).map_or_else(
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
    let (mut v, started) = checked::<DeviceList>(dir, Request::Devices)?;
    if json {
        return print_json(&v);
    }
    forget_stale(&mut v.0, started);
    let now = now_ms();
    let mut table = Table::new(&["ID", "NAME", "ROLE", "STATE", "SYNC", "LAST SEEN"]).keep(0);
    for d in &v.0 {
        table.row(vec![
            text(&d.id).into_owned(),
            text(&d.name).into_owned(),
            d.role.as_str().to_owned(),
            presence(d).to_owned(),
            sync_words(d),
            if d.connected.is_some() {
                "now".to_owned()
            } else {
                ago_of(d.last_seen.as_deref(), now)
            },
        ]);
    }
    print_table(&table)
}

/// How this device is reached beyond its LAN: what AutoNAT found, and the relay
/// devices holding a reservation for it; `None` when neither is known yet.
fn reach_line(v: &Status) -> Option<String> {
    let relays: Vec<String> = v
        .node
        .relayed_by
        .iter()
        .map(|id| match v.roster.iter().find(|m| &m.id == id) {
            Some(m) if !m.name.is_empty() => format!("{} ({})", text(&m.name), text(id)),
            _ => format!("device {}", text(id)),
        })
        .collect();
    let nat = match v.node.reachable.as_deref() {
        Some("public") => Some("the devices connected could dial this one back"),
        Some("private") => {
            Some("the devices connected could not dial this one back (behind a NAT or firewall?)")
        }
        _ => None,
    };
    match (nat, relays.is_empty()) {
        (None, true) => None,
        (Some(nat), true) => Some(nat.to_owned()),
        (None, false) => Some(format!("through {}", relays.join(", "))),
        (Some(nat), false) => Some(format!("{nat}; through {}", relays.join(", "))),
    }
}

/// `kith status`: the lead line, this device, its node, its contacts and the
/// roster; with `verbose`, the engine's counts too.
pub(crate) fn status(dir: &Path, json: bool, verbose: bool) -> Result<()> {
    let (mut v, started) = checked::<Status>(dir, Request::Status)?;
    if json {
        return print_json(&v);
    }
    forget_stale(v.roster_mut(), started);
    let now = now_ms();
    if let Some(revoked) = &v.device.revoked_by {
        let by = match revoked.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => format!("{} ({})", text(name), text(&revoked.id)),
            None => format!("device {}", text(&revoked.id)),
        };
        outln!(
            "This device was revoked by {by} {}: it no longer syncs with the account and takes no changes.",
            ago_of(Some(&revoked.at), now)
        );
    } else {
        outln!("{}", lead(&v.roster, now));
    }
    let d = &v.device;
    outln!(
        "device   {} ({}) of {}",
        text(&d.id),
        text(&d.name),
        text(&d.account)
    );
    outln!("data     {}", text(&d.data_dir));
    let relay = d.role == kith_node::api::status::Role::Relay;
    if v.node.running {
        outln!("node     running, listening on {}", joined(&v.node.listen));
    }
    if v.node.running
        && let Some(reach) = reach_line(&v)
    {
        outln!("reach    {reach}");
    }
    if v.node.running && relay {
        outln!(
            "xmpp     port {}: the sealed items only (a relay has no secret to give a client)",
            v.node
                .xmpp_port
                .map_or_else(|| "-".to_owned(), |p| p.to_string())
        );
    } else if v.node.running {
        outln!(
            "xmpp     XEP-0174 streams and the PEP service on port {}, as {}",
            v.node
                .xmpp_port
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            opt(v.node.xmpp_instance.as_deref())
        );
    } else if relay {
        outln!("node     not running");
    } else {
        outln!("node     not running (edits are stored and sync at the next `kith run`)");
    }
    if relay {
        outln!(
            "relay    this device is a relay: it keeps {} sealed records for the account's \
             devices and holds no secret, so it cannot read any of them",
            v.records.values().sum::<u64>()
        );
    } else {
        outln!(
            "contacts {} in {} group{}",
            v.contacts,
            v.groups,
            if v.groups == 1 { "" } else { "s" }
        );
    }
    if v.waiting_for_secret > 0 && !relay {
        outln!(
            "waiting  {} items wait for a secret this device does not have yet",
            v.waiting_for_secret
        );
    }
    if v.quarantined_records > 0 {
        outln!(
            "moved aside {} stored records that did not decode (kept in the quarantine table; \
             the other devices hold what they carried)",
            v.quarantined_records
        );
    }
    if verbose {
        outln!(
            "items    {} contact items with padding; {} held future records, {} set aside",
            v.live_items.contacts,
            v.held_future_records,
            v.set_aside_records
        );
        let records: Vec<String> = v.records.iter().map(|(k, n)| format!("{k} {n}")).collect();
        outln!(
            "records  {} ({} tombstones, {} stored rows)",
            records.join(", "),
            v.tombstones,
            v.stored_rows
        );
    }
    outln!("roster   ({} connected)", v.connected_peers);
    // Without titles: the rows stand under the lines' labels.
    let mut table = Table::new(&["", "", "", "", ""]).keep(0);
    for r in &v.roster {
        table.row(vec![
            text(&r.id).into_owned(),
            text(&r.name).into_owned(),
            presence(r).to_owned(),
            sync_words(r),
            if r.connected.is_some() || r.this_device {
                "now".to_owned()
            } else {
                ago_of(r.last_seen.as_deref(), now)
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
