//! Each user's private calendar feed: `GET /api/v1/calendar/{token}.ics`, for calendar apps to subscribe to
//! (`webcal://`), listing their lessons and class meetings from 30 days back to a year ahead — as tutor,
//! instructor or student, and a parent's children's.
//!
//! The token is the only credential (calendar apps send no headers): 32 random bytes, shown once when created
//! or rotated (`POST /api/v1/me/calendar-token`), stored as its SHA-256, revoked by `DELETE`. One per user; an
//! unknown, revoked or malformed token, or a disabled user's, is 404. Every query is scoped to the token's
//! tenant.

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{Calendar, Ctx, Event, Method};
use crate::{
    audit,
    auth::{AnyRole, Authed, random_key_hex},
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users,
    ids::{BookingId, TenantId, UserId},
    mailer::notices::{School, Site},
    request::ClientInfo,
};

/// How far back and ahead the feed lists.
const BACK_DAYS: i64 = 30;
const AHEAD_DAYS: i64 = 366;
/// At most this many lessons and as many meetings.
const MAX_EVENTS: i64 = 500;

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The feed's addresses; the token is in them and shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct CalendarFeed {
    /// `https://…/api/v1/calendar/<token>.ics`
    pub url: String,
    /// The same as `webcal://…`, which calendar apps open as a subscription.
    pub webcal_url: String,
    pub created_at: DateTime<Utc>,
}

/// Creates the caller's calendar feed, or rotates it: the previous address stops working. The answer is the
/// only time the address is shown.
#[utoipa::path(post, path = "/api/v1/me/calendar-token", tag = "calendar", security(("bearer" = [])),
    responses((status = 201, body = CalendarFeed), (status = 401, body = ErrorBody)))]
pub async fn create_token(
    State(Ctx { db, clock, config, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
) -> ApiResult<(StatusCode, Json<CalendarFeed>)> {
    let now = clock.now();
    let token = random_key_hex();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO calendar_tokens (user_id, tenant_id, token_hash, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at
         WHERE calendar_tokens.tenant_id = excluded.tenant_id",
    )
    .bind(auth.user_id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(hash(&token))
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "calendar_feed.created", &client)
            .target("user", auth.user_id),
    )
    .await?;
    tx.commit().await?;
    let url = format!("{}/api/v1/calendar/{token}.ics", Site::from_config(&config).public_url);
    let webcal_url = match url.split_once("://") {
        Some((_, rest)) => format!("webcal://{rest}"),
        None => url.clone(),
    };
    Ok((StatusCode::CREATED, Json(CalendarFeed { url, webcal_url, created_at: now })))
}

/// Revokes the caller's calendar feed: its address answers 404 from now on. No feed: nothing to do.
#[utoipa::path(delete, path = "/api/v1/me/calendar-token", tag = "calendar", security(("bearer" = [])),
    responses((status = 204, description = "revoked (or there was none)"), (status = 401, body = ErrorBody)))]
pub async fn revoke_token(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
) -> ApiResult<StatusCode> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let gone = sqlx::query("DELETE FROM calendar_tokens WHERE tenant_id = $1 AND user_id = $2")
        .bind(auth.tenant_id.to_string())
        .bind(auth.user_id.to_string())
        .execute(tx.conn())
        .await?
        .rows_affected();
    if gone > 0 {
        audit::record(
            tx.conn(),
            now,
            audit::Entry::new(auth.tenant_id, Some(auth.user_id), "calendar_feed.revoked", &client)
                .target("user", auth.user_id),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn not_found() -> ApiError {
    ApiError::not_found("calendar_not_found", "no such calendar feed")
}

/// A user's calendar feed (`text/calendar`), by the token in its address; no other authentication.
#[utoipa::path(get, path = "/api/v1/calendar/{token}", tag = "calendar",
    params(("token" = String, Path, description = "the feed's token followed by `.ics`")),
    responses((status = 200, content_type = "text/calendar", body = String, description = "an iCalendar (RFC 5545) feed"),
        (status = 404, body = ErrorBody)))]
pub async fn feed(State(Ctx { db, clock, config, .. }): State<Ctx>, Path(token): Path<String>) -> ApiResult<Response> {
    let token = token.strip_suffix(".ics").unwrap_or(&token);
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let row = sqlx::query(
        "SELECT c.tenant_id, c.user_id FROM calendar_tokens c
         JOIN users u ON u.id = c.user_id AND u.tenant_id = c.tenant_id
         WHERE c.token_hash = $1 AND u.disabled_at IS NULL",
    )
    .bind(hash(&token.to_ascii_lowercase()))
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(not_found)?;
    let tenant = TenantId::from_column(&row.try_get::<String, _>("tenant_id")?)?;
    let user = UserId::from_column(&row.try_get::<String, _>("user_id")?)?;
    let me = users::get_or_404(&mut conn, tenant, user, now).await.map_err(|_| not_found())?;
    let zone = users::zone_of(&mut conn, tenant, user).await?;
    let site = Site::from_config(&config);
    let school = School::load(&mut conn, tenant).await?;
    let mut events = lessons(&mut conn, &site, &school, tenant, user, now).await?;
    events.extend(meetings(&mut conn, &site, &school, tenant, user, now).await?);
    events.sort_by_key(|e| e.start);
    let name = format!("{}: {}", school.name, me.display_name);
    let text =
        super::write(&Calendar { method: Method::Publish, name: Some(&name), zone, stamp: now, events: &events });
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
            (header::CONTENT_DISPOSITION, "inline; filename=\"liveclass.ics\""),
        ],
        text,
    )
        .into_response())
}

/// The user's lessons in the feed's window: as tutor, as student, or their children's (not cancelled).
async fn lessons(
    conn: &mut AnyConnection,
    site: &Site,
    school: &School,
    tenant: TenantId,
    user: UserId,
    now: DateTime<Utc>,
) -> ApiResult<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT b.id, b.tutor_id, b.student_id, b.starts_at, b.ends_at, b.minutes, b.reschedules,
                tu.display_name AS tutor, st.display_name AS student
         FROM bookings b
         JOIN users tu ON tu.id = b.tutor_id AND tu.tenant_id = b.tenant_id
         JOIN users st ON st.id = b.student_id AND st.tenant_id = b.tenant_id
         WHERE b.tenant_id = $1 AND b.status IN ('confirmed', 'in_progress', 'completed')
           AND b.ends_at >= $2 AND b.starts_at < $3
           AND (b.tutor_id = $4 OR b.student_id = $4
                OR b.student_id IN (SELECT child_id FROM parent_links WHERE tenant_id = $1 AND parent_id = $4))
         ORDER BY b.starts_at, b.id LIMIT $5",
    )
    .bind(tenant.to_string())
    .bind(db::ts(now - Duration::days(BACK_DAYS)))
    .bind(db::ts(now + Duration::days(AHEAD_DAYS)))
    .bind(user.to_string())
    .bind(MAX_EVENTS)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = BookingId::from_column(&r.try_get::<String, _>("id")?)?;
        let (tutor, student): (String, String) = (r.try_get("tutor")?, r.try_get("student")?);
        let summary = if r.try_get::<String, _>("tutor_id")? == user.to_string() {
            format!("Lesson with {student}")
        } else if r.try_get::<String, _>("student_id")? == user.to_string() {
            format!("Lesson with {tutor}")
        } else {
            format!("{student}'s lesson with {tutor}")
        };
        let link = site.link(school, &format!("bookings/{id}"));
        out.push(Event {
            uid: site.lesson_uid(id),
            sequence: r.try_get("reschedules")?,
            start: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
            end: db::parse_ts(&r.try_get::<String, _>("ends_at")?)?,
            summary,
            description: Some(format!("{}-minute lesson: {link}", r.try_get::<i64, _>("minutes")?)),
            url: Some(link),
            cancelled: false,
            organizer: None,
            attendees: Vec::new(),
        });
    }
    Ok(out)
}

/// The class meetings in the feed's window: of classes the user teaches, is enrolled in, or a child of theirs is
/// (classes not cancelled).
async fn meetings(
    conn: &mut AnyConnection,
    site: &Site,
    school: &School,
    tenant: TenantId,
    user: UserId,
    now: DateTime<Utc>,
) -> ApiResult<Vec<Event>> {
    let rows = sqlx::query(
        "SELECT m.id, m.class_id, m.starts_at, m.ends_at, c.title
         FROM meetings m JOIN classes c ON c.id = m.class_id AND c.tenant_id = m.tenant_id
         WHERE m.tenant_id = $1 AND c.status <> 'cancelled' AND m.ends_at >= $2 AND m.starts_at < $3
           AND (c.instructor_id = $4
                OR c.id IN (SELECT class_id FROM enrollments WHERE tenant_id = $1 AND (student_id = $4
                    OR student_id IN (SELECT child_id FROM parent_links WHERE tenant_id = $1 AND parent_id = $4))))
         ORDER BY m.starts_at, m.id LIMIT $5",
    )
    .bind(tenant.to_string())
    .bind(db::ts(now - Duration::days(BACK_DAYS)))
    .bind(db::ts(now + Duration::days(AHEAD_DAYS)))
    .bind(user.to_string())
    .bind(MAX_EVENTS)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.try_get("id")?;
        let class: String = r.try_get("class_id")?;
        let link = site.link(school, &format!("classes/{class}"));
        out.push(Event {
            uid: site.meeting_uid(&id),
            sequence: 0,
            start: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
            end: db::parse_ts(&r.try_get::<String, _>("ends_at")?)?,
            summary: r.try_get("title")?,
            description: Some(format!("Class meeting: {link}")),
            url: Some(link),
            cancelled: false,
            organizer: None,
            attendees: Vec::new(),
        });
    }
    Ok(out)
}
