//! What a tutor publishes: weekly windows and date exceptions, in the tutor's own IANA zone.
//!
//! Windows are wall-clock times; they become UTC instants through `span::wall_clock_to_utc`, which is where
//! DST is decided (skipped times contribute nothing, repeated times contribute both occurrences).

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc, Weekday};
use chrono_tz::Tz;

use crate::ScheduleError;
use crate::span::{self, Span};

/// Every `weekday`, from `start` to `end` wall-clock time in the tutor's zone.
///
/// `end` is exclusive and must be after `start`, except that an `end` of 00:00 means midnight at the end
/// of the day (24:00). Windows don't cross midnight: Friday 22:00–02:00 is Fri 22:00–00:00 plus Sat 00:00–02:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklyRule {
    pub weekday: Weekday,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

/// A change to the weekly pattern on particular dates.
///
/// Availability is (weekly windows ∪ extra hours) − time off: time off always wins, whichever was added last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    /// Unavailable between two instants (e.g. a flight, or time off entered by a viewer in another zone).
    TimeOffUtc { start: DateTime<Utc>, end: DateTime<Utc> },
    /// Unavailable between two wall-clock readings in the tutor's zone (e.g. a whole day:
    /// 2026-12-24 00:00 to 2026-12-27 00:00). Same DST rule as windows.
    TimeOffLocal { start: NaiveDateTime, end: NaiveDateTime },
    /// Available on `date` from `start` to `end` wall-clock time, in addition to the weekly windows.
    /// Same `end` rule as [`WeeklyRule`].
    ExtraHours { date: NaiveDate, start: NaiveTime, end: NaiveTime },
}

/// A tutor's published availability: what `slots` reads besides the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Availability {
    pub tz: Tz,
    pub rules: Vec<WeeklyRule>,
    pub exceptions: Vec<Exception>,
}

fn window_ok(start: NaiveTime, end: NaiveTime) -> bool {
    end > start || end == NaiveTime::MIN
}

/// The wall-clock span of a window on `date`, with 00:00 as an end meaning the next midnight.
fn window_on(date: NaiveDate, start: NaiveTime, end: NaiveTime) -> (NaiveDateTime, NaiveDateTime) {
    let end_date = if end == NaiveTime::MIN { date + TimeDelta::days(1) } else { date };
    (date.and_time(start), end_date.and_time(end))
}

impl Availability {
    pub fn validate(&self) -> Result<(), ScheduleError> {
        for r in &self.rules {
            if !window_ok(r.start, r.end) {
                return Err(ScheduleError::BadWindow { start: r.start, end: r.end });
            }
        }
        for x in &self.exceptions {
            match *x {
                Exception::TimeOffUtc { start, end } if end <= start => return Err(ScheduleError::BadTimeOff),
                Exception::TimeOffLocal { start, end } if end <= start => return Err(ScheduleError::BadTimeOff),
                Exception::ExtraHours { start, end, .. } if !window_ok(start, end) => {
                    return Err(ScheduleError::BadWindow { start, end });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Normalized UTC spans when the tutor is available, covering at least `[from, to)`.
    /// Assumes `validate` passed.
    pub(crate) fn spans(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Span> {
        // Local dates whose windows can reach into [from, to): offsets are within ±15 h.
        let first = (from - TimeDelta::days(2)).date_naive();
        let last = (to + TimeDelta::days(2)).date_naive();
        let mut open = Vec::new();
        let mut date = first;
        while date <= last {
            for r in self.rules.iter().filter(|r| r.weekday == date.weekday()) {
                let (s, e) = window_on(date, r.start, r.end);
                open.extend(span::wall_clock_to_utc(self.tz, s, e));
            }
            date += TimeDelta::days(1);
        }
        let mut closed = Vec::new();
        for x in &self.exceptions {
            match *x {
                Exception::ExtraHours { date, start, end } if date >= first && date <= last => {
                    let (s, e) = window_on(date, start, end);
                    open.extend(span::wall_clock_to_utc(self.tz, s, e));
                }
                Exception::ExtraHours { .. } => {}
                Exception::TimeOffUtc { start, end } => closed.push((start, end)),
                Exception::TimeOffLocal { start, end } => closed.extend(span::wall_clock_to_utc(self.tz, start, end)),
            }
        }
        span::subtract(&span::normalize(open), &span::normalize(closed))
    }
}
