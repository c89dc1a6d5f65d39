//! The contacts layer: the merged contact list ([`View`]), the commands that change
//! it ([`Command`], [`Editor`]), and a device's local state tying replica, secrets
//! and view together ([`Book`]).

mod book;
mod edit;
pub mod history;
pub mod merge;
mod view;

pub use book::{Book, Opened};
pub use edit::{
    Command, ContactEdit, DEFAULT_COUNT_BUCKET, Editor, Error, ImportSummary, MARK_KEPT_MS, Written,
};
pub use view::{
    GroupConflict, GroupEntry, ItemRead, LostGroup, MergedContact, Reads, TakenOut, Unreadable,
    View,
};
