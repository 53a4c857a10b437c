//! Tutors' bookable time: availability (weekly windows and exceptions in the tutor's own zone), lesson
//! lengths with prices, buffers, notice, daily cap and horizon; and the slot listing a student sees in
//! their own zone. The rules themselves are the `scheduling` crate's; this module stores them and feeds
//! them the busy time from `bookings`.

use std::str::FromStr;

use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use scheduling::{Availability, Busy, Exception, Policy, ScheduleError, WeeklyRule};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::{BookingError, BookingResult, BookingStatus, Ctx};
use crate::{
    audit,
    auth::{AnyRole, Authed, Role},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    identity::users,
    ids::{BookingId, TenantId, UserId},
    request::ClientInfo,
};

/// A lesson length a tutor offers, and its price in minor units of the tutor's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LessonLength {
    pub minutes: u32,
    pub price_minor: i64,
}

/// Every `weekday` (`mon`..`sun`) from `start` to `end` (`HH:MM`, tutor's wall clock; an end of `00:00`
/// is midnight).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklyWindow {
    pub weekday: String,
    pub start: String,
    pub end: String,
}

/// A change on particular dates. `time_off`: two UTC instants; `time_off_local`: two wall-clock readings in
/// the tutor's zone (`2026-12-24T00:00`); `extra_hours`: a `date` with `start`/`end` like a weekly window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DateException {
    TimeOff { start: DateTime<Utc>, end: DateTime<Utc> },
    TimeOffLocal { start: String, end: String },
    ExtraHours { date: NaiveDate, start: String, end: String },
}

/// What a tutor publishes. Replaced as a whole by `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityDoc {
    /// IANA zone of the weekly windows, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// ISO 4217, e.g. `EUR`.
    pub currency: String,
    pub lengths: Vec<LessonLength>,
    #[serde(default)]
    pub buffer_before_minutes: i64,
    #[serde(default)]
    pub buffer_after_minutes: i64,
    #[serde(default)]
    pub min_notice_minutes: i64,
    /// Most lessons on one of the tutor's local dates; absent: no cap.
    #[serde(default)]
    pub max_per_day: Option<u32>,
    /// How far ahead lessons can be booked (default 60 days).
    #[serde(default = "default_horizon")]
    pub horizon_days: i64,
    pub weekly: Vec<WeeklyWindow>,
    #[serde(default)]
    pub exceptions: Vec<DateException>,
}

fn default_horizon() -> i64 {
    60
}

/// A tutor's stored profile, parsed for the scheduling rules.
#[derive(Debug, Clone)]
pub struct Profile {
    pub tutor_id: UserId,
    pub doc: AvailabilityDoc,
    pub tz: Tz,
    pub availability: Availability,
    pub policy: Policy,
}

impl Profile {
    /// The price of a lesson of `minutes`, or 422 when the tutor doesn't offer that length.
    pub fn price(&self, minutes: u32) -> BookingResult<i64> {
        self.doc.lengths.iter().find(|l| l.minutes == minutes).map(|l| l.price_minor).ok_or_else(|| {
            let offered: Vec<String> = self.doc.lengths.iter().map(|l| l.minutes.to_string()).collect();
            BookingError::invalid(
                "length_not_offered",
                format!("this tutor offers lessons of {} minutes", offered.join(", ")),
            )
        })
    }
}

fn invalid(message: impl Into<String>) -> BookingError {
    BookingError::invalid("invalid_availability", message)
}

fn hhmm(s: &str) -> BookingResult<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| invalid(format!("{s:?} is not a time of day (HH:MM)")))
}

fn local(s: &str) -> BookingResult<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| invalid(format!("{s:?} is not a local date and time (YYYY-MM-DDTHH:MM)")))
}

pub fn schedule_error(e: ScheduleError) -> BookingError {
    let code = match e {
        ScheduleError::UnknownLessonLength(_) => "length_not_offered",
        ScheduleError::EmptyRange | ScheduleError::RangeTooLong { .. } => "invalid_range",
        _ => "invalid_availability",
    };
    BookingError::invalid(code, e.to_string())
}

impl AvailabilityDoc {
    /// Validates and converts for the scheduling rules.
    pub fn parse(self, tutor_id: UserId) -> BookingResult<Profile> {
        let tz =
            Tz::from_str(&self.timezone).map_err(|_| invalid("timezone must be an IANA zone such as Europe/Berlin"))?;
        billing::Currency::from_str(&self.currency).map_err(|e| invalid(e.to_string()))?;
        if self.lengths.is_empty() || self.lengths.len() > 8 {
            return Err(invalid("offer 1 to 8 lesson lengths"));
        }
        if self.lengths.iter().any(|l| !(0..=10_000_000).contains(&l.price_minor)) {
            return Err(invalid("prices are 0 to 10000000 minor units"));
        }
        let mut minutes: Vec<u32> = self.lengths.iter().map(|l| l.minutes).collect();
        minutes.sort_unstable();
        if minutes.windows(2).any(|w| w[0] == w[1]) || minutes.iter().any(|&m| !(15..=480).contains(&m)) {
            return Err(invalid("lesson lengths are distinct, 15 to 480 minutes"));
        }
        let day = 24 * 60;
        for (name, v, max) in [
            ("buffer_before_minutes", self.buffer_before_minutes, 240),
            ("buffer_after_minutes", self.buffer_after_minutes, 240),
            ("min_notice_minutes", self.min_notice_minutes, 30 * day),
            ("horizon_days", self.horizon_days, 365),
        ] {
            if !(0..=max).contains(&v) {
                return Err(invalid(format!("{name} is 0 to {max}")));
            }
        }
        if self.horizon_days == 0 {
            return Err(invalid("horizon_days is at least 1"));
        }
        if self.max_per_day == Some(0) || self.max_per_day.is_some_and(|m| m > 48) {
            return Err(invalid("max_per_day is 1 to 48, or absent"));
        }
        if self.weekly.len() > 100 || self.exceptions.len() > 500 {
            return Err(invalid("at most 100 weekly windows and 500 exceptions"));
        }
        let mut rules = Vec::with_capacity(self.weekly.len());
        for w in &self.weekly {
            let weekday = Weekday::from_str(&w.weekday)
                .map_err(|_| invalid(format!("{:?} is not a weekday (mon..sun)", w.weekday)))?;
            rules.push(WeeklyRule { weekday, start: hhmm(&w.start)?, end: hhmm(&w.end)? });
        }
        let mut exceptions = Vec::with_capacity(self.exceptions.len());
        for x in &self.exceptions {
            exceptions.push(match x {
                DateException::TimeOff { start, end } => Exception::TimeOffUtc { start: *start, end: *end },
                DateException::TimeOffLocal { start, end } => {
                    Exception::TimeOffLocal { start: local(start)?, end: local(end)? }
                }
                DateException::ExtraHours { date, start, end } => {
                    Exception::ExtraHours { date: *date, start: hhmm(start)?, end: hhmm(end)? }
                }
            });
        }
        let availability = Availability { tz, rules, exceptions };
        availability.validate().map_err(schedule_error)?;
        let policy = Policy {
            lesson_minutes: minutes,
            buffer_before: Duration::minutes(self.buffer_before_minutes),
            buffer_after: Duration::minutes(self.buffer_after_minutes),
            min_notice: Duration::minutes(self.min_notice_minutes),
            max_per_day: self.max_per_day,
            horizon: Duration::days(self.horizon_days),
        };
        policy.validate().map_err(schedule_error)?;
        Ok(Profile { tutor_id, doc: self, tz, availability, policy })
    }
}

/// Loads the tutor's profile. `lock` (`Db::for_update()`) takes the tutor's booking lock: every change
/// to the tutor's calendar takes it before checking for conflicts.
pub async fn load_profile(
    conn: &mut AnyConnection,
    tenant: TenantId,
    tutor: UserId,
    lock: &str,
) -> BookingResult<Profile> {
    let sql = format!(
        "SELECT timezone, currency, lengths, weekly, exceptions, buffer_before_min, buffer_after_min, min_notice_min,
                max_per_day, horizon_days
         FROM tutor_profiles WHERE tenant_id = $1 AND tutor_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(tutor.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(BookingError::TutorNotBookable)?;
    let json = |col: &str| -> BookingResult<serde_json::Value> {
        let text: String = row.try_get(col)?;
        Ok(serde_json::from_str(&text)?)
    };
    let doc = AvailabilityDoc {
        timezone: row.try_get("timezone")?,
        currency: row.try_get("currency")?,
        lengths: serde_json::from_value(json("lengths")?)?,
        weekly: serde_json::from_value(json("weekly")?)?,
        exceptions: serde_json::from_value(json("exceptions")?)?,
        buffer_before_minutes: row.try_get("buffer_before_min")?,
        buffer_after_minutes: row.try_get("buffer_after_min")?,
        min_notice_minutes: row.try_get("min_notice_min")?,
        max_per_day: row.try_get::<Option<i64>, _>("max_per_day")?.map(|m| m as u32),
        horizon_days: row.try_get("horizon_days")?,
    };
    doc.parse(tutor)
}

/// The tutor's taken time overlapping `[from, to)`: confirmed, running and completed lessons, and holds
/// not yet expired at `now`. `except` leaves one booking out (the one being rescheduled).
pub async fn busy(
    conn: &mut AnyConnection,
    tutor: UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    except: Option<BookingId>,
) -> BookingResult<Vec<Busy>> {
    busy_where(conn, "tutor_id", tutor, from, to, now, except).await
}

/// Like [`busy`], for a student's own lessons (a student can't be in two lessons at once).
pub async fn student_busy(
    conn: &mut AnyConnection,
    student: UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    except: Option<BookingId>,
) -> BookingResult<Vec<Busy>> {
    busy_where(conn, "student_id", student, from, to, now, except).await
}

async fn busy_where(
    conn: &mut AnyConnection,
    column: &'static str,
    who: UserId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    except: Option<BookingId>,
) -> BookingResult<Vec<Busy>> {
    let sql = format!(
        "SELECT starts_at, ends_at FROM bookings
         WHERE {column} = $1 AND starts_at < $2 AND ends_at > $3 AND id <> $5
           AND (status IN {} OR (status IN {} AND expires_at > $4))",
        BookingStatus::OCCUPYING,
        BookingStatus::HOLDING
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(who.to_string())
        .bind(db::ts(to))
        .bind(db::ts(from))
        .bind(db::ts(now))
        .bind(except.map(|b| b.to_string()).unwrap_or_default())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Busy {
                start: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
                end: db::parse_ts(&r.try_get::<String, _>("ends_at")?)?,
            })
        })
        .collect()
}

/// The busy window that can affect slots starting in `[from, to)`: buffers, lesson lengths and the daily
/// cap's local days all fit in two days either side.
fn busy_range(from: DateTime<Utc>, to: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    (from - Duration::days(2), to + Duration::days(2))
}

/// Checks that a lesson of `minutes` starting at `start` is bookable now: it must be exactly one of the
/// slots the listing would offer (so every rule — availability, buffers, notice, horizon, daily cap —
/// applies identically). Call with the tutor's lock held.
pub async fn ensure_offered(
    conn: &mut AnyConnection,
    profile: &Profile,
    start: DateTime<Utc>,
    minutes: u32,
    now: DateTime<Utc>,
    except: Option<BookingId>,
) -> BookingResult<()> {
    profile.price(minutes)?;
    let (bf, bt) = busy_range(start, start + Duration::minutes(1));
    let taken = busy(conn, profile.tutor_id, bf, bt, now, except).await?;
    let range = (start, start + Duration::minutes(1));
    let offered = scheduling::slots(&profile.availability, &profile.policy, &taken, range, minutes, now)
        .map_err(schedule_error)?;
    if offered.iter().any(|s| s.start == start) {
        Ok(())
    } else {
        Err(BookingError::refused(
            "slot_unavailable",
            "that time is not bookable: taken, held, outside the tutor's hours, or against the notice, horizon or daily limit",
        ))
    }
}

/// Publishes (replaces) a tutor's availability and booking rules: the tutor themself, or staff.
#[utoipa::path(put, path = "/api/v1/tutors/{id}/availability", tag = "bookings", params(("id" = UserId, Path)),
    request_body = AvailabilityDoc, security(("bearer" = [])),
    responses((status = 200, body = AvailabilityDoc), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_availability(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Path(id): Path<UserId>,
    Json(body): Json<AvailabilityDoc>,
) -> ApiResult<Json<AvailabilityDoc>> {
    let now = clock.now();
    if !(auth.is_staff() || auth.user_id == id) {
        return Err(ApiError::forbidden("forbidden", "tutors publish their own availability; staff anyone's"));
    }
    let profile = body.parse(id)?;
    let doc = &profile.doc;
    let mut tx = db.begin().await?;
    let tutor = users::get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    if tutor.role != Role::Tutor {
        return Err(ApiError::unprocessable("not_a_tutor", "only tutors take bookings"));
    }
    sqlx::query(
        "INSERT INTO tutor_profiles (tutor_id, tenant_id, timezone, currency, lengths, weekly, exceptions,
             buffer_before_min, buffer_after_min, min_notice_min, max_per_day, horizon_days, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (tutor_id) DO UPDATE SET timezone = excluded.timezone, currency = excluded.currency,
             lengths = excluded.lengths, weekly = excluded.weekly, exceptions = excluded.exceptions,
             buffer_before_min = excluded.buffer_before_min, buffer_after_min = excluded.buffer_after_min,
             min_notice_min = excluded.min_notice_min, max_per_day = excluded.max_per_day,
             horizon_days = excluded.horizon_days, updated_at = excluded.updated_at
         WHERE tutor_profiles.tenant_id = excluded.tenant_id",
    )
    .bind(id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(&doc.timezone)
    .bind(&doc.currency)
    .bind(to_json(&doc.lengths))
    .bind(to_json(&doc.weekly))
    .bind(to_json(&doc.exceptions))
    .bind(doc.buffer_before_minutes)
    .bind(doc.buffer_after_minutes)
    .bind(doc.min_notice_minutes)
    .bind(doc.max_per_day.map(i64::from))
    .bind(doc.horizon_days)
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let entry = audit::Entry::new(auth.tenant_id, Some(auth.user_id), "tutor.availability", &client).target("user", id);
    audit::record(tx.conn(), now, entry).await?;
    tx.commit().await?;
    Ok(Json(profile.doc))
}

/// A stored JSON column (plain data: serializing can't fail).
fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

/// A tutor a student can book: who, in which zone, and what they offer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TutorCard {
    pub id: UserId,
    pub display_name: String,
    /// The zone of the tutor's weekly hours.
    pub timezone: String,
    pub currency: String,
    pub lengths: Vec<LessonLength>,
}

/// The tenant's bookable tutors (those who published availability), by name; any member of the tenant.
#[utoipa::path(get, path = "/api/v1/tutors", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = Vec<TutorCard>)))]
pub async fn list(State(db): State<Db>, auth: Authed<AnyRole>) -> ApiResult<Json<Vec<TutorCard>>> {
    let mut conn = db.pool().acquire().await?;
    let rows = sqlx::query(
        "SELECT u.id, u.display_name, p.timezone, p.currency, p.lengths
         FROM tutor_profiles p JOIN users u ON u.id = p.tutor_id AND u.tenant_id = p.tenant_id
         WHERE p.tenant_id = $1 AND u.role = 'tutor' AND u.disabled_at IS NULL
         ORDER BY u.display_name, u.id",
    )
    .bind(auth.tenant_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let cards = rows
        .iter()
        .map(|r| {
            let lengths: String = r.try_get("lengths")?;
            Ok(TutorCard {
                id: UserId::from_column(&r.try_get::<String, _>("id")?)?,
                display_name: r.try_get("display_name")?,
                timezone: r.try_get("timezone")?,
                currency: r.try_get("currency")?,
                lengths: serde_json::from_str(&lengths).map_err(|_| ApiError::internal())?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(cards))
}

/// A tutor's published availability and rules (any member of the tenant).
#[utoipa::path(get, path = "/api/v1/tutors/{id}/availability", tag = "bookings", params(("id" = UserId, Path)),
    security(("bearer" = [])), responses((status = 200, body = AvailabilityDoc), (status = 404, body = ErrorBody)))]
pub async fn get_availability(
    State(Ctx { db, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<AvailabilityDoc>> {
    let mut conn = db.pool().acquire().await?;
    Ok(Json(load_profile(&mut conn, auth.tenant_id, id, "").await?.doc))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SlotQuery {
    /// First day to list, a date in the viewer's zone.
    pub from: NaiveDate,
    /// Last day to list (inclusive), at most 62 days after `from`.
    pub to: NaiveDate,
    /// The viewer's IANA zone (default: the tutor's).
    pub tz: Option<String>,
    /// Lesson length (default: the tutor's first).
    pub minutes: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotView {
    /// UTC.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The same instants on the viewer's clock (RFC 3339 with offset).
    pub local_start: String,
    pub local_end: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlotList {
    pub tutor_id: UserId,
    pub tutor_timezone: String,
    pub viewer_timezone: String,
    pub minutes: u32,
    pub price_minor: i64,
    pub currency: String,
    pub slots: Vec<SlotView>,
}

/// Bookable start times of a tutor's lessons on the viewer's days `from..=to`, in UTC and on the viewer's
/// clock. Taken, held and buffered time is left out, as are times against notice, horizon or daily cap.
#[utoipa::path(get, path = "/api/v1/tutors/{id}/slots", tag = "bookings", params(("id" = UserId, Path), SlotQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SlotList), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn slots(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
    Query(q): Query<SlotQuery>,
) -> ApiResult<Json<SlotList>> {
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let profile = load_profile(&mut conn, auth.tenant_id, id, "").await?;
    let viewer = match &q.tz {
        None => profile.tz,
        Some(tz) => Tz::from_str(tz).map_err(|_| {
            ApiError::unprocessable("invalid_timezone", "tz must be an IANA zone such as America/New_York")
        })?,
    };
    let minutes = q.minutes.unwrap_or(profile.policy.lesson_minutes[0]);
    let price_minor = profile.price(minutes)?;
    if (q.to - q.from).num_days() >= scheduling::MAX_RANGE_DAYS {
        return Err(ApiError::unprocessable(
            "invalid_range",
            format!("list at most {} days at a time", scheduling::MAX_RANGE_DAYS),
        ));
    }
    let range = scheduling::viewer_days(viewer, q.from, q.to).map_err(schedule_error)?;
    let (bf, bt) = busy_range(range.0, range.1);
    let taken = busy(&mut conn, id, bf, bt, now, None).await?;
    let found = scheduling::slots(&profile.availability, &profile.policy, &taken, range, minutes, now)
        .map_err(schedule_error)?;
    let slots = found
        .iter()
        .map(|s| {
            let z = s.in_zone(viewer);
            SlotView {
                starts_at: s.start,
                ends_at: s.end,
                local_start: z.start.to_rfc3339(),
                local_end: z.end.to_rfc3339(),
            }
        })
        .collect();
    Ok(Json(SlotList {
        tutor_id: id,
        tutor_timezone: profile.doc.timezone.clone(),
        viewer_timezone: viewer.name().to_string(),
        minutes,
        price_minor,
        currency: profile.doc.currency.clone(),
        slots,
    }))
}
