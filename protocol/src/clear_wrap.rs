//! A key wrap for simulations and tests only (feature `clear-wrap`): secrets travel
//! in clear, tagged with the addressee. Deterministic and cheap, so that large runs
//! stay fast and a seed replays the same trace; `kith-sim` runs one scenario with the
//! real XEP-0373 wrap instead. Never built into the node.

use crate::clock::WallTime;
use crate::keys::KeyWrap;
use crate::ox::SecretMessage;
use crate::record::DeviceId;
use crate::roster::{Member, Roster};
use crate::seal::Secret;
use crate::xml::{self, Element};
use rand_chacha::ChaCha20Rng;

/// Plaintext wrapping: `to` (32 bytes) then `<payload>` of `<shared-secret/>`s.
#[derive(Debug, Clone)]
pub struct PlainWrap {
    /// This device.
    pub me: DeviceId,
}

impl KeyWrap for PlainWrap {
    fn wrap(
        &mut self,
        secrets: &[Secret],
        to: &Member,
        _now: WallTime,
        _rng: &mut ChaCha20Rng,
    ) -> Result<Vec<u8>, String> {
        let jid = crate::jid::BareJid::parse("sim@kith.invalid").map_err(|e| e.to_string())?;
        let mut payload = Element::new("urn:xmpp:openpgp:0", "payload");
        for s in secrets {
            payload.push(
                SecretMessage::Share {
                    jid: jid.clone(),
                    secret: s.clone(),
                }
                .to_element(),
            );
        }
        Ok([to.entry.device.0.to_vec(), payload.to_xml().into_bytes()].concat())
    }

    fn unwrap(
        &mut self,
        wrapped: &[u8],
        _author: &Member,
        _roster: &Roster,
        _now: WallTime,
    ) -> Result<Vec<Secret>, String> {
        let (to, xml_bytes) = wrapped.split_at_checked(32).ok_or("short wrap")?;
        if to != self.me.0 {
            return Err("not addressed here".into());
        }
        let text = std::str::from_utf8(xml_bytes).map_err(|e| e.to_string())?;
        let payload = Element::parse(text, xml::Limits::IMPORT).map_err(|e| e.to_string())?;
        Ok(payload
            .elements()
            .filter_map(|el| match SecretMessage::from_element(el) {
                Some(Ok(SecretMessage::Share { secret, .. })) => Some(secret),
                _ => None,
            })
            .collect())
    }
}
