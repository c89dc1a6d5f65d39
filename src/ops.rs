//! Commands on a device: through the running node's control socket when one runs,
//! otherwise on the store directly (edits then sync when the node next runs).

use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use kith_node::api::answer::{Contact, ContactList, ContactRemoved, Exported, GroupList, Imported};
use kith_node::api::socket;
use kith_node::api::{Answer, ErrorKind, ImportFormat, Payload, Request};
use kith_node::service::NetInfo;
use kith_node::{Device, device, store};
use serde::Serialize;

use crate::Exit;
use crate::output::outln;
use crate::table::{Table, ago, ms_of, now_ms, output_width};

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
) -> Result<Option<Answer>> {
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
            other => return other.map_err(|e| Exit::from(e).into()),
        }
    }
}

/// Answers `request` through the node, or on the store when no node runs.
pub(crate) fn call(
    dir: &Path,
    request: Request,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Answer> {
    // The kind, not a copy of the request: an import carries its whole document.
    let wanted = request.answer_kind();
    let answer = answer(dir, request, progress)?;
    Ok(answer.of_kind(wanted).map_err(Exit::from)?)
}

fn answer(dir: &Path, request: Request, progress: &mut dyn FnMut(u64, u64)) -> Result<Answer> {
    if dir.join("control.sock").exists()
        && let Some(v) = via_node(dir, &request, &mut *progress)?
    {
        return Ok(v);
    }
    if request.needs_node() {
        return Err(Exit::Node(
            "pairing needs this device's node running: start `kith run` first".into(),
        )
        .into());
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
    // starting (its socket appears right after it takes the lock; after a kill,
    // rebuilding the item index of 100,000 contacts takes seconds): wait as
    // `kith run` waits for it.
    let start = std::time::Instant::now();
    let mut device = loop {
        match open() {
            Ok(d) => break d,
            Err(device::Error::Store(store::Error::Locked(_)))
                if start.elapsed() < crate::run_cmd::LOCK_WAIT =>
            {
                if let Ok(Some(v)) = via_node(dir, &request, &mut *progress) {
                    return Ok(v);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Exit::from(e).into()),
        }
    };
    let result = device
        .handle(request, &NetInfo::default(), progress)
        .map_err(|e| Exit::from(e).into());
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

/// [`call`] for an answer of type `T` (another kind is a node of another version:
/// exit 7).
pub(crate) fn ask<T: Payload>(dir: &Path, request: Request) -> Result<T> {
    Ok(T::try_from(call(dir, request, &mut no_progress)?).map_err(Exit::from)?)
}

pub(crate) fn no_progress(_: u64, _: u64) {}

pub(crate) fn init(dir: &Path, jid: &str, name: Option<String>, passphrase: bool) -> Result<()> {
    let name = name.unwrap_or_else(host_name);
    // Checked before a passphrase is asked for (and its key derived).
    Device::check_new(dir).map_err(Exit::from)?;
    let key_files = crate::passphrase::new_key_files(passphrase)?;
    let sealed = key_files.seals();
    let device = Device::init_with(dir, jid, &name, key_files).map_err(Exit::from)?;
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
    let v: ContactRemoved = ask(dir, Request::RemoveContact { jid })?;
    let (name, jids) = v.removed.map(|r| (r.name, r.jids)).unwrap_or_default();
    match name.filter(|n| !n.is_empty()) {
        Some(n) => outln!("Removed {} ({})", text(&n), joined(&jids)),
        None => outln!("Removed {}", joined(&jids)),
    }
    Ok(())
}

/// A command that changes something: carried out, then said in one line.
pub(crate) fn done(dir: &Path, request: Request) -> Result<()> {
    let said = request.clone();
    let answer = call(dir, request, &mut no_progress)?;
    outln!("{}", crate::done::Said::new(&said, &answer));
    Ok(())
}

/// Prints `table` fitted to the output's width ([`crate::table::output_width`]).
pub(crate) fn print_table(table: &Table) -> Result<()> {
    for line in table.lines(output_width()) {
        outln!("{line}");
    }
    Ok(())
}

/// Prints an answer as `--json` does.
pub(crate) fn print_json(v: &impl Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Text of an answer, for a table: what came from another device or a file may
/// hold tabs or line breaks (XML allows them), which would break the table's lines,
/// so control characters show as spaces; what else would break a line or turn its
/// direction (a line separator, a direction mark), and characters that hide (a
/// zero-width space in "Bob", which would read as "Bob"), show escaped as `\u{…}`.
pub(crate) fn text(t: &str) -> Cow<'_, str> {
    let t: Cow<'_, str> = if t.chars().any(char::is_control) {
        t.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        t.into()
    };
    if let Cow::Owned(escaped) = kith_protocol::text::unhidden(&t) {
        return escaped.into();
    }
    t
}

/// [`text`] of what may be missing or empty: "-" then.
pub(crate) fn opt(t: Option<&str>) -> Cow<'_, str> {
    t.filter(|t| !t.is_empty()).map_or(Cow::Borrowed("-"), text)
}

/// Values joined with commas, each as [`text`]; "-" for none.
pub(crate) fn joined(values: &[String]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    values
        .iter()
        .map(|v| text(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An XEP-0082 time of an answer as people say it ("-" when it is none).
pub(crate) fn ago_of(t: Option<&str>, now_ms: u64) -> String {
    t.and_then(ms_of)
        .map_or_else(|| "-".to_owned(), |t| ago(t, now_ms))
}

/// Whether a contact matches `search` (its name or an address holds it, case ignored).
fn matches(c: &Contact, search: Option<&str>) -> bool {
    search.is_none_or(|t| {
        let t = t.to_lowercase();
        c.name
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains(&t))
            || c.jids.iter().any(|j| j.to_lowercase().contains(&t))
            || c.other_identities
                .iter()
                .any(|i| i.value.to_lowercase().contains(&t))
    })
}

pub(crate) fn contacts(
    dir: &Path,
    json: bool,
    group: Option<&str>,
    search: Option<&str>,
) -> Result<()> {
    // The node finds the group (a name no group has is refused, not listed empty).
    let request = match group {
        Some(g) => Request::ContactsIn {
            group: g.to_owned(),
        },
        None => Request::Contacts,
    };
    let ContactList(all) = ask(dir, request)?;
    let rows: Vec<Contact> = all.into_iter().filter(|c| matches(c, search)).collect();
    if json {
        return print_json(&rows);
    }
    let mut table = Table::new(&["NAME", "JIDS", "GROUPS"]);
    for c in &rows {
        table.row(vec![
            opt(c.name.as_deref()).into_owned(),
            joined(&c.jids),
            joined(&c.groups),
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
fn find_contact(dir: &Path, name: String) -> Result<Contact> {
    let err = match ask::<Contact>(dir, Request::Contact { jid: name.clone() }) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let ContactList(all) = ask(dir, Request::Contacts)?;
    // A name as a person types it: case, spaces around it, its Unicode form and
    // characters that show nothing aside, as groups are found.
    let wanted = kith_protocol::item::lookalike(&name);
    let mut named: Vec<Contact> = all
        .into_iter()
        .filter(|c| {
            c.name
                .as_deref()
                .is_some_and(|n| kith_protocol::item::lookalike(n) == wanted)
        })
        .collect();
    match named.len() {
        1 => Ok(named.remove(0)),
        0 => Err(err),
        many => Err(Exit::Refused(format!(
            "{many} contacts are named {}: give one of their addresses",
            kith_protocol::text::quoted(&name)
        ))
        .into()),
    }
}

pub(crate) fn contact(dir: &Path, jid: String, json: bool) -> Result<()> {
    let c = find_contact(dir, jid)?;
    if json {
        return print_json(&c);
    }
    outln!("name:    {}", opt(c.name.as_deref()));
    outln!("jids:    {}", joined(&c.jids));
    for i in &c.other_identities {
        outln!("other:   {}: {}", text(&i.kind), text(&i.value));
    }
    outln!("groups:  {}", joined(&c.groups));
    outln!("id:      {}", text(&c.id));
    outln!("items:   {}", c.items);
    outln!(
        "updated: {} ({})",
        ago_of(Some(&c.updated), now_ms()),
        text(&c.updated)
    );
    Ok(())
}

pub(crate) fn groups(dir: &Path, json: bool) -> Result<()> {
    let list: GroupList = ask(dir, Request::Groups)?;
    if json {
        return print_json(&list);
    }
    let mut table = Table::new(&["NAME", "CONTACTS", "DESCRIPTION"]).right(1);
    for g in &list.0 {
        table.row(vec![
            text(&g.name).into_owned(),
            g.contacts.to_string(),
            opt(g.description.as_deref()).into_owned(),
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
    let v: Imported = bad_input_in(file, result)?.try_into().map_err(Exit::from)?;
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if let Some(own) = &v.left_out {
        outln!("Left out {own}: this account's own address, not a contact");
    }
    outln!(
        "Imported {} in {}: {} added, {} updated, {} unchanged",
        plural(v.contacts, "contact", "contacts"),
        plural(v.groups as u64, "group", "groups"),
        plural(v.added as u64, "contact", "contacts"),
        v.updated,
        v.unchanged,
    );
    Ok(())
}

/// A request about the content of `file`: bad input (exit 3) names the file.
pub(crate) fn bad_input_in<T>(file: &Path, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e.downcast::<Exit>() {
        Ok(Exit::Input(m)) => Exit::Input(format!("{}: {m}", file.display())).into(),
        Ok(other) => other.into(),
        Err(e) => e,
    })
}

/// `kith export roster`: the document exactly as the node wrote it.
pub(crate) fn export(dir: &Path, full: bool, xep0227: bool) -> Result<()> {
    let v: Exported = ask(dir, Request::Export { full, xep0227 })?;
    outln!("{}", v.roster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{joined, opt};

    /// A name that is missing and one that is empty look the same: "-".
    #[test]
    fn a_missing_or_empty_value_shows_a_hyphen() {
        assert_eq!(opt(None), "-");
        assert_eq!(opt(Some("")), "-");
        assert_eq!(opt(Some("Jules")), "Jules");
        assert_eq!(opt(Some("a\nb")), "a b");
        assert_eq!(joined(&[]), "-");
    }
}
