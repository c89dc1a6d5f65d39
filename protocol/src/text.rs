//! How names are shown on one line (tables, logs, the history, the CLI's messages):
//! the characters that would break a line or turn the direction of the rest of it,
//! those that hide in a name, and a name in quotes or in a table with only those
//! escaped.

use std::borrow::Cow;

use crate::item::names::is_ignorable;

/// Whether `c` would break a line (a control character, a line or paragraph
/// separator) or change the direction of the text after it (an embedding,
/// override or isolate, or a direction mark): in a name from another device, one
/// could make a line read in another order than it is written.
pub fn breaks_line(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `c`, after the character `base`, shows nothing and means nothing in a
/// name, so two names that differ by it look the same: the characters Unicode
/// marks as ignorable (zero-width spaces, the soft hyphen, fillers, tags, …), the
/// blank Braille pattern and format characters. Not a joiner, variation selector
/// or tag where it shapes the character before it ([`shaped_by`]: an emoji
/// sequence, a flag, a word in a script whose letters join), which shows as part
/// of it.
fn hides(c: char, base: Option<char>) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let hidden =
        is_ignorable(c) || c == '\u{2800}' || c.general_category() == GeneralCategory::Format;
    hidden && !base.is_some_and(|b| shaped_by(b, c))
}

/// Whether `c` may shape `base`, the last letter or symbol before it: a joiner
/// in a script whose letters join or combine (Hebrew to the scripts of South-East
/// Asia and Mongolian) or between emoji; an emoji's presentation selector (the
/// keycap digits, © and ® among them); a tag after the black flag (a
/// subdivision's flag); an ideographic variation selector after a CJK ideograph.
/// Joiners and selectors after Latin, Greek, Cyrillic or Armenian letters change
/// nothing a reader sees.
fn shaped_by(base: char, c: char) -> bool {
    let emoji = |b: u32| {
        matches!(
            b,
            0x23 | 0x2A
                | 0x30..=0x39
                | 0xA9
                | 0xAE
                | 0x203C
                | 0x2049
                | 0x2122
                | 0x2139
                | 0x2194..=0x2BFF
                | 0x3030
                | 0x303D
                | 0x3297
                | 0x3299
                | 0x1F000..=0x1FAFF
        )
    };
    let joining = |b: u32| matches!(b, 0x0590..=0x1CFF | 0xA800..=0xABFF | 0x10800..=0x11FFF);
    let ideograph = |b: u32| matches!(b, 0x3400..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF);
    let b = u32::from(base);
    match c {
        '\u{200c}' => joining(b),
        '\u{200d}' => joining(b) || emoji(b),
        '\u{fe0e}' | '\u{fe0f}' => emoji(b),
        '\u{e0020}'..='\u{e007f}' => b == 0x1F3F4,
        '\u{e0100}'..='\u{e01ef}' => ideograph(b),
        _ => false,
    }
}

/// Whether `c` stands for what a joiner or selector after it shapes: a letter or
/// symbol, not a mark (which goes with the letter before it), nor a joiner,
/// selector or tag itself, nor what hides.
fn is_base(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    !(is_ignorable(c)
        || c.general_category() == GeneralCategory::Format
        || matches!(
            c.general_category(),
            GeneralCategory::NonspacingMark
                | GeneralCategory::SpacingMark
                | GeneralCategory::EnclosingMark
        ))
}

/// `text` with what would break a line or hide ([`breaks_line`], [`hides`])
/// escaped by `escape`, and, when `quote`, a quote and a backslash escaped.
fn escaped(text: &str, quote: bool, escape: fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    let mut base = None;
    for c in text.chars() {
        match c {
            '"' | '\\' if quote => {
                out.push('\\');
                out.push(c);
            }
            c if breaks_line(c) || hides(c, base) => escape(c, &mut out),
            c => out.push(c),
        }
        if is_base(c) {
            base = Some(c);
        }
    }
    out
}

/// As Rust writes it: `\u{200b}`.
fn as_rust(c: char, out: &mut String) {
    out.extend(c.escape_unicode());
}

/// As an XML character reference: `&#x200B;`.
fn as_xml(c: char, out: &mut String) {
    out.push_str(&format!("&#x{:X};", u32::from(c)));
}

/// Whether `text` holds nothing that [`breaks_line`] or hides.
fn plain(text: &str) -> bool {
    let mut base = None;
    text.chars().all(|c| {
        let ok = !breaks_line(c) && !hides(c, base);
        if is_base(c) {
            base = Some(c);
        }
        ok
    })
}

/// `text` in double quotes as people write it: a quote and a backslash are escaped,
/// and so is what [`breaks_line`] or hides (as `\u{…}`); letters, marks and emoji
/// stay as they are.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", escaped(text, true, as_rust))
}

/// `text` as a table shows it: what [`breaks_line`] or hides escaped as `\u{…}`,
/// the rest as it is (unchanged, not copied, when nothing needs escaping).
pub fn unhidden(text: &str) -> Cow<'_, str> {
    if plain(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(escaped(text, false, as_rust))
    }
}

/// XML text as a terminal shows it: what [`breaks_line`] or hides as character
/// references (`&#x202E;`), the same XML to a reader. For XML that holds no such
/// character inside a name or a comment (what kith writes).
pub fn xml_unhidden(xml: &str) -> Cow<'_, str> {
    if plain(xml) {
        Cow::Borrowed(xml)
    } else {
        Cow::Owned(escaped(xml, false, as_xml))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_keep_what_people_write_and_escape_what_breaks_a_line() {
        assert_eq!(
            quoted("❤\u{fe0f} हिंदी 👨\u{200d}👩"),
            "\"❤\u{fe0f} हिंदी 👨\u{200d}👩\""
        );
        assert_eq!(quoted("a \"b\" \\"), "\"a \\\"b\\\" \\\\\"");
        assert_eq!(quoted("a\nb\u{202e}c"), "\"a\\u{a}b\\u{202e}c\"");
        assert_eq!(quoted("w\u{200b}ork"), "\"w\\u{200b}ork\"");
        // A joiner or tag after a Latin letter hides; after an emoji it shapes.
        assert_eq!(quoted("Wo\u{200c}rk"), "\"Wo\\u{200c}rk\"");
        assert_eq!(quoted("Work\u{e0041}"), "\"Work\\u{e0041}\"");
        let flag = "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}";
        assert_eq!(quoted(flag), format!("\"{flag}\""));
        assert_eq!(quoted("a\u{61c}b\u{2028}"), "\"a\\u{61c}b\\u{2028}\"");
        assert_eq!(quoted("\u{2800}x\u{206a}"), "\"\\u{2800}x\\u{206a}\"");
        // After a mark, the letter it sits on decides; Cyrillic takes no joiner.
        assert_eq!(quoted("e\u{301}\u{200d}"), "\"e\u{301}\\u{200d}\"");
        assert_eq!(quoted("Боб\u{200d}"), "\"Боб\\u{200d}\"");
        assert_eq!(quoted("a\u{200b}\u{200d}"), "\"a\\u{200b}\\u{200d}\"");
        // Emoji presentation, keycaps, a joining script, a subdivision flag.
        for kept in [
            "\u{a9}\u{fe0f}",
            "1\u{fe0f}\u{20e3}",
            "\u{1f3f3}\u{fe0f}\u{200d}\u{1f308}",
            "\u{915}\u{94d}\u{200d}\u{937}",
        ] {
            assert_eq!(quoted(kept), format!("\"{kept}\""));
        }
        assert_eq!(unhidden("Bob"), "Bob");
        assert!(matches!(unhidden("Bob"), Cow::Borrowed(_)));
        assert_eq!(unhidden("Bob\u{200b} \"x\""), "Bob\\u{200b} \"x\"");
        assert_eq!(
            xml_unhidden("<a b='x\u{202e}'>y\u{200b}</a>"),
            "<a b='x&#x202E;'>y&#x200B;</a>"
        );
        assert!(breaks_line('\t') && breaks_line('\u{2067}') && !breaks_line('é'));
    }
}
