//! The node's side of the PEP service: answers the requests that need the device
//! (items, publish, retract, a client's key) and turns every change of the view into
//! notices for the XEP-0174 streams, and every change of the secrets or of the
//! approved clients into a new secrets message.

use std::collections::BTreeSet;
use std::sync::Arc;

use kith_protocol::contacts::{Command, Error as ContactsError};
use kith_protocol::item::NodeKind;
use kith_protocol::record::{Body, ItemId, Record};
use kith_protocol::seal::Sealed;
use kith_protocol::xml::Element;
use tracing::warn;

use super::{Error, Node};
use crate::store::names::{MAX_NAME_BYTES, item_for_name};
use crate::xmpp::stanza::{self, MAX_PAGE, MAX_PAGE_BYTES, Page, PageInfo, Query, Refusal};
use crate::xmpp::{Call, Notice};

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

/// The record id of a client's item id, checked.
fn item_of(node: NodeKind, name: &str) -> Result<ItemId, Refusal> {
    check_name(name)?;
    Ok(item_for_name(node, name))
}

fn sealed_of(r: &Record) -> Option<&Sealed> {
    match &r.body {
        Body::Sealed(s) => Some(s),
        _ => None,
    }
}

impl Node {
    pub(super) fn on_xmpp(&mut self, call: Call) {
        let answer = self.pep(call.query);
        let _ = call.reply.send(answer);
    }

    fn pep(&mut self, q: Query) -> Result<Option<Element>, Refusal> {
        let writes = matches!(
            q,
            Query::Publish { .. } | Query::Retract { .. } | Query::PublishKey { .. }
        );
        if writes && self.device.is_relay() {
            // A relay holds no secret: no item it could seal, no client it could
            // give one to.
            return Err(Refusal::forbidden().with_text(crate::service::RELAY_REFUSES));
        }
        match q {
            Query::Items {
                node,
                ids,
                max_items,
                page,
            } => self.items(node, &ids, max_items, page).map(Some),
            Query::Publish {
                node, id, sealed, ..
            } => self.publish(node, id, sealed),
            Query::Retract { node, id } => {
                let item = item_of(node, &id)?;
                self.write(Command::Retract { node, item }, None)?;
                Ok(None)
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
            Query::DiscoInfo { .. }
            | Query::DiscoItems { .. }
            | Query::Subscribe { .. }
            | Query::Unsubscribe { .. } => {
                Err(Refusal::internal().with_text("answered by the stream"))
            }
        }
    }

    fn publish(
        &mut self,
        node: NodeKind,
        id: Option<String>,
        sealed: Sealed,
    ) -> Result<Option<Element>, Refusal> {
        let item = match &id {
            None => ItemId::random(&mut rand::rng()),
            Some(name) => item_of(node, name)?,
        };
        let name = id
            .clone()
            .filter(|n| *n != item.to_string())
            .map(|n| (node, item, n));
        self.write(Command::Publish { node, item, sealed }, name)?;
        Ok(Some(stanza::published(
            node.node_name(),
            &id.unwrap_or_else(|| item.to_string()),
        )))
    }

    /// Carries out a write: checked first without writing (a refusal changes
    /// nothing), then carried out with the item's name, if any, in one transaction.
    fn write(
        &mut self,
        cmd: Command,
        name: Option<(NodeKind, ItemId, String)>,
    ) -> Result<(), Refusal> {
        if self.device.engine.revoked_by().is_some() {
            // A revoked device syncs no more: a write here would reach nobody.
            return Err(Refusal::forbidden()
                .with_text("this device was revoked: it no longer syncs with the account"));
        }
        let mut rng = rand::rng();
        self.device
            .engine
            .book_mut()
            .check(cmd.clone(), &mut rng)
            .map_err(refusal)?;
        let retracted = match &cmd {
            Command::Retract { node, item } => Some((*node, *item)),
            _ => None,
        };
        self.device
            .atomically(|d| {
                let now = d.clock.now();
                d.engine.execute(now, cmd).map_err(|e| {
                    crate::api::Error::new(crate::api::ErrorKind::Refused, e.to_string())
                })?;
                // The name first: a `<reserved/>` published under it is then written
                // at once by the drain, which forgets the name with the content.
                if let Some((node, item, name)) = &name {
                    d.store.set_item_name(*node, item, name)?;
                }
                d.drain()?;
                if let Some((node, item)) = &retracted {
                    d.store.remove_item_name(*node, item)?;
                }
                Ok(())
            })
            .map_err(|e| Refusal::internal().with_text(e.message))?;
        if let Some((node, item, name)) = name {
            self.pep_names.insert((node, item), name);
        }
        if let Some(key) = retracted {
            // Forgotten once the retraction is notified under the name.
            self.pep_forget.push(key);
        }
        Ok(())
    }

    fn items(
        &mut self,
        node: NodeKind,
        ids: &[String],
        max_items: Option<usize>,
        page: Option<Page>,
    ) -> Result<Element, Refusal> {
        let wanted: Vec<ItemId> = ids
            .iter()
            .map(|n| item_of(node, n))
            .collect::<Result<_, _>>()?;
        let anchor = |name: &Option<String>| -> Result<Option<ItemId>, Refusal> {
            match name.as_deref() {
                None | Some("") => Ok(None),
                Some(n) => item_of(node, n).map(Some),
            }
        };
        let (after, before) = match &page {
            Some(p) => (anchor(&p.after)?, anchor(&p.before)?),
            None => (None, None),
        };
        let names = &self.pep_names;
        let name_of = |item: &ItemId| {
            names
                .get(&(node, *item))
                .cloned()
                .unwrap_or_else(|| item.to_string())
        };
        let replica = self.device.engine.replica();
        // Live items, in record-id order.
        let mut all: Vec<&Record> = if wanted.is_empty() {
            replica
                .space(node)
                .filter(|r| r.body.sealed_key().is_some())
                .collect()
        } else {
            let set: BTreeSet<ItemId> = wanted.into_iter().collect();
            let found: Vec<&Record> = set
                .iter()
                .filter_map(|i| replica.get(node, i))
                .filter(|r| r.body.sealed_key().is_some())
                .collect();
            if found.is_empty() {
                return Err(Refusal::item_not_found());
            }
            found
        };
        let count = all.len();
        // XEP-0059: an anchor that is not an item of the list is an error.
        for a in [after, before].into_iter().flatten() {
            if all.binary_search_by(|r| r.item.cmp(&a)).is_err() {
                return Err(Refusal::item_not_found().with_text("no such item to page from"));
            }
        }
        let (start, end) = if let Some(n) = max_items {
            // The newest n, newest first (XEP-0060 §6.5.7).
            all.sort_by_key(|r| std::cmp::Reverse(r.version));
            (0, n.min(MAX_PAGE).min(count))
        } else {
            match &page {
                Some(p) => {
                    let max = p.max.unwrap_or(MAX_PAGE).min(MAX_PAGE);
                    match (after, &p.before) {
                        (Some(a), _) => {
                            let s = all.partition_point(|r| r.item <= a);
                            (s, (s + max).min(count))
                        }
                        (None, Some(_)) => {
                            let e = before.map_or(count, |b| all.partition_point(|r| r.item < b));
                            (e.saturating_sub(max), e)
                        }
                        (None, None) => (0, max.min(count)),
                    }
                }
                None => (0, MAX_PAGE.min(count)),
            }
        };
        // A page also ends before it grows past MAX_PAGE_BYTES: cut at its far end
        // (its start when paging backwards), so the next page goes on from there.
        let backwards = max_items.is_none()
            && page
                .as_ref()
                .is_some_and(|p| p.after.is_none() && p.before.is_some());
        let window: Vec<&&Record> = if backwards {
            all[start..end].iter().rev().collect()
        } else {
            all[start..end].iter().collect()
        };
        let mut items = Vec::new();
        let mut bytes = 0;
        for r in window {
            // Read back from the store when shelved (see `Device::shelve_stored`).
            // One that cannot be read back fails the request: a page without it
            // would miscount (the store is damaged under the node).
            let Some(full) = replica.unshelved(r) else {
                warn!("item {} could not be read back from the store", r.item);
                return Err(Refusal::internal());
            };
            let Some(s) = sealed_of(&full) else { continue };
            bytes += s.data.len() * 4 / 3 + 128;
            if !items.is_empty() && bytes > MAX_PAGE_BYTES {
                break;
            }
            items.push((name_of(&r.item), s.clone()));
        }
        let first_index = if backwards {
            items.reverse();
            end - items.len()
        } else {
            start
        };
        let paged = page.is_some() || items.len() < count;
        let info = paged.then_some(PageInfo { count, first_index });
        Ok(stanza::items(node, &items, info.as_ref()))
    }

    /// Sends notices for the items of the view changed since the last call, and a
    /// new secrets message when the secrets or the approved clients changed.
    pub(super) fn pep_notify(&mut self) -> Result<(), Error> {
        // Compared in place: the keyring's state is cloned only when it changed.
        if self.device.clients_changed
            || self.pep_secrets_for.as_ref() != Some(self.device.keyring_state())
        {
            self.device.clients_changed = false;
            self.pep_secrets_for = Some(self.device.keyring_state().clone());
            let message = match self.device.secrets_element(&self.ox_key) {
                Ok(Some((el, keys))) => {
                    self.pep_secrets_keys = keys;
                    Some(Arc::new(el))
                }
                Ok(None) => None,
                Err(e) => {
                    warn!("cannot seal the secrets for the XMPP clients: {e}");
                    None
                }
            };
            self.pep_secrets.send_replace(message);
        }
        let Some(changed) = self.device.watch.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        let forget = std::mem::take(&mut self.pep_forget);
        // A live item sealed with a secret the message does not carry (a device that
        // was away wrote it with an older one): the message is made again next time.
        // Only looked for while there is a message (a client is approved).
        if self.pep_secrets.borrow().is_some() {
            let engine = &self.device.engine;
            let keyring = engine.keyring();
            let unshared = changed.iter().any(|(node, item)| {
                engine
                    .replica()
                    .get(*node, item)
                    .and_then(|r| r.body.sealed_key())
                    .is_some_and(|k| !self.pep_secrets_keys.contains(k) && keyring.get(k).is_some())
            });
            if unshared {
                self.pep_secrets_for = None;
            }
        }
        let replica = self.device.engine.replica();
        if changed.is_empty() || self.pep_notices.receiver_count() == 0 {
            for key in forget {
                self.pep_names.remove(&key);
            }
            return Ok(());
        }
        for (node, item) in changed {
            let sealed = match replica.get(node, &item) {
                Some(r) if r.body.sealed_key().is_some() => {
                    // Read back from the store when shelved; an item that cannot be
                    // is not announced (as retracted, least of all).
                    match replica.unshelved(r).and_then(|f| sealed_of(&f).cloned()) {
                        Some(s) => Some(s),
                        None => {
                            warn!("item {item} could not be read back from the store");
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let id = self
                .pep_names
                .get(&(node, item))
                .cloned()
                .unwrap_or_else(|| item.to_string());
            let _ = self.pep_notices.send(Arc::new(Notice { node, id, sealed }));
        }
        for key in forget {
            self.pep_names.remove(&key);
        }
        Ok(())
    }
}
