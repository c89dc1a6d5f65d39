//! Why a request failed: [`Error`], with an [`ErrorKind`] that says what kind of
//! failure it is (the CLI turns kinds into exit codes, in its `exit` module).

use serde::{Deserialize, Serialize};

/// What kind of failure (the CLI's exit code follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request ran and was refused (no such contact, invite used…): exit 1.
    Refused,
    /// Malformed input (a JID, a document, a code): exit 3.
    Input,
    /// A peer could not be reached: exit 5.
    Unreachable,
    /// The data directory or store failed (locked, corrupt, disk full): exit 6.
    Store,
    /// The request needs a running node: exit 7.
    NotRunning,
    /// The node is answering as many commands as it takes at once: exit 7 if it
    /// stays so (the CLI tries again for a few seconds first).
    Busy,
    /// The node answered with another kind of answer than asked for (a node of
    /// another version): exit 7.
    Mismatch,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// What kind.
    pub kind: ErrorKind,
    /// One line for people.
    pub message: String,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        Self::new(ErrorKind::Store, e.to_string())
    }
}
