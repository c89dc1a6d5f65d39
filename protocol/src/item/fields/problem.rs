//! Why a stamps element does not read.

/// What is wrong with a stamps element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A contact id that is not 32 lowercase hex digits.
    #[error("a contact id that is not 32 lowercase hex digits")]
    BadContactId,
    /// More aliases than [`super::MAX_ALIASES`].
    #[error("more than {} aliases", super::MAX_ALIASES)]
    TooManyAliases,
    /// A device that is not 64 hex digits.
    #[error("a device that is not 64 hex digits")]
    BadDevice,
    /// A mark that does not read.
    #[error("a mark that does not read")]
    BadMark,
    /// A seen entry that does not read.
    #[error("a seen entry that does not read")]
    BadSeen,
    /// A stamp that does not read.
    #[error("a stamp that does not read")]
    BadStamp,
    /// A conflict without its stamps.
    #[error("a conflict without its stamps")]
    ConflictWithoutStamps,
    /// A contact conflict that is not a deletion.
    #[error("a contact conflict that is not a deletion")]
    ContactConflictNotDeletion,
    /// A device seen twice.
    #[error("a device seen twice")]
    DeviceSeenTwice,
    /// A field without its key.
    #[error("a field without its key")]
    FieldWithoutKey,
    /// Marks that do not match.
    #[error("marks that do not match")]
    MarksDoNotMatch,
    /// A removed field that is also present.
    #[error("a removed field that is also present")]
    RemovedAndPresent,
    /// A removed field of a kind that is never removed.
    #[error("a removed field of a kind that is never removed")]
    RemovedKindNeverRemoved,
    /// A removed field without its mark.
    #[error("a removed field without its mark")]
    RemovedWithoutMark,
    /// Too many conflicts.
    #[error("too many conflicts")]
    TooManyConflicts,
    /// Too many devices.
    #[error("too many devices")]
    TooManyDevices,
    /// Too many removed fields.
    #[error("too many removed fields")]
    TooManyRemoved,
    /// Too many stamps.
    #[error("too many stamps")]
    TooManyStamps,
    /// More than one stamps element.
    #[error("more than one stamps element")]
    TwoElements,
    /// An unknown element.
    #[error("an unknown element")]
    UnknownElement,
    /// A field of unknown kind.
    #[error("a field of unknown kind")]
    UnknownKind,
}
