//! What a command that changes something says it did: one line, [`Said`], shown
//! through `Display` from the request and the node's typed answer (the contact or
//! group as stored: names trimmed and in NFC, a look-alike group name as the
//! existing group), so that a person (or the log of a script) sees what happened.

use std::fmt;

use kith_node::api::answer::{Cancelled, GroupChanged, Renamed, Revoked};
use kith_node::api::{Answer, Request};
use kith_protocol::jid::BareJid;
use kith_protocol::text::quoted as quote;

/// A JID as kith keeps it (lower-cased domain and local part, no resource; an
/// `xmpp:` URI as the JID it names), or as typed when it does not read as one.
fn shown(jid: &str) -> String {
    // An `xmpp:` URI names the JID before its query or fragment (as the node reads it).
    let bare = jid
        .strip_prefix("xmpp:")
        .filter(|rest| !rest.starts_with("//"))
        .map_or(jid, |rest| rest.split(['?', '#']).next().unwrap_or(rest));
    BareJid::parse(bare).map_or_else(|_| jid.to_owned(), |j| j.to_string())
}

/// The stored group name among `stored` that `typed` names (the same, or the same
/// once trimmed and case-folded), else `typed`.
fn stored_group<'a>(typed: &'a str, stored: &'a [String]) -> &'a str {
    let fold = |s: &str| s.trim().to_lowercase();
    stored
        .iter()
        .find(|g| *g == typed)
        .or_else(|| stored.iter().find(|g| fold(g) == fold(typed)))
        .map_or(typed, String::as_str)
}

/// A request and the node's answer to it, shown as the one line that says what
/// was done.
pub(crate) struct Said<'a> {
    request: &'a Request,
    answer: &'a Answer,
}

impl<'a> Said<'a> {
    /// What `request` did, as `answer` tells.
    pub(crate) fn new(request: &'a Request, answer: &'a Answer) -> Self {
        Self { request, answer }
    }
}

impl fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line(self.request, self.answer))
    }
}

/// The line for `request`, answered with `answer`.
fn line(request: &Request, answer: &Answer) -> String {
    let contact = match answer {
        Answer::ContactChanged(c) => c.contact.as_ref(),
        _ => None,
    };
    let changed = match answer {
        Answer::ContactChanged(c) => c.changed,
        Answer::GroupChanged(g) => g.changed,
        _ => None,
    };
    let groups: &[String] = contact.map_or(&[], |c| c.groups.as_slice());
    let group = match answer {
        Answer::GroupChanged(GroupChanged { group, .. }) => group.as_deref(),
        _ => None,
    };
    match request {
        Request::AddContact { jid, .. } => {
            let mut line = format!("Added {}", shown(jid));
            if let Some(n) = contact.and_then(|c| c.name.as_deref()) {
                line.push_str(&format!(" {}", quote(n)));
            }
            if !groups.is_empty() {
                let names: Vec<String> = groups.iter().map(|g| quote(g)).collect();
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
                let stored = contact
                    .and_then(|c| c.name.as_deref())
                    .or(name.as_deref())
                    .unwrap_or("");
                changes.push(format!("name {}", quote(stored)));
            }
            if *clear_name {
                changes.push("no name".into());
            }
            // The groups the edit put the contact in and took it out of, as the
            // node tells (an older node tells nothing: then as asked).
            match answer {
                Answer::ContactChanged(c) if !c.joined.is_empty() || !c.left.is_empty() => {
                    changes.extend(c.joined.iter().map(|g| format!("+group {}", quote(g))));
                    changes.extend(c.left.iter().map(|g| format!("-group {}", quote(g))));
                }
                Answer::ContactChanged(c) if c.changed.is_some() => {}
                _ => {
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
                }
            }
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
            if changed == Some(false) {
                format!("Nothing changed in {}: it already had that", shown(jid))
            } else if changes.is_empty() {
                format!("Nothing to change in {}", shown(jid))
            } else {
                format!("Changed {}: {}", shown(jid), changes.join(", "))
            }
        }
        Request::AddGroup { name, .. } => {
            format!("Added group {}", quote(group.unwrap_or(name)))
        }
        Request::RenameGroup { name, .. } if changed == Some(false) => match answer {
            Answer::GroupChanged(GroupChanged {
                settled: Some(n), ..
            }) => format!(
                "Kept group {}: its {n} conflicting definition(s) from devices apart are settled",
                quote(group.unwrap_or(name.trim()))
            ),
            _ => format!(
                "Nothing changed: group {} is named that already",
                quote(group.unwrap_or(name.trim()))
            ),
        },
        Request::RenameGroup { name, new_name } => {
            let was = match answer {
                Answer::GroupChanged(GroupChanged { was: Some(w), .. }) => w.as_str(),
                _ => name.trim(),
            };
            let mut line = format!(
                "Renamed group {} to {}",
                quote(was),
                quote(group.unwrap_or(new_name))
            );
            if let Answer::GroupChanged(GroupChanged {
                folded: Some(n), ..
            }) = answer
            {
                line.push_str(&format!(
                    ": the {n} groups named alike on devices apart are one now"
                ));
            }
            if let Answer::GroupChanged(GroupChanged {
                settled: Some(n), ..
            }) = answer
            {
                line.push_str(&format!(
                    " (its {n} conflicting definition(s) from devices apart are settled)"
                ));
            }
            line
        }
        Request::RemoveGroup { name } => match answer {
            Answer::GroupChanged(GroupChanged {
                folded: Some(n), ..
            }) => format!(
                "Removed the {n} groups named like {} on devices apart (their contacts stay, without them)",
                quote(group.unwrap_or(name.trim()))
            ),
            _ => format!(
                "Removed group {} (its contacts stay, without it)",
                quote(group.unwrap_or(name.trim()))
            ),
        },
        Request::Revoke { device } => {
            let (id, name) = match answer {
                Answer::Revoked(Revoked { revoked, name }) => (revoked.as_str(), name.as_deref()),
                _ => (device.as_str(), None),
            };
            let who = match name.filter(|n| !n.is_empty()) {
                Some(name) => format!("{} ({id})", quote(name)),
                None => format!("device {id}"),
            };
            format!(
                "Revoked {who}: the secrets were rotated, and the other devices no longer sync with it"
            )
        }
        Request::RenameDevice { device, name } => {
            let (id, old, changed) = match answer {
                Answer::Renamed(Renamed {
                    renamed,
                    old,
                    changed,
                    ..
                }) => (renamed.as_str(), old.as_str(), *changed),
                _ => (device.as_str(), "", true),
            };
            let was = if old.is_empty() {
                format!("device {id}")
            } else {
                format!("{} ({id})", quote(old))
            };
            if !changed {
                format!("Nothing changed: {was} already has that name")
            } else {
                format!("Renamed {was} to {}", quote(name))
            }
        }
        Request::CancelInvites { .. } => {
            let plates: Vec<String> = match answer {
                Answer::Cancelled(Cancelled { cancelled }) => {
                    cancelled.iter().map(|p| format!("{p}…")).collect()
                }
                _ => Vec::new(),
            };
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
        // Every request `ops::done` is given is named above (and `ops::call` checked
        // its answer is of the kind the request is answered with).
        _ => format!("Done ({})", answer.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_alike_group_is_said_as_stored() {
        let stored = ["Friends".to_owned(), "Verona".to_owned()];
        assert_eq!(stored_group("friends ", &stored), "Friends");
        assert_eq!(stored_group("Verona", &stored), "Verona");
        assert_eq!(stored_group("Other", &stored), "Other");
    }

    #[test]
    fn addresses_are_said_as_stored() {
        assert_eq!(shown("xmpp:Nurse@Capulet.lit?roster"), "nurse@capulet.lit");
        assert_eq!(shown("Paris@Verona.LIT"), "paris@verona.lit");
    }
}
