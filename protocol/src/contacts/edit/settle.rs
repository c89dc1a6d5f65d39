//! Settling: the contacts whose items were written concurrently, the items a
//! deletion made obsolete, and the contacts a group's removal that lost took out
//! of it (`Command::Settle`, which the engine runs at the end of every step).

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRng;

use super::Editor;
use super::writes::{Plan, Write, push_group};
use crate::contacts::view::{MergedContact, View};
use crate::item::{Contact, NodeKind};
use crate::record::{DeviceId, ItemId};

impl Editor {
    /// Plans [`Command::Settle`] (and [`Command::SettleStandingIn`] `standing_in`).
    pub(super) fn plan_settle<R: CryptoRng + ?Sized>(
        &self,
        view: &View,
        plan: &mut Plan<'_>,
        standing_in: &BTreeSet<DeviceId>,
        rng: &mut R,
    ) {
        let me = self.device();
        // Contacts a removal that lost took out of a group whose kept
        // definition this device (or one it stands in for) edited: put back,
        // with each such group.
        let mut put_back: BTreeMap<ItemId, (&MergedContact, Vec<String>)> = BTreeMap::new();
        for t in view.taken_out_by_lost_removals() {
            let by = t.group.edited.device;
            if by == me || standing_in.contains(&by) {
                let (_, groups) = put_back
                    .entry(t.contact.id)
                    .or_insert_with(|| (t.contact, Vec::new()));
                groups.push(t.group.group.id.clone());
            }
        }
        let mine: Vec<&MergedContact> = view
            .unsettled()
            .filter(|c| c.version.device == me && !put_back.contains_key(&c.id))
            .collect();
        for c in mine {
            match c.holder {
                // Concurrent copies of what one item already says (a
                // rotation resealed on several devices, say): retracting
                // them settles the contact, and writes that cross retract
                // alike instead of making new items to settle again.
                Some(holder) => {
                    for (item, _) in c.members().filter(|(i, _)| *i != holder) {
                        plan.write(NodeKind::Contacts, item, Write::Tombstone);
                    }
                }
                None => plan.write_contact(Some(c), Contact::clone(&c.contact), rng),
            }
        }
        // Written as one item, which settles them too when unsettled.
        for (c, groups) in put_back.into_values() {
            let mut contact = Contact::clone(&c.contact);
            for id in groups {
                push_group(&mut contact, id);
            }
            plan.write_contact(Some(c), contact, rng);
        }
        // Items a deletion made obsolete, that this device's deletion did.
        for (item, _) in view.obsolete().filter(|(_, by)| **by == me) {
            plan.write(NodeKind::Contacts, *item, Write::Tombstone);
        }
    }
}
