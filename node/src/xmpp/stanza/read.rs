//! Reading a client's stanza into an [`Incoming`] value: the request it makes, or
//! the error it gets; and the publish-options preconditions.

use super::*;

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
