//! `kith pair …`: opening an invitation and waiting for the device to join,
//! joining, listing and (through [`crate::done`]) cancelling invitations.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use kith_node::api::Request;
use kith_node::api::answer::{InvitationList, InvitationState, Invited};
use kith_node::{Device, join};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

use crate::Exit;
use crate::ops::{ask, host_name, no_progress, print_json, print_table, text};
use crate::output::outln;
use crate::table::{Table, ago, now_ms, utc};

/// How often a waiting `pair invite` asks the node how its invitation stands.
const POLL: Duration = Duration::from_millis(250);

/// A moment ahead (Unix ms) as people say it: "in 9 min", "in 2 h", "in 3 days".
/// Rounded to the nearest unit (a fresh 10-minute code reads "in 10 min").
fn until(at_ms: u64, now_ms: u64) -> String {
    const MIN: u64 = 60_000;
    let round = |d: u64, unit: u64| (d + unit / 2) / unit;
    match at_ms.saturating_sub(now_ms) {
        d if d < MIN => "in under a minute".to_owned(),
        d if d < 60 * MIN => format!("in {} min", round(d, MIN)),
        d if d < 48 * 60 * MIN => format!("in {} h", round(d, 60 * MIN)),
        d => format!("in {} days", round(d, 24 * 60 * MIN)),
    }
}

/// A device as people are shown it: `phone (57b6…)`.
fn who(name: Option<&str>, id: Option<&str>) -> String {
    let id = id.unwrap_or("-");
    format!(
        "{} ({}…)",
        text(name.unwrap_or("-")),
        id.get(..4).unwrap_or(id)
    )
}

/// `text` as a QR code of Unicode half blocks, light modules drawn (so that it
/// reads on the dark background of most terminals), with its quiet zone.
pub(crate) fn qr(text: &str) -> Result<String> {
    let code = QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

/// `kith pair invite`: prints the code; unless `!wait`, waits until the device
/// joins (exit 0) or the invitation ends otherwise (exit 1).
pub(crate) fn invite(
    dir: &Path,
    ttl: Duration,
    relay: bool,
    wait: bool,
    show_qr: bool,
) -> Result<()> {
    let v: Invited = ask(
        dir,
        Request::Invite {
            ttl_secs: ttl.as_secs(),
            relay,
        },
    )?;
    let join = if v.relay { "join --relay" } else { "join" };
    outln!(
        "Invite code: {} (valid until {}, {})",
        v.code,
        utc(v.expires_ms),
        until(v.expires_ms, now_ms())
    );
    outln!(
        "On the new device, on this network:  kith pair {join} {}",
        v.code
    );
    outln!(
        "From another network, or without mDNS: kith pair {join} {}",
        v.long_code
    );
    if show_qr {
        outln!("{}", qr(&v.long_code)?);
    }
    if !wait {
        return Ok(());
    }
    // Only the node is asked: opening the store meanwhile would take the directory
    // from a node restarting.
    let list = || -> Result<Option<InvitationList>> {
        let Ok(answer) = crate::ops::via_node(dir, &Request::Invitations, &mut no_progress) else {
            return Ok(None);
        };
        Ok(answer
            .map(InvitationList::try_from)
            .transpose()
            .map_err(Exit::from)?)
    };
    // On stderr: what a script reads from stdout is the code and the outcome.
    eprintln!("Waiting for the new device to join (Ctrl-C stops waiting; the code stays valid)…");
    let ended = |why: &str| Err(Exit::Refused(format!("{why}; nobody joined.")).into());
    loop {
        let Some(list) = list()? else {
            return ended("The node stopped, and the invitation with it");
        };
        let mine = list
            .invitations
            .into_iter()
            .find(|i| i.nameplate == v.nameplate && i.expires_ms == v.expires_ms);
        let Some(mine) = mine else {
            return ended("The node no longer knows the invitation (did it restart?)");
        };
        match mine.state {
            InvitationState::Open => std::thread::sleep(POLL),
            InvitationState::Joined => {
                outln!(
                    "{} joined{}.",
                    who(mine.name.as_deref(), mine.device.as_deref()),
                    if mine.relay { " as a relay" } else { "" }
                );
                return Ok(());
            }
            InvitationState::Cancelled => return ended("The invitation was cancelled"),
            InvitationState::Closed => {
                return ended("The invitation closed after three wrong codes (make a new one)");
            }
            InvitationState::Expired => return ended("The code expired"),
        }
    }
}

/// `kith pair join`.
pub(crate) fn join(
    dir: &Path,
    code: &str,
    name: Option<String>,
    relay: bool,
    passphrase: bool,
    find: join::Find,
) -> Result<()> {
    let name = name.unwrap_or_else(host_name);
    let role = if relay {
        kith_protocol::roster::Role::Relay
    } else {
        kith_protocol::roster::Role::Full
    };
    Device::check_new(dir).map_err(Exit::from)?;
    let key_files = crate::passphrase::new_key_files(passphrase)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let device = rt
        .block_on(join::join(dir, code, &name, role, key_files, &find))
        .map_err(Exit::from)?;
    if relay {
        outln!(
            "Joined {} as relay device {} ({name}): it will keep the account's sealed records \
             for the other devices, and can read none of them. Start it with `kith run`.",
            device.account().jid,
            device.id()
        );
        return Ok(());
    }
    outln!(
        "Joined {} as device {} ({name}). Start it with `kith run`: it fetches the contacts from the inviting device.",
        device.account().jid,
        device.id()
    );
    Ok(())
}

/// `kith pair list`.
pub(crate) fn list(dir: &Path, json: bool) -> Result<()> {
    let v: InvitationList = ask(dir, Request::Invitations)?;
    if json {
        return print_json(&v);
    }
    if v.invitations.is_empty() {
        outln!("No invitations (open, or ended within the hour).");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["CODE", "FOR", "STATE", "OPENED", "EXPIRES"]);
    for i in &v.invitations {
        let state = match i.state {
            InvitationState::Joined => {
                format!("joined: {}", who(i.name.as_deref(), i.device.as_deref()))
            }
            InvitationState::Closed => "closed after 3 wrong codes".to_owned(),
            InvitationState::Open if i.wrong_codes > 0 => {
                format!("open ({} wrong codes)", i.wrong_codes)
            }
            InvitationState::Open => "open".to_owned(),
            InvitationState::Expired => "expired".to_owned(),
            InvitationState::Cancelled => "cancelled".to_owned(),
        };
        let expiry = match i.state {
            InvitationState::Open => until(i.expires_ms, now),
            InvitationState::Expired => ago(i.expires_ms, now),
            _ => "-".to_owned(),
        };
        table.row(vec![
            format!("{}…", text(&i.nameplate)),
            if i.relay { "relay" } else { "full device" }.to_owned(),
            state,
            ago(i.created_ms, now),
            expiry,
        ]);
    }
    print_table(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a QR code drawn by [`qr`] back with an independent decoder (rqrr):
    /// each half block is two modules, a drawn half a light one.
    fn read_back(drawn: &str) -> String {
        let rows: Vec<Vec<char>> = drawn.lines().map(|l| l.chars().collect()).collect();
        let width = rows[0].len();
        let height = rows.len() * 2;
        let light = |x: usize, y: usize| {
            let c = rows[y / 2].get(x).copied().unwrap_or(' ');
            matches!((c, y % 2), ('█', _) | ('▀', 0) | ('▄', 1))
        };
        const SCALE: usize = 4;
        let mut img =
            rqrr::PreparedImage::prepare_from_greyscale(width * SCALE, height * SCALE, |x, y| {
                if light(x / SCALE, y / SCALE) { 255 } else { 0 }
            });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code");
        grids[0].decode().expect("it decodes").1
    }

    #[test]
    fn the_qr_code_reads_back_as_the_long_code() {
        let text = "K7QX2-M9PDA@192.168.1.5:41234,[fe80::1]:41234";
        assert_eq!(read_back(&qr(text).unwrap()), text);
    }

    #[test]
    fn times_ahead_read_as_people_say_them() {
        assert_eq!(until(10 * 60_000 + 5, 0), "in 10 min");
        assert_eq!(until(3 * 3_600_000, 0), "in 3 h");
        assert_eq!(until(3 * 86_400_000, 0), "in 3 days");
        assert_eq!(until(0, 5), "in under a minute");
    }
}
