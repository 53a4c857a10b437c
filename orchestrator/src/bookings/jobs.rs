//! The durable jobs bookings schedule, and their handlers (registered with the job runner in
//! `Server::build`). Each handler runs in the transaction that marks its job done, re-reads the booking
//! under its lock and acts only if the booking is still in the state the job was scheduled for (a
//! reminder for a lesson that moved, an expiry for a hold that was paid, do nothing) — so a job that runs
//! late, twice, or after a restart changes nothing twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Deserialize;
use sqlx::{AnyConnection, Row};

use super::{
    BookingStatus, lifecycle,
    payments::SharedProvider,
    policy::{self, Side},
};
use crate::{
    db::{self, Db},
    error::ApiError,
    events::DomainEvent,
    ids::{BookingId, PaymentId, RefundId, TenantId, UserId},
    jobs::{Handler, Job, Jobs},
    mailer::{SharedMailer, notices},
    money, outbox,
};

pub const EXPIRE: &str = "booking.expire";
pub const REMIND: &str = "booking.remind";
pub const NO_SHOW_CHECK: &str = "booking.no_show_check";
pub const AUTO_END: &str = "booking.auto_end";
pub const OPEN_ROOM: &str = "booking.open_room";
pub const ISSUE_REFUND: &str = "refund.issue";
pub const RELEASE_PAYOUT: &str = "payout.release";

/// What the handlers reach beyond the database.
pub struct Deps {
    pub mailer: SharedMailer,
    /// Links and the calendar organizer in mail.
    pub site: notices::Site,
    pub provider: SharedProvider,
    /// Set when Stripe is configured: released shares are transferred to tutors' connected accounts.
    pub stripe: money::stripe::SharedStripe,
    pub media: Arc<dyn rooms::MediaBackend>,
}

/// Registers every booking job kind with `jobs`.
pub fn register(jobs: &Jobs, deps: Arc<Deps>) {
    let money_kinds = [money::stripe::TRANSFER, money::stripe::REVERSE];
    for kind in [EXPIRE, REMIND, NO_SHOW_CHECK, AUTO_END, OPEN_ROOM, ISSUE_REFUND, RELEASE_PAYOUT]
        .into_iter()
        .chain(money_kinds)
    {
        jobs.register(Arc::new(BookingJob { kind, deps: deps.clone() }));
    }
}

struct BookingJob {
    kind: &'static str,
    deps: Arc<Deps>,
}

#[derive(Deserialize)]
struct Payload {
    booking_id: Option<BookingId>,
    starts_at: Option<DateTime<Utc>>,
    minutes_before: Option<i64>,
    gross_minor: Option<i64>,
    amount_minor: Option<i64>,
    refund_id: Option<RefundId>,
}

impl Handler for BookingJob {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn run<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        job: &'a Job,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let p: Payload = serde_json::from_value(job.payload.clone())?;
            self.dispatch(conn, job.tenant_id, &p, now).await.map_err(|e| anyhow::anyhow!("{}: {}", e.code, e.message))
        })
    }
}

fn missing(what: &str) -> ApiError {
    ApiError::unprocessable("bad_job", format!("job payload lacks {what}"))
}

impl BookingJob {
    async fn dispatch(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        p: &Payload,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
        if self.kind == ISSUE_REFUND {
            return self.issue_refund(conn, tenant, p.refund_id.ok_or_else(|| missing("refund_id"))?, now).await;
        }
        if self.kind == money::stripe::TRANSFER || self.kind == money::stripe::REVERSE {
            let booking = p.booking_id.ok_or_else(|| missing("booking_id"))?;
            let Some(stripe) = &self.deps.stripe else { return Ok(()) }; // Offline: staff settle by hand.
            return if self.kind == money::stripe::TRANSFER {
                money::stripe::transfer(conn, stripe, tenant, booking, now).await
            } else {
                let amount = p.amount_minor.ok_or_else(|| missing("amount_minor"))?;
                money::stripe::reverse(conn, stripe, tenant, booking, amount, now).await
            };
        }
        let id = p.booking_id.ok_or_else(|| missing("booking_id"))?;
        let mut b = super::load(conn, tenant, id, Db::lock_clause(conn)).await?;
        // Scheduled for a start time the lesson no longer has: it moved, and new jobs were scheduled.
        let same_time = p.starts_at.is_none_or(|t| t == b.starts_at);
        match self.kind {
            EXPIRE => {
                let lapsed = b.expires_at.is_some_and(|t| t <= now);
                if matches!(b.status, BookingStatus::Hold | BookingStatus::PendingPayment) && lapsed {
                    lifecycle::expire(conn, &mut b, now).await?;
                }
            }
            REMIND if b.status == BookingStatus::Confirmed && same_time => {
                let minutes = p.minutes_before.unwrap_or(0);
                notices::lesson_reminder(conn, &self.deps.mailer, &self.deps.site, &b, minutes, now).await?;
                let event = DomainEvent::BookingReminder {
                    booking_id: b.id,
                    tutor_id: b.tutor_id,
                    student_id: b.student_id,
                    starts_at: b.starts_at,
                    minutes_before: minutes,
                };
                outbox::append(conn, tenant, now, &event).await?;
            }
            NO_SHOW_CHECK if b.status == BookingStatus::Confirmed && same_time => {
                let joined = joined(conn, b.id).await?;
                let (tutor_came, student_came) = (joined.contains(&b.tutor_id), joined.contains(&b.student_id));
                if tutor_came && student_came {
                    let pol = policy::load(conn, tenant).await?;
                    if lifecycle::start_lesson(conn, &mut b, &pol, None, now).await.is_err() {
                        // Both came but the lesson's time is over: it happened.
                        lifecycle::start_and_complete(conn, &mut b, now).await?;
                    }
                } else {
                    let absent = if tutor_came { Side::Student } else { Side::Tutor };
                    lifecycle::record_no_show(conn, &mut b, absent, None, now).await?;
                }
            }
            AUTO_END if b.status == BookingStatus::InProgress && same_time => {
                let pol = policy::load(conn, tenant).await?;
                lifecycle::finish(conn, &mut b, &pol, now).await?;
            }
            OPEN_ROOM
                if matches!(b.status, BookingStatus::Confirmed | BookingStatus::InProgress) && b.room.is_none() =>
            {
                let spec =
                    rooms::RoomSpec { name: format!("lesson:{}", b.id), max_participants: 4, empty_timeout_secs: 600 };
                let room = self.deps.media.create_room(&spec).await.map_err(|e| {
                    ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "media_unavailable", e.to_string())
                })?;
                sqlx::query("UPDATE bookings SET room = $1 WHERE id = $2")
                    .bind(&room.name)
                    .bind(b.id.to_string())
                    .execute(&mut *conn)
                    .await?;
                // The confirmation mail went out with the confirmation (`mailer::notices`); the room is
                // announced live.
                let event = DomainEvent::LessonRoomReady {
                    booking_id: b.id,
                    tutor_id: b.tutor_id,
                    student_id: b.student_id,
                    room: room.name,
                    backend: room.backend.to_string(),
                };
                outbox::append(conn, tenant, now, &event).await?;
            }
            RELEASE_PAYOUT => {
                let mut gross = p.gross_minor.ok_or_else(|| missing("gross_minor"))?;
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
                    if self.deps.stripe.is_some() {
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
            }
            _ => {} // Stale: the booking moved on; nothing to do.
        }
        Ok(())
    }

    async fn issue_refund(
        &self,
        conn: &mut AnyConnection,
        tenant: TenantId,
        id: RefundId,
        now: DateTime<Utc>,
    ) -> Result<(), ApiError> {
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
            .ok_or_else(|| missing("an existing refund"))?;
        if row.try_get::<String, _>("status")? != "requested" {
            return Ok(());
        }
        let payment_id = PaymentId::from_column(&row.try_get::<String, _>("payment_id")?)?;
        let currency: String = row.try_get("currency")?;
        let amount: i64 = row.try_get("amount_minor")?;
        let req = billing::RefundRequest {
            provider_ref: row.try_get::<Option<String>, _>("provider_ref")?.unwrap_or_else(|| payment_id.to_string()),
            amount: billing::Money::new(amount, currency.parse().map_err(|_| ApiError::internal())?),
            reason: row.try_get("reason")?,
            idempotency_key: id.to_string(),
        };
        let done =
            self.deps.provider.refund(&req).await.map_err(|e| {
                ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "payment_provider_error", e.to_string())
            })?;
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
async fn joined(conn: &mut AnyConnection, id: BookingId) -> Result<Vec<UserId>, ApiError> {
    let rows = sqlx::query("SELECT user_id FROM booking_joins WHERE booking_id = $1")
        .bind(id.to_string())
        .fetch_all(conn)
        .await?;
    Ok(rows.iter().map(|r| UserId::from_column(&r.try_get::<String, _>("user_id")?)).collect::<Result<_, _>>()?)
}
