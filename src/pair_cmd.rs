//! `kith pair …`: opening an invitation and waiting for the device to join,
//! joining, listing and (through [`crate::done`]) cancelling invitations.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use kith_node::control::Request;
use kith_node::{Device, join};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use serde_json::Value;

use crate::Exit;
use crate::ops::{call, device_exit, exit, host_name, no_progress, print_json, print_table, s};
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
fn who(name: &Value, id: &Value) -> String {
    let id = s(id);
    format!(
        "{} ({}…)",
        kith_protocol::text::quoted(&s(name)).trim_matches('"'),
        id.get(..4).unwrap_or(&id)
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
pub(crate) fn invite(dir: &Path, ttl: Duration, wait: bool, show_qr: bool) -> Result<()> {
    let v = call(
        dir,
        Request::Invite {
            ttl_secs: ttl.as_secs(),
        },
        &mut no_progress,
    )?;
    let (code, long) = (s(&v["code"]), s(&v["long_code"]));
    let expires = v["expires_ms"].as_u64().unwrap_or(0);
    outln!(
        "Invite code: {code} (valid until {}, {})",
        utc(expires),
        until(expires, now_ms())
    );
    outln!("On the new device, on this network:  kith pair join {code}");
    outln!("From another network, or without mDNS: kith pair join {long}");
    if show_qr {
        outln!("{}", qr(&long)?);
    }
    if !wait {
        return Ok(());
    }
    let nameplate = v["nameplate"].as_str().unwrap_or_default().to_owned();
    // Only the node is asked: opening the store meanwhile would take the directory
    // from a node restarting.
    let ask = || -> Result<Option<Value>> {
        crate::ops::via_node(dir, &Request::Invitations, &mut no_progress)
    };
    // On stderr: what a script reads from stdout is the code and the outcome.
    eprintln!("Waiting for the new device to join (Ctrl-C stops waiting; the code stays valid)…");
    loop {
        let Some(list) = ask().ok().flatten() else {
            return Err(Exit::Failed(
                "The node stopped, and the invitation with it; nobody joined.".into(),
            )
            .into());
        };
        let mine = list["invitations"]
            .as_array()
            .and_then(|a| {
                a.iter().find(|i| {
                    i["nameplate"] == nameplate.as_str() && i["expires_ms"] == v["expires_ms"]
                })
            })
            .cloned()
            .unwrap_or(Value::Null);
        match mine["state"].as_str() {
            Some("open") => std::thread::sleep(POLL),
            Some("joined") => {
                outln!("{} joined.", who(&mine["name"], &mine["device"]));
                return Ok(());
            }
            Some("cancelled") => {
                return Err(
                    Exit::Failed("The invitation was cancelled; nobody joined.".into()).into(),
                );
            }
            Some("closed") => {
                return Err(Exit::Failed(
                    "The invitation closed after three wrong codes; nobody joined. Make a new one."
                        .into(),
                )
                .into());
            }
            Some("expired") => {
                return Err(Exit::Failed("The code expired; nobody joined.".into()).into());
            }
            _ => {
                return Err(Exit::Failed(
                    "The node no longer knows the invitation (did it restart?); nobody joined."
                        .into(),
                )
                .into());
            }
        }
    }
}

/// `kith pair join`.
pub(crate) fn join(
    dir: &Path,
    code: &str,
    name: Option<String>,
    passphrase: bool,
    find: join::Find,
) -> Result<()> {
    let name = name.unwrap_or_else(host_name);
    Device::check_new(dir).map_err(device_exit)?;
    let key_files = crate::passphrase::new_key_files(passphrase)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let device = rt
        .block_on(join::join(dir, code, &name, key_files, &find))
        .map_err(exit)?;
    outln!(
        "Joined {} as device {} ({name}). Start it with `kith run`: it fetches the contacts from the inviting device.",
        device.account().jid,
        device.id()
    );
    Ok(())
}

/// `kith pair list`.
pub(crate) fn list(dir: &Path, json: bool) -> Result<()> {
    let v = call(dir, Request::Invitations, &mut no_progress)?;
    if json {
        return print_json(&v);
    }
    let list = v["invitations"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("No invitations (open, or ended within the hour).");
        return Ok(());
    }
    let now = now_ms();
    let mut table = Table::new(&["CODE", "STATE", "OPENED", "EXPIRES"]);
    for i in &list {
        let expires = i["expires_ms"].as_u64().unwrap_or(0);
        let state = match i["state"].as_str() {
            Some("joined") => format!("joined: {}", who(&i["name"], &i["device"])),
            Some("closed") => "closed after 3 wrong codes".to_owned(),
            Some("open") if i["wrong_codes"].as_u64().unwrap_or(0) > 0 => {
                format!("open ({} wrong codes)", i["wrong_codes"])
            }
            other => other.unwrap_or("-").to_owned(),
        };
        let expiry = match i["state"].as_str() {
            Some("open") => until(expires, now),
            Some("expired") => ago(expires, now),
            _ => "-".to_owned(),
        };
        table.row(vec![
            format!("{}…", s(&i["nameplate"])),
            state,
            ago(i["created_ms"].as_u64().unwrap_or(0), now),
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
