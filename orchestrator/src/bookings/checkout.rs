//! Paying: checkout of a held booking, buying a package, and settling money that arrived.
//!
//! A payment is recorded `pending` in the transaction that asks for it, and only then is the provider
//! called ([`start`], with the payment's id as idempotency key, so a retried checkout never charges
//! twice). Money arriving — a provider that succeeds at once, staff recording it with the offline
//! provider ([`received`]), or a verified provider webhook (`webhooks`) — goes through [`succeeded`],
//! which confirms what was paid for (`lifecycle::payment_arrived`, `packages::payment_arrived`). If that is
//! no longer possible (the hold expired and the slot went to someone else, the booking was cancelled),
//! the payment is refunded at once: the compensating action.
//!
//! Above `lifecycle`, `packages` and `payments`: it is where a checkout's provider call comes back to
//! confirm the booking, so none of those needs the others' way back.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{
    Action, Booking, BookingStatus, Change, Ctx, Party, lifecycle,
    lifecycle::{BookingView, expire, fresh_view, locked, view},
    packages::{self, MAX_LESSONS, NewPackage, Package, Purchase, load},
    payments::{self, PAYMENT_COLUMNS, Payment, Subject, payment_from_row, request_refund},
    policy, schedule, transition, tutors,
};
use crate::{
    audit,
    auth::{AnyRole, Authed, Staff},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    ids::{BookingId, PackageId, PaymentId, RefundId, TenantId, UserId},
    money, outbox,
    request::ClientInfo,
};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Checkout {
    pub booking: BookingView,
    pub payment: Option<Payment>,
}

/// Starts paying for a held booking: the slot stays reserved for the tenant's `payment_minutes`, and the
/// payment provider says how to pay (offline: staff record the money; the booking confirms then). A free
/// lesson confirms at once. Repeating checkout returns the same pending payment.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/checkout", tag = "bookings", params(("id" = BookingId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Checkout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn checkout(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<BookingId>,
) -> ApiResult<Json<Checkout>> {
    let now = cx.clock.now();
    let (mut tx, mut b, who) = locked(&cx, &auth, id).await?;
    if who == Party::Tutor {
        return Err(ApiError::forbidden("forbidden", "the student's side pays"));
    }
    if b.expires_at.is_some_and(|t| t <= now) && matches!(b.status, BookingStatus::Hold | BookingStatus::PendingPayment)
    {
        expire(tx.conn(), &mut b, now).await?;
        cx.commit(tx).await?;
        return Err(ApiError::conflict("hold_expired", "the reservation lapsed; pick a slot again"));
    }
    if b.status == BookingStatus::PendingPayment {
        let pending = payments::pending_of(tx.conn(), Subject::Booking(b.id)).await?;
        return match pending {
            // The provider never answered last time, or the payer's client needs the online payment's
            // client secret again (a reload: it is never stored): ask again, with the same idempotency key,
            // which gives the same payment back.
            Some(p) if p.provider_ref.is_none() || cx.provider.name() != "offline" => {
                tx.commit().await?;
                let description = description(&b);
                let payment = start(&cx, auth.tenant_id, p, description).await?;
                Ok(Json(Checkout { booking: fresh_view(&cx, auth.tenant_id, id).await?, payment: Some(payment) }))
            }
            Some(p) => Ok(Json(Checkout { booking: view(tx.conn(), b).await?, payment: Some(p) })),
            // The last attempt failed (declined): a new payment, within the same payment window.
            None => {
                let subject = Subject::Booking(b.id);
                let p = payments::create_pending(
                    tx.conn(),
                    auth.tenant_id,
                    subject,
                    cx.provider.name(),
                    b.price_minor,
                    &b.currency,
                    now,
                )
                .await?;
                tx.commit().await?;
                let payment = start(&cx, auth.tenant_id, p, description(&b)).await?;
                Ok(Json(Checkout { booking: fresh_view(&cx, auth.tenant_id, id).await?, payment: Some(payment) }))
            }
        };
    }
    let pol = policy::load(tx.conn(), auth.tenant_id).await?;
    if b.price_minor == 0 && b.status == BookingStatus::Hold {
        transition(
            tx.conn(),
            &mut b,
            Change { action: Action::PaymentSucceeded, actor: Some(auth.user_id), reason: Some("free lesson") },
            now,
        )
        .await?;
        schedule::confirmed(tx.conn(), &b, &pol, now).await?;
        let booking = view(tx.conn(), b).await?;
        cx.commit(tx).await?;
        return Ok(Json(Checkout { booking, payment: None }));
    }
    b.expires_at = Some(now + Duration::minutes(pol.payment_minutes));
    transition(tx.conn(), &mut b, Change { action: Action::Checkout, actor: Some(auth.user_id), reason: None }, now)
        .await?;
    schedule::expiry(tx.conn(), &b, now).await?;
    let payment = payments::create_pending(
        tx.conn(),
        auth.tenant_id,
        Subject::Booking(b.id),
        cx.provider.name(),
        b.price_minor,
        &b.currency,
        now,
    )
    .await?;
    cx.commit(tx).await?;
    let payment = start(&cx, auth.tenant_id, payment, description(&b)).await?;
    Ok(Json(Checkout { booking: fresh_view(&cx, auth.tenant_id, id).await?, payment: Some(payment) }))
}

fn description(b: &Booking) -> String {
    format!("{}-minute lesson on {}", b.minutes, b.starts_at.format("%Y-%m-%d %H:%M UTC"))
}

/// Buys a package of lessons with a tutor: priced at the tutor's price per lesson times `lessons`, paid
/// through the payment provider (offline: staff record the money), active once paid. Who may buy for whom
/// is as for booking: students themselves, parents their children, staff anyone; minors need consent.
#[utoipa::path(post, path = "/api/v1/packages", tag = "bookings", request_body = NewPackage, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = Purchase), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn buy(
    State(cx): State<Ctx>,
    auth: Authed<AnyRole>,
    Json(body): Json<NewPackage>,
) -> ApiResult<(StatusCode, Json<Purchase>)> {
    let now = cx.clock.now();
    if !(1..=MAX_LESSONS).contains(&body.lessons) {
        return Err(ApiError::unprocessable("invalid_lessons", format!("a package has 1 to {MAX_LESSONS} lessons")));
    }
    let mut tx = cx.db.begin().await?;
    // Packages are for live lessons: a minor needs the same consent as for booking one.
    let student_id = super::lifecycle::student_for(tx.conn(), &auth, body.student_id, now).await?.id;
    let profile = tutors::load_profile(tx.conn(), auth.tenant_id, body.tutor_id, "").await?;
    let price = profile.price(body.minutes)?.checked_mul(body.lessons).ok_or_else(ApiError::internal)?;
    if price == 0 {
        return Err(ApiError::unprocessable("free_lessons", "free lessons need no package"));
    }
    let package = Package {
        id: PackageId::new(),
        student_id,
        tutor_id: body.tutor_id,
        minutes: i64::from(body.minutes),
        lessons: body.lessons,
        remaining: body.lessons,
        price_minor: price,
        currency: profile.doc.currency.clone(),
        status: "pending_payment".into(),
        created_at: now,
    };
    sqlx::query(
        "INSERT INTO lesson_packages (id, tenant_id, student_id, tutor_id, minutes, lessons, remaining, price_minor,
             currency, status, bought_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, 'pending_payment', $9, $10)",
    )
    .bind(package.id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(student_id.to_string())
    .bind(body.tutor_id.to_string())
    .bind(package.minutes)
    .bind(package.lessons)
    .bind(price)
    .bind(&package.currency)
    .bind(auth.user_id.to_string())
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let payment = payments::create_pending(
        tx.conn(),
        auth.tenant_id,
        Subject::Package(package.id),
        cx.provider.name(),
        price,
        &package.currency,
        now,
    )
    .await?;
    tx.commit().await?;
    let description = format!("{} lessons of {} minutes", package.lessons, package.minutes);
    let payment = start(&cx, auth.tenant_id, payment, description).await?;
    let mut conn = cx.db.pool().acquire().await?;
    let package = load(&mut conn, auth.tenant_id, package.id, "").await?;
    Ok((StatusCode::CREATED, Json(Purchase { package, payment })))
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
