//! Classes: courses with ordered lessons, classes (group or private) with their meetings and
//! package, enrollments, the append-only credit ledger, attendance, and lesson unlocks.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::text_enum;
pub use crate::events::{AttendanceStatus, ClassKind, LedgerKind};
pub use error::{ClassError, ClassResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClassStatus {
    Draft,
    Active,
    Completed,
    Cancelled,
}

text_enum!(ClassStatus { Draft = "draft", Active = "active", Completed = "completed", Cancelled = "cancelled" });

pub mod attendance;
pub mod courses;
pub mod enrollments;
pub mod error;
pub mod ledger;
pub mod lifecycle;
pub mod room;
pub mod unlocks;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row, any::AnyRow};

use crate::{
    auth::{AuthUser, Role},
    db,
    identity::users,
    ids::{ClassId, CourseId, EnrollmentId, MeetingId, TenantId, UserId},
};

/// The handles the classes handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub outbox: crate::outbox::Outbox,
    pub config: std::sync::Arc<crate::config::Config>,
}

/// A student's place in a class (its credits are on the ledger, `ledger`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Enrollment {
    pub id: EnrollmentId,
    pub class_id: ClassId,
    pub student_id: UserId,
    /// Payment or grant reference given at enrollment.
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn enrollment_from_row(r: &AnyRow) -> Result<Enrollment, sqlx::Error> {
    Ok(Enrollment {
        id: EnrollmentId::from_column(&r.try_get::<String, _>("id")?)?,
        class_id: ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
        student_id: UserId::from_column(&r.try_get::<String, _>("student_id")?)?,
        reference: r.try_get("reference")?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
    })
}

/// Loads an enrollment of `tenant`; `lock` is the backend's row lock (see `Db::for_update`).
pub async fn load_enrollment(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: EnrollmentId,
    lock: &str,
) -> ClassResult<Enrollment> {
    let sql = format!(
        "SELECT id, class_id, student_id, reference, created_at FROM enrollments WHERE tenant_id = $1 AND id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ClassError::not_found("enrollment_not_found", "no such enrollment"))?;
    Ok(enrollment_from_row(&row)?)
}

pub async fn list_enrollments(conn: &mut AnyConnection, class: ClassId) -> Result<Vec<Enrollment>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, class_id, student_id, reference, created_at FROM enrollments WHERE class_id = $1 ORDER BY id",
    )
    .bind(class.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(enrollment_from_row).collect()
}

pub async fn count_enrollments(conn: &mut AnyConnection, class: ClassId) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM enrollments WHERE class_id = $1")
        .bind(class.to_string())
        .fetch_one(conn)
        .await?
        .try_get("n")
}

/// Whether the caller may see this enrollment's details: managers, the student, their parents.
pub async fn may_view_enrollment(
    conn: &mut AnyConnection,
    auth: &AuthUser,
    rel: Relation,
    e: &Enrollment,
) -> Result<bool, sqlx::Error> {
    Ok(rel.manages() || users::is_self_parent_or_staff(conn, auth, e.student_id).await?)
}

/// A class as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Class {
    pub id: ClassId,
    pub tenant_id: TenantId,
    pub kind: ClassKind,
    pub title: String,
    pub course_id: CourseId,
    pub instructor_id: UserId,
    pub total_meetings: i64,
    /// Group classes only.
    pub capacity: Option<i64>,
    /// IANA time zone the class is displayed in.
    pub timezone: String,
    pub status: ClassStatus,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

const CLASS_COLUMNS: &str = "id, tenant_id, kind, title, course_id, instructor_id, total_meetings, capacity, timezone, \
     status, created_at, activated_at, ended_at";

fn opt_ts(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    r.try_get::<Option<String>, _>(col)?.map(|s| db::parse_ts(&s)).transpose()
}

fn class_from_row(r: &AnyRow) -> Result<Class, sqlx::Error> {
    Ok(Class {
        id: ClassId::from_column(&r.try_get::<String, _>("id")?)?,
        tenant_id: TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?,
        kind: ClassKind::from_column(&r.try_get::<String, _>("kind")?)?,
        title: r.try_get("title")?,
        course_id: CourseId::from_column(&r.try_get::<String, _>("course_id")?)?,
        instructor_id: UserId::from_column(&r.try_get::<String, _>("instructor_id")?)?,
        total_meetings: r.try_get("total_meetings")?,
        capacity: r.try_get("capacity")?,
        timezone: r.try_get("timezone")?,
        status: ClassStatus::from_column(&r.try_get::<String, _>("status")?)?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        activated_at: opt_ts(r, "activated_at")?,
        ended_at: opt_ts(r, "ended_at")?,
    })
}

/// Loads a class of `tenant`. `lock` appends the backend's row lock (use inside write transactions
/// that check-then-change the class, e.g. capacity).
pub async fn load_class(conn: &mut AnyConnection, tenant: TenantId, id: ClassId, lock: &str) -> ClassResult<Class> {
    let sql = format!("SELECT {CLASS_COLUMNS} FROM classes WHERE tenant_id = $1 AND id = $2{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ClassError::not_found("class_not_found", "no such class"))?;
    Ok(class_from_row(&row)?)
}

/// How the caller relates to a class; decides what they may see and do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Staff,
    Instructor,
    /// An enrolled student (with their enrollment).
    Student(EnrollmentId),
    /// A parent of an enrolled student.
    Parent,
    None,
}

impl Relation {
    /// Staff or the class's instructor: may run the class.
    pub fn manages(self) -> bool {
        matches!(self, Relation::Staff | Relation::Instructor)
    }
    pub fn is_member(self) -> bool {
        !matches!(self, Relation::None)
    }
}

pub async fn relation(conn: &mut AnyConnection, auth: &AuthUser, class: &Class) -> ClassResult<Relation> {
    if auth.is_staff() {
        return Ok(Relation::Staff);
    }
    if auth.user_id == class.instructor_id {
        return Ok(Relation::Instructor);
    }
    match auth.role {
        Role::Student => {
            Ok(enrollment_of(conn, class.id, auth.user_id).await?.map_or(Relation::None, Relation::Student))
        }
        Role::Parent => {
            let row = sqlx::query(
                "SELECT 1 FROM enrollments e JOIN parent_links l ON l.child_id = e.student_id
                 WHERE e.class_id = $1 AND l.parent_id = $2 LIMIT 1",
            )
            .bind(class.id.to_string())
            .bind(auth.user_id.to_string())
            .fetch_optional(conn)
            .await?;
            Ok(if row.is_some() { Relation::Parent } else { Relation::None })
        }
        _ => Ok(Relation::None),
    }
}

/// Forbidden unless the caller manages the class.
pub fn require_manager(rel: Relation) -> ClassResult<()> {
    if rel.manages() {
        Ok(())
    } else {
        Err(ClassError::forbidden("not_class_manager", "only the class's instructor or staff may do this"))
    }
}

/// Forbidden unless the caller belongs to the class in some way.
pub fn require_member(rel: Relation) -> ClassResult<()> {
    if rel.is_member() {
        Ok(())
    } else {
        Err(ClassError::forbidden("not_class_member", "you are not part of this class"))
    }
}

pub async fn enrollment_of(
    conn: &mut AnyConnection,
    class: ClassId,
    student: UserId,
) -> Result<Option<EnrollmentId>, sqlx::Error> {
    sqlx::query("SELECT id FROM enrollments WHERE class_id = $1 AND student_id = $2")
        .bind(class.to_string())
        .bind(student.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| EnrollmentId::from_column(&r.try_get::<String, _>("id")?))
        .transpose()
}

/// A meeting of a class.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Meeting {
    pub id: MeetingId,
    pub class_id: ClassId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The start in the class's time zone, for display (RFC 3339 with offset).
    pub starts_at_local: String,
}

pub(crate) fn local_time(t: DateTime<Utc>, tz: &str) -> String {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(zone) => t.with_timezone(&zone).to_rfc3339(),
        Err(_) => t.to_rfc3339(),
    }
}

fn meeting_from_row(r: &AnyRow, tz: &str) -> Result<Meeting, sqlx::Error> {
    let starts_at = db::parse_ts(&r.try_get::<String, _>("starts_at")?)?;
    Ok(Meeting {
        id: MeetingId::from_column(&r.try_get::<String, _>("id")?)?,
        class_id: ClassId::from_column(&r.try_get::<String, _>("class_id")?)?,
        starts_at,
        ends_at: db::parse_ts(&r.try_get::<String, _>("ends_at")?)?,
        starts_at_local: local_time(starts_at, tz),
    })
}

pub async fn meetings_of(conn: &mut AnyConnection, class: &Class) -> Result<Vec<Meeting>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, class_id, starts_at, ends_at FROM meetings WHERE class_id = $1 ORDER BY starts_at")
            .bind(class.id.to_string())
            .fetch_all(conn)
            .await?;
    rows.iter().map(|r| meeting_from_row(r, &class.timezone)).collect()
}

/// Loads a meeting of `tenant` with its class.
pub async fn load_meeting(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: MeetingId,
    lock: &str,
) -> ClassResult<(Meeting, Class)> {
    let row = sqlx::query("SELECT id, class_id, starts_at, ends_at FROM meetings WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ClassError::not_found("meeting_not_found", "no such meeting"))?;
    let class_id = ClassId::from_column(&row.try_get::<String, _>("class_id")?)?;
    let class = load_class(conn, tenant, class_id, lock).await?;
    Ok((meeting_from_row(&row, &class.timezone)?, class))
}

/// Loads a student of the tenant for enrollment-type checks.
pub async fn load_student(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: UserId,
    now: DateTime<Utc>,
) -> ClassResult<users::User> {
    let user = users::get_or_404(conn, tenant, id, now).await?;
    if user.role != Role::Student {
        return Err(ClassError::invalid("not_a_student", "only students can be enrolled"));
    }
    Ok(user)
}
