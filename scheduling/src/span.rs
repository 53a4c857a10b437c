//! Half-open UTC spans `[start, end)` and the little set algebra slot listing needs.
//!
//! Kept private: callers speak in `Slot`, `Busy` and windows; spans are how the listing composes them.

use chrono::{DateTime, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

pub(crate) type Span = (DateTime<Utc>, DateTime<Utc>);

/// Sorts and merges overlapping or touching spans; drops empty ones.
pub(crate) fn normalize(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|(s, e)| s < e);
    spans.sort();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `a − b`, both normalized; the result is normalized.
pub(crate) fn subtract(a: &[Span], b: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut j = 0;
    for &(mut s, e) in a {
        while j < b.len() && b[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            if b[k].0 > s {
                out.push((s, b[k].0));
            }
            s = s.max(b[k].1);
            k += 1;
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

fn at_second(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn offset_at(tz: Tz, t: DateTime<Utc>) -> TimeDelta {
    TimeDelta::seconds(i64::from(tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()))
}

/// Every instant whose wall-clock reading in `tz` lies in `[start, end)`.
///
/// This one definition is how DST is handled everywhere in the crate: wall-clock times skipped by a
/// spring-forward contribute no instants, and wall-clock times repeated by a fall-back contribute both
/// occurrences. So Berlin's 01:00–04:00 is 2 hours long on 2026-03-29 and 4 hours long on 2026-10-25,
/// 02:00–03:00 is empty on the first day, and 02:00–02:30 on the second is two half-hour pieces.
pub(crate) fn wall_clock_to_utc(tz: Tz, start: NaiveDateTime, end: NaiveDateTime) -> Vec<Span> {
    if end <= start {
        return Vec::new();
    }
    // Offsets in use lie within −12 h … +14 h, so every such instant lies in this UTC span.
    let lo = start.and_utc() - TimeDelta::hours(15);
    let hi = end.and_utc() + TimeDelta::hours(15);
    let mut out = Vec::new();
    let bounds = offset_changes(tz, lo, hi);
    let mut seg_start = lo;
    for seg_end in bounds.into_iter().chain(std::iter::once(hi)) {
        // Within a segment the offset is constant, so wall time is a plain shift of UTC.
        let off = offset_at(tz, seg_start);
        let s = (start - off).and_utc().max(seg_start);
        let e = (end - off).and_utc().min(seg_end);
        if s < e {
            out.push((s, e));
        }
        seg_start = seg_end;
    }
    normalize(out)
}

/// Instants in `(lo, hi)` where `tz`'s UTC offset changes (the first instant of the new offset).
///
/// chrono-tz does not expose its transition table, so this samples every 6 hours and bisects to the
/// second; no zone changes offset twice within 6 hours.
fn offset_changes(tz: Tz, lo: DateTime<Utc>, hi: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let step = TimeDelta::hours(6);
    let mut out = Vec::new();
    let mut p = lo;
    while p < hi {
        let q = (p + step).min(hi);
        let off_p = offset_at(tz, p);
        if off_p != offset_at(tz, q) {
            // Transitions fall on whole seconds: bisect over seconds for the first one with the new offset.
            let (mut l, mut r) = (p.timestamp(), q.timestamp());
            while r - l > 1 {
                let mid = l + (r - l) / 2;
                if offset_at(tz, at_second(mid)) == off_p {
                    l = mid;
                } else {
                    r = mid;
                }
            }
            let r = at_second(r);
            out.push(r);
        }
        p = q;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use chrono_tz::Europe::Berlin;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn local(d: (i32, u32, u32), h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(d.0, d.1, d.2).unwrap().and_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn subtract_cuts_holes_and_edges() {
        let a = vec![(utc("2026-01-01T00:00:00Z"), utc("2026-01-01T10:00:00Z"))];
        let b = vec![
            (utc("2025-12-31T23:00:00Z"), utc("2026-01-01T01:00:00Z")),
            (utc("2026-01-01T03:00:00Z"), utc("2026-01-01T04:00:00Z")),
            (utc("2026-01-01T09:00:00Z"), utc("2026-01-01T11:00:00Z")),
        ];
        assert_eq!(
            subtract(&a, &b),
            vec![
                (utc("2026-01-01T01:00:00Z"), utc("2026-01-01T03:00:00Z")),
                (utc("2026-01-01T04:00:00Z"), utc("2026-01-01T09:00:00Z")),
            ]
        );
    }

    #[test]
    fn spring_forward_window_loses_the_skipped_hour() {
        let spans = wall_clock_to_utc(Berlin, local((2026, 3, 29), 1, 0), local((2026, 3, 29), 4, 0));
        assert_eq!(spans, vec![(utc("2026-03-29T00:00:00Z"), utc("2026-03-29T02:00:00Z"))]);
        assert!(wall_clock_to_utc(Berlin, local((2026, 3, 29), 2, 0), local((2026, 3, 29), 3, 0)).is_empty());
        // A window starting inside the gap begins when the clock jumps to 03:00.
        let spans = wall_clock_to_utc(Berlin, local((2026, 3, 29), 2, 30), local((2026, 3, 29), 4, 0));
        assert_eq!(spans, vec![(utc("2026-03-29T01:00:00Z"), utc("2026-03-29T02:00:00Z"))]);
    }

    #[test]
    fn fall_back_window_gains_the_repeated_hour() {
        let spans = wall_clock_to_utc(Berlin, local((2026, 10, 25), 1, 0), local((2026, 10, 25), 4, 0));
        assert_eq!(spans, vec![(utc("2026-10-24T23:00:00Z"), utc("2026-10-25T03:00:00Z"))]);
        // Both occurrences of 02:00–02:30, and not the first 02:30–03:00 between them.
        let spans = wall_clock_to_utc(Berlin, local((2026, 10, 25), 2, 0), local((2026, 10, 25), 2, 30));
        assert_eq!(
            spans,
            vec![
                (utc("2026-10-25T00:00:00Z"), utc("2026-10-25T00:30:00Z")),
                (utc("2026-10-25T01:00:00Z"), utc("2026-10-25T01:30:00Z")),
            ]
        );
    }
}
