//! Payments and refunds for bookings and packages.
//!
//! A payment is recorded `pending` in the transaction that asks for it, and only then is the provider
//! called (with the payment's id as idempotency key, so a retried checkout never charges twice). Money
//! arriving — staff recording it with the offline provider, or later a verified provider webhook — goes
//! through [`succeeded`], which confirms what was paid for. If that is no longer possible (the hold
//! expired and the slot went to someone else, the booking was cancelled), the payment is refunded at once:
//! the compensating action. Refunds are durable jobs (`refund.issue`) so a crash can't lose one.

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::ToSchema;

use super::{Ctx, lifecycle, packages};
use crate::{
    audit,
    auth::{Authed, Staff},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    ids::{BookingId, PackageId, PaymentId, RefundId, TenantId, UserId},
    jobs::{self, NewJob},
    money, outbox,
    request::ClientInfo,
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
    fn parse(s: &str) -> Result<Self, sqlx::Error> {
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

const PAYMENT_COLUMNS: &str =
    "id, subject, provider, provider_ref, amount_minor, currency, status, instructions, created_at, settled_at";

fn payment_from_row(r: &AnyRow) -> Result<Payment, sqlx::Error> {
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

pub async fn of_subject(conn: &mut AnyConnection, subject: Subject) -> ApiResult<Vec<Payment>> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE subject = $1 ORDER BY created_at, id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(subject.key()).fetch_all(conn).await?;
    Ok(rows.iter().map(payment_from_row).collect::<Result<_, _>>()?)
}

/// The subject's pending payment, if one is open (checkout repeated: the same payment again).
pub async fn pending_of(conn: &mut AnyConnection, subject: Subject) -> ApiResult<Option<Payment>> {
    Ok(of_subject(conn, subject).await?.into_iter().find(|p| p.status == "pending"))
}

/// The money paid for the subject: the succeeded payment, if any.
pub async fn paid_of(conn: &mut AnyConnection, subject: Subject) -> ApiResult<Option<Payment>> {
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
) -> ApiResult<Payment> {
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

/// Asks the provider to collect `payment` (after the transaction that recorded it committed). The
/// provider's answer is stored; a provider that reports success at once settles the payment.
pub async fn start(cx: &Ctx, tenant: TenantId, mut payment: Payment, description: String) -> ApiResult<Payment> {
    let currency: billing::Currency = payment.currency.parse().map_err(|_| ApiError::internal())?;
    let req = billing::PaymentRequest {
        reference: payment.subject.clone(),
        amount: billing::Money::new(payment.amount_minor, currency),
        description,
        transfer_group: Some(payment.subject.clone()),
        idempotency_key: payment.id.to_string(),
    };
    let started = match cx.provider.start_payment(&req).await {
        Ok(started) => started,
        Err(billing::ProviderError::Declined(m)) => {
            // Final for this payment: the next checkout starts a new one (a new idempotency key).
            let mut tx = cx.db.begin().await?;
            sqlx::query("UPDATE payments SET status = 'failed' WHERE id = $1 AND status = 'pending'")
                .bind(payment.id.to_string())
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            return Err(ApiError::new(axum::http::StatusCode::PAYMENT_REQUIRED, "payment_declined", m));
        }
        Err(other) => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                other.to_string(),
            ));
        }
    };
    let mut tx = cx.db.begin().await?;
    if started.state == billing::PaymentState::Succeeded {
        // Before touching the payment row: `succeeded` locks the booking first (see there).
        succeeded(tx.conn(), tenant, payment.id, None, Some(cx.provider.name()), cx.clock.now()).await?;
        payment.status = "succeeded".into();
    }
    sqlx::query("UPDATE payments SET provider_ref = $1, instructions = $2 WHERE id = $3")
        .bind(&started.provider_ref)
        .bind(&started.instructions)
        .bind(payment.id.to_string())
        .execute(tx.conn())
        .await?;
    payment.provider_ref = Some(started.provider_ref.clone());
    payment.instructions = started.instructions.clone();
    payment.client_secret = started.client_secret.clone();
    cx.commit(tx).await?;
    Ok(payment)
}

/// What settling a payment did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Settled {
    pub payment: Payment,
    /// The money went back at once because what it paid for could no longer be given.
    pub refund_id: Option<RefundId>,
}

/// Money for `payment` arrived: marks it succeeded and confirms its subject, or refunds it when the
/// subject can't be confirmed any more. Idempotent: a second call for a settled payment changes nothing.
pub async fn succeeded(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: PaymentId,
    actor: Option<UserId>,
    method: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<Settled> {
    // Lock order everywhere: the booking (or package) before its payments. Read the subject first.
    let subject: String = sqlx::query("SELECT subject FROM payments WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ApiError::not_found("payment_not_found", "no such payment"))?
        .try_get("subject")?;
    let lock = Db::lock_clause(conn);
    let table = match Subject::parse(&subject)? {
        Subject::Booking(_) => "bookings",
        Subject::Package(_) => "lesson_packages",
    };
    let sql = format!("SELECT id FROM {table} WHERE id = $1{lock}");
    let id_of_subject = subject.split_once(':').map(|(_, id)| id).unwrap_or_default();
    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_of_subject).fetch_optional(&mut *conn).await?;
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_one(&mut *conn).await?;
    let mut payment = payment_from_row(&row)?;
    match payment.status.as_str() {
        "succeeded" => return Ok(Settled { payment, refund_id: None }),
        "pending" | "cancelled" => {}
        _ => return Err(ApiError::conflict("payment_not_pending", format!("the payment is {}", payment.status))),
    }
    sqlx::query(
        "UPDATE payments SET status = 'succeeded', method = $1, recorded_by = $2, settled_at = $3 WHERE id = $4",
    )
    .bind(method)
    .bind(actor.map(|a| a.to_string()))
    .bind(db::ts(now))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    payment.status = "succeeded".into();
    payment.settled_at = Some(now);
    let event = DomainEvent::PaymentSucceeded {
        payment_id: id,
        subject: payment.subject.clone(),
        amount_minor: payment.amount_minor,
        currency: payment.currency.clone(),
    };
    outbox::append(conn, tenant, now, &event).await?;
    let subject = Subject::parse(&payment.subject)?;
    let posting = money::Posting {
        tenant,
        kind: "payment",
        reference: format!("payment:{id}"),
        booking: match subject {
            Subject::Booking(b) => Some(b),
            Subject::Package(_) => None,
        },
        tutor: None,
        currency: &payment.currency,
        memo: Some(&payment.subject),
        entries: money::payment(payment.amount_minor),
    };
    money::post(conn, now, &posting).await?;
    let confirmed = match subject {
        Subject::Booking(b) => lifecycle::payment_arrived(conn, tenant, b, actor, now).await?,
        Subject::Package(p) => packages::payment_arrived(conn, tenant, p, now).await?,
    };
    let refund_id = if confirmed {
        None
    } else {
        let reason = "paid after the booking could no longer be confirmed";
        Some(request_refund(conn, tenant, &payment, payment.amount_minor, reason, now).await?)
    };
    Ok(Settled { payment, refund_id })
}

/// Pending payments of `subject` are no longer owed (the booking expired or was cancelled).
pub async fn cancel_pending(conn: &mut AnyConnection, subject: Subject) -> ApiResult<()> {
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
) -> ApiResult<RefundId> {
    // Refunds never exceed what was paid (the payment's row is locked by the caller's booking lock order).
    let already: i64 = sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE payment_id = $1 AND status <> 'failed'",
    )
    .bind(payment.id.to_string())
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    if amount_minor <= 0 || already + amount_minor > payment.amount_minor {
        return Err(ApiError::conflict(
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
    let job = NewJob {
        tenant,
        kind: super::jobs::ISSUE_REFUND,
        payload: serde_json::json!({ "refund_id": id }),
        run_at: now,
        dedupe_key: Some(format!("refund:{id}")),
    };
    jobs::enqueue(conn, now, &job).await?;
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

pub async fn refunds_of(conn: &mut AnyConnection, subject: Subject) -> ApiResult<Vec<Refund>> {
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Received {
    /// How the money came: `cash`, `bank_transfer`, `card_terminal`, ...
    pub method: String,
    pub note: Option<String>,
}

/// Staff record money received for a pending payment (the offline provider's way to pay). Confirms the
/// booking or activates the package; if that is no longer possible the payment is refunded at once.
#[utoipa::path(post, path = "/api/v1/payments/{id}/received", tag = "bookings", params(("id" = PaymentId, Path)),
    request_body = Received, security(("bearer" = [])),
    responses((status = 200, body = Settled), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn received(
    State(cx): State<Ctx>,
    auth: Authed<Staff>,
    client: ClientInfo,
    Path(id): Path<PaymentId>,
    Json(body): Json<Received>,
) -> ApiResult<Json<Settled>> {
    let method = body.method.trim();
    if method.is_empty() || method.len() > 40 {
        return Err(ApiError::unprocessable("invalid_method", "method is 1 to 40 characters, e.g. bank_transfer"));
    }
    let now = cx.clock.now();
    let mut tx = cx.db.begin().await?;
    let settled = succeeded(tx.conn(), auth.tenant_id, id, Some(auth.user_id), Some(method), now).await?;
    let entry = audit::Entry::new(auth.tenant_id, Some(auth.user_id), "payment.received", &client)
        .target("payment", id)
        .details(serde_json::json!({ "method": method, "note": body.note, "refunded": settled.refund_id }));
    audit::record(tx.conn(), now, entry).await?;
    cx.commit(tx).await?;
    Ok(Json(settled))
}
