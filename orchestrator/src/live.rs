//! Live rooms: the path booked lessons (`lesson:<booking>`) and class meetings (`meeting:<id>`) share.
//!
//! Each domain decides who sits where in its own room (`bookings::room::access`, `classes::room::access`);
//! what follows is common: a student's rights from their consents ([`student_access`]), the room's window
//! ([`ensure_open`]), and the media join token for a seat ([`media_join`]). The caller's user record is
//! loaded once per join and handed to each step.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::{
    bookings::policy::BookingPolicy,
    consent::{self, ConsentScope},
    error::ApiError,
    identity::users::User,
};

/// Why a seat can't be taken now: a minor's missing consent, or the room's window. An HTTP answer only at the
/// edge (403 `consent_required`, 409 `outside_lesson_window`).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Consent(#[from] consent::ConsentError),
    #[error("the room is open from {opens} to {closes}")]
    Closed { opens: DateTime<Utc>, closes: DateTime<Utc> },
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::Consent(e) => e.into(),
            LiveError::Closed { .. } => ApiError::conflict("outside_lesson_window", e.to_string()),
        }
    }
}

/// What the media join handlers use (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub media: std::sync::Arc<dyn rooms::MediaBackend>,
}

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

/// A student's seat: a minor needs live-video consent to be in at all; chat and recording follow their own
/// consents.
pub async fn student_access(conn: &mut AnyConnection, student: &User) -> Result<Access, LiveError> {
    consent::ensure(conn, student, &[ConsentScope::LiveVideo]).await?;
    let chat = consent::ensure(conn, student, &[ConsentScope::Chat]).await.is_ok();
    let recording = consent::ensure(conn, student, &[ConsentScope::Recording]).await.is_ok();
    Ok(Access { seat: Seat::Student, chat, recording })
}

/// A live room opens `join_lead_minutes` before `starts` and closes `auto_end_grace_minutes` after `ends`.
pub fn ensure_open(
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
    pol: &BookingPolicy,
    now: DateTime<Utc>,
) -> Result<(), LiveError> {
    let opens = starts - Duration::minutes(pol.join_lead_minutes);
    let closes = ends + Duration::minutes(pol.auto_end_grace_minutes);
    if now < opens || now >= closes {
        return Err(LiveError::Closed { opens, closes });
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

/// Mints a media join token for `user` in `room` with `a`'s rights: the tutor (or instructor) publishes and
/// is room admin, a student publishes (data only with chat consent), observers subscribe unseen. The
/// metadata carries the seat and the consents, plus `extra` (what the room is for).
pub fn media_join(
    media: &dyn rooms::MediaBackend,
    room: &str,
    user: &User,
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
    let identity = user.id.to_string();
    let request = rooms::JoinRequest {
        room,
        identity: &identity,
        name: &user.display_name,
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
