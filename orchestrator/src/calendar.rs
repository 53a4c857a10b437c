//! Calendars in iCalendar text (RFC 5545): the `.ics` attached to lesson mail (iTIP, RFC 5546:
//! `METHOD:REQUEST` to invite or update, `METHOD:CANCEL` with the same `UID` and a higher `SEQUENCE`) and
//! each user's private feed.
//!
//! Layout: this file writes a calendar — events with their times in one IANA zone (`DTSTART;TZID=…`, or
//! UTC `…Z` times for UTC), and the `VTIMEZONE` that RFC 5545 requires for that `TZID`, generated from
//! chrono-tz's transitions over the events' years; text escaped, lines folded at 75 octets, CRLF. Pure: the
//! caller passes the time stamp. `feed` holds the feed's token routes and what it lists.

pub mod feed;

use chrono::{DateTime, Datelike, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

/// The handles the calendar handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub config: std::sync::Arc<crate::config::Config>,
}

/// The iTIP method of a calendar sent by mail (`Publish` for feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Publish,
    Request,
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Publish => "PUBLISH",
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// Someone named in an event: the organizer or an attendee.
#[derive(Debug, Clone)]
pub struct Person {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct Event {
    /// Stable across updates and the cancellation of the same lesson.
    pub uid: String,
    /// Higher in every later message about the same `uid`.
    pub sequence: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub summary: String,
    pub description: Option<String>,
    pub url: Option<String>,
    pub cancelled: bool,
    pub organizer: Option<Person>,
    pub attendees: Vec<Person>,
}

/// A whole calendar: its events' times written in `zone`.
pub struct Calendar<'a> {
    pub method: Method,
    /// A feed's display name (`X-WR-CALNAME`).
    pub name: Option<&'a str>,
    pub zone: Tz,
    /// `DTSTAMP`: when this calendar was written.
    pub stamp: DateTime<Utc>,
    pub events: &'a [Event],
}

/// The calendar as RFC 5545 text: CRLF line ends, folded lines.
pub fn write(cal: &Calendar<'_>) -> String {
    let mut lines: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        "PRODID:-//liveclass//liveclass//EN".into(),
        "CALSCALE:GREGORIAN".into(),
        format!("METHOD:{}", cal.method.as_str()),
    ];
    if let Some(name) = cal.name {
        lines.push(format!("X-WR-CALNAME:{}", escape(name)));
    }
    let utc = cal.zone == Tz::UTC;
    if !utc {
        lines.push(format!("X-WR-TIMEZONE:{}", cal.zone.name()));
        let first = cal.events.iter().map(|e| e.start).min().unwrap_or(cal.stamp);
        let last = cal.events.iter().map(|e| e.end).max().unwrap_or(cal.stamp);
        let year = |t: DateTime<Utc>| t.with_timezone(&cal.zone).year();
        lines.extend(vtimezone(cal.zone, year(first), year(last)));
    }
    let time = |prop: &str, t: DateTime<Utc>| {
        if utc {
            format!("{prop}:{}", t.format("%Y%m%dT%H%M%SZ"))
        } else {
            format!("{prop};TZID={}:{}", cal.zone.name(), t.with_timezone(&cal.zone).format("%Y%m%dT%H%M%S"))
        }
    };
    for e in cal.events {
        lines.push("BEGIN:VEVENT".into());
        lines.push(format!("UID:{}", escape(&e.uid)));
        lines.push(format!("SEQUENCE:{}", e.sequence.max(0)));
        lines.push(format!("DTSTAMP:{}", cal.stamp.format("%Y%m%dT%H%M%SZ")));
        lines.push(time("DTSTART", e.start));
        lines.push(time("DTEND", e.end));
        lines.push(format!("SUMMARY:{}", escape(&e.summary)));
        if let Some(d) = &e.description {
            lines.push(format!("DESCRIPTION:{}", escape(d)));
        }
        if let Some(u) = &e.url {
            lines.push(format!("URL:{u}"));
        }
        let cancelled = e.cancelled || cal.method == Method::Cancel;
        lines.push(format!("STATUS:{}", if cancelled { "CANCELLED" } else { "CONFIRMED" }));
        if let Some(o) = &e.organizer {
            lines.push(format!("ORGANIZER;CN={}:mailto:{}", param(&o.name), o.email));
        }
        for a in &e.attendees {
            lines.push(format!(
                "ATTENDEE;CN={};ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=FALSE:mailto:{}",
                param(&a.name),
                a.email
            ));
        }
        lines.push("END:VEVENT".into());
    }
    lines.push("END:VCALENDAR".into());
    let mut out = String::new();
    for line in &lines {
        fold_into(&mut out, line);
    }
    out
}

/// The `VTIMEZONE` of `zone` for the years `from..=to`: the observance in force on 1 January of `from`, then
/// every transition until the end of `to`, each as `STANDARD` or `DAYLIGHT` with its local onset (`DTSTART`, in
/// the offset before it), `TZOFFSETFROM`, `TZOFFSETTO` and `TZNAME`. Explicit onsets instead of `RRULE`s: exact
/// for the years covered whatever the zone's history, and every client reads them.
fn vtimezone(zone: Tz, from: i32, to: i32) -> Vec<String> {
    let start = zone.with_ymd_and_hms(from, 1, 1, 0, 0, 0).earliest().map(|t| t.with_timezone(&Utc));
    let end = zone.with_ymd_and_hms(to.saturating_add(1), 1, 1, 0, 0, 0).earliest().map(|t| t.with_timezone(&Utc));
    let (Some(start), Some(end)) = (start, end) else {
        return Vec::new();
    };
    let mut lines = vec!["BEGIN:VTIMEZONE".to_string(), format!("TZID:{}", zone.name())];
    let mut before = Observance::at(zone, start);
    before.push(&mut lines, start, &before);
    for (at, after) in transitions(zone, start, end) {
        after.push(&mut lines, at, &before);
        before = after;
    }
    lines.push("END:VTIMEZONE".into());
    lines
}

/// The offset rules in force at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observance {
    /// Total offset from UTC, seconds.
    offset: i32,
    dst: bool,
    abbreviation: Option<String>,
}

impl Observance {
    fn at(zone: Tz, t: DateTime<Utc>) -> Self {
        let o = zone.offset_from_utc_datetime(&t.naive_utc());
        let offset = (o.base_utc_offset() + o.dst_offset()).num_seconds();
        Observance {
            offset: i32::try_from(offset).unwrap_or(0),
            dst: !o.dst_offset().is_zero(),
            abbreviation: o.abbreviation().map(String::from),
        }
    }

    /// The observance starting at `at`, coming from `before`.
    fn push(&self, lines: &mut Vec<String>, at: DateTime<Utc>, before: &Observance) {
        let kind = if self.dst { "DAYLIGHT" } else { "STANDARD" };
        let onset: NaiveDateTime = at.naive_utc() + TimeDelta::seconds(i64::from(before.offset));
        lines.push(format!("BEGIN:{kind}"));
        lines.push(format!("DTSTART:{}", onset.format("%Y%m%dT%H%M%S")));
        lines.push(format!("TZOFFSETFROM:{}", utc_offset(before.offset)));
        lines.push(format!("TZOFFSETTO:{}", utc_offset(self.offset)));
        if let Some(name) = &self.abbreviation {
            lines.push(format!("TZNAME:{}", escape(name)));
        }
        lines.push(format!("END:{kind}"));
    }
}

/// Every instant in `[from, to)` where `zone`'s observance changes, with the observance after it: days are
/// scanned, and a day whose end differs from its start is bisected to the second.
fn transitions(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, Observance)> {
    let mut out = Vec::new();
    let day = TimeDelta::days(1);
    let mut t = from;
    let mut current = Observance::at(zone, t);
    while t < to {
        let next = (t + day).min(to);
        let there = Observance::at(zone, next);
        if there != current {
            // The first second whose observance differs from `current`.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if Observance::at(zone, mid) == current { lo = mid } else { hi = mid }
            }
            current = Observance::at(zone, hi);
            out.push((hi, current.clone()));
            // A second change within the same day (rare) is found from `hi` on.
            t = hi;
            continue;
        }
        t = next;
    }
    out
}

/// `+0100`, `-0330`, `+053028` (seconds only when there are any).
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if sec == 0 { format!("{sign}{h:02}{m:02}") } else { format!("{sign}{h:02}{m:02}{sec:02}") }
}

/// TEXT value escaping (RFC 5545 §3.3.11).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A parameter value (`CN=`): quoted, without the characters a quoted value can't hold.
fn param(value: &str) -> String {
    let clean: String = value.chars().filter(|c| *c != '"' && !c.is_control()).collect();
    format!("\"{clean}\"")
}

/// Appends `line` folded (§3.1): at most 75 octets per physical line, continuation lines starting with a
/// space, never splitting a UTF-8 character; each line ends in CRLF.
fn fold_into(out: &mut String, line: &str) {
    let mut budget = 75;
    let mut used = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if used + n > budget {
            out.push_str("\r\n ");
            budget = 74;
            used = 0;
        }
        out.push(c);
        used += n;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn lesson() -> Event {
        Event {
            uid: "booking-1@liveclass.test".into(),
            sequence: 7,
            start: at("2027-03-03T08:00:00Z"),
            end: at("2027-03-03T09:00:00Z"),
            summary: "Lesson with Ana; algebra, part 2".into(),
            description: Some("Line one\nline two".into()),
            url: Some("https://school.test/#/bookings/1".into()),
            cancelled: false,
            organizer: Some(Person { name: "School".into(), email: "no-reply@school.test".into() }),
            attendees: vec![Person { name: "Ben \"B\" Tutor".into(), email: "ben@school.test".into() }],
        }
    }

    /// Unfolds and splits into logical lines.
    fn logical(text: &str) -> Vec<String> {
        text.replace("\r\n ", "").split("\r\n").filter(|l| !l.is_empty()).map(String::from).collect()
    }

    #[test]
    fn an_invitation_in_berlin_time_with_its_vtimezone() {
        let events = [lesson()];
        let text = write(&Calendar {
            method: Method::Request,
            name: None,
            zone: chrono_tz::Europe::Berlin,
            stamp: at("2027-03-01T12:00:00Z"),
            events: &events,
        });
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(!text.replace("\r\n", "").contains('\n'), "CRLF only");
        for physical in text.split("\r\n") {
            assert!(physical.len() <= 75, "{physical:?}");
        }
        let lines = logical(&text);
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(has("METHOD:REQUEST"));
        assert!(has("DTSTART;TZID=Europe/Berlin:20270303T090000"), "{lines:?}");
        assert!(has("DTEND;TZID=Europe/Berlin:20270303T100000"));
        assert!(has("DTSTAMP:20270301T120000Z"));
        assert!(has("SEQUENCE:7"));
        assert!(has("SUMMARY:Lesson with Ana\\; algebra\\, part 2"));
        assert!(has("DESCRIPTION:Line one\\nline two"));
        assert!(has("STATUS:CONFIRMED"));
        assert!(has("ORGANIZER;CN=\"School\":mailto:no-reply@school.test"));
        assert!(has(
            "ATTENDEE;CN=\"Ben B Tutor\";ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=FALSE:mailto:ben@school.test"
        ));
        // 2027 in Berlin: CET on 1 January, CEST from 28 March 02:00, CET from 31 October 03:00.
        let tz: Vec<&str> = lines
            .iter()
            .skip_while(|l| *l != "BEGIN:VTIMEZONE")
            .take_while(|l| *l != "END:VTIMEZONE")
            .map(String::as_str)
            .collect();
        assert_eq!(
            tz,
            [
                "BEGIN:VTIMEZONE",
                "TZID:Europe/Berlin",
                "BEGIN:STANDARD",
                "DTSTART:20270101T000000",
                "TZOFFSETFROM:+0100",
                "TZOFFSETTO:+0100",
                "TZNAME:CET",
                "END:STANDARD",
                "BEGIN:DAYLIGHT",
                "DTSTART:20270328T020000",
                "TZOFFSETFROM:+0100",
                "TZOFFSETTO:+0200",
                "TZNAME:CEST",
                "END:DAYLIGHT",
                "BEGIN:STANDARD",
                "DTSTART:20271031T030000",
                "TZOFFSETFROM:+0200",
                "TZOFFSETTO:+0100",
                "TZNAME:CET",
                "END:STANDARD",
            ]
        );
    }

    #[test]
    fn a_cancellation_and_utc_times() {
        let events = [lesson()];
        let text = write(&Calendar {
            method: Method::Cancel,
            name: Some("Lessons"),
            zone: Tz::UTC,
            stamp: at("2027-03-01T12:00:00Z"),
            events: &events,
        });
        let lines = logical(&text);
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(has("METHOD:CANCEL") && has("STATUS:CANCELLED") && has("X-WR-CALNAME:Lessons"));
        assert!(has("DTSTART:20270303T080000Z"), "{lines:?}");
        assert!(!text.contains("VTIMEZONE"), "UTC times need no VTIMEZONE");
    }

    #[test]
    fn zones_without_transitions_and_southern_ones() {
        let lines = vtimezone(chrono_tz::Asia::Tokyo, 2027, 2027);
        assert_eq!(lines.iter().filter(|l| l.starts_with("BEGIN:")).count(), 2, "{lines:?}");
        assert!(lines.contains(&"TZOFFSETTO:+0900".to_string()));
        // Sydney: daylight time on 1 January, standard from April, daylight again from October.
        let lines = vtimezone(chrono_tz::Australia::Sydney, 2027, 2027);
        let kinds: Vec<&str> = lines.iter().filter(|l| l.starts_with("BEGIN:")).map(String::as_str).collect();
        assert_eq!(kinds, ["BEGIN:VTIMEZONE", "BEGIN:DAYLIGHT", "BEGIN:STANDARD", "BEGIN:DAYLIGHT"]);
        assert!(lines.contains(&"DTSTART:20270404T030000".to_string()), "{lines:?}");
        // Kathmandu's offset has minutes; a zone's half-hour offset is written as such.
        assert!(vtimezone(chrono_tz::Asia::Kathmandu, 2027, 2027).contains(&"TZOFFSETTO:+0545".to_string()));
        assert_eq!(utc_offset(-(3 * 3600 + 30 * 60)), "-0330");
        assert_eq!(utc_offset(5 * 3600 + 30 * 60 + 28), "+053028");
    }

    #[test]
    fn folding_never_splits_a_character() {
        let mut out = String::new();
        fold_into(&mut out, &format!("SUMMARY:{}", "é".repeat(100)));
        for physical in out.split("\r\n").filter(|l| !l.is_empty()) {
            assert!(physical.len() <= 75, "{physical:?}");
        }
        assert_eq!(out.replace("\r\n ", ""), format!("SUMMARY:{}\r\n", "é".repeat(100)));
    }
}
