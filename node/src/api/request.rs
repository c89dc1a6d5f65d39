//! What the `kith` CLI asks of a device: [`Request`], one JSON line on the control
//! socket, and the limits on it.

use serde::{Deserialize, Serialize};

/// Largest request line accepted, bytes: an import carries its whole document, up to
/// `xml::Limits::IMPORT`, escaped in JSON (at most twice as long: a quote, a
/// backslash, a tab or a newline becomes two characters).
pub const MAX_REQUEST_BYTES: usize = 2 * kith_protocol::xml::Limits::IMPORT.max_bytes + 1024 * 1024;

/// Longest a [`Request::Wait`] waits, in milliseconds.
pub const MAX_WAIT_MS: u64 = 60_000;

/// Most [`Request::Wait`]s a node holds at once (each holds a control client).
pub const MAX_WAITERS: usize = 8;

/// A request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// This device, roster, peers, counts.
    Status,
    /// The merged contact list.
    Contacts,
    /// The contacts in one group, found by its name as `RenameGroup` finds it (case
    /// and look-alikes ignored: the contacts of every group named alike); refused
    /// when no group has that name.
    ContactsIn {
        /// The group's name.
        group: String,
    },
    /// One contact, by one of its JIDs.
    Contact {
        /// A JID of the contact.
        jid: String,
    },
    /// The groups.
    Groups,
    /// The roster, with where each device stands against this one.
    Devices,
    /// Reconciles with every connected device at once, so that the next `Status` or
    /// `Devices` says where each stands now (`{"checking": n}`, the number of
    /// connected devices; 0 without a node).
    CheckSync,
    /// Adds a contact.
    AddContact {
        /// Its JID.
        jid: String,
        /// Name to show.
        name: Option<String>,
        /// Group names (created when missing).
        groups: Vec<String>,
    },
    /// Edits a contact.
    EditContact {
        /// A JID of the contact.
        jid: String,
        /// New name.
        name: Option<String>,
        /// Removes the name.
        clear_name: bool,
        /// Groups to add.
        add_groups: Vec<String>,
        /// Groups to leave.
        remove_groups: Vec<String>,
        /// JIDs to add.
        add_jids: Vec<String>,
        /// JIDs to remove.
        remove_jids: Vec<String>,
        /// Whether an added JID may be another contact's (merging the two).
        #[serde(default)]
        merge: bool,
    },
    /// Deletes a contact.
    RemoveContact {
        /// A JID of the contact.
        jid: String,
    },
    /// Creates a group.
    AddGroup {
        /// Its name.
        name: String,
        /// Its description.
        description: Option<String>,
    },
    /// Renames a group.
    RenameGroup {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Deletes a group.
    RemoveGroup {
        /// Its name.
        name: String,
    },
    /// Imports a document.
    Import {
        /// `roster` (RFC 6121) or `metacontacts` (XEP-0209).
        format: ImportFormat,
        /// The document.
        text: String,
        /// Whether names in the document replace names kept here.
        #[serde(default)]
        replace: bool,
    },
    /// The conflicts the merge decided, per contact.
    Conflicts,
    /// Brings back the value that lost in a conflict of a contact, as a new edit.
    RestoreContact {
        /// A JID of the contact.
        jid: String,
        /// Which of its conflicts, from 1 (as `Conflicts` numbers them).
        n: usize,
    },
    /// The changes this device stored, newest first.
    Log {
        /// Only those of the contact with this JID.
        jid: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// The roster, as an RFC 6121 `<query/>` (or a XEP-0227 document).
    Export {
        /// With names and group names (otherwise the minimal roster of XEP-0510 §5).
        #[serde(default)]
        full: bool,
        /// Inside a XEP-0227 document for the account's user, for a server's import.
        #[serde(default)]
        xep0227: bool,
    },
    /// Opens a pairing invitation (needs a running node): `{"code", "long_code",
    /// "nameplate", "expires", "expires_ms"}`.
    Invite {
        /// Seconds it stays valid.
        ttl_secs: u64,
        /// For a relay device (which is never sent a secret).
        #[serde(default)]
        relay: bool,
    },
    /// The invitations the node remembers: open ones, and those ended within the
    /// last hour, with how each stands.
    Invitations,
    /// Cancels the open invitation with this code or nameplate, or every open one.
    CancelInvites {
        /// The code (or its first two symbols); `None` for all.
        code: Option<String>,
    },
    /// Gives a device of the roster a new name.
    RenameDevice {
        /// Name or id prefix of the device.
        device: String,
        /// Its new name.
        name: String,
    },
    /// Revokes a device, by name or id prefix.
    Revoke {
        /// Name or id prefix.
        device: String,
    },
    /// New secrets for both nodes, every item re-sealed.
    Rotate,
    /// Answers `{"changes": n}` once this device has stored more than `after`
    /// changes (the `changes` count of `status`: anything stored since the node
    /// started, its own edits and what peers sent), or when `timeout_ms` (at most
    /// [`MAX_WAIT_MS`]) has passed. Without a node it answers at once.
    Wait {
        /// The count last seen.
        after: u64,
        /// How long to wait at most.
        timeout_ms: u64,
    },
    /// Approves an XMPP client's OpenPGP certificate to receive the secrets.
    AddClient {
        /// The certificate (binary or ASCII-armoured), base64.
        cert: String,
    },
    /// The XMPP clients, approved or waiting.
    Clients,
    /// Approves a client that published its certificate on the stream.
    ApproveClient {
        /// Its fingerprint (hex, spaces and case ignored).
        fingerprint: String,
    },
    /// Removes a client; if it was approved, the secrets rotate.
    RemoveClient {
        /// Its fingerprint (hex, spaces and case ignored).
        fingerprint: String,
    },
}

impl Request {
    /// Whether only a running node can answer it (the invitations live in its
    /// memory): without one the CLI says so at once, opening nothing.
    pub fn needs_node(&self) -> bool {
        matches!(
            self,
            Request::Invite { .. } | Request::Invitations | Request::CancelInvites { .. }
        )
    }

    /// The kind of [`super::Answer`] this request is answered with (its variant's
    /// name): what a caller checks an answer against.
    pub fn answer_kind(&self) -> &'static str {
        match self {
            Request::Status => "Status",
            Request::Contacts | Request::ContactsIn { .. } => "Contacts",
            Request::Contact { .. } => "Contact",
            Request::Groups => "Groups",
            Request::Devices => "Devices",
            Request::CheckSync => "Checking",
            Request::AddContact { .. } | Request::EditContact { .. } => "ContactChanged",
            Request::RemoveContact { .. } => "ContactRemoved",
            Request::AddGroup { .. }
            | Request::RenameGroup { .. }
            | Request::RemoveGroup { .. } => "GroupChanged",
            Request::RestoreContact { .. } => "Done",
            Request::Import { .. } => "Imported",
            Request::Conflicts => "Conflicts",
            Request::Log { .. } => "Log",
            Request::Export { .. } => "Exported",
            Request::Invite { .. } => "Invited",
            Request::Invitations => "Invitations",
            Request::CancelInvites { .. } => "Cancelled",
            Request::Revoke { .. } => "Revoked",
            Request::RenameDevice { .. } => "Renamed",
            Request::Rotate => "Rotated",
            Request::Wait { .. } => "Changes",
            Request::AddClient { .. } | Request::ApproveClient { .. } => "ClientApproved",
            Request::Clients => "Clients",
            Request::RemoveClient { .. } => "ClientRemoved",
        }
    }

    /// Whether the request changes the contact list, the roster, the secrets or
    /// the approved clients, or invites a device: what a revoked device refuses.
    pub fn changes_something(&self) -> bool {
        matches!(
            self,
            Request::AddContact { .. }
                | Request::EditContact { .. }
                | Request::RemoveContact { .. }
                | Request::AddGroup { .. }
                | Request::RenameGroup { .. }
                | Request::RemoveGroup { .. }
                | Request::Import { .. }
                | Request::RestoreContact { .. }
                | Request::Invite { .. }
                | Request::Revoke { .. }
                | Request::RenameDevice { .. }
                | Request::Rotate
                | Request::AddClient { .. }
                | Request::ApproveClient { .. }
                | Request::RemoveClient { .. }
        )
    }

    /// Whether a relay device answers it: what reads no contact and changes
    /// nothing (a relay holds no secret and authors no record).
    pub fn relay_answers(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::Wait { .. }
                | Request::Devices
                | Request::CheckSync
                | Request::Invitations
                | Request::CancelInvites { .. }
        )
    }

    /// Whether answering it touches one item or a few (an edit or a lookup): the
    /// node answers those on its own task. Not a group's removal, which rewrites
    /// every contact in the group. The others (an import, a rotation, a
    /// list of every contact) may take long, and run where the rest of the node's
    /// tasks go on meanwhile.
    pub fn is_quick(&self) -> bool {
        matches!(
            self,
            Request::Contact { .. }
                | Request::AddContact { .. }
                | Request::EditContact { .. }
                | Request::RemoveContact { .. }
                | Request::AddGroup { .. }
                | Request::RenameGroup { .. }
                | Request::RestoreContact { .. }
        )
    }
}

/// Formats `kith import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// RFC 6121 roster.
    Roster,
    /// XEP-0209 metacontacts.
    Metacontacts,
}
