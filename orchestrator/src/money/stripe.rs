//! Stripe Connect on the orchestrator's side: tutors' connected accounts (onboarding, and their state as
//! Stripe's `account.updated` webhook reports it through `webhooks`), and paying tutors out by transfer
//! (the `Transfer` and `Reverse` jobs).

use std::sync::Arc;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Ctx;
use super::MoneyError;
use crate::{
    auth::{AnyRole, Authed, Role},
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users,
    ids::{BookingId, TenantId, UserId},
    jobs::{self, BackgroundJob, Job, Jobs, Schedule},
};

pub type SharedStripe = Option<Arc<billing::Stripe>>;

/// Transfers a released share to the tutor's connected account (nothing without Stripe: staff settle by hand).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub booking_id: BookingId,
}

/// Takes `amount_minor` of a transferred share back (a refund after the payout).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reverse {
    pub booking_id: BookingId,
    pub amount_minor: i64,
}

impl BackgroundJob for Transfer {
    const KIND: &'static str = "payout.transfer";
    type Deps = SharedStripe;

    async fn run(
        self,
        stripe: &SharedStripe,
        conn: &mut AnyConnection,
        job: &Job,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(stripe) = stripe else { return Ok(()) };
        Ok(transfer(conn, stripe, job.tenant_id, self.booking_id, now).await?)
    }
}

impl BackgroundJob for Reverse {
    const KIND: &'static str = "payout.reverse";
    type Deps = SharedStripe;

    async fn run(
        self,
        stripe: &SharedStripe,
        conn: &mut AnyConnection,
        job: &Job,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let Some(stripe) = stripe else { return Ok(()) };
        Ok(reverse(conn, stripe, job.tenant_id, self.booking_id, self.amount_minor, now).await?)
    }
}

/// Registers the payout jobs with `jobs`.
pub fn register(jobs: &Jobs, stripe: SharedStripe) {
    let stripe = Arc::new(stripe);
    jobs.register::<Transfer>(stripe.clone());
    jobs.register::<Reverse>(stripe);
}

/// Stripe says a connected account changed (`account.updated`): record whether it can receive payouts,
/// and send what was owed to it once it can.
pub async fn account_updated(
    conn: &mut AnyConnection,
    account: &str,
    enabled: bool,
    submitted: bool,
    cause: &str,
    now: DateTime<Utc>,
) -> Result<(), MoneyError> {
    let row = sqlx::query(
        "UPDATE tutor_billing SET payouts_enabled = $1, details_submitted = $2, updated_at = $3
         WHERE stripe_account = $4 RETURNING tutor_id, tenant_id",
    )
    .bind(i64::from(enabled))
    .bind(i64::from(submitted))
    .bind(db::ts(now))
    .bind(account)
    .fetch_optional(&mut *conn)
    .await?;
    if let (Some(r), true) = (row, enabled) {
        // Shares released while the account couldn't receive them go out now.
        let tutor = UserId::from_column(&r.try_get::<String, _>("tutor_id")?)?;
        let tenant = TenantId::from_column(&r.try_get::<String, _>("tenant_id")?)?;
        enqueue_owed_transfers(conn, tenant, tutor, cause, now).await?;
    }
    Ok(())
}

/// Shares released while `tutor`'s account couldn't receive them: their transfers, now.
pub async fn enqueue_owed_transfers(
    conn: &mut AnyConnection,
    tenant: TenantId,
    tutor: UserId,
    cause: &str,
    now: DateTime<Utc>,
) -> Result<(), MoneyError> {
    let rows =
        sqlx::query("SELECT booking_id FROM tutor_payouts WHERE tenant_id = $1 AND tutor_id = $2 AND paid_at IS NULL")
            .bind(tenant.to_string())
            .bind(tutor.to_string())
            .fetch_all(&mut *conn)
            .await?;
    for r in rows {
        let booking: String = r.try_get("booking_id")?;
        enqueue_transfer(conn, tenant, BookingId::from_column(&booking)?, cause, now).await?;
    }
    Ok(())
}

/// Schedules the transfer of a released share (`cause` keeps the key unique per attempt's reason).
pub async fn enqueue_transfer(
    conn: &mut AnyConnection,
    tenant: TenantId,
    booking: BookingId,
    cause: &str,
    now: DateTime<Utc>,
) -> Result<(), MoneyError> {
    let at = Schedule { tenant, run_at: now, dedupe_key: Some(format!("transfer:{booking}:{cause}")) };
    jobs::enqueue(conn, now, at, &Transfer { booking_id: booking }).await?;
    Ok(())
}

/// Transfers a released share to the tutor's connected account if it can receive payouts, recording the
/// payout in the ledger; does nothing when already paid or when the account isn't ready (an
/// `account.updated` enabling payouts schedules it again). The idempotency key is per booking, so a retry
/// never pays twice.
pub async fn transfer(
    conn: &mut AnyConnection,
    stripe: &billing::Stripe,
    tenant: TenantId,
    booking: BookingId,
    now: DateTime<Utc>,
) -> Result<(), MoneyError> {
    let row = sqlx::query(
        "SELECT p.share_minor, p.reversed_minor, p.currency, p.paid_at, t.stripe_account, t.payouts_enabled
         FROM tutor_payouts p LEFT JOIN tutor_billing t ON t.tutor_id = p.tutor_id AND t.tenant_id = p.tenant_id
         WHERE p.tenant_id = $1 AND p.booking_id = $2",
    )
    .bind(tenant.to_string())
    .bind(booking.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(()) };
    let account: Option<String> = r.try_get("stripe_account")?;
    let enabled = r.try_get::<Option<i64>, _>("payouts_enabled")?.unwrap_or(0) != 0;
    if r.try_get::<Option<String>, _>("paid_at")?.is_some() || !enabled {
        return Ok(());
    }
    let Some(account) = account else { return Ok(()) };
    // A refund after the release but before the transfer leaves less to pay.
    let share = r.try_get::<i64, _>("share_minor")? - r.try_get::<i64, _>("reversed_minor")?;
    if share <= 0 {
        super::record_payout(conn, tenant, booking, "none:refunded", now).await?;
        return Ok(());
    }
    let currency = super::currency(&r.try_get::<String, _>("currency")?)?;
    let tr = stripe
        .transfer(
            billing::Money::new(share, currency),
            &account,
            &format!("booking:{booking}"),
            &format!("payout:{booking}"),
        )
        .await?;
    super::record_payout(conn, tenant, booking, &tr, now).await?;
    Ok(())
}

/// Takes `amount` of a paid transfer back from the tutor's connected account (a refund after payout), and
/// posts it. The idempotency key is per booking (a booking is refunded once).
pub async fn reverse(
    conn: &mut AnyConnection,
    stripe: &billing::Stripe,
    tenant: TenantId,
    booking: BookingId,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), MoneyError> {
    let row = sqlx::query(
        "SELECT tutor_id, currency, transfer_ref FROM tutor_payouts WHERE tenant_id = $1 AND booking_id = $2",
    )
    .bind(tenant.to_string())
    .bind(booking.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(()) };
    let Some(transfer) = r.try_get::<Option<String>, _>("transfer_ref")? else { return Ok(()) };
    let tutor = UserId::from_column(&r.try_get::<String, _>("tutor_id")?)?;
    let currency: String = r.try_get("currency")?;
    let money = billing::Money::new(amount, super::currency(&currency)?);
    let reversal = stripe.reverse_transfer(&transfer, money, &format!("reversal:{booking}")).await?;
    let posting = super::Posting {
        tenant,
        kind: "payout_reversal",
        reference: format!("reversal:{booking}"),
        booking: Some(booking),
        tutor: Some(tutor),
        currency: &currency,
        memo: Some(&reversal),
        entries: vec![(super::Account::ProviderBalance, amount), (super::Account::TutorPayable(tutor), -amount)],
    };
    super::post(conn, now, &posting).await?;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PayoutAccount {
    pub tutor_id: UserId,
    /// The Stripe connected account (`acct_…`), once created.
    pub account_id: Option<String>,
    pub details_submitted: bool,
    /// Stripe says the account can receive transfers: released shares are paid out automatically.
    pub payouts_enabled: bool,
    /// Where the tutor completes onboarding (one-time link; ask again for a fresh one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboarding_url: Option<String>,
}

async fn account_state(
    conn: &mut AnyConnection,
    tenant: TenantId,
    tutor: UserId,
) -> ApiResult<(Option<String>, bool, bool)> {
    let row = sqlx::query(
        "SELECT stripe_account, payouts_enabled, details_submitted FROM tutor_billing
         WHERE tenant_id = $1 AND tutor_id = $2",
    )
    .bind(tenant.to_string())
    .bind(tutor.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        None => (None, false, false),
        Some(r) => (
            r.try_get("stripe_account")?,
            r.try_get::<i64, _>("payouts_enabled")? != 0,
            r.try_get::<i64, _>("details_submitted")? != 0,
        ),
    })
}

fn own_or_staff(auth: &crate::auth::AuthUser, id: UserId) -> ApiResult<()> {
    if auth.is_staff() || auth.user_id == id {
        Ok(())
    } else {
        Err(ApiError::forbidden("forbidden", "tutors manage their own payout account; staff anyone's"))
    }
}

/// A tutor of the caller's tenant, for their payout account: 404 for anyone else (another tenant's tutor
/// included), 422 for a user who isn't a tutor.
async fn payout_tutor(
    conn: &mut AnyConnection,
    auth: &crate::auth::AuthUser,
    id: UserId,
    now: DateTime<Utc>,
) -> ApiResult<users::User> {
    own_or_staff(auth, id)?;
    let tutor = users::get_or_404(conn, auth.tenant_id, id, now).await?;
    if tutor.role != Role::Tutor {
        return Err(ApiError::unprocessable("not_a_tutor", "payout accounts are for tutors"));
    }
    Ok(tutor)
}

/// A tutor's payout account: the connected account and whether it can receive payouts.
#[utoipa::path(get, path = "/api/v1/tutors/{id}/payout-account", tag = "money", params(("id" = UserId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = PayoutAccount), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_account(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<PayoutAccount>> {
    let mut conn = db.pool().acquire().await?;
    payout_tutor(&mut conn, &auth, id, clock.now()).await?;
    let (account_id, payouts_enabled, details_submitted) = account_state(&mut conn, auth.tenant_id, id).await?;
    Ok(Json(PayoutAccount { tutor_id: id, account_id, details_submitted, payouts_enabled, onboarding_url: None }))
}

/// Starts or resumes a tutor's Stripe onboarding: creates their Express connected account the first time,
/// and returns a fresh onboarding link. Payouts start once Stripe reports the account enabled
/// (`account.updated`).
#[utoipa::path(post, path = "/api/v1/tutors/{id}/payout-account", tag = "money", params(("id" = UserId, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = PayoutAccount), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn onboard(
    State(Ctx { db, clock, stripe, config, .. }): State<Ctx>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
) -> ApiResult<Json<PayoutAccount>> {
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let tutor = payout_tutor(&mut conn, &auth, id, now).await?;
    let stripe = stripe.ok_or_else(|| {
        ApiError::conflict("payouts_offline", "no online payment provider is configured; staff pay tutors by hand")
    })?;
    let (existing, payouts_enabled, details_submitted) = {
        let (acct, enabled, submitted) = account_state(&mut conn, auth.tenant_id, id).await?;
        (acct.map(Ok).unwrap_or(Err(tutor.email)), enabled, submitted)
    };
    drop(conn);
    let provider_error =
        |e: billing::ProviderError| ApiError::new(StatusCode::BAD_GATEWAY, "payment_provider_error", e.to_string());
    // Outside any transaction: network calls. The account's idempotency key is per tutor, so a retry or a
    // race returns the same account.
    let account = match existing {
        Ok(acct) => acct,
        Err(email) => {
            let acct = stripe.create_express_account(&email, &format!("account:{id}")).await.map_err(provider_error)?;
            let mut tx = db.begin().await?;
            sqlx::query(
                "INSERT INTO tutor_billing (tutor_id, tenant_id, stripe_account, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tutor_id) DO UPDATE SET stripe_account = COALESCE(tutor_billing.stripe_account, excluded.stripe_account),
                     updated_at = excluded.updated_at
                 WHERE tutor_billing.tenant_id = excluded.tenant_id",
            )
            .bind(id.to_string())
            .bind(auth.tenant_id.to_string())
            .bind(&acct)
            .bind(db::ts(now))
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
            acct
        }
    };
    let base = config.public_url.trim_end_matches('/');
    let url = stripe
        .account_link(
            &account,
            // The browser app's earnings page: it asks for a fresh link, or shows the account's state.
            &format!("{base}/#/tutor/earnings?onboarding=refresh"),
            &format!("{base}/#/tutor/earnings?onboarding=done"),
            &format!("link:{id}:{}", now.timestamp_millis()),
        )
        .await
        .map_err(provider_error)?;
    Ok(Json(PayoutAccount {
        tutor_id: id,
        account_id: Some(account),
        details_submitted,
        payouts_enabled,
        onboarding_url: Some(url),
    }))
}
