//! What lost and what changed: the conflicts every device lists (of contacts and
//! of groups), and this device's log of the changes it stored.

use super::{iso, jids_of};
use crate::api::Error;
use crate::api::answer::{
    Change, ChangeLog, Conflict, ConflictList, Conflicted, GroupConflict, Loss,
};
use crate::device::Device;
use kith_protocol::contacts::LostGroup;
use kith_protocol::jid::BareJid;
use kith_protocol::record::{DeviceId, Version};

impl Device {
    /// Every contact with conflicts, and each conflict: the field, the value that
    /// lost, and which edit (device, time) won over which; and the definitions of
    /// groups that lost to one written apart.
    pub(super) fn conflicts(&mut self) -> ConflictList {
        let names = self.device_names();
        let device = |d: DeviceId| {
            let id = d.to_string();
            names.get(&id).cloned().unwrap_or(id)
        };
        let view = self.engine.view();
        let group_name = |id: &str| view.groups().get(id).map(|g| g.group.name.clone());
        let loss = |lost: String, at: Version, winner: Version| Loss {
            lost,
            lost_by: device(at.device),
            lost_at: iso(at.hlc.wall_ms),
            won_by: device(winner.device),
            won_at: iso(winner.hlc.wall_ms),
        };
        let contacts = view
            .contacts()
            .filter(|c| !c.lost.is_empty())
            .map(|c| Conflicted {
                name: c.contact.name.clone(),
                jids: jids_of(c),
                conflicts: c
                    .lost
                    .iter()
                    .enumerate()
                    .map(|(i, l)| Conflict {
                        n: i + 1,
                        loss: loss(
                            kith_protocol::contacts::history::describe(
                                &l.key,
                                &l.value,
                                &group_name,
                            ),
                            l.at,
                            l.winner,
                        ),
                    })
                    .collect(),
            })
            .collect();
        let groups = view
            .group_conflicts()
            .into_iter()
            .map(|c| GroupConflict {
                group: c.entry.group.name.clone(),
                loss: loss(
                    match c.lost {
                        LostGroup::Definition(g) if g.name != c.entry.group.name => {
                            format!("name {}", kith_protocol::text::quoted(&g.name))
                        }
                        LostGroup::Definition(g) => match &g.description {
                            Some(d) => format!("description {}", kith_protocol::text::quoted(d)),
                            None => "no description".to_owned(),
                        },
                        LostGroup::Removal => "removed".to_owned(),
                    },
                    c.version,
                    c.entry.edited,
                ),
            })
            .collect();
        ConflictList { contacts, groups }
    }

    /// The changes stored, newest first: of the contact `jid` names, or of all;
    /// at most `limit` (and at most what the history keeps).
    pub(super) fn log(&mut self, jid: Option<&BareJid>, limit: usize) -> Result<ChangeLog, Error> {
        let names = self.device_names();
        let entries = self.history(jid, limit.min(crate::store::history::MAX_ROWS as usize))?;
        // A group that had not arrived when the change was stored is named
        // now, if it has since.
        let view = self.engine.view();
        let named = |change: String| {
            let group = change
                .strip_prefix("+group ")
                .map(|id| ('+', id))
                .or_else(|| change.strip_prefix("-group ").map(|id| ('-', id)));
            match group.and_then(|(sign, id)| Some((sign, view.groups().get(id)?))) {
                Some((sign, g)) => format!("{sign}group {}", g.group.name),
                None => change,
            }
        };
        Ok(ChangeLog(
            entries
                .into_iter()
                .map(|e| Change {
                    at: iso(e.at_ms),
                    device: names
                        .get(&e.device)
                        .cloned()
                        .unwrap_or_else(|| e.device.clone()),
                    name: e.name,
                    jids: e.jids,
                    changes: e.changes.into_iter().map(named).collect(),
                })
                .collect(),
        ))
    }
}
