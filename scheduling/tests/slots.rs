//! One test per stated rule of slot listing (see the `slots` module doc).

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::America::New_York;
use chrono_tz::Europe::Berlin;
use chrono_tz::Tz;
use scheduling::{
    Availability, Busy, Exception, MAX_RANGE_DAYS, Policy, ScheduleError, Slot, WeeklyRule, slots, viewer_days,
};

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn t(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).unwrap()
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn rule(weekday: Weekday, start: NaiveTime, end: NaiveTime) -> WeeklyRule {
    WeeklyRule { weekday, start, end }
}

fn avail(tz: Tz, rules: Vec<WeeklyRule>, exceptions: Vec<Exception>) -> Availability {
    Availability { tz, rules, exceptions }
}

fn every_day(start: NaiveTime, end: NaiveTime) -> Vec<WeeklyRule> {
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun]
        .into_iter()
        .map(|w| rule(w, start, end))
        .collect()
}

fn open_policy() -> Policy {
    Policy {
        lesson_minutes: vec![30, 60],
        buffer_before: TimeDelta::zero(),
        buffer_after: TimeDelta::zero(),
        min_notice: TimeDelta::zero(),
        max_per_day: None,
        horizon: TimeDelta::days(365),
    }
}

const NOW: &str = "2026-01-01T00:00:00Z";

fn day(s: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = utc(s);
    (from, from + TimeDelta::days(1))
}

fn starts(v: &[Slot]) -> Vec<String> {
    v.iter().map(|s| s.start.format("%m-%d %H:%M").to_string()).collect()
}

#[test]
fn berlin_9am_is_8_utc_in_winter() {
    let a = avail(Berlin, vec![rule(Weekday::Mon, t(9, 0), t(10, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-01-05T00:00:00Z"), 60, utc(NOW)).unwrap();
    assert_eq!(got, vec![Slot { start: utc("2026-01-05T08:00:00Z"), end: utc("2026-01-05T09:00:00Z") }]);
}

#[test]
fn berlin_9am_is_7_utc_in_summer() {
    let a = avail(Berlin, vec![rule(Weekday::Mon, t(9, 0), t(10, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-07-06T00:00:00Z"), 60, utc(NOW)).unwrap();
    assert_eq!(got, vec![Slot { start: utc("2026-07-06T07:00:00Z"), end: utc("2026-07-06T08:00:00Z") }]);
}

#[test]
fn spring_forward_window_01_to_04_is_two_hours() {
    // 2026-03-29 is a Sunday; Berlin skips 02:00–03:00.
    let a = avail(Berlin, vec![rule(Weekday::Sun, t(1, 0), t(4, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], (utc("2026-03-28T12:00:00Z"), utc("2026-03-29T12:00:00Z")), 60, utc(NOW))
        .unwrap();
    assert_eq!(starts(&got), ["03-29 00:00", "03-29 00:15", "03-29 00:30", "03-29 00:45", "03-29 01:00"]);
    // On the tutor's clock the first starts at 01:00 CET and the last at 03:00 CEST, ending at 04:00.
    let first = got[0].in_zone(Berlin);
    let last = got[4].in_zone(Berlin);
    assert_eq!((first.start.hour(), first.start.format("%Z").to_string()), (1, "CET".to_string()));
    assert_eq!((last.start.hour(), last.start.format("%Z").to_string()), (3, "CEST".to_string()));
    assert_eq!(last.end.hour(), 4);
    // Nothing starts at a wall-clock time that doesn't exist.
    assert!(got.iter().all(|s| s.in_zone(Berlin).start.hour() != 2));
}

#[test]
fn spring_forward_window_inside_the_gap_is_empty() {
    let a = avail(Berlin, vec![rule(Weekday::Sun, t(2, 0), t(3, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-03-29T00:00:00Z"), 30, utc(NOW)).unwrap();
    assert!(got.is_empty());
}

#[test]
fn fall_back_window_01_to_04_is_four_hours() {
    // 2026-10-25 is a Sunday; Berlin repeats 02:00–03:00.
    let a = avail(Berlin, vec![rule(Weekday::Sun, t(1, 0), t(4, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], (utc("2026-10-24T12:00:00Z"), utc("2026-10-25T12:00:00Z")), 60, utc(NOW))
        .unwrap();
    assert_eq!(got.len(), 13); // starts every 15 min over 4 h − 1 h
    assert_eq!(got[0].start, utc("2026-10-24T23:00:00Z"));
    assert_eq!(got[12].end, utc("2026-10-25T03:00:00Z"));
    // Both 02:00s are offered, told apart by their offsets.
    let at_two: Vec<String> = got
        .iter()
        .map(|s| s.in_zone(Berlin).start)
        .filter(|s| s.hour() == 2 && s.minute() == 0)
        .map(|s| s.format("%H:%M %Z").to_string())
        .collect();
    assert_eq!(at_two, ["02:00 CEST", "02:00 CET"]);
}

#[test]
fn viewer_in_new_york_sees_the_same_instants() {
    let a = avail(Berlin, vec![rule(Weekday::Mon, t(9, 0), t(11, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-01-05T00:00:00Z"), 60, utc(NOW)).unwrap();
    let first = got[0].in_zone(New_York);
    assert_eq!(first.start.format("%Y-%m-%d %H:%M %Z").to_string(), "2026-01-05 03:00 EST");
    assert!(got.iter().all(|s| s.in_zone(New_York).to_utc() == *s && s.in_zone(Berlin).to_utc() == *s));
    // A New York viewer asking for their Monday gets the same slots as a Berlin viewer asking for theirs,
    // since these Berlin morning slots fall inside both local Mondays.
    let ny = slots(&a, &open_policy(), &[], viewer_days(New_York, d(2026, 1, 5), d(2026, 1, 5)).unwrap(), 60, utc(NOW));
    let de = slots(&a, &open_policy(), &[], viewer_days(Berlin, d(2026, 1, 5), d(2026, 1, 5)).unwrap(), 60, utc(NOW));
    assert_eq!(ny.unwrap(), got);
    assert_eq!(de.unwrap(), got);
}

#[test]
fn viewer_days_covers_local_midnight_to_midnight() {
    assert_eq!(
        viewer_days(New_York, d(2026, 3, 8), d(2026, 3, 8)).unwrap(),
        (utc("2026-03-08T05:00:00Z"), utc("2026-03-09T04:00:00Z")) // a 23-hour day
    );
    assert_eq!(viewer_days(Berlin, d(2026, 1, 2), d(2026, 1, 1)), Err(ScheduleError::EmptyRange));
}

#[test]
fn slots_start_on_quarter_hours_and_may_overlap_each_other() {
    let a = avail(Tz::UTC, every_day(t(9, 10), t(11, 0)), vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-01-05T00:00:00Z"), 60, utc(NOW)).unwrap();
    assert_eq!(starts(&got), ["01-05 09:15", "01-05 09:30", "01-05 09:45", "01-05 10:00"]);
}

#[test]
fn adjacent_windows_join_and_midnight_end_means_end_of_day() {
    let a = avail(Tz::UTC, vec![rule(Weekday::Mon, t(22, 0), t(23, 0)), rule(Weekday::Mon, t(23, 0), t(0, 0))], vec![]);
    let got = slots(&a, &open_policy(), &[], day("2026-01-05T00:00:00Z"), 60, utc(NOW)).unwrap();
    assert_eq!(starts(&got), ["01-05 22:00", "01-05 22:15", "01-05 22:30", "01-05 22:45", "01-05 23:00"]);
}

#[test]
fn range_filters_by_start_and_a_lesson_may_end_after_it() {
    let a = avail(Tz::UTC, every_day(t(9, 0), t(12, 0)), vec![]);
    let got = slots(&a, &open_policy(), &[], (utc("2026-01-05T09:00:00Z"), utc("2026-01-05T09:30:00Z")), 60, utc(NOW))
        .unwrap();
    assert_eq!(starts(&got), ["01-05 09:00", "01-05 09:15"]);
}

#[test]
fn extra_hours_add_and_time_off_removes() {
    let a = avail(
        Berlin,
        vec![rule(Weekday::Mon, t(9, 0), t(11, 0))],
        vec![
            // Extra hours on Tuesday the 6th.
            Exception::ExtraHours { date: d(2026, 1, 6), start: t(14, 0), end: t(15, 0) },
            // Monday the 12th off entirely, by wall-clock days.
            Exception::TimeOffLocal { start: d(2026, 1, 12).and_time(t(0, 0)), end: d(2026, 1, 13).and_time(t(0, 0)) },
            // Monday the 19th: a dentist 09:30–10:00 Berlin, entered in UTC.
            Exception::TimeOffUtc { start: utc("2026-01-19T08:30:00Z"), end: utc("2026-01-19T09:00:00Z") },
            // Time off beats extra hours on the same date.
            Exception::ExtraHours { date: d(2026, 1, 20), start: t(14, 0), end: t(15, 0) },
            Exception::TimeOffUtc { start: utc("2026-01-20T00:00:00Z"), end: utc("2026-01-21T00:00:00Z") },
        ],
    );
    let got = slots(&a, &open_policy(), &[], (utc("2026-01-05T00:00:00Z"), utc("2026-01-21T00:00:00Z")), 60, utc(NOW))
        .unwrap();
    assert_eq!(
        starts(&got),
        ["01-05 08:00", "01-05 08:15", "01-05 08:30", "01-05 08:45", "01-05 09:00", "01-06 13:00", "01-19 09:00"]
    );
}

#[test]
fn buffers_keep_the_larger_buffer_free_on_both_sides_of_a_busy_item() {
    let a = avail(Tz::UTC, every_day(t(8, 0), t(12, 0)), vec![]);
    let policy =
        Policy { buffer_before: TimeDelta::minutes(15), buffer_after: TimeDelta::minutes(10), ..open_policy() };
    let busy = [Busy { start: utc("2026-01-05T09:00:00Z"), end: utc("2026-01-05T10:00:00Z") }];
    let got = slots(&a, &policy, &busy, day("2026-01-05T00:00:00Z"), 30, utc(NOW)).unwrap();
    // Before: a slot ending by 08:45 leaves the busy lesson its 15 min before. After: a new lesson needs its
    // own 15 min before, which is more than the busy lesson's 10 min after.
    assert_eq!(
        starts(&got),
        [
            "01-05 08:00",
            "01-05 08:15",
            "01-05 10:15",
            "01-05 10:30",
            "01-05 10:45",
            "01-05 11:00",
            "01-05 11:15",
            "01-05 11:30"
        ]
    );
    // Buffers don't need to fit inside the window: 08:00 is offered although 07:45–08:00 is outside it.
}

#[test]
fn notice_is_measured_from_now() {
    let a = avail(Tz::UTC, every_day(t(8, 0), t(12, 0)), vec![]);
    let policy = Policy { min_notice: TimeDelta::hours(2), ..open_policy() };
    let got = slots(&a, &policy, &[], day("2026-01-05T00:00:00Z"), 60, utc("2026-01-05T08:07:00Z")).unwrap();
    assert_eq!(starts(&got), ["01-05 10:15", "01-05 10:30", "01-05 10:45", "01-05 11:00"]);
    let got = slots(&a, &policy, &[], day("2026-01-05T00:00:00Z"), 60, utc("2026-01-05T08:00:00Z")).unwrap();
    assert_eq!(got[0].start, utc("2026-01-05T10:00:00Z")); // exactly the notice is enough
}

#[test]
fn horizon_is_measured_from_now_and_inclusive() {
    let a = avail(Tz::UTC, every_day(t(8, 0), t(12, 0)), vec![]);
    let policy = Policy { horizon: TimeDelta::days(2), ..open_policy() };
    let now = utc("2026-01-05T09:00:00Z");
    let got = slots(&a, &policy, &[], (utc("2026-01-05T00:00:00Z"), utc("2026-01-10T00:00:00Z")), 60, now).unwrap();
    assert_eq!(got.last().unwrap().start, utc("2026-01-07T09:00:00Z"));
    assert!(got.iter().all(|s| s.start >= now && s.start <= now + TimeDelta::days(2)));
}

#[test]
fn huge_notice_and_horizon_saturate_instead_of_overflowing() {
    let a = avail(Tz::UTC, every_day(t(8, 0), t(12, 0)), vec![]);
    let range = day("2026-01-05T00:00:00Z");
    let open = Policy { horizon: TimeDelta::MAX, ..open_policy() };
    assert_eq!(slots(&a, &open, &[], range, 60, utc(NOW)).unwrap().len(), 13);
    let closed = Policy { min_notice: TimeDelta::MAX, ..open_policy() };
    assert!(slots(&a, &closed, &[], range, 60, utc(NOW)).unwrap().is_empty());
}

#[test]
fn daily_cap_counts_busy_items_on_the_tutors_local_date() {
    let a = avail(Berlin, every_day(t(0, 0), t(0, 0)), vec![]);
    let policy = Policy { max_per_day: Some(2), ..open_policy() };
    // 23:30 UTC on the 5th is 00:30 on the 6th in Berlin: both busy items are on Berlin's 6th.
    let busy = [
        Busy { start: utc("2026-01-05T23:30:00Z"), end: utc("2026-01-06T00:00:00Z") },
        Busy { start: utc("2026-01-06T12:00:00Z"), end: utc("2026-01-06T13:00:00Z") },
    ];
    let range = viewer_days(Berlin, d(2026, 1, 5), d(2026, 1, 7)).unwrap();
    let got = slots(&a, &policy, &busy, range, 60, utc(NOW)).unwrap();
    let dates: std::collections::BTreeSet<NaiveDate> =
        got.iter().map(|s| s.in_zone(Berlin).start.date_naive()).collect();
    assert_eq!(dates.into_iter().collect::<Vec<_>>(), [d(2026, 1, 5), d(2026, 1, 7)]);
    // The 5th (Berlin) has no busy item, so its free slots are all offered, more than the cap: they are
    // alternatives, and booking any one keeps the day within it.
    assert!(got.iter().filter(|s| s.in_zone(Berlin).start.date_naive() == d(2026, 1, 5)).count() > 2);
    // A cap of 3 reopens the 6th, around its busy items.
    let policy = Policy { max_per_day: Some(3), ..policy };
    let got = slots(&a, &policy, &busy, range, 60, utc(NOW)).unwrap();
    assert!(got.iter().any(|s| s.in_zone(Berlin).start.date_naive() == d(2026, 1, 6)));
}

#[test]
fn invalid_input_is_rejected() {
    let ok = avail(Tz::UTC, every_day(t(9, 0), t(10, 0)), vec![]);
    let range = day("2026-01-05T00:00:00Z");
    let now = utc(NOW);
    let p = open_policy();
    let bad_rule = avail(Tz::UTC, vec![rule(Weekday::Mon, t(10, 0), t(9, 0))], vec![]);
    assert_eq!(
        slots(&bad_rule, &p, &[], range, 60, now),
        Err(ScheduleError::BadWindow { start: t(10, 0), end: t(9, 0) })
    );
    let bad_extra =
        avail(Tz::UTC, vec![], vec![Exception::ExtraHours { date: d(2026, 1, 5), start: t(9, 0), end: t(9, 0) }]);
    assert!(matches!(slots(&bad_extra, &p, &[], range, 60, now), Err(ScheduleError::BadWindow { .. })));
    let bad_off = avail(Tz::UTC, vec![], vec![Exception::TimeOffUtc { start: range.1, end: range.0 }]);
    assert_eq!(slots(&bad_off, &p, &[], range, 60, now), Err(ScheduleError::BadTimeOff));
    assert_eq!(slots(&ok, &p, &[], range, 45, now), Err(ScheduleError::UnknownLessonLength(45)));
    assert_eq!(slots(&ok, &p, &[], (range.1, range.0), 60, now), Err(ScheduleError::EmptyRange));
    assert_eq!(
        slots(&ok, &p, &[], (range.0, range.0 + TimeDelta::days(MAX_RANGE_DAYS + 1)), 60, now),
        Err(ScheduleError::RangeTooLong { max_days: MAX_RANGE_DAYS })
    );
    let busy = [Busy { start: range.1, end: range.0 }];
    assert!(matches!(slots(&ok, &p, &busy, range, 60, now), Err(ScheduleError::BadBusy { .. })));
    let neg = Policy { buffer_after: TimeDelta::minutes(-5), ..open_policy() };
    assert_eq!(slots(&ok, &neg, &[], range, 60, now), Err(ScheduleError::NegativeDuration("buffer_after")));
    let none = Policy { lesson_minutes: vec![], ..open_policy() };
    assert_eq!(slots(&ok, &none, &[], range, 60, now), Err(ScheduleError::NoLessonLengths));
    let zero = Policy { lesson_minutes: vec![0, 60], ..open_policy() };
    assert_eq!(slots(&ok, &zero, &[], range, 60, now), Err(ScheduleError::BadLessonLength(0)));
}
