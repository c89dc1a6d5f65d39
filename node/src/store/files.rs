//! The owner-only files of a data directory: the lock, private key files written
//! atomically (in clear, or sealed under a passphrase: [`KeyFiles`]), and the
//! keyring's XML form.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use kith_protocol::jid::BareJid;
use kith_protocol::ox::SecretMessage;
use kith_protocol::seal::Keyring;
use kith_protocol::xml::{self, Element};

use zeroize::Zeroizing;

use super::vault::{self, Passphrase, Vault};
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

/// How the key files of a directory are read and written: in clear (mode 0600), or
/// sealed under a passphrase ([`super::vault`]). Holds the passphrase given and,
/// once a file was opened or a lock made, the key it gives: derived once, and shared
/// by the clones of this value. The files of one directory are all in clear or all
/// sealed under the same lock (salt and costs); one that is not is refused.
#[derive(Debug, Clone, Default)]
pub struct KeyFiles {
    passphrase: Option<Passphrase>,
    state: std::sync::Arc<std::sync::Mutex<Known>>,
}

/// What reading the files taught: whether they are sealed, and under which key.
#[derive(Debug, Default)]
struct Known {
    sealed: Option<bool>,
    vault: Option<Vault>,
}

/// Whether the key files of `dir` are sealed under a passphrase (those that the
/// next open puts in place, if a creation or a passphrase change was cut short).
pub fn locked(dir: &Path) -> bool {
    let mut magic = [0u8; 8];
    let changed = dir.join(rekeyed("device.key"));
    let created = dir.join(pending("device.key"));
    let file = if dir.join(REKEY_DONE).exists() && changed.exists() {
        changed
    } else if !dir.join("device.key").exists() && created.exists() {
        created
    } else {
        dir.join("device.key")
    };
    File::open(file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == *vault::MAGIC
}

impl KeyFiles {
    /// Files in clear; a sealed one is refused ([`Error::NeedsPassphrase`]).
    pub fn clear() -> Self {
        Self::default()
    }

    /// Files sealed under `passphrase` are opened with it (files in clear are read
    /// as they are).
    pub fn with_passphrase(passphrase: Passphrase) -> Self {
        Self {
            passphrase: Some(passphrase),
            state: Default::default(),
        }
    }

    /// A new lock for a device being created: every file it writes is sealed under
    /// `passphrase` (Argon2id with [`vault::COSTS`], or `costs`).
    pub fn seal_new(passphrase: Passphrase, costs: Option<vault::Costs>) -> Result<Self> {
        let vault = Vault::create(&passphrase, costs).map_err(|source| Error::Vault {
            path: PathBuf::from("(new passphrase)"),
            source,
        })?;
        Ok(Self {
            passphrase: Some(passphrase),
            state: std::sync::Arc::new(std::sync::Mutex::new(Known {
                sealed: Some(true),
                vault: Some(vault),
            })),
        })
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic elsewhere while holding it leaves plain data: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the files this writes are sealed.
    pub fn seals(&self) -> bool {
        self.known().vault.is_some()
    }

    /// Reads `dir/name`, opening it if it is sealed (deriving the key the first
    /// time, and keeping it).
    pub fn read(&mut self, dir: &Path, name: &str) -> Result<Zeroizing<Vec<u8>>> {
        self.read_again(dir, name)
    }

    /// [`KeyFiles::read`] through a shared reference (the key is shared anyway).
    pub fn read_again(&self, dir: &Path, name: &str) -> Result<Zeroizing<Vec<u8>>> {
        let bytes = Zeroizing::new(read_file(dir, name)?);
        let path = dir.join(name);
        let sealed = vault::is_sealed(&bytes);
        let mut known = self.known();
        if known.sealed.is_some_and(|s| s != sealed) {
            return Err(Error::Corrupt {
                path: dir.to_owned(),
                what: format!(
                    "{name} is {} while the other key files are not: a file from another \
                     device or a damaged one; restore this directory from a backup",
                    if sealed { "sealed" } else { "in clear" }
                ),
            });
        }
        if !sealed {
            known.sealed = Some(false);
            return Ok(bytes);
        }
        if let Some(v) = &known.vault {
            if !v.made(&bytes) {
                return Err(Error::Corrupt {
                    path: dir.to_owned(),
                    what: format!(
                        "{name} is sealed under another lock than the other key files: a \
                         file from another device?"
                    ),
                });
            }
            // The key opened the other files: a file that does not open is damaged.
            return v.open(name, &bytes).map_err(|e| Error::Corrupt {
                path: dir.to_owned(),
                what: format!("{name}: {e}; the key opens the other files, so it is damaged"),
            });
        }
        let Some(passphrase) = &self.passphrase else {
            return Err(Error::NeedsPassphrase(dir.to_owned()));
        };
        let failed = |source| Error::Vault {
            path: path.clone(),
            source,
        };
        let v = Vault::unlock(passphrase, name, &bytes).map_err(failed)?;
        let plain = v.open(name, &bytes).map_err(failed)?;
        known.sealed = Some(true);
        known.vault = Some(v);
        Ok(plain)
    }

    /// Writes `bytes` to `dir/name` atomically, sealed when this seals.
    pub fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        // The file's name as it will be read: a pending file becomes it.
        let target = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".pending"))
            .unwrap_or(name);
        self.write_as(dir, name, target, bytes)
    }

    /// Writes `bytes` to `dir/name`, sealed (when this seals) for the name `target`
    /// it will be read under once renamed.
    fn write_as(&self, dir: &Path, name: &str, target: &str, bytes: &[u8]) -> Result<()> {
        let sealed = self.known().vault.as_ref().map(|v| v.seal(target, bytes));
        match sealed {
            Some(sealed) => write_private(dir, name, &sealed),
            None => write_private(dir, name, bytes),
        }
    }
}

/// The mark that every key file of a passphrase change was written (see
/// [`rekey`]): from then on the change is finished, never undone.
const REKEY_DONE: &str = ".rekey.done";

fn rekeyed(name: &str) -> String {
    format!(".{name}.rekey")
}

/// Seals the key files of `dir` anew: read as `from` reads them, written as `to`
/// writes them (another passphrase, or in clear). Crash-safe: the new files are
/// written beside the old ones, then a mark, then they are renamed into place; a
/// crash before the mark leaves the old files (the new ones are dropped at the next
/// open), after it the change is finished at the next open ([`finish_rekey`]). The
/// caller holds the directory's [`Lock`].
pub fn rekey(dir: &Path, from: &mut KeyFiles, to: &KeyFiles) -> Result<()> {
    finish_rekey(dir)?;
    let names: Vec<&str> = DEVICE_FILES
        .into_iter()
        .filter(|n| dir.join(n).exists())
        .collect();
    for name in &names {
        let plain = from.read(dir, name)?;
        to.write_as(dir, &rekeyed(name), name, &plain)?;
    }
    write_private(dir, REKEY_DONE, b"")?;
    finish_rekey(dir)
}

/// Finishes a passphrase change a crash interrupted after its mark, or drops one
/// interrupted before it (the old files are then whole and in place).
pub fn finish_rekey(dir: &Path) -> Result<()> {
    let done = dir.join(REKEY_DONE);
    let finished = done.exists();
    for name in DEVICE_FILES {
        let from = dir.join(rekeyed(name));
        if !from.exists() {
            continue;
        }
        let result = if finished {
            fs::rename(&from, dir.join(name))
        } else {
            fs::remove_file(&from)
        };
        result.map_err(|source| Error::Io { path: from, source })?;
    }
    // Temporary files a crash left while a key file was being written (in clear,
    // when the new files were): never read, erased.
    for name in DEVICE_FILES {
        for tmp in [
            format!(".{name}.tmp"),
            format!(".{}.tmp", rekeyed(name)),
            format!(".{}.tmp", pending(name)),
        ] {
            let path = dir.join(tmp);
            if path.exists() {
                fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
            }
        }
    }
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    if finished {
        fs::remove_file(&done).map_err(|source| Error::Io { path: done, source })?;
    }
    Ok(())
}
