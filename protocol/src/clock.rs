//! Time as kith's protocol sees it: wall time passed in by the caller ([`WallTime`]),
//! the hybrid logical clock that stamps record versions ([`Hlc`], [`Clock`]), and
//! XEP-0082 date-time strings.
//!
//! Nothing here reads the OS clock. The HLC never goes backwards, stays close to
//! wall time, and orders causally related events. A stamp from another device that
//! is more than [`Clock::max_ahead_ms`] ahead of local wall time (default
//! [`DEFAULT_MAX_AHEAD_MS`], five minutes) is refused by [`Clock::observe`], so a
//! device with a clock far in the future cannot make its versions win forever:
//! callers hold such records until local time catches up.

use std::fmt;

/// Milliseconds since the Unix epoch, as given by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WallTime(pub u64);

/// Default bound on how far ahead of local time a remote stamp may be: 5 minutes.
pub const DEFAULT_MAX_AHEAD_MS: u64 = 5 * 60 * 1000;

/// A hybrid logical clock value: wall milliseconds and a counter for events within
/// one millisecond. Ordered by wall time, then counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Wall-clock part, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Logical counter.
    pub counter: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.wall_ms, self.counter)
    }
}

impl Hlc {
    /// The next value after this one.
    fn successor(self) -> Self {
        match self.counter.checked_add(1) {
            Some(counter) => Self {
                wall_ms: self.wall_ms,
                counter,
            },
            None => Self {
                wall_ms: self.wall_ms + 1,
                counter: 0,
            },
        }
    }
}

/// A remote stamp too far in the future to be accepted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stamp {stamp} is more than {max_ahead_ms} ms ahead of local time {now}")]
pub struct TooFarAhead {
    /// The remote stamp.
    pub stamp: Hlc,
    /// Local wall time.
    pub now: u64,
    /// The bound in force.
    pub max_ahead_ms: u64,
}

/// A device's hybrid logical clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    last: Hlc,
    /// How far ahead of local wall time a remote stamp may be.
    pub max_ahead_ms: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new(Hlc::default())
    }
}

impl Clock {
    /// A clock that has seen `last` (what was persisted, or zero).
    pub fn new(last: Hlc) -> Self {
        Self {
            last,
            max_ahead_ms: DEFAULT_MAX_AHEAD_MS,
        }
    }

    /// The latest value issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a stamp for a local event at wall time `now`.
    pub fn tick(&mut self, now: WallTime) -> Hlc {
        self.last = if now.0 > self.last.wall_ms {
            Hlc {
                wall_ms: now.0,
                counter: 0,
            }
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Whether a remote stamp is acceptable at wall time `now`.
    pub fn check(&self, stamp: Hlc, now: WallTime) -> Result<(), TooFarAhead> {
        if stamp.wall_ms > now.0.saturating_add(self.max_ahead_ms) {
            return Err(TooFarAhead {
                stamp,
                now: now.0,
                max_ahead_ms: self.max_ahead_ms,
            });
        }
        Ok(())
    }

    /// Takes a remote stamp into account, so later local stamps order after it.
    pub fn observe(&mut self, stamp: Hlc, now: WallTime) -> Result<(), TooFarAhead> {
        self.check(stamp, now)?;
        self.last = self.last.max(stamp);
        Ok(())
    }
}

/// A string that is not an XEP-0082 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an XEP-0082 date-time: {0:?}")]
pub struct BadDateTime(pub String);

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

impl WallTime {
    /// Formats as XEP-0082 DateTime in UTC with milliseconds,
    /// e.g. `2026-07-01T09:12:44.000Z`.
    pub fn to_xep0082(self) -> String {
        let secs = (self.0 / 1000) as i64;
        let ms = self.0 % 1000;
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    }

    /// Parses an XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss]TZD`, TZD `Z` or
    /// `±hh:mm`); fractions beyond milliseconds are truncated.
    pub fn parse_xep0082(s: &str) -> Result<Self, BadDateTime> {
        let bad = || BadDateTime(s.chars().take(40).collect());
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Result<u32, BadDateTime> {
            let part = b.get(r).ok_or_else(bad)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(bad());
            }
            part.iter()
                .try_fold(0u32, |acc, d| Some(acc * 10 + u32::from(d - b'0')))
                .ok_or_else(bad)
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let mut i = 19;
        let mut ms = 0u64;
        if b[i] == b'.' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(bad());
            }
            let digits = &s[start..i.min(start + 3)];
            ms = digits.parse::<u64>().map_err(|_| bad())? * 10u64.pow(3 - digits.len() as u32);
        }
        // Bytes, not string slices: the zone may hold any character.
        let offset_min: i64 = match &b[i..] {
            b"Z" => 0,
            tz if tz.len() == 6 && (tz[0] == b'+' || tz[0] == b'-') && tz[3] == b':' => {
                let oh = i64::from(num(i + 1..i + 3)?);
                let om = i64::from(num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let sign = if tz[0] == b'-' { -1 } else { 1 };
                sign * (oh * 60 + om)
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(i64::from(y), mo, d);
        let secs =
            days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(sec.min(59))
                - offset_min * 60;
        let secs = u64::try_from(secs).map_err(|_| bad())?;
        Ok(Self(secs * 1000 + ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_is_monotonic_and_tracks_wall_time() {
        let mut c = Clock::default();
        let a = c.tick(WallTime(100));
        let b = c.tick(WallTime(100));
        let d = c.tick(WallTime(50));
        assert!(a < b && b < d);
        assert_eq!(d.wall_ms, 100);
        assert_eq!(
            c.tick(WallTime(200)),
            Hlc {
                wall_ms: 200,
                counter: 0
            }
        );
        c.observe(
            Hlc {
                wall_ms: 250,
                counter: 7,
            },
            WallTime(200),
        )
        .expect("within bound");
        assert_eq!(
            c.tick(WallTime(200)),
            Hlc {
                wall_ms: 250,
                counter: 8
            }
        );
    }

    #[test]
    fn refuses_stamps_too_far_ahead() {
        let mut c = Clock::default();
        let now = WallTime(1_000_000);
        let far = Hlc {
            wall_ms: now.0 + DEFAULT_MAX_AHEAD_MS + 1,
            counter: 0,
        };
        assert!(c.observe(far, now).is_err());
        assert_eq!(c.last(), Hlc::default(), "a refused stamp changes nothing");
        assert!(c.observe(far, WallTime(now.0 + 1)).is_ok());
    }

    #[test]
    fn xep0082_round_trip_and_offsets() {
        let t = WallTime::parse_xep0082("2026-07-01T09:12:44Z").expect("valid");
        assert_eq!(t.to_xep0082(), "2026-07-01T09:12:44.000Z");
        assert_eq!(WallTime::parse_xep0082(&t.to_xep0082()), Ok(t));
        assert_eq!(
            WallTime::parse_xep0082("2026-07-01T11:12:44.5+02:00"),
            Ok(WallTime(t.0 + 500))
        );
        assert_eq!(WallTime(0).to_xep0082(), "1970-01-01T00:00:00.000Z");
        for bad in [
            "",
            "2026-07-01",
            "2026-13-01T00:00:00Z",
            "2026-07-01T09:12:44",
            "2026-07-01T09:12:44+2",
        ] {
            assert!(WallTime::parse_xep0082(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_zone_with_a_multibyte_character_is_refused() {
        // Once a panic: the zone was sliced by byte in the middle of "é".
        assert!(WallTime::parse_xep0082("2026-01-01T00:00:00+0\u{e9}00").is_err());
        assert!(WallTime::parse_xep0082("2026-01-01T00:00:00.5é").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,40}", prefix in proptest::bool::ANY) {
            let s = if prefix { format!("2026-01-01T00:00:00{s}") } else { s };
            let _ = WallTime::parse_xep0082(&s);
        }
    }
}
