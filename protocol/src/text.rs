//! How names are shown on one line (tables, logs, the history, the CLI's messages):
//! the characters that would break a line or turn the direction of the rest of it,
//! and a name in quotes with only those escaped.

/// Whether `c` would break a line (a control character) or change the direction of
/// the text after it (an embedding, override or isolate, or a direction mark): in a
/// name from another device, one could make a line read in another order than it is
/// written.
pub fn breaks_line(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing and mean nothing in a name, so two names that
/// differ by one look the same: zero-width spaces, the soft hyphen, word joiners,
/// the byte-order mark and Hangul fillers (not the joiners of words and emoji).
fn hides(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{115F}' | '\u{1160}' | '\u{200B}' | '\u{2060}'
            ..='\u{2064}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}'
    )
}

/// `text` in double quotes as people write it: a quote and a backslash are escaped,
/// and so is what [`breaks_line`] or hides (as `\u{…}`); letters, marks and emoji
/// stay as they are.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if breaks_line(c) || hides(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
        assert!(breaks_line('\t') && breaks_line('\u{2067}') && !breaks_line('é'));
    }
}
