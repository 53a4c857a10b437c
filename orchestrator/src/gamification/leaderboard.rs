//! Class leaderboards: students opt in per class; members of the class see the opted-in students
//! ranked by the XP they earned in that class.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::{Ctx, Student};
use crate::{
    auth::{AnyRole, AuthUser, Authed, Role},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    ids::{ClassId, TenantId, UserId},
};

/// The instructor of a class of `tenant`; 404 when there is no such class there.
async fn instructor_of(conn: &mut AnyConnection, tenant: TenantId, class: ClassId) -> ApiResult<UserId> {
    let row = sqlx::query("SELECT instructor_id FROM classes WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.to_string())
        .bind(class.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("class_not_found", "no such class"))?;
    Ok(UserId::from_column(&row.try_get::<String, _>("instructor_id")?)?)
}

async fn is_enrolled(
    conn: &mut AnyConnection,
    tenant: TenantId,
    class: ClassId,
    student: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM enrollments WHERE tenant_id = $1 AND class_id = $2 AND student_id = $3")
        .bind(tenant.to_string())
        .bind(class.to_string())
        .bind(student.to_string())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// Staff, the class's instructor and its enrolled students may see its leaderboard.
async fn is_member(conn: &mut AnyConnection, who: &AuthUser, class: ClassId, instructor: UserId) -> ApiResult<bool> {
    Ok(who.is_staff()
        || who.user_id == instructor
        || (who.role == Role::Student && is_enrolled(conn, who.tenant_id, class, who.user_id).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptIn {
    pub class_id: ClassId,
    pub student_id: UserId,
    pub opted_in: bool,
}

/// Shows the calling student on the class's leaderboard (students enrolled in the class; idempotent).
#[utoipa::path(post, path = "/api/v1/classes/{id}/leaderboard/opt-in", tag = "gamification",
    params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 200, body = OptIn), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn opt_in(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<Student>,
    Path(class): Path<ClassId>,
) -> ApiResult<Json<OptIn>> {
    let mut tx = db.begin().await?;
    instructor_of(tx.conn(), auth.tenant_id, class).await?;
    if !is_enrolled(tx.conn(), auth.tenant_id, class, auth.user_id).await? {
        return Err(ApiError::forbidden(
            "not_enrolled",
            "only students enrolled in the class can join its leaderboard",
        ));
    }
    sqlx::query(
        "INSERT INTO leaderboard_optins (tenant_id, class_id, student_id, opted_in_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(auth.tenant_id.to_string())
    .bind(class.to_string())
    .bind(auth.user_id.to_string())
    .bind(db::ts(clock.now()))
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(Json(OptIn { class_id: class, student_id: auth.user_id, opted_in: true }))
}

/// Removes the calling student from the class's leaderboard (idempotent).
#[utoipa::path(post, path = "/api/v1/classes/{id}/leaderboard/opt-out", tag = "gamification",
    params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 200, body = OptIn), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn opt_out(
    State(db): State<Db>,
    auth: Authed<Student>,
    Path(class): Path<ClassId>,
) -> ApiResult<Json<OptIn>> {
    let mut tx = db.begin().await?;
    instructor_of(tx.conn(), auth.tenant_id, class).await?;
    sqlx::query("DELETE FROM leaderboard_optins WHERE tenant_id = $1 AND class_id = $2 AND student_id = $3")
        .bind(auth.tenant_id.to_string())
        .bind(class.to_string())
        .bind(auth.user_id.to_string())
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(Json(OptIn { class_id: class, student_id: auth.user_id, opted_in: false }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    /// Default 10, max 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Leaderboard {
    pub class_id: ClassId,
    pub entries: Vec<LeaderboardEntry>,
    pub generated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeaderboardEntry {
    /// Competition rank: equal XP shares a rank ("1, 1, 3").
    pub rank: i64,
    pub student_id: UserId,
    pub display_name: String,
    /// XP earned in this class.
    pub xp: i64,
}

/// The top opted-in, still-enrolled students of a class by the XP they earned in it. Visible to
/// staff, the class's instructor and its enrolled students.
#[utoipa::path(get, path = "/api/v1/classes/{id}/leaderboard", tag = "gamification",
    params(("id" = ClassId, Path), LeaderboardQuery), security(("bearer" = [])),
    responses((status = 200, body = Leaderboard), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(class): Path<ClassId>,
    Query(q): Query<LeaderboardQuery>,
) -> ApiResult<Json<Leaderboard>> {
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let mut conn = db.pool().acquire().await?;
    let instructor = instructor_of(&mut conn, auth.tenant_id, class).await?;
    if !is_member(&mut conn, &auth, class, instructor).await? {
        return Err(ApiError::forbidden("not_a_member", "only members of the class can see its leaderboard"));
    }
    // SUM of BIGINT is NUMERIC on PostgreSQL, which the Any driver can't decode: cast it back.
    let rows = sqlx::query(
        "SELECT o.student_id, u.display_name, CAST(COALESCE(SUM(x.amount), 0) AS BIGINT) AS xp
         FROM leaderboard_optins o
         JOIN enrollments e ON e.class_id = o.class_id AND e.student_id = o.student_id
         JOIN users u ON u.id = o.student_id
         LEFT JOIN xp_ledger x ON x.tenant_id = o.tenant_id AND x.class_id = o.class_id AND x.student_id = o.student_id
         WHERE o.tenant_id = $1 AND o.class_id = $2
         GROUP BY o.student_id, u.display_name
         ORDER BY xp DESC, u.display_name, o.student_id
         LIMIT $3",
    )
    .bind(auth.tenant_id.to_string())
    .bind(class.to_string())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let scored = rows
        .iter()
        .map(|r| {
            Ok((
                UserId::from_column(&r.try_get::<String, _>("student_id")?)?,
                r.try_get::<String, _>("display_name")?,
                r.try_get::<i64, _>("xp")?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let ranks = super::ranks(&scored.iter().map(|s| s.2).collect::<Vec<_>>());
    let entries = scored
        .into_iter()
        .zip(ranks)
        .map(|((student_id, display_name, xp), rank)| LeaderboardEntry { rank, student_id, display_name, xp })
        .collect();
    Ok(Json(Leaderboard { class_id: class, entries, generated_at: clock.now() }))
}
