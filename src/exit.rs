//! The exit codes of `kith`, chosen here and nowhere else: every failure becomes an
//! [`Exit`], whose [`Exit::code`] is the documented code (README, "Exit codes").
//!
//! 0 success (also when the reader of the output closed it); 1 the command ran and
//! was refused (no such contact, an invite code used, expired or wrong, devices that
//! disagree in the demo); 2 wrong usage; 3 bad input (a malformed JID, name,
//! document, code or data); 4 a file could not be read; 5 a peer could not be
//! reached, or the node could not listen; 6 the data directory or store failed (not
//! initialised, already initialised, in use by another node, corrupt, disk full); 7
//! the command needs a running node, or the node stayed busy or answered as another
//! version would.

use kith_node::api::{self, ErrorKind};
use kith_node::{device, node, store};

/// A failure, by what it means for the exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Exit {
    /// The command ran and was refused: exit 1.
    #[error("{0}")]
    Refused(String),
    /// Wrong usage that clap cannot see: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Bad input: exit 3.
    #[error("{0}")]
    Input(String),
    /// A file could not be read: exit 4.
    #[error("{0}")]
    Io(String),
    /// A peer could not be reached, or the node could not listen: exit 5.
    #[error("{0}")]
    Unreachable(String),
    /// The data directory or store failed: exit 6.
    #[error("{0}")]
    Store(String),
    /// No node runs, or it stayed busy, or answered as another version: exit 7.
    #[error("{0}")]
    Node(String),
    /// Standard output was closed by its reader: stop quietly, exit 0.
    #[error("standard output closed")]
    ClosedPipe,
}

impl Exit {
    /// The exit code.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Self::ClosedPipe => 0,
            Self::Refused(_) => 1,
            Self::Usage(_) => 2,
            Self::Input(_) => 3,
            Self::Io(_) => 4,
            Self::Unreachable(_) => 5,
            Self::Store(_) => 6,
            Self::Node(_) => 7,
        }
    }

    /// The exit of any error: an [`Exit`] as it is, anything else a refusal.
    pub(crate) fn of(e: &anyhow::Error) -> u8 {
        e.downcast_ref::<Exit>().map_or(1, Exit::code)
    }
}

impl From<api::Error> for Exit {
    fn from(e: api::Error) -> Self {
        let m = e.message;
        match e.kind {
            ErrorKind::Refused => Self::Refused(m),
            ErrorKind::Input => Self::Input(m),
            ErrorKind::Unreachable => Self::Unreachable(m),
            ErrorKind::Store => Self::Store(m),
            ErrorKind::NotRunning | ErrorKind::Busy | ErrorKind::Mismatch => Self::Node(m),
        }
    }
}

impl From<api::Unexpected> for Exit {
    fn from(e: api::Unexpected) -> Self {
        api::Error::from(e).into()
    }
}

impl From<device::Error> for Exit {
    fn from(e: device::Error) -> Self {
        match e {
            device::Error::Jid(m) | device::Error::Name(m) => Self::Input(m),
            device::Error::Store(e @ store::Error::NeedsPassphrase(_)) => {
                Self::Usage(e.to_string())
            }
            device::Error::Store(
                e @ store::Error::Vault {
                    source: store::vault::Error::Wrong,
                    ..
                },
            ) => Self::Refused(e.to_string()),
            other => Self::Store(other.to_string()),
        }
    }
}

impl From<&node::Error> for Exit {
    /// A node that stopped on an error: 6 when its store failed, 5 when the network
    /// could not be set up (an address it cannot listen on, mDNS).
    fn from(e: &node::Error) -> Self {
        match e {
            node::Error::Store(_) | node::Error::Failed(_) => Self::Store(e.to_string()),
            _ => Self::Unreachable(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_failure_has_its_documented_code() {
        let api = |kind| Exit::from(api::Error::new(kind, "x")).code();
        assert_eq!(api(ErrorKind::Refused), 1);
        assert_eq!(api(ErrorKind::Input), 3);
        assert_eq!(api(ErrorKind::Unreachable), 5);
        assert_eq!(api(ErrorKind::Store), 6);
        assert_eq!(api(ErrorKind::NotRunning), 7);
        assert_eq!(api(ErrorKind::Busy), 7);
        assert_eq!(api(ErrorKind::Mismatch), 7);
        assert_eq!(Exit::from(device::Error::Name("x".into())).code(), 3);
        assert_eq!(Exit::Usage("x".into()).code(), 2);
        assert_eq!(Exit::Io("x".into()).code(), 4);
        assert_eq!(Exit::of(&anyhow::anyhow!("plain")), 1);
        assert_eq!(Exit::of(&Exit::ClosedPipe.into()), 0);
    }
}
