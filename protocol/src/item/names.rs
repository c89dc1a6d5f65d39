//! The names people give contacts and groups: how kith stores them
//! ([`clean_name`]), which ones show nothing ([`is_blank`]) and which ones look the
//! same to a person ([`lookalike`]).

/// A name as people mean it: trimmed, in Unicode NFC (how kith stores the names
/// users type for contacts and groups).
pub fn clean_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect()
}

/// What two names that look the same have in common: the name in Unicode NFC,
/// full-width letters and digits as the usual ones, without invisible characters
/// ([`is_invisible`]), its runs of white space as one space and none around it,
/// lower case (a final sigma as any sigma). Only commands compare names this way:
/// it decides which group a name a person types means, never how devices merge.
pub fn lookalike(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in name.nfc() {
        // Full-width forms of ASCII (U+FF01..U+FF5E) as ASCII.
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        };
        if is_invisible(c) {
            continue;
        }
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if std::mem::take(&mut space) {
            out.push(' ');
        }
        out.extend(c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l }));
    }
    out
}

/// Whether a name shows nothing: only white space, invisible characters
/// ([`is_invisible`]), joiners, tag characters, fillers and the blank Braille
/// pattern, and other format characters.
pub fn is_blank(name: &str) -> bool {
    name.chars().all(|c| {
        c.is_whitespace()
            || is_invisible(c)
            || matches!(
                c,
                '\u{0600}'..='\u{0605}'
                    | '\u{06DD}'
                    | '\u{070F}'
                    | '\u{115F}'
                    | '\u{1160}'
                    | '\u{17B4}'
                    | '\u{17B5}'
                    | '\u{200C}'
                    | '\u{200D}'
                    | '\u{2800}'
                    | '\u{3164}'
                    | '\u{FFA0}'
                    | '\u{FFF9}'..='\u{FFFB}'
                    | '\u{1BCA0}'..='\u{1BCA3}'
                    | '\u{1D173}'..='\u{1D17A}'
                    | '\u{E0000}'..='\u{E0FFF}'
            )
    })
}

/// Characters that show nothing in a name: zero-width spaces, the soft hyphen,
/// word joiners, direction marks and embeddings, variation selectors and the
/// byte-order mark. Not the joiners that change how a word or an emoji sequence
/// looks (U+200C, U+200D), nor tag characters (which make flags).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_the_same_are_lookalikes() {
        let work = lookalike("Work");
        for same in [
            "work",
            " WORK ",
            "\u{FF37}\u{FF4F}\u{FF52}\u{FF4B}",
            "wo\u{200B}rk",
            "\u{FEFF}Work\u{00AD}",
        ] {
            assert_eq!(lookalike(same), work, "{same:?}");
        }
        assert_eq!(lookalike("Work  Team"), lookalike(" work\tteam"));
        assert_ne!(lookalike("Work Team"), lookalike("WorkTeam"));
        assert_eq!(lookalike("Cafe\u{301}"), lookalike("CAFÉ"));
        assert_eq!(lookalike("ΟΔΟΣ"), lookalike("Οδος"));
        assert_eq!(lookalike("Work\u{200E}"), work);
        // What shows otherwise stays apart: a superscript, a non-joiner, a flag.
        assert_ne!(lookalike("Floor 2"), lookalike("Floor \u{B2}"));
        assert_ne!(
            lookalike("\u{645}\u{6CC}\u{200C}\u{62E}"),
            lookalike("\u{645}\u{6CC}\u{62E}")
        );
        assert_ne!(
            lookalike("\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}"),
            lookalike("\u{1F3F4}")
        );
        // The joiner of an emoji sequence is kept: the family is not three people.
        assert_ne!(
            lookalike("\u{1F468}\u{200D}\u{1F469}"),
            lookalike("\u{1F468}\u{1F469}")
        );
        assert!(is_blank("") && is_blank(" \u{200B}\t\u{FEFF}\u{200D}\u{200F}"));
        for blank in [
            "\u{200C}",
            "\u{E0041}",
            "\u{3164}",
            "\u{115F}",
            "\u{FFA0}",
            "\u{2800}",
            "\u{1D173}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        assert!(!is_blank("\u{200B}a"));
    }
}
