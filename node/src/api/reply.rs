//! What a device answers: zero or more [`Reply::Progress`] lines, then one
//! [`Reply::Ok`] with the typed [`super::Answer`] or one [`Reply::Error`].

use serde::{Deserialize, Serialize};

use super::{Answer, Error};

/// One line of a reply.
// One per line on the socket: the size of an `Answer` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Work done so far (imports).
    Progress {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
    /// Success, with the answer.
    Ok(Answer),
    /// Failure.
    Error(Error),
}
