//! The node's side of the PEP service: answers what needs the device (items,
//! publish, retract, the secrets message) and turns every change of the view, and
//! of the secrets or approved clients, into notices for the XEP-0174 streams.

use std::sync::Arc;

use kith_protocol::contacts::{Command, Error as ContactsError};
use kith_protocol::item::NodeKind;
use kith_protocol::record::{Body, ItemId, Record};
use kith_protocol::xml::Element;
use tracing::warn;

use super::{Error, Node};
use crate::store::names::{MAX_NAME_BYTES, item_for_name};
use crate::xmpp::stanza::{self, MAX_PAGE, Page, PageInfo, Query, Refusal};
use crate::xmpp::{Answer, Ask, Call, Notice};

fn refusal(e: ContactsError) -> Refusal {
    match e {
        ContactsError::NoSuchItem { .. } => Refusal::item_not_found(),
        ContactsError::UnknownSecret(_)
        | ContactsError::StaleSecret(_)
        | ContactsError::Unopenable(_)
        | ContactsError::Invalid { .. }
        | ContactsError::Item(_) => Refusal::invalid_payload().with_text(e.to_string()),
        ContactsError::NoSecret(_) => Refusal::service_unavailable().with_text(e.to_string()),
        e => Refusal::internal().with_text(e.to_string()),
    }
}

/// Now, as XEP-0082 (the item id XEP-0373 gives its key items).
fn wall_stamp() -> String {
    crate::device::wall_now().to_xep0082()
}

/// A client's item id: not empty, at most [`MAX_NAME_BYTES`], no control characters.
fn check_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(Refusal::bad_request(None).with_text(format!(
            "an item id is 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

impl Node {
    pub(super) fn on_xmpp(&mut self, call: Call) {
        let answer = match call.ask {
            Ask::Query(q) => Answer::Query(self.pep(q)),
            Ask::Secrets => Answer::Secrets(self.pep_secrets.clone()),
        };
        let _ = call.reply.send(answer);
    }

    fn pep(&mut self, q: Query) -> Result<Option<Element>, Refusal> {
        match q {
            Query::Items {
                node,
                ids,
                max_items,
                page,
            } => self.items(node, &ids, max_items, page).map(Some),
            Query::Publish {
                node, id, sealed, ..
            } => {
                let item = match &id {
                    None => ItemId::random(&mut rand::rng()),
                    Some(name) => {
                        check_name(name)?;
                        item_for_name(node, name)
                    }
                };
                let now = self.device.clock.now();
                let result = self
                    .device
                    .engine
                    .execute(now, Command::Publish { node, item, sealed });
                self.device
                    .drain()
                    .map_err(|e| Refusal::internal().with_text(e.to_string()))?;
                result.map_err(refusal)?;
                if let Some(name) = id.filter(|n| *n != item.to_string()) {
                    if let Err(e) = self.device.store.set_item_name(node, &item, &name) {
                        warn!("cannot keep the item id {name:?}: {e}");
                    }
                    self.pep_names.insert((node, item), name);
                }
                Ok(Some(stanza::published(
                    node.node_name(),
                    &self.item_name(node, &item),
                )))
            }
            Query::PublishKey {
                id,
                fingerprint,
                cert,
            } => {
                self.device
                    .offer_client(&cert, &fingerprint)
                    .map_err(|e| Refusal::invalid_payload().with_text(e.message))?;
                Ok(Some(stanza::published(
                    &format!("{}:{fingerprint}", stanza::OX_KEYS_NODE),
                    &id.unwrap_or_else(wall_stamp),
                )))
            }
            Query::PublishKeyList => {
                Ok(Some(stanza::published(stanza::OX_KEYS_NODE, &wall_stamp())))
            }
            Query::Retract { node, id } => {
                let item = item_for_name(node, &id);
                let now = self.device.clock.now();
                let result = self
                    .device
                    .engine
                    .execute(now, Command::Retract { node, item });
                self.device
                    .drain()
                    .map_err(|e| Refusal::internal().with_text(e.to_string()))?;
                result.map_err(refusal)?;
                Ok(None)
            }
            _ => Err(Refusal::internal()),
        }
    }

    /// The id a client sees for `item`: the name it was published with here, or
    /// kith's hex form.
    fn item_name(&self, node: NodeKind, item: &ItemId) -> String {
        self.pep_names
            .get(&(node, *item))
            .cloned()
            .unwrap_or_else(|| item.to_string())
    }

    fn items(
        &mut self,
        node: NodeKind,
        ids: &[String],
        max_items: Option<usize>,
        page: Option<Page>,
    ) -> Result<Element, Refusal> {
        let names = &self.pep_names;
        let sealed = |r: &Record| match &r.body {
            Body::Sealed(s) => Some((
                names
                    .get(&(node, r.item))
                    .cloned()
                    .unwrap_or_else(|| r.item.to_string()),
                s.clone(),
            )),
            _ => None,
        };
        let replica = self.device.engine.book().replica();
        // Live items, by record id.
        let mut all: Vec<&Record> = if ids.is_empty() {
            replica
                .space(node)
                .filter(|r| matches!(r.body, Body::Sealed(_)))
                .collect()
        } else {
            let found: Vec<&Record> = ids
                .iter()
                .filter_map(|n| replica.get(node, &item_for_name(node, n)))
                .filter(|r| matches!(r.body, Body::Sealed(_)))
                .collect();
            if found.is_empty() {
                return Err(Refusal::item_not_found());
            }
            found
        };
        if let Some(n) = max_items {
            // The newest n, newest first (XEP-0060 §6.5.7).
            all.sort_by_key(|r| std::cmp::Reverse(r.version));
            all.truncate(n.min(MAX_PAGE));
            let items: Vec<_> = all.iter().filter_map(|r| sealed(r)).collect();
            let info = (items.len() < replica.space(node).count()).then_some(PageInfo {
                count: items.len(),
                first_index: 0,
            });
            return Ok(stanza::items(node, &items, info.as_ref()));
        }
        let count = all.len();
        let (start, end) = match &page {
            Some(p) => {
                let max = p.max.unwrap_or(MAX_PAGE).min(MAX_PAGE);
                match (&p.after, &p.before) {
                    (Some(after), _) => {
                        let after = item_for_name(node, after);
                        let s = all.partition_point(|r| r.item <= after);
                        (s, (s + max).min(count))
                    }
                    (None, Some(before)) => {
                        let e = if before.is_empty() {
                            count
                        } else {
                            let before = item_for_name(node, before);
                            all.partition_point(|r| r.item < before)
                        };
                        (e.saturating_sub(max), e)
                    }
                    (None, None) => (0, max.min(count)),
                }
            }
            None => (0, MAX_PAGE.min(count)),
        };
        let items: Vec<_> = all[start..end].iter().filter_map(|r| sealed(r)).collect();
        let paged = page.is_some() || count > MAX_PAGE;
        let info = paged.then_some(PageInfo {
            count,
            first_index: start,
        });
        Ok(stanza::items(node, &items, info.as_ref()))
    }

    /// Sends notices for what changed since the last call: items of the view, and the
    /// secrets message when the secrets or the approved clients changed.
    pub(super) fn pep_notify(&mut self) -> Result<(), Error> {
        let keyring = self.device.keyring_state().clone();
        if self.device.clients_changed || self.pep_secrets_for.as_ref() != Some(&keyring) {
            self.device.clients_changed = false;
            self.pep_secrets_for = Some(keyring);
            self.pep_secrets = match self.device.secrets_element(&self.ox_key) {
                Ok(el) => el.map(Arc::new),
                Err(e) => {
                    warn!("cannot seal the secrets for the XMPP clients: {e}");
                    None
                }
            };
            let _ = self
                .pep_notices
                .send(Arc::new(Notice::Secrets(self.pep_secrets.clone())));
        }
        let Some(changed) = self.device.watch.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        if changed.is_empty() || self.pep_notices.receiver_count() == 0 {
            return Ok(());
        }
        let replica = self.device.engine.book().replica();
        for (node, item) in changed {
            let sealed = replica.get(node, &item).and_then(|r| match &r.body {
                Body::Sealed(s) => Some(s.clone()),
                _ => None,
            });
            let id = self
                .pep_names
                .get(&(node, item))
                .cloned()
                .unwrap_or_else(|| item.to_string());
            let _ = self
                .pep_notices
                .send(Arc::new(Notice::Item { node, id, sealed }));
        }
        Ok(())
    }
}
