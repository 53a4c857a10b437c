//! The mailer seam: domain code queues a [`Mail`] through a [`Mailer`] inside the transaction of the
//! change that caused it, so a rolled-back change sends nothing.
//!
//! The embedded default, [`Mailbox`], keeps mail in the `mailbox` table: staff read the tenant's
//! queue and users their own (`GET /api/v1/mailbox`, `GET /api/v1/me/mailbox`). A real transport
//! (SMTP, SES) would be another `Mailer`, chosen in `Server::build`.

use std::sync::Arc;

use axum::extract::State;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::{IntoParams, ToSchema};

use crate::{
    auth::{AnyRole, Authed, Staff},
    db::{self, Db},
    error::{ApiResult, ErrorBody, Json, Query},
    ids::{TenantId, UserId},
};

/// A message to one user of a tenant.
#[derive(Debug, Clone)]
pub struct Mail {
    pub tenant: TenantId,
    pub to_user: UserId,
    pub to_email: String,
    pub subject: String,
    pub body: String,
}

/// Queues mail. Implementations must use only the connection they are given (it is the caller's
/// transaction; on SQLite another write transaction would deadlock).
pub trait Mailer: Send + Sync + 'static {
    fn queue<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        now: DateTime<Utc>,
        mail: &'a Mail,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>>;
}

pub type SharedMailer = Arc<dyn Mailer>;

/// The embedded mailer: mail stays in the `mailbox` table, readable over the API.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mailbox;

impl Mailer for Mailbox {
    fn queue<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        now: DateTime<Utc>,
        mail: &'a Mail,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO mailbox (tenant_id, to_user_id, to_email, subject, body, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(mail.tenant.to_string())
            .bind(mail.to_user.to_string())
            .bind(&mail.to_email)
            .bind(&mail.subject)
            .bind(&mail.body)
            .bind(db::ts(now))
            .execute(conn)
            .await?;
            Ok(())
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MailRecord {
    pub id: i64,
    pub to_user_id: UserId,
    pub to_email: String,
    pub subject: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MailPage {
    pub messages: Vec<MailRecord>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MailQuery {
    /// Only mail to this user (staff listing only).
    pub to_user_id: Option<UserId>,
    /// Messages with an id below this (paging back).
    pub before: Option<i64>,
    /// At most this many (default 50, max 500).
    pub limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OwnMailQuery {
    /// Messages with an id below this (paging back).
    pub before: Option<i64>,
    /// At most this many (default 50, max 500).
    pub limit: Option<i64>,
}

async fn page(
    db: &Db,
    tenant: TenantId,
    to_user: Option<UserId>,
    before: Option<i64>,
    limit: Option<i64>,
) -> ApiResult<MailPage> {
    let limit = limit.unwrap_or(50).clamp(1, 500);
    let rows = sqlx::query(
        "SELECT id, to_user_id, to_email, subject, body, created_at FROM mailbox
         WHERE tenant_id = $1 AND ($2 IS NULL OR to_user_id = $2) AND id < $3 ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant.to_string())
    .bind(to_user.map(|u| u.to_string()))
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in rows {
        messages.push(MailRecord {
            id: r.try_get("id")?,
            to_user_id: UserId::from_column(&r.try_get::<String, _>("to_user_id")?)?,
            to_email: r.try_get("to_email")?,
            subject: r.try_get("subject")?,
            body: r.try_get("body")?,
            created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        });
    }
    let next_before = (messages.len() as i64 == limit).then(|| messages.last().map(|m| m.id)).flatten();
    Ok(MailPage { messages, next_before })
}

/// The tenant's queued mail, newest first (staff only).
#[utoipa::path(get, path = "/api/v1/mailbox", tag = "mail", params(MailQuery), security(("bearer" = [])),
    responses((status = 200, body = MailPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(db): State<Db>, auth: Authed<Staff>, Query(q): Query<MailQuery>) -> ApiResult<Json<MailPage>> {
    Ok(Json(page(&db, auth.tenant_id, q.to_user_id, q.before, q.limit).await?))
}

/// The caller's own mail, newest first.
#[utoipa::path(get, path = "/api/v1/me/mailbox", tag = "mail", params(OwnMailQuery), security(("bearer" = [])),
    responses((status = 200, body = MailPage), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Query(q): Query<OwnMailQuery>,
) -> ApiResult<Json<MailPage>> {
    Ok(Json(page(&db, auth.tenant_id, Some(auth.user_id), q.before, q.limit).await?))
}
