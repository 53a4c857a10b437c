//! Reports read from the ledger: a tutor's earnings statement, the platform's revenue, and the
//! reconciliation of the ledger against the payment records (JSON, or CSV with `?format=csv`).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use super::Account;
use crate::{
    auth::{AnyRole, Authed, Staff},
    csv::{self, Format},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    identity::users,
    ids::{BookingId, TenantId, UserId},
};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    /// From this instant (inclusive); default: the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Until this instant (exclusive); default: now and later.
    pub to: Option<DateTime<Utc>>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: Format,
}

/// One lesson on a tutor's statement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EarningLine {
    pub booking_id: BookingId,
    pub starts_at: DateTime<Utc>,
    /// The booking's status: `completed`, or a cancellation/no-show the tutor was compensated for.
    pub status: String,
    pub currency: String,
    pub gross_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
    pub released_at: DateTime<Utc>,
    /// When the net left the platform (a transfer, or staff paying by hand); absent while still owed.
    pub paid_out_at: Option<DateTime<Utc>>,
    pub transfer_ref: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct EarningTotals {
    pub gross_minor: i64,
    pub commission_minor: i64,
    pub net_minor: i64,
    pub paid_out_minor: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EarningsStatement {
    pub tutor_id: UserId,
    pub lines: Vec<EarningLine>,
    /// Per currency, over the period's lines.
    pub totals: std::collections::BTreeMap<String, EarningTotals>,
    /// Per currency, owed to the tutor now (the ledger's payable balance, whatever the period).
    pub balance: std::collections::BTreeMap<String, i64>,
}

fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    s.map(|s| db::parse_ts(&s)).transpose()
}

/// A tutor's earnings per lesson released in the period (gross, commission, net, paid out), with totals
/// and what is owed now. The tutor themself and staff.
#[utoipa::path(get, path = "/api/v1/tutors/{id}/earnings", tag = "money", params(("id" = UserId, Path), PeriodQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EarningsStatement, description = "JSON, or CSV lines with `format=csv`"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn earnings(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Path(id): Path<UserId>,
    Query(q): Query<PeriodQuery>,
) -> ApiResult<Response> {
    if !(auth.is_staff() || auth.user_id == id) {
        return Err(ApiError::forbidden("forbidden", "tutors see their own earnings; staff anyone's"));
    }
    let mut conn = db.pool().acquire().await?;
    let rows = sqlx::query(
        "SELECT p.booking_id, b.starts_at, b.status, p.currency, p.gross_minor, p.fee_minor, p.share_minor,
                p.released_at, p.paid_at, p.transfer_ref
         FROM tutor_payouts p JOIN bookings b ON b.id = p.booking_id
         WHERE p.tenant_id = $1 AND p.tutor_id = $2 AND ($3 IS NULL OR p.released_at >= $3)
           AND ($4 IS NULL OR p.released_at < $4)
         ORDER BY p.released_at, p.booking_id",
    )
    .bind(auth.tenant_id.to_string())
    .bind(id.to_string())
    .bind(q.from.map(db::ts))
    .bind(q.to.map(db::ts))
    .fetch_all(&mut *conn)
    .await?;
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        lines.push(EarningLine {
            booking_id: BookingId::from_column(&r.try_get::<String, _>("booking_id")?)?,
            starts_at: db::parse_ts(&r.try_get::<String, _>("starts_at")?)?,
            status: r.try_get("status")?,
            currency: r.try_get("currency")?,
            gross_minor: r.try_get("gross_minor")?,
            commission_minor: r.try_get("fee_minor")?,
            net_minor: r.try_get("share_minor")?,
            released_at: db::parse_ts(&r.try_get::<String, _>("released_at")?)?,
            paid_out_at: opt_ts(r.try_get("paid_at")?)?,
            transfer_ref: r.try_get("transfer_ref")?,
        });
    }
    if lines.is_empty() {
        // 404 for a user that isn't in the tenant at all, rather than an empty statement.
        users::get_or_404(&mut conn, auth.tenant_id, id, Utc::now()).await?;
    }
    if q.format == Format::Csv {
        let header = "booking_id,starts_at,status,currency,gross_minor,commission_minor,net_minor,released_at,paid_out_at,transfer_ref";
        let csv_rows = lines.iter().map(|l| {
            vec![
                l.booking_id.to_string(),
                db::ts(l.starts_at),
                l.status.clone(),
                l.currency.clone(),
                l.gross_minor.to_string(),
                l.commission_minor.to_string(),
                l.net_minor.to_string(),
                db::ts(l.released_at),
                l.paid_out_at.map(db::ts).unwrap_or_default(),
                l.transfer_ref.clone().unwrap_or_default(),
            ]
        });
        return Ok(csv::response(header, csv_rows, &format!("earnings-{id}.csv")));
    }
    let mut totals: std::collections::BTreeMap<String, EarningTotals> = Default::default();
    for l in &lines {
        let t = totals.entry(l.currency.clone()).or_default();
        t.gross_minor += l.gross_minor;
        t.commission_minor += l.commission_minor;
        t.net_minor += l.net_minor;
        if l.paid_out_at.is_some() {
            t.paid_out_minor += l.net_minor;
        }
    }
    let payable = account_balances(&mut conn, auth.tenant_id, &Account::TutorPayable(id).key(), None, None).await?;
    let balance = payable.into_iter().map(|(c, v)| (c, -v)).collect();
    Ok(Json(EarningsStatement { tutor_id: id, lines, totals, balance }).into_response())
}

/// Per currency, the sum of `account`'s entries (debits positive) in transactions posted in the period.
async fn account_balances(
    conn: &mut AnyConnection,
    tenant: TenantId,
    account: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> ApiResult<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT e.currency, CAST(SUM(e.amount_minor) AS BIGINT) AS total
         FROM money_entries e JOIN money_transactions t ON t.id = e.transaction_id
         WHERE e.tenant_id = $1 AND e.account = $2 AND ($3 IS NULL OR t.created_at >= $3)
           AND ($4 IS NULL OR t.created_at < $4)
         GROUP BY e.currency ORDER BY e.currency",
    )
    .bind(tenant.to_string())
    .bind(account)
    .bind(from.map(db::ts))
    .bind(to.map(db::ts))
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("currency")?, r.try_get("total")?))).collect()
}

/// Per currency, the sum of a kind of posting's amounts on one account.
async fn posted(
    conn: &mut AnyConnection,
    tenant: TenantId,
    kind: &str,
    account: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> ApiResult<std::collections::BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT e.currency, CAST(SUM(e.amount_minor) AS BIGINT) AS total
         FROM money_entries e JOIN money_transactions t ON t.id = e.transaction_id
         WHERE e.tenant_id = $1 AND t.kind = $2 AND e.account = $3 AND ($4 IS NULL OR t.created_at >= $4)
           AND ($5 IS NULL OR t.created_at < $5)
         GROUP BY e.currency",
    )
    .bind(tenant.to_string())
    .bind(kind)
    .bind(account)
    .bind(from.map(db::ts))
    .bind(to.map(db::ts))
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok((r.try_get("currency")?, r.try_get("total")?))).collect()
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RevenueLine {
    pub currency: String,
    /// Money received from customers.
    pub payments_minor: i64,
    pub refunds_minor: i64,
    /// The platform's commission on lessons earned.
    pub revenue_minor: i64,
    /// Tutors' shares earned.
    pub tutor_earnings_minor: i64,
    pub paid_out_minor: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueReport {
    pub lines: Vec<RevenueLine>,
    pub reconciliation: Reconciliation,
}

/// Whether the ledger agrees with itself and with the payment records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    /// Every transaction's entries sum to zero.
    pub ledger_balanced: bool,
    pub unbalanced_transactions: i64,
    /// Succeeded payments, refunds requested and tutor payouts made, as recorded, equal their ledger postings.
    pub matches_records: bool,
    /// What differs, e.g. `EUR payments: recorded 3500, ledger 0`.
    pub differences: Vec<String>,
}

/// The platform's money for a period, per currency: received, refunded, commission earned, tutors' shares,
/// paid out; with the reconciliation check (over all time). Staff.
#[utoipa::path(get, path = "/api/v1/reports/revenue", tag = "money", params(PeriodQuery), security(("bearer" = [])),
    responses((status = 200, body = RevenueReport, description = "JSON, or CSV lines with `format=csv`"),
        (status = 403, body = ErrorBody)))]
pub async fn revenue(State(db): State<Db>, auth: Authed<Staff>, Query(q): Query<PeriodQuery>) -> ApiResult<Response> {
    let mut conn = db.pool().acquire().await?;
    let t = auth.tenant_id;
    let provider = Account::ProviderBalance.key();
    let payments = posted(&mut conn, t, "payment", &provider, q.from, q.to).await?;
    let refunds = posted(&mut conn, t, "refund", &provider, q.from, q.to).await?;
    let revenue = account_balances(&mut conn, t, &Account::PlatformRevenue.key(), q.from, q.to).await?;
    let earned = posted(&mut conn, t, "earned", &Account::CustomerPrepayments.key(), q.from, q.to).await?;
    let paid = posted(&mut conn, t, "payout", &provider, q.from, q.to).await?;
    let mut currencies: std::collections::BTreeSet<String> = payments.keys().cloned().collect();
    currencies.extend(refunds.keys().cloned());
    currencies.extend(revenue.iter().map(|(c, _)| c.clone()));
    let revenue: std::collections::BTreeMap<String, i64> = revenue.into_iter().collect();
    let lines: Vec<RevenueLine> = currencies
        .into_iter()
        .map(|c| {
            let get = |m: &std::collections::BTreeMap<String, i64>| m.get(&c).copied().unwrap_or(0);
            let rev = -get(&revenue);
            RevenueLine {
                payments_minor: get(&payments),
                refunds_minor: -get(&refunds),
                revenue_minor: rev,
                tutor_earnings_minor: get(&earned) - rev,
                paid_out_minor: -get(&paid),
                currency: c,
            }
        })
        .collect();
    if q.format == Format::Csv {
        let header = "currency,payments_minor,refunds_minor,revenue_minor,tutor_earnings_minor,paid_out_minor";
        let rows = lines.iter().map(|l| {
            vec![
                l.currency.clone(),
                l.payments_minor.to_string(),
                l.refunds_minor.to_string(),
                l.revenue_minor.to_string(),
                l.tutor_earnings_minor.to_string(),
                l.paid_out_minor.to_string(),
            ]
        });
        return Ok(csv::response(header, rows, "revenue.csv"));
    }
    let reconciliation = reconcile(&mut conn, t).await?;
    Ok(Json(RevenueReport { lines, reconciliation }).into_response())
}

async fn reconcile(conn: &mut AnyConnection, t: TenantId) -> ApiResult<Reconciliation> {
    let unbalanced: i64 = sqlx::query(
        "SELECT COUNT(*) FROM (SELECT transaction_id FROM money_entries WHERE tenant_id = $1
           GROUP BY transaction_id HAVING SUM(amount_minor) <> 0) x",
    )
    .bind(t.to_string())
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let provider = Account::ProviderBalance.key();
    let sums = async |conn: &mut AnyConnection, sql: &str| -> ApiResult<std::collections::BTreeMap<String, i64>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).bind(t.to_string()).fetch_all(conn).await?;
        rows.iter().map(|r| Ok((r.try_get("currency")?, r.try_get("total")?))).collect()
    };
    let recorded_payments = sums(
        conn,
        "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) AS total FROM payments
         WHERE tenant_id = $1 AND status = 'succeeded' GROUP BY currency",
    )
    .await?;
    let recorded_refunds = sums(
        conn,
        "SELECT currency, CAST(SUM(amount_minor) AS BIGINT) AS total FROM refunds
         WHERE tenant_id = $1 AND status <> 'failed' GROUP BY currency",
    )
    .await?;
    let recorded_payouts = sums(
        conn,
        "SELECT currency, CAST(SUM(share_minor) AS BIGINT) AS total FROM tutor_payouts
         WHERE tenant_id = $1 AND paid_at IS NOT NULL GROUP BY currency",
    )
    .await?;
    let ledger_payments = posted(conn, t, "payment", &provider, None, None).await?;
    let ledger_refunds: std::collections::BTreeMap<_, _> =
        posted(conn, t, "refund", &provider, None, None).await?.into_iter().map(|(c, v)| (c, -v)).collect();
    let ledger_payouts: std::collections::BTreeMap<_, _> =
        posted(conn, t, "payout", &provider, None, None).await?.into_iter().map(|(c, v)| (c, -v)).collect();
    let mut differences = Vec::new();
    for (what, recorded, ledger) in [
        ("payments", &recorded_payments, &ledger_payments),
        ("refunds", &recorded_refunds, &ledger_refunds),
        ("payouts", &recorded_payouts, &ledger_payouts),
    ] {
        let mut currencies: std::collections::BTreeSet<&String> = recorded.keys().collect();
        currencies.extend(ledger.keys());
        for c in currencies {
            let (a, b) = (recorded.get(c).copied().unwrap_or(0), ledger.get(c).copied().unwrap_or(0));
            if a != b {
                differences.push(format!("{c} {what}: recorded {a}, ledger {b}"));
            }
        }
    }
    Ok(Reconciliation {
        ledger_balanced: unbalanced == 0,
        unbalanced_transactions: unbalanced,
        matches_records: differences.is_empty(),
        differences,
    })
}
