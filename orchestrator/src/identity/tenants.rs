//! Tenants: public signup (when enabled), the tenant's own record, and its settings.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::Ctx;
use super::users::{self, CreateUser, User};
use super::{IdentityError, IdentityResult};
use crate::{
    audit,
    auth::{Admin, AnyRole, Authed, Role, password},
    db::{self, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path},
    events::DomainEvent,
    ids::TenantId,
    outbox::{self},
    request::ClientInfo,
};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    /// Students younger than this need a parent's consent.
    pub consent_age: i64,
    /// Whether students may register themselves.
    pub self_registration: bool,
    pub created_at: DateTime<Utc>,
}

const TENANT_COLUMNS: &str = "id, slug, name, consent_age, self_registration, created_at";

fn tenant_from_row(r: &sqlx::any::AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: TenantId::from_column(&r.try_get::<String, _>("id")?)?,
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        consent_age: r.try_get("consent_age")?,
        self_registration: r.try_get::<i64, _>("self_registration")? != 0,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
    })
}

pub async fn find_by_slug(conn: &mut AnyConnection, slug: &str) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(slug)
        .fetch_optional(conn)
        .await?
        .map(|r| tenant_from_row(&r))
        .transpose()
}

pub async fn find(conn: &mut AnyConnection, id: TenantId) -> Result<Option<Tenant>, sqlx::Error> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await?
        .map(|r| tenant_from_row(&r))
        .transpose()
}

/// `[a-z0-9-]`, 2 to 40 characters, not starting or ending with `-`.
pub fn parse_slug(raw: &str) -> IdentityResult<String> {
    let ok = (2..=40).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(IdentityError::invalid("invalid_slug", "slug must be 2-40 characters of a-z, 0-9 and '-'"))
    }
}

/// Inserts a tenant with its `TenantCreated` event.
pub async fn insert(conn: &mut AnyConnection, slug: &str, name: &str, now: DateTime<Utc>) -> IdentityResult<TenantId> {
    let id = TenantId::new();
    let res = sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(id.to_string())
        .bind(slug)
        .bind(name)
        .bind(db::ts(now))
        .execute(&mut *conn)
        .await;
    match res {
        Ok(_) => {}
        Err(e) if db::is_unique_violation(&e) => {
            return Err(IdentityError::conflict("slug_taken", "a tenant with this slug already exists"));
        }
        Err(e) => return Err(e.into()),
    }
    outbox::append(conn, id, now, &DomainEvent::TenantCreated { tenant_id: id, slug: slug.into() }).await?;
    Ok(id)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    pub email: String,
    pub display_name: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub slug: String,
    pub name: String,
    /// The tenant's first admin.
    pub admin: AdminAccount,
}

#[derive(Serialize, ToSchema)]
pub struct TenantCreated {
    pub tenant: Tenant,
    pub admin: User,
}

/// Creates a tenant and its first admin. Open only when `allow_tenant_signup` is set.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = TenantCreated), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(Ctx { db, clock, outbox, config, .. }): State<Ctx>,
    client: ClientInfo,
    Json(body): Json<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    if !config.allow_tenant_signup {
        return Err(ApiError::forbidden("signup_disabled", "tenant signup is disabled on this server"));
    }
    let now = clock.now();
    let slug = parse_slug(&body.slug)?;
    let name = super::display_name(&body.name)?;
    let admin = CreateUser {
        email: body.admin.email,
        display_name: body.admin.display_name,
        role: Role::Admin,
        password: body.admin.password,
        birth_date: None,
    }
    .parse(now.date_naive())?;
    let hash = password::hash(admin.password.0.clone()).await?;
    let mut tx = db.begin().await?;
    let tenant_id = insert(tx.conn(), &slug, &name, now).await?;
    let admin_id = users::insert(tx.conn(), tenant_id, &admin, &hash, now).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(tenant_id, None, "tenant.created", &client)
            .target("tenant", tenant_id)
            .details(serde_json::json!({ "slug": slug, "admin_id": admin_id })),
    )
    .await?;
    let tenant = find(tx.conn(), tenant_id).await?.ok_or_else(ApiError::internal)?;
    let admin = users::get_or_404(tx.conn(), tenant_id, admin_id, now).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(TenantCreated { tenant, admin })))
}

/// Only members may read their tenant; another tenant's id is refused with 403.
fn own_tenant(auth: &crate::auth::AuthUser, id: TenantId) -> ApiResult<()> {
    if auth.tenant_id != id {
        return Err(ApiError::forbidden("wrong_tenant", "you belong to another tenant"));
    }
    Ok(())
}

/// The caller's tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", params(("id" = TenantId, Path)),
    security(("bearer" = [])), responses((status = 200, body = Tenant), (status = 403, body = ErrorBody)))]
pub async fn get(State(db): State<Db>, auth: Authed<AnyRole>, Path(id): Path<TenantId>) -> ApiResult<Json<Tenant>> {
    own_tenant(&auth, id)?;
    let mut conn = db.pool().acquire().await?;
    Ok(Json(find(&mut conn, id).await?.ok_or_else(|| ApiError::not_found("tenant_not_found", "no such tenant"))?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// 1 to 21.
    pub consent_age: Option<i64>,
    pub self_registration: Option<bool>,
}

/// Changes the tenant's settings (admin only, audited).
#[utoipa::path(patch, path = "/api/v1/tenants/{id}/settings", tag = "tenants", request_body = UpdateSettings,
    params(("id" = TenantId, Path)), security(("bearer" = [])),
    responses((status = 200, body = Tenant), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_settings(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    auth: Authed<Admin>,
    client: ClientInfo,
    Path(id): Path<TenantId>,
    Json(body): Json<UpdateSettings>,
) -> ApiResult<Json<Tenant>> {
    own_tenant(&auth, id)?;
    if let Some(age) = body.consent_age
        && !(1..=21).contains(&age)
    {
        return Err(ApiError::unprocessable("invalid_consent_age", "consent_age must be between 1 and 21"));
    }
    let now = clock.now();
    let mut tx = db.begin().await?;
    let before = find(tx.conn(), id).await?.ok_or_else(|| ApiError::not_found("tenant_not_found", "no such tenant"))?;
    sqlx::query("UPDATE tenants SET consent_age = $1, self_registration = $2 WHERE id = $3")
        .bind(body.consent_age.unwrap_or(before.consent_age))
        .bind(i64::from(body.self_registration.unwrap_or(before.self_registration)))
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(id, Some(auth.user_id), "tenant.settings_changed", &client).target("tenant", id).details(
            serde_json::json!({ "consent_age": body.consent_age, "self_registration": body.self_registration }),
        ),
    )
    .await?;
    let tenant = find(tx.conn(), id).await?.ok_or_else(ApiError::internal)?;
    let event = DomainEvent::TenantSettingsChanged {
        consent_age: tenant.consent_age,
        self_registration: tenant.self_registration,
    };
    outbox::append(tx.conn(), id, now, &event).await?;
    tx.commit().await?;
    outbox.notify();
    Ok(Json(tenant))
}
