//! `kith log`, `kith conflicts` and `kith contact restore`: what changed, which edits
//! lost to a concurrent one, and bringing a lost value back.

use std::path::Path;

use anyhow::Result;
use kith_node::api::Request;
use kith_node::api::answer::{ChangeLog, ConflictList, Done, Loss};

use crate::ops::{ago_of, ask, joined, opt, print_json, print_table, text};
use crate::output::outln;
use crate::table::{Table, now_ms};
use kith_protocol::text::quoted;

/// A contact as one line: its name and addresses.
fn who(name: Option<&str>, jids: &[String]) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => format!("{} ({})", opt(Some(n)), joined(jids)),
        None => joined(jids),
    }
}

/// `kith log [JID]`.
pub(crate) fn log(dir: &Path, jid: Option<String>, limit: usize, json: bool) -> Result<()> {
    let log: ChangeLog = ask(dir, Request::Log { jid, limit })?;
    if json {
        return print_json(&log);
    }
    let entries = log.0;
    if entries.is_empty() {
        outln!("No changes recorded.");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["WHEN", "DEVICE", "CONTACT", "CHANGES"]);
    for e in &entries {
        table.row(vec![
            ago_of(Some(&e.at), now),
            text(&e.device).into_owned(),
            who(e.name.as_deref(), &e.jids),
            joined(&e.changes),
        ]);
    }
    print_table(&table)
}

/// `kith conflicts`.
pub(crate) fn conflicts(dir: &Path, json: bool) -> Result<()> {
    let list: ConflictList = ask(dir, Request::Conflicts)?;
    if json {
        return print_json(&list);
    }
    if list.contacts.is_empty() && list.groups.is_empty() {
        outln!("No conflicts.");
        return Ok(());
    }
    for c in &list.contacts {
        outln!("{}", who(c.name.as_deref(), &c.jids));
        for l in &c.conflicts {
            outln!("  {}. {}", l.n, lost(&l.loss, "an edit"));
        }
    }
    if !list.contacts.is_empty() {
        outln!("Bring one back with: kith contact restore JID N");
    }
    for g in &list.groups {
        outln!("Group {}: {}", quoted(&g.group), lost(&g.loss, "a write"));
    }
    if !list.groups.is_empty() {
        outln!("Keep a group's name, or take the other, with: kith group rename NAME NEW_NAME");
        if list.groups.iter().any(|g| g.loss.lost == "removed") {
            outln!(
                "A removal that lost: keep the group with kith group rename NAME NAME, or remove it with kith group rm NAME"
            );
        }
    }
    Ok(())
}

/// What lost, by whom and when, to `winning` (what won, in words) by whom and when.
fn lost(l: &Loss, winning: &str) -> String {
    format!(
        "lost: {} (by {} at {}), to {winning} by {} at {}",
        text(&l.lost),
        text(&l.lost_by),
        text(&l.lost_at),
        text(&l.won_by),
        text(&l.won_at)
    )
}

/// `kith contact restore JID [N]`.
pub(crate) fn restore(dir: &Path, jid: String, n: usize) -> Result<()> {
    let _: Done = ask(
        dir,
        Request::RestoreContact {
            jid: jid.clone(),
            n,
        },
    )?;
    outln!("Restored conflict {n} of {jid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::who;

    /// An empty name is no name: the addresses alone.
    #[test]
    fn a_contact_without_a_name_is_its_addresses() {
        let jids = ["a@x.lit".to_owned()];
        assert_eq!(who(Some("Jules"), &jids), "Jules (a@x.lit)");
        assert_eq!(who(Some(""), &jids), "a@x.lit");
        assert_eq!(who(None, &jids), "a@x.lit");
    }
}
