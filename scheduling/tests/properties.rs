//! Property tests: thousands of random tutors, bookings, policies and clocks, checked against a brute-force
//! oracle that knows nothing of spans or DST transitions — it asks, instant by instant, "what does the tutor's
//! wall clock say, and is that inside a window?".
//!
//! Random times sit on a 5-minute UTC grid (local rule times on a 15-minute wall-clock grid; every zone used has
//! quarter-hour offsets), so checking every 5 minutes of a candidate lesson is exact, not a sample.
//! A small xorshift generator keeps the cases deterministic without a property-testing crate.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use scheduling::{Availability, Busy, Exception, Policy, SLOT_STEP_MINUTES, Slot, WeeklyRule, slots, viewer_days};

const CASES: u64 = 3000;

struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi_inclusive: i64) -> i64 {
        lo + self.below((hi_inclusive - lo + 1) as u64) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const ZONES: &[Tz] = &[
    Tz::Europe__Berlin,
    Tz::America__New_York,
    Tz::Australia__Lord_Howe, // 30-minute DST shift
    Tz::Asia__Kathmandu,      // +05:45
    Tz::Pacific__Chatham,     // +12:45 / +13:45
    Tz::America__Santiago,    // transitions at midnight
    Tz::Asia__Tokyo,
    Tz::UTC,
];

/// DST days of the zones above in 2026, so transitions are hit often, not once in a hundred cases.
const TRANSITION_DAYS: &[(i32, u32, u32)] = &[
    (2026, 3, 8),
    (2026, 3, 29),
    (2026, 4, 5),
    (2026, 9, 6),
    (2026, 9, 27),
    (2026, 10, 4),
    (2026, 10, 25),
    (2026, 11, 1),
];

const WEEKDAYS: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

#[derive(Debug)]
struct Case {
    availability: Availability,
    policy: Policy,
    busy: Vec<Busy>,
    range: (DateTime<Utc>, DateTime<Utc>),
    lesson: u32,
    now: DateTime<Utc>,
}

fn quarter(i: i64) -> NaiveTime {
    // 96 quarters is 24:00, written 00:00 (the "end of day" end).
    NaiveTime::MIN + TimeDelta::minutes(15 * (i % 96))
}

fn five_min_grid(rng: &mut XorShift, base: DateTime<Utc>, lo_min: i64, hi_min: i64) -> DateTime<Utc> {
    base + TimeDelta::minutes(5 * rng.range(lo_min / 5, hi_min / 5))
}

fn gen_case(rng: &mut XorShift) -> Case {
    let tz = rng.pick(ZONES);
    let base_date = if rng.chance(60) {
        let (y, m, d) = rng.pick(TRANSITION_DAYS);
        NaiveDate::from_ymd_opt(y, m, d).unwrap() - TimeDelta::days(rng.range(0, 2))
    } else {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + TimeDelta::days(rng.range(0, 364))
    };
    let base = base_date.and_time(NaiveTime::MIN).and_utc();

    let mut rules = Vec::new();
    for _ in 0..rng.range(0, 7) {
        let a = rng.range(0, 95);
        let b = rng.range(a + 1, 96);
        rules.push(WeeklyRule { weekday: rng.pick(&WEEKDAYS), start: quarter(a), end: quarter(b) });
    }
    if rng.chance(30) {
        // A tutor open around the clock on the DST days exercises the skipped and repeated hours hardest.
        for w in WEEKDAYS {
            rules.push(WeeklyRule { weekday: w, start: quarter(0), end: quarter(rng.range(4, 96)) });
        }
    }
    let mut exceptions = Vec::new();
    for _ in 0..rng.range(0, 3) {
        exceptions.push(match rng.below(3) {
            0 => {
                let a = rng.range(0, 95);
                let b = rng.range(a + 1, 96);
                let date = base_date + TimeDelta::days(rng.range(-1, 4));
                Exception::ExtraHours { date, start: quarter(a), end: quarter(b) }
            }
            1 => {
                let start = five_min_grid(rng, base, -24 * 60, 4 * 24 * 60);
                Exception::TimeOffUtc { start, end: five_min_grid(rng, start, 5, 24 * 60) }
            }
            _ => {
                let start = five_min_grid(rng, base, -24 * 60, 4 * 24 * 60).naive_utc();
                let end = start + TimeDelta::minutes(5 * rng.range(1, 24 * 12));
                Exception::TimeOffLocal { start, end }
            }
        });
    }

    let mut lesson_minutes: Vec<u32> = [15, 30, 45, 60, 90].into_iter().filter(|_| rng.chance(50)).collect();
    if lesson_minutes.is_empty() {
        lesson_minutes.push(60);
    }
    let lesson = rng.pick(&lesson_minutes);
    let notice_cap = if rng.chance(80) { 24 } else { 12 * 48 };
    let policy = Policy {
        lesson_minutes,
        buffer_before: TimeDelta::minutes(5 * rng.range(0, 6)),
        buffer_after: TimeDelta::minutes(5 * rng.range(0, 6)),
        min_notice: TimeDelta::minutes(5 * rng.range(0, notice_cap)),
        max_per_day: if rng.chance(40) { None } else { Some(rng.range(0, 4) as u32) },
        horizon: TimeDelta::minutes(5 * rng.range(0, 12 * 24 * 6)),
    };

    let mut busy = Vec::new();
    for _ in 0..rng.range(0, 8) {
        let start = five_min_grid(rng, base, -24 * 60, 4 * 24 * 60);
        busy.push(Busy { start, end: five_min_grid(rng, start, 5, 180) });
    }
    let now = five_min_grid(rng, base, -2 * 24 * 60, 24 * 60);
    let from = five_min_grid(rng, base, -12 * 60, 24 * 60);
    let to = five_min_grid(rng, from, 5, 3 * 24 * 60);
    Case { availability: Availability { tz, rules, exceptions }, policy, busy, range: (from, to), lesson, now }
}

fn in_window(start: NaiveTime, end: NaiveTime, t: NaiveTime) -> bool {
    t >= start && (end == NaiveTime::MIN || t < end)
}

/// Is the tutor available at instant `p`? Read off the wall clock, no spans involved.
fn open_at(a: &Availability, p: DateTime<Utc>) -> bool {
    let local = a.tz.from_utc_datetime(&p.naive_utc()).naive_local();
    let (date, time) = (local.date(), local.time());
    let weekly = a.rules.iter().any(|r| r.weekday == date.weekday() && in_window(r.start, r.end, time));
    let extra = a.exceptions.iter().any(
        |x| matches!(*x, Exception::ExtraHours { date: xd, start, end } if xd == date && in_window(start, end, time)),
    );
    let off = a.exceptions.iter().any(|x| match *x {
        Exception::TimeOffUtc { start, end } => start <= p && p < end,
        Exception::TimeOffLocal { start, end } => start <= local && local < end,
        Exception::ExtraHours { .. } => false,
    });
    (weekly || extra) && !off
}

fn overlaps(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// The buffer rule as stated: the slot must stay out of each busy item's buffered time, and each busy item
/// must stay out of the slot's buffered time.
fn clashes(p: &Policy, s: &Slot, b: &Busy) -> bool {
    let (before, after) = (p.buffer_before, p.buffer_after);
    overlaps((s.start, s.end), (b.start - before, b.end + after))
        || overlaps((s.start - before, s.end + after), (b.start, b.end))
}

fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    tz.from_utc_datetime(&t.naive_utc()).date_naive()
}

fn busy_per_day(c: &Case) -> BTreeMap<NaiveDate, u32> {
    let mut m = BTreeMap::new();
    for b in &c.busy {
        *m.entry(local_date(c.availability.tz, b.start)).or_default() += 1;
    }
    m
}

fn oracle(c: &Case) -> Vec<Slot> {
    let step = TimeDelta::minutes(SLOT_STEP_MINUTES);
    let lesson = TimeDelta::minutes(i64::from(c.lesson));
    let per_day = busy_per_day(c);
    let mut start = DateTime::from_timestamp(c.range.0.timestamp().div_euclid(900) * 900, 0).unwrap();
    let mut out = Vec::new();
    while start < c.range.1 {
        let s = Slot { start, end: start + lesson };
        let whole_lesson_open =
            (0..i64::from(c.lesson) / 5).all(|k| open_at(&c.availability, start + TimeDelta::minutes(5 * k)));
        let ok = start >= c.range.0
            && start >= c.now + c.policy.min_notice
            && start <= c.now + c.policy.horizon
            && whole_lesson_open
            && !c.busy.iter().any(|b| clashes(&c.policy, &s, b))
            && c.policy
                .max_per_day
                .is_none_or(|max| per_day.get(&local_date(c.availability.tz, start)).copied().unwrap_or(0) < max);
        if ok {
            out.push(s);
        }
        start += step;
    }
    out
}

fn list(c: &Case, range: (DateTime<Utc>, DateTime<Utc>)) -> Vec<Slot> {
    slots(&c.availability, &c.policy, &c.busy, range, c.lesson, c.now).unwrap()
}

#[test]
fn listing_matches_the_brute_force_oracle_and_keeps_every_rule() {
    let mut nonempty = 0;
    for seed in 0..CASES {
        let mut rng = XorShift::new(seed);
        let c = gen_case(&mut rng);
        let got = list(&c, c.range);
        let lesson = TimeDelta::minutes(i64::from(c.lesson));
        let per_day = busy_per_day(&c);
        for s in &got {
            assert!(
                !c.busy.iter().any(|b| clashes(&c.policy, s, b)),
                "seed {seed}: {s:?} clashes with a busy item: {c:#?}"
            );
            assert!(s.start >= c.now + c.policy.min_notice, "seed {seed}: {s:?} inside the notice: {c:#?}");
            assert!(s.start <= c.now + c.policy.horizon, "seed {seed}: {s:?} beyond the horizon: {c:#?}");
            assert!(s.start >= c.range.0 && s.start < c.range.1, "seed {seed}: {s:?} outside the range");
            assert_eq!(s.end - s.start, lesson, "seed {seed}");
            if let Some(max) = c.policy.max_per_day {
                let day = local_date(c.availability.tz, s.start);
                // Booking this slot keeps its local day within the cap.
                assert!(per_day.get(&day).copied().unwrap_or(0) < max, "seed {seed}: {day} is full: {c:#?}");
            }
        }
        assert!(got.windows(2).all(|w| w[0].start < w[1].start), "seed {seed}: not sorted by distinct starts");
        assert_eq!(got, oracle(&c), "seed {seed}: differs from the oracle: {c:#?}");
        nonempty += usize::from(!got.is_empty());
    }
    // Guard against a generator that only ever produces empty listings (which would prove nothing).
    assert!(nonempty > CASES as usize / 4, "only {nonempty} of {CASES} cases had any slot");
}

#[test]
fn listing_is_the_same_whichever_zone_chose_the_range() {
    for seed in 0..CASES {
        let mut rng = XorShift::new(seed ^ 0xDEAD_BEEF);
        let c = gen_case(&mut rng);
        let (a, b) = (rng.pick(ZONES), rng.pick(ZONES));
        // Viewer A asks for two of their local days; viewer B's midnights cut that range elsewhere.
        let first = local_date(a, c.range.0);
        let range = viewer_days(a, first, first + TimeDelta::days(1)).unwrap();
        let whole = list(&c, range);
        let mut cuts = vec![range.0];
        let mut day = local_date(b, range.0);
        while let Ok((midnight, _)) = viewer_days(b, day, day) {
            if midnight >= range.1 {
                break;
            }
            if midnight > range.0 {
                cuts.push(midnight);
            }
            day += TimeDelta::days(1);
        }
        cuts.push(range.1);
        let pieces: Vec<Slot> = cuts.windows(2).flat_map(|w| list(&c, (w[0], w[1]))).collect();
        assert_eq!(whole, pieces, "seed {seed}: cut at {b}'s midnights {cuts:?}: {c:#?}");
        // Rendering for either viewer and back gives the same instants.
        assert!(whole.iter().all(|s| s.in_zone(a).to_utc() == *s && s.in_zone(b).to_utc() == *s), "seed {seed}");
    }
}
