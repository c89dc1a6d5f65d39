//! Where the CLI gets the passphrase that seals a device's key files: the file named
//! by `KITH_PASSPHRASE_FILE` (for unattended runs), or the terminal.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;
use kith_node::store::{self, KeyFiles, vault::Passphrase};

use crate::Exit;
use crate::output::outln;

/// The variable naming a file whose contents (one line) are the passphrase.
pub(crate) const ENV: &str = "KITH_PASSPHRASE_FILE";
/// The variable naming a file holding the new passphrase, for `kith passphrase set`.
pub(crate) const NEW_ENV: &str = "KITH_NEW_PASSPHRASE_FILE";

/// The key files of `dir` as a command opens them: with the passphrase when they
/// are sealed under one (asked for only then).
pub(crate) fn key_files(dir: &Path) -> Result<KeyFiles> {
    if !store::locked(dir) {
        return Ok(KeyFiles::clear());
    }
    // The key is derived when the directory is opened (under its lock, once a
    // change of passphrase cut short is finished), once: the clones share it.
    Ok(KeyFiles::with_passphrase(read(false)?))
}

/// The key files of a device being created: sealed under a new passphrase when
/// `wanted` (asked twice on a terminal), in clear otherwise.
pub(crate) fn new_key_files(wanted: bool) -> Result<KeyFiles> {
    if !wanted {
        return Ok(KeyFiles::clear());
    }
    let passphrase = read(true)?;
    Ok(KeyFiles::seal_new(passphrase, None)
        .map_err(|e| Exit::Store(format!("making the passphrase lock: {e}")))?)
}

/// Seals the key files of the stopped device in `dir` under a new passphrase
/// (`set`), or writes them in clear (`!set`); the current passphrase is needed when
/// they are sealed.
pub(crate) fn change(dir: &Path, set: bool) -> Result<()> {
    let fail = |e: store::Error| Exit::from(kith_node::device::Error::from(e));
    let holds_keys = |dir: &Path| {
        dir.join("device.key").exists() || dir.join(store::pending("device.key")).exists()
    };
    if !holds_keys(dir) {
        return Err(fail(store::Error::NotInitialised(dir.to_owned())).into());
    }
    let _lock = store::Lock::take(dir).map_err(fail)?;
    let mut from = key_files(dir)?;
    let to = if set {
        KeyFiles::seal_new(read_from(NEW_ENV, true)?, None).map_err(fail)?
    } else {
        KeyFiles::clear()
    };
    store::rekey(dir, &mut from, &to).map_err(fail)?;
    outln!(
        "{}",
        if set {
            "The keys and secrets are sealed under the new passphrase."
        } else {
            "The keys and secrets are in clear now (readable by whoever reads this directory)."
        }
    );
    Ok(())
}

fn read(confirm: bool) -> Result<Passphrase> {
    read_from(ENV, confirm)
}

fn read_from(var: &str, confirm: bool) -> Result<Passphrase> {
    let bad = |e: store::vault::Error| Exit::Input(format!("the passphrase ({var}): {e}"));
    if let Some(path) = std::env::var_os(var) {
        let shown = Path::new(&path).display();
        let text =
            read_bounded(Path::new(&path)).map_err(|e| Exit::Io(format!("{var}={shown}: {e}")))?;
        let text = String::from_utf8(text)
            .map_err(|_| Exit::Input(format!("{var}={shown}: not UTF-8")))?;
        return Ok(Passphrase::new(text).map_err(bad)?);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Exit::Usage(format!(
            "a passphrase is needed: set {var} to a file holding it, or run on a terminal"
        ))
        .into());
    }
    let prompt = if var == NEW_ENV {
        "New passphrase: "
    } else {
        "Passphrase: "
    };
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password(prompt)
            .map_err(|e| Exit::Io(format!("reading the passphrase: {e}")))?,
    );
    if confirm {
        let again = zeroize::Zeroizing::new(
            rpassword::prompt_password("The same passphrase again: ")
                .map_err(|e| Exit::Io(format!("reading the passphrase: {e}")))?,
        );
        if *again != *first {
            return Err(Exit::Input("the two passphrases differ".into()).into());
        }
    }
    Ok(Passphrase::new(first.as_str()).map_err(bad)?)
}

/// Reads a passphrase file, at most a little more than the longest passphrase and
/// its line breaks: a larger file is refused without reading all of it.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let limit = store::vault::MAX_PASSPHRASE as u64 + 64;
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut out)?;
    if out.len() as u64 == limit {
        return Err(std::io::Error::other(format!(
            "longer than a passphrase ({} bytes at most)",
            store::vault::MAX_PASSPHRASE
        )));
    }
    Ok(out)
}
