//! `Idempotency-Key` for POSTs that create things: the first response to a key is stored and
//! replayed for a repeat with the same body; the same key with a different body is a 409.
//!
//! Keys are scoped by caller (the access token's user, or anonymous) and path, so one client's key
//! never replays another's response. Auth endpoints (login, refresh, logout) are excluded: their
//! responses carry credentials and must never be replayed. 5xx responses are not stored, so a retry
//! after a server error runs again.

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Duration;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{auth::Tokens, clock::SharedClock, config::Config, db, db::Db, error::ApiError};

/// What the idempotency layer uses (built from the app state in `app`).
#[derive(Clone)]
pub struct Idempotency {
    pub db: Db,
    pub tokens: std::sync::Arc<Tokens>,
    pub clock: SharedClock,
    pub config: std::sync::Arc<Config>,
}

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Largest response buffered for replay (API responses are far smaller).
const MAX_STORED_RESPONSE: usize = 1024 * 1024;

pub async fn layer(State(st): State<Idempotency>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || req.uri().path().starts_with("/api/v1/auth/") && !is_register(&req) {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    match handle(st, key, req, next).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

fn is_register(req: &Request) -> bool {
    req.uri().path() == "/api/v1/auth/register"
}

async fn handle(st: Idempotency, key: HeaderValue, req: Request, next: Next) -> Result<Response, ApiError> {
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")
        })?
        .to_string();
    let (parts, body) = req.into_parts();
    let principal = match st.tokens.from_parts(&parts) {
        Some(Ok(user)) => format!("{}:{}", user.tenant_id, user.user_id),
        Some(Err(e)) => return Err(e),
        None => "anonymous".into(),
    };
    let scope = format!("{principal} {}", parts.uri.path());
    let bytes = to_bytes(body, st.config.body_limit_bytes)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is too large"))?;
    let request_hash = hex::encode(Sha256::digest(&bytes));
    let now = st.clock.now();
    let cutoff = now - Duration::seconds(st.config.idempotency_ttl_secs as i64);

    let mut tx = st.db.begin().await?;
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND created_at < $3")
        .bind(&scope)
        .bind(&key)
        .bind(db::ts(cutoff))
        .execute(tx.conn())
        .await?;
    let existing = sqlx::query(
        "SELECT request_hash, status, content_type, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(&scope)
    .bind(&key)
    .fetch_optional(tx.conn())
    .await?;
    if let Some(row) = existing {
        drop(tx);
        if row.try_get::<String, _>("request_hash")? != request_hash {
            return Err(ApiError::conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
            ));
        }
        let Some(status) = row.try_get::<Option<i64>, _>("status")? else {
            return Err(in_progress());
        };
        let mut res = Response::new(Body::from(row.try_get::<Option<String>, _>("response_body")?.unwrap_or_default()));
        *res.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        if let Some(ct) = row.try_get::<Option<String>, _>("content_type")?
            && let Ok(v) = HeaderValue::from_str(&ct)
        {
            res.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        res.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return Ok(res);
    }
    let inserted =
        sqlx::query("INSERT INTO idempotency_keys (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&scope)
            .bind(&key)
            .bind(&request_hash)
            .bind(db::ts(now))
            .execute(tx.conn())
            .await;
    match inserted {
        Ok(_) => {}
        // A concurrent request with the same key got there first (PostgreSQL; SQLite serialises writers).
        Err(e) if db::is_unique_violation(&e) => return Err(in_progress()),
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    // If the handler never finishes (client gone, timeout, panic), the pending key is released so
    // a retry runs instead of waiting out the TTL.
    let mut pending = PendingKey { db: st.db.clone(), scope: scope.clone(), key: key.clone(), settled: false };

    let res = next.run(Request::from_parts(parts, Body::from(bytes))).await;

    let (res_parts, res_body) = res.into_parts();
    let body = to_bytes(res_body, MAX_STORED_RESPONSE).await.map_err(|e| {
        tracing::error!(error = %e, "cannot buffer response for Idempotency-Key");
        ApiError::internal()
    })?;
    let storable = !res_parts.status.is_server_error() && std::str::from_utf8(&body).is_ok();
    let mut tx = st.db.begin().await?;
    if storable {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, content_type = $2, response_body = $3 WHERE scope = $4 AND key = $5",
        )
        .bind(res_parts.status.as_u16() as i64)
        .bind(res_parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(String::from))
        .bind(std::str::from_utf8(&body).unwrap_or_default())
        .bind(&scope)
        .bind(&key)
        .execute(tx.conn())
        .await?;
    } else {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
            .bind(&scope)
            .bind(&key)
            .execute(tx.conn())
            .await?;
    }
    tx.commit().await?;
    pending.settled = true;
    let body = Body::from(body);
    Ok(Response::from_parts(res_parts, body))
}

fn in_progress() -> ApiError {
    ApiError::conflict(
        "idempotency_request_in_progress",
        "a request with this Idempotency-Key is still being processed",
    )
}

struct PendingKey {
    db: db::Db,
    scope: String,
    key: String,
    settled: bool,
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (db, scope, key) = (self.db.clone(), std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
        tokio::spawn(async move {
            let release = async {
                let mut tx = db.begin().await?;
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL")
                    .bind(&scope)
                    .bind(&key)
                    .execute(tx.conn())
                    .await?;
                tx.commit().await
            };
            if let Err(e) = release.await {
                tracing::warn!(error = %e, "could not release an unfinished Idempotency-Key");
            }
        });
    }
}

/// Claims a provider's webhook event id inside the caller's transaction: true the first time, false for a
/// repeated (or concurrent, once the first commits) delivery of the same event.
pub async fn first_webhook_delivery(
    conn: &mut sqlx::AnyConnection,
    provider: &str,
    event_id: &str,
    kind: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, kind, received_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(event_id)
    .bind(kind)
    .bind(crate::db::ts(now))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
