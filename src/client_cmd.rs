//! `kith client`: the XMPP clients approved to receive the node secrets.

use std::io::Read as _;
use std::path::Path;

use anyhow::Result;
use base64::Engine as _;
use kith_node::control::Request;
use kith_node::xmpp::clients::MAX_CERT_BYTES;

use crate::Exit;
use crate::ops::{bad_input_in, call, no_progress, print_json, print_table};
use crate::output::outln;
use crate::table::{Table, ago_iso, now_ms};

/// `kith client add --cert FILE`.
pub(crate) fn add(dir: &Path, file: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CERT_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| Exit::Io(format!("cannot read {}: {e}", file.display())))?;
    let cert = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let v = bad_input_in(
        file,
        call(dir, Request::AddClient { cert }, &mut no_progress),
    )?;
    outln!(
        "Approved client {}: it receives the secrets when it connects",
        v["fingerprint"].as_str().unwrap_or("-")
    );
    Ok(())
}

/// `kith client approve FINGERPRINT`.
pub(crate) fn approve(dir: &Path, fingerprint: String) -> Result<()> {
    let v = call(
        dir,
        Request::ApproveClient { fingerprint },
        &mut no_progress,
    )?;
    outln!(
        "Approved client {}: it receives the secrets when it connects",
        v["fingerprint"].as_str().unwrap_or("-")
    );
    Ok(())
}

/// `kith client list`.
pub(crate) fn list(dir: &Path, json: bool) -> Result<()> {
    let v = call(dir, Request::Clients, &mut no_progress)?;
    if json {
        return print_json(&v);
    }
    let now = now_ms();
    let mut table = Table::new(&["FINGERPRINT", "STATE", "ADDED", "USER IDS"]).keep(0);
    for c in v.as_array().into_iter().flatten() {
        let uids: Vec<&str> = c["user_ids"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str())
            .collect();
        table.row(vec![
            c["fingerprint"].as_str().unwrap_or("-").to_owned(),
            c["state"].as_str().unwrap_or("-").to_owned(),
            ago_iso(&c["added"], now),
            uids.join(", ").replace(char::is_control, " "),
        ]);
    }
    print_table(&table)
}

/// `kith client rm FINGERPRINT`.
pub(crate) fn remove(dir: &Path, fingerprint: String) -> Result<()> {
    let v = call(dir, Request::RemoveClient { fingerprint }, &mut no_progress)?;
    if v["rotated"].as_bool() == Some(true) {
        outln!(
            "Removed client {}; the secrets were rotated",
            v["fingerprint"].as_str().unwrap_or("-")
        );
    } else {
        outln!(
            "Removed client {} (it was never approved)",
            v["fingerprint"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}
