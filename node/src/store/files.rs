//! The owner-only files of a data directory: the lock, private key files written
//! atomically, and the keyring's XML form.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use kith_protocol::jid::BareJid;
use kith_protocol::ox::SecretMessage;
use kith_protocol::seal::Keyring;
use kith_protocol::xml::{self, Element};

use super::{Error, Result};

/// The exclusive lock on a data directory, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock of `dir` without waiting.
    pub fn take(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Locked(dir.to_owned()));
        }
        Ok(Self { _file: file })
    }
}

/// The files that make a data directory a device: finding any of them, `init` and
/// `pair join` refuse the directory.
pub const DEVICE_FILES: [&str; 3] = ["device.key", "openpgp.key", "secrets.xml"];

/// The name a key file has while its device is being created.
pub fn pending(name: &str) -> String {
    format!(".{name}.pending")
}

/// Moves key files written under [`pending`] names into place; a file already in
/// place is never replaced.
pub fn finish_pending(dir: &Path) -> Result<()> {
    for name in DEVICE_FILES {
        let from = dir.join(pending(name));
        let to = dir.join(name);
        if from.exists() && !to.exists() {
            fs::rename(&from, &to).map_err(|source| Error::Io { path: to, source })?;
        }
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (mode 0700) if needed.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Writes `bytes` to `dir/name` atomically (temporary file, fsync, rename), readable
/// by the owner alone.
pub fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads `dir/name`.
pub fn read_file(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    fs::read(&path).map_err(|source| Error::Io { path, source })
}

/// The keyring as `<secrets>` of XEP-0473 `<shared-secret/>` elements of `jid`.
pub fn keyring_to_xml(keyring: &Keyring, jid: &BareJid) -> String {
    let mut root = Element::new("urn:xmpp:kith:secrets:0", "secrets");
    for s in keyring.iter() {
        root.push(
            SecretMessage::Share {
                jid: jid.clone(),
                secret: s.clone(),
            }
            .to_element(),
        );
    }
    root.to_xml()
}

/// Reads what [`keyring_to_xml`] wrote.
pub fn keyring_from_xml(dir: &Path, text: &str) -> Result<Keyring> {
    let corrupt = |what: String| Error::Corrupt {
        path: dir.to_owned(),
        what,
    };
    let root = Element::parse(text, xml::Limits::IMPORT)
        .map_err(|e| corrupt(format!("secrets.xml: {e}")))?;
    let mut keyring = Keyring::new();
    for el in root.elements() {
        match SecretMessage::from_element(el) {
            Some(Ok(SecretMessage::Share { secret, .. })) => keyring.insert(secret),
            Some(Err(e)) => return Err(corrupt(format!("secrets.xml: {e}"))),
            _ => return Err(corrupt("secrets.xml: unexpected element".into())),
        }
    }
    Ok(keyring)
}
