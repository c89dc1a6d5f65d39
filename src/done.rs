//! What a command that changes something says it did: one line, from the request
//! and the node's reply (the contact or group as stored: names trimmed and in NFC,
//! a look-alike group name as the existing group), so that a person (or the log of
//! a script) sees what happened.

use kith_node::control::Request;
use kith_protocol::jid::BareJid;
use kith_protocol::text::quoted as quote;
use serde_json::Value;

/// A JID as kith keeps it (lower-cased domain and local part, no resource), or as
/// typed when it does not read as one (an `xmpp:` URI, which the node reads).
fn shown(jid: &str) -> String {
    BareJid::parse(jid).map_or_else(|_| jid.to_owned(), |j| j.to_string())
}

/// The stored group name among `stored` that `typed` names (the same, or the same
/// once trimmed and case-folded), else `typed`.
fn stored_group<'a>(typed: &'a str, stored: &'a [Value]) -> &'a str {
    let fold = |s: &str| s.trim().to_lowercase();
    stored
        .iter()
        .filter_map(Value::as_str)
        .find(|g| *g == typed)
        .or_else(|| {
            stored
                .iter()
                .filter_map(Value::as_str)
                .find(|g| fold(g) == fold(typed))
        })
        .unwrap_or(typed)
}

/// The line for `request`, answered with `reply`; `None` for requests that print
/// something of their own.
pub(crate) fn said(request: &Request, reply: &Value) -> Option<String> {
    let contact = &reply["contact"];
    let groups: &[Value] = contact["groups"].as_array().map_or(&[], Vec::as_slice);
    Some(match request {
        Request::AddContact { jid, .. } => {
            let mut line = format!("Added {}", shown(jid));
            if let Some(n) = contact["name"].as_str() {
                line.push_str(&format!(" {}", quote(n)));
            }
            if !groups.is_empty() {
                let names: Vec<String> =
                    groups.iter().filter_map(Value::as_str).map(quote).collect();
                line.push_str(&format!(" in {}", names.join(", ")));
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
            if name.is_some() {
                let stored = contact["name"].as_str().or(name.as_deref()).unwrap_or("");
                changes.push(format!("name {}", quote(stored)));
            }
            if *clear_name {
                changes.push("no name".into());
            }
            changes.extend(
                add_groups
                    .iter()
                    .map(|g| format!("+group {}", quote(stored_group(g, groups)))),
            );
            changes.extend(
                remove_groups
                    .iter()
                    .map(|g| format!("-group {}", quote(g.trim()))),
            );
            let mut once = std::collections::BTreeSet::new();
            changes.extend(
                add_jids
                    .iter()
                    .map(|j| shown(j))
                    .filter(|j| once.insert(format!("+{j}")))
                    .map(|j| format!("+jid {j}")),
            );
            changes.extend(
                remove_jids
                    .iter()
                    .map(|j| shown(j))
                    .filter(|j| once.insert(format!("-{j}")))
                    .map(|j| format!("-jid {j}")),
            );
            if *merge && !add_jids.is_empty() {
                changes.push("merging any contact that had them".into());
            }
            if changes.is_empty() {
                format!("Nothing to change in {}", shown(jid))
            } else if reply["changed"] == false {
                format!("Nothing changed in {}: it already had that", shown(jid))
            } else {
                format!("Changed {}: {}", shown(jid), changes.join(", "))
            }
        }
        Request::AddGroup { name, .. } => {
            format!(
                "Added group {}",
                quote(reply["group"].as_str().unwrap_or(name))
            )
        }
        Request::RenameGroup { name, new_name } => format!(
            "Renamed group {} to {}",
            quote(name.trim()),
            quote(reply["group"].as_str().unwrap_or(new_name))
        ),
        Request::RemoveGroup { name } => {
            format!(
                "Removed group {} (its contacts stay, without it)",
                quote(name.trim())
            )
        }
        Request::Revoke { device } => {
            let id = reply["revoked"].as_str().unwrap_or(device);
            let who = match reply["name"].as_str().filter(|n| !n.is_empty()) {
                Some(name) => format!("{} ({id})", quote(name)),
                None => format!("device {id}"),
            };
            format!(
                "Revoked {who}: the secrets were rotated, and the other devices no longer sync with it"
            )
        }
        Request::RenameDevice { device, name } => {
            let id = reply["renamed"].as_str().unwrap_or(device);
            let old = reply["old"].as_str().unwrap_or_default();
            let was = if old.is_empty() {
                format!("device {id}")
            } else {
                format!("{} ({id})", quote(old))
            };
            if reply["changed"] == false {
                format!("Nothing changed: {was} already has that name")
            } else {
                format!("Renamed {was} to {}", quote(name))
            }
        }
        Request::CancelInvites { .. } => {
            let plates: Vec<String> = reply["cancelled"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|p| format!("{p}…"))
                        .collect()
                })
                .unwrap_or_default();
            match plates.len() {
                0 => "No invitation was open".to_owned(),
                1 => format!("Cancelled the invitation {}", plates[0]),
                _ => format!(
                    "Cancelled {} invitations: {}",
                    plates.len(),
                    plates.join(", ")
                ),
            }
        }
        Request::Rotate => {
            "Rotated the secrets of both nodes: every item is sealed again under the new ones"
                .to_owned()
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_alike_group_is_said_as_stored() {
        let stored = [Value::from("Friends"), Value::from("Verona")];
        assert_eq!(stored_group("friends ", &stored), "Friends");
        assert_eq!(stored_group("Verona", &stored), "Verona");
        assert_eq!(stored_group("Other", &stored), "Other");
    }
}
