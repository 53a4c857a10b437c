//! Gamification: XP, levels, streaks, badges and class leaderboards, driven by domain events.
//!
//! Layout: this file holds the rules as pure functions (what an attendance mark is worth, the level
//! curve, streaks, badge conditions, leaderboard ranks); [`awards`] is the outbox consumer that applies
//! them to events and stores the results; [`profile`] and [`leaderboard`] are the HTTP endpoints.
//! Every award is itself an event (`XpAwarded`, `LevelUp`, `BadgeUnlocked`, `StreakUpdated`) appended
//! in the dispatcher's transaction, for the real-time layer to push.
//!
//! The rules:
//! - XP per (student, meeting): present → `xp_attendance_present`, late → `xp_attendance_late`, absent
//!   and excused → 0. The ledger keeps what each meeting has given equal to what its latest mark is
//!   worth, so a re-mark appends the difference (present → absent appends a negative `XpAwarded`).
//! - XP per (student, lesson): `xp_lesson_completed`, once, whatever class the completion came from.
//! - Levels: level `n` needs `50·n·(n−1)` XP in total — 0, 100, 300, 600, 1000, 1500, ... A correction
//!   can lower the level again; `LevelUp` is emitted whenever the level rises.
//! - Streak, per class: consecutive attended meetings ordered by their start, counted back from the
//!   latest marked one. Absent breaks it; excused is neutral (neither breaks nor extends it), so an
//!   excused absence is not punished. `StreakUpdated` is emitted when the number changes.
//! - Badges: `first_lesson` (first attended meeting), `streak_5` (a class streak reaches 5, per class),
//!   `perfect_attendance` (when the class completes: at least one attended meeting and no absence
//!   among those marked for the student; excused is neutral as for streaks), `xp_1000` (1000 XP in
//!   total). Badges once earned stay, even if a later correction undoes their condition: taking back
//!   an award the student has already been shown would feel like a punishment for a clerical fix.
//!
//! Consumers see each event once (`processed_events`); on top of that every rule here is stated as
//! "make the stored state match the event", so even an event appended twice by a producer has one
//! effect.

pub mod awards;
pub mod leaderboard;
pub mod profile;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::{Policy, Role},
    classes::AttendanceStatus,
    config::Config,
    db::text_enum,
    ids::MeetingId,
};

/// The handles the gamification handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
}

pub use awards::Awards;

/// XP amounts, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XpRules {
    pub present: i64,
    pub late: i64,
    pub lesson_completed: i64,
}

impl XpRules {
    pub fn from_config(c: &Config) -> Self {
        Self { present: c.xp_attendance_present, late: c.xp_attendance_late, lesson_completed: c.xp_lesson_completed }
    }

    /// What a meeting marked `status` is worth.
    pub fn for_attendance(&self, status: AttendanceStatus) -> i64 {
        match status {
            AttendanceStatus::Present => self.present,
            AttendanceStatus::Late => self.late,
            AttendanceStatus::Absent | AttendanceStatus::Excused => 0,
        }
    }
}

/// The amount to append so that a source which has given `current` XP gives `target`; `None` when
/// nothing changes.
pub fn correction(current: i64, target: i64) -> Option<i64> {
    let diff = target - current;
    (diff != 0).then_some(diff)
}

/// Total XP needed to reach `level` (levels start at 1); saturates at `i64::MAX`.
pub fn level_threshold(level: i64) -> i64 {
    i64::try_from(threshold(level)).unwrap_or(i64::MAX)
}

fn threshold(level: i64) -> i128 {
    let n = level.max(1) as i128;
    50 * n * (n - 1)
}

/// The level a total of `xp` reaches: the largest `n` with `level_threshold(n) <= xp`.
pub fn level(xp: i64) -> i64 {
    if xp <= 0 {
        return 1;
    }
    // Closed form n = (1 + √(1 + 4·xp/50)) / 2, then corrected for floating-point error.
    let mut n = (((1.0 + (1.0 + 4.0 * (xp as f64 / 50.0)).sqrt()) / 2.0).floor() as i64).max(1);
    while threshold(n + 1) <= xp as i128 {
        n += 1;
    }
    while n > 1 && threshold(n) > xp as i128 {
        n -= 1;
    }
    n
}

/// One meeting's latest mark for a student, as the streak and badge rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub meeting_id: MeetingId,
    pub starts_at: DateTime<Utc>,
    pub status: AttendanceStatus,
}

/// The current streak of a student in one class, from all their marks there (any order).
/// Meetings starting at the same time are ordered by id, so the answer never depends on input order.
pub fn streak(marks: &[Mark]) -> i64 {
    let mut sorted: Vec<&Mark> = marks.iter().collect();
    sorted.sort_by_key(|m| (m.starts_at, m.meeting_id));
    let mut n = 0;
    for m in sorted.iter().rev() {
        match m.status {
            AttendanceStatus::Present | AttendanceStatus::Late => n += 1,
            AttendanceStatus::Excused => {}
            AttendanceStatus::Absent => break,
        }
    }
    n
}

/// Whether a student's marks in a completed class earn `perfect_attendance`.
pub fn perfect_attendance(marks: &[Mark]) -> bool {
    marks.iter().any(|m| m.status.attended()) && !marks.iter().any(|m| m.status == AttendanceStatus::Absent)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Badge {
    #[serde(rename = "first_lesson")]
    FirstLesson,
    #[serde(rename = "streak_5")]
    Streak5,
    #[serde(rename = "perfect_attendance")]
    PerfectAttendance,
    #[serde(rename = "xp_1000")]
    Xp1000,
}

text_enum!(Badge {
    FirstLesson = "first_lesson",
    Streak5 = "streak_5",
    PerfectAttendance = "perfect_attendance",
    Xp1000 = "xp_1000",
});

/// The streak that earns `streak_5`.
pub const STREAK_BADGE: i64 = 5;
/// The total XP that earns `xp_1000`.
pub const XP_BADGE: i64 = 1000;

impl Badge {
    /// Whether the badge is earned per class (else once per student).
    pub fn per_class(self) -> bool {
        matches!(self, Badge::Streak5 | Badge::PerfectAttendance)
    }
}

/// Badges an attendance mark qualifies for, given the class streak after it.
pub fn attendance_badges(status: AttendanceStatus, streak: i64) -> Vec<Badge> {
    let mut badges = Vec::new();
    if status.attended() {
        badges.push(Badge::FirstLesson);
    }
    if streak >= STREAK_BADGE {
        badges.push(Badge::Streak5);
    }
    badges
}

/// Badges a total of `xp` qualifies for.
pub fn xp_badges(xp: i64) -> Vec<Badge> {
    if xp >= XP_BADGE { vec![Badge::Xp1000] } else { Vec::new() }
}

/// Competition ranks ("1, 1, 3") of scores already sorted best first.
pub fn ranks(sorted_desc: &[i64]) -> Vec<i64> {
    let mut out = Vec::with_capacity(sorted_desc.len());
    for (i, xp) in sorted_desc.iter().enumerate() {
        let rank = if i > 0 && sorted_desc[i - 1] == *xp { out[i - 1] } else { i as i64 + 1 };
        out.push(rank);
    }
    out
}

/// Route policy: students only.
pub struct Student;
impl Policy for Student {
    const ROLES: &'static [Role] = &[Role::Student];
    const DESCRIPTION: &'static str = "a student";
}

#[cfg(test)]
mod tests {
    use super::*;
    use AttendanceStatus::*;

    const RULES: XpRules = XpRules { present: 10, late: 5, lesson_completed: 20 };

    /// A tiny deterministic generator for property-style loops (no extra dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, bound: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % bound
        }
        fn status(&mut self) -> AttendanceStatus {
            [Present, Late, Absent, Excused][self.next(4) as usize]
        }
    }

    fn marks(statuses: &[AttendanceStatus]) -> Vec<Mark> {
        let start = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z").unwrap().with_timezone(&Utc);
        statuses
            .iter()
            .enumerate()
            .map(|(i, &status)| Mark {
                meeting_id: MeetingId::new(),
                starts_at: start + chrono::Duration::days(7 * i as i64),
                status,
            })
            .collect()
    }

    #[test]
    fn attendance_xp_by_status() {
        assert_eq!(RULES.for_attendance(Present), 10);
        assert_eq!(RULES.for_attendance(Late), 5);
        assert_eq!(RULES.for_attendance(Absent), 0);
        assert_eq!(RULES.for_attendance(Excused), 0);
    }

    #[test]
    fn corrections_append_the_difference() {
        assert_eq!(correction(0, 10), Some(10));
        assert_eq!(correction(10, 0), Some(-10));
        assert_eq!(correction(10, 5), Some(-5));
        assert_eq!(correction(5, 5), None);
    }

    #[test]
    fn ledger_always_sums_to_the_latest_mark() {
        // Property: whatever sequence of re-marks a meeting goes through, appending `correction` each
        // time leaves the source's sum equal to what the last mark is worth, and no entry is zero.
        let mut rng = Lcg(7);
        for _ in 0..500 {
            let mut ledger = Vec::new();
            let mut last = Absent;
            for _ in 0..rng.next(8) + 1 {
                last = rng.status();
                let current: i64 = ledger.iter().sum();
                if let Some(d) = correction(current, RULES.for_attendance(last)) {
                    ledger.push(d);
                }
            }
            assert_eq!(ledger.iter().sum::<i64>(), RULES.for_attendance(last), "{ledger:?}");
            assert!(ledger.iter().all(|d| *d != 0));
        }
    }

    #[test]
    fn level_curve() {
        let table =
            [(0, 1), (99, 1), (100, 2), (299, 2), (300, 3), (599, 3), (600, 4), (1000, 5), (1499, 5), (1500, 6)];
        for (xp, lvl) in table {
            assert_eq!(level(xp), lvl, "xp {xp}");
        }
        assert_eq!(level(-20), 1);
        assert_eq!([1, 2, 3, 4, 5].map(level_threshold), [0, 100, 300, 600, 1000]);
    }

    #[test]
    fn level_is_monotonic_and_brackets_xp() {
        let mut rng = Lcg(42);
        let mut xps: Vec<i64> = (0..2000).map(|_| rng.next(5_000_000) as i64).collect();
        xps.extend([i64::MAX / 2, 1 << 40, 4_999_999_950]);
        xps.sort();
        let mut prev = 1;
        for xp in xps {
            let l = level(xp);
            assert!(l >= prev, "level fell at {xp}");
            assert!(level_threshold(l) <= xp && xp < level_threshold(l + 1), "xp {xp} level {l}");
            prev = l;
        }
        assert_eq!(level(i64::MAX), 429_496_730);
    }

    #[test]
    fn streak_counts_back_from_the_latest_meeting() {
        assert_eq!(streak(&[]), 0);
        assert_eq!(streak(&marks(&[Present, Late, Present])), 3);
        assert_eq!(streak(&marks(&[Present, Absent, Present, Late])), 2);
        assert_eq!(streak(&marks(&[Present, Present, Absent])), 0);
        // Excused neither breaks nor extends.
        assert_eq!(streak(&marks(&[Present, Excused, Present])), 2);
        assert_eq!(streak(&marks(&[Absent, Excused])), 0);
        assert_eq!(streak(&marks(&[Present, Present, Excused])), 2);
    }

    #[test]
    fn streak_ignores_input_order() {
        let mut rng = Lcg(3);
        for _ in 0..300 {
            let statuses: Vec<_> = (0..rng.next(10)).map(|_| rng.status()).collect();
            let mut ms = marks(&statuses);
            let expected = streak(&ms);
            // Reference: the same rule spelled out over the statuses in meeting order.
            let reference =
                statuses.iter().rev().filter(|s| **s != Excused).take_while(|s| s.attended()).count() as i64;
            assert_eq!(expected, reference, "{statuses:?}");
            for i in (1..ms.len()).rev() {
                ms.swap(i, rng.next(i as u64 + 1) as usize);
            }
            assert_eq!(streak(&ms), expected);
        }
    }

    #[test]
    fn perfect_attendance_needs_one_attended_and_no_absence() {
        assert!(perfect_attendance(&marks(&[Present, Late, Excused])));
        assert!(!perfect_attendance(&marks(&[Present, Absent, Present])));
        assert!(!perfect_attendance(&marks(&[Excused])));
        assert!(!perfect_attendance(&[]));
    }

    #[test]
    fn badge_conditions() {
        assert_eq!(attendance_badges(Present, 1), [Badge::FirstLesson]);
        assert_eq!(attendance_badges(Late, 5), [Badge::FirstLesson, Badge::Streak5]);
        assert!(attendance_badges(Absent, 0).is_empty());
        assert!(xp_badges(999).is_empty());
        assert_eq!(xp_badges(1000), [Badge::Xp1000]);
        for b in [Badge::FirstLesson, Badge::Streak5, Badge::PerfectAttendance, Badge::Xp1000] {
            assert_eq!(Badge::from_column(b.as_str()).unwrap(), b);
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
    }

    #[test]
    fn ties_share_a_rank() {
        assert_eq!(ranks(&[30, 20, 20, 10]), [1, 2, 2, 4]);
        assert_eq!(ranks(&[5, 5, 5]), [1, 1, 1]);
        assert!(ranks(&[]).is_empty());
    }
}
