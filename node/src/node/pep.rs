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

fn sealed(r: &Record) -> Option<(String, kith_protocol::seal::Sealed)> {
    match &r.body {
        Body::Sealed(s) => Some((r.item.to_string(), s.clone())),
        _ => None,
    }
}

/// The item ids of a request, parsed; ids that cannot be kith's are skipped.
fn parse_ids(ids: &[String]) -> Vec<ItemId> {
    ids.iter()
        .filter_map(|s| ItemId::parse(s).filter(|i| i.to_string() == *s))
        .collect()
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
                let item = match id {
                    None => ItemId::random(&mut rand::rng()),
                    Some(s) => ItemId::parse(&s)
                        .filter(|i| i.to_string() == s)
                        .ok_or_else(|| {
                            Refusal::bad_request(None)
                                .with_text("item ids here are 32 lower-case hex digits (or none)")
                        })?,
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
                Ok(Some(stanza::published(node, &item.to_string())))
            }
            Query::Retract { node, ids } => {
                let items = parse_ids(&ids);
                let view = self.device.engine.book().view();
                if items.len() != ids.len() || !items.iter().all(|i| view.is_live(node, i)) {
                    return Err(Refusal::item_not_found());
                }
                self.device
                    .atomically(|d| {
                        for item in items {
                            let now = d.clock.now();
                            d.engine
                                .execute(now, Command::Retract { node, item })
                                .map_err(|e| {
                                    crate::control::Error::new(
                                        crate::control::ErrorKind::Refused,
                                        e.to_string(),
                                    )
                                })?;
                            d.drain()?;
                        }
                        Ok(())
                    })
                    .map_err(|e| Refusal::internal().with_text(e.message))?;
                Ok(None)
            }
            _ => Err(Refusal::internal()),
        }
    }

    fn items(
        &mut self,
        node: NodeKind,
        ids: &[String],
        max_items: Option<usize>,
        page: Option<Page>,
    ) -> Result<Element, Refusal> {
        let replica = self.device.engine.book().replica();
        // Live items, by item id.
        let mut all: Vec<&Record> = if ids.is_empty() {
            replica
                .space(node)
                .filter(|r| matches!(r.body, Body::Sealed(_)))
                .collect()
        } else {
            let found: Vec<&Record> = parse_ids(ids)
                .iter()
                .filter_map(|i| replica.get(node, i))
                .filter(|r| matches!(r.body, Body::Sealed(_)))
                .collect();
            if found.is_empty() {
                return Err(Refusal::item_not_found());
            }
            found
        };
        if let Some(n) = max_items {
            // The newest n, newest first (XEP-0060 §6.5.7).
            all.sort_by(|a, b| b.version.cmp(&a.version));
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
                        let s = all.partition_point(|r| r.item.to_string() <= *after);
                        (s, (s + max).min(count))
                    }
                    (None, Some(before)) => {
                        let e = if before.is_empty() {
                            count
                        } else {
                            all.partition_point(|r| r.item.to_string() < *before)
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
            let _ = self.pep_notices.send(Arc::new(Notice::Item {
                node,
                id: item.to_string(),
                sealed,
            }));
        }
        Ok(())
    }
}
