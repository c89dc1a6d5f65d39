//! The passphrase lock of a data directory's key files (`device.key`, `openpgp.key`,
//! `secrets.xml`): a key derived from the passphrase with Argon2id (memory-hard)
//! seals each file with XChaCha20-Poly1305.
//!
//! A sealed file is `KITHVLT1`, the Argon2id costs (memory in KiB, passes, lanes:
//! three big-endian u32), a 16-byte salt, a 24-byte nonce, then the ciphertext and
//! its tag. The header and the file's name are the authenticated data, so a file
//! renamed to another's place, or with costs changed, does not open. Every file of a
//! directory is sealed under the same salt and costs, so opening a device derives
//! the key once.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The first bytes of a sealed file.
pub const MAGIC: &[u8; 8] = b"KITHVLT1";
/// Bytes before the ciphertext: magic, three costs, salt, nonce.
const HEADER: usize = 8 + 12 + 16 + 24;
/// The costs a new lock is made with: 64 MiB, three passes, one lane (RFC 9106's
/// second recommendation, with the lanes this machine's use needs).
pub const COSTS: Costs = Costs {
    memory_kib: 64 * 1024,
    passes: 3,
    lanes: 1,
};
/// Longest passphrase accepted (bytes).
pub const MAX_PASSPHRASE: usize = 1024;

/// Why a sealed file does not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not a sealed file, or one cut short.
    #[error("not a kith passphrase-sealed file")]
    NotSealed,
    /// Costs outside what kith accepts (a damaged or crafted header).
    #[error("Argon2id costs out of range: {0}")]
    Costs(String),
    /// The passphrase is not the one the file was sealed with (or the file was
    /// altered).
    #[error("wrong passphrase (or the file was altered)")]
    Wrong,
    /// The passphrase is empty or too long.
    #[error("a passphrase must have 1 to {MAX_PASSPHRASE} bytes")]
    BadPassphrase,
}

/// Argon2id costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Costs {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes over it.
    pub passes: u32,
    /// Lanes.
    pub lanes: u32,
}

impl Costs {
    /// Costs a reader accepts: at least 8 MiB and at most 1 GiB, 1 to 16 passes and
    /// lanes (so that a crafted header can neither make the lock weak nor make
    /// opening exhaust the machine).
    fn check(self) -> Result<Self, Error> {
        if !(8 * 1024..=1024 * 1024).contains(&self.memory_kib)
            || !(1..=16).contains(&self.passes)
            || !(1..=16).contains(&self.lanes)
        {
            return Err(Error::Costs(format!("{self:?}")));
        }
        Ok(self)
    }
}

/// A passphrase, wiped from memory when dropped.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// A passphrase (1 to [`MAX_PASSPHRASE`] bytes; a trailing line break, as a
    /// file or a terminal gives it, is not part of it).
    pub fn new(text: impl Into<String>) -> Result<Self, Error> {
        let mut text = Zeroizing::new(text.into());
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        if text.is_empty() || text.len() > MAX_PASSPHRASE {
            return Err(Error::BadPassphrase);
        }
        Ok(Self(text))
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

/// The key a passphrase gives under one salt and costs: seals and opens files.
#[derive(Clone)]
pub struct Vault {
    key: Zeroizing<[u8; 32]>,
    salt: [u8; 16],
    costs: Costs,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("costs", &self.costs)
            .finish_non_exhaustive()
    }
}

/// Whether `bytes` are a sealed file.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

fn derive(passphrase: &Passphrase, salt: &[u8; 16], costs: Costs) -> Result<Vault, Error> {
    let costs = costs.check()?;
    let params = Params::new(costs.memory_kib, costs.passes, costs.lanes, Some(32))
        .map_err(|e| Error::Costs(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.0.as_bytes(), salt, key.as_mut_slice())
        .map_err(|e| Error::Costs(e.to_string()))?;
    Ok(Vault {
        key,
        salt: *salt,
        costs,
    })
}

fn header_of(bytes: &[u8]) -> Result<(Costs, [u8; 16]), Error> {
    if !is_sealed(bytes) || bytes.len() < HEADER + 16 {
        return Err(Error::NotSealed);
    }
    let u32_at = |i: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[i..i + 4]);
        u32::from_be_bytes(b)
    };
    let costs = Costs {
        memory_kib: u32_at(8),
        passes: u32_at(12),
        lanes: u32_at(16),
    };
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&bytes[20..36]);
    Ok((costs, salt))
}

impl Vault {
    /// A new lock: a fresh salt, [`COSTS`] (or `costs`, for tests), the key derived.
    pub fn create(passphrase: &Passphrase, costs: Option<Costs>) -> Result<Self, Error> {
        let salt: [u8; 16] = rand::RngExt::random(&mut rand::rng());
        derive(passphrase, &salt, costs.unwrap_or(COSTS))
    }

    /// The lock `sealed` (a sealed file) was made with, if `passphrase` opens it.
    pub fn unlock(passphrase: &Passphrase, name: &str, sealed: &[u8]) -> Result<Self, Error> {
        let (costs, salt) = header_of(sealed)?;
        let vault = derive(passphrase, &salt, costs)?;
        vault.open(name, sealed)?;
        Ok(vault)
    }

    /// Whether this vault's salt and costs are those of `sealed` (then it opens it
    /// without deriving again).
    pub fn made(&self, sealed: &[u8]) -> bool {
        header_of(sealed).is_ok_and(|(costs, salt)| costs == self.costs && salt == self.salt)
    }

    /// Seals the contents of the file `name`.
    pub fn seal(&self, name: &str, plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = rand::RngExt::random(&mut rand::rng());
        let mut out = Vec::with_capacity(HEADER + plain.len() + 16);
        out.extend_from_slice(MAGIC);
        for n in [self.costs.memory_kib, self.costs.passes, self.costs.lanes] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&nonce);
        let mut aad = out.clone();
        aad.extend_from_slice(name.as_bytes());
        // Invariant: XChaCha20-Poly1305 encryption of a buffer in memory cannot fail.
        let sealed = XChaCha20Poly1305::new(self.key.as_slice().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts");
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens the sealed contents of the file `name`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        header_of(sealed)?;
        if !self.made(sealed) {
            return Err(Error::Wrong);
        }
        let mut aad = sealed[..HEADER].to_vec();
        aad.extend_from_slice(name.as_bytes());
        XChaCha20Poly1305::new(self.key.as_slice().into())
            .decrypt(
                XNonce::from_slice(&sealed[HEADER - 24..HEADER]),
                Payload {
                    msg: &sealed[HEADER..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small costs: the tests check the format, not the hardness.
    const CHEAP: Costs = Costs {
        memory_kib: 8 * 1024,
        passes: 1,
        lanes: 1,
    };

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s).unwrap()
    }

    #[test]
    fn a_sealed_file_opens_with_its_passphrase_and_name_only() {
        let vault = Vault::create(&pass("correct horse"), Some(CHEAP)).unwrap();
        let sealed = vault.seal("device.key", b"thirty-two bytes of secret key!!");
        assert!(is_sealed(&sealed));
        assert!(
            !sealed.windows(8).any(|w| w == b"thirty-t"),
            "the contents are not in clear"
        );
        let again = Vault::unlock(&pass("correct horse\n"), "device.key", &sealed).unwrap();
        assert_eq!(
            again.open("device.key", &sealed).unwrap().as_slice(),
            b"thirty-two bytes of secret key!!"
        );
        assert!(again.made(&sealed));
        assert_eq!(
            Vault::unlock(&pass("wrong horse"), "device.key", &sealed).err(),
            Some(Error::Wrong)
        );
        assert_eq!(vault.open("openpgp.key", &sealed).err(), Some(Error::Wrong));
    }

    #[test]
    fn damaged_or_crafted_files_are_refused_with_a_typed_error() {
        let vault = Vault::create(&pass("p"), Some(CHEAP)).unwrap();
        let sealed = vault.seal("secrets.xml", b"<secrets/>");
        for cut in [0, 7, 8, HEADER, HEADER + 15] {
            assert_eq!(
                Vault::unlock(&pass("p"), "secrets.xml", &sealed[..cut]).err(),
                Some(Error::NotSealed),
                "cut at {cut}"
            );
        }
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(
            vault.open("secrets.xml", &flipped).err(),
            Some(Error::Wrong)
        );
        // Costs that would make opening exhaust the machine, or the lock weak.
        for (at, value) in [(8, u32::MAX), (8, 1), (12, 0), (16, 1000)] {
            let mut crafted = sealed.clone();
            crafted[at..at + 4].copy_from_slice(&value.to_be_bytes());
            assert!(matches!(
                Vault::unlock(&pass("p"), "secrets.xml", &crafted),
                Err(Error::Costs(_))
            ));
        }
        assert_eq!(Passphrase::new("").err(), Some(Error::BadPassphrase));
        assert_eq!(Passphrase::new("\n").err(), Some(Error::BadPassphrase));
        assert_eq!(
            Passphrase::new("x".repeat(MAX_PASSPHRASE + 1)).err(),
            Some(Error::BadPassphrase)
        );
    }
}
