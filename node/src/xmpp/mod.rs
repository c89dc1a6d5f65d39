//! The XEP-0174 stream port and the PEP service on it.
//!
//! A link-local XMPP client that finds this device's `_presence._tcp` advertisement
//! (or the device's own client, on loopback) opens a stream to the SRV port. The
//! node answers with its stream header and `<stream:features/>` carrying its
//! disco#info (XEP-0174 §5's shortcut), and then serves the two XEP-0510 nodes
//! `urn:xmpp:contacts` and `urn:xmpp:contacts-groups` as a PEP service would:
//! XEP-0060 retrieve (XEP-0059 paging), publish with XEP-0223 preconditions,
//! retract, subscriptions and `+notify` (XEP-0115) notifications of every change,
//! including changes made on other devices. Items are the XEP-0473 `<encrypted/>`
//! payloads the devices replicate; a published item becomes a record signed by this
//! device (see [`kith_protocol::contacts::Command::Publish`]). Approved clients get
//! the node secrets in XEP-0373 `<signcrypt/>` messages when their stream opens and
//! whenever they change.
//!
//! Parts: [`stream`] cuts bytes into frames, [`stanza`] reads and writes the stanzas
//! (both without I/O), `server` runs the listener and one task per stream; the
//! node's task answers what needs the device (`crate::node`'s `pep` part).

pub mod stanza;
pub mod stream;

pub mod clients;
pub mod peer;
mod server;

use std::sync::Arc;

use kith_protocol::item::NodeKind;
use kith_protocol::seal::Sealed;
use kith_protocol::xml::Element;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use server::{
    IDLE_SECS, MAX_CONNECTIONS, MAX_LOCAL_CONNECTIONS, MAX_PER_ADDRESS, MAX_STREAM_SECS,
    WRITE_SECS, serve,
};

/// Notifications queued per interested stream before a slow client is dropped.
pub const NOTICE_QUEUE: usize = 4096;

/// A pubsub request from a stream that needs the device (items, publish, retract),
/// with where the answer (the iq result payload, or the error) goes.
#[derive(Debug)]
pub struct Call {
    /// What.
    pub query: stanza::Query,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Option<Element>, stanza::Refusal>>,
}

/// An item changed, as the node tells the streams that want to know.
#[derive(Debug, Clone)]
pub struct Notice {
    /// Which node.
    pub node: NodeKind,
    /// Which item (as clients on this device know it).
    pub id: String,
    /// The item as now published, or `None`: retracted.
    pub sealed: Option<Sealed>,
}

/// What every stream task shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The advertised instance (`label@host` of the guise): the stream's `from`, and
    /// the one before it. It changes with the guise; streams open stay valid.
    pub instance: watch::Receiver<Names>,
    /// The account's bare JID: notifications' and the secrets message's `from`
    /// (sent to allowed streams only).
    pub account: String,
    /// Whether pubsub is served to other machines (disco always is).
    pub lan: bool,
    /// Requests to the node's task.
    pub calls: mpsc::Sender<Call>,
    /// Notifications from the node's task.
    pub notices: broadcast::Sender<Arc<Notice>>,
    /// The current secrets message (the `<openpgp/>` element) for the approved
    /// clients; `None` when no client is approved.
    pub secrets: watch::Receiver<Option<Arc<Element>>>,
}

/// The names of the node's instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// The instance now.
    pub now: String,
    /// The one before the last change of the guise: a stream opened to it (by a
    /// client that resolved it just before) is still served.
    pub before: Option<String>,
}

impl Context {
    /// The instance now.
    pub fn instance(&self) -> String {
        self.instance.borrow().now.clone()
    }

    /// Whether a stream addressed `to` is for this node.
    pub fn answers_to(&self, to: &str) -> bool {
        let names = self.instance.borrow();
        to.eq_ignore_ascii_case(&names.now)
            || names
                .before
                .as_deref()
                .is_some_and(|b| to.eq_ignore_ascii_case(b))
    }
}
