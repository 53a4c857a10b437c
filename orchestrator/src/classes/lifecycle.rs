//! A class's life: creation (draft) with its schedule and package, meetings, package changes,
//! activation, completion and cancellation.
//!
//! Rules: a group class's package and schedule are fixed once active and enrollment closes at
//! activation; a private class (one student) takes meetings and package top-ups at any time.
//! Cancelling refunds every enrollment's remaining credits.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::{IntoParams, ToSchema};

use super::{
    Class, ClassError, ClassKind, ClassResult, ClassStatus, Ctx, LedgerKind, Meeting, Relation, courses, ledger,
    load_class, meetings_of, relation, require_manager, require_member,
};
use crate::{
    audit,
    auth::{AnyRole, Authed, Role, Staff},
    db::{self, Db, Tx},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    events::DomainEvent,
    identity::{display_name, users},
    ids::{ClassId, CourseId, MeetingId, TenantId, UserId},
    outbox::{self},
    request::ClientInfo,
};

pub const MAX_MEETINGS: i64 = 500;
const MAX_MEETING_HOURS: i64 = 12;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMeeting {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClass {
    pub kind: ClassKind,
    pub title: String,
    pub course_id: CourseId,
    /// A tutor of the tenant.
    pub instructor_id: UserId,
    /// The package: how many meetings (and credits per student).
    pub total_meetings: i64,
    /// Group classes: the most students. Private classes take one and must omit it.
    pub capacity: Option<i64>,
    /// IANA time zone for display, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// The schedule (UTC); may be empty and added later.
    #[serde(default)]
    pub meetings: Vec<NewMeeting>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClassView {
    #[serde(flatten)]
    pub class: Class,
    pub meetings: Vec<Meeting>,
    pub enrolled: i64,
}

pub async fn view(conn: &mut AnyConnection, class: Class) -> ClassResult<ClassView> {
    let meetings = meetings_of(conn, &class).await?;
    let enrolled = super::count_enrollments(conn, class.id).await?;
    Ok(ClassView { class, meetings, enrolled })
}

fn check_meeting(m: &NewMeeting) -> ClassResult<()> {
    if m.ends_at <= m.starts_at || m.ends_at - m.starts_at > Duration::hours(MAX_MEETING_HOURS) {
        return Err(ClassError::invalid(
            "invalid_meeting",
            format!("a meeting ends after it starts and lasts at most {MAX_MEETING_HOURS} hours"),
        ));
    }
    Ok(())
}

/// Meetings of one class may not overlap.
fn check_no_overlap(existing: &[(DateTime<Utc>, DateTime<Utc>)], new: &[NewMeeting]) -> ClassResult<()> {
    let mut all: Vec<_> = existing.to_vec();
    all.extend(new.iter().map(|m| (m.starts_at, m.ends_at)));
    all.sort();
    if all.windows(2).any(|w| w[1].0 < w[0].1) {
        return Err(ClassError::invalid("meetings_overlap", "meetings of a class may not overlap"));
    }
    Ok(())
}

async fn insert_meetings(
    tx: &mut Tx,
    tenant: TenantId,
    class: ClassId,
    meetings: &[NewMeeting],
    now: DateTime<Utc>,
) -> ClassResult<()> {
    for m in meetings {
        let id = MeetingId::new();
        sqlx::query("INSERT INTO meetings (id, tenant_id, class_id, starts_at, ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id.to_string())
            .bind(tenant.to_string())
            .bind(class.to_string())
            .bind(db::ts(m.starts_at))
            .bind(db::ts(m.ends_at))
            .bind(db::ts(now))
            .execute(tx.conn())
            .await?;
        let event = DomainEvent::MeetingScheduled {
            class_id: class,
            meeting_id: id,
            starts_at: m.starts_at,
            ends_at: m.ends_at,
        };
        outbox::append(tx.conn(), tenant, now, &event).await?;
    }
    Ok(())
}

/// Creates a class in `draft` (staff).
#[utoipa::path(post, path = "/api/v1/classes", tag = "classes", request_body = CreateClass, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = ClassView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    Json(body): Json<CreateClass>,
) -> ApiResult<(StatusCode, Json<ClassView>)> {
    let now = clock.now();
    let title = display_name(&body.title)
        .map_err(|_| ApiError::unprocessable("invalid_title", "title must be 1 to 100 characters"))?;
    if !(1..=MAX_MEETINGS).contains(&body.total_meetings) {
        return Err(ApiError::unprocessable("invalid_package", format!("total_meetings must be 1 to {MAX_MEETINGS}")));
    }
    let capacity = match (body.kind, body.capacity) {
        (ClassKind::Group, Some(c)) if (1..=10_000).contains(&c) => Some(c),
        (ClassKind::Group, _) => {
            return Err(ApiError::unprocessable("invalid_capacity", "group classes need a capacity of 1 to 10000"));
        }
        (ClassKind::Private, None) => None,
        (ClassKind::Private, Some(_)) => {
            return Err(ApiError::unprocessable("invalid_capacity", "private classes take one student; omit capacity"));
        }
    };
    if body.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::unprocessable("invalid_timezone", "timezone must be an IANA zone such as Europe/Berlin"));
    }
    if body.meetings.len() as i64 > body.total_meetings {
        return Err(ApiError::unprocessable("too_many_meetings", "more meetings than the package holds"));
    }
    body.meetings.iter().try_for_each(check_meeting)?;
    check_no_overlap(&[], &body.meetings)?;

    let mut tx = db.begin().await?;
    courses::load(tx.conn(), auth.tenant_id, body.course_id).await?;
    let instructor = users::get_or_404(tx.conn(), auth.tenant_id, body.instructor_id, now).await?;
    if instructor.role != Role::Tutor {
        return Err(ApiError::unprocessable("instructor_not_tutor", "the instructor must be a tutor"));
    }
    let id = ClassId::new();
    sqlx::query(
        "INSERT INTO classes (id, tenant_id, kind, title, course_id, instructor_id, total_meetings, capacity, timezone,
                              status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'draft', $10)",
    )
    .bind(id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(body.kind.as_str())
    .bind(&title)
    .bind(body.course_id.to_string())
    .bind(body.instructor_id.to_string())
    .bind(body.total_meetings)
    .bind(capacity)
    .bind(&body.timezone)
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let event = DomainEvent::ClassCreated { class_id: id, kind: body.kind, instructor_id: body.instructor_id };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    insert_meetings(&mut tx, auth.tenant_id, id, &body.meetings, now).await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, "").await?;
    let view = view(tx.conn(), class).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(view)))
}

/// A class with its meetings: staff, its instructor, enrolled students and their parents.
#[utoipa::path(get, path = "/api/v1/classes/{id}", tag = "classes", params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 200, body = ClassView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(db): State<Db>, auth: Authed<AnyRole>, Path(id): Path<ClassId>) -> ApiResult<Json<ClassView>> {
    let mut conn = db.pool().acquire().await?;
    let class = load_class(&mut conn, auth.tenant_id, id, "").await?;
    require_member(relation(&mut conn, &auth, &class).await?)?;
    Ok(Json(view(&mut conn, class).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<ClassStatus>,
}

/// Classes the caller can see: all (staff), taught (tutors), enrolled (students), their children's (parents).
#[utoipa::path(get, path = "/api/v1/classes", tag = "classes", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = Vec<Class>)))]
pub async fn list(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Class>>> {
    let filter = match auth.role {
        Role::Admin | Role::Staff => "",
        Role::Tutor => " AND instructor_id = $3",
        Role::Student => " AND id IN (SELECT class_id FROM enrollments WHERE student_id = $3)",
        Role::Parent => {
            " AND id IN (SELECT e.class_id FROM enrollments e JOIN parent_links l ON l.child_id = e.student_id WHERE l.parent_id = $3)"
        }
    };
    let sql = format!(
        "SELECT {} FROM classes WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2){filter} ORDER BY created_at, id",
        super::CLASS_COLUMNS
    );
    let mut query =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(auth.tenant_id.to_string()).bind(q.status.map(|s| s.as_str()));
    if !auth.is_staff() {
        query = query.bind(auth.user_id.to_string());
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(Json(rows.iter().map(super::class_from_row).collect::<Result<_, _>>()?))
}

/// Adds meetings: group classes only while in draft; private classes until they end. Staff, or a
/// private class's instructor.
#[utoipa::path(post, path = "/api/v1/classes/{id}/meetings", tag = "classes", request_body = Vec<NewMeeting>,
    params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 201, body = ClassView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_meetings(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<ClassId>,
    Json(new): Json<Vec<NewMeeting>>,
) -> ApiResult<(StatusCode, Json<ClassView>)> {
    let now = clock.now();
    if new.is_empty() {
        return Err(ApiError::unprocessable("invalid_meeting", "no meetings given"));
    }
    new.iter().try_for_each(check_meeting)?;
    let mut tx = db.begin().await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, db.for_update()).await?;
    let rel = relation(tx.conn(), &auth, &class).await?;
    let allowed = rel == Relation::Staff || (rel == Relation::Instructor && class.kind == ClassKind::Private);
    if !allowed {
        return Err(ApiError::forbidden(
            "not_class_manager",
            "only staff (or a private class's instructor) add meetings",
        ));
    }
    match (class.kind, class.status) {
        (_, ClassStatus::Completed | ClassStatus::Cancelled) => {
            return Err(ApiError::conflict("class_ended", "the class has ended"));
        }
        (ClassKind::Group, ClassStatus::Active) => {
            return Err(ApiError::conflict("schedule_locked", "a group class's schedule is fixed once it is active"));
        }
        _ => {}
    }
    let existing: Vec<_> = meetings_of(tx.conn(), &class).await?.iter().map(|m| (m.starts_at, m.ends_at)).collect();
    if (existing.len() + new.len()) as i64 > class.total_meetings {
        return Err(ApiError::conflict("too_many_meetings", "more meetings than the package holds; enlarge it first"));
    }
    check_no_overlap(&existing, &new)?;
    insert_meetings(&mut tx, auth.tenant_id, id, &new, now).await?;
    let view = view(tx.conn(), class).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePackage {
    pub total_meetings: i64,
}

/// Changes the package (staff). Group classes: only in draft. Private classes: any time before they
/// end; enrolled students get the added credits. A package never shrinks below its scheduled meetings,
/// and never shrinks once students are enrolled.
#[utoipa::path(put, path = "/api/v1/classes/{id}/package", tag = "classes", request_body = ChangePackage,
    params(("id" = ClassId, Path)), security(("bearer" = [])),
    responses((status = 200, body = ClassView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_package(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Staff>,
    Path(id): Path<ClassId>,
    Json(body): Json<ChangePackage>,
) -> ApiResult<Json<ClassView>> {
    let now = clock.now();
    if !(1..=MAX_MEETINGS).contains(&body.total_meetings) {
        return Err(ApiError::unprocessable("invalid_package", format!("total_meetings must be 1 to {MAX_MEETINGS}")));
    }
    let mut tx = db.begin().await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, db.for_update()).await?;
    match (class.kind, class.status) {
        (_, ClassStatus::Completed | ClassStatus::Cancelled) => {
            return Err(ApiError::conflict("class_ended", "the class has ended"));
        }
        (ClassKind::Group, ClassStatus::Active) => {
            return Err(ApiError::conflict("package_locked", "a group class's package is fixed once it is active"));
        }
        _ => {}
    }
    let delta = body.total_meetings - class.total_meetings;
    let scheduled = meetings_of(tx.conn(), &class).await?.len() as i64;
    let enrolled = super::list_enrollments(tx.conn(), id).await?;
    if body.total_meetings < scheduled || (delta < 0 && !enrolled.is_empty()) {
        return Err(ApiError::conflict(
            "package_shrink_not_allowed",
            "the package can't drop below the scheduled meetings or shrink once students are enrolled",
        ));
    }
    if delta == 0 {
        return Ok(Json(view(tx.conn(), class).await?));
    }
    sqlx::query("UPDATE classes SET total_meetings = $1 WHERE id = $2")
        .bind(body.total_meetings)
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
    outbox::append(
        tx.conn(),
        auth.tenant_id,
        now,
        &DomainEvent::PackageChanged { class_id: id, total_meetings: body.total_meetings },
    )
    .await?;
    let reason = format!("package changed to {} meetings", body.total_meetings);
    for e in &enrolled {
        // The ledger is appended under the enrollment's row lock, like marks and adjustments.
        super::load_enrollment(tx.conn(), auth.tenant_id, e.id, db.for_update()).await?;
        let movement = ledger::Movement {
            kind: LedgerKind::Grant,
            delta,
            meeting_id: None,
            reason: Some(&reason),
            reference: None,
            actor: Some(auth.user_id),
            allow_negative: false,
        };
        let balance = ledger::append(tx.conn(), auth.tenant_id, e.id, &movement, now).await?;
        let event = DomainEvent::CreditAdjusted {
            class_id: id,
            enrollment_id: e.id,
            student_id: e.student_id,
            kind: LedgerKind::Grant,
            delta,
            balance,
            reason: Some(reason.clone()),
        };
        outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    }
    let class = load_class(tx.conn(), auth.tenant_id, id, "").await?;
    let view = view(tx.conn(), class).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(Json(view))
}

/// Moves a class along its life: `draft → active → completed`, or `→ cancelled` from either.
async fn transition(
    cx: &Ctx,
    auth: &crate::auth::AuthUser,
    client: ClientInfo,
    id: ClassId,
    to: ClassStatus,
) -> ClassResult<ClassView> {
    let Ctx { db, clock, outbox, .. } = cx;
    let now = clock.now();
    let mut tx = db.begin().await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, db.for_update()).await?;
    let rel = relation(tx.conn(), auth, &class).await?;
    // Staff run every transition; the instructor may also complete their class.
    if !(rel == Relation::Staff || (rel == Relation::Instructor && to == ClassStatus::Completed)) {
        require_manager(Relation::None)?;
    }
    let legal = matches!(
        (class.status, to),
        (ClassStatus::Draft, ClassStatus::Active)
            | (ClassStatus::Active, ClassStatus::Completed)
            | (ClassStatus::Draft | ClassStatus::Active, ClassStatus::Cancelled)
    );
    if !legal {
        return Err(ClassError::refused(
            "invalid_transition",
            format!("a {} class can't become {}", class.status.as_str(), to.as_str()),
        ));
    }
    if to == ClassStatus::Active && class.kind == ClassKind::Group && meetings_of(tx.conn(), &class).await?.is_empty() {
        return Err(ClassError::refused(
            "no_meetings",
            "schedule at least one meeting before activating a group class",
        ));
    }
    let column = if to == ClassStatus::Active { "activated_at" } else { "ended_at" };
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE classes SET status = $1, {column} = $2 WHERE id = $3")))
        .bind(to.as_str())
        .bind(db::ts(now))
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
    let event = match to {
        ClassStatus::Active => DomainEvent::ClassActivated { class_id: id },
        ClassStatus::Completed => DomainEvent::ClassCompleted { class_id: id },
        _ => DomainEvent::ClassCancelled { class_id: id },
    };
    outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    if to == ClassStatus::Cancelled {
        refund_all(&mut tx, db.for_update(), auth, &class, now).await?;
    }
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "class.status_changed", &client)
            .target("class", id)
            .details(serde_json::json!({ "from": class.status, "to": to })),
    )
    .await?;
    let class = load_class(tx.conn(), auth.tenant_id, id, "").await?;
    let view = view(tx.conn(), class).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(view)
}

/// Cancelling returns each enrollment's remaining credits (a `refund` entry down to zero).
async fn refund_all(
    tx: &mut Tx,
    lock: &str,
    auth: &crate::auth::AuthUser,
    class: &Class,
    now: DateTime<Utc>,
) -> ClassResult<()> {
    for e in super::list_enrollments(tx.conn(), class.id).await? {
        // Under the enrollment's row lock, so a racing mark can't overdraw between read and append.
        super::load_enrollment(tx.conn(), auth.tenant_id, e.id, lock).await?;
        let balance = ledger::balance(tx.conn(), e.id).await?;
        if balance <= 0 {
            continue;
        }
        let movement = ledger::Movement {
            kind: LedgerKind::Refund,
            delta: -balance,
            meeting_id: None,
            reason: Some("class cancelled"),
            reference: None,
            actor: Some(auth.user_id),
            allow_negative: false,
        };
        let after = ledger::append(tx.conn(), auth.tenant_id, e.id, &movement, now).await?;
        let event = DomainEvent::CreditAdjusted {
            class_id: class.id,
            enrollment_id: e.id,
            student_id: e.student_id,
            kind: LedgerKind::Refund,
            delta: -balance,
            balance: after,
            reason: Some("class cancelled".into()),
        };
        outbox::append(tx.conn(), auth.tenant_id, now, &event).await?;
    }
    Ok(())
}

macro_rules! transition_route {
    ($name:ident, $path:literal, $to:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "classes", params(("id" = ClassId, Path)), security(("bearer" = [])),
            responses((status = 200, body = ClassView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
        pub async fn $name(
            State(cx): State<Ctx>,
            auth: Authed<AnyRole>,
            client: ClientInfo,
            Path(id): Path<ClassId>,
        ) -> ApiResult<Json<ClassView>> {
            Ok(Json(transition(&cx, &auth, client, id, $to).await?))
        }
    };
}

transition_route!(activate, "/api/v1/classes/{id}/activate", ClassStatus::Active, "Activates a draft class (staff).");
transition_route!(
    complete,
    "/api/v1/classes/{id}/complete",
    ClassStatus::Completed,
    "Completes an active class (staff or its instructor)."
);
transition_route!(
    cancel,
    "/api/v1/classes/{id}/cancel",
    ClassStatus::Cancelled,
    "Cancels a draft or active class (staff); remaining credits are refunded."
);
