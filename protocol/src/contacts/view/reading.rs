//! Reading one item's record for the view: from the node's cache of payloads, from
//! what another holder read ([`Reads`]), or by opening and parsing it.

use super::{Held, Origin, Read, Reads, Unreadable};
use crate::item::{NodeKind, Payload};
use crate::record::{Body, Record};
use crate::replica::Replica;
use crate::seal::{self, Keyring, Opener};

/// Reads `record` (a live record of `node`, maybe shelved: its body is then read
/// back from `replica`'s shelf only if it must be opened), unless `old` was read
/// from the same record and is still right; `None` then.
#[allow(clippy::too_many_arguments)]
pub(super) fn read(
    record: &Record,
    replica: &Replica,
    node: NodeKind,
    keyring: &Keyring,
    opener: &mut Opener,
    old: Option<&Read>,
    cache: &mut dyn FnMut(NodeKind, &Record) -> Option<Payload>,
    shared: Option<&Reads>,
) -> Option<Read> {
    let key = record.body.sealed_key()?;
    if let Some(old) = old
        && old.version() == record.version
        && *old.signature() == record.signature
        && !matches!(&old.payload, Err(Unreadable::Waiting(id)) if keyring.get(id).is_some())
        && !matches!(&old.payload, Err(Unreadable::Shelved))
    {
        return None;
    }
    if let Some(p) = cache(node, record).filter(|p| p.check_node(node).is_ok()) {
        return Some(Read {
            origin: Origin::Record(record.clone()),
            payload: Ok(p.into()),
        });
    }
    // Only with the secret at hand: without it the read is "waiting", whatever
    // another holder read.
    let shared = shared.filter(|_| keyring.get(key).is_some());
    if let Some(held) = shared.and_then(|s| s.get(&record.signature)) {
        return Some(Read {
            origin: Origin::Record(record.clone()),
            payload: Ok(held),
        });
    }
    // Without its secret the item waits, whatever its body: none is read back.
    let full = if keyring.get(key).is_some() {
        replica.unshelved(record)
    } else {
        None
    };
    let payload = match full.as_ref().map(|r| &r.body) {
        Some(Body::Sealed(sealed)) => match opener.open(sealed, keyring) {
            Err(seal::Error::UnknownKey(id)) => Err(Unreadable::Waiting(id)),
            Err(e) => Err(Unreadable::Sealing(e)),
            Ok(text) => Payload::parse(&text)
                .and_then(|p| p.check_node(node).map(|()| p))
                .map_err(Unreadable::Payload),
        },
        _ if keyring.get(key).is_none() => Err(Unreadable::Waiting(key.to_owned())),
        // Read back, a shelved record has its sealed body; without it, it is not
        // readable until it is (tried again at the next update of the item).
        _ => Err(Unreadable::Shelved),
    }
    .map(Held::from);
    if let (Some(shared), Ok(held)) = (shared, &payload) {
        shared.put(record.signature, held);
    }
    Some(Read {
        origin: Origin::Record(record.clone()),
        payload,
    })
}
