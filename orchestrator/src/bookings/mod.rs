//! Bookings: the 1:1 tutoring marketplace.
//!
//! Layout:
//! - this file — [`BookingStatus`], the pure transition table ([`next`]), the stored [`Booking`] and the one
//!   function that changes a booking's status ([`transition`]: history row + outbox event, same transaction);
//! - `policy` — the tenant's [`policy::BookingPolicy`] and the pure cancellation / no-show outcomes;
//! - `tutors` — tutors' availability and booking rules, and the slot listing (through the `scheduling` crate);
//! - `lifecycle` — hold, cancel, reschedule, start, complete, no-show, refund (and the steps jobs drive); listing;
//! - `payments` — payment and refund records;
//! - `checkout` — paying: checkout, buying a package, the provider call, and settling money that arrived
//!   (staff recording it, or the provider's webhook) into a confirmed booking or an active package;
//! - `packages` — prepaid lessons with one tutor;
//! - `room` — who may enter a lesson's room with which rights (one rule for the real-time room and for
//!   media join tokens), and `POST /bookings/{id}/join`;
//! - `schedule` — the durable jobs bookings schedule (hold expiry, reminders, no-show check, auto-end, room
//!   creation, refunds, payout release), as data, enqueued with the change that causes them;
//! - `jobs` — what each of those jobs does when it runs (on top: it drives `lifecycle`);
//! - `error` — [`BookingError`], what storage, transitions and the lifecycle steps return; an `ApiError` only at
//!   the HTTP edge.
//!
//! The guarantee that a slot is never booked twice: every change to a tutor's calendar first locks the
//! tutor's `tutor_profiles` row (`FOR UPDATE` on PostgreSQL; SQLite's single writer on SQLite), then checks
//! for conflicts against the same busy set the slot listing uses, then writes.

pub mod checkout;
pub mod error;
pub mod jobs;
pub mod lifecycle;
pub mod packages;
pub mod payments;
pub mod policy;
pub mod room;
pub mod schedule;
pub mod tutors;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::ToSchema;

use crate::{
    auth::AuthUser,
    clock::SharedClock,
    db::{self, Db, Tx},
    error::ApiResult,
    events::DomainEvent,
    identity::users,
    ids::{BookingId, PackageId, TenantId, UserId},
    jobs::Jobs,
    outbox,
    outbox::Outbox,
};

/// The handles booking handlers use, extracted as one `State<Ctx>`.
#[derive(Clone)]
pub struct Ctx {
    pub db: Db,
    pub clock: SharedClock,
    pub outbox: Outbox,
    pub jobs: Jobs,
    pub provider: payments::SharedProvider,
}

impl Ctx {
    /// Commits `tx`, then wakes the outbox dispatcher and the job runner for what it wrote.
    pub async fn commit(&self, tx: Tx) -> ApiResult<()> {
        tx.commit().await?;
        self.outbox.notify();
        self.jobs.notify();
        Ok(())
    }
}

pub use crate::events::BookingStatus;
pub use error::{BookingError, BookingResult};

/// What moves a booking from one status to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Checkout,
    PaymentSucceeded,
    PayWithPackage,
    Expire,
    CancelByStudent,
    CancelByTutor,
    Start,
    Complete,
    NoShowStudent,
    NoShowTutor,
    Refund,
}

/// The transition table. Everything not listed is illegal.
pub fn next(from: BookingStatus, action: Action) -> Option<BookingStatus> {
    use Action as A;
    use BookingStatus as S;
    Some(match (from, action) {
        (S::Hold, A::Checkout) => S::PendingPayment,
        (S::Hold | S::PendingPayment, A::PaymentSucceeded) => S::Confirmed,
        (S::Hold, A::PayWithPackage) => S::Confirmed,
        (S::Hold | S::PendingPayment, A::Expire) => S::Expired,
        (S::Hold | S::PendingPayment | S::Confirmed, A::CancelByStudent) => S::CancelledByStudent,
        (S::Hold | S::PendingPayment | S::Confirmed, A::CancelByTutor) => S::CancelledByTutor,
        (S::Confirmed, A::Start) => S::InProgress,
        (S::InProgress, A::Complete) => S::Completed,
        (S::Confirmed | S::InProgress, A::NoShowStudent) => S::NoShowStudent,
        (S::Confirmed | S::InProgress, A::NoShowTutor) => S::NoShowTutor,
        (S::Completed | S::NoShowStudent, A::Refund) => S::Refunded,
        _ => return None,
    })
}

/// `next`, or why not.
pub fn step(from: BookingStatus, action: Action) -> BookingResult<BookingStatus> {
    next(from, action).ok_or(BookingError::IllegalTransition { from, action })
}

/// A booking as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Booking {
    pub id: BookingId,
    pub tenant_id: TenantId,
    pub tutor_id: UserId,
    pub student_id: UserId,
    pub booked_by: UserId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub minutes: i64,
    pub status: BookingStatus,
    /// Minor units of `currency`; 0 when paid with a package credit.
    pub price_minor: i64,
    pub currency: String,
    pub package_id: Option<PackageId>,
    /// While `hold` or `pending_payment`: when the reservation lapses.
    pub expires_at: Option<DateTime<Utc>>,
    pub reschedules: i64,
    /// The live room's name, once the lesson's room exists.
    pub room: Option<String>,
    /// Money owed back to the payer after a cancellation, no-show or refund.
    pub refund_minor: i64,
    /// Whether a package credit went back to the package.
    pub credit_returned: bool,
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const BOOKING_COLUMNS: &str = "id, tenant_id, tutor_id, student_id, booked_by, starts_at, ends_at, minutes, status, \
     price_minor, currency, package_id, expires_at, reschedules, room, refund_minor, credit_returned, cancel_reason, \
     created_at, updated_at";

fn opt_ts(r: &AnyRow, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    r.try_get::<Option<String>, _>(col)?.map(|s| db::parse_ts(&s)).transpose()
}

fn booking_from_row(r: &AnyRow) -> Result<Booking, sqlx::Error> {
    let uid = |c: &str| -> Result<UserId, sqlx::Error> { UserId::from_column(&r.try_get::<String, _>(c)?) };
    Ok(Booking {
        id: BookingId::from_column(&r.try_get::<String, _>("id")?)?,
        tenant_id: TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?,
        tutor_id: uid("tutor_id")?,
        student_id: uid("student_id")?,
        booked_by: uid("booked_by")?,
        starts_at: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
        ends_at: db::parse_ts(&r.try_get::<String, _>("ends_at")?)?,
        minutes: r.try_get("minutes")?,
        status: BookingStatus::from_column(&r.try_get::<String, _>("status")?)?,
        price_minor: r.try_get("price_minor")?,
        currency: r.try_get("currency")?,
        package_id: r.try_get::<Option<String>, _>("package_id")?.map(|s| PackageId::from_column(&s)).transpose()?,
        expires_at: opt_ts(r, "expires_at")?,
        reschedules: r.try_get("reschedules")?,
        room: r.try_get("room")?,
        refund_minor: r.try_get("refund_minor")?,
        credit_returned: r.try_get::<i64, _>("credit_returned")? != 0,
        cancel_reason: r.try_get("cancel_reason")?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        updated_at: db::parse_ts(&r.try_get::<String, _>("updated_at")?)?,
    })
}

/// Loads a booking of `tenant` (404 otherwise). `lock` is `Db::for_update()` inside write transactions.
pub async fn load(conn: &mut AnyConnection, tenant: TenantId, id: BookingId, lock: &str) -> BookingResult<Booking> {
    let sql = format!("SELECT {BOOKING_COLUMNS} FROM bookings WHERE tenant_id = $1 AND id = $2{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(BookingError::NotFound)?;
    Ok(booking_from_row(&row)?)
}

/// How the caller relates to a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Staff,
    Tutor,
    Student,
    /// A linked parent of the student: acts for the student.
    Parent,
}

impl Party {
    /// Acts on the student's side (the student or their parent).
    pub fn for_student(self) -> bool {
        matches!(self, Party::Student | Party::Parent)
    }
}

/// The caller's part in `b`, or 404 (a booking one isn't part of doesn't exist for them).
pub async fn party(conn: &mut AnyConnection, auth: &AuthUser, b: &Booking) -> BookingResult<Party> {
    if auth.is_staff() {
        Ok(Party::Staff)
    } else if auth.user_id == b.tutor_id {
        Ok(Party::Tutor)
    } else if auth.user_id == b.student_id {
        Ok(Party::Student)
    } else if users::is_parent_of(conn, auth.tenant_id, auth.user_id, b.student_id).await? {
        Ok(Party::Parent)
    } else {
        Err(BookingError::NotFound)
    }
}

/// What a status change records besides the new status.
pub struct Change<'a> {
    pub action: Action,
    pub actor: Option<UserId>,
    pub reason: Option<&'a str>,
}

/// Moves `b` by `change`: checks the table, updates the row (and `b`), appends the history row and the
/// `BookingStatusChanged` event, all on `conn` (the caller's transaction, holding the booking's lock).
pub async fn transition(
    conn: &mut AnyConnection,
    b: &mut Booking,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> BookingResult<HistoryEntry> {
    let to = step(b.status, change.action)?;
    let from = b.status;
    let expires = if matches!(to, BookingStatus::Hold | BookingStatus::PendingPayment) { b.expires_at } else { None };
    sqlx::query("UPDATE bookings SET status = $1, expires_at = $2, updated_at = $3 WHERE id = $4")
        .bind(to.as_str())
        .bind(expires.map(db::ts))
        .bind(db::ts(now))
        .bind(b.id.to_string())
        .execute(&mut *conn)
        .await?;
    b.status = to;
    b.expires_at = expires;
    b.updated_at = now;
    record(conn, b, Some(from), change.actor, change.reason, now).await
}

/// Appends a history row and the event for `b`'s current status (`from` None: the booking is new), and
/// returns the row.
pub async fn record(
    conn: &mut AnyConnection,
    b: &Booking,
    from: Option<BookingStatus>,
    actor: Option<UserId>,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> BookingResult<HistoryEntry> {
    sqlx::query(
        "INSERT INTO booking_transitions (booking_id, seq, from_status, to_status, actor_id, reason, at)
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM booking_transitions WHERE booking_id = $1",
    )
    .bind(b.id.to_string())
    .bind(from.map(|s| s.as_str()))
    .bind(b.status.as_str())
    .bind(actor.map(|a| a.to_string()))
    .bind(reason)
    .bind(db::ts(now))
    .execute(&mut *conn)
    .await?;
    let event = DomainEvent::BookingStatusChanged {
        booking_id: b.id,
        tutor_id: b.tutor_id,
        student_id: b.student_id,
        from,
        to: b.status,
        starts_at: b.starts_at,
        ends_at: b.ends_at,
        actor,
    };
    outbox::append(conn, b.tenant_id, now, &event).await?;
    Ok(HistoryEntry { from, to: b.status, actor_id: actor, reason: reason.map(String::from), at: now })
}

/// One row of a booking's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub from: Option<BookingStatus>,
    pub to: BookingStatus,
    pub actor_id: Option<UserId>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

pub async fn history(conn: &mut AnyConnection, id: BookingId) -> BookingResult<Vec<HistoryEntry>> {
    let rows = sqlx::query(
        "SELECT from_status, to_status, actor_id, reason, at FROM booking_transitions WHERE booking_id = $1 ORDER BY seq",
    )
    .bind(id.to_string())
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(HistoryEntry {
            from: r.try_get::<Option<String>, _>("from_status")?.map(|s| BookingStatus::from_column(&s)).transpose()?,
            to: BookingStatus::from_column(&r.try_get::<String, _>("to_status")?)?,
            actor_id: r.try_get::<Option<String>, _>("actor_id")?.map(|s| UserId::from_column(&s)).transpose()?,
            reason: r.try_get("reason")?,
            at: db::parse_ts(&r.try_get::<String, _>("at")?)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BookingStatus as S;

    const ALL: [BookingStatus; 11] = [
        S::Hold,
        S::PendingPayment,
        S::Confirmed,
        S::InProgress,
        S::Completed,
        S::Expired,
        S::CancelledByStudent,
        S::CancelledByTutor,
        S::NoShowStudent,
        S::NoShowTutor,
        S::Refunded,
    ];
    const ACTIONS: [Action; 11] = [
        Action::Checkout,
        Action::PaymentSucceeded,
        Action::PayWithPackage,
        Action::Expire,
        Action::CancelByStudent,
        Action::CancelByTutor,
        Action::Start,
        Action::Complete,
        Action::NoShowStudent,
        Action::NoShowTutor,
        Action::Refund,
    ];

    #[test]
    fn the_happy_path() {
        let mut s = S::Hold;
        for (a, want) in [
            (Action::Checkout, S::PendingPayment),
            (Action::PaymentSucceeded, S::Confirmed),
            (Action::Start, S::InProgress),
            (Action::Complete, S::Completed),
            (Action::Refund, S::Refunded),
        ] {
            s = next(s, a).unwrap();
            assert_eq!(s, want);
        }
    }

    #[test]
    fn terminal_statuses_go_nowhere() {
        for s in ALL.into_iter().filter(|s| s.is_terminal()) {
            for a in ACTIONS {
                assert_eq!(next(s, a), None, "{s:?} {a:?}");
            }
        }
    }

    #[test]
    fn nothing_returns_to_an_earlier_reservation_state_and_time_only_runs_out_on_reservations() {
        for s in ALL {
            for a in ACTIONS {
                if let Some(t) = next(s, a) {
                    assert_ne!(t, S::Hold, "{s:?} {a:?}");
                    if t == S::Expired {
                        assert!(matches!(s, S::Hold | S::PendingPayment));
                    }
                    if t == S::Confirmed {
                        assert!(matches!(s, S::Hold | S::PendingPayment), "only payment confirms");
                    }
                }
            }
        }
        assert!(step(S::Completed, Action::CancelByStudent).is_err());
        assert_eq!(step(S::Expired, Action::PaymentSucceeded).unwrap_err().code(), "illegal_transition");
    }

    #[test]
    fn text_round_trips() {
        for s in ALL {
            assert_eq!(BookingStatus::from_column(s.as_str()).unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }
}
