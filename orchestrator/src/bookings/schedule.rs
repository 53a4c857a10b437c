//! The durable jobs a booking schedules, as data, and the functions that enqueue them in the
//! transaction of the change that causes them. What each job does when it runs is in `bookings::jobs`
//! (which drives `lifecycle`); keeping the payloads here lets `lifecycle` and `payments` schedule work
//! without depending on the code that runs it.
//!
//! Keys: a lesson's reminders, no-show check and auto-end share the prefix [`prefix`], so moving or
//! ending the lesson cancels them together ([`cancel_lesson`]); every other key names its one job.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use super::{Booking, policy::BookingPolicy};
use crate::{
    db,
    ids::{BookingId, RefundId, TenantId},
    jobs::{self, BackgroundJob, Schedule},
};

/// Expires a hold or a pending payment whose window ran out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireHold {
    pub booking_id: BookingId,
}

/// Reminds both sides of a confirmed lesson, `minutes_before` its start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remind {
    pub booking_id: BookingId,
    /// The start this reminder is for: a lesson that moved since has new reminders.
    pub starts_at: DateTime<Utc>,
    pub minutes_before: i64,
}

/// After the grace period: starts the lesson if both came, else records who didn't.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoShowCheck {
    pub booking_id: BookingId,
    pub starts_at: DateTime<Utc>,
}

/// Ends a lesson still in progress after its end and grace period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoEnd {
    pub booking_id: BookingId,
    pub starts_at: DateTime<Utc>,
}

/// Creates a confirmed lesson's media room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenRoom {
    pub booking_id: BookingId,
}

/// Asks the payment provider for a requested refund.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssueRefund {
    pub refund_id: RefundId,
}

/// Releases the tutor's share of `gross_minor` after the dispute window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleasePayout {
    pub booking_id: BookingId,
    pub gross_minor: i64,
}

/// Job keys of a lesson's schedule (cancelled together when the lesson moves or ends early).
fn prefix(id: BookingId) -> String {
    format!("booking:{id}:sched:")
}

async fn enqueue<J: BackgroundJob>(
    conn: &mut AnyConnection,
    tenant: TenantId,
    now: DateTime<Utc>,
    run_at: DateTime<Utc>,
    key: String,
    job: J,
) -> Result<(), sqlx::Error> {
    jobs::enqueue(conn, now, Schedule { tenant, run_at, dedupe_key: Some(key) }, &job).await.map(|_| ())
}

/// The expiry of a hold or pending payment, if it has one.
pub async fn expiry(conn: &mut AnyConnection, b: &Booking, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let Some(at) = b.expires_at else { return Ok(()) };
    let key = format!("booking:{}:expire:{}", b.id, db::ts(at));
    enqueue(conn, b.tenant_id, now, at, key, ExpireHold { booking_id: b.id }).await
}

/// What a confirmed lesson needs: reminders, the no-show check and the auto-end.
pub async fn lesson(
    conn: &mut AnyConnection,
    b: &Booking,
    pol: &BookingPolicy,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let (prefix, start, id, starts_at) = (prefix(b.id), db::ts(b.starts_at), b.id, b.starts_at);
    for &minutes in &pol.reminder_minutes {
        let at = b.starts_at - Duration::minutes(minutes);
        if at > now {
            let key = format!("{prefix}remind:{minutes}:{start}");
            enqueue(conn, b.tenant_id, now, at, key, Remind { booking_id: id, starts_at, minutes_before: minutes })
                .await?;
        }
    }
    let at = b.starts_at + Duration::minutes(pol.no_show_grace_minutes);
    let key = format!("{prefix}noshow:{start}");
    enqueue(conn, b.tenant_id, now, at, key, NoShowCheck { booking_id: id, starts_at }).await?;
    let at = b.ends_at + Duration::minutes(pol.auto_end_grace_minutes);
    let key = format!("{prefix}autoend:{start}");
    enqueue(conn, b.tenant_id, now, at, key, AutoEnd { booking_id: id, starts_at }).await
}

/// In the transaction that confirmed `b`: its room now, and the lesson's schedule.
pub async fn confirmed(
    conn: &mut AnyConnection,
    b: &Booking,
    pol: &BookingPolicy,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let key = format!("booking:{}:room", b.id);
    enqueue(conn, b.tenant_id, now, now, key, OpenRoom { booking_id: b.id }).await?;
    lesson(conn, b, pol, now).await
}

/// Cancels what [`lesson`] scheduled and hasn't run yet.
pub async fn cancel_lesson(conn: &mut AnyConnection, id: BookingId, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    jobs::cancel_queued(conn, now, &prefix(id)).await.map(|_| ())
}

/// The release of the tutor's share of `gross_minor` at `at` (after the dispute window).
pub async fn payout(
    conn: &mut AnyConnection,
    b: &Booking,
    gross_minor: i64,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let key = format!("payout:{}", b.id);
    enqueue(conn, b.tenant_id, now, at, key, ReleasePayout { booking_id: b.id, gross_minor }).await
}

/// The provider call for refund `id`, right away.
pub async fn refund(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: RefundId,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    enqueue(conn, tenant, now, now, format!("refund:{id}"), IssueRefund { refund_id: id }).await
}
