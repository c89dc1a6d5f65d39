//! The stanzas the service sends: iq results and errors, disco answers, item
//! lists, notifications, and the caps query it asks a client.

use super::*;

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
