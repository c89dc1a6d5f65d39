//! The mark kith puts in a `<group/>` it writes: the edit that set the group's name
//! and description, and the definitions of the group that edit replaced.
//!
//! ```xml
//! <edited xmlns='urn:kith:fields:0' at='(64 hex):1764490000000.0'
//!         replaces='(32 hex)/(64 hex):1764480000000.0 …'/>
//! ```
//!
//! A rename writes the group as a new item and reserves the ones it replaced, so
//! two renames made apart stay side by side and the older is listed as a conflict
//! (`docs/merge-rules.md` §6). Definitions are ordered by `at` (at most their
//! record's version): a rewrite after a key rotation keeps the mark, so it cannot
//! win over a rename made meanwhile. `replaces` names the definitions this one
//! knew of, each as its item and the edit it held then, so a replaced definition
//! whose reservation has not arrived yet is no conflict, and one written again
//! since (a client's edit in place) still is.

use super::NS;
use super::seen::{parse_version_token, version_token};
use crate::item::Extra;
use crate::record::{ItemId, Version};
use crate::xml::Element;

/// Most replaced items one mark names.
pub const MAX_REPLACED: usize = 16;

/// What a group's mark says ([`read_group_edit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEdit {
    /// The edit that set the group's name and description.
    pub at: Version,
    /// The definitions of the group it replaced: each item, and the edit it held.
    pub replaces: Vec<(ItemId, Version)>,
}

/// The mark in a group's unknown children, if one reads.
pub fn read_group_edit(extra: &Extra) -> Option<GroupEdit> {
    let el = extra.children().iter().find(|c| c.is(NS, "edited"))?;
    read_edit(el)
}

/// An edit's `at` and `replaces`, as [`GroupEdit`].
fn read_edit(el: &Element) -> Option<GroupEdit> {
    let at = parse_version_token(el.attr("at")?)?;
    let replaces = match el.attr("replaces") {
        Some(ids) => ids
            .split(' ')
            .take(MAX_REPLACED)
            .map(|t| {
                let (item, at) = t.split_once('/')?;
                Some((ItemId::parse(item)?, parse_version_token(at)?))
            })
            .collect::<Option<Vec<_>>>()?,
        None => Vec::new(),
    };
    Some(GroupEdit { at, replaces })
}

/// The element `name` with an edit's `at` and `replaces`.
fn edit_element(name: &str, at: Version, replaces: &[(ItemId, Version)]) -> Element {
    let mut el = Element::new(NS, name).with_attr("at", version_token(&at));
    if !replaces.is_empty() {
        let ids: Vec<String> = replaces
            .iter()
            .take(MAX_REPLACED)
            .map(|(item, at)| format!("{item}/{}", version_token(at)))
            .collect();
        el.set_attr("replaces", ids.join(" "));
    }
    el
}

/// Puts the mark in a group's unknown children, in place of any it had.
pub fn set_group_edit(extra: &mut Extra, at: Version, replaces: &[(ItemId, Version)]) {
    let el = edit_element("edited", at, replaces);
    extra.edit(|_, children| {
        children.retain(|c| !c.is(NS, "edited"));
        children.push(el);
    });
}

/// What the mark of a group's removal says ([`read_group_removal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRemoval {
    /// The group id removed.
    pub group: String,
    /// The removal (`at`) and the definitions it reserved, each with the edit it
    /// held (`replaces`).
    pub edit: GroupEdit,
}

/// The element a `<reserved/>` item carries when it marks a group's removal:
/// `<removed xmlns='urn:kith:fields:0' group='g-…' at='…' replaces='…'/>`. A
/// definition of the group it does not name (a rename made apart) is a conflict.
pub fn group_removal_element(group: &str, at: Version, replaces: &[(ItemId, Version)]) -> Element {
    let mut el = edit_element("removed", at, replaces);
    el.set_attr("group", group.to_owned());
    el
}

/// The removal a `<reserved/>` item's children mark, if one reads.
pub fn read_group_removal(extra: &Extra) -> Option<GroupRemoval> {
    let el = extra.children().iter().find(|c| c.is(NS, "removed"))?;
    let group = el
        .attr("group")
        .filter(|g| !g.is_empty() && g.len() <= 256)?;
    Some(GroupRemoval {
        group: group.to_owned(),
        edit: read_edit(el)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Hlc;
    use crate::record::DeviceId;

    #[test]
    fn the_mark_reads_back_and_replaces_the_one_before() {
        let v = |ms| Version {
            hlc: Hlc {
                wall_ms: ms,
                counter: 2,
            },
            device: DeviceId([7; 32]),
        };
        let mut extra = Extra::default();
        assert_eq!(read_group_edit(&extra), None);
        set_group_edit(
            &mut extra,
            v(5),
            &[(ItemId([1; 16]), v(1)), (ItemId([2; 16]), v(2))],
        );
        set_group_edit(&mut extra, v(9), &[(ItemId([3; 16]), v(3))]);
        assert_eq!(extra.children().len(), 1);
        assert_eq!(
            read_group_edit(&extra),
            Some(GroupEdit {
                at: v(9),
                replaces: vec![(ItemId([3; 16]), v(3))],
            })
        );
        let many: Vec<(ItemId, Version)> = (0..40).map(|i| (ItemId([i; 16]), v(1))).collect();
        let removal = Extra::new(
            Vec::new(),
            vec![group_removal_element("g-1", v(4), &many[..2])],
        );
        assert_eq!(
            read_group_removal(&removal),
            Some(GroupRemoval {
                group: "g-1".into(),
                edit: GroupEdit {
                    at: v(4),
                    replaces: many[..2].to_vec(),
                },
            })
        );
        assert_eq!(read_group_edit(&removal), None);
        set_group_edit(&mut extra, v(10), &many);
        let read = read_group_edit(&extra).expect("reads");
        assert_eq!(read.replaces, many[..MAX_REPLACED]);
    }
}
