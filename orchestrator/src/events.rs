//! The domain events every change appends to the outbox, and the vocabulary they carry.
//!
//! Below the domains: the domains write these events and the outbox stores and dispatches them without
//! knowing any domain. The enums events carry (a booking's status, a class's kind, an attendance status,
//! a ledger entry's kind, a consent scope) live here with them, and each domain re-exports its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::Role,
    db::text_enum,
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

// The vocabulary events carry.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// The slot is reserved for a short while (the tenant's `hold_minutes`).
    Hold,
    /// Checkout started; the slot stays reserved for the payment window.
    PendingPayment,
    Confirmed,
    InProgress,
    Completed,
    /// The hold or payment window ran out.
    Expired,
    CancelledByStudent,
    CancelledByTutor,
    NoShowStudent,
    NoShowTutor,
    Refunded,
}

text_enum!(BookingStatus {
    Hold = "hold",
    PendingPayment = "pending_payment",
    Confirmed = "confirmed",
    InProgress = "in_progress",
    Completed = "completed",
    Expired = "expired",
    CancelledByStudent = "cancelled_by_student",
    CancelledByTutor = "cancelled_by_tutor",
    NoShowStudent = "no_show_student",
    NoShowTutor = "no_show_tutor",
    Refunded = "refunded",
});

impl BookingStatus {
    /// Statuses whose time the tutor can't give to anyone else (holds only until they expire).
    pub const OCCUPYING: &'static str = "('confirmed', 'in_progress', 'completed')";
    pub const HOLDING: &'static str = "('hold', 'pending_payment')";

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Expired | Self::CancelledByStudent | Self::CancelledByTutor | Self::NoShowTutor | Self::Refunded
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ClassKind {
    Group,
    Private,
}

text_enum!(ClassKind { Group = "group", Private = "private" });

/// A student's attendance at one meeting. `present` and `late` cost one credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttendanceStatus {
    Present,
    Late,
    Absent,
    Excused,
}

impl AttendanceStatus {
    /// Credits this status costs.
    pub fn cost(self) -> i64 {
        match self {
            AttendanceStatus::Present | AttendanceStatus::Late => 1,
            AttendanceStatus::Absent | AttendanceStatus::Excused => 0,
        }
    }
    pub fn attended(self) -> bool {
        self.cost() > 0
    }
}

text_enum!(AttendanceStatus { Present = "present", Late = "late", Absent = "absent", Excused = "excused" });

/// Kinds of credit-ledger entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Grant,
    AttendanceDeduction,
    AttendanceCorrection,
    ManualAdjustment,
    Refund,
}

text_enum!(LedgerKind {
    Grant = "grant",
    AttendanceDeduction = "attendance_deduction",
    AttendanceCorrection = "attendance_correction",
    ManualAdjustment = "manual_adjustment",
    Refund = "refund",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    LiveVideo,
    Chat,
    Recording,
}

text_enum!(ConsentScope { LiveVideo = "live_video", Chat = "chat", Recording = "recording" });

impl ConsentScope {
    pub const ALL: [ConsentScope; 3] = [ConsentScope::LiveVideo, ConsentScope::Chat, ConsentScope::Recording];
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
