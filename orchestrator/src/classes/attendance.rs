//! Attendance: instructors and staff mark each student of a meeting `present`, `late`, `absent` or
//! `excused`; the ledger follows (present/late cost a credit, a correction gives it back, the same
//! mark twice changes nothing). Reports per class and per student, as JSON or CSV.
//!
//! Concurrency: a mark locks the student's enrollment row (PostgreSQL) or holds the writer slot
//! (SQLite) while it reads the previous mark and appends to the ledger, so racing identical marks
//! deduct once, while marks for different students of a class proceed in parallel on PostgreSQL.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::{
    AttendanceStatus, Class, ClassError, ClassResult, ClassStatus, Ctx, LedgerKind, Meeting, Relation, ledger,
    load_class, load_meeting, meetings_of, relation, require_manager,
};
use crate::{
    audit,
    auth::{AnyRole, AuthUser, Authed},
    config::Config,
    db::{self, Db, Tx},
    error::{ApiResult, ErrorBody, Json, Path, Query},
    events::DomainEvent,
    identity::users,
    ids::{ClassId, EnrollmentId, MeetingId, UserId},
    outbox::{self},
    request::ClientInfo,
};

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    pub status: AttendanceStatus,
    /// Staff only: deduct even when the balance is zero (audited override).
    #[serde(default)]
    pub allow_negative: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudentMark {
    pub student_id: UserId,
    pub status: AttendanceStatus,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkMarkRequest {
    pub marks: Vec<StudentMark>,
    #[serde(default)]
    pub allow_negative: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MarkOutcome {
    pub meeting_id: MeetingId,
    pub student_id: UserId,
    pub status: AttendanceStatus,
    pub previous: Option<AttendanceStatus>,
    /// False when the mark was already this.
    pub changed: bool,
    /// The enrollment's credit balance after the mark.
    pub balance: i64,
}

/// When marking is allowed. `Ok(true)` means a staff correction after the window (audited).
fn check_window(
    rel: Relation,
    class: &Class,
    meeting: &Meeting,
    config: &Config,
    now: DateTime<Utc>,
) -> ClassResult<bool> {
    match class.status {
        ClassStatus::Active => {}
        ClassStatus::Completed if rel == Relation::Staff => {}
        _ => return Err(ClassError::refused("class_not_active", "attendance is taken in active classes")),
    }
    let opens = meeting.starts_at - Duration::seconds(config.attendance_lead_secs as i64);
    let closes = meeting.ends_at + Duration::seconds(config.attendance_grace_secs as i64);
    if now < opens {
        return Err(ClassError::refused("attendance_not_open", format!("attendance opens at {}", opens.to_rfc3339())));
    }
    let late = now > closes || class.status == ClassStatus::Completed;
    if late && rel != Relation::Staff {
        return Err(ClassError::refused(
            "attendance_window_closed",
            format!("attendance closed at {}; staff can still correct it", closes.to_rfc3339()),
        ));
    }
    Ok(late)
}

/// Applies one mark inside `tx`. The caller has checked permission and the window.
async fn apply_mark(
    tx: &mut Tx,
    auth: &AuthUser,
    class: &Class,
    meeting: &Meeting,
    mark: &StudentMark,
    allow_negative: bool,
    now: DateTime<Utc>,
) -> ClassResult<(MarkOutcome, Option<i64>)> {
    let enrollment_id = super::enrollment_of(tx.conn(), class.id, mark.student_id)
        .await?
        .ok_or_else(|| ClassError::invalid("not_enrolled", format!("student {} is not enrolled", mark.student_id)))?;
    // Serialises marks for this student (PostgreSQL); SQLite already holds the writer slot.
    let lock = Db::lock_clause(tx.conn());
    super::load_enrollment(tx.conn(), auth.tenant_id, enrollment_id, lock).await?;
    let previous = current_mark(tx.conn(), meeting.id, mark.student_id).await?;
    if previous == Some(mark.status) {
        let balance = ledger::balance(tx.conn(), enrollment_id).await?;
        let outcome = MarkOutcome {
            meeting_id: meeting.id,
            student_id: mark.student_id,
            status: mark.status,
            previous,
            changed: false,
            balance,
        };
        return Ok((outcome, None));
    }
    let mut overdraft = None;
    let mut events = vec![DomainEvent::AttendanceMarked {
        class_id: class.id,
        meeting_id: meeting.id,
        meeting_starts_at: meeting.starts_at,
        student_id: mark.student_id,
        previous,
        status: mark.status,
        marked_by: auth.user_id,
    }];
    let balance = match ledger::attendance_movement(previous, mark.status) {
        None => ledger::balance(tx.conn(), enrollment_id).await?,
        Some((kind, delta)) => {
            let reason = format!(
                "attendance {} → {}",
                previous.map_or("unmarked", AttendanceStatus::as_str),
                mark.status.as_str()
            );
            let movement = ledger::Movement {
                kind,
                delta,
                meeting_id: Some(meeting.id),
                reason: Some(&reason),
                reference: None,
                actor: Some(auth.user_id),
                allow_negative,
            };
            let balance = ledger::append(tx.conn(), auth.tenant_id, enrollment_id, &movement, now).await?;
            if balance < 0 && delta < 0 {
                overdraft = Some(balance);
            }
            events.push(match kind {
                LedgerKind::AttendanceDeduction => DomainEvent::CreditDeducted {
                    class_id: class.id,
                    enrollment_id,
                    student_id: mark.student_id,
                    meeting_id: meeting.id,
                    balance,
                },
                _ => DomainEvent::CreditAdjusted {
                    class_id: class.id,
                    enrollment_id,
                    student_id: mark.student_id,
                    kind,
                    delta,
                    balance,
                    reason: Some(reason),
                },
            });
            balance
        }
    };
    upsert(tx.conn(), auth, meeting.id, mark, enrollment_id, now).await?;
    for e in &events {
        outbox::append(tx.conn(), auth.tenant_id, now, e).await?;
    }
    let outcome = MarkOutcome {
        meeting_id: meeting.id,
        student_id: mark.student_id,
        status: mark.status,
        previous,
        changed: true,
        balance,
    };
    Ok((outcome, overdraft))
}

async fn current_mark(
    conn: &mut AnyConnection,
    meeting: MeetingId,
    student: UserId,
) -> Result<Option<AttendanceStatus>, sqlx::Error> {
    sqlx::query("SELECT status FROM attendance WHERE meeting_id = $1 AND student_id = $2")
        .bind(meeting.to_string())
        .bind(student.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| AttendanceStatus::from_column(&r.try_get::<String, _>("status")?))
        .transpose()
}

async fn upsert(
    conn: &mut AnyConnection,
    auth: &AuthUser,
    meeting: MeetingId,
    mark: &StudentMark,
    enrollment: EnrollmentId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO attendance (tenant_id, meeting_id, student_id, enrollment_id, status, marked_by, marked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (meeting_id, student_id) DO UPDATE SET status = $5, marked_by = $6, marked_at = $7",
    )
    .bind(auth.tenant_id.to_string())
    .bind(meeting.to_string())
    .bind(mark.student_id.to_string())
    .bind(enrollment.to_string())
    .bind(mark.status.as_str())
    .bind(auth.user_id.to_string())
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks several students of one meeting, all or nothing. Shared by the single and bulk routes.
pub async fn mark_all(
    cx: &Ctx,
    auth: &AuthUser,
    client: ClientInfo,
    meeting_id: MeetingId,
    mut marks: Vec<StudentMark>,
    allow_negative: bool,
) -> ClassResult<Vec<MarkOutcome>> {
    if marks.is_empty() || marks.len() > 1000 {
        return Err(ClassError::invalid("invalid_marks", "give 1 to 1000 marks"));
    }
    // A fixed lock order (by student) keeps concurrent bulk marks from deadlocking.
    marks.sort_by_key(|m| m.student_id);
    if marks.windows(2).any(|w| w[0].student_id == w[1].student_id) {
        return Err(ClassError::invalid("duplicate_student", "a student appears twice"));
    }
    let Ctx { db, clock, outbox, config } = cx;
    let now = clock.now();
    let mut tx = db.begin().await?;
    let (meeting, class) = load_meeting(tx.conn(), auth.tenant_id, meeting_id, "").await?;
    let rel = relation(tx.conn(), auth, &class).await?;
    require_manager(rel)?;
    if allow_negative && rel != Relation::Staff {
        return Err(ClassError::forbidden("override_staff_only", "only staff may let a balance go negative"));
    }
    let late_correction = check_window(rel, &class, &meeting, config, now)?;
    let mut outcomes = Vec::with_capacity(marks.len());
    for mark in &marks {
        let (outcome, overdraft) = apply_mark(&mut tx, auth, &class, &meeting, mark, allow_negative, now).await?;
        let action = match (overdraft, late_correction && outcome.changed) {
            (Some(_), _) => Some("credits.override"),
            (None, true) => Some("attendance.late_correction"),
            _ => None,
        };
        if let Some(action) = action {
            audit::record(
                tx.conn(),
                now,
                audit::Entry::new(auth.tenant_id, Some(auth.user_id), action, &client)
                    .target("attendance", format!("{}/{}", meeting.id, mark.student_id))
                    .details(serde_json::json!({
                        "previous": outcome.previous, "status": outcome.status, "balance": outcome.balance,
                        "late_correction": late_correction,
                    })),
            )
            .await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    outbox.notify();
    Ok(outcomes)
}

/// Marks one student's attendance at a meeting (the class's instructor or staff).
#[utoipa::path(put, path = "/api/v1/meetings/{id}/attendance/{student_id}", tag = "attendance", request_body = MarkRequest,
    params(("id" = MeetingId, Path), ("student_id" = UserId, Path)), security(("bearer" = [])),
    responses((status = 200, body = MarkOutcome), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "insufficient_credits, attendance_not_open, attendance_window_closed, class_not_active"),
        (status = 422, body = ErrorBody, description = "not_enrolled")))]
pub async fn mark(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Path((meeting_id, student_id)): Path<(MeetingId, UserId)>,
    Json(body): Json<MarkRequest>,
) -> ApiResult<Json<MarkOutcome>> {
    let marks = vec![StudentMark { student_id, status: body.status }];
    let mut out = mark_all(&cx, &auth, client, meeting_id, marks, body.allow_negative).await?;
    Ok(Json(out.remove(0)))
}

/// Marks the roster in one request: all marks apply, or none does.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/attendance", tag = "attendance", request_body = BulkMarkRequest,
    params(("id" = MeetingId, Path)), security(("bearer" = [])),
    responses((status = 200, body = Vec<MarkOutcome>), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn mark_bulk(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    client: ClientInfo,
    Path(meeting_id): Path<MeetingId>,
    Json(body): Json<BulkMarkRequest>,
) -> ApiResult<Json<Vec<MarkOutcome>>> {
    let out = mark_all(&cx, &auth, client, meeting_id, body.marks, body.allow_negative).await?;
    Ok(Json(out))
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttendanceRecord {
    pub meeting_id: MeetingId,
    pub meeting_starts_at: DateTime<Utc>,
    pub class_id: ClassId,
    pub class_title: String,
    pub student_id: UserId,
    pub student_name: String,
    /// `None` when not marked (yet).
    pub status: Option<AttendanceStatus>,
    pub marked_by: Option<UserId>,
    pub marked_at: Option<DateTime<Utc>>,
}

/// Every (meeting, enrolled student) pair of a class, marked or not, in meeting order.
async fn class_records(conn: &mut AnyConnection, class: &Class) -> Result<Vec<AttendanceRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id AS class_id, c.title AS class_title, m.id AS meeting_id, m.starts_at, u.id AS student_id,
                u.display_name, a.status, a.marked_by, a.marked_at
         FROM meetings m
         JOIN classes c ON c.id = m.class_id
         JOIN enrollments e ON e.class_id = m.class_id
         JOIN users u ON u.id = e.student_id
         LEFT JOIN attendance a ON a.meeting_id = m.id AND a.student_id = e.student_id
         WHERE m.class_id = $1
         ORDER BY m.starts_at, u.display_name, u.id",
    )
    .bind(class.id.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(record_from_row).collect()
}

/// Reads the columns both report queries select.
fn record_from_row(r: &sqlx::any::AnyRow) -> Result<AttendanceRecord, sqlx::Error> {
    Ok(AttendanceRecord {
        meeting_id: MeetingId::from_column(&r.try_get::<String, _>("meeting_id")?)?,
        meeting_starts_at: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
        class_id: ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
        class_title: r.try_get("class_title")?,
        student_id: UserId::from_column(&r.try_get::<String, _>("student_id")?)?,
        student_name: r.try_get("display_name")?,
        status: r.try_get::<Option<String>, _>("status")?.map(|s| AttendanceStatus::from_column(&s)).transpose()?,
        marked_by: r.try_get::<Option<String>, _>("marked_by")?.map(|s| UserId::from_column(&s)).transpose()?,
        marked_at: r.try_get::<Option<String>, _>("marked_at")?.map(|s| db::parse_ts(&s)).transpose()?,
    })
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    pub present: i64,
    pub late: i64,
    pub absent: i64,
    pub excused: i64,
    pub unmarked: i64,
}

impl Tally {
    fn add(&mut self, s: Option<AttendanceStatus>) {
        match s {
            Some(AttendanceStatus::Present) => self.present += 1,
            Some(AttendanceStatus::Late) => self.late += 1,
            Some(AttendanceStatus::Absent) => self.absent += 1,
            Some(AttendanceStatus::Excused) => self.excused += 1,
            None => self.unmarked += 1,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StudentSummary {
    pub student_id: UserId,
    pub student_name: String,
    pub balance: i64,
    #[serde(flatten)]
    pub tally: Tally,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClassReport {
    pub class_id: ClassId,
    pub class_title: String,
    pub meetings: Vec<Meeting>,
    pub students: Vec<StudentSummary>,
    pub records: Vec<AttendanceRecord>,
}

pub use crate::csv::Format;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Format,
}

const CSV_HEADER: &str =
    "class_id,class_title,meeting_id,meeting_starts_at,student_id,student_name,status,marked_by,marked_at";

fn csv(records: &[AttendanceRecord], filename: &str) -> Response {
    let rows = records.iter().map(|r| {
        vec![
            r.class_id.to_string(),
            r.class_title.clone(),
            r.meeting_id.to_string(),
            db::ts(r.meeting_starts_at),
            r.student_id.to_string(),
            r.student_name.clone(),
            r.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
            r.marked_by.map(|u| u.to_string()).unwrap_or_default(),
            r.marked_at.map(db::ts).unwrap_or_default(),
        ]
    });
    crate::csv::response(CSV_HEADER, rows, filename)
}

/// The class's attendance: per-student tallies and balances, and every (meeting, student) record.
/// Staff and the instructor. `?format=csv` gives the records as CSV.
#[utoipa::path(get, path = "/api/v1/classes/{id}/attendance", tag = "attendance", params(("id" = ClassId, Path), ReportQuery),
    security(("bearer" = [])), responses((status = 200, body = ClassReport), (status = 403, body = ErrorBody)))]
pub async fn class_report(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Path(id): Path<ClassId>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let mut conn = db.pool().acquire().await?;
    let class = load_class(&mut conn, auth.tenant_id, id, "").await?;
    require_manager(relation(&mut conn, &auth, &class).await?)?;
    let records = class_records(&mut conn, &class).await?;
    if let Format::Csv = q.format {
        return Ok(csv(&records, &format!("attendance-{id}.csv")));
    }
    let mut students = Vec::new();
    for e in super::list_enrollments(&mut conn, id).await? {
        let mut tally = Tally::default();
        let mut name = String::new();
        for r in records.iter().filter(|r| r.student_id == e.student_id) {
            tally.add(r.status);
            name.clone_from(&r.student_name);
        }
        students.push(StudentSummary {
            student_id: e.student_id,
            student_name: name,
            balance: ledger::balance(&mut conn, e.id).await?,
            tally,
        });
    }
    let meetings = meetings_of(&mut conn, &class).await?;
    Ok(Json(ClassReport { class_id: id, class_title: class.title, meetings, students, records }).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StudentReport {
    pub student_id: UserId,
    #[serde(flatten)]
    pub tally: Tally,
    pub records: Vec<AttendanceRecord>,
}

/// A student's attendance across their classes: the student, their parents, staff. `?format=csv`.
#[utoipa::path(get, path = "/api/v1/users/{id}/attendance", tag = "attendance", params(("id" = UserId, Path), ReportQuery),
    security(("bearer" = [])), responses((status = 200, body = StudentReport), (status = 403, body = ErrorBody)))]
pub async fn student_report(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let mut conn = db.pool().acquire().await?;
    users::load_viewable(&mut conn, &auth, id, clock.now(), "this student's attendance").await?;
    let rows = sqlx::query(
        "SELECT c.id AS class_id, c.title AS class_title, m.id AS meeting_id, m.starts_at, u.id AS student_id,
                u.display_name, a.status, a.marked_by, a.marked_at
         FROM enrollments e
         JOIN users u ON u.id = e.student_id
         JOIN classes c ON c.id = e.class_id
         JOIN meetings m ON m.class_id = c.id
         LEFT JOIN attendance a ON a.meeting_id = m.id AND a.student_id = e.student_id
         WHERE e.tenant_id = $1 AND e.student_id = $2
         ORDER BY m.starts_at, m.id",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let records = rows.iter().map(record_from_row).collect::<Result<Vec<_>, _>>()?;
    let mut tally = Tally::default();
    records.iter().for_each(|r| tally.add(r.status));
    if let Format::Csv = q.format {
        return Ok(csv(&records, &format!("attendance-{id}.csv")));
    }
    Ok(Json(StudentReport { student_id: id, tally, records }).into_response())
}
