//! The audit log: security-relevant actions (logins, role changes, registrations), written in the
//! same transaction as the change, queryable by the tenant's admins.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::{Admin, Authed},
    db::{self, Db},
    error::{ApiResult, Json, Query},
    ids::{TenantId, UserId},
    request::ClientInfo,
};

/// What happened, by whom, to what.
pub struct Entry<'a> {
    pub tenant: TenantId,
    pub actor: Option<UserId>,
    pub action: &'a str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl<'a> Entry<'a> {
    /// An entry for `action` in `tenant` by `actor`, from the request `client` describes.
    pub fn new(tenant: TenantId, actor: Option<UserId>, action: &'a str, client: &ClientInfo) -> Self {
        Self {
            tenant,
            actor,
            action,
            target_type: None,
            target_id: None,
            details: serde_json::json!({}),
            ip: client.ip.clone(),
            request_id: client.request_id.clone(),
        }
    }

    /// What the action was done to.
    pub fn target(mut self, kind: &'a str, id: impl ToString) -> Self {
        self.target_type = Some(kind);
        self.target_id = Some(id.to_string());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

pub async fn record(conn: &mut AnyConnection, now: DateTime<Utc>, e: Entry<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor_id, action, target_type, target_id, details, ip, request_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(e.tenant.to_string())
    .bind(e.actor.map(|a| a.to_string()))
    .bind(e.action)
    .bind(e.target_type)
    .bind(e.target_id)
    .bind(e.details.to_string())
    .bind(e.ip)
    .bind(e.request_id)
    .bind(db::ts(now))
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub details: serde_json::Value,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this action, e.g. `login.failed`.
    pub action: Option<String>,
    /// Only actions by this user.
    pub actor_id: Option<UserId>,
    /// Entries with an id below this (for paging back).
    pub before: Option<i64>,
    /// At most this many (default 50, max 500).
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The tenant's audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn list(
    State(db): State<Db>,
    auth: Authed<Admin>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = sqlx::query(
        "SELECT id, actor_id, action, target_type, target_id, details, ip, request_id, created_at FROM audit_log
         WHERE tenant_id = $1 AND ($2 IS NULL OR action = $2) AND ($3 IS NULL OR actor_id = $3) AND id < $4
         ORDER BY id DESC LIMIT $5",
    )
    .bind(auth.tenant_id.to_string())
    .bind(q.action)
    .bind(q.actor_id.map(|a| a.to_string()))
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows {
        entries.push(AuditRecord {
            id: r.try_get("id")?,
            actor_id: r.try_get("actor_id")?,
            action: r.try_get("action")?,
            target_type: r.try_get("target_type")?,
            target_id: r.try_get("target_id")?,
            details: serde_json::from_str(&r.try_get::<String, _>("details")?).unwrap_or_default(),
            ip: r.try_get("ip")?,
            request_id: r.try_get("request_id")?,
            created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        });
    }
    let next_before = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(AuditPage { entries, next_before }))
}
