//! Records in and out: applying what peers send, persisting and gossiping what is
//! written here, and settling contacts whose items were written concurrently.

use std::collections::BTreeSet;
use std::fmt::Debug;

use super::session::gossip_rank;
use super::{Engine, Event, GOSSIP_BURST, MAX_GOSSIP_QUEUE, Now, Output};
use crate::contacts;
use crate::record::{DeviceId, Record, Space};
use crate::replica::Outcome;
use crate::roster::Role;
use crate::sync::wire::{self, Frame};

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Writes once the contacts whose items were written concurrently (or whose
    /// merge decided a conflict not yet kept) when this device wrote the newest of
    /// their items: one device collapses them, the others receive the result; and
    /// puts back in a group the contacts a removal that lost took out of it, when
    /// this device edited the definition kept. Run
    /// at the end of every step, so that records applied, released from the hold or
    /// opened by a secret that arrived all count.
    pub(super) fn settle(&mut self, now: Now) {
        let me = self.book.device();
        let roster = &self.roster;
        let view = self.book.view();
        if view.unsettled().any(|c| c.version.device == me)
            || view.obsolete().any(|(_, by)| *by == me)
            || view.any_taken_out(|d| {
                *d == me
                    || (roster.get(d).is_some_and(|m| m.revoked_at.is_some())
                        && first_full(roster) == Some(me))
            })
        {
            let standing_in = self.standing_in();
            let command = if standing_in.is_empty() {
                contacts::Command::Settle
            } else {
                contacts::Command::SettleStandingIn(standing_in)
            };
            // A settle only rewrites what the view already holds; it fails without a
            // current secret, or when a contact's stamps would outgrow their bounds
            // (64 devices): the contact then stays merged in the view, unwritten.
            let mut rng = self.rng.clone();
            if let Ok(records) = self.book.execute(command, now.wall, &mut rng) {
                self.rng = rng;
                self.written(now, records);
            }
        }
    }

    /// The revoked devices whose settling this device takes on: all of them, when
    /// it is the active full device with the smallest id; else none. (A revoked
    /// device's records from before its revocation stand, among them a group
    /// definition whose removal lost: another device puts its contacts back.)
    fn standing_in(&self) -> BTreeSet<DeviceId> {
        if first_full(&self.roster) != Some(self.book.device()) {
            return BTreeSet::new();
        }
        self.roster
            .members()
            .filter(|m| m.revoked_at.is_some())
            .map(|m| m.entry.device)
            .collect()
    }

    /// Persists and gossips records just written here. A bulk change (an import, a
    /// rotation of a large list) is not gossiped: past [`MAX_GOSSIP_QUEUE`] records
    /// (or in [`Engine::execute_bulk`]) the queue is dropped and every peer
    /// reconciles at once, which carries the records in large frames without
    /// holding a second copy of all of them.
    pub(super) fn written(&mut self, now: Now, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let bulk = self.bulk || self.gossip.len() + records.len() > MAX_GOSSIP_QUEUE;
        if bulk {
            self.gossip.clear();
            self.gossip_due_ms = None;
            for peer in self.peers.values_mut() {
                peer.catch_up = true;
                if peer.session.is_none() {
                    peer.next_recon_ms = now.mono_ms;
                }
            }
            self.outputs.push_back(Output::Persist(records));
        } else {
            self.outputs.push_back(Output::Persist(records.clone()));
            self.gossip.extend(records);
            self.gossip_soon(now);
        }
        self.outputs.push_back(Output::Event(Event::Changed));
    }

    /// Schedules the queued gossip: at once while the current window has sent
    /// fewer than [`GOSSIP_BURST`] flushes, else at the window's end (what arrives
    /// meanwhile joins it).
    pub(super) fn gossip_soon(&mut self, now: Now) {
        let (start, sent) = *self.gossip_window(now);
        let due = if sent < GOSSIP_BURST {
            now.mono_ms
        } else {
            start.saturating_add(self.config.gossip_delay_ms)
        };
        let due = *self.gossip_due_ms.get_or_insert(due);
        if due <= now.mono_ms {
            self.flush_gossip(now);
        }
    }

    /// The gossip window `now` falls in (a new one once `gossip_delay_ms` passed
    /// since the current one began): when it began, and the flushes sent in it.
    fn gossip_window(&mut self, now: Now) -> &mut (u64, usize) {
        let window = &mut self.gossip_window;
        if now.mono_ms >= window.0.saturating_add(self.config.gossip_delay_ms) {
            *window = (now.mono_ms, 0);
        }
        window
    }

    pub(super) fn flush_gossip(&mut self, now: Now) {
        self.gossip_due_ms = None;
        if self.gossip.is_empty() {
            return;
        }
        self.gossip_window(now).1 += 1;
        let mut records = std::mem::take(&mut self.gossip);
        // By space as `SEND_ORDER` ranks them (the roster, the secrets, groups
        // before contacts, a removed group after them; see `gossip_rank`), each
        // space's in the order they were written. Unlike a reconciliation, the
        // nodes' tombstones are not put last. (The view is brought up to date
        // first: a command's writes are gossiped before its step ends.)
        let view = self.book.view();
        records.sort_by_key(|r| gossip_rank(view, r));
        let mut batch = Vec::new();
        let mut size = 0;
        for r in records {
            let len = r.encoded_len() + 8;
            if size + len > wire::MAX_GOSSIP_BYTES - 64 && !batch.is_empty() {
                self.publish(std::mem::take(&mut batch));
                size = 0;
            }
            size += len;
            batch.push(r);
        }
        if !batch.is_empty() {
            self.publish(batch);
        }
    }

    pub(super) fn publish(&mut self, records: Vec<Record>) {
        let bytes = Frame::Gossip { records }.encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Publish(bytes));
    }

    pub(super) fn count_out(&mut self, len: usize) {
        self.stats.frames_out += 1;
        self.stats.bytes_out += len as u64;
    }

    /// Reports records left out of a frame because they did not decode (once per
    /// frame, however many).
    pub(super) fn skipped(&mut self, peer: &P, mut skipped: Vec<crate::record::Error>) {
        if skipped.is_empty() {
            return;
        }
        let count = skipped.len();
        let first = skipped.swap_remove(0);
        self.bad_frame(peer, wire::Error::Skipped { count, first });
    }

    pub(super) fn bad_frame(&mut self, peer: &P, reason: wire::Error) {
        self.stats.bad_frames += 1;
        self.outputs.push_back(Output::Event(Event::BadFrame {
            peer: peer.clone(),
            reason,
        }));
    }

    /// Applies records from `peer` (in a reconciliation when `reconciled`, else in
    /// gossip); persists those that changed the replica, and passes on those of a
    /// reconciliation (`relay`). Roster records go first, so that records by a
    /// device added in the same batch are accepted.
    pub(super) fn apply(&mut self, now: Now, peer: &P, mut records: Vec<Record>, reconciled: bool) {
        records.sort_by_key(|r| r.space != Space::Roster);
        self.book.replica().verify_ahead(&records, &self.roster);
        let mut changed = Vec::new();
        let mut answers: Vec<Record> = Vec::new();
        let mut audit = false;
        for r in records {
            match self.book.receive(r.clone(), &self.roster, now.wall) {
                // The peer offers a version older than a tombstone collected here (it
                // fell back to it when the roster changed): the tombstone goes back.
                Ok(Outcome::Collected) => {
                    if let Some(t) = self.book.replica().collected_record(r.space, &r.item)
                        && !answers.contains(&t)
                    {
                        answers.push(t);
                    }
                }
                Ok(o) if o.changed() => {
                    if r.space == Space::Roster {
                        self.after_roster_change();
                        audit = true;
                    }
                    // Changed: the replica's winner is this record, as the replica
                    // keeps it (maybe shared with other holders, see
                    // `Verified::interning`), which the store then keeps too.
                    let kept = self.book.replica().get(r.space, &r.item).cloned();
                    changed.push(kept.unwrap_or(r));
                }
                Ok(Outcome::Duplicate) => self.stats.duplicate_records += 1,
                Ok(Outcome::Held) => {
                    self.next_held_check_ms
                        .get_or_insert(now.mono_ms + self.config.held_check_ms);
                }
                Ok(_) => {}
                Err(reason) => {
                    self.stats.rejected_records += 1;
                    self.outputs.push_back(Output::Event(Event::Rejected {
                        peer: peer.clone(),
                        reason,
                    }));
                }
            }
        }
        if !changed.is_empty() {
            if reconciled {
                self.note_relay(now, Some(peer));
            }
            let keys: Vec<Record> = changed
                .iter()
                .filter(|r| r.space == Space::Keys)
                .cloned()
                .collect();
            self.outputs.push_back(Output::Persist(changed));
            self.outputs.push_back(Output::Event(Event::Changed));
            for r in &keys {
                self.receive_keys(r, now);
            }
            // A secret received may be one a revocation stranded (see `audit_keys`).
            audit |= !keys.is_empty();
        }
        if audit {
            self.audit_keys(now);
        }
        if !answers.is_empty() && self.gossip.len() + answers.len() <= MAX_GOSSIP_QUEUE {
            self.gossip.extend(answers);
            self.gossip_soon(now);
        }
    }
}

/// The active full device with the smallest id: the one that stands in for
/// revoked devices ([`Engine::settle`]).
fn first_full(roster: &crate::roster::Roster) -> Option<DeviceId> {
    roster
        .active()
        .filter(|m| m.entry.role == Role::Full)
        .map(|m| m.entry.device)
        .min()
}
