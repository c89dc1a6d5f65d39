//! The stanzas of kith's PEP service, without I/O: what a client asks, read into
//! typed [`Incoming`] values, and the replies, errors and event notifications the
//! service sends (XEP-0060 with XEP-0223 publish-options, XEP-0030, XEP-0059,
//! XEP-0115). Only the two XEP-0510 nodes exist; payloads are XEP-0473
//! `<encrypted/>` elements.
//!
//! This module holds the namespaces, limits and typed values; `read`
//! reads stanzas into them, `write` makes the answers.

use kith_protocol::item::NodeKind;
use kith_protocol::ox::NS as OX_NS;
use kith_protocol::seal::{self, Sealed};
use kith_protocol::xml::Element;

/// XEP-0060.
pub const PUBSUB_NS: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060 owner use cases (none is implemented).
pub const PUBSUB_OWNER_NS: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060 event notifications.
pub const PUBSUB_EVENT_NS: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060 error conditions.
pub const PUBSUB_ERRORS_NS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0060 §5.4 node meta-data form type.
pub const META_DATA_FORM: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// XEP-0223 publish-options form type.
pub const PUBLISH_OPTIONS_FORM: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// XEP-0030 info.
pub const DISCO_INFO_NS: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030 items.
pub const DISCO_ITEMS_NS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0059 result set management.
pub const RSM_NS: &str = "http://jabber.org/protocol/rsm";
/// XEP-0004 data forms.
pub const DATA_NS: &str = "jabber:x:data";
/// XEP-0115 entity capabilities.
pub const CAPS_NS: &str = "http://jabber.org/protocol/caps";
/// RFC 6120 client stanzas (the stream's default namespace).
pub const CLIENT_NS: &str = "jabber:client";
/// RFC 6120 stanza errors.
pub const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// XEP-0373's public-key nodes: the list, and one node a key (`…:FINGERPRINT`).
pub const OX_KEYS_NODE: &str = "urn:xmpp:openpgp:0:public-keys";
/// XEP-0334 hints (`<store/>` on the secrets message).
pub const HINTS_NS: &str = "urn:xmpp:hints";

/// The XEP-0115 `node` kith advertises.
pub const CAPS_NODE: &str = "https://kith.invalid/pep";

/// Most items one page holds when the client names no smaller `max`.
pub const MAX_PAGE: usize = 128;
/// Most bytes of items one page holds (about; at least one item).
pub const MAX_PAGE_BYTES: usize = 512 * 1024;
/// Most item ids one request may name.
pub const MAX_IDS: usize = 64;

/// The features of the service's disco#info: exactly what is implemented.
pub const FEATURES: &[&str] = &[
    DISCO_INFO_NS,
    DISCO_ITEMS_NS,
    PUBSUB_NS,
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#meta-data",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
    "http://jabber.org/protocol/pubsub#subscribe",
    RSM_NS,
    kith_protocol::item::NS,
    seal::NS,
];

/// The identity of the service in disco#info.
pub const IDENTITY: (&str, &str, &str) = ("pubsub", "pep", "kith");

/// The node configuration every node has, as (field, value); a publish-option
/// naming anything else is a failed precondition.
pub const NODE_CONFIG: &[(&str, &str)] = &[
    ("pubsub#access_model", "whitelist"),
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "max"),
    ("pubsub#deliver_notifications", "true"),
    ("pubsub#deliver_payloads", "true"),
    ("pubsub#notify_retract", "true"),
    ("pubsub#type", seal::NS),
];

/// XEP-0059 request: at most `max` items after or before an item id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// `<max/>`.
    pub max: Option<usize>,
    /// `<after/>`: the page follows this item id.
    pub after: Option<String>,
    /// `<before/>`: the page precedes this item id (empty: the last page).
    pub before: Option<String>,
}

/// An iq request to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// disco#info on the service or a node.
    DiscoInfo {
        /// The node asked about, if any.
        node: Option<String>,
    },
    /// disco#items on the service or a node.
    DiscoItems {
        /// The node asked about, if any.
        node: Option<String>,
    },
    /// Retrieve items (XEP-0060 §6.5).
    Items {
        /// Which node.
        node: NodeKind,
        /// Only these ids (all when empty).
        ids: Vec<String>,
        /// Only the newest this many.
        max_items: Option<usize>,
        /// A result-set page.
        page: Option<Page>,
    },
    /// Publish one item (XEP-0060 §7.1) with XEP-0223 preconditions.
    Publish {
        /// Which node.
        node: NodeKind,
        /// The item id, if the client chose one.
        id: Option<String>,
        /// The payload.
        sealed: Sealed,
        /// Publish-options fields (field, values), `FORM_TYPE` left out.
        options: Vec<(String, Vec<String>)>,
    },
    /// A client publishes its OpenPGP certificate (XEP-0373 §4.1): kept until the
    /// user approves it (`kith client approve`).
    PublishKey {
        /// The item id, if the client chose one (XEP-0373: the key's date).
        id: Option<String>,
        /// The fingerprint its node names.
        fingerprint: String,
        /// The certificate, binary.
        cert: Vec<u8>,
    },
    /// A client publishes its public-keys list (XEP-0373 §4.2): acknowledged, not
    /// kept (the certificate itself is what counts).
    PublishKeyList,
    /// Retract one item (XEP-0060 §7.2).
    Retract {
        /// Which node.
        node: NodeKind,
        /// Which item.
        id: String,
    },
    /// Subscribe this stream to a node's notifications.
    Subscribe {
        /// Which node.
        node: NodeKind,
        /// The subscriber as named.
        jid: String,
    },
    /// Unsubscribe.
    Unsubscribe {
        /// Which node.
        node: NodeKind,
        /// The subscriber as named.
        jid: String,
    },
}

/// A client's XEP-0115 caps, from its presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// `node`.
    pub node: String,
    /// `ver`.
    pub ver: String,
}

/// A stanza as the service reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An iq get or set.
    Iq {
        /// Its id.
        id: String,
        /// What it asks, or why it is refused.
        query: Result<Query, Refusal>,
    },
    /// The answer to an iq the service sent (a disco#info of the client's caps).
    Response {
        /// The id the service chose.
        id: String,
        /// Features the answer lists (none for an error).
        features: Vec<String>,
    },
    /// Presence: caps when available, `None` for unavailable or without caps.
    Presence(Option<Caps>),
    /// A message to the service: it hosts no chat.
    Message,
    /// Nothing to answer (an error stanza, an iq without id…).
    Ignored,
}

/// RFC 6120 error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Do not retry.
    Cancel,
    /// Retry after changing the request.
    Modify,
    /// Retry after providing credentials.
    Auth,
    /// Retry later.
    Wait,
}

/// A stanza error: RFC 6120 condition, and XEP-0060's specific condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The type.
    pub kind: ErrorType,
    /// The RFC 6120 condition.
    pub condition: &'static str,
    /// XEP-0060's condition (`pubsub#errors`), if any.
    pub pubsub: Option<&'static str>,
    /// The `feature` attribute of `<unsupported/>`.
    pub feature: Option<&'static str>,
    /// Human-readable text.
    pub text: Option<String>,
}

impl Refusal {
    fn new(kind: ErrorType, condition: &'static str, pubsub: Option<&'static str>) -> Self {
        Self {
            kind,
            condition,
            pubsub,
            feature: None,
            text: None,
        }
    }

    /// With a text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// `bad-request` with a XEP-0060 condition.
    pub fn bad_request(pubsub: Option<&'static str>) -> Self {
        Self::new(ErrorType::Modify, "bad-request", pubsub)
    }

    /// `bad-request` + `invalid-payload`.
    pub fn invalid_payload() -> Self {
        Self::bad_request(Some("invalid-payload"))
    }

    /// `item-not-found`.
    pub fn item_not_found() -> Self {
        Self::new(ErrorType::Cancel, "item-not-found", None)
    }

    /// `forbidden`.
    pub fn forbidden() -> Self {
        Self::new(ErrorType::Auth, "forbidden", None)
    }

    /// `not-acceptable` with a XEP-0060 condition.
    pub fn not_acceptable(pubsub: Option<&'static str>) -> Self {
        Self::new(ErrorType::Modify, "not-acceptable", pubsub)
    }

    /// `conflict` + `precondition-not-met` (XEP-0060 §7.1.5, as Prosody answers).
    pub fn precondition_not_met() -> Self {
        Self::new(ErrorType::Cancel, "conflict", Some("precondition-not-met"))
    }

    /// `policy-violation` (a limit).
    pub fn policy_violation() -> Self {
        Self::new(ErrorType::Modify, "policy-violation", None)
    }

    /// `service-unavailable`.
    pub fn service_unavailable() -> Self {
        Self::new(ErrorType::Cancel, "service-unavailable", None)
    }

    /// `internal-server-error`.
    pub fn internal() -> Self {
        Self::new(ErrorType::Wait, "internal-server-error", None)
    }

    /// `feature-not-implemented` + `unsupported feature=…`.
    pub fn unsupported(feature: &'static str) -> Self {
        let mut r = Self::new(
            ErrorType::Cancel,
            "feature-not-implemented",
            Some("unsupported"),
        );
        r.feature = Some(feature);
        r
    }

    /// The `<error/>` element.
    pub fn to_element(&self) -> Element {
        let kind = match self.kind {
            ErrorType::Cancel => "cancel",
            ErrorType::Modify => "modify",
            ErrorType::Auth => "auth",
            ErrorType::Wait => "wait",
        };
        let mut error = Element::new("", "error").with_attr("type", kind);
        error.push(Element::new(STANZAS_NS, self.condition));
        if let Some(text) = &self.text {
            let mut t = Element::new(STANZAS_NS, "text");
            t.push_text(text.clone());
            error.push(t);
        }
        if let Some(p) = self.pubsub {
            let mut el = Element::new(PUBSUB_ERRORS_NS, p);
            if let Some(f) = self.feature {
                el.set_attr("feature", f);
            }
            error.push(el);
        }
        error
    }
}

mod read;
mod write;

pub use read::{check_options, read};
pub use write::*;

#[cfg(test)]
mod tests {
    use super::*;
    use kith_protocol::xml;

    fn parse(s: &str) -> Incoming {
        read(&Element::parse(s, crate::xmpp::stream::STANZA_LIMITS).unwrap())
    }

    #[test]
    fn requests_are_read_into_queries() {
        let q = parse(
            "<iq type='get' id='i'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <items node='urn:xmpp:contacts' max_items='2'/>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><after>x</after></set>\
             </pubsub></iq>",
        );
        assert_eq!(
            q,
            Incoming::Iq {
                id: "i".into(),
                query: Ok(Query::Items {
                    node: NodeKind::Contacts,
                    ids: vec![],
                    max_items: Some(2),
                    page: Some(Page {
                        max: Some(10),
                        after: Some("x".into()),
                        before: None
                    })
                })
            }
        );
        let unknown = parse(
            "<iq type='get' id='i'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <items node='urn:xmpp:microblog:0'/></pubsub></iq>",
        );
        assert!(
            matches!(unknown, Incoming::Iq { query: Err(r), .. } if r.condition == "item-not-found")
        );
        let plain = parse(
            "<iq type='set' id='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <publish node='urn:xmpp:contacts'><item id='a'><contact xmlns='urn:xmpp:contacts:0'/></item></publish>\
             </pubsub></iq>",
        );
        assert!(
            matches!(plain, Incoming::Iq { query: Err(r), .. } if r.pubsub == Some("invalid-payload"))
        );
    }

    #[test]
    fn options_are_preconditions() {
        let o = |var: &str, v: &str| vec![(var.to_owned(), vec![v.to_owned()])];
        assert!(check_options(&o("pubsub#persist_items", "1")).is_ok());
        assert!(check_options(&o("pubsub#access_model", "whitelist")).is_ok());
        assert!(check_options(&o("pubsub#max_items", "max")).is_ok());
        let bad = check_options(&o("pubsub#access_model", "open")).unwrap_err();
        assert_eq!(
            (bad.condition, bad.pubsub),
            ("conflict", Some("precondition-not-met"))
        );
        assert!(check_options(&o("pubsub#max_items", "1")).is_err());
        assert!(check_options(&o("pubsub#unknown", "x")).is_err());
    }

    #[test]
    fn disco_of_a_node_carries_its_meta_data() {
        let q = disco_info(Some("urn:xmpp:contacts")).unwrap().to_xml();
        for want in [
            "pubsub#access_model",
            "whitelist",
            "pubsub#persist_items",
            "pubsub#max_items",
            META_DATA_FORM,
        ] {
            assert!(q.contains(want), "{q}");
        }
        assert!(disco_info(Some("urn:xmpp:other")).is_err());
        assert!(Element::parse(&q, xml::Limits::ITEM).is_ok());
        assert!(disco_info(Some(&caps_node())).is_ok());
    }
}
