//! Reconciliation sessions: the set snapshot, requests and responses, and what is
//! owed to each peer.

use std::fmt::Debug;

use rand_core::Rng;

use super::{Engine, Event, Now, Output, Peer, RequestId, Session};
use crate::contacts::View;
use crate::item::NodeKind;
use crate::record::{ItemId, Record, Space};
use crate::sync::recon::{self, Key};
use crate::sync::wire::{self, Frame};

/// A record's entry in the reconciliation set: its key and a hash of its version.
fn entry(r: &Record) -> (Key, u128) {
    (
        Key {
            space: r.space.code(),
            item: r.item.0,
        },
        prefix(r),
    )
}

impl<P: Ord + Clone + Debug> Engine<P> {
    /// Whether `peer` is a device of the roster, not revoked (or not identified).
    pub(super) fn peer_allowed(&self, peer: &P) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.device)
            .is_none_or(|d| self.roster.is_active(&d))
    }

    /// The reconciliation set of the replica: kept from one call to the next and
    /// brought up to date with the records that changed since, or built again when
    /// it was dropped or most of it changed.
    pub(super) fn set(&mut self) -> &recon::Set {
        let changes = self.book.take_set_changes();
        let replica = self.book.replica();
        match &mut self.set {
            Some(set) if changes.len() <= set.len() / 2 + 64 => {
                set.update(changes.into_iter().map(|(space, item)| {
                    let key = Key {
                        space: space.code(),
                        item: item.0,
                    };
                    (key, replica.get(space, &item).map(|r| entry(r).1))
                }));
            }
            _ => self.set = Some(recon::Set::new(replica.records().map(entry))),
        }
        // The engine's tests check every update against the set built again.
        #[cfg(test)]
        assert_eq!(
            self.set.as_ref(),
            Some(&recon::Set::new(self.book.replica().records().map(entry))),
            "the reconciliation set kept up to date is the one built again"
        );
        self.set.as_ref().expect("just built or updated")
    }

    /// The summary of the replica's reconciliation set: the records that changed
    /// since are noted in the set, not merged into its entries
    /// ([`recon::Set::note`]), so a long sync, which says its summary with every
    /// frame, merges them once, when a message reads the entries.
    pub(super) fn set_summary(&mut self) -> recon::Summary {
        let Some(set) = &mut self.set else {
            return self.set().summary();
        };
        let changes = self.book.take_set_changes();
        let replica = self.book.replica();
        set.note(changes.into_iter().map(|(space, item)| {
            let key = Key {
                space: space.code(),
                item: item.0,
            };
            (key, replica.get(space, &item).map(|r| entry(r).1))
        }));
        // The engine's tests check every summary against the set built again.
        #[cfg(test)]
        assert_eq!(
            set.summary(),
            recon::Set::new(self.book.replica().records().map(entry)).summary(),
            "the summary of the changes noted is the one of the set built again"
        );
        set.summary()
    }

    /// Answers a reconciliation message from the replica's set. An empty one (what
    /// a peer sends once the key space is settled, with more records to come) is
    /// answered the same whatever this device holds, without reading the set: the
    /// changes noted since stay unmerged.
    pub(super) fn respond(
        &mut self,
        msg: &recon::Message,
        salt: u64,
    ) -> Result<(recon::Message, Vec<Key>), recon::Error> {
        if msg.ranges.is_empty() && msg.need.is_empty() {
            return Ok((recon::Message::default(), Vec::new()));
        }
        self.set().respond(msg, salt)
    }

    /// Records for the keys `owed` to `peer`, within the frame budget, in the
    /// order [`super::owed::Owed`] gives; the rest stay owed.
    pub(super) fn take_owed(&mut self, now: Now, p: &P) -> (Vec<Record>, bool) {
        let budget = self.config.frame_record_bytes.min(super::RECORD_BUDGET);
        let Some(peer) = self.peers.get_mut(p) else {
            return (Vec::new(), false);
        };
        let view = self.book.current_view();
        let mut out = Vec::new();
        let mut size = 0;
        while let Some((key, last)) = peer.owed.next() {
            let space = Space::from_code(u64::from(key.space)).unwrap_or(Space::Contacts);
            // A shelved record is read back from the store; one that cannot be is
            // left out of this session (the next reconciliation offers it again).
            let Some(r) = self.book.replica().get_unshelved(space, &ItemId(key.item)) else {
                peer.owed.remove(&key);
                continue;
            };
            let node_tombstone = r.is_tombstone() && space.node().is_some();
            if !last && (node_tombstone || reserved_group(view, &r)) {
                peer.owed.put_last(key);
                continue;
            }
            let len = r.encoded_len() + 8;
            if size + len > budget && !out.is_empty() {
                break;
            }
            // The roster and the secrets go in a frame of their own, applied before
            // the next is checked: what they open is then opened as it arrives.
            if out.last().is_some_and(opens_others) && !opens_others(&r) {
                break;
            }
            size += len;
            peer.sent.note(key, prefix(&r), now.mono_ms);
            out.push(r);
            peer.owed.remove(&key);
        }
        (out, !peer.owed.is_empty())
    }

    /// Adds `send` (keys the peer lacks, as a reconciliation found) to what `p` is
    /// owed, leaving out records sent to it less than [`super::RESEND_AFTER_MS`] ago
    /// in exactly the version held now.
    fn owe(&mut self, now: Now, p: &P, send: Vec<Key>) {
        let Some(peer) = self.peers.get_mut(p) else {
            return;
        };
        let replica = self.book.replica();
        for key in send {
            let held = || {
                Space::from_code(u64::from(key.space))
                    .and_then(|space| replica.get(space, &ItemId(key.item)))
                    .map(prefix)
            };
            let lately = peer.sent.lately(&key, held, now.mono_ms);
            if !lately {
                peer.owed.insert(key);
            }
        }
    }

    pub(super) fn start_session(&mut self, now: Now, p: P) {
        let salt = self.rng.next_u64();
        let msg = self.set().initiate();
        self.send_request(now, p, salt, msg, 0);
    }

    pub(super) fn send_request(
        &mut self,
        now: Now,
        p: P,
        salt: u64,
        msg: recon::Message,
        round_trips: u32,
    ) {
        let (records, more) = self.take_owed(now, &p);
        let id = self.next_request;
        self.next_request += 1;
        let have = Some(self.summary());
        let bytes = Frame::Request {
            salt,
            msg,
            records,
            more,
            have,
        }
        .encode();
        self.count_out(bytes.len());
        self.requests.insert(id, p.clone());
        if let Some(peer) = self.peers.get_mut(&p) {
            peer.session = Some(Session {
                salt,
                request: id,
                round_trips: round_trips + 1,
            });
        }
        self.outputs.push_back(Output::Request { to: p, id, bytes });
    }

    pub(super) fn on_request(&mut self, now: Now, from: P, id: u64, bytes: &[u8]) {
        if !self.peer_allowed(&from) {
            // A revoked device gets nothing in or out.
            self.stats.refused_frames += 1;
            return self.respond_empty(id);
        }
        let (salt, msg, records, more, have) =
            match Frame::decode_lenient(bytes, wire::MAX_FRAME_BYTES) {
                Ok((
                    Frame::Request {
                        salt,
                        msg,
                        records,
                        more,
                        have,
                    },
                    skipped,
                )) => {
                    self.skipped(&from, skipped);
                    (salt, msg, records, more, have)
                }
                Ok(_) => {
                    self.bad_frame(&from, wire::Error::BadField("kind"));
                    return self.respond_empty(id);
                }
                Err(e) => {
                    self.bad_frame(&from, e);
                    return self.respond_empty(id);
                }
            };
        self.apply_or_defer(now, &from, &msg, more, records);
        if !self.peer_allowed(&from) {
            // The frame itself revoked its sender here: nothing goes back.
            self.stats.refused_frames += 1;
            return self.respond_empty(id);
        }
        let (reply, send) = match self.respond(&msg, salt) {
            Ok(r) => r,
            Err(e) => {
                self.bad_frame(&from, wire::Error::Recon(e));
                return self.respond_empty(id);
            }
        };
        self.peers.entry(from.clone()).or_insert_with(|| Peer {
            next_recon_ms: now.mono_ms,
            ..Peer::default()
        });
        self.heard(now, &from, have);
        self.owe(now, &from, send);
        let (records, more) = self.take_owed(now, &from);
        let have = Some(self.summary());
        let bytes = Frame::Response {
            msg: reply,
            records,
            more,
            have,
        }
        .encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Respond { id, bytes });
    }

    pub(super) fn respond_empty(&mut self, id: u64) {
        // Nothing compared, nothing said: a refused or unreadable request is
        // answered without what this device holds.
        let bytes = Frame::Response {
            msg: recon::Message::default(),
            records: Vec::new(),
            more: false,
            have: None,
        }
        .encode();
        self.count_out(bytes.len());
        self.outputs.push_back(Output::Respond { id, bytes });
    }

    pub(super) fn on_response(&mut self, now: Now, id: RequestId, bytes: &[u8]) {
        let Some(p) = self.requests.remove(&id) else {
            return;
        };
        let Some((salt, round_trips)) = self
            .peers
            .get(&p)
            .and_then(|peer| peer.session.as_ref())
            .map(|s| (s.salt, s.round_trips))
        else {
            return;
        };
        if !self.peer_allowed(&p) {
            // Revoked while the exchange went on: it ends here, and nothing more
            // (records sealed under the new secrets among them) goes to it.
            self.stats.refused_frames += 1;
            return self.end_session(now, &p, round_trips, false, None);
        }
        let (msg, records, more, have) = match Frame::decode_lenient(bytes, wire::MAX_FRAME_BYTES) {
            Ok((
                Frame::Response {
                    msg,
                    records,
                    more,
                    have,
                },
                skipped,
            )) => {
                self.skipped(&p, skipped);
                (msg, records, more, have)
            }
            Ok(_) => {
                return self.end_session(
                    now,
                    &p,
                    round_trips,
                    false,
                    wire::Error::BadField("kind").into(),
                );
            }
            Err(e) => return self.end_session(now, &p, round_trips, false, Some(e)),
        };
        self.apply_or_defer(now, &p, &msg, more, records);
        if !self.peer_allowed(&p) {
            // The response itself revoked its sender here: the exchange ends.
            self.stats.refused_frames += 1;
            return self.end_session(now, &p, round_trips, false, None);
        }
        if let Some(peer) = self.peers.get_mut(&p) {
            // It answered, readably and while allowed: a later failure is the
            // first in a row again.
            peer.failures = 0;
        }
        self.heard(now, &p, have);
        let (reply, send) = match self.respond(&msg, salt) {
            Ok(r) => r,
            Err(e) => {
                return self.end_session(now, &p, round_trips, false, Some(wire::Error::Recon(e)));
            }
        };
        self.owe(now, &p, send);
        let owed_more = match self.peers.get(&p) {
            Some(peer) => !peer.owed.is_empty(),
            None => return,
        };
        if reply.wants_answer() || more || owed_more {
            self.send_request(now, p, salt, reply, round_trips);
        } else {
            self.end_session(now, &p, round_trips, true, None);
        }
    }

    pub(super) fn end_session(
        &mut self,
        now: Now,
        p: &P,
        round_trips: u32,
        ok: bool,
        error: Option<wire::Error>,
    ) {
        if let Some(e) = error {
            self.bad_frame(p, e);
        }
        let jitter = if self.config.recon_jitter_ms > 0 {
            self.rng.next_u64() % self.config.recon_jitter_ms
        } else {
            0
        };
        if let Some(peer) = self.peers.get_mut(p) {
            peer.session = None;
            peer.owed.clear();
            if ok {
                peer.sent.age(now.mono_ms);
            } else {
                // What this exchange sent may not have arrived.
                peer.sent.clear();
            }
            peer.next_recon_ms = if std::mem::take(&mut peer.catch_up) && ok {
                now.mono_ms
            } else {
                now.mono_ms + self.config.recon_interval_ms + jitter
            };
        }
        if ok {
            self.stats.reconciliations += 1;
            self.stats.max_round_trips = self.stats.max_round_trips.max(round_trips);
            self.outputs.push_back(Output::Event(Event::Synced {
                peer: p.clone(),
                round_trips,
            }));
        }
    }
}

/// Whether `r` says who may author, or what opens, other records: a roster entry or
/// a secret ([`Engine::take_owed`] ends a frame after them, and
/// [`Engine::may_defer`] applies a frame holding one before answering it).
pub(super) fn opens_others(r: &Record) -> bool {
    matches!(r.space, Space::Roster | Space::Keys)
}

/// The part of a record's signature the reconciliation set keys it by.
fn prefix(r: &Record) -> u128 {
    let mut h = [0u8; 16];
    h.copy_from_slice(&r.signature[..16]);
    u128::from_le_bytes(h)
}

/// The order owed records are sent in, by space: the device roster first (it says
/// who may author the rest), then the secrets (a new device can then open each
/// contact as it arrives, instead of setting every one aside until its key comes
/// and opening them all again at the end), then the two XEP-0510 nodes, groups
/// before contacts (a contact that comes after its groups is merged once, with
/// them; before them, every contact of a group was taken up again when the group
/// came, a tenth of a new device's merging, and showed its groups as unknown
/// until then), then acks.
/// The roster and the secrets end their frame: the receiver applies it before it
/// answers, so it checks the frames that follow with them.
pub(super) const SEND_ORDER: [Space; 5] = [
    Space::Roster,
    Space::Keys,
    Space::Groups,
    Space::Contacts,
    Space::Acks,
];

/// Where `record` goes among those gossiped: by space in [`SEND_ORDER`] (a space
/// not in it last), except a group `view` holds as `<reserved/>` (removed, or a
/// placeholder), which goes after the contacts: the command that removes a group
/// edits its contacts out of it, and sent before them the removal would show the
/// group as unknown in each until its edit came. (A reconciliation puts such a
/// group last, with the nodes' tombstones.)
pub(super) fn gossip_rank(view: &View, record: &Record) -> (usize, bool) {
    let rank = |space: Space| {
        SEND_ORDER
            .iter()
            .position(|s| *s == space)
            .unwrap_or(SEND_ORDER.len())
    };
    if reserved_group(view, record) {
        (rank(Space::Contacts), true)
    } else {
        (rank(record.space), false)
    }
}

/// Whether `record` is a group `view` holds as a `<reserved/>` item.
fn reserved_group(view: &View, record: &Record) -> bool {
    record.space == Space::Groups && view.is_reserved(NodeKind::Groups, &record.item)
}
