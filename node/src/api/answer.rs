//! What each request answers, as types: [`Answer`] has one variant per kind of
//! answer, each holding its own struct, so the CLI reads fields, not string keys.
//! Their JSON is what `--json` prints; times are XEP-0082 strings, ids 16 hex digits.
//!
//! Every payload type converts into an [`Answer`] (`From`) and back out of one
//! (`TryFrom`, failing with the answer that came instead), so a caller asks for the
//! type it expects: `let contacts: ContactList = answer.try_into()?`.

use serde::{Deserialize, Serialize};

use super::status::{Member, Status};

/// A contact as the merged view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Its item id.
    pub id: String,
    /// The name to show.
    pub name: Option<String>,
    /// Its XMPP addresses (its identities of type `jid`).
    pub jids: Vec<String>,
    /// Its identities of other types (XEP-0510 allows any, such as `tel`), in the
    /// contact's order; left out of the JSON when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_identities: Vec<OtherIdentity>,
    /// Its groups' names, sorted.
    pub groups: Vec<String>,
    /// How many items it was merged from.
    pub items: usize,
    /// How many of its fields had a conflict.
    pub conflicts: usize,
    /// When it last changed.
    pub updated: String,
}

/// An identity of a type other than `jid`: `<identity type='tel'>+1 555 0100</identity>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherIdentity {
    /// Its `type` attribute.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its value.
    pub value: String,
}

/// Every contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContactList(pub Vec<Contact>);

/// A group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// How many contacts are in it.
    pub contacts: usize,
}

/// Every group, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupList(pub Vec<Group>);

/// The roster, with where each device stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceList(pub Vec<Member>);

/// A check of every connected device began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checking {
    /// How many devices are checked (the connected ones).
    pub checking: usize,
}

/// A contact added or edited, as stored after the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactChanged {
    /// Always true.
    pub done: bool,
    /// The contact (names trimmed and in NFC, groups as stored), `None` if it is
    /// not found by the addresses given (merged away meanwhile).
    pub contact: Option<Contact>,
    /// For an edit: whether anything a person sees changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// For an edit: the groups it put the contact in, by name as stored (a group
    /// asked for by a look-alike name is named as the group is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<String>,
    /// For an edit: the groups it took the contact out of, by name as stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
}

/// What a removed contact was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// Its name.
    pub name: Option<String>,
    /// Every XMPP address it had.
    pub jids: Vec<String>,
}

/// A contact removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRemoved {
    /// Always true.
    pub done: bool,
    /// What it was, when it was found.
    pub removed: Option<Removed>,
}

/// A group made or renamed, by its name as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupChanged {
    /// Always true.
    pub done: bool,
    /// Its name as stored (the look-alike an existing group had, if so).
    pub group: Option<String>,
    /// For a rename: whether what a person sees of the group changed (false: it
    /// had that name already, and no name was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// For a rename: the name the group had, as stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
    /// For a rename or a removal that found more than one group named alike
    /// (devices apart named them so): how many groups it made one (the one kept
    /// among them), or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<usize>,
    /// For a rename: how many definitions of the group written apart, listed as
    /// its conflicts, it settled (none: left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled: Option<usize>,
}

/// A command carried out that has nothing more to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub done: bool,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// Contacts in the document.
    pub contacts: u64,
    /// Groups in the document.
    pub groups: usize,
    /// Contacts new here.
    pub added: usize,
    /// Contacts that changed.
    pub updated: usize,
    /// Contacts that had it all.
    pub unchanged: usize,
    /// The account's own address, when the document listed it: not a contact of
    /// the account, so left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out: Option<String>,
}

/// What lost to a concurrent write, and to whose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loss {
    /// The value that lost, described (`name "Jules"`).
    pub lost: String,
    /// The device that made it.
    pub lost_by: String,
    /// When.
    pub lost_at: String,
    /// The device whose edit won.
    pub won_by: String,
    /// When.
    pub won_at: String,
}

/// One conflict of a contact: a value that lost to a concurrent edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Its number, from 1 (what `contact restore` takes).
    pub n: usize,
    /// What lost, to whose edit.
    #[serde(flatten)]
    pub loss: Loss,
}

/// A contact with conflicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflicted {
    /// Its name.
    pub name: Option<String>,
    /// Its XMPP addresses.
    pub jids: Vec<String>,
    /// Its conflicts, newest first.
    pub conflicts: Vec<Conflict>,
}

/// A group's definition that lost to another written apart: two devices renamed
/// the group (or created it with different descriptions) without knowing of each
/// other's write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConflict {
    /// The group's name now.
    pub group: String,
    /// What lost (`name "Office"`, `description "…"`), to whose write.
    #[serde(flatten)]
    pub loss: Loss,
}

/// Every contact with conflicts, and the groups' conflicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictList {
    /// The contacts with conflicts.
    pub contacts: Vec<Conflicted>,
    /// The groups' definitions that lost, by group id, newest first.
    pub groups: Vec<GroupConflict>,
}

/// One change stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// When it was made.
    pub at: String,
    /// The device that made it (its name, or its id).
    pub device: String,
    /// The contact's name then.
    pub name: Option<String>,
    /// Its XMPP addresses then.
    pub jids: Vec<String>,
    /// What changed (`name "Jules"`, `+group Verona`, `deleted`).
    pub changes: Vec<String>,
}

/// Changes stored, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeLog(pub Vec<Change>);

/// An exported roster document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// The XML.
    pub roster: String,
}

/// An invitation opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    /// The code alone (`K7QX2-M9PDA`).
    pub code: String,
    /// The code with the pairing listener's addresses.
    pub long_code: String,
    /// Its first two symbols.
    pub nameplate: String,
    /// When it expires.
    pub expires: String,
    /// The same, Unix ms.
    pub expires_ms: u64,
    /// Whether it is for a relay device.
    #[serde(default)]
    pub relay: bool,
}

/// How an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// A device may join with it.
    Open,
    /// Its time ran out.
    Expired,
    /// A device joined with it.
    Joined,
    /// It was cancelled.
    Cancelled,
    /// It closed after three wrong codes.
    Closed,
}

/// One invitation the node remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Its first two symbols.
    pub nameplate: String,
    /// How it stands.
    pub state: InvitationState,
    /// The device that joined with it.
    pub device: Option<String>,
    /// That device's name.
    pub name: Option<String>,
    /// Wrong codes tried so far.
    pub wrong_codes: u8,
    /// When it was opened.
    pub created: String,
    /// The same, Unix ms.
    pub created_ms: u64,
    /// When it expires.
    pub expires: String,
    /// The same, Unix ms.
    pub expires_ms: u64,
    /// Whether it is for a relay device.
    #[serde(default)]
    pub relay: bool,
}

/// The invitations open or ended within the hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationList {
    /// By nameplate.
    pub invitations: Vec<Invitation>,
}

/// Invitations cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancelled {
    /// Their nameplates.
    pub cancelled: Vec<String>,
}

/// A device revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// Its id.
    pub revoked: String,
    /// Its name.
    pub name: Option<String>,
}

/// A device renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    /// Its id.
    pub renamed: String,
    /// The name it had.
    pub old: String,
    /// The name it has.
    pub name: String,
    /// Whether the name differs from the old one.
    pub changed: bool,
}

/// The secrets rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotated {
    /// Always true.
    pub rotated: bool,
}

/// How many times the device stored something since its node started, how many
/// contacts it then held, and whether its item index waited to be written: a
/// waiting script learns them without a `status`, which counts every stored row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The count.
    pub changes: u64,
    /// The merged contacts at that moment (as `status` counts them in `contacts`).
    #[serde(default)]
    pub contacts: u64,
    /// Items whose item index entries and history rows then waited to be written
    /// (as `status` says in `index_behind`); `None` when nothing waited.
    #[serde(default)]
    pub index_behind: Option<usize>,
}

/// An XMPP client approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientApproved {
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// Always true.
    pub approved: bool,
}

/// How an XMPP client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    /// It receives the secrets.
    Approved,
    /// It published its certificate and waits for `kith client approve`.
    Waiting,
    /// Its certificate cannot be encrypted to (expired, revoked, no encryption key).
    Unusable,
}

impl ClientState {
    /// The word `--json` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Approved => "approved",
            ClientState::Waiting => "waiting",
            ClientState::Unusable => "unusable",
        }
    }
}

/// An XMPP client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its certificate's fingerprint.
    pub fingerprint: String,
    /// How it stands.
    pub state: ClientState,
    /// The certificate's user ids.
    pub user_ids: Vec<String>,
    /// When it was added.
    pub added: String,
}

/// The XMPP clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientList(pub Vec<Client>);

/// An XMPP client removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRemoved {
    /// Its fingerprint.
    pub fingerprint: String,
    /// Always true.
    pub removed: bool,
    /// Whether the secrets rotated (it was approved).
    pub rotated: bool,
}

macro_rules! answers {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// A successful answer: one variant per kind.
        // One answer per request, moved a few times: the size of `Status` costs
        // nothing worth a box.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Answer {
            $(
                #[doc = concat!("A [`", stringify!($ty), "`].")]
                $variant($ty),
            )*
        }

        impl Answer {
            /// The kind of answer (its variant's name).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant),)*
                }
            }

            /// This answer, if it is of the kind `wanted` (what a request is
            /// answered with, [`super::Request::answer_kind`]); a typed error
            /// otherwise (a node of another version).
            pub fn of_kind(self, wanted: &'static str) -> Result<Self, Unexpected> {
                if self.kind() == wanted {
                    Ok(self)
                } else {
                    Err(Unexpected {
                        wanted,
                        got: self.kind(),
                    })
                }
            }

            /// The payload alone as JSON: what `--json` prints.
            pub fn payload_json(&self) -> serde_json::Value {
                match self {
                    $(Self::$variant(v) => serde_json::to_value(v)
                        // Invariant: every payload is plain data that JSON holds.
                        .expect("an answer's payload is JSON"),)*
                }
            }
        }

        /// A type an [`Answer`] may hold, asked for by callers.
        pub trait Payload: TryFrom<Answer, Error = Unexpected> {}
        $(impl Payload for $ty {})*

        $(
            impl From<$ty> for Answer {
                fn from(v: $ty) -> Self {
                    Self::$variant(v)
                }
            }

            impl TryFrom<Answer> for $ty {
                type Error = Unexpected;
                fn try_from(a: Answer) -> Result<Self, Unexpected> {
                    match a {
                        Answer::$variant(v) => Ok(v),
                        other => Err(Unexpected {
                            wanted: stringify!($variant),
                            got: other.kind(),
                        }),
                    }
                }
            }
        )*
    };
}

answers! {
    Status(Status),
    Contacts(ContactList),
    Contact(Contact),
    Groups(GroupList),
    Devices(DeviceList),
    Checking(Checking),
    ContactChanged(ContactChanged),
    ContactRemoved(ContactRemoved),
    GroupChanged(GroupChanged),
    Done(Done),
    Imported(Imported),
    Conflicts(ConflictList),
    Log(ChangeLog),
    Exported(Exported),
    Invited(Invited),
    Invitations(InvitationList),
    Cancelled(Cancelled),
    Revoked(Revoked),
    Renamed(Renamed),
    Rotated(Rotated),
    Changes(Changes),
    ClientApproved(ClientApproved),
    Clients(ClientList),
    ClientRemoved(ClientRemoved),
}

/// An answer of another kind than the request's (a node of another version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the node answered {got} where {wanted} was expected (a node of another version?)")]
pub struct Unexpected {
    /// The kind expected.
    pub wanted: &'static str,
    /// The kind that came.
    pub got: &'static str,
}

impl From<Unexpected> for super::Error {
    fn from(e: Unexpected) -> Self {
        super::Error::new(super::ErrorKind::Mismatch, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Reply, status::Role};
    use super::*;

    fn member() -> Member {
        Member {
            id: "57b6e2c1a0f3d4e5".into(),
            name: "phone".into(),
            role: Role::Full,
            revoked: false,
            genesis: false,
            this_device: false,
            connected: None,
            last_sync: None,
            last_seen: Some("2026-12-02T08:00:00.000Z".into()),
            exchanging: false,
            sync: None,
            remembered: vec!["/ip4/192.0.2.4/tcp/4001".into()],
        }
    }

    #[test]
    fn answers_survive_the_socket_and_keep_their_json() {
        let answers: Vec<Answer> = vec![
            Rotated { rotated: true }.into(),
            DeviceList(vec![member()]).into(),
            Checking { checking: 2 }.into(),
            ContactChanged {
                done: true,
                contact: None,
                changed: Some(true),
                joined: vec!["Kin".into()],
                left: vec!["Work".into()],
            }
            .into(),
            Cancelled {
                cancelled: vec!["K7".into()],
            }
            .into(),
        ];
        for a in answers {
            let line = serde_json::to_string(&Reply::Ok(a.clone())).unwrap();
            assert_eq!(serde_json::from_str::<Reply>(&line).unwrap(), Reply::Ok(a));
        }
        // What `--json` prints is the payload alone, keyed as the docs say.
        let list = serde_json::to_value(DeviceList(vec![member()])).unwrap();
        assert_eq!(list[0]["name"], "phone");
        assert_eq!(list[0]["role"], "full");
        assert!(list[0]["sync"].is_null());
        let edited = serde_json::to_value(ContactChanged {
            done: true,
            contact: None,
            changed: None,
            joined: Vec::new(),
            left: Vec::new(),
        })
        .unwrap();
        assert!(edited.get("changed").is_none(), "only edits say whether");
        assert!(
            edited.get("joined").is_none() && edited.get("left").is_none(),
            "nor groups left unchanged"
        );
    }

    #[test]
    fn an_answer_of_another_kind_is_a_typed_error() {
        let got = Checking::try_from(Answer::from(Rotated { rotated: true }));
        assert_eq!(
            got,
            Err(Unexpected {
                wanted: "Checking",
                got: "Rotated"
            })
        );
        let e = super::super::Error::from(got.unwrap_err());
        assert_eq!(e.kind, super::super::ErrorKind::Mismatch);
    }
}
