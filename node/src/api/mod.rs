//! The control API between the `kith` CLI and a device: typed requests
//! ([`Request`]), answers ([`Answer`], one struct per kind) and errors ([`Error`],
//! whose [`ErrorKind`] decides the exit code), carried as JSON lines on the node's
//! Unix socket ([`socket`]: `control.sock` in the data directory, mode 0600) or
//! through a [`Handle`] inside the process. When no node runs, the CLI hands the same
//! requests to [`crate::Device::handle`] directly.

pub mod answer;
pub mod error;
pub mod handle;
pub mod reply;
pub mod request;
pub mod socket;
pub mod status;

pub use answer::{Answer, Payload, Unexpected};
pub use error::{Error, ErrorKind};
pub use handle::{Call, Handle};
pub use reply::Reply;
pub use request::{ImportFormat, MAX_REQUEST_BYTES, MAX_WAIT_MS, MAX_WAITERS, Request};
