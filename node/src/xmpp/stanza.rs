//! The stanzas of kith's PEP service, without I/O: what a client asks, read into
//! typed [`Incoming`] values, and the replies, errors and event notifications the
//! service sends (XEP-0060 with XEP-0223 publish-options, XEP-0030, XEP-0059,
//! XEP-0115). Only the two XEP-0510 nodes exist; payloads are XEP-0473
//! `<encrypted/>` elements.

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

fn node_of(el: &Element) -> Result<NodeKind, Refusal> {
    let name = el
        .attr("node")
        .ok_or_else(|| Refusal::bad_request(Some("nodeid-required")))?;
    NodeKind::from_node_name(name)
        .ok_or_else(|| Refusal::item_not_found().with_text(format!("no node {name:?} here")))
}

fn item_ids(el: &Element) -> Result<Vec<String>, Refusal> {
    let ids: Vec<String> = el
        .elements()
        .filter(|c| c.is(PUBSUB_NS, "item"))
        .filter_map(|c| c.attr("id").map(str::to_owned))
        .collect();
    if ids.len() > MAX_IDS {
        return Err(Refusal::policy_violation()
            .with_text(format!("at most {MAX_IDS} item ids in one request")));
    }
    Ok(ids)
}

fn number(text: &str) -> Result<usize, Refusal> {
    text.trim()
        .parse()
        .map_err(|_| Refusal::bad_request(None).with_text(format!("{text:?} is not a number")))
}

fn page_of(set: &Element) -> Result<Page, Refusal> {
    let mut page = Page::default();
    for c in set.elements().filter(|c| c.ns == RSM_NS) {
        match c.name.as_ref() {
            "max" => page.max = Some(number(&c.text())?),
            "after" => page.after = Some(c.text()),
            "before" => page.before = Some(c.text()),
            "index" => return Err(Refusal::unsupported("rsm-index")),
            _ => {}
        }
    }
    Ok(page)
}

fn form_fields(x: &Element) -> Vec<(String, Vec<String>)> {
    x.elements()
        .filter(|f| f.is(DATA_NS, "field"))
        .filter_map(|f| {
            let var = f.attr("var")?.to_owned();
            let values = f
                .elements()
                .filter(|v| v.is(DATA_NS, "value"))
                .map(Element::text)
                .collect();
            Some((var, values))
        })
        .filter(|(var, _)| var != "FORM_TYPE")
        .collect()
}

/// A publish to XEP-0373's key nodes.
fn publish_key(publish: &Element, name: &str) -> Result<Query, Refusal> {
    if name == OX_KEYS_NODE {
        return Ok(Query::PublishKeyList);
    }
    let fingerprint = name
        .strip_prefix(OX_KEYS_NODE)
        .and_then(|f| f.strip_prefix(':'))
        .filter(|f| f.len() == 40 && f.chars().all(|c| c.is_ascii_hexdigit()))
        .ok_or_else(|| Refusal::item_not_found().with_text(format!("no node {name:?} here")))?;
    let item = publish.elements().find(|c| c.is(PUBSUB_NS, "item"));
    let data = item
        .and_then(|i| i.elements().find(|p| p.is(OX_NS, "pubkey")))
        .and_then(|p| p.elements().find(|d| d.is(OX_NS, "data")))
        .ok_or_else(|| {
            Refusal::invalid_payload().with_text("a <pubkey/> with its <data/> is expected")
        })?;
    let text: String = data
        .text()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    use base64::Engine as _;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| Refusal::invalid_payload().with_text("the key is not base64"))?;
    Ok(Query::PublishKey {
        id: item.and_then(|i| i.attr("id")).map(str::to_owned),
        fingerprint: fingerprint.to_ascii_uppercase(),
        cert,
    })
}

fn publish(pubsub: &Element, publish: &Element) -> Result<Query, Refusal> {
    if let Some(name) = publish.attr("node").filter(|n| n.starts_with(OX_KEYS_NODE)) {
        return publish_key(publish, name);
    }
    let node = node_of(publish)?;
    let mut items = publish.elements().filter(|c| c.is(PUBSUB_NS, "item"));
    let item = items
        .next()
        .ok_or_else(|| Refusal::bad_request(Some("item-required")))?;
    if items.next().is_some() {
        return Err(Refusal::invalid_payload().with_text("one item per publish"));
    }
    let mut payloads = item.elements();
    let payload = payloads
        .next()
        .ok_or_else(|| Refusal::bad_request(Some("payload-required")))?;
    if payloads.next().is_some() {
        return Err(Refusal::invalid_payload().with_text("one payload per item"));
    }
    let sealed = Sealed::from_element(payload).map_err(|e| match e {
        seal::Error::TooLarge { .. } => {
            Refusal::not_acceptable(Some("payload-too-big")).with_text(e.to_string())
        }
        seal::Error::NotEncrypted => Refusal::invalid_payload()
            .with_text("the payload must be an XEP-0473 <encrypted/> element"),
        e => Refusal::invalid_payload().with_text(e.to_string()),
    })?;
    let options = pubsub
        .elements()
        .find(|c| c.is(PUBSUB_NS, "publish-options"))
        .and_then(|o| o.elements().find(|x| x.is(DATA_NS, "x")))
        .map(form_fields)
        .unwrap_or_default();
    Ok(Query::Publish {
        node,
        id: item.attr("id").map(str::to_owned),
        sealed,
        options,
    })
}

fn pubsub_query(set: bool, pubsub: &Element) -> Result<Query, Refusal> {
    let mut actions = pubsub
        .elements()
        .filter(|c| c.ns == PUBSUB_NS && c.name != "publish-options");
    let Some(action) = actions.next() else {
        return Err(Refusal::bad_request(None).with_text("an empty <pubsub/>"));
    };
    if actions.next().is_some() {
        return Err(Refusal::bad_request(None).with_text("one request per <pubsub/>"));
    }
    match (set, action.name.as_ref()) {
        (false, "items") => {
            let node = node_of(action)?;
            let max_items = action.attr("max_items").map(number).transpose()?;
            let page = pubsub
                .elements()
                .find(|c| c.is(RSM_NS, "set"))
                .map(page_of)
                .transpose()?;
            Ok(Query::Items {
                node,
                ids: item_ids(action)?,
                max_items,
                page,
            })
        }
        (true, "publish") => publish(pubsub, action),
        (true, "retract") => {
            let node = node_of(action)?;
            let mut ids = item_ids(action)?.into_iter();
            let id = ids
                .next()
                .ok_or_else(|| Refusal::bad_request(Some("item-required")))?;
            if ids.next().is_some() {
                return Err(Refusal::bad_request(None).with_text("one item per retract"));
            }
            Ok(Query::Retract { node, id })
        }
        (true, "subscribe" | "unsubscribe") => {
            let node = node_of(action)?;
            let jid = action
                .attr("jid")
                .ok_or_else(|| Refusal::bad_request(Some("invalid-jid")))?
                .to_owned();
            Ok(if action.name == "subscribe" {
                Query::Subscribe { node, jid }
            } else {
                Query::Unsubscribe { node, jid }
            })
        }
        (_, "create") => Err(Refusal::unsupported("create-nodes")),
        (_, "configure") => Err(Refusal::unsupported("config-node")),
        (_, "options") => Err(Refusal::unsupported("subscription-options")),
        (_, "subscriptions") => Err(Refusal::unsupported("retrieve-subscriptions")),
        (_, "affiliations") => Err(Refusal::unsupported("retrieve-affiliations")),
        (_, "default") => Err(Refusal::unsupported("retrieve-default")),
        _ => Err(Refusal::bad_request(None).with_text(format!(
            "<{}/> is not a {} request",
            action.name.chars().take(32).collect::<String>(),
            if set { "set" } else { "get" }
        ))),
    }
}

fn iq(el: &Element) -> Incoming {
    let Some(id) = el.attr("id").map(str::to_owned) else {
        return Incoming::Ignored;
    };
    let set = match el.attr("type") {
        Some("get") => false,
        Some("set") => true,
        Some("result") => {
            let features = el
                .elements()
                .filter(|q| q.is(DISCO_INFO_NS, "query"))
                .flat_map(|q| q.elements())
                .filter(|f| f.is(DISCO_INFO_NS, "feature"))
                .filter_map(|f| f.attr("var").map(str::to_owned))
                .collect();
            return Incoming::Response { id, features };
        }
        Some("error") => {
            return Incoming::Response {
                id,
                features: Vec::new(),
            };
        }
        _ => return Incoming::Ignored,
    };
    let mut children = el.elements();
    let query = match (children.next(), children.next()) {
        (Some(c), None) if !set && c.is(DISCO_INFO_NS, "query") => Ok(Query::DiscoInfo {
            node: c.attr("node").map(str::to_owned),
        }),
        (Some(c), None) if !set && c.is(DISCO_ITEMS_NS, "query") => Ok(Query::DiscoItems {
            node: c.attr("node").map(str::to_owned),
        }),
        (Some(c), None) if c.is(PUBSUB_NS, "pubsub") => pubsub_query(set, c),
        (Some(c), None) if c.is(PUBSUB_OWNER_NS, "pubsub") => {
            Err(Refusal::unsupported("config-node"))
        }
        (Some(_), None) => Err(Refusal::service_unavailable()),
        _ => Err(Refusal::bad_request(None).with_text("an iq has exactly one child")),
    };
    Incoming::Iq { id, query }
}

/// Reads one stanza.
pub fn read(el: &Element) -> Incoming {
    match el.name.as_ref() {
        "iq" if el.ns.is_empty() || el.ns == CLIENT_NS => iq(el),
        "presence" => {
            if el.attr("type").is_some_and(|t| t != "available") {
                return Incoming::Presence(None);
            }
            Incoming::Presence(el.elements().find(|c| c.is(CAPS_NS, "c")).and_then(|c| {
                Some(Caps {
                    node: c.attr("node")?.to_owned(),
                    ver: c.attr("ver")?.to_owned(),
                })
            }))
        }
        "message" if el.attr("type") != Some("error") => Incoming::Message,
        _ => Incoming::Ignored,
    }
}

/// A stanza of `name` from `from` to `to` (each if given).
fn stanza(name: &str, from: &str, to: Option<&str>) -> Element {
    let mut el = Element::new("", name).with_attr("from", from);
    if let Some(to) = to {
        el.set_attr("to", to);
    }
    el
}

/// `<iq type='result'/>` with `payload`.
pub fn result(id: &str, from: &str, to: Option<&str>, payload: Option<Element>) -> Element {
    let mut el = stanza("iq", from, to)
        .with_attr("type", "result")
        .with_attr("id", id);
    if let Some(p) = payload {
        el.push(p);
    }
    el
}

/// An error reply of kind `name` (`iq` or `message`).
pub fn error(name: &str, id: Option<&str>, from: &str, to: Option<&str>, r: &Refusal) -> Element {
    let mut el = stanza(name, from, to).with_attr("type", "error");
    if let Some(id) = id {
        el.set_attr("id", id);
    }
    el.push(r.to_element());
    el
}

fn form(form_type: &str, fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new(DATA_NS, "x").with_attr("type", "result");
    let mut push = |var: &str, value: &str, hidden: bool| {
        let mut f = Element::new(DATA_NS, "field").with_attr("var", var);
        if hidden {
            f.set_attr("type", "hidden");
        }
        let mut v = Element::new(DATA_NS, "value");
        v.push_text(value);
        f.push(v);
        x.push(f);
    };
    push("FORM_TYPE", form_type, true);
    for (var, value) in fields {
        push(var, value, false);
    }
    x
}

/// disco#info of the service.
pub fn service_info() -> Element {
    let mut q = Element::new(DISCO_INFO_NS, "query");
    let (category, kind, name) = IDENTITY;
    q.push(
        Element::new(DISCO_INFO_NS, "identity")
            .with_attr("category", category)
            .with_attr("type", kind)
            .with_attr("name", name),
    );
    for f in FEATURES {
        q.push(Element::new(DISCO_INFO_NS, "feature").with_attr("var", *f));
    }
    q
}

/// disco#info of the service (`node` `None`, or the caps node) or of one node.
pub fn disco_info(node: Option<&str>) -> Result<Element, Refusal> {
    let service = node.is_none_or(|n| n.starts_with(CAPS_NODE));
    if service {
        if node.is_some_and(|n| n != caps_node()) {
            return Err(Refusal::item_not_found());
        }
        let mut q = service_info();
        if let Some(n) = node {
            q.set_attr("node", n);
        }
        return Ok(q);
    }
    let mut q = Element::new(DISCO_INFO_NS, "query");
    if let Some(n) = node {
        q.set_attr("node", n);
    }
    let n = node
        .and_then(NodeKind::from_node_name)
        .ok_or_else(Refusal::item_not_found)?;
    q.push(
        Element::new(DISCO_INFO_NS, "identity")
            .with_attr("category", "pubsub")
            .with_attr("type", "leaf"),
    );
    q.push(Element::new(DISCO_INFO_NS, "feature").with_attr("var", PUBSUB_NS));
    let mut fields: Vec<(&str, &str)> = NODE_CONFIG.to_vec();
    fields.push(("pubsub#title", n.node_name()));
    q.push(form(META_DATA_FORM, &fields));
    Ok(q)
}

/// disco#items of the service (both nodes, each at `service`) or of a node (none).
pub fn disco_items(node: Option<&str>, service: &str) -> Result<Element, Refusal> {
    let mut q = Element::new(DISCO_ITEMS_NS, "query");
    match node {
        None => {
            for n in NodeKind::ALL {
                q.push(
                    Element::new(DISCO_ITEMS_NS, "item")
                        .with_attr("jid", service)
                        .with_attr("node", n.node_name()),
                );
            }
        }
        Some(n) if NodeKind::from_node_name(n).is_some() => q.set_attr("node", n),
        Some(_) => return Err(Refusal::item_not_found()),
    }
    Ok(q)
}

/// The XEP-0115 verification string of the service's disco#info.
pub fn caps_ver() -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let (category, kind, name) = IDENTITY;
    let mut s = format!("{category}/{kind}//{name}<");
    let mut features = FEATURES.to_vec();
    features.sort_unstable();
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()))
}

/// `CAPS_NODE#ver`.
pub fn caps_node() -> String {
    format!("{CAPS_NODE}#{}", caps_ver())
}

/// The disco#info query the service sends to learn a client's `+notify` features.
pub fn caps_query(id: &str, from: &str, to: Option<&str>, caps: &Caps) -> Element {
    let mut el = stanza("iq", from, to)
        .with_attr("type", "get")
        .with_attr("id", id);
    el.push(
        Element::new(DISCO_INFO_NS, "query")
            .with_attr("node", format!("{}#{}", caps.node, caps.ver)),
    );
    el
}

/// An `<item/>` of `ns` holding `sealed`.
fn item(ns: &str, id: &str, sealed: Option<&Sealed>) -> Element {
    let mut el = Element::new(ns, "item").with_attr("id", id);
    if let Some(s) = sealed {
        el.push(s.to_element());
    }
    el
}

/// XEP-0059 answer: the first and last ids of the page and the node's count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// Items on the node (after any id filter).
    pub count: usize,
    /// Index of the page's first item in that order.
    pub first_index: usize,
}

/// `<pubsub><items node>` with the items, and a `<set/>` when paged.
pub fn items(node: NodeKind, items: &[(String, Sealed)], page: Option<&PageInfo>) -> Element {
    let mut list = Element::new(PUBSUB_NS, "items").with_attr("node", node.node_name());
    for (id, s) in items {
        list.push(item(PUBSUB_NS, id, Some(s)));
    }
    let mut pubsub = Element::new(PUBSUB_NS, "pubsub");
    pubsub.push(list);
    if let Some(info) = page {
        let mut set = Element::new(RSM_NS, "set");
        if let (Some((first, _)), Some((last, _))) = (items.first(), items.last()) {
            let mut f =
                Element::new(RSM_NS, "first").with_attr("index", info.first_index.to_string());
            f.push_text(first.clone());
            set.push(f);
            let mut l = Element::new(RSM_NS, "last");
            l.push_text(last.clone());
            set.push(l);
        }
        let mut c = Element::new(RSM_NS, "count");
        c.push_text(info.count.to_string());
        set.push(c);
        pubsub.push(set);
    }
    pubsub
}

/// `<pubsub><publish node><item id/></publish></pubsub>`.
pub fn published(node: &str, id: &str) -> Element {
    let mut p = Element::new(PUBSUB_NS, "publish").with_attr("node", node);
    p.push(item(PUBSUB_NS, id, None));
    let mut pubsub = Element::new(PUBSUB_NS, "pubsub");
    pubsub.push(p);
    pubsub
}

/// `<pubsub><subscription/></pubsub>`.
pub fn subscription(node: NodeKind, jid: &str, subscribed: bool) -> Element {
    let mut pubsub = Element::new(PUBSUB_NS, "pubsub");
    pubsub.push(
        Element::new(PUBSUB_NS, "subscription")
            .with_attr("node", node.node_name())
            .with_attr("jid", jid)
            .with_attr(
                "subscription",
                if subscribed { "subscribed" } else { "none" },
            ),
    );
    pubsub
}

/// A notification: the item as now published (`Some`), or its retraction.
pub fn event(
    from: &str,
    to: Option<&str>,
    node: NodeKind,
    id: &str,
    sealed: Option<&Sealed>,
) -> Element {
    let mut items = Element::new(PUBSUB_EVENT_NS, "items").with_attr("node", node.node_name());
    match sealed {
        Some(s) => items.push(item(PUBSUB_EVENT_NS, id, Some(s))),
        None => items.push(Element::new(PUBSUB_EVENT_NS, "retract").with_attr("id", id)),
    }
    let mut event = Element::new(PUBSUB_EVENT_NS, "event");
    event.push(items);
    let mut el = stanza("message", from, to).with_attr("type", "headline");
    el.push(event);
    el
}

/// Checks publish-options against [`NODE_CONFIG`] (XEP-0223).
pub fn check_options(options: &[(String, Vec<String>)]) -> Result<(), Refusal> {
    for (var, values) in options {
        let want = NODE_CONFIG
            .iter()
            .find(|(v, _)| v == var)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                Refusal::precondition_not_met()
                    .with_text(format!("{var} is not a node option here"))
            })?;
        let ok = match (values.as_slice(), want) {
            ([v], "true") => v == "true" || v == "1",
            ([v], want) => v == want,
            _ => false,
        };
        if !ok {
            return Err(
                Refusal::precondition_not_met().with_text(format!("{var} is {want} on this node"))
            );
        }
    }
    Ok(())
}

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
