//! The answers of `Status` and `Devices`: this device, its node, its counts, and
//! the roster with where each device stands ([`Member`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who revoked this device, when it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedBy {
    /// The revoking device's id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// When.
    pub at: String,
}

/// This device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThisDevice {
    /// Its id (16 hex digits).
    pub id: String,
    /// Its libp2p peer id.
    pub peer_id: Option<String>,
    /// Its name.
    pub name: String,
    /// The account's bare JID.
    pub account: String,
    /// Its data directory.
    pub data_dir: String,
    /// Who revoked it, if someone did.
    pub revoked_by: Option<RevokedBy>,
    /// Its role: a relay holds sealed records it cannot read.
    #[serde(default)]
    pub role: Role,
}

/// The node, when one runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Whether a node is running.
    pub running: bool,
    /// Its libp2p listen addresses.
    pub listen: Vec<String>,
    /// The XEP-0174 stream port.
    pub xmpp_port: Option<u16>,
    /// The advertised XEP-0174 instance.
    pub xmpp_instance: Option<String>,
    /// Whether the other devices can dial this one, as AutoNAT found: `public`,
    /// `private` or `unknown`; `None` until a probe ended.
    #[serde(default)]
    pub reachable: Option<String>,
    /// The relay devices (ids) holding a reservation for this device: the others
    /// reach it through them.
    #[serde(default)]
    pub relayed_by: Vec<String>,
}

/// Where another device stood when it was last heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncWord {
    /// It had what this device had.
    UpToDate,
    /// It had fewer records.
    Behind,
    /// It had more records.
    Ahead,
    /// As many, not the same.
    Differs,
}

/// Where another device stands against this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSync {
    /// When last heard from.
    pub state: SyncWord,
    /// By how many records.
    pub by: u64,
    /// When it was heard from.
    pub as_of: String,
    /// Whether it has what this device holds now.
    pub up_to_date_now: bool,
    /// How many records more this device holds now.
    pub behind_now: u64,
}

/// A device's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads and writes contacts.
    #[default]
    Full,
    /// Stores and forwards, holds no secret.
    Relay,
}

impl Role {
    /// The word `--json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Full => "full",
            Role::Relay => "relay",
        }
    }
}

/// A device of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Whether it was revoked.
    pub revoked: bool,
    /// Whether it is the genesis device.
    pub genesis: bool,
    /// Whether it is this device.
    pub this_device: bool,
    /// The address of its connection, when connected.
    pub connected: Option<String>,
    /// When it last reconciled with this device.
    pub last_sync: Option<String>,
    /// When it was last seen (now, when connected).
    pub last_seen: Option<String>,
    /// Whether an exchange this device began with it is under way.
    pub exchanging: bool,
    /// Where it stood when last heard from (kept across restarts).
    pub sync: Option<MemberSync>,
    /// The addresses this device remembers it at, tried in this order when
    /// dialling it: where this device's own dials reached it, then what it
    /// announces, then what it announced before.
    #[serde(default)]
    pub remembered: Vec<String>,
}

/// Live items per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveItems {
    /// In `urn:xmpp:contacts`.
    pub contacts: usize,
    /// In `urn:xmpp:contacts-groups`.
    pub groups: usize,
}

/// The engine's reconciliation counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStats {
    /// Reconciliations done.
    pub reconciliations: u64,
    /// Records refused.
    pub rejected_records: u64,
    /// Records received again.
    pub duplicate_records: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Frames refused.
    pub refused_frames: u64,
    /// Frames that did not decode.
    pub bad_frames: u64,
}

/// `kith status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This device.
    pub device: ThisDevice,
    /// Its node.
    pub node: NodeInfo,
    /// The roster.
    pub roster: Vec<Member>,
    /// Devices connected.
    pub connected_peers: usize,
    /// Records per space.
    pub records: BTreeMap<String, u64>,
    /// Tombstones among them.
    pub tombstones: u64,
    /// Rows in the store.
    pub stored_rows: u64,
    /// Tombstones collected.
    pub collected_tombstones: u64,
    /// Rows set aside as undecodable.
    pub quarantined_records: u64,
    /// Contacts.
    pub contacts: usize,
    /// Groups.
    pub groups: usize,
    /// Items reserved (kept for their ids).
    pub reserved_items: usize,
    /// Live items per node.
    pub live_items: LiveItems,
    /// Items waiting for a secret.
    pub waiting_for_secret: usize,
    /// Items that cannot be opened.
    pub unreadable: usize,
    /// Changes stored since the node started.
    pub changes: u64,
    /// Records held because they are ahead of this device's clock.
    pub held_future_records: usize,
    /// Records set aside by a roster change.
    pub set_aside_records: usize,
    /// Reconciliation counters.
    pub sync: SyncStats,
    /// Items whose entries in the item index and rows in the history wait to be
    /// written (a running node writes them a moment behind the records, once it is
    /// quiet); `None` when nothing waits.
    #[serde(default)]
    pub index_behind: Option<usize>,
}
