//! The inviting side of pairing: a running device answering `/kith/pair/2`
//! requests with its [`super::invitations::Invitations`] and its roster.

use kith_protocol::ox;
use kith_protocol::record::{DeviceId, Space};
use kith_protocol::roster::{Entry, Role};
use libp2p::{Multiaddr, PeerId};

use super::{Refusal, Request, Response, b64, unb64};
use crate::device::{Device, wall_now};
use crate::net::{self, MAX_PAIR_BYTES};

/// What answering a request came to, for the node (its gate and its log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A step of the exchange passed (nothing to tell yet).
    Step,
    /// The joiner proved it holds the code: its connection may stay.
    Proven,
    /// The device joined the roster.
    Joined {
        /// The device.
        device: DeviceId,
        /// Its name.
        name: String,
    },
    /// The request was refused.
    Refused(Refusal),
}

impl Device {
    /// `name`, or with a number added (`vm 2`) when another active device of the
    /// roster than `device` has it (case and surrounding spaces ignored): two
    /// devices both named after the host "vm" would be told apart by id only.
    pub(crate) fn unique_name(&self, name: &str, device: &DeviceId) -> String {
        let key = |n: &str| n.trim().to_lowercase();
        let taken: std::collections::BTreeSet<String> = self
            .engine
            .roster()
            .active()
            .filter(|m| m.entry.device != *device)
            .map(|m| key(&m.entry.name))
            .collect();
        if !taken.contains(&key(name)) {
            return name.to_owned();
        }
        (2u32..)
            .map(|n| {
                // Within the name's limit: the base is shortened to make room.
                let suffix = format!(" {n}");
                let room = crate::device::MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
                let base: String = name.trim().chars().take(room).collect();
                format!("{}{suffix}", base.trim_end())
            })
            .find(|candidate| !taken.contains(&key(candidate)))
            // Invariant: `taken` is finite, so some number is free.
            .expect("a free number")
    }

    /// Answers a pairing request from `peer`; `me` is this node's peer id, `listen`
    /// where its node listens (for the new device to dial).
    pub fn answer_pairing(
        &mut self,
        peer: &PeerId,
        me: &PeerId,
        bytes: &[u8],
        listen: &[Multiaddr],
    ) -> (Vec<u8>, Outcome) {
        let (response, outcome) = match self.try_pairing(peer, me, bytes, listen) {
            Ok(done) => done,
            Err(why) => (Response::Refused(why.clone()), Outcome::Refused(why)),
        };
        // Invariant: a plain enum of strings always serialises.
        let bytes = serde_json::to_vec(&response).expect("JSON of a string enum");
        (bytes, outcome)
    }

    fn try_pairing(
        &mut self,
        peer: &PeerId,
        me: &PeerId,
        bytes: &[u8],
        listen: &[Multiaddr],
    ) -> Result<(Response, Outcome), Refusal> {
        let now = wall_now().0;
        let request: Request = serde_json::from_slice(bytes).map_err(|_| Refusal::Malformed)?;
        match request {
            Request::Start { nameplate, spake } => {
                let spake = unb64(&spake, 64).ok_or(Refusal::Malformed)?;
                let ours = self
                    .invitations
                    .start(*peer, *me, &nameplate, &spake, now)?;
                Ok((Response::Spake { spake: b64(&ours) }, Outcome::Step))
            }
            Request::Confirm { mac } => {
                let mac = unb64(&mac, 32).ok_or(Refusal::Malformed)?;
                let ours = self.invitations.confirm(peer, &mac, now)?;
                let account = Response::Account {
                    jid: self.account.jid.clone(),
                    genesis: b64(&self.account.genesis),
                    mac: b64(&ours),
                };
                Ok((account, Outcome::Proven))
            }
            Request::Join { entry } => {
                self.invitations.may_join(peer, now)?;
                let mut entry = unb64(&entry, MAX_PAIR_BYTES)
                    .and_then(|b| Entry::decode(&b).ok())
                    .ok_or(Refusal::Malformed)?;
                if Some(entry.device) != net::device_of(peer) {
                    return Err(Refusal::Roster(
                        "the entry is not for the connected device".into(),
                    ));
                }
                if entry.revoked || crate::device::check_name(&entry.name).is_err() {
                    return Err(Refusal::Roster(
                        "the entry must be an unrevoked device with a short name".into(),
                    ));
                }
                // The inviting person chose the role: a device that holds a code
                // for a relay never gets the secrets by asking to be a full one.
                let relay = entry.role == Role::Relay;
                let wanted = self.invitations.for_relay(peer);
                if wanted != relay {
                    // The exchange ends: the device the code is for may join now.
                    self.invitations.forget(peer);
                }
                match (wanted, relay) {
                    (true, false) => {
                        return Err(Refusal::Roster(
                            "this invitation is for a relay device: join with `--relay`".into(),
                        ));
                    }
                    (false, true) => {
                        return Err(Refusal::Roster(
                            "this invitation is for a full device: join without `--relay`, \
                             or ask for `kith pair invite --relay`"
                                .into(),
                        ));
                    }
                    _ => {}
                }
                ox::cert_from_bytes(&entry.cert)
                    .map_err(|e| Refusal::Roster(format!("bad certificate: {e}")))?;
                entry.name = self.unique_name(&entry.name, &entry.device);
                let (device, name) = (entry.device, entry.name.clone());
                self.execute(kith_protocol::sync::Command::AddDevice(entry))
                    .map_err(|e| Refusal::Roster(e.to_string()))?
                    .map_err(|e| Refusal::Roster(e.to_string()))?;
                if !self.engine.roster().is_active(&device) {
                    return Err(Refusal::Roster(
                        "the roster refused the device (revoked before?)".into(),
                    ));
                }
                self.invitations.joined(peer, device, &name, now);
                let roster = self
                    .engine
                    .replica()
                    .space(Space::Roster)
                    .map(|r| b64(&r.encode()))
                    .collect();
                let addrs = listen.iter().map(|a| a.to_string()).collect();
                let welcome = Response::Welcome {
                    roster,
                    addrs,
                    device: b64(&self.id().0),
                    name: name.clone(),
                };
                Ok((welcome, Outcome::Joined { device, name }))
            }
        }
    }
}
