//! Invite codes: ten letters and digits a person can read aloud or type, with a
//! check that tells a typo from a wrong code.
//!
//! A code is 10 symbols of Crockford's base32 (`0-9`, `A-Z` without `I L O U`),
//! shown as `K7QX2-M9PDA`:
//!
//! * symbols 1–2, the *nameplate* (10 bits): which of the inviter's open
//!   invitations it is, and what the inviter's mDNS advertisement lists while it
//!   is open (it says nothing of the rest);
//! * symbols 3–8, the *password* (30 bits), never sent: both ends run SPAKE2 with the
//!   whole code, so someone who watches or answers one attempt learns nothing to
//!   test guesses against, and each online guess costs one of the invitation's
//!   three tries (see [`super::invitations`]);
//! * symbols 9–10, the *check*: `Σ (i+1)·vᵢ mod 1021` over the first eight values,
//!   as two symbols. 1021 is prime and larger than any change one symbol or one
//!   swap of neighbours can make, so every single wrong symbol and every swap of two
//!   different neighbours (the check symbols included) is caught as a typo.
//!
//! Reading is forgiving: case, spaces and dashes (any Unicode dash or space, and
//! zero-width spaces a copy may bring) are ignored, `O` reads as `0`, `I` and `L`
//! as `1`. A code may carry where to find the inviter after `@`: addresses
//! `IP:PORT` separated by commas (`[v6]:PORT` for IPv6), for when mDNS cannot see it
//! (another network, or mDNS off). Without them the joining device looks for the
//! nameplate on mDNS.

use std::fmt;
use std::net::SocketAddr;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a code.
pub const LEN: usize = 10;
/// Symbols of the nameplate.
pub const NAMEPLATE_LEN: usize = 2;
/// The check's modulus: a prime below 32².
const MODULUS: u32 = 1021;
/// Most addresses a code carries.
pub const MAX_ADDRS: usize = 4;
/// Longest code text read, bytes.
const MAX_TEXT: usize = 512;

/// Why a text is not an invite code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing given.
    #[error("the invite code is empty")]
    Empty,
    /// A code of an earlier kith (`kith1-…`).
    #[error(
        "this is an invite code of an earlier kith version: ask the inviting device for a new one (`kith pair invite`)"
    )]
    Old,
    /// Too few or too many symbols.
    #[error("an invite code has {LEN} letters and digits, like K7QX2-M9PDA; this one has {0}")]
    Length(usize),
    /// A character no code has.
    #[error("{0:?} is in no invite code (they use digits and the letters A-Z but U)")]
    Symbol(char),
    /// The check does not match: a symbol is wrong, or two are swapped.
    #[error(
        "the invite code has a typo: no code reads so. Compare it symbol by symbol with what the inviting device shows"
    )]
    Typo,
    /// What follows `@` is not a list of addresses.
    #[error("{0:?} after @ is not an address (IP:PORT, or [IPv6]:PORT)")]
    Address(String),
    /// Too long to be a code.
    #[error("that is too long to be an invite code")]
    TooLong,
}

/// A decoded invite code.
#[derive(Clone, PartialEq, Eq)]
pub struct Code {
    /// The eight data symbols: nameplate then password.
    symbols: [u8; LEN - 2],
    /// Where the inviter's pairing listener is, if the code says.
    pub addrs: Vec<Multiaddr>,
}

impl Drop for Code {
    // The password does not outlive the code in memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.symbols);
    }
}

impl fmt::Debug for Code {
    // The password stays out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Code")
            .field("nameplate", &self.nameplate())
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn check(values: &[u8; LEN - 2]) -> u32 {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32 + 1) * u32::from(*v))
        .sum::<u32>()
        % MODULUS
}

fn value(c: char) -> Result<u8, Error> {
    let c = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        c => c,
    };
    ALPHABET
        .iter()
        .position(|a| char::from(*a) == c)
        .map(|p| p as u8)
        .ok_or(Error::Symbol(c))
}

impl Code {
    /// A new random code (no addresses).
    pub fn random(rng: &mut impl rand::Rng) -> Self {
        let mut symbols = [0u8; LEN - 2];
        for s in &mut symbols {
            *s = rand::RngExt::random_range(rng, 0..32);
        }
        Self {
            symbols,
            addrs: Vec::new(),
        }
    }

    /// The nameplate, as text (`K7`).
    pub fn nameplate(&self) -> String {
        self.symbols[..NAMEPLATE_LEN]
            .iter()
            .map(|v| char::from(ALPHABET[usize::from(*v)]))
            .collect()
    }

    /// What both ends run SPAKE2 with: the eight data symbols, with a context.
    pub fn password(&self) -> Vec<u8> {
        let mut p = b"kith invite 2\0".to_vec();
        p.extend(self.symbols.iter().map(|v| ALPHABET[usize::from(*v)]));
        p
    }

    /// The code alone, as people read it: `K7QX2-M9PDA`.
    pub fn short(&self) -> String {
        let c = check(&self.symbols);
        let mut all: Vec<u8> = self.symbols.to_vec();
        all.push((c / 32) as u8);
        all.push((c % 32) as u8);
        let text: String = all
            .iter()
            .map(|v| char::from(ALPHABET[usize::from(*v)]))
            .collect();
        // Invariant: `text` is LEN (10) ASCII symbols.
        format!("{}-{}", &text[..5], &text[5..])
    }

    /// The code with its addresses (`K7QX2-M9PDA@192.168.1.5:41234`), or alone when
    /// it carries none. Addresses that are not IP and TCP are left out.
    pub fn long(&self) -> String {
        let addrs: Vec<String> = self
            .addrs
            .iter()
            .filter_map(socket_of)
            .take(MAX_ADDRS)
            .map(|a| a.to_string())
            .collect();
        if addrs.is_empty() {
            self.short()
        } else {
            format!("{}@{}", self.short(), addrs.join(","))
        }
    }

    /// This code carrying `addrs`.
    pub fn with_addrs(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.addrs = addrs
            .into_iter()
            .filter(|a| socket_of(a).is_some())
            .take(MAX_ADDRS)
            .collect();
        self
    }

    /// Reads a code, forgiving case, spaces, dashes and the look-alikes.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::Empty);
        }
        if text.len() > MAX_TEXT {
            return Err(Error::TooLong);
        }
        if text
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("kith1-"))
        {
            return Err(Error::Old);
        }
        let (code, addrs) = match text.split_once('@') {
            Some((c, a)) => (c, Some(a)),
            None => (text, None),
        };
        let mut values = Vec::with_capacity(LEN);
        for c in code.chars().filter(|c| !separator(*c)) {
            values.push(value(c)?);
        }
        if values.len() != LEN {
            return Err(Error::Length(values.len()));
        }
        let mut symbols = [0u8; LEN - 2];
        symbols.copy_from_slice(&values[..LEN - 2]);
        let given = u32::from(values[LEN - 2]) * 32 + u32::from(values[LEN - 1]);
        if given != check(&symbols) {
            return Err(Error::Typo);
        }
        let mut parsed = Vec::new();
        if let Some(addrs) = addrs {
            for a in addrs.split(',').map(str::trim) {
                let socket: SocketAddr = a.parse().map_err(|_| Error::Address(a.to_owned()))?;
                if parsed.len() < MAX_ADDRS {
                    parsed.push(multiaddr_of(socket));
                }
            }
        }
        Ok(Self {
            symbols,
            addrs: parsed,
        })
    }
}

/// Whether `c` only separates symbols: a dash of any kind, a space of any kind
/// (no-break ones too), a zero-width space.
fn separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '-' | '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{200b}' | '\u{2060}' | '\u{feff}'
        )
}

/// The nameplate a person names an invitation by: a whole code (checked), or its
/// first two symbols (read as forgivingly as a code).
pub fn nameplate_of(text: &str) -> Result<String, Error> {
    let symbols: Vec<char> = text.chars().filter(|c| !separator(*c)).collect();
    if symbols.len() > NAMEPLATE_LEN {
        return Code::parse(text).map(|c| c.nameplate());
    }
    if symbols.len() < NAMEPLATE_LEN {
        return Err(Error::Length(symbols.len()));
    }
    symbols
        .into_iter()
        .map(|c| value(c).map(|v| char::from(ALPHABET[usize::from(v)])))
        .collect()
}

/// `/ip4/…/tcp/…` (or `/ip6/`) of a socket address.
pub fn multiaddr_of(socket: SocketAddr) -> Multiaddr {
    Multiaddr::from(socket.ip()).with(Protocol::Tcp(socket.port()))
}

/// The socket address of an `/ip4|ip6/…/tcp/…` multiaddr.
pub fn socket_of(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match (parts.next()?, parts.next()) {
        (Protocol::Tcp(port), None) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_core::SeedableRng;

    fn code(seed: u64) -> Code {
        Code::random(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }

    #[test]
    fn codes_read_back_forgivingly() {
        let c = code(1);
        let short = c.short();
        assert_eq!(short.len(), 11);
        assert_eq!(Code::parse(&short), Ok(c.clone()));
        let sloppy = format!(
            "  {} ",
            short
                .to_lowercase()
                .replace('-', " ")
                .replace('0', "o")
                .replace('1', "l")
        );
        assert_eq!(Code::parse(&sloppy), Ok(c.clone()));
    }

    #[test]
    fn addresses_ride_after_the_at() {
        let c = code(2).with_addrs(vec![
            "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
            "/ip6/::1/tcp/4002".parse().unwrap(),
            "/ip4/127.0.0.1/udp/4003/quic-v1".parse().unwrap(),
        ]);
        assert_eq!(c.addrs.len(), 2, "only TCP addresses");
        let long = c.long();
        assert!(long.ends_with("@127.0.0.1:4001,[::1]:4002"), "{long}");
        assert_eq!(Code::parse(&long), Ok(c));
        assert_eq!(
            Code::parse(&format!("{}@nowhere", code(3).short())),
            Err(Error::Address("nowhere".into()))
        );
    }

    #[test]
    fn every_single_typo_of_some_codes_is_caught() {
        // Exhaustively, where the proptests sample: every position, every symbol,
        // every swap of neighbours, over a few codes.
        for seed in 0..8 {
            let short: Vec<char> = code(seed).short().replace('-', "").chars().collect();
            for at in 0..LEN {
                for to in ALPHABET.iter().map(|a| char::from(*a)) {
                    let mut bad = short.clone();
                    bad[at] = to;
                    if bad != short {
                        let text: String = bad.into_iter().collect();
                        assert_eq!(Code::parse(&text), Err(Error::Typo), "{text}");
                    }
                }
                if at + 1 < LEN && short[at] != short[at + 1] {
                    let mut bad = short.clone();
                    bad.swap(at, at + 1);
                    let text: String = bad.into_iter().collect();
                    assert_eq!(Code::parse(&text), Err(Error::Typo), "{text}");
                }
            }
        }
    }

    #[test]
    fn nameplates_read_like_codes() {
        let c = code(4);
        assert_eq!(nameplate_of(&c.short()), Ok(c.nameplate()));
        let plate = c
            .nameplate()
            .to_lowercase()
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(nameplate_of(&plate), Ok(c.nameplate()));
        assert_eq!(nameplate_of("K"), Err(Error::Length(1)));
        assert_eq!(nameplate_of("KU"), Err(Error::Symbol('U')));
        // Dashes and spaces of other kinds are separators too.
        let fancy = c.short().replace('-', "\u{2013}\u{a0}");
        assert_eq!(Code::parse(&fancy), Ok(c));
        assert_eq!(Code::parse("KITH1-abc"), Err(Error::Old));
    }

    #[test]
    fn what_is_no_code_says_why() {
        assert_eq!(Code::parse(" "), Err(Error::Empty));
        assert_eq!(Code::parse("kith1-AAAA"), Err(Error::Old));
        assert_eq!(Code::parse("K7QX2"), Err(Error::Length(5)));
        assert_eq!(Code::parse("K7QX2-M9PDU"), Err(Error::Symbol('U')));
        assert_eq!(Code::parse(&"A".repeat(600)), Err(Error::TooLong));
        // Messages name the rule, for people.
        assert!(Error::Typo.to_string().contains("typo"));
    }

    proptest! {
        /// Every single wrong symbol is a typo, never another valid code.
        #[test]
        fn one_wrong_symbol_is_a_typo(seed in any::<u64>(), at in 0..LEN, to in 0usize..32) {
            let short: Vec<char> = code(seed).short().replace('-', "").chars().collect();
            let mut bad = short.clone();
            bad[at] = char::from(ALPHABET[to]);
            prop_assume!(bad != short);
            let text: String = bad.into_iter().collect();
            prop_assert_eq!(Code::parse(&text), Err(Error::Typo));
        }

        /// Every swap of two different neighbours is a typo.
        #[test]
        fn swapped_neighbours_are_a_typo(seed in any::<u64>(), at in 0..LEN - 1) {
            let short: Vec<char> = code(seed).short().replace('-', "").chars().collect();
            let mut bad = short.clone();
            bad.swap(at, at + 1);
            prop_assume!(bad != short);
            let text: String = bad.into_iter().collect();
            prop_assert_eq!(Code::parse(&text), Err(Error::Typo));
        }

        /// Any text is a code or a typed error, never a panic.
        #[test]
        fn any_text_parses_or_errs(text in "\\PC{0,64}") {
            let _ = Code::parse(&text);
        }
    }
}
