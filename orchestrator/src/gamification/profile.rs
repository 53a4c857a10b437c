//! A student's gamification profile: XP, level, badges and streaks.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Badge, Ctx, Mark, awards};
use crate::{
    auth::{AnyRole, Authed},
    db::{self},
    error::{ApiResult, ErrorBody, Json, Path},
    identity::users,
    ids::{ClassId, UserId},
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub user_id: UserId,
    /// Total XP.
    pub xp: i64,
    pub level: i64,
    /// Total XP at which the current level began.
    pub level_xp: i64,
    /// Total XP at which the next level begins.
    pub next_level_xp: i64,
    pub badges: Vec<EarnedBadge>,
    /// One entry per class the student has attendance marks in.
    pub streaks: Vec<ClassStreak>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EarnedBadge {
    pub badge: Badge,
    /// The class of a per-class badge; absent for global ones.
    pub class_id: Option<ClassId>,
    pub awarded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClassStreak {
    pub class_id: ClassId,
    pub streak: i64,
}

/// A user's XP, level, badges and streaks: the user themself, their linked parents, and staff.
#[utoipa::path(get, path = "/api/v1/users/{id}/gamification", tag = "gamification", params(("id" = UserId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<Profile>> {
    let mut conn = db.pool().acquire().await?;
    users::load_viewable(&mut conn, &auth, id, clock.now(), "this user's progress").await?;

    let xp = awards::total_xp(&mut conn, auth.tenant_id, id).await?;
    let level = super::level(xp);

    let rows = sqlx::query(
        "SELECT badge, class_id, awarded_at FROM badges WHERE tenant_id = $1 AND student_id = $2
         ORDER BY awarded_at, badge, class_id",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let badges = rows
        .iter()
        .map(|r| {
            let class: String = r.try_get("class_id")?;
            Ok(EarnedBadge {
                badge: Badge::from_column(&r.try_get::<String, _>("badge")?)?,
                class_id: if class.is_empty() { None } else { Some(ClassId::from_column(&class)?) },
                awarded_at: db::parse_ts(&r.try_get::<String, _>("awarded_at")?)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;

    let rows = sqlx::query(
        "SELECT class_id, meeting_id, meeting_starts_at, status FROM gamification_attendance
         WHERE tenant_id = $1 AND student_id = $2",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut by_class: BTreeMap<ClassId, Vec<Mark>> = BTreeMap::new();
    for r in &rows {
        let class = ClassId::from_column(&r.try_get::<String, _>("class_id")?)?;
        by_class.entry(class).or_default().push(awards::mark_from_row(r)?);
    }
    let streaks =
        by_class.into_iter().map(|(class_id, marks)| ClassStreak { class_id, streak: super::streak(&marks) }).collect();

    Ok(Json(Profile {
        user_id: id,
        xp,
        level,
        level_xp: super::level_threshold(level),
        next_level_xp: super::level_threshold(level + 1),
        badges,
        streaks,
    }))
}
