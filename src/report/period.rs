//! Report periods: `2026-11` (a month), `2026Q4` (a quarter), `2026` (a calendar year),
//! `heating-2026` (the heating season that starts in 2026), or `--from/--to` → [from, to) in
//! unix milliseconds.
//!
//! Calendar boundaries are local midnight in the site's time zone (its `[heating]` or
//! `[heating.sites.<site>]` `timezone`), so a month in a zone with daylight-saving time is not
//! a whole number of days of 24 h: Europe/Berlin's March 2026 has 743 hours. A heating season
//! runs from local midnight of its first day to local midnight after its last day
//! (`Season::bounds`).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::core::season::Season;

/// A period of a report: [from_ms, to_ms), with the label written as the `period` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// `2026-11`, `2026Q4`, `2026`, `heating-2026`, or `<from>/<to>` as given.
    pub label: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The forms `--period` accepts, for error messages.
pub const VALID_PERIODS: &str = "2026-11 (a month), 2026Q4 (a quarter), 2026 (a calendar year), heating-2026 (the heating season that starts in 2026), or --from/--to with RFC 3339 times (2026-11-01T00:00:00+08:00) or dates (2026-11-01, local midnight)";

/// A period that cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("`{0}` is not a period; valid: {VALID_PERIODS}")]
    Unknown(String),
    #[error("--{which} `{value}` is not a time; write an RFC 3339 time with its offset (2026-11-01T00:00:00+08:00) or a date (2026-11-01, local midnight in the site's time zone)")]
    BadTime { which: &'static str, value: String },
    #[error("--to `{to}` is not after --from `{from}`; a period is [from, to)")]
    Empty { from: String, to: String },
    #[error("`{0}`: the year must be between 1970 and 9998")]
    Year(String),
}

impl Period {
    /// Parses `--period`: a month, quarter, calendar year or heating season, in `season`'s
    /// time zone (the site's).
    pub fn parse(spec: &str, season: &Season) -> Result<Period, PeriodError> {
        let s = spec.trim();
        let unknown = || PeriodError::Unknown(spec.to_owned());
        let year = |y: &str| -> Result<i16, PeriodError> {
            if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            let y: i16 = y.parse().map_err(|_| unknown())?;
            if !(1970..=9998).contains(&y) {
                return Err(PeriodError::Year(spec.to_owned()));
            }
            Ok(y)
        };
        let tz = &season.tz;
        let (from, to) = if let Some(y) = s.strip_prefix("heating-") {
            let y = year(y)?;
            season.bounds(y)
        } else if let Some((y, q)) = s.split_once(['Q', 'q']) {
            let y = year(y)?;
            let q: i8 = match q {
                "1" | "2" | "3" | "4" => q.parse().map_err(|_| unknown())?,
                _ => return Err(unknown()),
            };
            let start = date(y, (q - 1) * 3 + 1)?;
            (midnight(start, tz)?, midnight(add_months(start, 3)?, tz)?)
        } else if let Some((y, m)) = s.split_once('-') {
            let y = year(y)?;
            if m.len() != 2 || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            let m: i8 = m.parse().map_err(|_| unknown())?;
            if !(1..=12).contains(&m) {
                return Err(unknown());
            }
            let start = date(y, m)?;
            (midnight(start, tz)?, midnight(add_months(start, 1)?, tz)?)
        } else {
            let y = year(s)?;
            let start = date(y, 1)?;
            (midnight(start, tz)?, midnight(add_months(start, 12)?, tz)?)
        };
        Ok(Period {
            label: s.to_owned(),
            from_ms: from,
            to_ms: to,
        })
    }

    /// `--from/--to`: RFC 3339 times with an offset, or dates (local midnight in `tz`).
    pub fn between(from: &str, to: &str, tz: &TimeZone) -> Result<Period, PeriodError> {
        let f = instant("from", from, tz)?;
        let t = instant("to", to, tz)?;
        if t <= f {
            return Err(PeriodError::Empty {
                from: from.trim().to_owned(),
                to: to.trim().to_owned(),
            });
        }
        Ok(Period {
            label: format!("{}/{}", from.trim(), to.trim()),
            from_ms: f,
            to_ms: t,
        })
    }
}

fn date(y: i16, m: i8) -> Result<Date, PeriodError> {
    Date::new(y, m, 1).map_err(|_| PeriodError::Year(format!("{y}")))
}

fn add_months(d: Date, n: i32) -> Result<Date, PeriodError> {
    d.checked_add(jiff::Span::new().months(n))
        .map_err(|_| PeriodError::Year(format!("{}", d.year())))
}

/// Local midnight at the start of `d` (the first instant of the day if midnight is skipped by
/// a DST change: jiff's compatible disambiguation).
fn midnight(d: Date, tz: &TimeZone) -> Result<i64, PeriodError> {
    d.to_zoned(tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|_| PeriodError::Year(format!("{}", d.year())))
}

fn instant(which: &'static str, value: &str, tz: &TimeZone) -> Result<i64, PeriodError> {
    let v = value.trim();
    let bad = || PeriodError::BadTime {
        which,
        value: value.to_owned(),
    };
    if let Ok(ts) = v.parse::<Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    // A date alone (exactly YYYY-MM-DD): local midnight.
    if v.len() == 10 {
        if let Ok(d) = v.parse::<Date>() {
            return midnight(d, tz).map_err(|_| bad());
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::season::MonthDay;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn p(spec: &str) -> Period {
        Period::parse(spec, &Season::beijing()).unwrap()
    }

    const H: i64 = 3_600_000;

    #[test]
    fn month_quarter_and_year_in_shanghai() {
        let m = p("2026-11");
        assert_eq!(m.label, "2026-11");
        assert_eq!(m.from_ms, ms("2026-10-31T16:00:00Z"));
        assert_eq!(m.to_ms, ms("2026-11-30T16:00:00Z"));
        assert_eq!(m.to_ms - m.from_ms, 30 * 24 * H);
        let q = p("2026Q4");
        assert_eq!(
            (q.from_ms, q.to_ms),
            (ms("2026-09-30T16:00:00Z"), ms("2026-12-31T16:00:00Z"))
        );
        assert_eq!(p("2026q1").from_ms, ms("2025-12-31T16:00:00Z"));
        assert_eq!(p("2026Q1").to_ms, ms("2026-03-31T16:00:00Z"));
        let y = p("2026");
        assert_eq!(
            (y.from_ms, y.to_ms),
            (ms("2025-12-31T16:00:00Z"), ms("2026-12-31T16:00:00Z"))
        );
        assert_eq!(y.to_ms - y.from_ms, 365 * 24 * H);
        assert_eq!(p("2028").to_ms - p("2028").from_ms, 366 * 24 * H);
        // December rolls into the next year.
        assert_eq!(p("2026-12").to_ms, ms("2026-12-31T16:00:00Z"));
        assert_eq!(p(" 2026-02 ").to_ms - p("2026-02").from_ms, 28 * 24 * H);
    }

    #[test]
    fn months_in_berlin_follow_daylight_saving_time() {
        let berlin = Season::new(
            MonthDay::parse("10-01").unwrap(),
            MonthDay::parse("04-30").unwrap(),
            "Europe/Berlin",
        )
        .unwrap();
        // 2026-03-29: clocks go 02:00 → 03:00, so March has 31 × 24 − 1 = 743 hours.
        let march = Period::parse("2026-03", &berlin).unwrap();
        assert_eq!(march.from_ms, ms("2026-02-28T23:00:00Z")); // 00:00 CET (+01:00)
        assert_eq!(march.to_ms, ms("2026-03-31T22:00:00Z")); // 00:00 CEST (+02:00)
        assert_eq!(march.to_ms - march.from_ms, 743 * H);
        // 2026-10-25: 03:00 → 02:00, so October has 745 hours.
        let oct = Period::parse("2026-10", &berlin).unwrap();
        assert_eq!(oct.to_ms - oct.from_ms, 745 * H);
        // The year is 8760 h either way.
        let y = Period::parse("2026", &berlin).unwrap();
        assert_eq!(y.to_ms - y.from_ms, 8760 * H);
        // The heating season crosses the new year: 2026-10-01 00:00 +02:00 → 2027-05-01 00:00 +02:00.
        let h = Period::parse("heating-2026", &berlin).unwrap();
        assert_eq!(
            (h.from_ms, h.to_ms),
            (ms("2026-09-30T22:00:00Z"), ms("2027-04-30T22:00:00Z"))
        );
    }

    #[test]
    fn heating_season_crosses_the_new_year() {
        let h = p("heating-2026");
        assert_eq!(h.label, "heating-2026");
        // 2026-11-15 00:00 +08:00 → 2027-03-16 00:00 +08:00 (through the whole of 03-15).
        assert_eq!(h.from_ms, ms("2026-11-14T16:00:00Z"));
        assert_eq!(h.to_ms, ms("2027-03-15T16:00:00Z"));
        // 16 days of November + 31 + 31 + 28 + 15 = 121 days.
        assert_eq!(h.to_ms - h.from_ms, 121 * 24 * H);
    }

    #[test]
    fn from_and_to_as_times_or_dates() {
        let tz = Season::beijing().tz;
        let p = Period::between("2026-11-01", "2026-11-15T12:00:00+08:00", &tz).unwrap();
        assert_eq!(p.from_ms, ms("2026-10-31T16:00:00Z"));
        assert_eq!(p.to_ms, ms("2026-11-15T04:00:00Z"));
        assert_eq!(p.label, "2026-11-01/2026-11-15T12:00:00+08:00");
        let p = Period::between("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", &tz).unwrap();
        assert_eq!(p.to_ms - p.from_ms, 24 * H);
    }

    #[test]
    fn bad_input_lists_the_valid_forms() {
        let s = Season::beijing();
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026Q5",
            "Q4",
            "november",
            "heating-26",
            "",
            "2026-11-01",
            "heating",
        ] {
            let e = Period::parse(bad, &s).unwrap_err();
            assert_eq!(e, PeriodError::Unknown(bad.into()), "{bad}");
            let msg = e.to_string();
            assert!(msg.contains("valid: 2026-11 (a month), 2026Q4 (a quarter), 2026 (a calendar year), heating-2026"), "{msg}");
        }
        assert_eq!(
            Period::parse("1969", &s).unwrap_err(),
            PeriodError::Year("1969".into())
        );
        let tz = s.tz;
        let e = Period::between("2026-11-01 08:00", "2026-12-01", &tz).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "--from `2026-11-01 08:00` is not a time; write an RFC 3339 time with its offset"
            ),
            "{e}"
        );
        let e = Period::between("2026-11-01", "2026-11-01T00:00:00+08:00", &tz).unwrap_err();
        assert_eq!(e.to_string(), "--to `2026-11-01T00:00:00+08:00` is not after --from `2026-11-01`; a period is [from, to)");
        assert!(
            Period::between("2026-11-01", "2026-11-01T08:00:00", &tz).is_err(),
            "no offset"
        );
    }
}
