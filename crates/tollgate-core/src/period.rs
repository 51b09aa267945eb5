//! Reporting periods: half-open intervals `[start, end)` of UTC instants, computed from civil
//! dates in an IANA time zone (bundled tz database, so it works offline), DST-correct.
//!
//! "July 2026" in Asia/Almaty is `[2026-06-30T19:00:00Z, 2026-07-31T19:00:00Z)`.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::error::CoreError;

/// Looks up an IANA time zone by name in the bundled database.
pub fn time_zone(name: &str) -> Result<TimeZone, CoreError> {
    TimeZone::get(name).map_err(|_| CoreError::UnknownTimeZone { name: name.into() })
}

/// What a period spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodKind {
    Day,
    IsoWeek,
    Month,
}

/// A reporting period in a time zone.
#[derive(Debug, Clone)]
pub struct Period {
    kind: PeriodKind,
    first_day: Date,
    tz_name: String,
    tz: TimeZone,
    start: Timestamp,
    end: Timestamp,
}

impl PartialEq for Period {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.first_day == other.first_day
            && self.tz_name == other.tz_name
    }
}

fn first_instant(day: Date, tz: &TimeZone) -> Result<Timestamp, CoreError> {
    day.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp())
        .map_err(|e| CoreError::InvalidPeriod {
            value: day.to_string(),
            expected: format!("a representable date ({e})"),
        })
}

fn bad(spec: &str) -> CoreError {
    CoreError::InvalidPeriod {
        value: spec.into(),
        expected: "a month YYYY-MM (2026-07), an ISO week YYYY-Www (2026-W18) or a day YYYY-MM-DD"
            .into(),
    }
}

impl Period {
    fn build(kind: PeriodKind, first_day: Date, tz_name: &str) -> Result<Period, CoreError> {
        let tz = time_zone(tz_name)?;
        let next = match kind {
            PeriodKind::Day => first_day.checked_add(1.day()),
            PeriodKind::IsoWeek => first_day.checked_add(7.days()),
            PeriodKind::Month => first_day.checked_add(1.month()),
        }
        .map_err(|_| bad(&first_day.to_string()))?;
        Ok(Period {
            kind,
            first_day,
            tz_name: tz_name.to_string(),
            start: first_instant(first_day, &tz)?,
            end: first_instant(next, &tz)?,
            tz,
        })
    }

    /// The calendar month `year-month` in `tz_name`.
    pub fn month(year: i16, month: i8, tz_name: &str) -> Result<Period, CoreError> {
        let d = Date::new(year, month, 1).map_err(|_| bad(&format!("{year}-{month}")))?;
        Period::build(PeriodKind::Month, d, tz_name)
    }

    /// Parses `YYYY-MM`, `YYYY-Www` or `YYYY-MM-DD`.
    pub fn parse(spec: &str, tz_name: &str) -> Result<Period, CoreError> {
        let s = spec.trim();
        let num = |t: &str| -> Result<i64, CoreError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(spec));
            }
            t.parse::<i64>().map_err(|_| bad(spec))
        };
        let parts: Vec<&str> = s.split('-').collect();
        match parts.as_slice() {
            [y, w] if w.starts_with('W') => {
                let year = i16::try_from(num(y)?).map_err(|_| bad(spec))?;
                let week = i8::try_from(num(&w[1..])?).map_err(|_| bad(spec))?;
                let iso = jiff::civil::ISOWeekDate::new(year, week, Weekday::Monday)
                    .map_err(|_| bad(spec))?;
                Period::build(PeriodKind::IsoWeek, iso.date(), tz_name)
            }
            [y, m] if y.len() == 4 && m.len() == 2 => {
                let year = i16::try_from(num(y)?).map_err(|_| bad(spec))?;
                let month = i8::try_from(num(m)?).map_err(|_| bad(spec))?;
                Period::month(year, month, tz_name)
            }
            [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
                let date = Date::new(
                    i16::try_from(num(y)?).map_err(|_| bad(spec))?,
                    i8::try_from(num(m)?).map_err(|_| bad(spec))?,
                    i8::try_from(num(d)?).map_err(|_| bad(spec))?,
                )
                .map_err(|_| bad(spec))?;
                Period::build(PeriodKind::Day, date, tz_name)
            }
            _ => Err(bad(spec)),
        }
    }

    pub fn kind(&self) -> PeriodKind {
        self.kind
    }
    /// Inclusive start instant.
    pub fn start(&self) -> Timestamp {
        self.start
    }
    /// Exclusive end instant.
    pub fn end(&self) -> Timestamp {
        self.end
    }
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }
    pub fn tz_name(&self) -> &str {
        &self.tz_name
    }
    pub fn first_day(&self) -> Date {
        self.first_day
    }

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }

    /// The period of the same kind `n` steps away (negative: earlier).
    pub fn shifted(&self, n: i32) -> Result<Period, CoreError> {
        let span = match self.kind {
            PeriodKind::Day => i64::from(n).days(),
            PeriodKind::IsoWeek => (i64::from(n) * 7).days(),
            PeriodKind::Month => i64::from(n).months(),
        };
        let d = self
            .first_day
            .checked_add(span)
            .map_err(|_| bad(&self.label()))?;
        Period::build(self.kind, d, &self.tz_name)
    }

    /// The civil days of the period, in order.
    pub fn days(&self) -> Vec<Date> {
        let mut out = Vec::new();
        let mut d = self.first_day;
        let last = match self.kind {
            PeriodKind::Day => 1,
            PeriodKind::IsoWeek => 7,
            PeriodKind::Month => i32::from(self.first_day.days_in_month()),
        };
        for _ in 0..last {
            out.push(d);
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out
    }

    /// The label a user types: `2026-07`, `2026-W18` or `2026-07-15`.
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Day => self.first_day.to_string(),
            PeriodKind::IsoWeek => {
                let w = self.first_day.iso_week_date();
                format!("{:04}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => {
                format!("{:04}-{:02}", self.first_day.year(), self.first_day.month())
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}; {} .. {})",
            self.label(),
            self.tz_name,
            self.start,
            self.end
        )
    }
}

/// The civil date of an instant in a time zone.
pub fn civil_day(t: Timestamp, tz: &TimeZone) -> Date {
    t.to_zoned_datetime(tz.clone()).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn july_in_almaty_starts_the_evening_before_in_utc() {
        // Asia/Almaty is UTC+5 all year (since 2024-03-01): July 1 00:00 local = June 30 19:00Z.
        let p = Period::parse("2026-07", "Asia/Almaty").unwrap();
        assert_eq!(p.start(), ts("2026-06-30T19:00:00Z"));
        assert_eq!(p.end(), ts("2026-07-31T19:00:00Z"));
        assert!(p.contains(ts("2026-06-30T19:00:00Z")));
        assert!(!p.contains(ts("2026-07-31T19:00:00Z")));
    }

    #[test]
    fn month_across_dst_change_has_the_right_length() {
        // March 2026 in Europe/Berlin: starts at UTC+1 (Feb 28 23:00Z), ends at UTC+2 after
        // the switch on March 29 (Mar 31 22:00Z). 31 days minus one hour = 743 hours.
        let p = Period::parse("2026-03", "Europe/Berlin").unwrap();
        assert_eq!(p.start(), ts("2026-02-28T23:00:00Z"));
        assert_eq!(p.end(), ts("2026-03-31T22:00:00Z"));
        let hours = (p.end().as_second() - p.start().as_second()) / 3600;
        assert_eq!(hours, 743);
    }

    #[test]
    fn iso_weeks_and_days() {
        // ISO week 18 of 2026 starts Monday April 27.
        let w = Period::parse("2026-W18", "UTC").unwrap();
        assert_eq!(w.start(), ts("2026-04-27T00:00:00Z"));
        assert_eq!(w.end(), ts("2026-05-04T00:00:00Z"));
        assert_eq!(w.label(), "2026-W18");
        assert_eq!(w.shifted(-1).unwrap().label(), "2026-W17");
        let d = Period::parse("2026-07-15", "America/New_York").unwrap();
        assert_eq!(d.start(), ts("2026-07-15T04:00:00Z"));
        assert_eq!(d.days().len(), 1);
    }

    #[test]
    fn shifting_months_and_listing_days() {
        let p = Period::parse("2026-01", "UTC").unwrap();
        assert_eq!(p.shifted(-1).unwrap().label(), "2025-12");
        assert_eq!(p.shifted(-12).unwrap().label(), "2025-01");
        assert_eq!(Period::parse("2028-02", "UTC").unwrap().days().len(), 29);
    }

    #[test]
    fn rejects_malformed_periods_and_zones() {
        for bad in ["2026-13", "2026-7", "July", "2026-W54", "2026-02-30", ""] {
            assert!(Period::parse(bad, "UTC").is_err(), "{bad}");
        }
        let e = Period::parse("2026-07", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Mars/Olympus"), "{e}");
    }
}
