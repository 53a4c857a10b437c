//! Payments and refunds for bookings and packages.
//!
//! The records: a payment is recorded `pending` in the transaction that asks for it (the provider is
//! called after, by `checkout`); refunds are recorded with a durable job (`refund.issue`) that asks the
//! provider, so a crash can't lose one. Settling money that arrived is `checkout::succeeded`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::ToSchema;

use super::{BookingError, BookingResult};
use crate::{
    db::{self},
    ids::{BookingId, PackageId, PaymentId, RefundId, TenantId},
    money,
};

pub type SharedProvider = Arc<dyn billing::PaymentProvider>;

/// What a payment pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Booking(BookingId),
    Package(PackageId),
}

impl Subject {
    pub fn key(&self) -> String {
        match self {
            Subject::Booking(id) => format!("booking:{id}"),
            Subject::Package(id) => format!("package:{id}"),
        }
    }
    pub(super) fn parse(s: &str) -> Result<Self, sqlx::Error> {
        let bad = || sqlx::Error::Decode(format!("bad payment subject {s:?}").into());
        match s.split_once(':') {
            Some(("booking", id)) => Ok(Subject::Booking(BookingId::from_column(id)?)),
            Some(("package", id)) => Ok(Subject::Package(PackageId::from_column(id)?)),
            _ => Err(bad()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: PaymentId,
    /// `booking:<id>` or `package:<id>`.
    pub subject: String,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    /// `pending`, `succeeded`, `failed` or `cancelled` (nothing is owed any more).
    pub status: String,
    /// How to pay (offline: for the payer to read).
    pub instructions: Option<String>,
    /// For a client that completes the payment itself (online providers); never stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

pub(super) const PAYMENT_COLUMNS: &str =
    "id, subject, provider, provider_ref, amount_minor, currency, status, instructions, created_at, settled_at";

pub(super) fn payment_from_row(r: &AnyRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id: PaymentId::from_column(&r.try_get::<String, _>("id")?)?,
        subject: r.try_get("subject")?,
        provider: r.try_get("provider")?,
        provider_ref: r.try_get("provider_ref")?,
        amount_minor: r.try_get("amount_minor")?,
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        instructions: r.try_get("instructions")?,
        client_secret: None,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        settled_at: r.try_get::<Option<String>, _>("settled_at")?.map(|s| db::parse_ts(&s)).transpose()?,
    })
}

pub async fn of_subject(conn: &mut AnyConnection, subject: Subject) -> BookingResult<Vec<Payment>> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE subject = $1 ORDER BY created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject.key()).fetch_all(conn).await?;
    Ok(rows.iter().map(payment_from_row).collect::<Result<_, _>>()?)
}

/// The subject's pending payment, if one is open (checkout repeated: the same payment again).
pub async fn pending_of(conn: &mut AnyConnection, subject: Subject) -> BookingResult<Option<Payment>> {
    Ok(of_subject(conn, subject).await?.into_iter().find(|p| p.status == "pending"))
}

/// The money paid for the subject: the succeeded payment, if any.
pub async fn paid_of(conn: &mut AnyConnection, subject: Subject) -> BookingResult<Option<Payment>> {
    Ok(of_subject(conn, subject).await?.into_iter().find(|p| p.status == "succeeded"))
}

/// Records a pending payment (inside the caller's transaction).
pub async fn create_pending(
    conn: &mut AnyConnection,
    tenant: TenantId,
    subject: Subject,
    provider: &str,
    amount_minor: i64,
    currency: &str,
    now: DateTime<Utc>,
) -> BookingResult<Payment> {
    let id = PaymentId::new();
    sqlx::query(
        "INSERT INTO payments (id, tenant_id, subject, provider, amount_minor, currency, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)",
    )
    .bind(id.to_string())
    .bind(tenant.to_string())
    .bind(subject.key())
    .bind(provider)
    .bind(amount_minor)
    .bind(currency)
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(Payment {
        id,
        subject: subject.key(),
        provider: provider.to_string(),
        provider_ref: None,
        amount_minor,
        currency: currency.to_string(),
        status: "pending".into(),
        instructions: None,
        client_secret: None,
        created_at: now,
        settled_at: None,
    })
}

/// Pending payments of `subject` are no longer owed (the booking expired or was cancelled).
pub async fn cancel_pending(conn: &mut AnyConnection, subject: Subject) -> BookingResult<()> {
    sqlx::query("UPDATE payments SET status = 'cancelled' WHERE subject = $1 AND status = 'pending'")
        .bind(subject.key())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a refund of `amount_minor` of `payment` and schedules it with the provider (job `refund.issue`).
pub async fn request_refund(
    conn: &mut AnyConnection,
    tenant: TenantId,
    payment: &Payment,
    amount_minor: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> BookingResult<RefundId> {
    // Refunds never exceed what was paid (the payment's row is locked by the caller's booking lock order).
    let already: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE payment_id = $1 AND status <> 'failed'",
    )
    .bind(payment.id.to_string())
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    if amount_minor <= 0 || already + amount_minor > payment.amount_minor {
        return Err(BookingError::refused(
            "refund_exceeds_payment",
            format!("{} of {} minor units are already refunded", already, payment.amount_minor),
        ));
    }
    let id = RefundId::new();
    sqlx::query(
        "INSERT INTO refunds (id, tenant_id, payment_id, amount_minor, currency, reason, status, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7)",
    )
    .bind(id.to_string())
    .bind(tenant.to_string())
    .bind(payment.id.to_string())
    .bind(amount_minor)
    .bind(&payment.currency)
    .bind(reason)
    .bind(db::ts(now))
    .execute(&mut *conn)
    .await?;
    super::schedule::refund(conn, tenant, id, now).await?;
    let booking = match Subject::parse(&payment.subject)? {
        Subject::Booking(b) => Some(b),
        Subject::Package(_) => None,
    };
    let posting = money::Posting {
        tenant,
        kind: "refund",
        reference: format!("refund:{id}"),
        booking,
        tutor: None,
        currency: &payment.currency,
        memo: Some(reason),
        entries: money::refund(amount_minor),
    };
    money::post(conn, now, &posting).await?;
    Ok(id)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    pub amount_minor: i64,
    pub currency: String,
    pub reason: String,
    /// `requested` (queued for the provider), `pending` (offline: staff pay it back by hand), `succeeded`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

pub async fn refunds_of(conn: &mut AnyConnection, subject: Subject) -> BookingResult<Vec<Refund>> {
    let rows = sqlx::query(
        "SELECT r.id, r.payment_id, r.amount_minor, r.currency, r.reason, r.status, r.created_at
         FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.subject = $1 ORDER BY r.created_at, r.id",
    )
    .bind(subject.key())
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Refund {
            id: RefundId::from_column(&r.try_get::<String, _>("id")?)?,
            payment_id: PaymentId::from_column(&r.try_get::<String, _>("payment_id")?)?,
            amount_minor: r.try_get("amount_minor")?,
            currency: r.try_get("currency")?,
            reason: r.try_get("reason")?,
            status: r.try_get("status")?,
            created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        });
    }
    Ok(out)
}
