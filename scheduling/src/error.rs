//! The crate's one error enum: invalid input to the scheduling rules (the caller's mistake, a 4xx at the edge).

use chrono::{DateTime, NaiveTime, Utc};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    #[error("availability window {start}–{end} must end after it starts (00:00 as an end means midnight)")]
    BadWindow { start: NaiveTime, end: NaiveTime },
    #[error("time off must end after it starts")]
    BadTimeOff,
    #[error("busy time {start}–{end} must end after it starts")]
    BadBusy { start: DateTime<Utc>, end: DateTime<Utc> },
    #[error("the policy offers no lesson lengths")]
    NoLessonLengths,
    #[error("lesson length of {0} minutes is out of range (1 to 1440)")]
    BadLessonLength(u32),
    #[error("{0} must not be negative")]
    NegativeDuration(&'static str),
    #[error("lessons of {0} minutes are not offered")]
    UnknownLessonLength(u32),
    #[error("the range must end after it starts")]
    EmptyRange,
    #[error("the range is longer than {max_days} days")]
    RangeTooLong { max_days: i64 },
}
