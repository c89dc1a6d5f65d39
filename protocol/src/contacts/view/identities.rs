//! The view's index of contact items by identity: by type and normalised value, and
//! by kith contact id (the [`CONTACT_ID_KIND`] links of [`fields::links`]).
//!
//! Every contact item is in it twice (its JID and its contact id), so it is kept
//! small: contact ids as the 128-bit numbers their 32 hex digits spell, without a
//! copy of the text, and values as boxed strings without spare room.

use std::collections::HashMap;

use super::item_set::ItemSet;
use crate::item::fields::{self, CONTACT_ID_KIND};
use crate::record::ItemId;

/// Contact items by identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Identities {
    /// By contact id.
    contact_ids: HashMap<u128, ItemSet>,
    /// By identity type, then value.
    values: HashMap<Box<str>, HashMap<Box<str>, ItemSet>>,
}

/// A contact id as a number; `None` for what is not a contact id.
fn number(cid: &str) -> Option<u128> {
    fields::HexId::new(cid)?;
    u128::from_str_radix(cid, 16).ok()
}

impl Identities {
    /// The items listing `kind`/`value`.
    pub(super) fn get(&self, kind: &str, value: &str) -> Option<&ItemSet> {
        if kind == CONTACT_ID_KIND {
            self.contact_ids.get(&number(value)?)
        } else {
            self.values.get(kind)?.get(value)
        }
    }

    /// Adds `item` under `kind`/`value`.
    pub(super) fn insert(&mut self, kind: &str, value: &str, item: ItemId) {
        if kind == CONTACT_ID_KIND {
            // Links only carry contact ids that are ids; another value has no place.
            if let Some(n) = number(value) {
                match self.contact_ids.get_mut(&n) {
                    Some(set) => {
                        set.insert(item);
                    }
                    None => {
                        self.contact_ids.insert(n, ItemSet::one(item));
                    }
                }
            }
            return;
        }
        let values = match self.values.get_mut(kind) {
            Some(v) => v,
            None => self.values.entry(kind.into()).or_default(),
        };
        match values.get_mut(value) {
            Some(set) => {
                set.insert(item);
            }
            None => {
                values.insert(value.into(), ItemSet::one(item));
            }
        }
    }

    /// Removes `item` from under `kind`/`value`.
    pub(super) fn remove(&mut self, kind: &str, value: &str, item: &ItemId) {
        if kind == CONTACT_ID_KIND {
            if let Some(n) = number(value)
                && let Some(set) = self.contact_ids.get_mut(&n)
            {
                set.remove(item);
                if set.is_empty() {
                    self.contact_ids.remove(&n);
                }
            }
            return;
        }
        if let Some(values) = self.values.get_mut(kind) {
            if let Some(set) = values.get_mut(value) {
                set.remove(item);
                if set.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.values.remove(kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_ids_and_values_are_found_and_forgotten() {
        let cid = "0123456789abcdef0123456789abcdef";
        let (a, b) = (ItemId([1; 16]), ItemId([2; 16]));
        let mut ids = Identities::default();
        ids.insert(CONTACT_ID_KIND, cid, a);
        ids.insert("jid", "juliet@capulet.lit", a);
        ids.insert("jid", "juliet@capulet.lit", b);
        assert!(
            ids.get(CONTACT_ID_KIND, cid)
                .is_some_and(|s| s.iter().eq([&a]))
        );
        // Upper case spells the same number but is not a contact id.
        assert!(ids.get(CONTACT_ID_KIND, &cid.to_uppercase()).is_none());
        assert!(ids.get("jid", cid).is_none());
        assert!(
            ids.get("jid", "juliet@capulet.lit")
                .is_some_and(|s| s.iter().eq([&a, &b]))
        );
        ids.remove(CONTACT_ID_KIND, cid, &a);
        ids.remove("jid", "juliet@capulet.lit", &a);
        ids.remove("jid", "juliet@capulet.lit", &b);
        assert_eq!(ids, Identities::default());
    }
}
