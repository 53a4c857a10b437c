//! Packages: a student buys N lessons of one length with one tutor up front, at the tutor's price per
//! lesson. Bought `pending_payment`, `active` once paid; a booking made with the package spends a credit
//! instead of a payment, and a cancellation in the free window gives it back.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row, any::AnyRow};
use utoipa::ToSchema;

use super::{BookingError, BookingResult, Ctx, payments::Payment};
use crate::{
    auth::{AnyRole, Authed, Role},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    identity::users,
    ids::{PackageId, TenantId, UserId},
    outbox,
};

pub const MAX_LESSONS: i64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Package {
    pub id: PackageId,
    pub student_id: UserId,
    pub tutor_id: UserId,
    pub minutes: i64,
    pub lessons: i64,
    pub remaining: i64,
    /// The whole package, in minor units of `currency`.
    pub price_minor: i64,
    pub currency: String,
    /// `pending_payment`, `active` or `cancelled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, student_id, tutor_id, minutes, lessons, remaining, price_minor, currency, status, created_at";

fn from_row(r: &AnyRow) -> Result<Package, sqlx::Error> {
    Ok(Package {
        id: PackageId::from_column(&r.try_get::<String, _>("id")?)?,
        student_id: UserId::from_column(&r.try_get::<String, _>("student_id")?)?,
        tutor_id: UserId::from_column(&r.try_get::<String, _>("tutor_id")?)?,
        minutes: r.try_get("minutes")?,
        lessons: r.try_get("lessons")?,
        remaining: r.try_get("remaining")?,
        price_minor: r.try_get("price_minor")?,
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
    })
}

pub(super) async fn load(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: PackageId,
    lock: &str,
) -> BookingResult<Package> {
    let sql = format!("SELECT {COLUMNS} FROM lesson_packages WHERE tenant_id = $1 AND id = $2{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(BookingError::PackageNotFound)?;
    Ok(from_row(&row)?)
}

async fn set(conn: &mut AnyConnection, tenant: TenantId, p: &Package, now: DateTime<Utc>) -> BookingResult<()> {
    sqlx::query("UPDATE lesson_packages SET status = $1, remaining = $2, activated_at = COALESCE(activated_at, $3) WHERE id = $4")
        .bind(&p.status)
        .bind(p.remaining)
        .bind((p.status == "active").then(|| db::ts(now)))
        .bind(p.id.to_string())
        .execute(&mut *conn)
        .await?;
    let event = DomainEvent::PackageStatusChanged {
        package_id: p.id,
        student_id: p.student_id,
        tutor_id: p.tutor_id,
        status: p.status.clone(),
        remaining: p.remaining,
    };
    outbox::append(conn, tenant, now, &event).await?;
    Ok(())
}

/// Spends one credit of package `id` on a lesson of `minutes` for `student` with `tutor`. Returns the
/// lesson's value (package price / lessons, rounded down), which cancellations and payouts use.
pub async fn spend(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: PackageId,
    student: UserId,
    tutor: UserId,
    minutes: u32,
) -> BookingResult<i64> {
    let mut p = load(conn, tenant, id, Db::lock_clause(conn)).await?;
    if p.student_id != student || p.tutor_id != tutor || p.minutes != i64::from(minutes) {
        return Err(BookingError::invalid("package_mismatch", "the package is for another student, tutor or length"));
    }
    if p.status != "active" {
        return Err(BookingError::refused("package_not_active", format!("the package is {}", p.status)));
    }
    if p.remaining == 0 {
        return Err(BookingError::refused("package_used_up", "no lessons left in the package"));
    }
    p.remaining -= 1;
    sqlx::query("UPDATE lesson_packages SET remaining = $1 WHERE id = $2")
        .bind(p.remaining)
        .bind(p.id.to_string())
        .execute(conn)
        .await?;
    Ok(p.price_minor / p.lessons.max(1))
}

/// Returns a credit (a lesson cancelled in the free window, a tutor's cancellation or no-show).
pub async fn give_back(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: PackageId,
    now: DateTime<Utc>,
) -> BookingResult<()> {
    let mut p = load(conn, tenant, id, Db::lock_clause(conn)).await?;
    p.remaining = (p.remaining + 1).min(p.lessons);
    set(conn, tenant, &p, now).await
}

/// The package's payment arrived: activates it. False when it can't be activated any more.
pub async fn payment_arrived(
    conn: &mut AnyConnection,
    tenant: TenantId,
    id: PackageId,
    now: DateTime<Utc>,
) -> BookingResult<bool> {
    let mut p = load(conn, tenant, id, Db::lock_clause(conn)).await?;
    if p.status != "pending_payment" {
        return Ok(false);
    }
    p.status = "active".into();
    set(conn, tenant, &p, now).await?;
    Ok(true)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPackage {
    pub tutor_id: UserId,
    pub minutes: u32,
    /// How many lessons (1 to 100).
    pub lessons: i64,
    /// Parents name their child, staff any student; students omit it.
    pub student_id: Option<UserId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Purchase {
    pub package: Package,
    pub payment: Payment,
}

/// A package: its student, the student's parents, its tutor, staff.
#[utoipa::path(get, path = "/api/v1/packages/{id}", tag = "bookings", params(("id" = PackageId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Package), (status = 404, body = ErrorBody)))]
pub async fn get(State(cx): State<Ctx>, auth: Authed<AnyRole>, Path(id): Path<PackageId>) -> ApiResult<Json<Package>> {
    let mut conn = cx.db.pool().acquire().await?;
    let p = load(&mut conn, auth.tenant_id, id, "").await?;
    let sees = auth.user_id == p.tutor_id || users::is_self_parent_or_staff(&mut conn, &auth, p.student_id).await?;
    if !sees {
        return Err(ApiError::not_found("package_not_found", "no such package"));
    }
    Ok(Json(p))
}

/// Packages the caller can see: their own (students), their children's (parents), sold (tutors), all (staff).
#[utoipa::path(get, path = "/api/v1/packages", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = Vec<Package>)))]
pub async fn list(State(cx): State<Ctx>, auth: Authed<AnyRole>) -> ApiResult<Json<Vec<Package>>> {
    let filter = match auth.role {
        Role::Admin | Role::Staff => " AND $2 = $2",
        Role::Tutor => " AND tutor_id = $2",
        Role::Student => " AND student_id = $2",
        Role::Parent => " AND student_id IN (SELECT child_id FROM parent_links WHERE parent_id = $2)",
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM lesson_packages WHERE tenant_id = $1{filter} ORDER BY created_at DESC LIMIT 500"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(auth.tenant_id.to_string())
        .bind(auth.user_id.to_string())
        .fetch_all(cx.db.pool())
        .await?;
    Ok(Json(rows.iter().map(from_row).collect::<Result<_, _>>()?))
}
