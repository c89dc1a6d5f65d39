//! A set of item ids, small first: what the view's identity index keeps per
//! identity. Nearly every identity is listed by one item, held in place; a
//! `BTreeSet` would allocate a whole B-tree leaf (about 200 bytes) for it.

use std::collections::BTreeSet;

use crate::record::ItemId;

/// Item ids in ascending order, without repeats: one in place, a sorted `Vec` while
/// small, a `BTreeSet` once many items list one identity (so that inserting stays
/// cheap).
#[derive(Debug, Clone)]
pub(super) enum ItemSet {
    /// Exactly one id.
    One(ItemId),
    /// At most [`ItemSet::SMALL`] ids, sorted.
    Small(Vec<ItemId>),
    /// More.
    Large(BTreeSet<ItemId>),
}

/// Equal when they hold the same ids, however they hold them (the view is compared
/// whole: built at once and kept up edit by edit, it must come out equal).
impl PartialEq for ItemSet {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ItemSet {}

impl Default for ItemSet {
    fn default() -> Self {
        Self::Small(Vec::new())
    }
}

impl ItemSet {
    /// Most ids kept in a `Vec`.
    const SMALL: usize = 16;

    /// The set holding `item` alone.
    pub(super) fn one(item: ItemId) -> Self {
        Self::One(item)
    }

    /// Adds `item`; whether it was new.
    pub(super) fn insert(&mut self, item: ItemId) -> bool {
        match self {
            Self::One(only) if *only == item => false,
            Self::One(only) => {
                let (a, b) = if *only < item {
                    (*only, item)
                } else {
                    (item, *only)
                };
                *self = Self::Small(vec![a, b]);
                true
            }
            Self::Small(v) if v.is_empty() => {
                *self = Self::One(item);
                true
            }
            Self::Small(v) => match v.binary_search(&item) {
                Ok(_) => false,
                Err(at) if v.len() < Self::SMALL => {
                    v.insert(at, item);
                    true
                }
                Err(_) => {
                    let mut set: BTreeSet<ItemId> = v.drain(..).collect();
                    set.insert(item);
                    *self = Self::Large(set);
                    true
                }
            },
            Self::Large(set) => set.insert(item),
        }
    }

    /// Removes `item`; whether it was there.
    pub(super) fn remove(&mut self, item: &ItemId) -> bool {
        match self {
            Self::One(only) if only == item => {
                *self = Self::Small(Vec::new());
                true
            }
            Self::One(_) => false,
            Self::Small(v) => match v.binary_search(item) {
                Ok(at) => {
                    v.remove(at);
                    if let [only] = v.as_slice() {
                        *self = Self::One(*only);
                    }
                    true
                }
                Err(_) => false,
            },
            Self::Large(set) => set.remove(item),
        }
    }

    /// Whether it holds nothing.
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Self::One(_) => false,
            Self::Small(v) => v.is_empty(),
            Self::Large(set) => set.is_empty(),
        }
    }

    /// The ids in ascending order.
    pub(super) fn iter(&self) -> Iter<'_> {
        match self {
            Self::One(only) => Iter::Small(std::slice::from_ref(only).iter()),
            Self::Small(v) => Iter::Small(v.iter()),
            Self::Large(set) => Iter::Large(set.iter()),
        }
    }
}

/// The ids of an [`ItemSet`], in ascending order.
pub(super) enum Iter<'a> {
    Small(std::slice::Iter<'a, ItemId>),
    Large(std::collections::btree_set::Iter<'a, ItemId>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a ItemId;

    fn next(&mut self) -> Option<&'a ItemId> {
        match self {
            Self::Small(i) => i.next(),
            Self::Large(i) => i.next(),
        }
    }
}

impl<'a> IntoIterator for &'a ItemSet {
    type Item = &'a ItemId;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The same contents and order as a `BTreeSet` after any inserts and removes.
        #[test]
        fn behaves_as_a_btreeset(
            first in prop::option::of(0u8..40),
            ops in prop::collection::vec((any::<bool>(), 0u8..40), 0..200),
        ) {
            // Empty, or one id in place (how the index starts a set).
            let (mut set, mut model) = match first {
                Some(b) => (ItemSet::one(ItemId([b; 16])), BTreeSet::from([ItemId([b; 16])])),
                None => (ItemSet::default(), BTreeSet::new()),
            };
            prop_assert!(set.iter().eq(model.iter()));
            for (add, b) in ops {
                let id = ItemId([b; 16]);
                if add {
                    prop_assert_eq!(set.insert(id), model.insert(id));
                } else {
                    prop_assert_eq!(set.remove(&id), model.remove(&id));
                }
                prop_assert_eq!(set.is_empty(), model.is_empty());
                prop_assert!(set.iter().eq(model.iter()));
                prop_assert_eq!(&set, &model.iter().fold(ItemSet::default(), |mut s, i| {
                    s.insert(*i);
                    s
                }));
            }
        }
    }
}
