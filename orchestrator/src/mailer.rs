//! The mailer seam: domain code queues a [`Mail`] through a [`Mailer`] inside the transaction of the
//! change that caused it, so a rolled-back change sends nothing.
//!
//! Layout:
//! - this file — [`Mail`] (plain text, an HTML alternative, a calendar attachment), the [`Mailer`] seam, the
//!   embedded [`Mailbox`], and the listings (`GET /api/v1/mailbox` for staff, `GET /api/v1/me/mailbox`), which
//!   show each message's delivery;
//! - `smtp` — the real transport (lettre, rustls): [`smtp::SmtpMailer`] stores like the mailbox and enqueues a
//!   `mail.send` job in the same transaction; the job runner sends it, retrying with backoff;
//! - `notices` — what each mail says, in the recipient's own time zone, with `.ics` for lessons: consent
//!   requests, booking confirmed / cancelled / rescheduled, reminders, payment received; and the outbox
//!   consumer that queues the booking and payment mails from their domain events.
//!
//! The `mailbox` row is the durable record of every message whatever the transport; with SMTP configured
//! (`smtp_url`) its delivery is the `mail.send` job's (attempts, last error, dead → retried by staff), and
//! `sent_at` once the server accepted it. Without `smtp_url` mail is only stored (the default and the
//! test double).

pub mod notices;
pub mod smtp;

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

/// Why the mail a change causes couldn't be queued: what it is about is gone, or storage failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error(transparent)]
    Booking(#[from] crate::bookings::BookingError),
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

impl MailError {
    /// What the mail is about no longer exists (or never did): nothing to send, not a failure to retry.
    pub fn is_gone(&self) -> bool {
        use crate::{bookings::BookingError as B, identity::IdentityError as I};
        match self {
            MailError::Identity(I::Storage(_)) | MailError::Storage(_) => false,
            MailError::Booking(B::Storage(_) | B::BadPolicy(_) | B::Money(_)) => false,
            MailError::Identity(_) | MailError::Booking(_) => true,
        }
    }
}

impl From<MailError> for crate::error::ApiError {
    fn from(e: MailError) -> Self {
        match e {
            MailError::Identity(e) => e.into(),
            MailError::Booking(e) => e.into(),
            MailError::Storage(e) => e.into(),
        }
    }
}

/// A message to one user of a tenant.
#[derive(Debug, Clone)]
pub struct Mail {
    pub tenant: TenantId,
    pub to_user: UserId,
    pub to_email: String,
    pub subject: String,
    /// The plain-text body; every message has one.
    pub body: String,
    /// The HTML alternative of `body` (sent as `multipart/alternative`).
    pub html: Option<String>,
    /// A calendar to attach (RFC 5545 text, its iTIP `METHOD` inside), for lessons and meetings.
    pub ics: Option<String>,
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

/// What a handler that sends mail extracts (`State<Outgoing>`): the mailer, and what mail links to.
#[derive(Clone)]
pub struct Outgoing {
    pub mailer: SharedMailer,
    pub site: notices::Site,
}

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
        Box::pin(async move { store(conn, now, mail).await.map(|_| ()) })
    }
}

/// Inserts `mail` into the `mailbox` table on the caller's connection; returns its id.
pub async fn store(conn: &mut AnyConnection, now: DateTime<Utc>, mail: &Mail) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO mailbox (tenant_id, to_user_id, to_email, subject, body, html, ics, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(mail.tenant.to_string())
    .bind(mail.to_user.to_string())
    .bind(&mail.to_email)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(mail.html.as_deref())
    .bind(mail.ics.as_deref())
    .bind(db::ts(now))
    .fetch_one(conn)
    .await?
    .try_get("id")
}

/// Where a message is on its way to the recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Kept in the mailbox only: no transport was configured when it was queued.
    Stored,
    /// Waiting for its first attempt.
    Queued,
    /// An attempt failed; another is scheduled (see `attempts`, `last_error`, `next_attempt_at`).
    Retrying,
    /// The SMTP server accepted it.
    Sent,
    /// Given up after the job's last attempt; staff can retry the job (`POST /api/v1/admin/jobs/{id}/retry`).
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    pub status: DeliveryStatus,
    /// The `mail.send` job that delivers it (absent for stored-only mail).
    pub job_id: Option<i64>,
    /// Failed attempts so far.
    pub attempts: i64,
    pub last_error: Option<String>,
    /// While retrying: when the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MailRecord {
    pub id: i64,
    pub to_user_id: UserId,
    pub to_email: String,
    pub subject: String,
    /// The plain-text body.
    pub body: String,
    /// The HTML alternative.
    pub html: Option<String>,
    /// The attached calendar (`text/calendar`, RFC 5545), for lessons and meetings.
    pub ics: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivery: Delivery,
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
        "SELECT m.id, m.to_user_id, m.to_email, m.subject, m.body, m.html, m.ics, m.created_at, m.job_id, m.sent_at,
                j.status AS job_status, j.attempts, j.last_error, j.run_at
         FROM mailbox m LEFT JOIN jobs j ON j.id = m.job_id AND j.tenant_id = m.tenant_id
         WHERE m.tenant_id = $1 AND ($2 IS NULL OR m.to_user_id = $2) AND m.id < $3 ORDER BY m.id DESC LIMIT $4",
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
            html: r.try_get("html")?,
            ics: r.try_get("ics")?,
            created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
            delivery: delivery(&r)?,
        });
    }
    let next_before = (messages.len() as i64 == limit).then(|| messages.last().map(|m| m.id)).flatten();
    Ok(MailPage { messages, next_before })
}

fn delivery(r: &sqlx::any::AnyRow) -> Result<Delivery, sqlx::Error> {
    let job_id: Option<i64> = r.try_get("job_id")?;
    let sent_at = r.try_get::<Option<String>, _>("sent_at")?.as_deref().map(db::parse_ts).transpose()?;
    let job_status: Option<String> = r.try_get("job_status")?;
    let attempts = r.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0);
    let run_at = r.try_get::<Option<String>, _>("run_at")?.as_deref().map(db::parse_ts).transpose()?;
    let status = match (job_id, sent_at, job_status.as_deref()) {
        (None, _, _) => DeliveryStatus::Stored,
        (Some(_), Some(_), _) => DeliveryStatus::Sent,
        (Some(_), None, Some("dead" | "cancelled")) => DeliveryStatus::Failed,
        (Some(_), None, _) if attempts > 0 => DeliveryStatus::Retrying,
        (Some(_), None, _) => DeliveryStatus::Queued,
    };
    Ok(Delivery {
        status,
        job_id,
        attempts,
        last_error: r.try_get("last_error")?,
        next_attempt_at: (status == DeliveryStatus::Retrying).then_some(run_at).flatten(),
        sent_at,
    })
}

/// The tenant's mail, newest first, with each message's delivery (staff only).
#[utoipa::path(get, path = "/api/v1/mailbox", tag = "mail", params(MailQuery), security(("bearer" = [])),
    responses((status = 200, body = MailPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(db): State<Db>, auth: Authed<Staff>, Query(q): Query<MailQuery>) -> ApiResult<Json<MailPage>> {
    Ok(Json(page(&db, auth.tenant_id, q.to_user_id, q.before, q.limit).await?))
}

/// The caller's own mail, newest first, with each message's delivery.
#[utoipa::path(get, path = "/api/v1/me/mailbox", tag = "mail", params(OwnMailQuery), security(("bearer" = [])),
    responses((status = 200, body = MailPage), (status = 401, body = ErrorBody)))]
pub async fn mine(
    State(db): State<Db>,
    auth: Authed<AnyRole>,
    Query(q): Query<OwnMailQuery>,
) -> ApiResult<Json<MailPage>> {
    Ok(Json(page(&db, auth.tenant_id, Some(auth.user_id), q.before, q.limit).await?))
}
