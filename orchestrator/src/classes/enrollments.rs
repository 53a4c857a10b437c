//! Enrollments: a student joins a class and receives the package's credits through the ledger.
//! Group classes enroll only in draft and up to capacity; private classes take one student at any
//! time before they end; minors need a parent's `live_video` consent first.

use axum::{extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{ClassKind, ClassStatus, Ctx, LedgerKind, ledger, load_class, load_student, relation, require_manager};
use crate::{
    auth::{Authed, Staff},
    consent::{self, ConsentScope},
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    identity::users,
    ids::{ClassId, EnrollmentId, UserId},
    outbox::{self},
};

pub use super::Enrollment;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    pub student_id: UserId,
    /// The payment or grant behind the credits (kept on the ledger's grant entry).
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentView {
    #[serde(flatten)]
    pub enrollment: Enrollment,
    pub balance: i64,
}

/// Enrolls a student (staff); the package's credits are granted.
#[utoipa::path(post, path = "/api/v1/classes/{id}/enrollments", tag = "classes", request_body = Enroll,
    params(("id" = ClassId, Path), ("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    security(("bearer" = [])),
    responses((status = 201, body = EnrollmentView), (status = 403, body = ErrorBody, description = "consent_required"),
        (status = 409, body = ErrorBody, description = "enrollment_closed, class_full, already_enrolled")))]
pub async fn enroll(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    Path(id): Path<ClassId>,
    Json(body): Json<Enroll>,
) -> ApiResult<(StatusCode, Json<EnrollmentView>)> {
    let now = clock.now();
    if body.reference.as_ref().is_some_and(|r| r.len() > 200) {
        return Err(ApiError::unprocessable("invalid_reference", "reference is at most 200 characters"));
    }
    let mut tx = db.begin().await?;
    // The class row lock serialises concurrent enrollments, so capacity holds on PostgreSQL too.
    let class = load_class(tx.conn(), auth.tenant_id, id, db.for_update()).await?;
    let student = load_student(tx.conn(), auth.tenant_id, body.student_id, now).await?;
    let open = matches!(
        (class.kind, class.status),
        (ClassKind::Group, ClassStatus::Draft) | (ClassKind::Private, ClassStatus::Draft | ClassStatus::Active)
    );
    if !open {
        return Err(ApiError::conflict(
            "enrollment_closed",
            format!("a {} {} class takes no enrollments", class.status.as_str(), class.kind.as_str()),
        ));
    }
    if super::enrollment_of(tx.conn(), id, student.id).await?.is_some() {
        return Err(ApiError::conflict("already_enrolled", "the student is already enrolled"));
    }
    let capacity = class.capacity.unwrap_or(1);
    if super::count_enrollments(tx.conn(), id).await? >= capacity {
        return Err(ApiError::conflict("class_full", format!("the class is full ({capacity} students)")));
    }
    consent::ensure(tx.conn(), &student, &[ConsentScope::LiveVideo]).await?;

    let enrollment_id = EnrollmentId::new();
    sqlx::query(
        "INSERT INTO enrollments (id, tenant_id, class_id, student_id, reference, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(enrollment_id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .bind(student.id.to_string())
    .bind(body.reference.as_deref())
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let movement = ledger::Movement {
        kind: LedgerKind::Grant,
        delta: class.total_meetings,
        meeting_id: None,
        reason: Some("enrollment"),
        reference: body.reference.as_deref(),
        actor: Some(auth.user_id),
        allow_negative: false,
    };
    let balance = ledger::append(tx.conn(), auth.tenant_id, enrollment_id, &movement, now).await?;
    let events = [
        DomainEvent::StudentEnrolled {
            class_id: id,
            enrollment_id,
            student_id: student.id,
            credits: class.total_meetings,
        },
        DomainEvent::CreditAdjusted {
            class_id: id,
            enrollment_id,
            student_id: student.id,
            kind: LedgerKind::Grant,
            delta: class.total_meetings,
            balance,
            reason: Some("enrollment".into()),
        },
    ];
    for e in &events {
        outbox::append(tx.conn(), auth.tenant_id, now, e).await?;
    }
    let enrollment = super::load_enrollment(tx.conn(), auth.tenant_id, enrollment_id, "").await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(EnrollmentView { enrollment, balance })))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RosterEntry {
    pub enrollment_id: EnrollmentId,
    pub student_id: UserId,
    pub display_name: String,
    pub email: String,
    pub minor: bool,
    pub balance: i64,
    /// Meetings marked present or late.
    pub attended: i64,
}

/// One of a student's enrollments with its class and the credits left.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StudentEnrollment {
    pub enrollment_id: EnrollmentId,
    pub class_id: ClassId,
    pub class_title: String,
    pub class_status: ClassStatus,
    pub balance: i64,
    /// Meetings marked present or late.
    pub attended: i64,
}

/// A student's enrollments with their credit balances: the student, their linked parents and staff.
#[utoipa::path(get, path = "/api/v1/users/{id}/enrollments", tag = "classes", params(("id" = UserId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<StudentEnrollment>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn of_student(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed,
    Path(id): Path<UserId>,
) -> ApiResult<Json<Vec<StudentEnrollment>>> {
    let mut conn = db.pool().acquire().await?;
    users::load_viewable(&mut conn, &auth, id, clock.now(), "this student's enrollments").await?;
    let rows = sqlx::query(
        "SELECT e.id, e.class_id, c.title, c.status,
                (SELECT COUNT(*) FROM attendance a WHERE a.enrollment_id = e.id AND a.status IN ('present', 'late'))
                    AS attended
         FROM enrollments e JOIN classes c ON c.id = e.class_id AND c.tenant_id = e.tenant_id
         WHERE e.tenant_id = $1 AND e.student_id = $2 ORDER BY e.id",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let enrollment_id = EnrollmentId::from_column(&r.try_get::<String, _>("id")?)?;
        out.push(StudentEnrollment {
            enrollment_id,
            class_id: ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
            class_title: r.try_get("title")?,
            class_status: ClassStatus::from_column(&r.try_get::<String, _>("status")?)?,
            balance: ledger::balance(&mut conn, enrollment_id).await?,
            attended: r.try_get("attended")?,
        });
    }
    Ok(Json(out))
}

/// The class roster with credit balances (staff and the instructor).
#[utoipa::path(get, path = "/api/v1/classes/{id}/roster", tag = "classes", params(("id" = ClassId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Vec<RosterEntry>), (status = 403, body = ErrorBody)))]
pub async fn roster(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed,
    Path(id): Path<ClassId>,
) -> ApiResult<Json<Vec<RosterEntry>>> {
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let class = load_class(&mut conn, auth.tenant_id, id, "").await?;
    require_manager(relation(&mut conn, &auth, &class).await?)?;
    let mut out = Vec::new();
    for e in super::list_enrollments(&mut conn, id).await? {
        let student = users::get_or_404(&mut conn, auth.tenant_id, e.student_id, now).await?;
        let attended: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM attendance WHERE enrollment_id = $1 AND status IN ('present', 'late')",
        )
        .bind(e.id.to_string())
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
        out.push(RosterEntry {
            enrollment_id: e.id,
            student_id: e.student_id,
            display_name: student.display_name,
            email: student.email,
            minor: student.minor,
            balance: ledger::balance(&mut conn, e.id).await?,
            attended,
        });
    }
    Ok(Json(out))
}
