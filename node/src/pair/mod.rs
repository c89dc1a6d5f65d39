//! Pairing: the invite code, the inviting device's open invitations, and the
//! messages a joining device exchanges with it.
//!
//! Pairing has a listener of its own (a second libp2p swarm, with an identity of its
//! own new at every start, on another port, which lets strangers in only while an invitation is open or ended
//! less than [`invitations::REUSE_WINDOW_MS`] ago), so a stranger let in to pair
//! never shares a connection with gossip or reconciliation.
//!
//! `kith pair invite` opens an invitation in the running node's memory (never on
//! disk: a restart of the node cancels it) and prints its [`code::Code`]. While it is
//! open the node's mDNS advertisement lists its nameplate (`kith.invite`) and the
//! pairing port (`kith.pair`). The joining device finds the inviter there, or at
//! the addresses the code carries after `@`, and sends over `/kith/pair/2`:
//!
//! 1. `Start { nameplate, spake }` → `Spake { spake }`: SPAKE2 (Ed25519 group) with
//!    the code as password and both libp2p peer ids as identities, so a device in
//!    the middle of the connection gets a different key;
//! 2. `Confirm { mac }` → `Account { jid, genesis, mac }`: each side proves it holds
//!    the same key (HMAC-SHA-256 of a role label). The inviter checks first, and a
//!    wrong proof costs one of the invitation's tries; only then does it name the
//!    account, and the joiner checks the inviter's proof before trusting it;
//! 3. `Join { entry }` → `Welcome { roster, addrs, device, name }`: its roster entry
//!    (device key, certificate, name). The inviter checks the entry's device is the
//!    connected peer, ends the invitation, adds the device to the roster (its name
//!    numbered if another device has it), signcrypts every secret to it, and answers
//!    with the roster's signed records, which the new device checks and stores before
//!    it first runs, and with its own device id.
//!
//! The pairing listener's libp2p identity is not the device's: it is new at every
//! start of the node, so the advertised pairing port does not name the device.
//!
//! The code's password never travels; an attacker gets one guess per try and an
//! invitation takes three wrong ones before it closes. Every refusal is a typed
//! [`Refusal`].

pub mod answer;
pub mod code;
pub mod invitations;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use answer::Outcome;
pub use code::Code;

/// What a joining device sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Starts SPAKE2 for the invitation with this nameplate.
    Start {
        /// The code's nameplate.
        nameplate: String,
        /// The joiner's SPAKE2 message, base64url.
        spake: String,
    },
    /// Proves the joiner holds the key (HMAC of [`JOINER`]), base64url.
    Confirm {
        /// The proof.
        mac: String,
    },
    /// Asks to be added to the roster.
    Join {
        /// `roster::Entry::encode`, base64url.
        entry: String,
    },
}

/// What the inviting device answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The inviter's SPAKE2 message, base64url.
    Spake {
        /// The message.
        spake: String,
    },
    /// The joiner's proof held: the account, its roster's genesis device (base64url),
    /// and the inviter's own proof (HMAC of [`INVITER`], base64url).
    Account {
        /// Bare JID.
        jid: String,
        /// Genesis device id.
        genesis: String,
        /// The inviter's proof.
        mac: String,
    },
    /// The device was added; here is the roster (every `Space::Roster` record,
    /// `Record::encode`, base64url), so that it knows its sibling devices at once.
    Welcome {
        /// The roster records.
        roster: Vec<String>,
        /// Where the inviting device's node listens (multiaddrs).
        addrs: Vec<String>,
        /// The inviting device (base64url of its 32-byte key): the pairing
        /// listener's PeerId is not the device's.
        device: String,
        /// The name the roster gives the new device: the one it asked for, with a
        /// number added when another device of the account has it.
        name: String,
    },
    /// The request was refused.
    Refused(Refusal),
}

/// Why the inviting device refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// No invitation has this nameplate.
    #[error("it has no invitation with this code (check the code, or ask for a new one)")]
    NoSuchCode,
    /// A device joined with it already.
    #[error("this invite code was used already: ask for a new one")]
    Used,
    /// Another device that proved the code is joining with it right now.
    #[error("another device is joining with this code right now")]
    Joining,
    /// Its time is over.
    #[error("this invite code expired: ask for a new one")]
    Expired,
    /// The inviter cancelled it.
    #[error("this invitation was cancelled on the inviting device")]
    Cancelled,
    /// The proof did not hold: the code differs from the invitation's (the number
    /// of tries left).
    #[error(
        "the code is not the one the inviting device shows ({} before the invitation closes)",
        tries(*.0)
    )]
    WrongCode(u8),
    /// Too many wrong codes: the invitation closed.
    #[error("too many wrong codes: the invitation closed; ask for a new one")]
    Closed,
    /// The steps came out of order, or a message did not decode.
    #[error("the pairing request is malformed or out of order")]
    Malformed,
    /// Too many devices are pairing at once.
    #[error("the inviting device is busy with other pairings; try again in a minute")]
    Busy,
    /// The roster refused the device (a name too long, a revoked key…).
    #[error("{0}")]
    Roster(String),
}

fn tries(n: u8) -> String {
    if n == 1 {
        "1 more try".to_owned()
    } else {
        format!("{n} more tries")
    }
}

/// What the joiner's proof is an HMAC of.
pub const JOINER: &[u8] = b"kith pair joiner";
/// What the inviter's proof is an HMAC of.
pub const INVITER: &[u8] = b"kith pair inviter";

/// HMAC-SHA-256 of `label` under the SPAKE2 key.
pub fn proof(key: &[u8], label: &[u8]) -> [u8; 32] {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// Whether `given` is the proof of `label` under `key` (in constant time).
pub fn proves(key: &[u8], label: &[u8], given: &[u8]) -> bool {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.verify_slice(given).is_ok()
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

    #[test]
    fn messages_are_plain_json() {
        let r = Request::Confirm { mac: "x".into() };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"confirm":{"mac":"x"}}"#);
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        let refused = Response::Refused(Refusal::WrongCode(2));
        let j = serde_json::to_string(&refused).unwrap();
        assert_eq!(j, r#"{"refused":{"wrong_code":2}}"#);
        assert_eq!(serde_json::from_str::<Response>(&j).unwrap(), refused);
    }

    #[test]
    fn proofs_hold_only_for_their_key_and_label() {
        let p = proof(b"key", JOINER);
        assert!(proves(b"key", JOINER, &p));
        assert!(!proves(b"key", INVITER, &p));
        assert!(!proves(b"other", JOINER, &p));
        assert!(!proves(b"key", JOINER, &p[..31]));
    }
}
