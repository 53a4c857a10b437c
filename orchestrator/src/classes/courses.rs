//! Courses: a title and ordered lessons, taught by any number of classes.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Ctx;
use super::{ClassError, ClassResult};
use crate::{
    auth::{AnyRole, Authed, Staff},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    identity::display_name,
    ids::{CourseId, LessonId, TenantId},
    outbox::{self},
};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Lesson {
    pub id: LessonId,
    /// 1-based order within the course.
    pub position: i64,
    pub title: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Course {
    pub id: CourseId,
    pub title: String,
    /// In order.
    pub lessons: Vec<Lesson>,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLesson {
    pub title: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCourse {
    pub title: String,
    /// In teaching order; 1 to 500.
    pub lessons: Vec<NewLesson>,
}

pub async fn lessons_of(conn: &mut AnyConnection, course: CourseId) -> Result<Vec<Lesson>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, position, title FROM lessons WHERE course_id = $1 ORDER BY position")
        .bind(course.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Lesson {
                id: LessonId::from_column(&r.try_get::<String, _>("id")?)?,
                position: r.try_get("position")?,
                title: r.try_get("title")?,
            })
        })
        .collect()
}

pub async fn load(conn: &mut AnyConnection, tenant: TenantId, id: CourseId) -> ClassResult<Course> {
    let row = sqlx::query("SELECT id, title, created_at FROM courses WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ClassError::not_found("course_not_found", "no such course"))?;
    Ok(Course {
        id,
        title: row.try_get("title")?,
        created_at: db::parse_ts(&row.try_get::<String, _>("created_at")?)?,
        lessons: lessons_of(conn, id).await?,
    })
}

/// Creates a course with its ordered lessons (staff).
#[utoipa::path(post, path = "/api/v1/courses", tag = "classes", request_body = CreateCourse, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = Course), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    Json(body): Json<CreateCourse>,
) -> ApiResult<(StatusCode, Json<Course>)> {
    let title = display_name(&body.title)
        .map_err(|_| ApiError::unprocessable("invalid_title", "title must be 1 to 100 characters"))?;
    if body.lessons.is_empty() || body.lessons.len() > 500 {
        return Err(ApiError::unprocessable("invalid_lessons", "a course has 1 to 500 lessons"));
    }
    let lesson_titles = body
        .lessons
        .iter()
        .map(|l| display_name(&l.title))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ApiError::unprocessable("invalid_title", "lesson titles must be 1 to 100 characters"))?;
    let now = clock.now();
    let id = CourseId::new();
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO courses (id, tenant_id, title, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id.to_string())
        .bind(auth.tenant_id.to_string())
        .bind(&title)
        .bind(db::ts(now))
        .execute(tx.conn())
        .await?;
    for (i, lesson_title) in lesson_titles.iter().enumerate() {
        sqlx::query("INSERT INTO lessons (id, tenant_id, course_id, position, title) VALUES ($1, $2, $3, $4, $5)")
            .bind(LessonId::new().to_string())
            .bind(auth.tenant_id.to_string())
            .bind(id.to_string())
            .bind(i as i64 + 1)
            .bind(lesson_title)
            .execute(tx.conn())
            .await?;
    }
    outbox::append(tx.conn(), auth.tenant_id, now, &DomainEvent::CourseCreated { course_id: id }).await?;
    let course = load(tx.conn(), auth.tenant_id, id).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(course)))
}

/// A course with its lessons (staff and tutors; students see lessons through their classes' unlocks).
#[utoipa::path(get, path = "/api/v1/courses/{id}", tag = "classes", params(("id" = CourseId, Path)), security(("bearer" = [])),
    responses((status = 200, body = Course), (status = 404, body = ErrorBody)))]
pub async fn get(State(db): State<Db>, auth: Authed<AnyRole>, Path(id): Path<CourseId>) -> ApiResult<Json<Course>> {
    if !auth.is_staff() && auth.role != crate::auth::Role::Tutor {
        return Err(ApiError::forbidden("forbidden_role", "course outlines are for staff and tutors"));
    }
    let mut conn = db.pool().acquire().await?;
    Ok(Json(load(&mut conn, auth.tenant_id, id).await?))
}

/// A course in the list: its title and how many lessons it has.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CourseSummary {
    pub id: CourseId,
    pub title: String,
    pub lessons: i64,
    pub created_at: DateTime<Utc>,
}

/// The tenant's courses by title (staff and tutors).
#[utoipa::path(get, path = "/api/v1/courses", tag = "classes", security(("bearer" = [])),
    responses((status = 200, body = Vec<CourseSummary>), (status = 403, body = ErrorBody)))]
pub async fn list(State(db): State<Db>, auth: Authed<AnyRole>) -> ApiResult<Json<Vec<CourseSummary>>> {
    if !auth.is_staff() && auth.role != crate::auth::Role::Tutor {
        return Err(ApiError::forbidden("forbidden_role", "course outlines are for staff and tutors"));
    }
    let rows = sqlx::query(
        "SELECT c.id, c.title, c.created_at,
                (SELECT COUNT(*) FROM lessons l WHERE l.course_id = c.id AND l.tenant_id = c.tenant_id) AS lessons
         FROM courses c WHERE c.tenant_id = $1 ORDER BY c.title, c.id",
    )
    .bind(auth.tenant_id.to_string())
    .fetch_all(db.pool())
    .await?;
    let courses = rows
        .iter()
        .map(|r| {
            Ok(CourseSummary {
                id: CourseId::from_column(&r.try_get::<String, _>("id")?)?,
                title: r.try_get("title")?,
                lessons: r.try_get("lessons")?,
                created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(courses))
}
