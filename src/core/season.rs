//! The heating season (供暖季) of a site: from `start` (MM-DD, 00:00 local time) through the
//! whole of `end` (MM-DD), in the site's IANA time zone; it may cross the new year (Beijing:
//! 11-15 → 03-15, the default). Rules marked `season = true` hold only inside it.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A month and day, `MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: i8,
    pub day: i8,
}

impl MonthDay {
    /// Parses `MM-DD` (`11-15`); February 29 is refused (a season must exist every year).
    pub fn parse(s: &str) -> Result<MonthDay, String> {
        let bad = || format!("`{s}` is not a month and day; valid: MM-DD such as 11-15");
        let (m, d) = s.split_once('-').ok_or_else(bad)?;
        if m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let month: i8 = m.parse().map_err(|_| bad())?;
        let day: i8 = d.parse().map_err(|_| bad())?;
        if month == 2 && day == 29 {
            return Err(format!(
                "`{s}`: February 29 does not exist every year; use 02-28 or 03-01"
            ));
        }
        Date::new(2025, month, day).map_err(|_| bad())?;
        Ok(MonthDay { month, day })
    }

    fn in_year(self, year: i16) -> Date {
        // Valid in every year: parse refused 02-29.
        Date::new(year, self.month, self.day).unwrap_or(Date::MIN)
    }
}

impl std::fmt::Display for MonthDay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// A yearly heating season in a time zone.
#[derive(Debug, Clone)]
pub struct Season {
    pub start: MonthDay,
    /// Last day of the season (inclusive).
    pub end: MonthDay,
    pub tz: TimeZone,
    /// The zone's name as configured (`Asia/Shanghai`).
    pub tz_name: String,
    /// `bounds` of the seasons starting in `FIRST_YEAR..=LAST_YEAR`, in order: `contains` is a
    /// search in them instead of a time zone conversion (it runs for every reading that a
    /// `season` rule looks at).
    spans: Spans,
}

/// The years whose seasons `Season::spans` holds; other instants take the slow path.
const FIRST_YEAR: i16 = 1969;
const LAST_YEAR: i16 = 2200;

/// Precomputed season bounds (shown by their count only).
#[derive(Clone)]
struct Spans(std::sync::Arc<[(i64, i64)]>);

impl std::fmt::Debug for Spans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} seasons", self.0.len())
    }
}

impl PartialEq for Season {
    fn eq(&self, o: &Season) -> bool {
        self.start == o.start && self.end == o.end && self.tz_name == o.tz_name
    }
}

impl Season {
    pub fn new(start: MonthDay, end: MonthDay, tz_name: &str) -> Result<Season, String> {
        let tz = TimeZone::get(tz_name).map_err(|_| {
            format!("`{tz_name}` is not an IANA time zone; valid: names such as Asia/Shanghai, Asia/Harbin, Europe/Berlin")
        })?;
        Ok(Season::with_spans(start, end, tz, tz_name.to_owned()))
    }

    fn with_spans(start: MonthDay, end: MonthDay, tz: TimeZone, tz_name: String) -> Season {
        let mut s = Season {
            start,
            end,
            tz,
            tz_name,
            spans: Spans(std::sync::Arc::new([])),
        };
        let spans: Vec<(i64, i64)> = (FIRST_YEAR..=LAST_YEAR).map(|y| s.bounds(y)).collect();
        s.spans = Spans(spans.into());
        s
    }

    /// Beijing's season, 11-15 → 03-15, Asia/Shanghai.
    pub fn beijing() -> Season {
        Season::with_spans(
            MonthDay { month: 11, day: 15 },
            MonthDay { month: 3, day: 15 },
            TimeZone::get("Asia/Shanghai").unwrap_or(TimeZone::UTC),
            "Asia/Shanghai".into(),
        )
    }

    fn crosses_year(&self) -> bool {
        self.end < self.start
    }

    /// Whether the instant `ts_ms` (unix ms) is inside the season: its local date is between
    /// `start` and `end`.
    pub fn contains(&self, ts_ms: i64) -> bool {
        let spans = &self.spans.0;
        // The last season starting at or before `ts_ms`; inside the table, `ts_ms` is in the
        // season exactly when it is before that season's end.
        let i = spans.partition_point(|&(from, _)| from <= ts_ms);
        match (i.checked_sub(1).and_then(|k| spans.get(k)), spans.get(i)) {
            (Some(&(_, to)), Some(_)) => ts_ms < to,
            _ => self.contains_by_date(ts_ms),
        }
    }

    /// `contains` by converting to the local date (outside the precomputed years).
    fn contains_by_date(&self, ts_ms: i64) -> bool {
        let Ok(ts) = Timestamp::from_millisecond(ts_ms) else {
            return false;
        };
        let date = ts.to_zoned(self.tz.clone()).date();
        let md = MonthDay {
            month: date.month(),
            day: date.day(),
        };
        if self.crosses_year() {
            md >= self.start || md <= self.end
        } else {
            md >= self.start && md <= self.end
        }
    }

    /// `[from_ms, to_ms)` of the season that starts in `year` (local midnight of `start` to
    /// local midnight after `end`).
    pub fn bounds(&self, year: i16) -> (i64, i64) {
        let end_year = if self.crosses_year() { year + 1 } else { year };
        let from = self.midnight(self.start.in_year(year));
        let to = self.midnight(self.end.in_year(end_year).tomorrow().unwrap_or(Date::MAX));
        (from, to)
    }

    /// The first season boundary (a start or an end) strictly after `after_ms`: the moment
    /// rules marked `season` start or stop applying. `None` only for unrepresentable times.
    pub fn next_boundary(&self, after_ms: i64) -> Option<i64> {
        let year = Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned(self.tz.clone())
            .year();
        (year.saturating_sub(2)..=year.saturating_add(1))
            .flat_map(|y| {
                let (a, b) = self.bounds(y);
                [a, b]
            })
            .filter(|&t| t > after_ms && t != i64::MAX)
            .min()
    }

    fn midnight(&self, d: Date) -> i64 {
        d.to_zoned(self.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_boundary_is_the_next_start_or_end() {
        let s = Season::beijing();
        let start = ms("2026-11-14T16:00:00Z"); // 2026-11-15 00:00 Asia/Shanghai
        let end = ms("2027-03-15T16:00:00Z"); // 2027-03-16 00:00, the day after 03-15
        assert_eq!(s.next_boundary(ms("2026-09-01T00:00:00Z")), Some(start));
        assert_eq!(s.next_boundary(start - 1), Some(start));
        assert_eq!(s.next_boundary(start), Some(end));
        assert!(s.contains(start) && !s.contains(start - 1));
        assert!(s.contains(end - 1) && !s.contains(end));
    }

    proptest::proptest! {
        #[test]
        fn contains_agrees_with_the_local_date(
            ts in -10_000_000_000_000i64..10_000_000_000_000,
            which in 0usize..3,
        ) {
            let s = match which {
                0 => Season::beijing(),
                1 => Season::new(MonthDay::parse("01-10").unwrap(), MonthDay::parse("02-20").unwrap(), "Europe/Berlin").unwrap(),
                _ => Season::new(MonthDay::parse("10-01").unwrap(), MonthDay::parse("04-30").unwrap(), "America/New_York").unwrap(),
            };
            proptest::prop_assert_eq!(s.contains(ts), s.contains_by_date(ts));
            // Around its boundaries too (the table's edges are exact).
            for b in [s.bounds(2026).0, s.bounds(2026).1, s.bounds(1969).0, s.bounds(2200).1] {
                for t in [b - 1, b, b + 1] {
                    proptest::prop_assert_eq!(s.contains(t), s.contains_by_date(t));
                }
            }
        }
    }

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn beijing_season_crosses_the_new_year_in_local_time() {
        let s = Season::beijing();
        // 2026-11-15 00:00 +08:00 is 2026-11-14T16:00Z.
        assert!(!s.contains(ms("2026-11-14T15:59:59.999Z")));
        assert!(s.contains(ms("2026-11-14T16:00:00Z")));
        assert!(s.contains(ms("2027-01-01T00:00:00Z")));
        // Through the whole of 03-15 local: ends 2027-03-15T16:00Z.
        assert!(s.contains(ms("2027-03-15T15:59:59.999Z")));
        assert!(!s.contains(ms("2027-03-15T16:00:00Z")));
        assert!(!s.contains(ms("2027-07-01T00:00:00Z")));
        assert_eq!(
            s.bounds(2026),
            (ms("2026-11-14T16:00:00Z"), ms("2027-03-15T16:00:00Z"))
        );
    }

    #[test]
    fn season_within_one_year_and_bad_input() {
        let s = Season::new(
            MonthDay::parse("01-10").unwrap(),
            MonthDay::parse("02-20").unwrap(),
            "Europe/Berlin",
        )
        .unwrap();
        assert!(s.contains(ms("2027-01-09T23:00:00Z"))); // 00:00 CET on 01-10
        assert!(!s.contains(ms("2027-01-09T22:59:59Z")));
        assert!(!s.contains(ms("2027-06-01T00:00:00Z")));
        assert!(MonthDay::parse("13-01").is_err());
        assert!(MonthDay::parse("02-29").is_err());
        assert!(MonthDay::parse("2-1").is_err());
        assert!(Season::new(s.start, s.end, "Mars/Olympus").is_err());
    }
}
