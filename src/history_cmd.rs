//! `kith log`, `kith conflicts` and `kith contact restore`: what changed, which edits
//! lost to a concurrent one, and bringing a lost value back.

use std::path::Path;

use anyhow::Result;
use kith_node::control::Request;
use serde_json::Value;

use crate::ops::{call, list, no_progress, print_json, print_table, s};
use crate::output::outln;
use crate::table::{Table, ago_iso, now_ms};

/// A contact as one line: its name and addresses.
fn who(v: &Value) -> String {
    match v["name"].as_str() {
        Some(_) => format!("{} ({})", s(&v["name"]), list(v, "jids")),
        None => list(v, "jids"),
    }
}

/// `kith log [JID]`.
pub(crate) fn log(dir: &Path, jid: Option<String>, limit: usize, json: bool) -> Result<()> {
    let v = call(dir, Request::Log { jid, limit }, &mut no_progress)?;
    if json {
        return print_json(&v);
    }
    let entries = v.as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        outln!("No changes recorded.");
    }
    let now = now_ms();
    let mut table = Table::new(&["WHEN", "DEVICE", "CONTACT", "CHANGES"]);
    for e in &entries {
        table.row(vec![
            ago_iso(&e["at"], now),
            s(&e["device"]).into_owned(),
            who(e),
            list(e, "changes"),
        ]);
    }
    if !entries.is_empty() {
        print_table(&table)?;
    }
    Ok(())
}

/// `kith conflicts`.
pub(crate) fn conflicts(dir: &Path, json: bool) -> Result<()> {
    let v = call(dir, Request::Conflicts, &mut no_progress)?;
    if json {
        return print_json(&v);
    }
    let contacts = v.as_array().cloned().unwrap_or_default();
    if contacts.is_empty() {
        outln!("No conflicts.");
    }
    for c in &contacts {
        outln!("{}", who(c));
        for l in c["conflicts"].as_array().into_iter().flatten() {
            outln!(
                "  {}. lost: {} (by {} at {}), to an edit by {} at {}",
                l["n"],
                s(&l["lost"]),
                s(&l["lost_by"]),
                s(&l["lost_at"]),
                s(&l["won_by"]),
                s(&l["won_at"])
            );
        }
    }
    if !contacts.is_empty() {
        outln!("Bring one back with: kith contact restore JID N");
    }
    Ok(())
}

/// `kith contact restore JID [N]`.
pub(crate) fn restore(dir: &Path, jid: String, n: usize) -> Result<()> {
    call(
        dir,
        Request::RestoreContact {
            jid: jid.clone(),
            n,
        },
        &mut no_progress,
    )?;
    outln!("Restored conflict {n} of {jid}");
    Ok(())
}
