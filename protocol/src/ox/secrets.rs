//! XEP-0473 `<shared-secret/>` and `<revoke/>`: what a `<signcrypt/>` payload tells
//! about the secrets of a node.

use crate::clock::WallTime;
use crate::item::NodeKind;
use crate::jid::BareJid;
use crate::seal::{self, Secret};
use crate::xml::{self, Element, XML_NS};

use super::Error;

/// What a `<signcrypt/>` payload tells about secrets (XEP-0473 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretMessage {
    /// `<shared-secret/>`: a secret for a node of the account `jid`.
    Share {
        /// The account (the XEP's "pubsub service") the node belongs to.
        jid: BareJid,
        /// The secret.
        secret: Secret,
    },
    /// `<revoke/>`: the secret `id` of `node` must not seal new items.
    Revoke {
        /// The account.
        jid: BareJid,
        /// The node.
        node: NodeKind,
        /// The revoked secret's id.
        id: String,
        /// `<reason/>` texts with their `xml:lang`, if any.
        reasons: Vec<(Option<String>, String)>,
    },
}

impl SecretMessage {
    /// The XEP-0473 element.
    pub fn to_element(&self) -> Element {
        match self {
            Self::Share { jid, secret } => {
                let mut el = Element::new(seal::NS, "shared-secret")
                    .with_attr("timestamp", secret.created.to_xep0082())
                    .with_attr("jid", jid.to_string())
                    .with_attr("node", secret.node.node_name())
                    .with_attr("id", secret.id.clone())
                    .with_attr("type", crate::item::NS);
                if secret.revoked {
                    el.set_attr("revoked", "true");
                }
                el.push_text(secret.value.as_str());
                el
            }
            Self::Revoke {
                jid,
                node,
                id,
                reasons,
            } => {
                let mut el = Element::new(seal::NS, "revoke")
                    .with_attr("jid", jid.to_string())
                    .with_attr("node", node.node_name())
                    .with_attr("id", id.clone());
                for (lang, text) in reasons {
                    let mut r = Element::new(seal::NS, "reason");
                    if let Some(l) = lang {
                        r.attrs.push(xml::Attr {
                            ns: XML_NS.into(),
                            name: "lang".into(),
                            value: l.clone(),
                        });
                    }
                    r.push_text(text.clone());
                    el.push(r);
                }
                el
            }
        }
    }

    /// Reads a `<shared-secret/>` or `<revoke/>`; other elements give `None`.
    pub fn from_element(el: &Element) -> Option<Result<Self, Error>> {
        if el.ns != seal::NS {
            return None;
        }
        let (what, share) = match el.name.as_ref() {
            "shared-secret" => ("shared-secret", true),
            "revoke" => ("revoke", false),
            _ => return None,
        };
        let bad = || Error::BadSecretElement(what);
        let read = || -> Result<Self, Error> {
            let jid = BareJid::parse(el.attr("jid").ok_or_else(bad)?).map_err(|_| bad())?;
            let node =
                NodeKind::from_node_name(el.attr("node").ok_or_else(bad)?).ok_or_else(bad)?;
            let id = el
                .attr("id")
                .filter(|i| !i.is_empty() && i.len() <= 256)
                .ok_or_else(bad)?
                .to_owned();
            if share {
                let created = WallTime::parse_xep0082(el.attr("timestamp").ok_or_else(bad)?)
                    .map_err(|_| bad())?;
                let value = el.text();
                if value.len() < 32 || value.len() > 1024 {
                    return Err(bad());
                }
                let revoked = matches!(el.attr("revoked"), Some("true" | "1"));
                let secret = Secret {
                    id,
                    value: value.into(),
                    node,
                    created,
                    revoked,
                };
                Ok(Self::Share { jid, secret })
            } else {
                let reasons = el
                    .elements()
                    .filter(|r| r.is(seal::NS, "reason"))
                    .map(|r| {
                        let lang = r.attrs.iter().find(|a| a.ns == XML_NS && a.name == "lang");
                        (lang.map(|a| a.value.clone()), r.text())
                    })
                    .collect();
                Ok(Self::Revoke {
                    jid,
                    node,
                    id,
                    reasons,
                })
            }
        };
        Some(read())
    }
}
