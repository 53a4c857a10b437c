//! Webhooks: the payment provider's signed calls, at the HTTP edge above the domains they reach.
//!
//! Stripe's endpoint: webhooks are the only way money confirms a booking with Stripe (never the client's
//! word). A delivery is verified exactly as Stripe signs (`billing::webhook`), then handled in one
//! transaction that first claims its event id in `webhook_events`: a repeated or concurrent delivery of
//! the same event finds the id taken and changes nothing. Unknown event types are acknowledged and
//! ignored. Payment events settle bookings and packages (`bookings::checkout`); Connect account events
//! update tutors' payout accounts (`money::stripe`).

use std::sync::Arc;

use axum::{body::Bytes, extract::State, http::HeaderMap};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::{
    bookings::{self, checkout},
    config::Config,
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json},
    idempotency,
    ids::{PaymentId, TenantId},
    money,
};

/// Stripe's default tolerance for a signature's timestamp.
const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAck {
    pub received: bool,
    /// The event id was seen before: nothing was done again.
    pub duplicate: bool,
}

/// Stripe's webhook endpoint. The `Stripe-Signature` header must verify against the raw body with the
/// configured endpoint secret (HMAC-SHA256 of `t.body`, any `v1`, within 300 s); otherwise 400 and nothing
/// changes. Each event id has its effect once.
#[utoipa::path(post, path = "/api/v1/webhooks/stripe", tag = "money", request_body(content = String, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=<unix>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, body = WebhookAck), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn webhook(
    State(cx): State<bookings::Ctx>,
    State(config): State<Arc<Config>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<WebhookAck>> {
    let secret = config
        .stripe_webhook_secret
        .as_ref()
        .ok_or_else(|| ApiError::not_found("stripe_not_configured", "this server doesn't use Stripe"))?;
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = cx.clock.now();
    let event = billing::webhook::verify_event(header, &body, secret.expose(), now.timestamp(), TOLERANCE_SECS)
        .map_err(|e| ApiError::bad_request("invalid_signature", e.to_string()))?;
    let mut tx = cx.db.begin().await?;
    let fresh = idempotency::first_webhook_delivery(tx.conn(), "stripe", &event.id, &event.kind, now).await?;
    if fresh {
        handle(tx.conn(), &event, now).await?;
    }
    cx.commit(tx).await?;
    Ok(Json(WebhookAck { received: true, duplicate: !fresh }))
}

fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(|x| x.as_str())
}

async fn handle(conn: &mut AnyConnection, event: &billing::webhook::Event, now: DateTime<Utc>) -> ApiResult<()> {
    let object = &event.object;
    match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let Some((tenant, id, amount, currency)) = payment_by_ref(conn, str_of(object, "id")).await? else {
                tracing::warn!(event = event.id, "payment_intent.succeeded for a payment we don't know");
                return Ok(());
            };
            let received = object.get("amount_received").or_else(|| object.get("amount")).and_then(|a| a.as_i64());
            let same_currency = str_of(object, "currency").is_some_and(|c| c.eq_ignore_ascii_case(&currency));
            if received != Some(amount) || !same_currency {
                tracing::error!(
                    event = event.id,
                    ?received,
                    amount,
                    "payment_intent amount or currency differs; not confirming"
                );
                return Ok(());
            }
            checkout::succeeded(conn, tenant, id, None, Some("stripe"), now).await?;
        }
        // A failed attempt leaves the PaymentIntent waiting for another card (`requires_payment_method`): the
        // payer may try again on the same intent, so the payment stays pending. Only a cancelled intent is over.
        "payment_intent.payment_failed" => {
            tracing::info!(event = event.id, "a payment attempt failed; the intent waits for another card");
        }
        "payment_intent.canceled" => {
            if let Some((_, id, _, _)) = payment_by_ref(conn, str_of(object, "id")).await? {
                sqlx::query(
                    "UPDATE payments SET status = 'failed', settled_at = $1 WHERE id = $2 AND status = 'pending'",
                )
                .bind(db::ts(now))
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            }
        }
        "account.updated" => {
            if let Some(account) = str_of(object, "id") {
                let enabled = object.get("payouts_enabled").and_then(|v| v.as_bool()).unwrap_or(false);
                let submitted = object.get("details_submitted").and_then(|v| v.as_bool()).unwrap_or(false);
                money::stripe::account_updated(conn, account, enabled, submitted, &event.id, now).await?;
            }
        }
        "refund.updated" | "refund.created" => {
            if let (Some(id), Some(status)) = (str_of(object, "id"), str_of(object, "status")) {
                let status = match billing::refund_state(status) {
                    billing::PaymentState::Succeeded => "succeeded",
                    billing::PaymentState::Pending => "pending",
                    billing::PaymentState::Failed => "failed",
                };
                sqlx::query("UPDATE refunds SET status = $1 WHERE provider_ref = $2")
                    .bind(status)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        other => tracing::debug!(kind = other, "ignoring a Stripe event type we don't handle"),
    }
    Ok(())
}

/// The Stripe payment with provider reference `pi`: (tenant, id, amount, currency).
async fn payment_by_ref(
    conn: &mut AnyConnection,
    pi: Option<&str>,
) -> ApiResult<Option<(TenantId, PaymentId, i64, String)>> {
    let Some(pi) = pi else { return Ok(None) };
    let row = sqlx::query(
        "SELECT tenant_id, id, amount_minor, currency FROM payments WHERE provider = 'stripe' AND provider_ref = $1",
    )
    .bind(pi)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok((
            TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?,
            PaymentId::from_column(&r.try_get::<String, _>("id")?)?,
            r.try_get("amount_minor")?,
            r.try_get("currency")?,
        ))
    })
    .transpose()
}
