//! Presence in media rooms from LiveKit's webhooks: attendance segments, and booked lessons started and
//! ended by who is actually in the room.
//!
//! `POST /api/v1/webhooks/livekit` verifies a delivery as LiveKit signs it (`rooms::webhook`): a forged,
//! tampered, stale or unsigned one is 401 and changes nothing. Each event id is claimed in `webhook_events`
//! in the handling transaction, so duplicates have no second effect. `participant_joined` opens a segment
//! (or reopens the last one if the participant left less than [`MERGE_GAP_SECS`] ago: a reconnect) and, in
//! a `lesson:` room, counts as the participant arriving (both in → the lesson starts);
//! `participant_left` closes the open segment (a missing one is tolerated); `room_finished` closes every
//! open segment and ends a running lesson by presence (`bookings::lifecycle::finish`). In a class meeting's
//! room the instructor's first arrival starts the meeting (`MeetingStarted`, pushed to the room). A sweep ([`reconcile_loop`], every minute
//! with LiveKit) closes segments whose participant the server no longer lists.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::{
    auth::{AnyRole, Authed},
    bookings::{self, BookingStatus, lifecycle, policy},
    clock::SharedClock,
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    ids::{BookingId, ClassId, MeetingId, TenantId, UserId},
    outbox::{self, Outbox},
};

/// Why a presence event couldn't be applied: what it names is broken, or storage failed. An HTTP answer only
/// at the edge (the LiveKit webhook).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Booking(#[from] bookings::BookingError),
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Booking(e) => e.into(),
            MediaError::Storage(e) => e.into(),
        }
    }
}

/// The handles the media handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub outbox: crate::outbox::Outbox,
    pub config: std::sync::Arc<crate::config::Config>,
}

/// A rejoin within this many seconds of leaving continues the same segment.
pub const MERGE_GAP_SECS: i64 = 60;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MediaWebhookAck {
    pub received: bool,
    pub duplicate: bool,
}

/// LiveKit's webhook endpoint (configure LiveKit to post here with this server's API key).
#[utoipa::path(post, path = "/api/v1/webhooks/livekit", tag = "media",
    request_body(content = String, content_type = "application/webhook+json"),
    params(("Authorization" = String, Header, description = "LiveKit's signed JWT (no Bearer prefix)")),
    responses((status = 200, body = MediaWebhookAck), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn webhook(
    State(Ctx { db, clock, outbox, config, .. }): State<Ctx>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<MediaWebhookAck>> {
    let (Some(key), Some(secret)) = (&config.livekit_api_key, &config.livekit_api_secret) else {
        return Err(ApiError::not_found("livekit_not_configured", "this server doesn't use LiveKit"));
    };
    let creds = rooms::Credentials { api_key: key.clone(), api_secret: secret.expose().to_string() };
    let header = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = clock.now();
    let event = rooms::webhook::verify(header, &body, &creds, now.timestamp())
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_webhook", e.to_string()))?;
    let mut tx = db.begin().await?;
    let fresh = crate::idempotency::first_webhook_delivery(tx.conn(), "livekit", &event.id, &event.kind, now).await?;
    if fresh {
        handle(tx.conn(), &event, now).await?;
    }
    tx.commit().await?;
    outbox.notify();
    Ok(Json(MediaWebhookAck { received: true, duplicate: !fresh }))
}

/// The booking behind a `lesson:<id>` room, with its tenant.
async fn lesson(conn: &mut AnyConnection, room: &str) -> Result<Option<bookings::Booking>, MediaError> {
    let Some(id) = room.strip_prefix("lesson:").and_then(|id| id.parse::<BookingId>().ok()) else { return Ok(None) };
    let row = sqlx::query("SELECT tenant_id FROM bookings WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let tenant = TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?;
    Ok(Some(bookings::load(conn, tenant, id, db::Db::lock_clause(conn)).await?))
}

/// The meeting behind a `meeting:<id>` room: (tenant, meeting, class, instructor).
async fn meeting_of(
    conn: &mut AnyConnection,
    room: &str,
) -> Result<Option<(TenantId, MeetingId, ClassId, UserId)>, MediaError> {
    let Some(id) = room.strip_prefix("meeting:").and_then(|id| id.parse::<MeetingId>().ok()) else { return Ok(None) };
    let row = sqlx::query(
        "SELECT m.tenant_id, c.id AS class_id, c.instructor_id FROM meetings m JOIN classes c ON c.id = m.class_id
         WHERE m.id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok((
            TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?,
            id,
            ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
            UserId::from_column(&r.try_get::<String, _>("instructor_id")?)?,
        ))
    })
    .transpose()
}

async fn handle(conn: &mut AnyConnection, e: &rooms::webhook::Event, now: DateTime<Utc>) -> Result<(), MediaError> {
    let Some(room) = e.room.as_deref() else { return Ok(()) };
    let user = e.participant.as_deref().and_then(|p| p.parse::<UserId>().ok());
    // A class meeting: attendance segments only (the instructor confirms attendance from the proposal).
    if let Some((tenant, meeting_id, class_id, instructor_id)) = meeting_of(conn, room).await? {
        return match (e.kind.as_str(), user) {
            ("participant_joined", Some(user)) => {
                if user == instructor_id {
                    let before: i64 =
                        sqlx::query("SELECT COUNT(*) FROM media_segments WHERE room = $1 AND user_id = $2")
                            .bind(room)
                            .bind(user.to_string())
                            .fetch_one(&mut *conn)
                            .await?
                            .try_get(0)?;
                    if before == 0 {
                        let event = DomainEvent::MeetingStarted { class_id, meeting_id, instructor_id };
                        outbox::append(conn, tenant, now, &event).await?;
                    }
                }
                open_segment(conn, tenant, room, user, now).await
            }
            ("participant_left", Some(user)) => close_segments(conn, room, Some(user), now).await,
            ("room_finished", _) => close_segments(conn, room, None, now).await,
            _ => Ok(()),
        };
    }
    // Only rooms we made are ours; anything else on the LiveKit project is ignored.
    let Some(mut b) = lesson(conn, room).await? else { return Ok(()) };
    let tenant = b.tenant_id;
    match (e.kind.as_str(), user) {
        ("participant_joined", Some(user)) => {
            open_segment(conn, tenant, room, user, now).await?;
            let pol = policy::load(conn, tenant).await?;
            bookings::room::arrived(conn, &mut b, user, &pol, now).await?;
        }
        ("participant_left", Some(user)) => close_segments(conn, room, Some(user), now).await?,
        ("room_finished", _) => {
            close_segments(conn, room, None, now).await?;
            if b.status == BookingStatus::InProgress {
                let pol = policy::load(conn, tenant).await?;
                lifecycle::finish(conn, &mut b, &pol, now).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

async fn open_segment(
    conn: &mut AnyConnection,
    tenant: TenantId,
    room: &str,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<(), MediaError> {
    let last =
        sqlx::query("SELECT id, left_at FROM media_segments WHERE room = $1 AND user_id = $2 ORDER BY id DESC LIMIT 1")
            .bind(room)
            .bind(user.to_string())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(r) = last {
        let id: i64 = r.try_get("id")?;
        match r.try_get::<Option<String>, _>("left_at")? {
            None => return Ok(()), // Already in (a duplicate or out-of-order join).
            Some(left) if (now - db::parse_ts(&left)?).num_seconds() <= MERGE_GAP_SECS => {
                sqlx::query("UPDATE media_segments SET left_at = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                return Ok(());
            }
            Some(_) => {}
        }
    }
    sqlx::query(
        "INSERT INTO media_segments (tenant_id, room, user_id, source, joined_at) VALUES ($1, $2, $3, 'livekit', $4)",
    )
    .bind(tenant.to_string())
    .bind(room)
    .bind(user.to_string())
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

async fn close_segments(
    conn: &mut AnyConnection,
    room: &str,
    user: Option<UserId>,
    now: DateTime<Utc>,
) -> Result<(), MediaError> {
    sqlx::query(
        "UPDATE media_segments SET left_at = $1 WHERE room = $2 AND left_at IS NULL AND ($3 IS NULL OR user_id = $3)",
    )
    .bind(db::ts(now))
    .bind(room)
    .bind(user.map(|u| u.to_string()))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Segment {
    pub user_id: UserId,
    pub joined_at: DateTime<Utc>,
    /// Absent while still in the room.
    pub left_at: Option<DateTime<Utc>>,
    pub minutes: i64,
}

/// Who was in a booked lesson's media room and when (merged across reconnects): its participants and staff.
#[utoipa::path(get, path = "/api/v1/bookings/{id}/segments", tag = "media", params(("id" = BookingId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<Segment>), (status = 404, body = ErrorBody)))]
pub async fn segments(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Vec<Segment>>> {
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let b = bookings::load(&mut conn, auth.tenant_id, id, "").await?;
    bookings::party(&mut conn, &auth, &b).await?;
    let rows = sqlx::query("SELECT user_id, joined_at, left_at FROM media_segments WHERE room = $1 ORDER BY id")
        .bind(format!("lesson:{id}"))
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let joined_at = db::parse_ts(&r.try_get::<String, _>("joined_at")?)?;
        let left_at = r.try_get::<Option<String>, _>("left_at")?.map(|s| db::parse_ts(&s)).transpose()?;
        out.push(Segment {
            user_id: UserId::from_column(&r.try_get::<String, _>("user_id")?)?,
            joined_at,
            left_at,
            minutes: (left_at.unwrap_or(now) - joined_at).num_minutes(),
        });
    }
    Ok(Json(out))
}

/// Closes the open segments of participants the media server no longer has (a `participant_left` that
/// never came). Returns how many segments it closed.
pub async fn reconcile_once(db: &Db, media: &dyn rooms::MediaBackend, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let rooms_open: Vec<String> = sqlx::query("SELECT DISTINCT room FROM media_segments WHERE left_at IS NULL")
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("room"))
        .collect::<Result<_, _>>()?;
    let mut closed = 0;
    for room in rooms_open {
        // Network first, outside any transaction; then one short write.
        let present = media.participants(&room).await?;
        let mut tx = db.begin().await?;
        let open = sqlx::query("SELECT id, user_id FROM media_segments WHERE room = $1 AND left_at IS NULL")
            .bind(&room)
            .fetch_all(tx.conn())
            .await?;
        for r in open {
            let user: String = r.try_get("user_id")?;
            if !present.contains(&user) {
                sqlx::query("UPDATE media_segments SET left_at = $1 WHERE id = $2 AND left_at IS NULL")
                    .bind(db::ts(now))
                    .bind(r.try_get::<i64, _>("id")?)
                    .execute(tx.conn())
                    .await?;
                closed += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(closed)
}

/// [`reconcile_once`] every `every` until shutdown.
pub async fn reconcile_loop(
    db: Db,
    media: Arc<dyn rooms::MediaBackend>,
    clock: SharedClock,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        match reconcile_once(&db, media.as_ref(), clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "closed media segments whose participant had gone"),
            Err(e) => tracing::warn!(error = %e, "media reconciliation failed; retrying later"),
        }
    }
}

/// Presence from the embedded SFU, handled exactly as LiveKit's webhooks are (same events, same effects),
/// until shutdown. A failed event is retried a few times, then logged.
pub async fn embedded_events(
    db: Db,
    clock: SharedClock,
    outbox: Outbox,
    mut events: tokio::sync::mpsc::UnboundedReceiver<rooms::sfu::SfuEvent>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use rooms::sfu::SfuEvent as E;
    loop {
        let ev = tokio::select! {
            ev = events.recv() => match ev { Some(ev) => ev, None => return },
            _ = shutdown.changed() => return,
        };
        let now = clock.now();
        let (kind, room, participant) = match ev {
            E::RoomStarted { room } => ("room_started", room, None),
            E::RoomFinished { room } => ("room_finished", room, None),
            E::ParticipantJoined { room, identity, .. } => ("participant_joined", room, Some(identity)),
            E::ParticipantLeft { room, identity, .. } => ("participant_left", room, Some(identity)),
            E::TrackPublished { room, identity, .. } => ("track_published", room, Some(identity)),
        };
        let event = rooms::webhook::Event {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.into(),
            room: Some(room),
            participant,
            created_at: now.timestamp(),
        };
        for attempt in 1..=3 {
            let applied = async {
                let mut tx = db.begin().await?;
                handle(tx.conn(), &event, now).await?;
                tx.commit().await?;
                Ok::<_, MediaError>(())
            }
            .await;
            match applied {
                Ok(()) => break,
                Err(e) if attempt == 3 => tracing::warn!(error = ?e, kind, "media event not applied"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await,
            }
        }
        outbox.notify();
    }
}
