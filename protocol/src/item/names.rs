//! The names people give contacts and groups: how kith stores them
//! ([`clean_name`]), which ones show nothing ([`is_blank`]) and which ones look the
//! same to a person ([`lookalike`]).

/// A name as people mean it: trimmed, in Unicode NFC (how kith stores the names
/// users type for contacts and groups).
pub fn clean_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect()
}

/// What two names that look the same have in common: the name without the
/// characters that show nothing of themselves ([`is_ignorable`]: zero-width
/// spaces and joiners, direction marks, variation selectors, tag characters,
/// fillers), full-width letters and digits as the usual ones, in Unicode NFC
/// (after the characters dropped, so `cafe` + zero-width space + an accent is
/// `café`), its runs of white space (and blank Braille patterns) as one space and
/// none around it, lower case (a final sigma as any sigma). Only commands compare
/// names this way: it decides which group a name a person types means, never how
/// devices merge. Names that differ only by a joiner (an emoji sequence and its
/// parts, a Persian word with and without its non-joiner) are look-alikes: two
/// groups that might read the same are one, rather than two that do.
pub fn lookalike(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let kept = name.chars().filter_map(|c| {
        // Full-width forms of ASCII (U+FF01..U+FF5E) as ASCII.
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        };
        (!is_ignorable(c)).then_some(c)
    });
    let mut out = String::with_capacity(name.len());
    let mut space = false;
    for c in kept.nfc() {
        if c.is_whitespace() || c == '\u{2800}' {
            space = !out.is_empty();
            continue;
        }
        if std::mem::take(&mut space) {
            out.push(' ');
        }
        out.extend(c.to_lowercase().map(|l| if l == 'ς' { 'σ' } else { l }));
    }
    // Lower case can take a character out of NFC (a few letters lower to a base
    // and a mark).
    if unicode_normalization::is_nfc(&out) {
        out
    } else {
        out.nfc().collect()
    }
}

/// Whether a name shows nothing: it has no character but white space, characters
/// that show nothing of themselves ([`is_ignorable`]), marks (which show only on
/// a letter before them: an accent alone), format characters and the blank
/// Braille pattern. (Not characters Unicode had not assigned when kith was built:
/// they may be the emoji of a later version.)
pub fn is_blank(name: &str) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    name.chars().all(|c| {
        c.is_whitespace()
            || c.is_control()
            || is_ignorable(c)
            || c == '\u{2800}'
            || matches!(
                c.general_category(),
                GeneralCategory::NonspacingMark
                    | GeneralCategory::SpacingMark
                    | GeneralCategory::EnclosingMark
                    | GeneralCategory::Format
            )
    })
}

/// Unicode's default-ignorable code points (`Default_Ignorable_Code_Point` in
/// `DerivedCoreProperties.txt`): characters that show nothing of themselves where
/// a font does not give them a use. The soft hyphen, the combining grapheme
/// joiner, the Arabic letter mark, the Hangul and half-width fillers, the Khmer
/// inherent vowels, the Mongolian variation selectors and vowel separator, the
/// zero-width space, non-joiner and joiner, direction marks, embeddings,
/// overrides and isolates, word joiners and invisible operators, the deprecated
/// format characters, variation selectors, the byte-order mark, the shorthand
/// format controls, the musical beam and slur controls, and the tag characters
/// (with the reserved code points of those blocks).
pub(crate) fn is_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
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
        // What shows otherwise stays apart: a superscript.
        assert_ne!(lookalike("Floor 2"), lookalike("Floor \u{B2}"));
        // Joiners, tags, variation selectors and the other default-ignorable
        // characters are dropped, wherever they are: a name they are part of may
        // read as one without them.
        for (one, other) in [
            ("Work", "Wo\u{200C}rk"),
            ("Work", "Work\u{E0041}"),
            ("Work", "Work\u{17B4}"),
            ("Work", "W\u{206A}ork"),
            ("Work", "Wo\u{1D173}rk"),
            ("\u{645}\u{6CC}\u{62E}", "\u{645}\u{6CC}\u{200C}\u{62E}"),
            (
                "\u{1F3F4}",
                "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}",
            ),
            ("\u{1F468}\u{1F469}", "\u{1F468}\u{200D}\u{1F469}"),
            ("\u{2764}", "\u{2764}\u{FE0F}"),
        ] {
            assert_eq!(lookalike(one), lookalike(other), "{one:?} {other:?}");
        }
        // Composed after what is dropped and widened: an accent a dropped
        // character kept from its letter still composes with it.
        for (one, other) in [
            ("caf\u{E8}", "cafe\u{200B}\u{300}"),
            ("caf\u{E8}", "cafe\u{AD}\u{300}"),
            ("caf\u{E9}", "\u{FF43}\u{FF41}\u{FF46}\u{FF45}\u{301}"),
            ("\u{F1}1", "n\u{3164}\u{303}1"),
            ("Wo rk", "Wo\u{2800}rk"),
        ] {
            assert_eq!(lookalike(one), lookalike(other), "{one:?} {other:?}");
        }
        assert!(is_blank("") && is_blank(" \u{200B}\t\u{FEFF}\u{200D}\u{200F}"));
        for blank in [
            "\u{200C}",
            "\u{E0041}",
            "\u{3164}",
            "\u{115F}",
            "\u{FFA0}",
            "\u{2800}",
            "\u{1D173}",
            // Marks alone: an accent on nothing, an enclosing circle, a vowel sign.
            "\u{301}",
            "\u{301}\u{301}",
            "\u{20DD}",
            "\u{903}",
            "\u{1E944}",
            // Format characters, deprecated ones.
            "\u{206A}",
            "\u{13430}",
            "\u{110BD}",
            "\u{890}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for shown in [
            "\u{200B}a",
            "e\u{301}",
            "\u{1F3FB}",
            "\u{E000}",
            "\u{2764}\u{FE0F}",
        ] {
            assert!(!is_blank(shown), "{shown:?}");
        }
    }
}
