//! The device's history of contact changes (`kith log`): what each stored item of
//! the contacts node tells of, written next to the item index.

use std::collections::BTreeSet;

use kith_protocol::contacts::View;
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::jid::BareJid;

use super::Device;
use crate::store::{self, history, index};

impl Device {
    /// Stores the changes of `history`, naming a deleted contact as the history last
    /// named it.
    pub(super) fn record_history(
        &mut self,
        history: Vec<(Vec<u8>, history::Entry)>,
    ) -> Result<(), store::Error> {
        let mut rows: Vec<(Vec<u8>, history::Entry)> = Vec::with_capacity(history.len());
        for (key, mut e) in history {
            if e.name.is_none() && e.jids.is_empty() {
                let earlier = rows
                    .iter()
                    .rev()
                    .map(|(_, r)| r.clone())
                    .find(|r| r.contact_id == e.contact_id && !r.jids.is_empty());
                let earlier = match earlier {
                    Some(r) => Some(r),
                    None => self
                        .store
                        .history(&self.index, 1, &|r| {
                            r.contact_id == e.contact_id && !r.jids.is_empty()
                        })?
                        .pop(),
                };
                if let Some(r) = earlier {
                    e.name = r.name;
                    e.jids = r.jids;
                }
            }
            rows.push((key, e));
        }
        self.store.add_history(&self.index, &rows)
    }

    /// The changes this device stored, newest first (at most `limit`), of the
    /// contact with `jid` if given.
    pub fn history(
        &self,
        jid: Option<&BareJid>,
        limit: usize,
    ) -> Result<Vec<history::Entry>, store::Error> {
        let Some(jid) = jid else {
            return self.store.history(&self.index, limit, &|_| true);
        };
        // The contact's ids: the one it has now, and those of the changes that named
        // the address; then every change of those contacts, whatever it named.
        let address = jid.to_string();
        let mut ids: BTreeSet<String> = self
            .store
            .history(&self.index, usize::MAX, &|e| e.jids.contains(&address))?
            .into_iter()
            .map(|e| e.contact_id)
            .collect();
        if let Some(id) = self
            .engine
            .view()
            .contact_by_jid(jid)
            .and_then(|c| kith_protocol::item::fields::contact_id(&c.contact))
        {
            ids.insert(id.to_owned());
        }
        self.store
            .history(&self.index, limit, &|e| ids.contains(&e.contact_id))
    }
}

/// The history rows of the index entries just written: one per edit a contact item
/// carries (keyed by contact id and edit, so each is kept once), one per deletion.
pub(super) fn history_of(view: &View, entries: &[index::Entry]) -> Vec<(Vec<u8>, history::Entry)> {
    use kith_protocol::contacts::history::{What, changes_of, describe};
    let group_name = |id: &str| view.groups().get(id).map(|g| g.group.name.clone());
    let mut out = Vec::new();
    for e in entries {
        let Some(payload) = e.payload.as_ref().filter(|_| e.node == NodeKind::Contacts) else {
            continue;
        };
        for change in changes_of(payload, e.version) {
            let mut key = change.contact_id.as_bytes().to_vec();
            key.extend_from_slice(&change.at.hlc.wall_ms.to_be_bytes());
            key.extend_from_slice(&change.at.hlc.counter.to_be_bytes());
            key.extend_from_slice(&change.at.device.0);
            let (name, jids, changes) = match (&change.what, payload) {
                (What::Edit(fields), Payload::Contact(c)) => (
                    c.name.clone(),
                    c.identities
                        .iter()
                        .filter(|i| i.kind == "jid")
                        .map(|i| i.value.clone())
                        .collect(),
                    fields
                        .iter()
                        .map(|(k, v)| describe(k, v, &group_name))
                        .collect(),
                ),
                _ => {
                    key.push(b'd');
                    (None, Vec::new(), vec!["deleted".to_owned()])
                }
            };
            out.push((
                key,
                history::Entry {
                    at_ms: change.at.hlc.wall_ms,
                    device: change.device.to_string(),
                    contact_id: change.contact_id,
                    name,
                    jids,
                    changes,
                },
            ));
        }
    }
    out
}
