//! Lesson unlocks: the instructor (or staff) opens the course's lessons to a class one by one —
//! never more than the package's meetings — and every enrolled student sees them at once (the
//! `LessonUnlocked` event is what the real-time layer pushes). Students then complete lessons.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{ClassStatus, Ctx, Relation, courses, load_class, relation, require_manager};
use crate::{
    auth::{AnyRole, Authed},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    identity::users,
    ids::{ClassId, LessonId, UserId},
    outbox::{self},
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    pub lesson_id: LessonId,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClassLesson {
    pub class_id: ClassId,
    pub lesson_id: LessonId,
    pub position: i64,
    pub title: String,
    pub unlocked: bool,
    pub unlocked_at: Option<DateTime<Utc>>,
    /// For a student caller: whether they completed it.
    pub completed: Option<bool>,
}

async fn unlocked_at(
    conn: &mut AnyConnection,
    class: ClassId,
    lesson: LessonId,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query("SELECT unlocked_at FROM lesson_unlocks WHERE class_id = $1 AND lesson_id = $2")
        .bind(class.to_string())
        .bind(lesson.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| db::parse_ts(&r.try_get::<String, _>("unlocked_at")?))
        .transpose()
}

/// Unlocks a lesson for the class (its instructor or staff). Unlocking again changes nothing (200).
#[utoipa::path(post, path = "/api/v1/classes/{id}/unlocks", tag = "lessons", request_body = Unlock,
    params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 201, body = ClassLesson, description = "unlocked now"), (status = 200, body = ClassLesson, description = "already unlocked"),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "unlock_limit_reached, class_not_active")))]
pub async fn unlock(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<ClassId>,
    Json(body): Json<Unlock>,
) -> ApiResult<(StatusCode, Json<ClassLesson>)> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, db.for_update()).await?;
    require_manager(relation(tx.conn(), &auth, &class).await?)?;
    let lesson = courses::lessons_of(tx.conn(), class.course_id)
        .await?
        .into_iter()
        .find(|l| l.id == body.lesson_id)
        .ok_or_else(|| ApiError::not_found("lesson_not_found", "the class's course has no such lesson"))?;
    let view = |at| ClassLesson {
        class_id: id,
        lesson_id: lesson.id,
        position: lesson.position,
        title: lesson.title.clone(),
        unlocked: true,
        unlocked_at: Some(at),
        completed: None,
    };
    if let Some(at) = unlocked_at(tx.conn(), id, lesson.id).await? {
        return Ok((StatusCode::OK, Json(view(at))));
    }
    if class.status != ClassStatus::Active {
        return Err(ApiError::conflict("class_not_active", "lessons are unlocked in active classes"));
    }
    let unlocked: i64 = sqlx::query("SELECT COUNT(*) AS n FROM lesson_unlocks WHERE class_id = $1")
        .bind(id.to_string())
        .fetch_one(tx.conn())
        .await?
        .try_get("n")?;
    if unlocked >= class.total_meetings {
        return Err(ApiError::conflict(
            "unlock_limit_reached",
            format!("the package allows {} unlocked lessons", class.total_meetings),
        ));
    }
    sqlx::query(
        "INSERT INTO lesson_unlocks (tenant_id, class_id, lesson_id, unlocked_by, unlocked_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .bind(lesson.id.to_string())
    .bind(auth.user_id.to_string())
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let event = DomainEvent::LessonUnlocked { class_id: id, lesson_id: lesson.id, by: auth.user_id };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(view(now))))
}

/// The class's lessons. Staff and the instructor see all, with unlock state; enrolled students (and
/// their parents) see only unlocked ones; anyone else is refused.
#[utoipa::path(get, path = "/api/v1/classes/{id}/lessons", tag = "lessons", params(("id" = ClassId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<ClassLesson>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Path(id): Path<ClassId>,
) -> ApiResult<Json<Vec<ClassLesson>>> {
    let mut conn = db.pool().acquire().await?;
    let class = load_class(&mut conn, auth.tenant_id, id, "").await?;
    let rel = relation(&mut conn, &auth, &class).await?;
    let student = match rel {
        Relation::Staff | Relation::Instructor => None,
        Relation::Student(_) => Some(auth.user_id),
        Relation::Parent => None,
        Relation::None => return Err(ApiError::forbidden("not_class_member", "you are not part of this class")),
    };
    let mut out = Vec::new();
    for lesson in courses::lessons_of(&mut conn, class.course_id).await? {
        let at = unlocked_at(&mut conn, id, lesson.id).await?;
        if at.is_none() && !rel.manages() {
            continue;
        }
        let completed = match student {
            Some(s) => Some(is_completed(&mut conn, id, lesson.id, s).await?),
            None => None,
        };
        out.push(ClassLesson {
            class_id: id,
            lesson_id: lesson.id,
            position: lesson.position,
            title: lesson.title,
            unlocked: at.is_some(),
            unlocked_at: at,
            completed,
        });
    }
    Ok(Json(out))
}

async fn is_completed(
    conn: &mut AnyConnection,
    class: ClassId,
    lesson: LessonId,
    student: UserId,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT 1 FROM lesson_completions WHERE class_id = $1 AND lesson_id = $2 AND student_id = $3")
        .bind(class.to_string())
        .bind(lesson.to_string())
        .bind(student.to_string())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// An enrolled student completes an unlocked lesson (once; again is a no-op answered with 200).
#[utoipa::path(post, path = "/api/v1/classes/{id}/lessons/{lesson_id}/complete", tag = "lessons",
    params(("id" = ClassId, Path), ("lesson_id" = LessonId, Path)), security(("bearer" = [])),
    responses((status = 201, description = "completed now"), (status = 200, description = "already completed"),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "lesson_locked")))]
pub async fn complete(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path((id, lesson_id)): Path<(ClassId, LessonId)>,
) -> ApiResult<StatusCode> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, "").await?;
    let Relation::Student(_) = relation(tx.conn(), &auth, &class).await? else {
        return Err(ApiError::forbidden("not_enrolled", "only enrolled students complete lessons"));
    };
    if unlocked_at(tx.conn(), id, lesson_id).await?.is_none() {
        return Err(ApiError::conflict("lesson_locked", "that lesson is not unlocked for this class"));
    }
    if is_completed(tx.conn(), id, lesson_id, auth.user_id).await? {
        return Ok(StatusCode::OK);
    }
    sqlx::query(
        "INSERT INTO lesson_completions (tenant_id, class_id, lesson_id, student_id, completed_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .bind(lesson_id.to_string())
    .bind(auth.user_id.to_string())
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let event = DomainEvent::LessonCompleted { class_id: id, lesson_id, student_id: auth.user_id };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(StatusCode::CREATED)
}

/// A student's unlocked lessons across their classes: the student, their parents, staff.
#[utoipa::path(get, path = "/api/v1/users/{id}/lessons", tag = "lessons", params(("id" = UserId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<ClassLesson>), (status = 403, body = ErrorBody)))]
pub async fn for_student(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<Vec<ClassLesson>>> {
    let mut conn = db.pool().acquire().await?;
    users::load_viewable(&mut conn, &auth, id, clock.now(), "this student's lessons").await?;
    let rows = sqlx::query(
        "SELECT u.class_id, u.lesson_id, l.position, l.title, u.unlocked_at,
                (SELECT COUNT(*) FROM lesson_completions c
                  WHERE c.class_id = u.class_id AND c.lesson_id = u.lesson_id AND c.student_id = e.student_id) AS done
         FROM enrollments e
         JOIN lesson_unlocks u ON u.class_id = e.class_id
         JOIN lessons l ON l.id = u.lesson_id
         WHERE e.tenant_id = $1 AND e.student_id = $2
         ORDER BY u.class_id, l.position",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let lessons = rows
        .iter()
        .map(|r| {
            Ok(ClassLesson {
                class_id: ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
                lesson_id: LessonId::from_column(&r.try_get::<String, _>("lesson_id")?)?,
                position: r.try_get("position")?,
                title: r.try_get("title")?,
                unlocked: true,
                unlocked_at: Some(db::parse_ts(&r.try_get::<String, _>("unlocked_at")?)?),
                completed: Some(r.try_get::<i64, _>("done")? > 0),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Json(lessons))
}
