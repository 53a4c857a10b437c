//! The transactional outbox: every state change appends its typed [`DomainEvent`] in the same
//! transaction as the change; the dispatcher then hands committed events, in id order, to two kinds
//! of receiver:
//!
//! - durable [`Consumer`]s (gamification, notifications, ...) run inside the dispatcher's transaction
//!   that marks the event published, so their effects and the marking commit together: nothing is
//!   lost across a crash, and `processed_events` makes a second delivery a no-op. A consumer may
//!   append further events through the same connection; they are dispatched in a later round.
//! - live subscribers (bounded channels, e.g. the real-time fan-out) get each event after commit;
//!   a slow one slows the dispatcher rather than losing events; a crash between commit and fan-out
//!   loses only live pushes, which clients recover by reloading.
//!
//! On PostgreSQL an advisory lock lets one node at a time dispatch, which keeps the order across
//! nodes. A consumer error rolls the batch back; it is retried on the next round.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::{Notify, mpsc, watch};

use crate::{
    auth::Role,
    bookings::BookingStatus,
    classes::{AttendanceStatus, ClassKind, LedgerKind},
    clock::SharedClock,
    consent::ConsentScope,
    db::{self, Backend, Db},
    ids::{
        BookingId, ClassId, ConsentRequestId, CourseId, EnrollmentId, LessonId, MeetingId, PackageId, PaymentId,
        RefundId, TenantId, UserId,
    },
};

/// Every domain event. The `type` tag is the event's name on the wire and in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DomainEvent {
    // identity
    TenantCreated {
        tenant_id: TenantId,
        slug: String,
    },
    UserRegistered {
        user_id: UserId,
        role: Role,
    },
    UserRoleChanged {
        user_id: UserId,
        from: Role,
        to: Role,
        by: UserId,
    },
    ParentLinked {
        parent_id: UserId,
        child_id: UserId,
    },
    TenantSettingsChanged {
        consent_age: i64,
        self_registration: bool,
    },
    // classes
    CourseCreated {
        course_id: CourseId,
    },
    ClassCreated {
        class_id: ClassId,
        kind: ClassKind,
        instructor_id: UserId,
    },
    MeetingScheduled {
        class_id: ClassId,
        meeting_id: MeetingId,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    },
    ClassActivated {
        class_id: ClassId,
    },
    ClassCompleted {
        class_id: ClassId,
    },
    ClassCancelled {
        class_id: ClassId,
    },
    PackageChanged {
        class_id: ClassId,
        total_meetings: i64,
    },
    StudentEnrolled {
        class_id: ClassId,
        enrollment_id: EnrollmentId,
        student_id: UserId,
        credits: i64,
    },
    AttendanceMarked {
        class_id: ClassId,
        meeting_id: MeetingId,
        meeting_starts_at: DateTime<Utc>,
        student_id: UserId,
        previous: Option<AttendanceStatus>,
        status: AttendanceStatus,
        marked_by: UserId,
    },
    /// A credit left the balance for attendance.
    CreditDeducted {
        class_id: ClassId,
        enrollment_id: EnrollmentId,
        student_id: UserId,
        meeting_id: MeetingId,
        balance: i64,
    },
    /// Any other ledger movement: grant, correction, manual adjustment, refund.
    CreditAdjusted {
        class_id: ClassId,
        enrollment_id: EnrollmentId,
        student_id: UserId,
        kind: LedgerKind,
        delta: i64,
        balance: i64,
        reason: Option<String>,
    },
    LessonUnlocked {
        class_id: ClassId,
        lesson_id: LessonId,
        by: UserId,
    },
    LessonCompleted {
        class_id: ClassId,
        lesson_id: LessonId,
        student_id: UserId,
    },
    // consent
    ConsentRequested {
        request_id: ConsentRequestId,
        child_id: UserId,
        parent_id: UserId,
        scopes: Vec<ConsentScope>,
    },
    ConsentGranted {
        child_id: UserId,
        parent_id: UserId,
        scopes: Vec<ConsentScope>,
        method: String,
    },
    ConsentDenied {
        child_id: UserId,
        parent_id: UserId,
        scopes: Vec<ConsentScope>,
    },
    ConsentRevoked {
        child_id: UserId,
        parent_id: UserId,
        scopes: Vec<ConsentScope>,
    },
    // gamification
    XpAwarded {
        student_id: UserId,
        class_id: Option<ClassId>,
        amount: i64,
        total: i64,
        reason: String,
    },
    LevelUp {
        student_id: UserId,
        level: i64,
    },
    BadgeUnlocked {
        student_id: UserId,
        badge: String,
        class_id: Option<ClassId>,
    },
    StreakUpdated {
        student_id: UserId,
        class_id: ClassId,
        streak: i64,
    },
    /// A class meeting's instructor entered its media room for the first time: the meeting has started.
    MeetingStarted {
        class_id: ClassId,
        meeting_id: MeetingId,
        instructor_id: UserId,
    },
    // bookings
    /// Every booking status change, including creation (`from` absent).
    BookingStatusChanged {
        booking_id: BookingId,
        tutor_id: UserId,
        student_id: UserId,
        from: Option<BookingStatus>,
        to: BookingStatus,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        actor: Option<UserId>,
    },
    BookingRescheduled {
        booking_id: BookingId,
        tutor_id: UserId,
        student_id: UserId,
        previous_starts_at: DateTime<Utc>,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        actor: UserId,
    },
    LessonRoomReady {
        booking_id: BookingId,
        tutor_id: UserId,
        student_id: UserId,
        room: String,
        backend: String,
    },
    BookingReminder {
        booking_id: BookingId,
        tutor_id: UserId,
        student_id: UserId,
        starts_at: DateTime<Utc>,
        minutes_before: i64,
    },
    PackageStatusChanged {
        package_id: PackageId,
        student_id: UserId,
        tutor_id: UserId,
        status: String,
        remaining: i64,
    },
    PaymentSucceeded {
        payment_id: PaymentId,
        subject: String,
        amount_minor: i64,
        currency: String,
    },
    RefundIssued {
        refund_id: RefundId,
        payment_id: PaymentId,
        amount_minor: i64,
        currency: String,
        status: String,
    },
    PayoutReleased {
        booking_id: BookingId,
        tutor_id: UserId,
        gross_minor: i64,
        fee_minor: i64,
        share_minor: i64,
        currency: String,
    },
}

impl DomainEvent {
    /// The event's name: its serde tag.
    pub fn name(&self) -> &'static str {
        use DomainEvent::*;
        match self {
            TenantCreated { .. } => "TenantCreated",
            UserRegistered { .. } => "UserRegistered",
            UserRoleChanged { .. } => "UserRoleChanged",
            ParentLinked { .. } => "ParentLinked",
            TenantSettingsChanged { .. } => "TenantSettingsChanged",
            CourseCreated { .. } => "CourseCreated",
            ClassCreated { .. } => "ClassCreated",
            MeetingScheduled { .. } => "MeetingScheduled",
            ClassActivated { .. } => "ClassActivated",
            ClassCompleted { .. } => "ClassCompleted",
            ClassCancelled { .. } => "ClassCancelled",
            PackageChanged { .. } => "PackageChanged",
            StudentEnrolled { .. } => "StudentEnrolled",
            AttendanceMarked { .. } => "AttendanceMarked",
            CreditDeducted { .. } => "CreditDeducted",
            CreditAdjusted { .. } => "CreditAdjusted",
            LessonUnlocked { .. } => "LessonUnlocked",
            LessonCompleted { .. } => "LessonCompleted",
            ConsentRequested { .. } => "ConsentRequested",
            ConsentGranted { .. } => "ConsentGranted",
            ConsentDenied { .. } => "ConsentDenied",
            ConsentRevoked { .. } => "ConsentRevoked",
            XpAwarded { .. } => "XpAwarded",
            LevelUp { .. } => "LevelUp",
            BadgeUnlocked { .. } => "BadgeUnlocked",
            StreakUpdated { .. } => "StreakUpdated",
            MeetingStarted { .. } => "MeetingStarted",
            BookingStatusChanged { .. } => "BookingStatusChanged",
            BookingRescheduled { .. } => "BookingRescheduled",
            LessonRoomReady { .. } => "LessonRoomReady",
            BookingReminder { .. } => "BookingReminder",
            PackageStatusChanged { .. } => "PackageStatusChanged",
            PaymentSucceeded { .. } => "PaymentSucceeded",
            RefundIssued { .. } => "RefundIssued",
            PayoutReleased { .. } => "PayoutReleased",
        }
    }
}

/// A published event: its outbox id (increasing), tenant and time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    pub id: i64,
    pub tenant_id: TenantId,
    pub occurred_at: DateTime<Utc>,
    pub event: DomainEvent,
}

/// Appends `event` inside the caller's transaction.
pub async fn append(
    conn: &mut AnyConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
    event: &DomainEvent,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("INSERT INTO outbox (tenant_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tenant.to_string())
        .bind(event.name())
        .bind(payload)
        .bind(db::ts(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// A durable event handler, run in the dispatcher's transaction (see the module doc). It must use
/// only the connection it is given (on SQLite, opening another write transaction would deadlock).
pub trait Consumer: Send + Sync + 'static {
    /// Stable name, the key of its `processed_events` rows.
    fn name(&self) -> &'static str;
    fn handle<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        event: &'a EventEnvelope,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Records that `consumer` handled `event_id`; false when it already had.
async fn first_delivery(conn: &mut AnyConnection, consumer: &str, event_id: i64) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(consumer)
            .bind(event_id)
            .execute(conn)
            .await?
            .rows_affected();
    Ok(inserted == 1)
}

/// Handle to the dispatcher: register consumers, subscribe, or wake it after a commit.
#[derive(Clone, Default)]
pub struct Outbox {
    consumers: Arc<Mutex<Vec<Arc<dyn Consumer>>>>,
    subscribers: Arc<Mutex<Vec<mpsc::Sender<Arc<EventEnvelope>>>>>,
    wake: Arc<Notify>,
}

/// How many events one dispatch round reads.
const BATCH: i64 = 256;
/// How often the dispatcher polls when nobody wakes it (events written by other nodes).
const POLL: std::time::Duration = std::time::Duration::from_millis(500);

impl Outbox {
    /// Adds a durable consumer; it sees every event dispatched from now on.
    pub fn register(&self, consumer: Arc<dyn Consumer>) {
        self.consumers.lock().unwrap_or_else(|e| e.into_inner()).push(consumer);
    }

    /// A new subscriber receiving every event published from now on. `capacity` bounds its queue.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Arc<EventEnvelope>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// Tells the dispatcher that events were committed.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes until `shutdown` turns true, then drains what is already committed.
    pub async fn run(self, db: Db, clock: SharedClock, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.dispatch_once(&db, &clock).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "outbox dispatch failed; retrying");
                    tokio::time::sleep(POLL).await;
                }
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One round: publish up to `BATCH` unpublished events in order. Returns how many.
    pub async fn dispatch_once(&self, db: &Db, clock: &SharedClock) -> anyhow::Result<usize> {
        // A plain read first, so an idle poll doesn't take SQLite's writer slot.
        if sqlx::query("SELECT id FROM outbox WHERE published_at IS NULL LIMIT 1")
            .fetch_optional(db.pool())
            .await?
            .is_none()
        {
            return Ok(0);
        }
        let mut tx = db.begin().await?;
        if db.backend() == Backend::Postgres {
            let got: bool =
                sqlx::query("SELECT pg_try_advisory_xact_lock(7254001)").fetch_one(tx.conn()).await?.try_get(0)?;
            if !got {
                return Ok(0);
            }
        }
        let rows = sqlx::query(
            "SELECT id, tenant_id, payload, created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let payload: String = row.try_get("payload")?;
            let event: DomainEvent = match serde_json::from_str(&payload) {
                Ok(e) => e,
                Err(e) => {
                    // Written by a newer build during a rolling upgrade: marked published with the
                    // batch, so it can't block the queue; the warning keeps it visible.
                    tracing::warn!(error = %e, payload, "skipping undecodable outbox event");
                    continue;
                }
            };
            events.push(Arc::new(EventEnvelope {
                id: row.try_get("id")?,
                tenant_id: TenantId::from_column(&row.try_get::<String, _>("tenant_id")?)?,
                occurred_at: db::parse_ts(&row.try_get::<String, _>("created_at")?)?,
                event,
            }));
        }
        let consumers: Vec<_> = self.consumers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = clock.now();
        for event in &events {
            for consumer in &consumers {
                if first_delivery(tx.conn(), consumer.name(), event.id).await? {
                    consumer.handle(tx.conn(), event, now).await.map_err(|e| {
                        e.context(format!(
                            "consumer {} failed on event {} ({})",
                            consumer.name(),
                            event.id,
                            event.event.name()
                        ))
                    })?;
                }
            }
        }
        // Mark exactly the ids read: on PostgreSQL a lower id can commit after a higher one, and a
        // range update would mark it published unseen.
        let ids: Vec<i64> = rows.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
        let placeholders: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!("UPDATE outbox SET published_at = $1 WHERE id IN ({})", placeholders.join(", "));
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(db::ts(now));
        for id in &ids {
            update = update.bind(*id);
        }
        update.execute(tx.conn()).await?;
        tx.commit().await?;
        let subscribers: Vec<_> = self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for event in &events {
            for sub in &subscribers {
                // A closed subscriber is dropped below; a full one makes us wait (no loss).
                let _ = sub.send(event.clone()).await;
            }
        }
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| !s.is_closed());
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_the_serde_tag() {
        let events = [
            DomainEvent::ParentLinked { parent_id: UserId::new(), child_id: UserId::new() },
            DomainEvent::AttendanceMarked {
                class_id: ClassId::new(),
                meeting_id: MeetingId::new(),
                meeting_starts_at: Utc::now(),
                student_id: UserId::new(),
                previous: None,
                status: AttendanceStatus::Late,
                marked_by: UserId::new(),
            },
            DomainEvent::ConsentRevoked {
                child_id: UserId::new(),
                parent_id: UserId::new(),
                scopes: vec![ConsentScope::Chat],
            },
            DomainEvent::StreakUpdated { student_id: UserId::new(), class_id: ClassId::new(), streak: 2 },
        ];
        for e in events {
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["type"], e.name());
            assert_eq!(serde_json::from_value::<DomainEvent>(v).unwrap(), e);
        }
    }
}
