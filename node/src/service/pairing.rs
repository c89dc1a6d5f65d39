//! Pairing's requests: opening an invitation (`kith pair invite`), listing
//! (`kith pair list`) and cancelling (`kith pair cancel`) them. The invitations live
//! in the running node's memory ([`crate::pair::invitations`]).

use libp2p::Multiaddr;

use super::{MAX_INVITE_TTL_SECS, NetInfo, input_err, iso, refused};
use crate::api::answer::{Cancelled, Invitation, InvitationList, InvitationState, Invited};
use crate::api::{Error, ErrorKind};
use crate::device::{Device, wall_now};
use crate::pair::code::{MAX_ADDRS, socket_of};
use crate::pair::invitations::State;

fn needs_node() -> Error {
    Error::new(
        ErrorKind::NotRunning,
        "pairing needs this device's node running: start `kith run` first",
    )
}

/// The addresses a long code carries: the pairing listener's, loopback last (a
/// device on the same machine is the rare case), none of the unspecified ones.
fn code_addrs(listen: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut addrs: Vec<Multiaddr> = listen
        .iter()
        .filter(|a| {
            socket_of(a).is_some_and(|s| {
                let link_local = matches!(s.ip(), std::net::IpAddr::V6(ip) if ip.segments()[0] & 0xffc0 == 0xfe80);
                !s.ip().is_unspecified() && !link_local
            })
        })
        .cloned()
        .collect();
    addrs.sort_by_key(|a| socket_of(a).is_some_and(|s| s.ip().is_loopback()));
    addrs.truncate(MAX_ADDRS);
    addrs
}

impl Device {
    pub(super) fn invite(
        &mut self,
        net: &NetInfo,
        ttl_secs: u64,
        relay: bool,
    ) -> Result<Invited, Error> {
        if !net.online {
            return Err(needs_node());
        }
        if ttl_secs == 0 || ttl_secs > MAX_INVITE_TTL_SECS {
            return Err(input_err(format!(
                "the invite lifetime must be between 1 s and {} days",
                MAX_INVITE_TTL_SECS / 86_400
            )));
        }
        if net.pair_listen.is_empty() {
            return Err(refused(
                "pairing needs a TCP listen address (the node listens on QUIC only): \
                 run it with a --listen /ip4/ADDR/tcp/PORT too",
            ));
        }
        let addrs = code_addrs(&net.pair_listen);
        if addrs.is_empty() {
            return Err(refused("the node listens on no address a peer could dial"));
        }
        let now = wall_now().0;
        let expires_ms = now + ttl_secs * 1000;
        let code = self
            .invitations
            .open_for(now, expires_ms, relay, &mut rand::rng())
            .map_err(refused)?
            .with_addrs(addrs);
        Ok(Invited {
            code: code.short(),
            long_code: code.long(),
            nameplate: code.nameplate(),
            expires: iso(expires_ms),
            expires_ms,
            relay,
        })
    }

    pub(super) fn invitations(&mut self, net: &NetInfo) -> Result<InvitationList, Error> {
        if !net.online {
            return Err(needs_node());
        }
        let now = wall_now().0;
        self.invitations.prune(now);
        let invitations = self
            .invitations
            .list()
            .map(|i| {
                let (state, device, name) = match i.state(now) {
                    State::Open => (InvitationState::Open, None, None),
                    State::Expired => (InvitationState::Expired, None, None),
                    State::Joined { device, name } => (
                        InvitationState::Joined,
                        Some(device.to_string()),
                        Some(name),
                    ),
                    State::Cancelled => (InvitationState::Cancelled, None, None),
                    State::Closed => (InvitationState::Closed, None, None),
                };
                Invitation {
                    nameplate: i.nameplate(),
                    state,
                    device,
                    name,
                    wrong_codes: i.wrong,
                    created: iso(i.created_ms),
                    created_ms: i.created_ms,
                    expires: iso(i.expires_ms),
                    expires_ms: i.expires_ms,
                    relay: i.relay,
                }
            })
            .collect();
        Ok(InvitationList { invitations })
    }

    pub(super) fn cancel_invites(
        &mut self,
        net: &NetInfo,
        code: Option<&str>,
    ) -> Result<Cancelled, Error> {
        if !net.online {
            return Err(needs_node());
        }
        let cancelled = self
            .invitations
            .cancel(code, wall_now().0)
            .map_err(|e| match e {
                crate::pair::invitations::Error::Code(_) => input_err(e),
                other => refused(other),
            })?;
        Ok(Cancelled { cancelled })
    }
}
