//! Bare JIDs, normalised by RFC 7622, so that two spellings of one address compare
//! equal (this is what decides that two contact items are the same contact).
//!
//! * localpart: the PRECIS UsernameCaseMapped profile (RFC 8265, via
//!   `precis-profiles`), minus the characters RFC 7622 §3.3.1 forbids (`"&'/:<>@`);
//! * domainpart: IDNA2008/UTS-46 mapping to Unicode labels (lower case, NFC), a final
//!   dot dropped; an IP literal in brackets is kept, lower-cased;
//! * resourcepart: dropped (a contact is an account, not a connection);
//! * each part at most 1023 bytes.

use std::fmt;

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;

/// Largest part of a JID, in bytes (RFC 7622 §3.2–3.4).
pub const MAX_PART_BYTES: usize = 1023;

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Empty input or empty domain.
    #[error("JID {0:?} has no domain")]
    NoDomain(String),
    /// `@` with nothing before it.
    #[error("JID {0:?} has an empty localpart")]
    EmptyLocal(String),
    /// The localpart fails PRECIS or RFC 7622.
    #[error("JID {0:?} has an invalid localpart")]
    InvalidLocal(String),
    /// The domainpart fails IDNA.
    #[error("JID {0:?} has an invalid domain")]
    InvalidDomain(String),
    /// A part longer than [`MAX_PART_BYTES`].
    #[error("JID {0:?} has a part longer than 1023 bytes")]
    TooLong(String),
}

/// A normalised bare JID (`local@domain` or `domain`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BareJid {
    local: Option<String>,
    domain: String,
}

impl BareJid {
    /// Parses and normalises `input`; a resource, if any, is dropped.
    pub fn parse(input: &str) -> Result<Self, Error> {
        if let Some(fast) = Self::parse_plain_ascii(input) {
            return Ok(fast);
        }
        Self::parse_full(input)
    }

    /// The common case without the cost of PRECIS and IDNA: a plain ASCII address
    /// (letters, digits, `.`, `-`, `_` in the domain, no `xn--` label; localpart of
    /// printable ASCII without RFC 7622's forbidden characters), whose normal form is
    /// its lower case. `None` when the input is not that simple. A property test
    /// checks that this agrees with the full path.
    fn parse_plain_ascii(input: &str) -> Option<Self> {
        let bare = input.split_once('/').map_or(input, |(b, _)| b);
        let (local, domain) = match bare.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, bare),
        };
        let domain_ok = !domain.is_empty()
            && domain.len() <= MAX_PART_BYTES
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && !label
                        .get(..4)
                        .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        let local_ok = local.is_none_or(|l| {
            !l.is_empty()
                && l.len() <= MAX_PART_BYTES
                && l.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\"&'/:<>@".contains(&b))
        });
        (domain_ok && local_ok).then(|| Self {
            local: local.map(str::to_ascii_lowercase),
            domain: domain.to_ascii_lowercase(),
        })
    }

    fn parse_full(input: &str) -> Result<Self, Error> {
        let err_input = || truncate(input);
        let without_resource = input.split_once('/').map_or(input, |(b, _)| b);
        let (local, domain) = match without_resource.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, without_resource),
        };
        let local = match local {
            None => None,
            Some("") => return Err(Error::EmptyLocal(err_input())),
            Some(l) => {
                if l.len() > MAX_PART_BYTES {
                    return Err(Error::TooLong(err_input()));
                }
                let norm =
                    UsernameCaseMapped::enforce(l).map_err(|_| Error::InvalidLocal(err_input()))?;
                if norm.chars().any(|c| "\"&'/:<>@".contains(c)) {
                    return Err(Error::InvalidLocal(err_input()));
                }
                // The mapping must land on what the profile accepts as it is: case
                // mapping (newer Unicode) can yield characters the profile's tables
                // (older Unicode) refuse, such as Cherokee small letters (found by the
                // `jid` fuzz target). Such a name would not read back.
                if UsernameCaseMapped::enforce(&*norm).ok().as_deref() != Some(&*norm) {
                    return Err(Error::InvalidLocal(err_input()));
                }
                Some(norm.into_owned())
            }
        };
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() {
            return Err(Error::NoDomain(err_input()));
        }
        if domain.len() > MAX_PART_BYTES {
            return Err(Error::TooLong(err_input()));
        }
        let domain = if domain.starts_with('[') && domain.ends_with(']') {
            if !domain[1..domain.len() - 1]
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(Error::InvalidDomain(err_input()));
            }
            domain.to_ascii_lowercase()
        } else {
            if domain
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "@/[]".contains(c))
            {
                return Err(Error::InvalidDomain(err_input()));
            }
            let (unicode, result) = idna::domain_to_unicode(domain);
            // The mapping may itself bring in what a domain cannot hold (U+0384
            // becomes a space and a combining accent: found by the `jid` fuzz target).
            if result.is_err()
                || unicode.is_empty()
                || unicode.len() > MAX_PART_BYTES
                || unicode
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || "@/[]".contains(c))
            {
                return Err(Error::InvalidDomain(err_input()));
            }
            // A domain name's labels (RFC 7622 §3.2, RFC 5890): none empty, none
            // starting or ending with a hyphen, none over 63 bytes in ASCII form.
            let label_ok = |label: &str| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && idna::domain_to_ascii(label).is_ok_and(|a| a.len() <= 63)
            };
            if !unicode.split('.').all(label_ok) {
                return Err(Error::InvalidDomain(err_input()));
            }
            unicode
        };
        Ok(Self { local, domain })
    }

    /// The localpart, if any.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domainpart.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for BareJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.local {
            Some(l) => write!(f, "{l}@{}", self.domain),
            None => f.write_str(&self.domain),
        }
    }
}

impl std::str::FromStr for BareJid {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// At most 64 characters of untrusted input, for error messages.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        BareJid::parse(s).expect("valid JID").to_string()
    }

    #[test]
    fn normalises_case_width_resource_and_final_dot() {
        assert_eq!(n("Juliet@Capulet.LIT/balcony"), "juliet@capulet.lit");
        assert_eq!(n("capulet.lit."), "capulet.lit");
        assert_eq!(n("ＪＵＬＩＥＴ@capulet.lit"), "juliet@capulet.lit");
        assert_eq!(n("ΣΟΦΙΑ@ÉXAMPLE.com"), n("σοφια@éxample.com"));
        assert_eq!(n("user@xn--exmple-cua.com"), "user@exämple.com");
        assert_eq!(n("u@[::1]"), "u@[::1]");
    }

    proptest::proptest! {
        #[test]
        fn ascii_fast_path_agrees_with_full_normalisation(
            s in "[a-zA-Z0-9._%+!#$*=?^`{|}~-]{1,12}@[a-zA-Z0-9_-]{1,10}(\\.[a-zA-Z0-9_-]{1,6}){0,2}(/[a-z]{0,4})?"
        ) {
            if let Some(fast) = BareJid::parse_plain_ascii(&s) {
                proptest::prop_assert_eq!(Ok(fast), BareJid::parse_full(&s));
            }
        }
    }

    #[test]
    fn rejects_invalid_jids() {
        assert!(matches!(BareJid::parse(""), Err(Error::NoDomain(_))));
        assert!(matches!(
            BareJid::parse("@x.lit"),
            Err(Error::EmptyLocal(_))
        ));
        assert!(matches!(
            BareJid::parse("a b@x.lit"),
            Err(Error::InvalidLocal(_))
        ));
        assert!(matches!(
            BareJid::parse("a'b@x.lit"),
            Err(Error::InvalidLocal(_))
        ));
        assert!(matches!(
            BareJid::parse("a@x y.lit"),
            Err(Error::InvalidDomain(_))
        ));
        assert!(matches!(BareJid::parse("a@"), Err(Error::NoDomain(_))));
        // Empty labels and labels with a hyphen at either end are not domain names.
        for bad in [
            "x@.lit",
            "a@x..lit",
            "a@-.lit",
            "a@x-.lit",
            "a@-x.lit",
            "a@x.lit..",
            "a@.",
            ".lit",
            "a@ünï..lit",
            &format!("a@{}.lit", "b".repeat(64)),
        ] {
            assert!(
                matches!(
                    BareJid::parse(bad),
                    Err(Error::InvalidDomain(_) | Error::NoDomain(_))
                ),
                "{bad:?} is not a JID"
            );
        }
        assert_eq!(n("a@x-y.lit"), "a@x-y.lit");
        // Found by the `jid` fuzz target: a localpart whose lower case the PRECIS
        // tables refuse (Cherokee capital letter U+13F4).
        assert!(BareJid::parse("\u{63BF}p\u{3E63}\u{13F4}\u{3DB}eu@f").is_err());
        // Found by the `jid` fuzz target: IDNA maps U+0384 to a space and an accent.
        assert!(BareJid::parse("2\u{3a3}MPLE.\u{29f}\u{3a6}\u{384}AM\u{359}P`0").is_err());
        let long = format!("{}@x.lit", "a".repeat(1024));
        assert!(matches!(BareJid::parse(&long), Err(Error::TooLong(_))));
    }
}
