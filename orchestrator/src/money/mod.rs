//! Money: the double-entry ledger every payment, refund, earning and payout is posted to, the tutors'
//! payout settings (commission override), and the reports read from the ledger.
//!
//! Layout: this file — [`Account`], the pure posting builders ([`payment`], [`refund`], [`earned`],
//! [`payout`]) and [`post`], which writes a balanced transaction once per reference; `reports` — tutor
//! earnings statements, platform revenue and the reconciliation check (JSON or CSV); `stripe` — the signed
//! webhook endpoint, tutors' connected accounts (onboarding) and transfers of released shares.
//!
//! Conventions: amounts are integer minor units; debits positive, credits negative; every transaction sums to
//! zero per currency. Accounts: `provider_balance` (money held at the payment provider, an asset),
//! `customer_prepayments` (paid for lessons not yet given: a liability), `platform_revenue` (commission),
//! `tutor_payable:<tutor id>` (earned by a tutor, not yet paid out). So a tutor's balance is the credit
//! balance of their payable account and the platform's revenue that of `platform_revenue`.

pub mod reports;
pub mod stripe;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::{
    audit,
    auth::{Admin, Authed, Role, Staff},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    identity::users,
    ids::{BookingId, TenantId, UserId},
    jobs::{self, Schedule},
    request::ClientInfo,
};

/// The handles the money handlers use, extracted as one `State<Ctx>` (built from the app state in `app`).
#[derive(Clone)]
pub struct Ctx {
    pub db: crate::db::Db,
    pub clock: crate::clock::SharedClock,
    pub config: std::sync::Arc<crate::config::Config>,
    pub stripe: crate::money::stripe::SharedStripe,
}

/// What can go wrong with money, in the domain's words; an HTTP answer only at the edge
/// (`From<MoneyError> for ApiError`).
#[derive(Debug, thiserror::Error)]
pub enum MoneyError {
    /// A posting whose entries don't sum to zero (a bug: refused, never written).
    #[error("refusing the unbalanced ledger posting {0}")]
    Unbalanced(String),
    #[error("nothing has been released for booking {0}")]
    PayoutNotFound(BookingId),
    #[error("{0:?} is not a currency")]
    BadCurrency(String),
    #[error("the payment provider failed: {0}")]
    Provider(#[from] billing::ProviderError),
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<MoneyError> for ApiError {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::PayoutNotFound(_) => {
                ApiError::not_found("payout_not_found", "nothing has been released for that booking")
            }
            MoneyError::Provider(e) => {
                ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "payment_provider_error", e.to_string())
            }
            MoneyError::Storage(e) => e.into(),
            e @ (MoneyError::Unbalanced(_) | MoneyError::BadCurrency(_)) => {
                tracing::error!(error = %e, "money");
                ApiError::internal()
            }
        }
    }
}

fn currency(code: &str) -> Result<billing::Currency, MoneyError> {
    code.parse().map_err(|_| MoneyError::BadCurrency(code.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    ProviderBalance,
    CustomerPrepayments,
    PlatformRevenue,
    TutorPayable(UserId),
}

impl Account {
    pub fn key(&self) -> String {
        match self {
            Account::ProviderBalance => "provider_balance".into(),
            Account::CustomerPrepayments => "customer_prepayments".into(),
            Account::PlatformRevenue => "platform_revenue".into(),
            Account::TutorPayable(t) => format!("tutor_payable:{t}"),
        }
    }
}

pub type Entries = Vec<(Account, i64)>;

/// Money received for a lesson or package: held for the customer until the lesson is given.
pub fn payment(amount: i64) -> Entries {
    vec![(Account::ProviderBalance, amount), (Account::CustomerPrepayments, -amount)]
}

/// Money going back to the customer.
pub fn refund(amount: i64) -> Entries {
    vec![(Account::CustomerPrepayments, amount), (Account::ProviderBalance, -amount)]
}

/// A lesson's value earned (given, or kept by the policy): the commission to the platform, the rest to the tutor.
pub fn earned(gross: i64, commission: billing::Commission, tutor: UserId) -> Entries {
    let fee = billing::bps_of(gross, commission.rate_bps.min(10_000));
    vec![
        (Account::CustomerPrepayments, gross),
        (Account::PlatformRevenue, -fee),
        (Account::TutorPayable(tutor), -(gross - fee)),
    ]
}

/// A tutor's share leaving the platform (a transfer to their account, or paid by hand).
pub fn payout(share: i64, tutor: UserId) -> Entries {
    vec![(Account::TutorPayable(tutor), share), (Account::ProviderBalance, -share)]
}

pub fn balanced(entries: &[(Account, i64)]) -> bool {
    entries.iter().map(|(_, a)| i128::from(*a)).sum::<i128>() == 0
}

/// One balanced transaction to post.
pub struct Posting<'a> {
    pub tenant: TenantId,
    pub kind: &'static str,
    /// Unique: posting the same reference again does nothing.
    pub reference: String,
    pub booking: Option<BookingId>,
    pub tutor: Option<UserId>,
    pub currency: &'a str,
    pub memo: Option<&'a str>,
    pub entries: Entries,
}

/// Posts `p` inside the caller's transaction. Ok(false) when its reference was already posted; an
/// unbalanced posting is a bug and is refused (500) before anything is written.
pub async fn post(conn: &mut AnyConnection, now: DateTime<Utc>, p: &Posting<'_>) -> Result<bool, MoneyError> {
    if !balanced(&p.entries) {
        return Err(MoneyError::Unbalanced(p.reference.clone()));
    }
    let exists = sqlx::query("SELECT 1 FROM money_transactions WHERE reference = $1")
        .bind(&p.reference)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_some() {
        return Ok(false);
    }
    let id: i64 = sqlx::query(
        "INSERT INTO money_transactions (tenant_id, kind, reference, booking_id, tutor_id, currency, memo, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(p.tenant.to_string())
    .bind(p.kind)
    .bind(&p.reference)
    .bind(p.booking.map(|b| b.to_string()))
    .bind(p.tutor.map(|t| t.to_string()))
    .bind(p.currency)
    .bind(p.memo)
    .bind(db::ts(now))
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    for (account, amount) in p.entries.iter().filter(|(_, a)| *a != 0) {
        sqlx::query(
            "INSERT INTO money_entries (transaction_id, tenant_id, account, amount_minor, currency) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(p.tenant.to_string())
        .bind(account.key())
        .bind(*amount)
        .bind(p.currency)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// The commission for `tutor`: their override, else the tenant's rate.
pub async fn commission_for(
    conn: &mut AnyConnection,
    tenant: TenantId,
    tutor: UserId,
    tenant_rate: billing::Commission,
) -> Result<billing::Commission, MoneyError> {
    let row = sqlx::query("SELECT commission_bps FROM tutor_billing WHERE tenant_id = $1 AND tutor_id = $2")
        .bind(tenant.to_string())
        .bind(tutor.to_string())
        .fetch_optional(conn)
        .await?;
    let over = row.map(|r| r.try_get::<Option<i64>, _>("commission_bps")).transpose()?.flatten();
    Ok(over.map_or(tenant_rate, |bps| billing::Commission { rate_bps: bps.clamp(0, 10_000) as u32 }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionOverride {
    /// Basis points (2000 = 20%); `null` goes back to the tenant's rate.
    pub commission_bps: Option<u32>,
}

/// Sets or clears a tutor's commission override (admins). Applies to earnings released from now on.
#[utoipa::path(put, path = "/api/v1/tutors/{id}/commission", tag = "money", params(("id" = UserId, Path)),
    request_body = CommissionOverride, security(("bearer" = [])),
    responses((status = 200, body = CommissionOverride), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_commission(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<Admin>,
    client: ClientInfo,
    Path(id): Path<UserId>,
    Json(body): Json<CommissionOverride>,
) -> ApiResult<Json<CommissionOverride>> {
    if body.commission_bps.is_some_and(|b| b > 10_000) {
        return Err(ApiError::unprocessable("invalid_commission", "commission_bps is 0 to 10000"));
    }
    let now = clock.now();
    let mut tx = db.begin().await?;
    let tutor = users::get_or_404(tx.conn(), auth.tenant_id, id, now).await?;
    if tutor.role != Role::Tutor {
        return Err(ApiError::unprocessable("not_a_tutor", "commission applies to tutors"));
    }
    sqlx::query(
        "INSERT INTO tutor_billing (tutor_id, tenant_id, commission_bps, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tutor_id) DO UPDATE SET commission_bps = excluded.commission_bps, updated_at = excluded.updated_at
         WHERE tutor_billing.tenant_id = excluded.tenant_id",
    )
    .bind(id.to_string())
    .bind(auth.tenant_id.to_string())
    .bind(body.commission_bps.map(i64::from))
    .bind(db::ts(now))
    .execute(tx.conn())
    .await?;
    let entry = audit::Entry::new(auth.tenant_id, Some(auth.user_id), "tutor.commission", &client)
        .target("user", id)
        .details(serde_json::json!({ "commission_bps": body.commission_bps }));
    audit::record(tx.conn(), now, entry).await?;
    tx.commit().await?;
    Ok(Json(body))
}

/// Marks a tutor's released share as paid out and posts it: `transfer_ref` is the provider's transfer, or
/// `manual:<method>` when staff paid by hand. Ok(false) when it was already paid.
pub async fn record_payout(
    conn: &mut AnyConnection,
    tenant: TenantId,
    booking: BookingId,
    transfer_ref: &str,
    now: DateTime<Utc>,
) -> Result<bool, MoneyError> {
    let lock = Db::lock_clause(conn);
    let sql = format!(
        "SELECT tutor_id, share_minor, currency, paid_at FROM tutor_payouts WHERE tenant_id = $1 AND booking_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(booking.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .ok_or(MoneyError::PayoutNotFound(booking))?;
    if row.try_get::<Option<String>, _>("paid_at")?.is_some() {
        return Ok(false);
    }
    let tutor = UserId::from_column(&row.try_get::<String, _>("tutor_id")?)?;
    let share: i64 = row.try_get("share_minor")?;
    let currency: String = row.try_get("currency")?;
    sqlx::query("UPDATE tutor_payouts SET paid_at = $1, transfer_ref = $2 WHERE booking_id = $3")
        .bind(db::ts(now))
        .bind(transfer_ref)
        .bind(booking.to_string())
        .execute(&mut *conn)
        .await?;
    let posting = Posting {
        tenant,
        kind: "payout",
        reference: format!("payout:{booking}"),
        booking: Some(booking),
        tutor: Some(tutor),
        currency: &currency,
        memo: Some(transfer_ref),
        entries: payout(share, tutor),
    };
    post(conn, now, &posting).await
}

/// A refund of `amount` of a lesson whose earnings were already released: the platform and the tutor give
/// back the same share of the commission and of the tutor's part (`unearned:<booking>`). If the tutor was
/// already paid by transfer, a job reverses that part of the transfer; if not yet paid, less is transferred.
/// Returns the tutor's part taken back (0 when nothing had been released).
pub async fn refund_released(
    conn: &mut AnyConnection,
    tenant: TenantId,
    booking: BookingId,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<i64, MoneyError> {
    let lock = Db::lock_clause(conn);
    let sql = format!(
        "SELECT tutor_id, gross_minor, fee_minor, currency, paid_at, transfer_ref FROM tutor_payouts
         WHERE tenant_id = $1 AND booking_id = $2{lock}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(booking.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(r) = row else { return Ok(0) };
    let tutor = UserId::from_column(&r.try_get::<String, _>("tutor_id")?)?;
    let (gross, fee): (i64, i64) = (r.try_get("gross_minor")?, r.try_get("fee_minor")?);
    let currency: String = r.try_get("currency")?;
    let back = amount.clamp(0, gross);
    if back == 0 {
        return Ok(0);
    }
    let (fee_back, share_back) = unearned_parts(back, gross, fee);
    let posting = Posting {
        tenant,
        kind: "unearned",
        reference: format!("unearned:{booking}"),
        booking: Some(booking),
        tutor: Some(tutor),
        currency: &currency,
        memo: Some("refund after release"),
        entries: vec![
            (Account::PlatformRevenue, fee_back),
            (Account::TutorPayable(tutor), share_back),
            (Account::CustomerPrepayments, -back),
        ],
    };
    if !post(conn, now, &posting).await? {
        return Ok(0);
    }
    sqlx::query("UPDATE tutor_payouts SET reversed_minor = reversed_minor + $1 WHERE booking_id = $2")
        .bind(share_back)
        .bind(booking.to_string())
        .execute(&mut *conn)
        .await?;
    let paid_by_transfer = r.try_get::<Option<String>, _>("paid_at")?.is_some()
        && r.try_get::<Option<String>, _>("transfer_ref")?.is_some_and(|t| t.starts_with("tr_"));
    if paid_by_transfer {
        let at = Schedule { tenant, run_at: now, dedupe_key: Some(format!("reversal:{booking}")) };
        jobs::enqueue(conn, now, at, &stripe::Reverse { booking_id: booking, amount_minor: share_back }).await?;
    }
    Ok(share_back)
}

/// `(commission back, tutor's part back)` of refunding `back` of a lesson of `gross` whose commission was
/// `fee`: the commission in proportion, rounded half up; the tutor's part is the rest, so they add up.
pub fn unearned_parts(back: i64, gross: i64, fee: i64) -> (i64, i64) {
    if gross <= 0 {
        return (0, 0);
    }
    let fee_back = (i128::from(fee) * i128::from(back) * 2 + i128::from(gross)) / (2 * i128::from(gross));
    let fee_back = i64::try_from(fee_back).unwrap_or(fee).clamp(0, back);
    (fee_back, back - fee_back)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaidByHand {
    /// How the tutor was paid: `bank_transfer`, `cash`, ...
    pub method: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PayoutRecorded {
    pub booking_id: BookingId,
    /// False when it had already been paid out (nothing changed).
    pub recorded: bool,
}

/// Staff record that a tutor's released share for a lesson was paid by hand (no online provider).
#[utoipa::path(post, path = "/api/v1/payouts/{booking_id}/paid", tag = "money", params(("booking_id" = BookingId, Path)),
    request_body = PaidByHand, security(("bearer" = [])),
    responses((status = 200, body = PayoutRecorded), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn paid_by_hand(
    State(Ctx { db, clock, .. }): State<Ctx>,
    auth: Authed<Staff>,
    client: ClientInfo,
    Path(booking_id): Path<BookingId>,
    Json(body): Json<PaidByHand>,
) -> ApiResult<Json<PayoutRecorded>> {
    let method = body.method.trim();
    if method.is_empty() || method.len() > 40 {
        return Err(ApiError::unprocessable("invalid_method", "method is 1 to 40 characters"));
    }
    let now = clock.now();
    let mut tx = db.begin().await?;
    let recorded = record_payout(tx.conn(), auth.tenant_id, booking_id, &format!("manual:{method}"), now).await?;
    let entry = audit::Entry::new(auth.tenant_id, Some(auth.user_id), "payout.paid", &client)
        .target("booking", booking_id)
        .details(serde_json::json!({ "method": method, "recorded": recorded }));
    audit::record(tx.conn(), now, entry).await?;
    tx.commit().await?;
    Ok(Json(PayoutRecorded { booking_id, recorded }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builder_balances_for_any_amount_and_rate() {
        let tutor = UserId::new();
        // A deterministic sweep standing in for a property test: amounts across magnitudes, every 7th bps.
        let mut amounts: Vec<i64> = (0..2_000).collect();
        amounts.extend([9_999, 123_457, 10_000_000, 999_999_999_999, i64::MAX / 20_000]);
        for &a in &amounts {
            assert!(balanced(&payment(a)) && balanced(&refund(a)) && balanced(&payout(a, tutor)));
            for bps in (0..=10_000).step_by(7).chain([10_000]) {
                let e = earned(a, billing::Commission { rate_bps: bps }, tutor);
                assert!(balanced(&e), "{a} {bps}");
                let fee = -e[1].1;
                let share = -e[2].1;
                assert_eq!(fee + share, a, "commission + tutor share = gross");
                assert!(fee >= 0 && share >= 0);
            }
        }
    }

    #[test]
    fn refunds_after_release_take_back_proportionally_and_add_up() {
        assert_eq!(unearned_parts(3500, 3500, 700), (700, 2800));
        assert_eq!(unearned_parts(1750, 3500, 700), (350, 1400));
        assert_eq!(unearned_parts(1, 3, 1), (0, 1));
        assert_eq!(unearned_parts(2, 3, 1), (1, 1));
        for gross in [1, 7, 100, 3501] {
            for back in 0..=gross {
                let fee = billing::bps_of(gross, 2_000);
                let (f, s) = unearned_parts(back, gross, fee);
                assert_eq!(f + s, back);
                assert!(f <= fee && s <= gross - fee + 1 && f >= 0 && s >= 0, "{gross} {back}");
            }
        }
    }

    #[test]
    fn a_lesson_paid_given_and_paid_out_leaves_only_revenue() {
        let tutor = UserId::new();
        let mut all = payment(3500);
        all.extend(earned(3500, billing::Commission::DEFAULT, tutor));
        all.extend(payout(2800, tutor));
        let by = |acct: Account| all.iter().filter(|(a, _)| *a == acct).map(|(_, v)| v).sum::<i64>();
        assert_eq!(by(Account::CustomerPrepayments), 0);
        assert_eq!(by(Account::TutorPayable(tutor)), 0);
        assert_eq!(by(Account::PlatformRevenue), -700);
        assert_eq!(by(Account::ProviderBalance), 700);
    }
}
