//! `kith client`: the XMPP clients approved to receive the node secrets.

use std::io::Read as _;
use std::path::Path;

use anyhow::Result;
use base64::Engine as _;
use kith_node::api::Request;
use kith_node::api::answer::{ClientApproved, ClientList, ClientRemoved};
use kith_node::xmpp::clients::MAX_CERT_BYTES;

use crate::Exit;
use crate::ops::{ago_of, ask, bad_input_in, call, no_progress, print_json, print_table, text};
use crate::output::outln;
use crate::table::{Table, now_ms};

/// `kith client add --cert FILE`.
pub(crate) fn add(dir: &Path, file: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_CERT_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| Exit::Io(format!("cannot read {}: {e}", file.display())))?;
    let cert = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let v: ClientApproved = bad_input_in(
        file,
        call(dir, Request::AddClient { cert }, &mut no_progress),
    )?
    .try_into()
    .map_err(Exit::from)?;
    outln!(
        "Approved client {}: it receives the secrets when it connects",
        v.fingerprint
    );
    Ok(())
}

/// `kith client approve FINGERPRINT`.
pub(crate) fn approve(dir: &Path, fingerprint: String) -> Result<()> {
    let v: ClientApproved = ask(dir, Request::ApproveClient { fingerprint })?;
    outln!(
        "Approved client {}: it receives the secrets when it connects",
        v.fingerprint
    );
    Ok(())
}

/// `kith client list`.
pub(crate) fn list(dir: &Path, json: bool) -> Result<()> {
    let list: ClientList = ask(dir, Request::Clients)?;
    if json {
        return print_json(&list);
    }
    let now = now_ms();
    let mut table = Table::new(&["FINGERPRINT", "STATE", "ADDED", "USER IDS"]).keep(0);
    for c in &list.0 {
        table.row(vec![
            c.fingerprint.clone(),
            c.state.as_str().to_owned(),
            ago_of(Some(&c.added), now),
            text(&c.user_ids.join(", ")).into_owned(),
        ]);
    }
    print_table(&table)
}

/// `kith client rm FINGERPRINT`.
pub(crate) fn remove(dir: &Path, fingerprint: String) -> Result<()> {
    let v: ClientRemoved = ask(dir, Request::RemoveClient { fingerprint })?;
    if v.rotated {
        outln!("Removed client {}; the secrets were rotated", v.fingerprint);
    } else {
        outln!("Removed client {} (it was never approved)", v.fingerprint);
    }
    Ok(())
}
