//! Who may enter a booked lesson's room, and with which rights: one rule for the real-time room
//! (`lesson:<booking>` on the WebSocket) and for media (the join token from `POST /bookings/{id}/join`).
//!
//! The rule: the booked tutor and student (a minor only with a parent's live-video consent) and staff
//! (observers: they see and hear, unseen, and can't publish), while the booking is confirmed or running,
//! from the policy's `join_lead_minutes` before the start until `auto_end_grace_minutes` after the end.
//! Linked parents observe too when the tenant's policy says so (`parents_observe`).

use axum::extract::State;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{Booking, BookingResult, BookingStatus, load, policy};
use crate::{
    auth::{AnyRole, AuthUser, Authed},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users::{self, User},
    ids::BookingId,
    live::{self, Access, Ctx, MediaJoin, Seat},
};

/// The rule above, for `auth` and booking `b`, at `now`. Errors carry the codes clients see
/// (`forbidden`, `lesson_not_open`, `outside_lesson_window`, `consent_required`).
pub async fn access(
    conn: &mut AnyConnection,
    auth: &AuthUser,
    user: &User,
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
    live::ensure_open(b.starts_at, b.ends_at, pol, now)?;
    if seat != Seat::Student {
        return Ok(Access { seat, chat: true, recording: true });
    }
    Ok(live::student_access(conn, user).await?)
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
) -> BookingResult<()> {
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

/// A media join token for the caller's seat in a booked lesson: the tutor publishes and moderates, the
/// student publishes, staff observe (subscribe only, hidden). The token's metadata carries the role, the
/// booking and the minor's chat and recording consents for the client.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/join", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = MediaJoin), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn join(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<MediaJoin>> {
    let now = cx.clock.now();
    let mut conn = cx.db.pool().acquire().await?;
    let b = load(&mut conn, auth.tenant_id, id, "").await?;
    super::party(&mut conn, &auth, &b).await?;
    let pol = policy::load(&mut conn, auth.tenant_id).await?;
    let user = users::get_or_404(&mut conn, auth.tenant_id, auth.user_id, now).await?;
    let a = access(&mut conn, &auth, &user, &b, &pol, now).await?;
    let room = b.room.clone().unwrap_or_else(|| format!("lesson:{}", b.id));
    let metadata = serde_json::json!({ "booking_id": b.id });
    Ok(Json(live::media_join(cx.media.as_ref(), &room, &user, a, metadata, now)))
}
