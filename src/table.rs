//! Tables and times for people: columns aligned by display width (a CJK character
//! or most emoji take two cells of a terminal, a combining accent none), narrowed to
//! fit the terminal, and times said as "3 min ago".
//!
//! The width to fit is `COLUMNS` when set (so a script or a test can ask for one),
//! otherwise the terminal's when standard output is one; output to a pipe or a file
//! is never cut.

use unicode_width::UnicodeWidthStr;

/// Columns are separated by this many spaces.
const GAP: usize = 2;
/// A column narrowed to fit is never narrower than this (or its natural width).
const MIN_COLUMN: usize = 6;

/// A table: a header and rows of cells, printed aligned.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned right (numbers).
    right: Vec<bool>,
    /// Columns never narrowed (ids and fingerprints, which people copy whole).
    keep: Vec<bool>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            right: vec![false; header.len()],
            keep: vec![false; header.len()],
        }
    }

    /// Never narrows column `i` (an id a person copies must stay whole).
    pub(crate) fn keep(mut self, i: usize) -> Self {
        if let Some(k) = self.keep.get_mut(i) {
            *k = true;
        }
        self
    }

    /// Aligns column `i` right.
    pub(crate) fn right(mut self, i: usize) -> Self {
        if let Some(r) = self.right.get_mut(i) {
            *r = true;
        }
        self
    }

    /// Adds a row (missing cells are empty, extra ones dropped).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        let mut cells = cells;
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    /// The lines of the table, each at most `width` cells wide when that can be done
    /// by narrowing columns to [`MIN_COLUMN`]: the widest column gives way first, and
    /// a cell cut short ends with "…". No line ends with spaces.
    pub(crate) fn lines(&self, width: Option<usize>) -> Vec<String> {
        let n = self.header.len();
        let mut widths: Vec<usize> = (0..n)
            .map(|i| {
                std::iter::once(&self.header[i])
                    .chain(self.rows.iter().map(|r| &r[i]))
                    .map(|c| c.width())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        if let Some(limit) = width {
            let floor: Vec<usize> = widths
                .iter()
                .zip(&self.keep)
                .map(|(w, keep)| if *keep { *w } else { (*w).min(MIN_COLUMN) })
                .collect();
            let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * n.saturating_sub(1);
            while total(&widths) > limit {
                // The widest column that can still give way.
                let Some(i) = (0..n)
                    .filter(|&i| widths[i] > floor[i])
                    .max_by_key(|&i| (widths[i], std::cmp::Reverse(i)))
                else {
                    break;
                };
                widths[i] -= 1;
            }
        }
        std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|cells| {
                let mut line = String::new();
                for (i, cell) in cells.iter().enumerate() {
                    let text = fit(cell, widths[i]);
                    let pad = widths[i].saturating_sub(text.width());
                    if i > 0 {
                        line.push_str(&" ".repeat(GAP));
                    }
                    if self.right[i] {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&text);
                    } else {
                        line.push_str(&text);
                        line.push_str(&" ".repeat(pad));
                    }
                }
                line.truncate(line.trim_end_matches(' ').len());
                line
            })
            .collect()
    }
}

/// `text` cut to at most `width` cells, ending with "…" when cut. Widths are those
/// of the text as a whole (an emoji with its variation selector is two cells, not
/// the sum of its characters'); a mark that takes no cell stays with its letter.
fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    for c in text.chars() {
        let mut longer = out.clone();
        longer.push(c);
        if longer.width() + 1 > width {
            break;
        }
        out = longer;
    }
    out.push('…');
    out
}

/// The width output is to fit: `COLUMNS` when set to a number, otherwise the
/// terminal's when standard output is one, otherwise none.
pub(crate) fn output_width() -> Option<usize> {
    if let Some(n) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return Some(n);
    }
    let term = console::Term::stdout();
    term.is_term()
        .then(|| term.size_checked().map(|(_, cols)| usize::from(cols)))
        .flatten()
}

/// A moment (Unix ms) as a person says it, seen at `now_ms`: "just now", "5 min
/// ago", "3 h ago", "1 day ago", "2 days ago", then the date (in UTC, and said so);
/// a moment ahead of `now_ms` by more than a minute (another device's clock) is
/// given as its date and time in UTC.
pub(crate) fn ago(at_ms: u64, now_ms: u64) -> String {
    const MIN: u64 = 60_000;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    let iso = kith_protocol::clock::WallTime(at_ms).to_xep0082();
    if at_ms > now_ms.saturating_add(MIN) {
        return utc(at_ms);
    }
    match now_ms.saturating_sub(at_ms) {
        d if d < MIN => "just now".to_owned(),
        d if d < HOUR => format!("{} min ago", d / MIN),
        d if d < DAY => format!("{} h ago", d / HOUR),
        d if d < 2 * DAY => "1 day ago".to_owned(),
        d if d < 7 * DAY => format!("{} days ago", d / DAY),
        _ => format!("{} UTC", iso.get(..10).unwrap_or(&iso)),
    }
}

/// A moment (Unix ms) as its date and time in UTC, to the minute:
/// `2026-12-02 04:55 UTC`.
pub(crate) fn utc(at_ms: u64) -> String {
    let iso = kith_protocol::clock::WallTime(at_ms).to_xep0082();
    format!(
        "{} UTC",
        iso.get(..16).unwrap_or(&iso).replacen('T', " ", 1)
    )
}

/// An XEP-0082 time as the answers give it, in Unix ms (`None` for anything else).
pub(crate) fn ms_of(t: &str) -> Option<u64> {
    kith_protocol::clock::WallTime::parse_xep0082(t)
        .ok()
        .map(|t| t.0)
}

/// Now, in Unix ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut t = Table::new(&["NAME", "N", "JIDS"]).right(1);
        t.row(vec![
            "Juliet".into(),
            "1".into(),
            "juliet@capulet.lit".into(),
        ]);
        t.row(vec!["朱丽叶".into(), "12".into(), "zhu@capulet.lit".into()]);
        t.row(vec!["😀 Mercutio".into(), "3".into(), "-".into()]);
        t
    }

    #[test]
    fn columns_line_up_by_display_width() {
        let lines = table().lines(None);
        // Where the third column starts, in terminal cells, on every line.
        let starts: Vec<usize> = lines
            .iter()
            .map(|l| {
                let at = l.rfind("  ").expect("a gap") + 2;
                l[..at].width()
            })
            .collect();
        assert!(starts.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
        assert_eq!(lines[2], "朱丽叶       12  zhu@capulet.lit");
        assert_eq!(lines[1], "Juliet        1  juliet@capulet.lit");
        assert!(lines.iter().all(|l| !l.ends_with(' ')));
    }

    #[test]
    fn a_narrow_terminal_narrows_the_widest_column_first() {
        let lines = table().lines(Some(28));
        assert!(lines.iter().all(|l| l.width() <= 28), "{lines:#?}");
        assert_eq!(lines[1], "Juliet        1  juliet@cap…");
        // Too narrow for even the smallest columns: as narrow as they go.
        let lines = table().lines(Some(5));
        assert!(
            lines.iter().all(|l| l.width() <= 6 + 2 + 2 + 2 + 6),
            "{lines:#?}"
        );
    }

    #[test]
    fn cut_text_never_splits_a_wide_character() {
        assert_eq!(fit("朱丽叶", 4), "朱…");
        assert_eq!(fit("朱丽叶", 6), "朱丽叶");
        assert_eq!(fit("abc", 0), "");
        // An emoji with its variation selector is two cells: four of them are eight.
        let hearts = "❤\u{fe0f}".repeat(4);
        for w in 1..10 {
            assert!(fit(&hearts, w).width() <= w, "{w}: {:?}", fit(&hearts, w));
        }
    }

    #[test]
    fn a_kept_column_is_never_narrowed() {
        let mut t = Table::new(&["FINGERPRINT", "NAME"]).keep(0);
        t.row(vec![
            "0123456789ABCDEF0123456789ABCDEF01234567".into(),
            "a long name here".into(),
        ]);
        let lines = t.lines(Some(30));
        assert!(
            lines[1].starts_with("0123456789ABCDEF0123456789ABCDEF01234567  "),
            "{lines:#?}"
        );
    }

    #[test]
    fn times_are_said_as_people_say_them() {
        let now = 1_780_000_000_000;
        assert_eq!(ago(now - 5_000, now), "just now");
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now - 3 * 60_000, now), "3 min ago");
        assert_eq!(ago(now - 5 * 3_600_000, now), "5 h ago");
        assert_eq!(ago(now - 30 * 3_600_000, now), "1 day ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(ago(now - 30 * 86_400_000, now), "2026-04-28 UTC");
        assert_eq!(ago(now + 3_600_000, now), "2026-05-28 21:26 UTC");
    }
}
