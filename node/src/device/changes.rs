//! The device's history of contact changes (`kith log`): what each stored item of
//! the contacts node tells of, written next to the item index.

use std::collections::{BTreeMap, BTreeSet};

use kith_protocol::contacts::View;
use kith_protocol::item::{Contact, NodeKind, Payload};
use kith_protocol::jid::BareJid;
use kith_protocol::record::Version;

use super::Device;
use crate::store::{self, history, index};

impl Device {
    /// Stores the changes of `history`. A deletion erases what the history held of
    /// the contact: every change stored under its id or the ids of the items merged
    /// into it (`erase`: id, and the deletion's time), with the names and addresses
    /// they named; the deletion is kept without a name, so that after a deletion
    /// nothing in the history says what the contact was called (docs/privacy.md, a
    /// stolen disk).
    pub(super) fn record_history(
        &mut self,
        history: Vec<(Vec<u8>, history::Entry)>,
        erase: Vec<(String, u64)>,
    ) -> Result<(), store::Error> {
        let mut deleted: BTreeMap<String, u64> = BTreeMap::new();
        for (id, at) in erase {
            let t = deleted.entry(id).or_default();
            *t = (*t).max(at);
        }
        // A deletion's key is the only one with the mark after the stamp and device.
        let is_deletion = |key: &[u8], e: &history::Entry| key.len() == e.contact_id.len() + 45;
        let mut rows: Vec<(Vec<u8>, history::Entry)> = history
            .into_iter()
            .filter(|(key, e)| {
                is_deletion(key, e) || deleted.get(&e.contact_id).is_none_or(|at| e.at_ms > *at)
            })
            .collect();
        keep_newest(&mut rows, &mut self.authored);
        let erase: Vec<(String, u64)> = deleted.into_iter().collect();
        let new = self.store.add_history(&self.index, &rows, &erase)?;
        // What the node's log counts: contacts changed, by the device that changed
        // them, once each however many fields (a change stored again is not new).
        for i in new {
            if let Some((_, e)) = rows.get(i) {
                self.authored
                    .entry(e.device.clone())
                    .or_default()
                    .insert(e.contact_id.clone());
            }
        }
        Ok(())
    }

    /// The changes this device stored, newest first (at most `limit`), of the
    /// contact with `jid` if given (after making the writes that wait).
    pub fn history(
        &mut self,
        jid: Option<&BareJid>,
        limit: usize,
    ) -> Result<Vec<history::Entry>, store::Error> {
        // What waits is written first; if it cannot be (a full disk), the history
        // is read as it stands.
        if let Err(e) = self.catch_up_index() {
            tracing::warn!("writing the item index and the history: {e}");
        }
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

/// Keeps the newest `MAX_ROWS` of `rows`: the history keeps no more, and older rows
/// would be forgotten as soon as written (a sync, a rebuilt index). The rows cut
/// were stored here all the same: the node's log counts them (`authored`).
pub(super) fn keep_newest(
    rows: &mut Vec<(Vec<u8>, history::Entry)>,
    authored: &mut BTreeMap<String, BTreeSet<String>>,
) {
    let max = usize::try_from(history::MAX_ROWS).unwrap_or(usize::MAX);
    if rows.len() > max {
        // A change is kept once (several versions of a contact carry the same
        // edit): the same key twice must not take a place among the newest.
        rows.sort_by(|(a, x), (b, y)| y.at_ms.cmp(&x.at_ms).then_with(|| a.cmp(b)));
        rows.dedup_by(|(a, _), (b, _)| a == b);
    }
    if rows.len() > max {
        for (_, e) in rows.drain(max..) {
            authored.entry(e.device).or_default().insert(e.contact_id);
        }
    }
}

/// History rows (each keyed by contact id and edit, so each is kept once), and the
/// ids whose stored history a deletion erases, with the deletion's time.
pub(super) type Rows = (Vec<(Vec<u8>, history::Entry)>, Vec<(String, u64)>);

/// The history rows of the index entries just written: one per edit a contact item
/// carries, one per deletion; with the ids the deletions erase.
pub(super) fn history_of(view: &View, entries: &[index::Entry]) -> Rows {
    use kith_protocol::contacts::history::changes_of;
    let mut rows = Rows::default();
    for e in entries {
        let Some(payload) = e.payload.as_ref().filter(|_| e.node == NodeKind::Contacts) else {
            continue;
        };
        let contact = match payload {
            Payload::Contact(c) => Some(c),
            _ => None,
        };
        add_rows(view, changes_of(payload, e.version), contact, &mut rows);
    }
    rows
}

/// The history rows of contact items as they were read (the version of each one's
/// record, and what it held): one per edit each carries. Group ids are named as
/// `view` names them now.
pub(super) fn history_of_contacts(
    view: &View,
    contacts: &[(Version, &Contact)],
) -> Vec<(Vec<u8>, history::Entry)> {
    use kith_protocol::contacts::history::edits_of;
    let mut rows = Rows::default();
    for (version, contact) in contacts {
        add_rows(view, edits_of(contact, *version), Some(contact), &mut rows);
    }
    // An edit's changes erase nothing.
    rows.0
}

/// Adds to `rows` those of `changes`, the changes of one item (holding `contact`
/// when it is a contact).
fn add_rows(
    view: &View,
    changes: Vec<kith_protocol::contacts::history::Change>,
    contact: Option<&Contact>,
    (out, erase): &mut Rows,
) {
    use kith_protocol::contacts::history::{What, describe};
    let group_name = |id: &str| view.groups().get(id).map(|g| g.group.name.clone());
    for change in changes {
        let mut key = change.contact_id.as_bytes().to_vec();
        key.extend_from_slice(&change.at.hlc.wall_ms.to_be_bytes());
        key.extend_from_slice(&change.at.hlc.counter.to_be_bytes());
        key.extend_from_slice(&change.at.device.0);
        let (name, jids, changes) = match (&change.what, contact) {
            (What::Edit(fields), Some(c)) => (
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
            (What::Delete(aliases), _) => {
                key.push(b'd');
                let at = change.at.hlc.wall_ms;
                erase.push((change.contact_id.clone(), at));
                erase.extend(aliases.iter().map(|a| (a.clone(), at)));
                (None, Vec::new(), vec!["deleted".to_owned()])
            }
            // An edit's marks in anything but a contact: nothing to show.
            (What::Edit(_), _) => continue,
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
