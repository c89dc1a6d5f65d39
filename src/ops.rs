//! Commands on a device: through the running node's control socket when one runs,
//! otherwise on the store directly (edits then sync when the node next runs).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use kith_node::control::{self, ErrorKind, ImportFormat, Request};
use kith_node::service::NetInfo;
use kith_node::{Device, device, socket, store};
use serde_json::Value;

use crate::Exit;
use crate::output::outln;
use crate::table::{Table, ago_iso, now_ms, output_width};

/// A control error as an exit.
pub(crate) fn exit(e: control::Error) -> Exit {
    Exit::Code(e.kind.exit_code(), e.message)
}

/// The error of opening or creating a device, as an exit.
pub(crate) fn device_exit(e: device::Error) -> Exit {
    match e {
        device::Error::Jid(m) | device::Error::Name(m) => Exit::Input(m),
        device::Error::Store(e @ store::Error::NeedsPassphrase(_)) => Exit::Usage(e.to_string()),
        device::Error::Store(
            e @ store::Error::Vault {
                source: store::vault::Error::Wrong,
                ..
            },
        ) => Exit::Failed(e.to_string()),
        other => Exit::Code(ErrorKind::Store.exit_code(), other.to_string()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Answers `request` through the node listening in `dir`; `None` when none listens.
pub(crate) fn via_node(
    dir: &Path,
    request: &Request,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Option<Value>> {
    let rt = runtime()?;
    // A node answering as many commands as it takes says so: try again a little.
    let start = std::time::Instant::now();
    loop {
        match rt.block_on(socket::request(
            &dir.join("control.sock"),
            request,
            &mut *progress,
        )) {
            Err(e) if e.kind == ErrorKind::Busy && start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other.map_err(|e| exit(e).into()),
        }
    }
}

/// Answers `request` through the node, or on the store when no node runs.
pub(crate) fn call(
    dir: &Path,
    request: Request,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Value> {
    if dir.join("control.sock").exists()
        && let Some(v) = via_node(dir, &request, &mut *progress)?
    {
        return Ok(v);
    }
    // A command about a few items loads only those (see `Device::open_for`).
    let key_files = crate::passphrase::key_files(dir)?;
    let open = || {
        Device::open_for(dir, &request, key_files.clone()).and_then(|d| match d {
            Some(d) => Ok(d),
            None => Device::open_with(dir, key_files.clone()),
        })
    };
    // The lock may be held by another command for a moment, or by a node that is
    // starting (its socket appears right after it takes the lock): wait a little.
    let start = std::time::Instant::now();
    let mut device = loop {
        match open() {
            Ok(d) => break d,
            Err(device::Error::Store(store::Error::Locked(_)))
                if start.elapsed() < Duration::from_secs(10) =>
            {
                if let Ok(Some(v)) = via_node(dir, &request, &mut *progress) {
                    return Ok(v);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(device_exit(e).into()),
        }
    };
    let result = device
        .handle(request, &NetInfo::default(), progress)
        .map_err(|e| exit(e).into());
    // What the command erased leaves the log too (the store is not closed below).
    if let Err(e) = device.fold_log_if_erased() {
        tracing::warn!("emptying the store's log: {e}");
    }
    if !device.is_partial() {
        // The process ends next: freeing a whole list (a good part of a second at
        // 100,000 contacts) is left to the OS. The store is committed and closes
        // with the process; the lock goes with it.
        std::mem::forget(device);
    }
    result
}

pub(crate) fn no_progress(_: u64, _: u64) {}

pub(crate) fn init(dir: &Path, jid: &str, name: Option<String>, passphrase: bool) -> Result<()> {
    let name = name.unwrap_or_else(host_name);
    // Checked before a passphrase is asked for (and its key derived).
    Device::check_new(dir).map_err(device_exit)?;
    let key_files = crate::passphrase::new_key_files(passphrase)?;
    let sealed = key_files.seals();
    let device = Device::init_with(dir, jid, &name, key_files).map_err(device_exit)?;
    outln!(
        "Created device {} ({name}) of {} in {}",
        device.id(),
        device.account().jid,
        dir.display()
    );
    if sealed {
        outln!(
            "Its keys and secrets are sealed under the passphrase: every command that opens it asks for it (or reads it from the file named by KITH_PASSPHRASE_FILE)."
        );
    }
    outln!("Next: `kith run`, then `kith pair invite` to add your other devices.");
    Ok(())
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

/// `kith contact rm JID`: says which contact went, with all its addresses.
pub(crate) fn remove_contact(dir: &Path, jid: String) -> Result<()> {
    let v = call(dir, Request::RemoveContact { jid }, &mut no_progress)?;
    let c = &v["removed"];
    match c["name"].as_str() {
        Some(n) => outln!("Removed {} ({})", s(&Value::from(n)), list(c, "jids")),
        None => outln!("Removed {}", list(c, "jids")),
    }
    Ok(())
}

/// A command that changes something: carried out, then said in one line.
pub(crate) fn done(dir: &Path, request: Request) -> Result<()> {
    let said = request.clone();
    let reply = call(dir, request, &mut no_progress)?;
    if let Some(line) = crate::done::said(&said, &reply) {
        outln!("{line}");
    }
    Ok(())
}

/// Prints `table` fitted to the output's width ([`crate::table::output_width`]).
pub(crate) fn print_table(table: &Table) -> Result<()> {
    for line in table.lines(output_width()) {
        outln!("{line}");
    }
    Ok(())
}

pub(crate) fn print_json(v: &Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A string of a reply, for a table: what came from another device or a file may
/// hold tabs or line breaks (XML allows them), which would break the table's lines,
/// so control characters show as spaces.
pub(crate) fn s(v: &Value) -> std::borrow::Cow<'_, str> {
    let text = v.as_str().unwrap_or("-");
    let odd = kith_protocol::text::breaks_line;
    if text.chars().any(odd) {
        text.chars()
            .map(|c| if odd(c) { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

pub(crate) fn list(v: &Value, key: &str) -> String {
    v[key]
        .as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// Whether a contact (as JSON) is in `group` and matches `search`, both ignoring case.
fn matches(c: &Value, group: Option<&str>, search: Option<&str>) -> bool {
    let strings = |key: &str| -> Vec<String> {
        c[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_lowercase))
            .collect()
    };
    let in_group = group.is_none_or(|g| strings("groups").contains(&g.to_lowercase()));
    let found = search.is_none_or(|t| {
        let t = t.to_lowercase();
        c["name"]
            .as_str()
            .is_some_and(|n| n.to_lowercase().contains(&t))
            || strings("jids").iter().any(|j| j.contains(&t))
    });
    in_group && found
}

pub(crate) fn contacts(
    dir: &Path,
    json: bool,
    group: Option<&str>,
    search: Option<&str>,
) -> Result<()> {
    let v = call(dir, Request::Contacts, &mut no_progress)?;
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| matches(c, group, search))
        .cloned()
        .collect();
    if json {
        return print_json(&Value::Array(rows));
    }
    let mut table = Table::new(&["NAME", "JIDS", "GROUPS"]);
    for c in &rows {
        table.row(vec![
            s(&c["name"]).into_owned(),
            list(c, "jids"),
            list(c, "groups"),
        ]);
    }
    print_table(&table)?;
    outln!(
        "({} contact{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The contact with this address, or else the one contact with this name.
fn find_contact(dir: &Path, text: String) -> Result<Value> {
    let by_jid = call(
        dir,
        Request::Contact { jid: text.clone() },
        &mut no_progress,
    );
    let err = match by_jid {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let all = call(dir, Request::Contacts, &mut no_progress)?;
    let named: Vec<&Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&text))
        })
        .collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(err),
        many => Err(Exit::Failed(format!(
            "{} contacts are named {text:?}: give one of their addresses",
            many.len()
        ))
        .into()),
    }
}

pub(crate) fn contact(dir: &Path, jid: String, json: bool) -> Result<()> {
    let c = find_contact(dir, jid)?;
    if json {
        return print_json(&c);
    }
    outln!("name:    {}", s(&c["name"]));
    outln!("jids:    {}", list(&c, "jids"));
    outln!("groups:  {}", list(&c, "groups"));
    outln!("id:      {}", s(&c["id"]));
    outln!("items:   {}", c["items"]);
    outln!(
        "updated: {} ({})",
        ago_iso(&c["updated"], now_ms()),
        s(&c["updated"])
    );
    Ok(())
}

pub(crate) fn groups(dir: &Path, json: bool) -> Result<()> {
    let v = call(dir, Request::Groups, &mut no_progress)?;
    if json {
        return print_json(&v);
    }
    let mut table = Table::new(&["NAME", "CONTACTS", "DESCRIPTION"]).right(1);
    for g in v.as_array().into_iter().flatten() {
        table.row(vec![
            s(&g["name"]).into_owned(),
            g["contacts"].as_u64().unwrap_or(0).to_string(),
            s(&g["description"]).into_owned(),
        ]);
    }
    print_table(&table)
}

pub(crate) fn import(dir: &Path, file: &Path, format: ImportFormat, replace: bool) -> Result<()> {
    let text = crate::item_cmd::read_text(Some(file))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} contacts")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = call(
        dir,
        Request::Import {
            format,
            text,
            replace,
        },
        &mut progress,
    );
    bar.finish_and_clear();
    let v = bad_input_in(file, result)?;
    outln!(
        "Imported {} entries: {} contacts added, {} updated, {} unchanged; {} groups",
        v["contacts"],
        v["added"],
        v["updated"],
        v["unchanged"],
        v["groups"]
    );
    Ok(())
}

/// A request about the content of `file`: bad input (exit 3) names the file.
pub(crate) fn bad_input_in(file: &Path, result: Result<Value>) -> Result<Value> {
    result.map_err(|e| match e.downcast::<Exit>() {
        Ok(Exit::Code(3, m)) => Exit::Input(format!("{}: {m}", file.display())).into(),
        Ok(other) => other.into(),
        Err(e) => e,
    })
}

/// `kith export roster`: the document exactly as the node wrote it.
pub(crate) fn export(dir: &Path, full: bool, xep0227: bool) -> Result<()> {
    let v = call(dir, Request::Export { full, xep0227 }, &mut no_progress)?;
    outln!("{}", v["roster"].as_str().unwrap_or_default());
    Ok(())
}
