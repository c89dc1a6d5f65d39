//! `kith item seal|open` and `kith import … --dry-run`: pure transformations of
//! files, no device state.

use std::io::Read;
use std::io::Write as _;
use std::path::Path;

use anyhow::Result;
use kith_protocol::clock::WallTime;
use kith_protocol::item::{NodeKind, Payload};
use kith_protocol::seal::{self, Opener, Sealed, Secret};
use kith_protocol::{import, xml};

use crate::Exit;
use crate::cli::NodeArg;
use crate::output::outln;

/// Largest input file read, in bytes (more is cut, and then refused by the parser).
const MAX_INPUT_BYTES: u64 = xml::Limits::IMPORT.max_bytes as u64 + 1;

/// Reads a document a user gives: exit 4 if it cannot be read, 3 if it is not text.
pub(crate) fn read_text(path: Option<&Path>) -> Result<String> {
    let mut buf = Vec::new();
    let what = path.map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
    let result = match path {
        Some(p) => {
            std::fs::File::open(p).and_then(|f| f.take(MAX_INPUT_BYTES).read_to_end(&mut buf))
        }
        None => std::io::stdin().take(MAX_INPUT_BYTES).read_to_end(&mut buf),
    };
    result.map_err(|e| Exit::Io(format!("cannot read {what}: {e}")))?;
    String::from_utf8(buf).map_err(|_| Exit::Input(format!("{what} is not UTF-8 text")).into())
}

fn read_secret(path: &Path, id: &str, node: NodeKind) -> Result<Secret> {
    let text = read_text(Some(path))?;
    // Like `gpg --passphrase-file`, the secret is the first line.
    let value = text.lines().next().unwrap_or("");
    if value.is_empty() {
        return Err(Exit::Input(format!(
            "{} holds no secret on its first line",
            path.display()
        ))
        .into());
    }
    Ok(Secret {
        id: id.to_owned(),
        value: value.to_owned().into(),
        node,
        created: WallTime(0),
        revoked: false,
    })
}

pub(crate) fn seal(
    node: NodeArg,
    secret_file: &Path,
    key_id: &str,
    input: Option<&Path>,
) -> Result<()> {
    let node = match node {
        NodeArg::Contacts => NodeKind::Contacts,
        NodeArg::Groups => NodeKind::Groups,
    };
    if key_id.is_empty() || key_id.len() > 256 || key_id.chars().any(char::is_control) {
        return Err(Exit::Input("--key-id must be 1 to 256 printable characters".into()).into());
    }
    let secret = read_secret(secret_file, key_id, node)?;
    let text = read_text(input)?;
    let payload = text.trim();
    Payload::parse(payload)
        .and_then(|p| p.check_node(node))
        .map_err(|e| Exit::Input(format!("invalid payload: {e}")))?;
    let sealed = seal::seal(payload, &secret, seal::DEFAULT_PAD_BUCKET, &mut rand::rng());
    outln!("{}", sealed.to_xml());
    Ok(())
}

pub(crate) fn open(secret_file: &Path, input: Option<&Path>) -> Result<()> {
    let mut secret = read_secret(secret_file, "", NodeKind::Contacts)?;
    let text = read_text(input)?;
    let sealed = Sealed::parse(text.trim())
        .map_err(|e| Exit::Input(format!("invalid <encrypted/> element: {e}")))?;
    secret.id.clone_from(&sealed.key);
    let payload = Opener::new()
        .open_with(&sealed.data, &secret)
        .map_err(|e| Exit::Input(format!("cannot open item: {e}")))?;
    outln!("{payload}");
    Ok(())
}

pub(crate) enum Source {
    Roster,
    Metacontacts,
}

pub(crate) fn import_dry_run(file: &Path, source: Source) -> Result<()> {
    let text = read_text(Some(file))?;
    let imported = match source {
        Source::Roster => import::roster(&text),
        Source::Metacontacts => import::metacontacts(&text),
    }
    .map_err(|e| Exit::Input(format!("{}: {e}", file.display())))?;
    let (contacts, groups) = imported.to_payloads(&mut rand::rng());
    for p in groups.iter().chain(&contacts) {
        // A terminal shows what the document hid (a zero-width space, an override)
        // as character references: the same XML.
        outln!("{}", kith_protocol::text::xml_unhidden(&p.to_xml()));
    }
    let _ = writeln!(
        std::io::stderr(),
        "{} contacts, {} groups (dry run: nothing stored)",
        contacts.len(),
        groups.len()
    );
    Ok(())
}
