//! Bookable slots: availability minus busy time, cut into lesson-length start times, filtered by policy.
//!
//! The rules, stated once (each has a test in `tests/slots.rs` and a property in `tests/properties.rs`):
//! - **Granularity.** Slots start on UTC quarter-hours (every [`SLOT_STEP_MINUTES`]). Every zone in use today
//!   has an offset that is a whole number of quarter-hours, so these are :00/:15/:30/:45 on the viewer's and
//!   the tutor's clock too. A window starting at 09:10 offers 09:15 first.
//! - **Alternatives, not a timetable.** The listed slots for one lesson length are alternative start times
//!   and overlap each other (09:00–10:00, 09:15–10:15, …). They are sorted by start and have distinct starts.
//! - **Fit.** A slot lies wholly inside one stretch of availability (weekly windows ∪ extra hours − time off,
//!   see `availability`). Adjacent windows (Mon 09–12 and Mon 12–15) form one stretch. Buffers need not fit
//!   inside availability: they separate lessons from each other, not from the edge of a window.
//! - **Buffers.** A busy item (booking or hold) is a lesson of this tutor with the same buffers, so between two
//!   lessons there must be the earlier one's `buffer_after` and the later one's `buffer_before`; buffers may
//!   overlap each other, never a lesson. Net effect: a slot keeps `max(buffer_before, buffer_after)` away from
//!   every busy item on both sides ([`Policy::gap`]).
//! - **Notice and horizon** are measured from `now` to the slot's start: `now + min_notice <= start <= now + horizon`.
//! - **Range.** `slots` lists slots whose *start* is in `[from, to)`; the lesson may end after `to`. So listing
//!   `[a, b)` and `[b, c)` gives exactly the listing of `[a, c)`, whatever zone chose `b`.
//! - **Daily cap.** "Per day" is the tutor's local date of a lesson's start. A day counts its busy items
//!   (holds count: they may become bookings). A day with `max_per_day` or more offers no slots; a day with
//!   fewer offers all its free slots, each of which would keep the day within the cap if booked.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::ScheduleError;
use crate::availability::Availability;
use crate::span;

/// Slots start on multiples of this many minutes of UTC (and so of every modern zone's wall clock).
pub const SLOT_STEP_MINUTES: i64 = 15;

/// The longest range one `slots` call lists; longer views page through it.
pub const MAX_RANGE_DAYS: i64 = 62;

/// How a tutor's lessons may be booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Lesson lengths offered, in minutes (each 1..=1440).
    pub lesson_minutes: Vec<u32>,
    pub buffer_before: TimeDelta,
    pub buffer_after: TimeDelta,
    /// How long before its start a slot may still be booked.
    pub min_notice: TimeDelta,
    /// Most lessons (bookings + holds) on one local date of the tutor; `None` means no cap.
    pub max_per_day: Option<u32>,
    /// How far ahead of `now` a slot may start.
    pub horizon: TimeDelta,
}

impl Policy {
    /// The time kept free between a slot and any busy item, on either side.
    pub fn gap(&self) -> TimeDelta {
        self.buffer_before.max(self.buffer_after)
    }

    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.lesson_minutes.is_empty() {
            return Err(ScheduleError::NoLessonLengths);
        }
        if let Some(&m) = self.lesson_minutes.iter().find(|&&m| m == 0 || m > 24 * 60) {
            return Err(ScheduleError::BadLessonLength(m));
        }
        for (name, d) in [
            ("buffer_before", self.buffer_before),
            ("buffer_after", self.buffer_after),
            ("min_notice", self.min_notice),
            ("horizon", self.horizon),
        ] {
            if d < TimeDelta::zero() {
                return Err(ScheduleError::NegativeDuration(name));
            }
        }
        Ok(())
    }
}

/// Time the tutor is taken: a confirmed booking or an unexpired hold, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A bookable lesson, in UTC. Render it for a viewer with [`Slot::in_zone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// A slot on a viewer's clock: same instants, local readings and offsets for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZonedSlot {
    pub start: DateTime<Tz>,
    pub end: DateTime<Tz>,
}

impl Slot {
    pub fn in_zone(&self, viewer: Tz) -> ZonedSlot {
        ZonedSlot { start: self.start.with_timezone(&viewer), end: self.end.with_timezone(&viewer) }
    }
}

impl ZonedSlot {
    /// Back to UTC: the same instants whatever the viewer's zone.
    pub fn to_utc(&self) -> Slot {
        Slot { start: self.start.with_timezone(&Utc), end: self.end.with_timezone(&Utc) }
    }
}

/// The UTC range covering the viewer's local dates `first..=last`: what a "show me these days" request lists.
/// A midnight skipped by DST starts the day at the first instant that exists.
pub fn viewer_days(
    viewer: Tz,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ScheduleError> {
    if last < first {
        return Err(ScheduleError::EmptyRange);
    }
    let from = first.and_time(chrono::NaiveTime::MIN);
    let to = (last + TimeDelta::days(1)).and_time(chrono::NaiveTime::MIN);
    let spans = span::wall_clock_to_utc(viewer, from, to);
    match (spans.first(), spans.last()) {
        (Some(a), Some(b)) => Ok((a.0, b.1)),
        _ => Err(ScheduleError::EmptyRange),
    }
}

/// Bookable slots of `lesson_minutes` whose start is in `range`, as of `now`. Sorted by start.
///
/// Pure: the same inputs always give the same slots. See the module doc for the rules.
pub fn slots(
    availability: &Availability,
    policy: &Policy,
    busy: &[Busy],
    range: (DateTime<Utc>, DateTime<Utc>),
    lesson_minutes: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Slot>, ScheduleError> {
    availability.validate()?;
    policy.validate()?;
    if !policy.lesson_minutes.contains(&lesson_minutes) {
        return Err(ScheduleError::UnknownLessonLength(lesson_minutes));
    }
    let (from, to) = range;
    if to <= from {
        return Err(ScheduleError::EmptyRange);
    }
    if to - from > TimeDelta::days(MAX_RANGE_DAYS) {
        return Err(ScheduleError::RangeTooLong { max_days: MAX_RANGE_DAYS });
    }
    if let Some(b) = busy.iter().find(|b| b.end <= b.start) {
        return Err(ScheduleError::BadBusy { start: b.start, end: b.end });
    }

    let lesson = TimeDelta::minutes(i64::from(lesson_minutes));
    // Saturating: a policy of "any notice / any horizon" may be stored as a huge duration.
    let earliest = from.max(now.checked_add_signed(policy.min_notice).unwrap_or(DateTime::<Utc>::MAX_UTC));
    let latest = now.checked_add_signed(policy.horizon).unwrap_or(DateTime::<Utc>::MAX_UTC); // inclusive
    if earliest > latest {
        return Ok(Vec::new());
    }

    let gap = policy.gap();
    let blocked = span::normalize(busy.iter().map(|b| (b.start - gap, b.end + gap)).collect());
    let free = span::subtract(&availability.spans(from, to + lesson), &blocked);

    let mut per_day: BTreeMap<NaiveDate, u32> = BTreeMap::new();
    for b in busy {
        *per_day.entry(local_date(availability.tz, b.start)).or_default() += 1;
    }
    let day_full = |start: DateTime<Utc>| match policy.max_per_day {
        None => false,
        Some(max) => per_day.get(&local_date(availability.tz, start)).copied().unwrap_or(0) >= max,
    };

    let mut out = Vec::new();
    for (a, b) in free {
        let mut start = ceil_to_step(a.max(earliest));
        while start + lesson <= b && start < to && start <= latest {
            if !day_full(start) {
                out.push(Slot { start, end: start + lesson });
            }
            start += TimeDelta::minutes(SLOT_STEP_MINUTES);
        }
    }
    Ok(out)
}

fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    tz.from_utc_datetime(&t.naive_utc()).date_naive()
}

fn ceil_to_step(t: DateTime<Utc>) -> DateTime<Utc> {
    let step = SLOT_STEP_MINUTES * 60;
    let floor = t.timestamp().div_euclid(step) * step;
    let exact = floor == t.timestamp() && t.timestamp_subsec_nanos() == 0;
    DateTime::from_timestamp(if exact { floor } else { floor + step }, 0).unwrap_or(t)
}
