//! `Status`: this device, its node, its counts and the roster, as one typed answer.

use std::collections::BTreeMap;

use kith_protocol::contacts::Unreadable;
use kith_protocol::item::NodeKind;
use kith_protocol::record::Space;

use super::{NetInfo, iso};
use crate::api::Error;
use crate::api::status::{LiveItems, NodeInfo, RevokedBy, Status, SyncStats, ThisDevice};
use crate::device::Device;
use crate::net;

impl Device {
    pub(super) fn status(&mut self, net: &NetInfo) -> Result<Status, Error> {
        let me = self.id();
        let revoked_by = self.engine.revoked_by().map(|v| {
            let name = self
                .engine
                .roster()
                .get(&v.device)
                .map(|m| m.entry.name.clone());
            RevokedBy {
                id: v.device.to_string(),
                name,
                at: iso(v.hlc.wall_ms),
            }
        });
        let data_dir = self.dir().display().to_string();
        let devices = self.devices(net);
        let counts = self.store.counts()?;
        let stats = self.engine.stats().clone();
        let name = |space: Space| match space {
            Space::Contacts => "contacts",
            Space::Groups => "groups",
            Space::Roster => "roster",
            Space::Keys => "keys",
            Space::Acks => "acks",
        };
        let mut spaces = BTreeMap::new();
        let mut tombstones = 0;
        if self.partial {
            // Only some records are loaded: the store counts them.
            let (per_space, tombs) = self.store.winner_counts()?;
            for (code, n) in per_space {
                if let Some(space) = Space::from_code(u64::from(code)) {
                    spaces.insert(name(space).to_owned(), n);
                }
            }
            tombstones = tombs;
        }
        let partial = self.partial;
        let replica = self.engine.replica();
        if !partial {
            for r in replica.records() {
                *spaces.entry(name(r.space).to_owned()).or_insert(0u64) += 1;
                tombstones += u64::from(r.is_tombstone());
            }
        }
        let held = replica.held().count();
        let set_aside = replica.quarantined().count();
        let index_behind = self.index_behind();
        let view = self.engine.view();
        let waiting = view
            .unreadable()
            .values()
            .filter(|u| matches!(u, Unreadable::Waiting(_)))
            .count();
        let unreadable = view.unreadable().len() - waiting;
        Ok(Status {
            device: ThisDevice {
                id: me.to_string(),
                peer_id: net::peer_of(&me).map(|p| p.to_string()),
                // As the roster has it now (another device may have renamed it).
                name: self
                    .engine
                    .roster()
                    .get(&me)
                    .map(|m| m.entry.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| self.account.name.clone()),
                account: self.account.jid.clone(),
                data_dir,
                revoked_by,
                role: if self.is_relay() {
                    crate::api::status::Role::Relay
                } else {
                    crate::api::status::Role::Full
                },
            },
            node: NodeInfo {
                running: net.online,
                listen: net.listen.iter().map(|a| a.to_string()).collect(),
                xmpp_port: net.xmpp_port,
                xmpp_instance: net.xmpp_instance.clone(),
                reachable: net.reachable.clone(),
                relayed_by: net.relayed_by.iter().map(|d| d.to_string()).collect(),
            },
            roster: devices.0,
            connected_peers: net.connected.len(),
            records: spaces,
            tombstones,
            stored_rows: counts.rows,
            collected_tombstones: counts.collected,
            quarantined_records: counts.quarantined,
            contacts: view.contact_count(),
            groups: view.groups().len(),
            reserved_items: NodeKind::ALL.iter().map(|n| view.reserved_count(*n)).sum(),
            live_items: LiveItems {
                contacts: view.live_items(NodeKind::Contacts),
                groups: view.live_items(NodeKind::Groups),
            },
            waiting_for_secret: waiting,
            unreadable,
            changes: self.changes,
            held_future_records: held,
            set_aside_records: set_aside,
            sync: SyncStats {
                reconciliations: stats.reconciliations,
                rejected_records: stats.rejected_records,
                duplicate_records: stats.duplicate_records,
                frames_out: stats.frames_out,
                bytes_out: stats.bytes_out,
                refused_frames: stats.refused_frames,
                bad_frames: stats.bad_frames,
            },
            index_behind,
        })
    }
}
