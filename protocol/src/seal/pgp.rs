//! The narrow slice of OpenPGP (RFC 4880 / RFC 9580 v4 packets) that kith writes for
//! XEP-0473 items, written by hand so that it is fast and takes all its randomness
//! from the caller's RNG: a Symmetric-Key Encrypted Session Key packet (v4, salted
//! S2K, SHA-256, AES-256, no encrypted session key: the S2K output is the session
//! key), then a Symmetric Encrypted Integrity Protected Data packet (v1, CFB, with a
//! Modification Detection Code) holding one binary Literal Data packet.
//!
//! Reading accepts more than writing: SKESK v4 with simple, salted or iterated-salted
//! S2K over SHA-1/SHA-2, with or without an encrypted session key, AES-128/192/256,
//! old- and new-format packet headers and partial body lengths (GnuPG writes those).
//! Anything else is [`Error::Unsupported`] and goes to sequoia (see `seal::fallback`).

use aes::{Aes128, Aes192, Aes256};
use cfb_mode::cipher::{AsyncStreamCipher, KeyIvInit};
use rand_core::CryptoRng;
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use zeroize::Zeroizing;

const TAG_SKESK: u8 = 3;
const TAG_COMPRESSED: u8 = 8;
const TAG_MARKER: u8 = 10;
const TAG_LITERAL: u8 = 11;
const TAG_SEIPD: u8 = 18;
const TAG_MDC: u8 = 19;
const ALGO_AES256: u8 = 9;
const HASH_SHA256: u8 = 8;
/// AES block size; the SEIPD v1 random prefix is one block plus two repeated bytes.
const BLOCK: usize = 16;
/// Most bytes an iterated S2K may ask us to hash: GnuPG's largest encodable count.
const MAX_S2K_COUNT: usize = 65_011_712;

/// Why a message could not be read by this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("malformed OpenPGP message: {0}")]
    Malformed(&'static str),
    #[error("OpenPGP feature outside kith's fast path: {0}")]
    Unsupported(&'static str),
    #[error("no session key could be derived from the secret")]
    WrongSecret,
    #[error("integrity check failed: the item was modified")]
    Tampered,
}

/// A string-to-key specifier (RFC 4880 §3.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct S2k {
    hash: u8,
    salt: Option<[u8; 8]>,
    /// Bytes to hash for iterated S2K.
    count: Option<usize>,
}

impl S2k {
    /// Whether deriving a key costs enough to be worth caching.
    pub(crate) fn is_expensive(&self) -> bool {
        self.count.is_some_and(|c| c > 65_536)
    }

    fn parse(b: &[u8]) -> Result<(Self, usize), Error> {
        let short = Error::Malformed("truncated S2K");
        let (&kind, rest) = b.split_first().ok_or(short.clone())?;
        let &hash = rest.first().ok_or(short.clone())?;
        let salt = |r: &[u8]| -> Result<[u8; 8], Error> {
            r.get(1..9)
                .and_then(|s| s.try_into().ok())
                .ok_or(short.clone())
        };
        match kind {
            0 => Ok((
                Self {
                    hash,
                    salt: None,
                    count: None,
                },
                2,
            )),
            1 => Ok((
                Self {
                    hash,
                    salt: Some(salt(rest)?),
                    count: None,
                },
                10,
            )),
            3 => {
                let &c = rest.get(9).ok_or(short.clone())?;
                let count = (16usize + usize::from(c & 15)) << (usize::from(c >> 4) + 6);
                let s = Self {
                    hash,
                    salt: Some(salt(rest)?),
                    count: Some(count),
                };
                Ok((s, 11))
            }
            _ => Err(Error::Unsupported("S2K type")),
        }
    }

    /// Derives `len` key bytes from `password`.
    pub(crate) fn derive(&self, password: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self.hash {
            2 => Ok(self.derive_with::<Sha1>(password, len)),
            8 => Ok(self.derive_with::<Sha256>(password, len)),
            9 => Ok(self.derive_with::<Sha384>(password, len)),
            10 => Ok(self.derive_with::<Sha512>(password, len)),
            11 => Ok(self.derive_with::<Sha224>(password, len)),
            _ => Err(Error::Unsupported("S2K hash algorithm")),
        }
    }

    fn derive_with<D: Digest>(&self, password: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let mut input = Zeroizing::new(Vec::with_capacity(8 + password.len()));
        if let Some(salt) = &self.salt {
            input.extend_from_slice(salt);
        }
        input.extend_from_slice(password);
        let total = self.count.unwrap_or(0).min(MAX_S2K_COUNT).max(input.len());
        // Repeat the input into a buffer once, then hash it in large chunks.
        let mut chunk = Zeroizing::new(Vec::new());
        if total > input.len() && !input.is_empty() {
            while chunk.len() < 64 * 1024 {
                chunk.extend_from_slice(&input);
            }
        }
        let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
        let mut preload = 0usize;
        while out.len() < len {
            let mut h = D::new();
            h.update(vec![0u8; preload]);
            if chunk.is_empty() {
                h.update(&*input);
            } else {
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk.len());
                    h.update(&chunk[..n]);
                    left -= n;
                }
            }
            out.extend_from_slice(&h.finalize());
            preload += 1;
        }
        out.truncate(len);
        out
    }
}

fn key_len(algo: u8) -> Result<usize, Error> {
    match algo {
        7 => Ok(16),
        8 => Ok(24),
        9 => Ok(32),
        _ => Err(Error::Unsupported("symmetric algorithm")),
    }
}

/// OpenPGP CFB (IV of zeros, no resynchronisation) over `data`, in place.
fn cfb(algo: u8, key: &[u8], data: &mut [u8], encrypt: bool) -> Result<(), Error> {
    let iv = [0u8; BLOCK];
    let bad = |_| Error::Malformed("key length");
    macro_rules! run {
        ($c:ty) => {
            if encrypt {
                cfb_mode::Encryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(bad)?
                    .encrypt(data)
            } else {
                cfb_mode::Decryptor::<$c>::new_from_slices(key, &iv)
                    .map_err(bad)?
                    .decrypt(data)
            }
        };
    }
    match algo {
        7 => run!(Aes128),
        8 => run!(Aes192),
        9 => run!(Aes256),
        _ => return Err(Error::Unsupported("symmetric algorithm")),
    }
    Ok(())
}

fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(0xC0 | tag);
    if len < 192 {
        out.push(len as u8);
    } else if len < 8384 {
        let l = len - 192;
        out.push(((l >> 8) + 192) as u8);
        out.push((l & 0xFF) as u8);
    } else {
        out.push(0xFF);
        // Item payloads are bounded far below 4 GiB (xml::Limits::ITEM).
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// Encrypts `plaintext` under `password` as described in the module docs.
pub(crate) fn encrypt<R: CryptoRng + ?Sized>(
    password: &[u8],
    plaintext: &[u8],
    rng: &mut R,
) -> Vec<u8> {
    let mut salt = [0u8; 8];
    rng.fill_bytes(&mut salt);
    let s2k = S2k {
        hash: HASH_SHA256,
        salt: Some(salt),
        count: None,
    };
    let key = s2k
        .derive(password, 32)
        .expect("SHA-256 is supported by derive");

    // Plaintext of the SEIPD packet: prefix, literal packet, MDC header, MDC.
    let mut body = Vec::with_capacity(plaintext.len() + 64);
    let mut prefix = [0u8; BLOCK + 2];
    rng.fill_bytes(&mut prefix[..BLOCK]);
    prefix[BLOCK] = prefix[BLOCK - 2];
    prefix[BLOCK + 1] = prefix[BLOCK - 1];
    body.extend_from_slice(&prefix);
    push_header(&mut body, TAG_LITERAL, 6 + plaintext.len());
    body.extend_from_slice(&[b'b', 0, 0, 0, 0, 0]);
    body.extend_from_slice(plaintext);
    body.extend_from_slice(&[0xC0 | TAG_MDC, 20]);
    let mdc = Sha1::digest(&body);
    body.extend_from_slice(&mdc);
    cfb(ALGO_AES256, &key, &mut body, true).expect("AES-256 with a 32-byte key");

    let mut out = Vec::with_capacity(body.len() + 24);
    push_header(&mut out, TAG_SKESK, 12);
    out.extend_from_slice(&[4, ALGO_AES256, 1, HASH_SHA256]);
    out.extend_from_slice(&salt);
    push_header(&mut out, TAG_SEIPD, 1 + body.len());
    out.push(1);
    out.extend_from_slice(&body);
    out
}

/// Reads one packet at `*pos`: its tag and body (partial bodies joined).
fn read_packet(buf: &[u8], pos: &mut usize) -> Result<(u8, Vec<u8>), Error> {
    let short = Error::Malformed("truncated packet");
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], Error> {
        let s = buf
            .get(*pos..*pos + n)
            .ok_or(Error::Malformed("truncated packet"))?;
        *pos += n;
        Ok(s)
    };
    let ctb = take(pos, 1)?[0];
    if ctb & 0x80 == 0 {
        return Err(Error::Malformed("not a packet header"));
    }
    if ctb & 0x40 == 0 {
        // Old format.
        let tag = (ctb >> 2) & 0x0F;
        let len = match ctb & 3 {
            0 => usize::from(take(pos, 1)?[0]),
            1 => usize::from(u16::from_be_bytes([take(pos, 1)?[0], take(pos, 1)?[0]])),
            2 => {
                let b = take(pos, 4)?;
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
            }
            _ => buf.len() - *pos,
        };
        return Ok((tag, take(pos, len)?.to_vec()));
    }
    let tag = ctb & 0x3F;
    let mut body = Vec::new();
    loop {
        let b0 = usize::from(take(pos, 1)?[0]);
        let (len, partial) = match b0 {
            0..=191 => (b0, false),
            192..=223 => (
                ((b0 - 192) << 8) + usize::from(take(pos, 1)?[0]) + 192,
                false,
            ),
            224..=254 => (1usize << (b0 & 0x1F), true),
            _ => {
                let b = take(pos, 4)?;
                (u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, false)
            }
        };
        body.extend_from_slice(buf.get(*pos..*pos + len).ok_or(short.clone())?);
        *pos += len;
        if !partial {
            return Ok((tag, body));
        }
    }
}

/// A symmetric-key encrypted session key packet, version 4.
#[derive(Debug, Clone)]
pub(crate) struct Skesk {
    pub(crate) algo: u8,
    pub(crate) s2k: S2k,
    esk: Option<Vec<u8>>,
}

impl Skesk {
    /// Derives the session key (algorithm, key) from `password`.
    pub(crate) fn session_key(&self, kek: &[u8]) -> Result<(u8, Zeroizing<Vec<u8>>), Error> {
        match &self.esk {
            None => Ok((self.algo, Zeroizing::new(kek.to_vec()))),
            Some(esk) => {
                let mut plain = Zeroizing::new(esk.clone());
                cfb(self.algo, kek, &mut plain, false)?;
                let (&algo, key) = plain.split_first().ok_or(Error::WrongSecret)?;
                if key_len(algo).ok() != Some(key.len()) {
                    return Err(Error::WrongSecret);
                }
                Ok((algo, Zeroizing::new(key.to_vec())))
            }
        }
    }

    /// The key-encryption key length for this packet.
    pub(crate) fn kek_len(&self) -> Result<usize, Error> {
        key_len(self.algo)
    }
}

/// The top level of a password-encrypted message.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) skesks: Vec<Skesk>,
    seipd: Vec<u8>,
}

/// Splits `buf` into SKESK v4 packets and one SEIPD v1 packet.
pub(crate) fn parse(buf: &[u8]) -> Result<Message, Error> {
    let mut pos = 0;
    let mut skesks = Vec::new();
    let mut seipd = None;
    while pos < buf.len() {
        let (tag, body) = read_packet(buf, &mut pos)?;
        match tag {
            TAG_MARKER => {}
            TAG_SKESK => {
                let (&version, rest) = body.split_first().ok_or(Error::Malformed("empty SKESK"))?;
                if version != 4 {
                    return Err(Error::Unsupported("SKESK version"));
                }
                let (&algo, rest) = rest.split_first().ok_or(Error::Malformed("short SKESK"))?;
                let (s2k, used) = S2k::parse(rest)?;
                let esk = rest
                    .get(used..)
                    .filter(|e| !e.is_empty())
                    .map(<[u8]>::to_vec);
                skesks.push(Skesk { algo, s2k, esk });
            }
            TAG_SEIPD if seipd.is_none() => match body.first() {
                Some(1) => seipd = Some(body[1..].to_vec()),
                Some(_) => return Err(Error::Unsupported("SEIPD version")),
                None => return Err(Error::Malformed("empty SEIPD")),
            },
            1 => return Err(Error::Unsupported("public-key encrypted session key")),
            9 | 20 => return Err(Error::Unsupported("unprotected or AEAD data packet")),
            _ => return Err(Error::Malformed("unexpected packet")),
        }
    }
    if skesks.is_empty() {
        return Err(Error::Malformed("no symmetric-key session key packet"));
    }
    let seipd = seipd.ok_or(Error::Malformed("no encrypted data packet"))?;
    Ok(Message { skesks, seipd })
}

/// What decrypting the SEIPD packet gave.
pub(crate) enum Plain {
    /// The literal data.
    Literal(Vec<u8>),
    /// A session key that works, but the content is not a bare literal packet
    /// (compressed, signed): sequoia reads it with this key.
    Other,
}

impl Message {
    /// Decrypts the data packet with a session key.
    pub(crate) fn decrypt(&self, algo: u8, key: &[u8]) -> Result<Plain, Error> {
        if key_len(algo)? != key.len() {
            return Err(Error::WrongSecret);
        }
        let bs = BLOCK;
        if self.seipd.len() < bs + 2 + 22 {
            return Err(Error::Malformed("short SEIPD"));
        }
        let mut data = Zeroizing::new(self.seipd.clone());
        cfb(algo, key, &mut data, false)?;
        if data[bs - 2..bs] != data[bs..bs + 2] {
            return Err(Error::WrongSecret);
        }
        let (covered, mdc) = data.split_at(data.len() - 20);
        if covered[covered.len() - 2..] != [0xC0 | TAG_MDC, 20] {
            return Err(Error::Tampered);
        }
        if Sha1::digest(covered).as_slice() != mdc {
            return Err(Error::Tampered);
        }
        let inner = &covered[bs + 2..covered.len() - 2];
        let mut pos = 0;
        let (tag, body) = read_packet(inner, &mut pos).map_err(|_| Error::Tampered)?;
        match tag {
            TAG_LITERAL if pos == inner.len() => {
                let name_len = usize::from(*body.get(1).ok_or(Error::Malformed("short literal"))?);
                let start = 2 + name_len + 4;
                let data = body.get(start..).ok_or(Error::Malformed("short literal"))?;
                Ok(Plain::Literal(data.to_vec()))
            }
            TAG_COMPRESSED | 4 | 2 => Ok(Plain::Other),
            _ => Err(Error::Unsupported("content of encrypted data")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn open(msg: &[u8], pw: &[u8]) -> Result<Vec<u8>, Error> {
        let m = parse(msg)?;
        let s = &m.skesks[0];
        let kek = s.s2k.derive(pw, s.kek_len()?)?;
        let (algo, key) = s.session_key(&kek)?;
        match m.decrypt(algo, &key)? {
            Plain::Literal(d) => Ok(d),
            Plain::Other => Err(Error::Unsupported("test")),
        }
    }

    #[test]
    fn round_trip_and_failures() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let msg = encrypt(b"secret-secret-secret-secret-1234", b"hello", &mut rng);
        assert_eq!(
            open(&msg, b"secret-secret-secret-secret-1234").as_deref(),
            Ok(&b"hello"[..])
        );
        assert_eq!(open(&msg, b"wrong"), Err(Error::WrongSecret));
        let mut bad = msg.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert_eq!(
            open(&bad, b"secret-secret-secret-secret-1234"),
            Err(Error::Tampered)
        );
        assert!(matches!(
            open(&msg[..msg.len() - 5], b"x"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(open(&[], b"x"), Err(Error::Malformed(_))));
    }

    #[test]
    fn long_payload_uses_long_lengths() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let data = vec![b'x'; 10_000];
        let msg = encrypt(b"pw", &data, &mut rng);
        assert_eq!(open(&msg, b"pw").expect("opens"), data);
    }

    #[test]
    fn iterated_s2k_matches_rfc_counts() {
        // Coded count 0x60 = 65536 bytes; the derivation must equal hashing the
        // salt||password repetition of exactly that many bytes.
        let s2k = S2k {
            hash: HASH_SHA256,
            salt: Some([1; 8]),
            count: Some(65536),
        };
        let key = s2k.derive(b"pw", 32).expect("derives");
        let mut input = Vec::new();
        while input.len() < 65536 {
            input.extend_from_slice(&[1u8; 8]);
            input.extend_from_slice(b"pw");
        }
        input.truncate(65536);
        assert_eq!(key.as_slice(), Sha256::digest(&input).as_slice());
        let (parsed, used) = S2k::parse(&[3, 8, 1, 1, 1, 1, 1, 1, 1, 1, 0x60]).expect("parses");
        assert_eq!((parsed, used), (s2k, 11));
    }
}
