//! Pairing: the one-time invite code and the two messages a joining device sends.
//!
//! Pairing has a listener of its own (a second libp2p swarm with the same identity on
//! another port, open only while an invitation is), so a stranger let in to pair
//! never shares a connection with gossip or reconciliation.
//!
//! `kith pair invite` prints a code: `kith1-` then base64url of
//! `[version 1][secret: 16][expires: u64 BE, Unix ms][peer id: u8 len + bytes]
//! [address count: u8][per address: u16 BE len + multiaddr bytes]`. The inviting node
//! stores only the SHA-256 of the secret, with the expiry and whether it was used.
//!
//! The joining device dials an address of the code, checks the peer is the one the
//! code names (Noise authenticates it), and sends over `/kith/pair/1`:
//!
//! 1. `Hello { secret }` → `Account { jid, genesis }`: which account it joins, so that
//!    it can make its OpenPGP certificate for `xmpp:<jid>`;
//! 2. `Join { secret, entry }` → `Welcome { roster }`: its roster entry (device key,
//!    certificate, name). The inviter checks the entry's device is the connected peer,
//!    marks the invite used, adds the device to the roster, signcrypts every secret
//!    to it, and answers with the roster's signed records, which the new device
//!    checks and stores before it first runs.
//!
//! The secret travels inside the Noise channel to the authenticated inviter only.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of invite codes.
pub const PREFIX: &str = "kith1-";
/// Most addresses a code carries.
pub const MAX_ADDRS: usize = 8;

/// Why an invite code is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// It does not decode.
    #[error("malformed invite code: {0}")]
    Malformed(&'static str),
    /// Its time is over.
    #[error("the invite code expired (ask for a new one with `kith pair invite`)")]
    Expired,
}

/// A decoded invite code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// The one-time secret.
    pub secret: [u8; 16],
    /// Unix milliseconds after which it is refused.
    pub expires_ms: u64,
    /// The inviting device.
    pub peer: PeerId,
    /// Where to reach it.
    pub addrs: Vec<Multiaddr>,
}

impl Code {
    /// The code as text.
    pub fn encode(&self) -> String {
        let mut b = vec![1u8];
        b.extend_from_slice(&self.secret);
        b.extend_from_slice(&self.expires_ms.to_be_bytes());
        let peer = self.peer.to_bytes();
        b.push(peer.len() as u8);
        b.extend_from_slice(&peer);
        let addrs: Vec<Vec<u8>> = self
            .addrs
            .iter()
            .take(MAX_ADDRS)
            .map(|a| a.to_vec())
            .collect();
        b.push(addrs.len() as u8);
        for a in addrs {
            b.extend_from_slice(&(a.len() as u16).to_be_bytes());
            b.extend_from_slice(&a);
        }
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(b))
    }

    /// Reads a code; checks its expiry against `now_ms`.
    pub fn decode(text: &str, now_ms: u64) -> Result<Self, CodeError> {
        let body = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(CodeError::Malformed("it does not start with kith1-"))?;
        if body.len() > 4096 {
            return Err(CodeError::Malformed("too long"));
        }
        let b = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| CodeError::Malformed("not base64url"))?;
        let mut r = Reader(&b);
        if r.take(1)? != [1] {
            return Err(CodeError::Malformed("unknown version"));
        }
        let secret: [u8; 16] = r
            .take(16)?
            .try_into()
            .map_err(|_| CodeError::Malformed("secret"))?;
        let expires_ms = u64::from_be_bytes(
            r.take(8)?
                .try_into()
                .map_err(|_| CodeError::Malformed("expiry"))?,
        );
        let n = r.take(1)?[0] as usize;
        let peer = PeerId::from_bytes(r.take(n)?).map_err(|_| CodeError::Malformed("peer id"))?;
        let count = r.take(1)?[0] as usize;
        if count == 0 || count > MAX_ADDRS {
            return Err(CodeError::Malformed("address count"));
        }
        let mut addrs = Vec::new();
        for _ in 0..count {
            let l = r.take(2)?;
            let len = u16::from_be_bytes([l[0], l[1]]) as usize;
            addrs.push(
                Multiaddr::try_from(r.take(len)?.to_vec())
                    .map_err(|_| CodeError::Malformed("address"))?,
            );
        }
        if !r.0.is_empty() {
            return Err(CodeError::Malformed("trailing bytes"));
        }
        if expires_ms <= now_ms {
            return Err(CodeError::Expired);
        }
        Ok(Self {
            secret,
            expires_ms,
            peer,
            addrs,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodeError> {
        let (a, b) = self
            .0
            .split_at_checked(n)
            .ok_or(CodeError::Malformed("truncated"))?;
        self.0 = b;
        Ok(a)
    }
}

/// SHA-256 of an invite secret: what the inviting node stores.
pub fn secret_hash(secret: &[u8; 16]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"kith invite\0")
        .chain_update(secret)
        .finalize()
        .into()
}

/// What a joining device sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Asks which account the invite is for.
    Hello {
        /// The invite secret, base64url.
        secret: String,
    },
    /// Asks to be added to the roster.
    Join {
        /// The invite secret, base64url.
        secret: String,
        /// `roster::Entry::encode`, base64url.
        entry: String,
    },
}

/// What the inviting device answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The account and its roster's genesis device (base64url).
    Account {
        /// Bare JID.
        jid: String,
        /// Genesis device id.
        genesis: String,
    },
    /// The device was added; here is the roster (every `Space::Roster` record,
    /// `Record::encode`, base64url), so that it knows its sibling devices at once.
    Welcome {
        /// The roster records.
        roster: Vec<String>,
        /// Where the inviting device's node listens (multiaddrs).
        addrs: Vec<String>,
    },
    /// The request was refused.
    Refused(String),
}

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads base64url of at most `max` bytes.
pub fn unb64(text: &str, max: usize) -> Option<Vec<u8>> {
    if text.len() > max.div_ceil(3) * 4 + 4 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> Code {
        Code {
            secret: [3; 16],
            expires_ms: 2_000,
            peer: PeerId::random(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
        }
    }

    #[test]
    fn codes_round_trip_and_expire() {
        let c = code();
        assert_eq!(Code::decode(&c.encode(), 1_000), Ok(c.clone()));
        assert_eq!(Code::decode(&c.encode(), 2_000), Err(CodeError::Expired));
    }

    #[test]
    fn malformed_codes_are_refused_without_panicking() {
        let good = code().encode();
        for bad in [
            "",
            "kith1-",
            "hello",
            "kith1-!!!!",
            &good[..good.len() - 3],
            &format!("{good}AA"),
        ] {
            assert!(
                matches!(Code::decode(bad, 0), Err(CodeError::Malformed(_))),
                "{bad:?}"
            );
        }
        // Every truncation and every single-byte change of the payload.
        let body = URL_SAFE_NO_PAD.decode(&good[PREFIX.len()..]).unwrap();
        for n in 0..body.len() {
            let _ = Code::decode(&format!("{PREFIX}{}", b64(&body[..n])), 0);
            let mut m = body.clone();
            m[n] ^= 0xA5;
            let _ = Code::decode(&format!("{PREFIX}{}", b64(&m)), 0);
        }
    }

    #[test]
    fn messages_are_plain_json() {
        let r = Request::Hello { secret: "x".into() };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"hello":{"secret":"x"}}"#);
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
    }

    proptest::proptest! {
        /// Codes round-trip; any text is either a code or a typed error.
        #[test]
        fn codes_round_trip(secret in proptest::array::uniform16(0u8..), expires in 1u64.., port in 1u16..) {
            let c = Code {
                secret,
                expires_ms: expires,
                peer: PeerId::random(),
                addrs: vec![format!("/ip4/10.0.0.1/tcp/{port}").parse().unwrap()],
            };
            proptest::prop_assert_eq!(Code::decode(&c.encode(), 0), Ok(c));
        }

        #[test]
        fn any_text_decodes_or_errs(text in "kith1-[A-Za-z0-9_-]{0,200}") {
            let _ = Code::decode(&text, 0);
        }
    }
}
