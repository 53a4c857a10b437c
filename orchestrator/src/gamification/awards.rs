//! The gamification consumer: applies the rules of [`super`] to `AttendanceMarked`,
//! `LessonCompleted` and `ClassCompleted`, storing XP, the attendance mirror and badges, and
//! appending the award events — all through the dispatcher's connection, in its transaction.

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{AnyConnection, Row};

use super::{Badge, Mark, XpRules};
use crate::{
    classes::AttendanceStatus,
    db,
    events::DomainEvent,
    ids::{ClassId, LessonId, MeetingId, TenantId, UserId},
    outbox::{self, Consumer, EventEnvelope},
};

/// The outbox consumer. Its `processed_events` key is `"gamification"`.
pub struct Awards {
    rules: XpRules,
}

impl Awards {
    pub fn new(rules: XpRules) -> Self {
        Self { rules }
    }
}

impl Consumer for Awards {
    fn name(&self) -> &'static str {
        "gamification"
    }

    fn handle<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        event: &'a EventEnvelope,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let mut ctx = Applying { conn, tenant: event.tenant_id, event_id: event.id, now };
            match &event.event {
                DomainEvent::AttendanceMarked {
                    class_id, meeting_id, meeting_starts_at, student_id, status, ..
                } => {
                    ctx.attendance(&self.rules, *class_id, *meeting_id, *meeting_starts_at, *student_id, *status)
                        .await?
                }
                DomainEvent::LessonCompleted { class_id, lesson_id, student_id } => {
                    ctx.lesson_completed(&self.rules, *class_id, *lesson_id, *student_id).await?
                }
                DomainEvent::ClassCompleted { class_id } => ctx.class_completed(*class_id).await?,
                _ => {}
            }
            Ok(())
        })
    }
}

/// One event being applied.
struct Applying<'a> {
    conn: &'a mut AnyConnection,
    tenant: TenantId,
    event_id: i64,
    now: DateTime<Utc>,
}

impl Applying<'_> {
    async fn emit(&mut self, event: DomainEvent) -> Result<(), sqlx::Error> {
        outbox::append(self.conn, self.tenant, self.now, &event).await
    }

    /// Mirrors the mark, brings the meeting's XP to what the mark is worth, and updates the streak
    /// and badges. The event's `previous` is not trusted: the ledger and mirror already know it.
    async fn attendance(
        &mut self,
        rules: &XpRules,
        class: ClassId,
        meeting: MeetingId,
        starts_at: DateTime<Utc>,
        student: UserId,
        status: AttendanceStatus,
    ) -> anyhow::Result<()> {
        let before = super::streak(&marks(self.conn, self.tenant, class, student).await?);
        sqlx::query(
            "INSERT INTO gamification_attendance (tenant_id, class_id, student_id, meeting_id, meeting_starts_at, status)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (student_id, meeting_id) DO UPDATE SET meeting_starts_at = excluded.meeting_starts_at, status = excluded.status",
        )
        .bind(self.tenant.to_string())
        .bind(class.to_string())
        .bind(student.to_string())
        .bind(meeting.to_string())
        .bind(db::ts(starts_at))
        .bind(status.as_str())
        .execute(&mut *self.conn)
        .await?;
        let after = super::streak(&marks(self.conn, self.tenant, class, student).await?);

        let source = format!("meeting:{meeting}");
        let current = source_xp(self.conn, self.tenant, student, &source).await?;
        if let Some(amount) = super::correction(current, rules.for_attendance(status)) {
            self.award(student, class, &source, amount, &format!("attendance_{}", status.as_str())).await?;
        }
        if after != before {
            self.emit(DomainEvent::StreakUpdated { student_id: student, class_id: class, streak: after }).await?;
        }
        for badge in super::attendance_badges(status, after) {
            self.unlock(student, badge, class).await?;
        }
        Ok(())
    }

    /// Lesson XP, once per (student, lesson).
    async fn lesson_completed(
        &mut self,
        rules: &XpRules,
        class: ClassId,
        lesson: LessonId,
        student: UserId,
    ) -> anyhow::Result<()> {
        let source = format!("lesson:{lesson}");
        let seen: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM xp_ledger WHERE tenant_id = $1 AND student_id = $2 AND source = $3")
                .bind(self.tenant.to_string())
                .bind(student.to_string())
                .bind(&source)
                .fetch_one(&mut *self.conn)
                .await?
                .try_get("n")?;
        if seen == 0 && rules.lesson_completed != 0 {
            self.award(student, class, &source, rules.lesson_completed, "lesson_completed").await?;
        }
        Ok(())
    }

    /// `perfect_attendance` for every student with marks in the class who qualifies.
    async fn class_completed(&mut self, class: ClassId) -> anyhow::Result<()> {
        let rows = sqlx::query(
            "SELECT DISTINCT student_id FROM gamification_attendance WHERE tenant_id = $1 AND class_id = $2 ORDER BY student_id",
        )
        .bind(self.tenant.to_string())
        .bind(class.to_string())
        .fetch_all(&mut *self.conn)
        .await?;
        let students = rows
            .iter()
            .map(|r| UserId::from_column(&r.try_get::<String, _>("student_id")?))
            .collect::<Result<Vec<_>, _>>()?;
        for student in students {
            if super::perfect_attendance(&marks(self.conn, self.tenant, class, student).await?) {
                self.unlock(student, Badge::PerfectAttendance, class).await?;
            }
        }
        Ok(())
    }

    /// Appends `amount` to the ledger with its `XpAwarded`, and the `LevelUp` and XP badge it brings.
    async fn award(
        &mut self,
        student: UserId,
        class: ClassId,
        source: &str,
        amount: i64,
        reason: &str,
    ) -> anyhow::Result<()> {
        let before = total_xp(self.conn, self.tenant, student).await?;
        sqlx::query(
            "INSERT INTO xp_ledger (tenant_id, student_id, class_id, source, amount, reason, event_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(self.tenant.to_string())
        .bind(student.to_string())
        .bind(class.to_string())
        .bind(source)
        .bind(amount)
        .bind(reason)
        .bind(self.event_id)
        .bind(db::ts(self.now))
        .execute(&mut *self.conn)
        .await?;
        let total = before + amount;
        self.emit(DomainEvent::XpAwarded {
            student_id: student,
            class_id: Some(class),
            amount,
            total,
            reason: reason.to_string(),
        })
        .await?;
        let level = super::level(total);
        if level > super::level(before) {
            self.emit(DomainEvent::LevelUp { student_id: student, level }).await?;
        }
        for badge in super::xp_badges(total) {
            self.unlock(student, badge, class).await?;
        }
        Ok(())
    }

    /// Awards `badge` unless already held; global badges ignore `class`.
    async fn unlock(&mut self, student: UserId, badge: Badge, class: ClassId) -> anyhow::Result<()> {
        let class = badge.per_class().then_some(class);
        let inserted = sqlx::query(
            "INSERT INTO badges (tenant_id, student_id, badge, class_id, awarded_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(self.tenant.to_string())
        .bind(student.to_string())
        .bind(badge.as_str())
        .bind(class.map(|c| c.to_string()).unwrap_or_default())
        .bind(db::ts(self.now))
        .execute(&mut *self.conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            self.emit(DomainEvent::BadgeUnlocked {
                student_id: student,
                badge: badge.as_str().into(),
                class_id: class,
            })
            .await?;
        }
        Ok(())
    }
}

/// A student's marks in one class.
pub async fn marks(
    conn: &mut AnyConnection,
    tenant: TenantId,
    class: ClassId,
    student: UserId,
) -> Result<Vec<Mark>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT meeting_id, meeting_starts_at, status FROM gamification_attendance
         WHERE tenant_id = $1 AND class_id = $2 AND student_id = $3",
    )
    .bind(tenant.to_string())
    .bind(class.to_string())
    .bind(student.to_string())
    .fetch_all(conn)
    .await?;
    rows.iter().map(mark_from_row).collect()
}

pub(super) fn mark_from_row(r: &sqlx::any::AnyRow) -> Result<Mark, sqlx::Error> {
    Ok(Mark {
        meeting_id: MeetingId::from_column(&r.try_get::<String, _>("meeting_id")?)?,
        starts_at: db::parse_ts(&r.try_get::<String, _>("meeting_starts_at")?)?,
        status: AttendanceStatus::from_column(&r.try_get::<String, _>("status")?)?,
    })
}

/// A student's total XP.
pub async fn total_xp(conn: &mut AnyConnection, tenant: TenantId, student: UserId) -> Result<i64, sqlx::Error> {
    // SUM of BIGINT is NUMERIC on PostgreSQL, which the Any driver can't decode: cast it back.
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS xp FROM xp_ledger WHERE tenant_id = $1 AND student_id = $2",
    )
    .bind(tenant.to_string())
    .bind(student.to_string())
    .fetch_one(conn)
    .await?
    .try_get("xp")
}

/// What one source has given a student so far.
async fn source_xp(
    conn: &mut AnyConnection,
    tenant: TenantId,
    student: UserId,
    source: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS xp FROM xp_ledger
         WHERE tenant_id = $1 AND student_id = $2 AND source = $3",
    )
    .bind(tenant.to_string())
    .bind(student.to_string())
    .bind(source)
    .fetch_one(conn)
    .await?
    .try_get("xp")
}
