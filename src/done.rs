//! What a command that changes something says it did: one line, from the request
//! and the node's reply, so that a person (or a log of a script) sees what happened.

use kith_node::control::Request;
use kith_protocol::jid::BareJid;
use serde_json::Value;

/// A JID as kith keeps it (lower-cased domain and local part, no resource), or as
/// typed when it does not read as one (an `xmpp:` URI, which the node reads).
fn shown(jid: &str) -> String {
    BareJid::parse(jid).map_or_else(|_| jid.to_owned(), |j| j.to_string())
}

/// The line for `request`, answered with `reply`; `None` for requests that print
/// something of their own.
pub(crate) fn said(request: &Request, reply: &Value) -> Option<String> {
    Some(match request {
        Request::AddContact { jid, name, groups } => {
            let mut line = format!("Added {}", shown(jid));
            if let Some(n) = name {
                line.push_str(&format!(" {n:?}"));
            }
            if !groups.is_empty() {
                line.push_str(&format!(" in {}", quoted(groups)));
            }
            line
        }
        Request::EditContact {
            jid,
            name,
            clear_name,
            add_groups,
            remove_groups,
            add_jids,
            remove_jids,
            merge,
        } => {
            let mut changes: Vec<String> = Vec::new();
            if let Some(n) = name {
                changes.push(format!("name {n:?}"));
            }
            if *clear_name {
                changes.push("no name".into());
            }
            changes.extend(add_groups.iter().map(|g| format!("+group {g:?}")));
            changes.extend(remove_groups.iter().map(|g| format!("-group {g:?}")));
            changes.extend(add_jids.iter().map(|j| format!("+jid {}", shown(j))));
            changes.extend(remove_jids.iter().map(|j| format!("-jid {}", shown(j))));
            if *merge && !add_jids.is_empty() {
                changes.push("merged with the contacts of the added addresses".into());
            }
            if changes.is_empty() {
                format!("Nothing to change in {}", shown(jid))
            } else {
                format!("Changed {}: {}", shown(jid), changes.join(", "))
            }
        }
        Request::AddGroup { name, .. } => format!("Added group {name:?}"),
        Request::RenameGroup { name, new_name } => {
            format!("Renamed group {name:?} to {new_name:?}")
        }
        Request::RemoveGroup { name } => {
            format!("Removed group {name:?} (its contacts stay, without it)")
        }
        Request::Revoke { device } => {
            let id = reply["revoked"].as_str().unwrap_or(device);
            let name = reply["name"].as_str().unwrap_or("-");
            format!(
                "Revoked {name:?} ({id}): the secrets were rotated, and the other devices no longer sync with it"
            )
        }
        Request::Rotate => {
            "Rotated the secrets of both nodes: every item is sealed again under the new ones"
                .to_owned()
        }
        _ => return None,
    })
}

/// Names in quotes, separated by commas.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
