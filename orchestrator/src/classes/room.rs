//! Who may enter a class meeting's room with which rights — one rule for the real-time room
//! (`meeting:<id>`) and for media join tokens — and the attendance proposal built from who was in the
//! media room.
//!
//! The rule: the class's instructor (host) and staff (observers in media) always; an enrolled student while
//! the class is active, a minor only with a parent's live-video consent (chat and recording consents are
//! carried along). Media tokens are only handed out inside the meeting's window (the tenant's
//! `join_lead_minutes` before the start to `auto_end_grace_minutes` after the end).

use std::collections::HashMap;

use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{AttendanceStatus, Class, ClassStatus, Meeting, Relation, load_meeting, relation, require_manager};
use crate::{
    auth::{AnyRole, AuthUser, Authed},
    bookings::policy,
    db,
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users::{self, User},
    ids::{MeetingId, UserId},
    live::{self, Access, MediaJoin, Seat},
};

/// The rule above (without the media window).
pub async fn access(conn: &mut AnyConnection, auth: &AuthUser, user: &User, class: &Class) -> ApiResult<Access> {
    let rel = relation(conn, auth, class).await?;
    match rel {
        Relation::Instructor => return Ok(Access { seat: Seat::Tutor, chat: true, recording: true }),
        Relation::Staff => return Ok(Access { seat: Seat::Observer, chat: true, recording: true }),
        Relation::Parent if policy::load(conn, auth.tenant_id).await?.parents_observe => {
            return Ok(Access { seat: Seat::Observer, chat: false, recording: true });
        }
        Relation::Student(_) => {}
        _ => {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the class's instructor, staff and enrolled students join",
            ));
        }
    }
    if class.status != ClassStatus::Active {
        return Err(ApiError::conflict("class_not_active", "the class is not running"));
    }
    Ok(live::student_access(conn, user).await?)
}

/// A media join token for the caller's seat in a class meeting, inside the meeting's window.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/join", tag = "classes", params(("id" = MeetingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = MediaJoin), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn join(
    State(cx): State<live::Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<MeetingId>,
) -> ApiResult<Json<MediaJoin>> {
    let now = cx.clock.now();
    let mut conn = cx.db.pool().acquire().await?;
    let (meeting, class) = load_meeting(&mut conn, auth.tenant_id, id, "").await?;
    let user = users::get_or_404(&mut conn, auth.tenant_id, auth.user_id, now).await?;
    let a = access(&mut conn, &auth, &user, &class).await?;
    let pol = policy::load(&mut conn, auth.tenant_id).await?;
    live::ensure_open(meeting.starts_at, meeting.ends_at, &pol, now)?;
    let extra = serde_json::json!({ "class_id": class.id, "meeting_id": meeting.id });
    Ok(Json(live::media_join(cx.media.as_ref(), &format!("meeting:{id}"), &user, a, extra, now)))
}

/// One student's proposed mark.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProposedMark {
    pub student_id: UserId,
    pub status: AttendanceStatus,
    /// Minutes in the media room during the meeting.
    pub minutes_attended: i64,
    pub first_joined_at: Option<DateTime<Utc>>,
    /// The segments behind it (reconnects already merged), unclipped.
    pub segments: Vec<Span>,
}

/// One stretch in the media room.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Span {
    pub joined_at: DateTime<Utc>,
    pub left_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Proposal {
    pub meeting_id: MeetingId,
    /// Joining more than this many minutes after the start proposes `late`.
    pub late_after_minutes: i64,
    pub marks: Vec<ProposedMark>,
}

/// Each user's stretches in a room: `(joined, left)`.
pub type Segments = HashMap<UserId, Vec<(DateTime<Utc>, DateTime<Utc>)>>;

/// Pure: the proposal from each student's segments (clipped to the meeting): no time in the room → absent;
/// first in more than `late_after` after the start → late; else present.
pub fn propose(meeting: &Meeting, students: &[UserId], segments: &Segments, late_after: Duration) -> Vec<ProposedMark> {
    students
        .iter()
        .map(|s| {
            let clipped: Vec<_> = segments
                .get(s)
                .into_iter()
                .flatten()
                .map(|&(a, b)| (a.max(meeting.starts_at), b.min(meeting.ends_at)))
                .filter(|(a, b)| b > a)
                .collect();
            let minutes_attended = clipped.iter().map(|(a, b)| (*b - *a).num_minutes()).sum();
            let first = clipped.iter().map(|(a, _)| *a).min();
            let status = match first {
                None => AttendanceStatus::Absent,
                Some(f) if f > meeting.starts_at + late_after => AttendanceStatus::Late,
                Some(_) => AttendanceStatus::Present,
            };
            let first_joined_at =
                segments.get(s).and_then(|v| v.iter().map(|(a, _)| *a).filter(|a| *a < meeting.ends_at).min());
            let segments = segments
                .get(s)
                .into_iter()
                .flatten()
                .map(|&(joined_at, left_at)| Span { joined_at, left_at })
                .collect();
            ProposedMark { student_id: *s, status, minutes_attended, first_joined_at, segments }
        })
        .collect()
}

/// The attendance the media room suggests for a meeting (instructor and staff), for the instructor to
/// confirm or correct with the usual attendance endpoints: present / late / absent with minutes attended.
#[utoipa::path(get, path = "/api/v1/meetings/{id}/attendance/proposal", tag = "classes", params(("id" = MeetingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Proposal), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn proposal(
    State(cx): State<super::Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<MeetingId>,
) -> ApiResult<Json<Proposal>> {
    let now = cx.clock.now();
    let mut conn = cx.db.pool().acquire().await?;
    let (meeting, class) = load_meeting(&mut conn, auth.tenant_id, id, "").await?;
    require_manager(relation(&mut conn, &auth, &class).await?)?;
    let students: Vec<UserId> =
        sqlx::query("SELECT student_id FROM enrollments WHERE class_id = $1 ORDER BY student_id")
            .bind(class.id.to_string())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| UserId::from_column(&r.try_get::<String, _>("student_id")?))
            .collect::<Result<_, _>>()?;
    let rows = sqlx::query("SELECT user_id, joined_at, left_at FROM media_segments WHERE room = $1")
        .bind(format!("meeting:{id}"))
        .fetch_all(&mut *conn)
        .await?;
    let mut segments = Segments::new();
    for r in rows {
        let Ok(user) = r.try_get::<String, _>("user_id")?.parse::<UserId>() else { continue };
        let joined = db::parse_ts(&r.try_get::<String, _>("joined_at")?)?;
        let left = r.try_get::<Option<String>, _>("left_at")?.map(|s| db::parse_ts(&s)).transpose()?.unwrap_or(now);
        segments.entry(user).or_default().push((joined, left));
    }
    let late_after = policy::load(&mut conn, auth.tenant_id).await?.late_after_minutes;
    let marks = propose(&meeting, &students, &segments, Duration::minutes(late_after));
    Ok(Json(Proposal { meeting_id: id, late_after_minutes: late_after, marks }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClassId;
    use chrono::TimeZone;

    #[test]
    fn proposals_follow_the_segments() {
        let t = |m: i64| Utc.with_ymd_and_hms(2027, 1, 1, 10, 0, 0).unwrap() + Duration::minutes(m);
        let meeting = Meeting {
            id: MeetingId::new(),
            class_id: ClassId::new(),
            starts_at: t(0),
            ends_at: t(60),
            starts_at_local: String::new(),
        };
        let (on_time, late, absent, before) = (UserId::new(), UserId::new(), UserId::new(), UserId::new());
        let segs = HashMap::from([
            (on_time, vec![(t(-5), t(20)), (t(21), t(60))]),
            (late, vec![(t(15), t(70))]),
            (before, vec![(t(-30), t(-10))]),
        ]);
        let marks = propose(&meeting, &[on_time, late, absent, before], &segs, Duration::minutes(10));
        let got: Vec<_> = marks.iter().map(|m| (m.status, m.minutes_attended)).collect();
        assert_eq!(
            got,
            [
                (AttendanceStatus::Present, 59),
                (AttendanceStatus::Late, 45),
                (AttendanceStatus::Absent, 0),
                (AttendanceStatus::Absent, 0)
            ]
        );
    }
}
