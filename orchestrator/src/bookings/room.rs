//! Who may enter a booked lesson's room, and with which rights: one rule for the real-time room
//! (`lesson:<booking>` on the WebSocket) and for media (the join token from `POST /bookings/{id}/join`).
//!
//! The rule: the booked tutor and student (a minor only with a parent's live-video consent) and staff
//! (observers: they see and hear, unseen, and can't publish), while the booking is confirmed or running,
//! from the policy's `join_lead_minutes` before the start until `auto_end_grace_minutes` after the end.
//! Linked parents observe too when the tenant's policy says so (`parents_observe`).

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{Booking, BookingStatus, Ctx, load, policy};
use crate::{
    auth::{AnyRole, AuthUser, Authed},
    consent::{self, ConsentScope},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users,
    ids::BookingId,
};

/// A participant's place in a lesson or meeting (`tutor` is also a class's instructor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Seat {
    Tutor,
    Student,
    Observer,
}

/// What the rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub seat: Seat,
    /// Chat, hands and reactions (a minor needs chat consent).
    pub chat: bool,
    /// May be recorded (a minor needs recording consent); carried to clients in the token metadata.
    pub recording: bool,
}

/// The rule above, for `auth` and booking `b`, at `now`. Errors carry the codes clients see
/// (`forbidden`, `lesson_not_open`, `outside_lesson_window`, `consent_required`).
pub async fn access(
    conn: &mut AnyConnection,
    auth: &AuthUser,
    b: &Booking,
    pol: &policy::BookingPolicy,
    now: DateTime<Utc>,
) -> ApiResult<Access> {
    let seat = if auth.user_id == b.tutor_id {
        Seat::Tutor
    } else if auth.user_id == b.student_id {
        Seat::Student
    } else if auth.is_staff()
        || (pol.parents_observe && users::is_parent_of(conn, auth.tenant_id, auth.user_id, b.student_id).await?)
    {
        Seat::Observer
    } else {
        return Err(ApiError::forbidden("forbidden", "only the lesson's tutor and student, and staff, join"));
    };
    if !matches!(b.status, BookingStatus::Confirmed | BookingStatus::InProgress) {
        return Err(ApiError::conflict("lesson_not_open", format!("the booking is {}", b.status.as_str())));
    }
    ensure_open(b.starts_at, b.ends_at, pol, now)?;
    if seat != Seat::Student {
        return Ok(Access { seat, chat: true, recording: true });
    }
    student_access(conn, auth, now).await
}

/// A student's seat: a minor needs live-video consent to be in at all; chat and recording follow their own
/// consents.
pub async fn student_access(conn: &mut AnyConnection, auth: &AuthUser, now: DateTime<Utc>) -> ApiResult<Access> {
    let student = users::get_or_404(conn, auth.tenant_id, auth.user_id, now).await?;
    consent::ensure(conn, &student, &[ConsentScope::LiveVideo]).await?;
    let chat = consent::ensure(conn, &student, &[ConsentScope::Chat]).await.is_ok();
    let recording = consent::ensure(conn, &student, &[ConsentScope::Recording]).await.is_ok();
    Ok(Access { seat: Seat::Student, chat, recording })
}

/// A participant entered the lesson (the real-time room, or the media room by LiveKit's webhook): their
/// first entry is recorded (the no-show check reads it), and once both participants are in, a confirmed
/// lesson starts (before the lead window it can't; entering is still recorded).
pub async fn arrived(
    conn: &mut AnyConnection,
    b: &mut Booking,
    user: crate::ids::UserId,
    pol: &policy::BookingPolicy,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    if user != b.tutor_id && user != b.student_id {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO booking_joins (booking_id, user_id, joined_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(b.id.to_string())
    .bind(user.to_string())
    .bind(crate::db::ts(now))
    .execute(&mut *conn)
    .await?;
    let both: i64 = sqlx::query("SELECT COUNT(*) FROM booking_joins WHERE booking_id = $1")
        .bind(b.id.to_string())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if both == 2 && b.status == BookingStatus::Confirmed {
        let _ = super::lifecycle::start_lesson(conn, b, pol, None, now).await;
    }
    Ok(())
}

/// A live room opens `join_lead_minutes` before `starts` and closes `auto_end_grace_minutes` after `ends`.
pub fn ensure_open(
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
    pol: &policy::BookingPolicy,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let opens = starts - Duration::minutes(pol.join_lead_minutes);
    let closes = ends + Duration::minutes(pol.auto_end_grace_minutes);
    if now < opens || now >= closes {
        return Err(ApiError::conflict("outside_lesson_window", format!("the room is open from {opens} to {closes}")));
    }
    Ok(())
}

/// How long a media join token lasts.
const TOKEN_TTL_SECS: i64 = 2 * 3600;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaJoin {
    /// `livekit`, or `none` when no media server is configured (the token is well-formed but unused).
    pub backend: String,
    /// The media server to connect to with the token; absent without a media server.
    pub url: Option<String>,
    /// A LiveKit access token (HS256; `video` grants for this room).
    pub token: String,
    pub room: String,
    pub seat: Seat,
    pub expires_at: DateTime<Utc>,
}

/// A media join token for the caller's seat in a booked lesson: the tutor publishes and moderates, the
/// student publishes, staff observe (subscribe only, hidden). The token's metadata carries the role, the
/// booking and the minor's chat and recording consents for the client.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/join", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = MediaJoin), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn join(
    State(cx): State<Ctx>,
    State(media): State<std::sync::Arc<dyn rooms::MediaBackend>>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<MediaJoin>> {
    let now = cx.clock.now();
    let mut conn = cx.db.pool().acquire().await?;
    let b = load(&mut conn, auth.tenant_id, id, "").await?;
    super::party(&mut conn, &auth, &b).await?;
    let pol = policy::load(&mut conn, auth.tenant_id).await?;
    let a = access(&mut conn, &auth, &b, &pol, now).await?;
    let name = users::get_or_404(&mut conn, auth.tenant_id, auth.user_id, now).await?.display_name;
    let room = b.room.clone().unwrap_or_else(|| format!("lesson:{}", b.id));
    let metadata = serde_json::json!({ "booking_id": b.id });
    Ok(Json(media_join(media.as_ref(), &room, &auth, &name, a, metadata, now)))
}

/// Mints a media join token for `auth` in `room` with `a`'s rights: the tutor (or instructor) publishes and
/// is room admin, a student publishes (data only with chat consent), observers subscribe unseen. The
/// metadata carries the seat and the consents, plus `extra` (what the room is for).
pub fn media_join(
    media: &dyn rooms::MediaBackend,
    room: &str,
    auth: &AuthUser,
    name: &str,
    a: Access,
    mut extra: serde_json::Value,
    now: DateTime<Utc>,
) -> MediaJoin {
    let permissions = match a.seat {
        Seat::Tutor => rooms::Permissions { publish: true, subscribe: true, data: true, admin: true, hidden: false },
        Seat::Student => {
            rooms::Permissions { publish: true, subscribe: true, data: a.chat, admin: false, hidden: false }
        }
        Seat::Observer => {
            rooms::Permissions { publish: false, subscribe: true, data: false, admin: false, hidden: true }
        }
    };
    extra["role"] = serde_json::json!(a.seat);
    extra["chat"] = a.chat.into();
    extra["recording"] = a.recording.into();
    let identity = auth.user_id.to_string();
    let request = rooms::JoinRequest {
        room,
        identity: &identity,
        name,
        metadata: extra.to_string(),
        permissions,
        now_unix: now.timestamp(),
        ttl_secs: TOKEN_TTL_SECS,
    };
    let joined = media.join(&request);
    MediaJoin {
        backend: joined.backend.to_string(),
        url: joined.url,
        token: joined.token,
        room: room.to_string(),
        seat: a.seat,
        expires_at: DateTime::from_timestamp(joined.expires_at_unix, 0).unwrap_or(now),
    }
}
