//! What the jobs bookings schedule (`bookings::schedule`) do when they run; registered with the job
//! runner in `Server::build`. Each runs in the transaction that marks its job done, re-reads the booking
//! under its lock and acts only if the booking is still in the state the job was scheduled for (a
//! reminder for a lesson that moved, an expiry for a hold that was paid, do nothing) — so a job that runs
//! late, twice, or after a restart changes nothing twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::{
    Booking, BookingStatus, lifecycle,
    payments::SharedProvider,
    policy::{self, Side},
    schedule::{AutoEnd, ExpireHold, IssueRefund, NoShowCheck, OpenRoom, ReleasePayout, Remind},
};
use crate::{
    db::{self, Db},
    events::DomainEvent,
    ids::{BookingId, PaymentId, TenantId, UserId},
    jobs::{BackgroundJob, Job, Jobs},
    mailer::{SharedMailer, notices},
    money, outbox,
};

/// What the jobs reach beyond the database.
pub struct Deps {
    pub mailer: SharedMailer,
    /// Links and the calendar organizer in mail.
    pub site: notices::Site,
    pub provider: SharedProvider,
    /// Set when Stripe is configured: released shares are transferred to tutors' connected accounts.
    pub stripe: money::stripe::SharedStripe,
    pub media: Arc<dyn rooms::MediaBackend>,
}

/// Registers every booking job with `jobs`.
pub fn register(jobs: &Jobs, deps: Arc<Deps>) {
    jobs.register::<ExpireHold>(deps.clone());
    jobs.register::<Remind>(deps.clone());
    jobs.register::<NoShowCheck>(deps.clone());
    jobs.register::<AutoEnd>(deps.clone());
    jobs.register::<OpenRoom>(deps.clone());
    jobs.register::<ReleasePayout>(deps.clone());
    jobs.register::<IssueRefund>(deps);
}

/// The booking a job is about, under its lock.
async fn locked(conn: &mut AnyConnection, tenant: TenantId, id: BookingId) -> anyhow::Result<Booking> {
    Ok(super::load(conn, tenant, id, Db::lock_clause(conn)).await?)
}

impl BackgroundJob for ExpireHold {
    const KIND: &'static str = "booking.expire";
    type Deps = Deps;

    async fn run(self, _: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut b = locked(conn, job.tenant_id, self.booking_id).await?;
        let lapsed = b.expires_at.is_some_and(|t| t <= now);
        if matches!(b.status, BookingStatus::Hold | BookingStatus::PendingPayment) && lapsed {
            lifecycle::expire(conn, &mut b, now).await?;
        }
        Ok(())
    }
}

impl BackgroundJob for Remind {
    const KIND: &'static str = "booking.remind";
    type Deps = Deps;

    async fn run(self, deps: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let b = locked(conn, job.tenant_id, self.booking_id).await?;
        if b.status != BookingStatus::Confirmed || b.starts_at != self.starts_at {
            return Ok(()); // Stale: the lesson moved (and has new reminders) or ended.
        }
        let minutes = self.minutes_before;
        notices::lesson_reminder(conn, &deps.mailer, &deps.site, &b, minutes, now).await?;
        let event = DomainEvent::BookingReminder {
            booking_id: b.id,
            tutor_id: b.tutor_id,
            student_id: b.student_id,
            starts_at: b.starts_at,
            minutes_before: minutes,
        };
        outbox::append(conn, job.tenant_id, now, &event).await?;
        Ok(())
    }
}

impl BackgroundJob for NoShowCheck {
    const KIND: &'static str = "booking.no_show_check";
    type Deps = Deps;

    async fn run(self, _: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut b = locked(conn, job.tenant_id, self.booking_id).await?;
        if b.status != BookingStatus::Confirmed || b.starts_at != self.starts_at {
            return Ok(());
        }
        let joined = joined(conn, b.id).await?;
        let (tutor_came, student_came) = (joined.contains(&b.tutor_id), joined.contains(&b.student_id));
        if tutor_came && student_came {
            let pol = policy::load(conn, job.tenant_id).await?;
            if lifecycle::start_lesson(conn, &mut b, &pol, None, now).await.is_err() {
                // Both came but the lesson's time is over: it happened.
                lifecycle::start_and_complete(conn, &mut b, now).await?;
            }
        } else {
            let absent = if tutor_came { Side::Student } else { Side::Tutor };
            lifecycle::record_no_show(conn, &mut b, absent, None, now).await?;
        }
        Ok(())
    }
}

impl BackgroundJob for AutoEnd {
    const KIND: &'static str = "booking.auto_end";
    type Deps = Deps;

    async fn run(self, _: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut b = locked(conn, job.tenant_id, self.booking_id).await?;
        if b.status == BookingStatus::InProgress && b.starts_at == self.starts_at {
            let pol = policy::load(conn, job.tenant_id).await?;
            lifecycle::finish(conn, &mut b, &pol, now).await?;
        }
        Ok(())
    }
}

impl BackgroundJob for OpenRoom {
    const KIND: &'static str = "booking.open_room";
    type Deps = Deps;

    async fn run(self, deps: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let b = locked(conn, job.tenant_id, self.booking_id).await?;
        if !matches!(b.status, BookingStatus::Confirmed | BookingStatus::InProgress) || b.room.is_some() {
            return Ok(());
        }
        let spec = rooms::RoomSpec { name: format!("lesson:{}", b.id), max_participants: 4, empty_timeout_secs: 600 };
        let room = deps.media.create_room(&spec).await.map_err(|e| anyhow::anyhow!("media_unavailable: {e}"))?;
        sqlx::query("UPDATE bookings SET room = $1 WHERE id = $2")
            .bind(&room.name)
            .bind(b.id.to_string())
            .execute(&mut *conn)
            .await?;
        // The confirmation mail went out with the confirmation (`mailer::notices`); the room is announced live.
        let event = DomainEvent::LessonRoomReady {
            booking_id: b.id,
            tutor_id: b.tutor_id,
            student_id: b.student_id,
            room: room.name,
            backend: room.backend.to_string(),
        };
        outbox::append(conn, job.tenant_id, now, &event).await?;
        Ok(())
    }
}

impl BackgroundJob for ReleasePayout {
    const KIND: &'static str = "payout.release";
    type Deps = Deps;

    async fn run(self, deps: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let tenant = job.tenant_id;
        let b = locked(conn, tenant, self.booking_id).await?;
        let mut gross = self.gross_minor;
        if b.status == BookingStatus::Refunded {
            // Refunded before the release: the tutor earns only what the customer keeps paid for.
            let returned = if b.credit_returned { b.price_minor } else { b.refund_minor };
            gross = (gross - returned).max(0);
        }
        if gross == 0 {
            return Ok(());
        }
        let pol = policy::load(conn, tenant).await?;
        let commission = money::commission_for(conn, tenant, b.tutor_id, pol.commission()).await?;
        let fee = billing::bps_of(gross, commission.rate_bps.min(10_000));
        let share = gross - fee;
        let inserted = sqlx::query(
            "INSERT INTO tutor_payouts (booking_id, tenant_id, tutor_id, gross_minor, fee_minor, share_minor,
                 currency, released_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (booking_id) DO NOTHING",
        )
        .bind(b.id.to_string())
        .bind(tenant.to_string())
        .bind(b.tutor_id.to_string())
        .bind(gross)
        .bind(fee)
        .bind(share)
        .bind(&b.currency)
        .bind(db::ts(now))
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            let posting = money::Posting {
                tenant,
                kind: "earned",
                reference: format!("earned:{}", b.id),
                booking: Some(b.id),
                tutor: Some(b.tutor_id),
                currency: &b.currency,
                memo: Some(b.status.as_str()),
                entries: money::earned(gross, commission, b.tutor_id),
            };
            money::post(conn, now, &posting).await?;
            if deps.stripe.is_some() {
                money::stripe::enqueue_transfer(conn, tenant, b.id, "released", now).await?;
            }
            let event = DomainEvent::PayoutReleased {
                booking_id: b.id,
                tutor_id: b.tutor_id,
                gross_minor: gross,
                fee_minor: fee,
                share_minor: share,
                currency: b.currency.clone(),
            };
            outbox::append(conn, tenant, now, &event).await?;
        }
        Ok(())
    }
}

impl BackgroundJob for IssueRefund {
    const KIND: &'static str = "refund.issue";
    type Deps = Deps;

    async fn run(self, deps: &Deps, conn: &mut AnyConnection, job: &Job, now: DateTime<Utc>) -> anyhow::Result<()> {
        let (tenant, id) = (job.tenant_id, self.refund_id);
        let lock = Db::lock_clause(conn);
        let sql = format!(
            "SELECT r.amount_minor, r.currency, r.reason, r.status, r.payment_id, p.provider_ref
             FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.tenant_id = $1 AND r.id = $2{lock}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| anyhow::anyhow!("refund {id} does not exist"))?;
        if row.try_get::<String, _>("status")? != "requested" {
            return Ok(());
        }
        let payment_id = PaymentId::from_column(&row.try_get::<String, _>("payment_id")?)?;
        let currency: String = row.try_get("currency")?;
        let amount: i64 = row.try_get("amount_minor")?;
        let req = billing::RefundRequest {
            provider_ref: row.try_get::<Option<String>, _>("provider_ref")?.unwrap_or_else(|| payment_id.to_string()),
            amount: billing::Money::new(
                amount,
                currency.parse().map_err(|_| anyhow::anyhow!("refund {id} has an unknown currency {currency:?}"))?,
            ),
            reason: row.try_get("reason")?,
            idempotency_key: id.to_string(),
        };
        let done = deps.provider.refund(&req).await.map_err(|e| anyhow::anyhow!("payment_provider_error: {e}"))?;
        let status = match done.state {
            billing::PaymentState::Succeeded => "succeeded",
            billing::PaymentState::Pending => "pending",
            billing::PaymentState::Failed => "failed",
        };
        sqlx::query("UPDATE refunds SET status = $1, provider_ref = $2, settled_at = $3 WHERE id = $4")
            .bind(status)
            .bind(&done.refund_ref)
            .bind((status == "succeeded").then(|| db::ts(now)))
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
        let event = DomainEvent::RefundIssued {
            refund_id: id,
            payment_id,
            amount_minor: amount,
            currency,
            status: status.into(),
        };
        outbox::append(conn, tenant, now, &event).await?;
        Ok(())
    }
}

/// Who has entered the lesson's live room.
async fn joined(conn: &mut AnyConnection, id: BookingId) -> Result<Vec<UserId>, sqlx::Error> {
    let rows = sqlx::query("SELECT user_id FROM booking_joins WHERE booking_id = $1")
        .bind(id.to_string())
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| UserId::from_column(&r.try_get::<String, _>("user_id")?)).collect()
}
