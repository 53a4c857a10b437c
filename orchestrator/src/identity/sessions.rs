//! Sessions: login (rate-limited, audited), rotating refresh tokens, logout, student self-registration.
//!
//! A refresh token is used once: refreshing marks it rotated and issues a successor in the same
//! family. Presenting a rotated token again means it was stolen or replayed, so the whole family is
//! revoked and the holder must log in again.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use signaling::Signaling;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::{
    Ctx, Email, tenants,
    users::{self, CreateUser, User},
};
use crate::{
    audit,
    auth::{Role, Tokens, limiter::Refused, new_refresh_token, password, refresh_token_hash},
    config::Config,
    db::{self},
    error::{ApiError, ApiResult, ErrorBody, Json},
    ids::{TenantId, UserId},
    request::ClientInfo,
};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: User,
}

/// Issues an access token and a new refresh token (in `family`, or a new family).
pub async fn issue(
    conn: &mut AnyConnection,
    tokens: &Tokens,
    config: &Config,
    user: User,
    family: Option<String>,
    now: DateTime<Utc>,
) -> Result<Session, sqlx::Error> {
    let (refresh_token, hash) = new_refresh_token();
    let family = family.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, tenant_id, user_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(hash)
    .bind(&family)
    .bind(user.tenant_id.to_string())
    .bind(user.id.to_string())
    .bind(db::ts(now))
    .bind(db::ts(now + Duration::seconds(config.refresh_token_ttl_secs as i64)))
    .execute(conn)
    .await?;
    Ok(Session {
        access_token: tokens.issue(user.id, user.tenant_id, user.role, &user.display_name, Some(&family)),
        token_type: "Bearer".into(),
        expires_in: tokens.access_ttl_secs(),
        refresh_token,
        user,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The tenant's slug.
    pub tenant: String,
    pub email: String,
    pub password: String,
}

fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("invalid_credentials", "wrong tenant, e-mail or password")
}

/// Logs in with tenant slug, e-mail and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(Ctx { db, clock, tokens, config, login_limits: limits, .. }): State<Ctx>,
    client: ClientInfo,
    Json(body): Json<Login>,
) -> ApiResult<Json<Session>> {
    let now = clock.now();
    let email = Email::parse(&body.email).map_err(|_| invalid_credentials())?;
    let account_key = format!("{}\n{}", body.tenant, email.as_str());
    // Counted before the password is checked, so concurrent guesses can't all pass an uncounted check.
    let attempt = limits.begin(client.ip.as_deref().unwrap_or(""), &account_key, now).await.map_err(|r| match r {
        Refused::Limited { message, retry_after } => ApiError::too_many_requests(message, retry_after),
        Refused::Unavailable(e) => {
            tracing::error!(error = %e, "login limits unavailable; refusing logins");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "signing in is briefly unavailable; try again in a moment",
            )
        }
    })?;

    let mut conn = db.pool().acquire().await?;
    let tenant = tenants::find_by_slug(&mut conn, &body.tenant).await?;
    let row = match &tenant {
        Some(t) => {
            sqlx::query(
                "SELECT id, password_hash FROM users WHERE tenant_id = $1 AND email = $2 AND disabled_at IS NULL",
            )
            .bind(t.id.to_string())
            .bind(email.as_str())
            .fetch_optional(&mut *conn)
            .await?
        }
        None => None,
    };
    let (user_id, stored) = match &row {
        Some(r) => (Some(UserId::from_column(&r.try_get::<String, _>("id")?)?), Some(r.try_get("password_hash")?)),
        None => (None, None),
    };
    drop(conn);
    let ok = password::verify(body.password, stored).await;

    let mut tx = db.begin().await?;
    let entry = |action, actor: Option<UserId>, details| {
        let e = audit::Entry::new(tenant.as_ref().map(|t| t.id).unwrap_or_default(), actor, action, &client);
        let e = e.details(details);
        match actor {
            Some(a) => e.target("user", a),
            None => e,
        }
    };
    let (Some(tenant), Some(user_id), true) = (&tenant, user_id, ok) else {
        // The attempt's reservation stays: it was a failure.
        if tenant.is_some() {
            audit::record(
                tx.conn(),
                now,
                entry("login.failed", user_id, serde_json::json!({ "email": email.as_str() })),
            )
            .await?;
            tx.commit().await?;
        }
        return Err(invalid_credentials());
    };
    if let Err(e) = limits.succeeded(attempt, now).await {
        tracing::warn!(error = %e, "login limits unavailable; a success was not counted");
    }
    let user = users::get_or_404(tx.conn(), tenant.id, user_id, now).await?;
    audit::record(tx.conn(), now, entry("login.succeeded", Some(user_id), serde_json::json!({}))).await?;
    let session = issue(tx.conn(), &tokens, &config, user, None, now).await?;
    tx.commit().await?;
    Ok(Json(session))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new access token and a new refresh token.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(Ctx { db, clock, tokens, config, signaling: sig, .. }): State<Ctx>,
    client: ClientInfo,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<Json<Session>> {
    let now = clock.now();
    let hash = refresh_token_hash(&body.refresh_token);
    let mut tx = db.begin().await?;
    let row = sqlx::query(
        "SELECT family_id, tenant_id, user_id, expires_at, rotated_at, revoked_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_optional(tx.conn())
    .await?;
    let invalid = || ApiError::unauthorized("invalid_refresh_token", "the refresh token is invalid or expired");
    let Some(row) = row else {
        return Err(invalid());
    };
    let family: String = row.try_get("family_id")?;
    let tenant = TenantId::from_column(&row.try_get::<String, _>("tenant_id")?)?;
    let user_id = UserId::from_column(&row.try_get::<String, _>("user_id")?)?;
    if row.try_get::<Option<String>, _>("revoked_at")?.is_some()
        || db::parse_ts(&row.try_get::<String, _>("expires_at")?)? <= now
    {
        return Err(invalid());
    }
    // Claim the token: only one refresh can rotate it, even when two race.
    let claimed = sqlx::query("UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL")
        .bind(db::ts(now))
        .bind(&hash)
        .execute(tx.conn())
        .await?
        .rows_affected();
    if claimed == 0 {
        revoke_family(tx.conn(), &family, now).await?;
        audit::record(
            tx.conn(),
            now,
            audit::Entry::new(tenant, Some(user_id), "refresh_token.reused", &client)
                .target("user", user_id)
                .details(serde_json::json!({ "family_id": family })),
        )
        .await?;
        tx.commit().await?;
        signed_out(&tokens, &sig, user_id, &family).await;
        return Err(ApiError::unauthorized(
            "refresh_token_reused",
            "this refresh token was already used; every session of its family has been signed out",
        ));
    }
    let Some(user) = users::find(tx.conn(), tenant, user_id, now).await? else {
        return Err(invalid());
    };
    let session = issue(tx.conn(), &tokens, &config, user, Some(family), now).await?;
    tx.commit().await?;
    Ok(Json(session))
}

async fn revoke_family(conn: &mut AnyConnection, family: &str, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL")
        .bind(db::ts(now))
        .bind(family)
        .execute(conn)
        .await?;
    Ok(())
}

/// A session's family was revoked (committed): its access tokens stop here at once (other nodes see it within
/// the revocation cache's freshness), and its sockets close on every node.
async fn signed_out(tokens: &Tokens, sig: &Signaling, user: UserId, family: &str) {
    tokens.session_revoked(family);
    if let Err(e) = sig.end_session(&user.to_string(), family).await {
        tracing::warn!(error = %e, "a signed-out session's sockets could not be told; they close when its token is next checked");
    }
}

/// Signs out: revokes the refresh token's whole family; the session's access tokens stop working and its
/// WebSocket connections are closed. Unknown tokens are accepted silently.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "signed out")))]
pub async fn logout(
    State(Ctx { db, clock, tokens, signaling: sig, .. }): State<Ctx>,
    Json(body): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let row = sqlx::query("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(refresh_token_hash(&body.refresh_token))
        .fetch_optional(tx.conn())
        .await?;
    let session = match row {
        Some(r) => {
            let family: String = r.try_get("family_id")?;
            let user = UserId::from_column(&r.try_get::<String, _>("user_id")?)?;
            revoke_family(tx.conn(), &family, now).await?;
            Some((user, family))
        }
        None => None,
    };
    tx.commit().await?;
    if let Some((user, family)) = session {
        signed_out(&tokens, &sig, user, &family).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfRegister {
    /// The tenant's slug.
    pub tenant: String,
    pub email: String,
    pub display_name: String,
    pub password: String,
    pub birth_date: chrono::NaiveDate,
}

/// A student registers themself, where the tenant allows it.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = SelfRegister,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for a repeated key")),
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn register(
    State(Ctx { db, clock, outbox, .. }): State<Ctx>,
    client: ClientInfo,
    Json(body): Json<SelfRegister>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let now = clock.now();
    let mut conn = db.pool().acquire().await?;
    let tenant = tenants::find_by_slug(&mut conn, &body.tenant)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant_not_found", "no such tenant"))?;
    drop(conn);
    if !tenant.self_registration {
        return Err(ApiError::forbidden("self_registration_disabled", "this tenant does not allow self-registration"));
    }
    let new = CreateUser {
        email: body.email,
        display_name: body.display_name,
        role: Role::Student,
        password: body.password,
        birth_date: Some(body.birth_date),
    }
    .parse(now.date_naive())?;
    let hash = password::hash(new.password.0.clone()).await?;
    let mut tx = db.begin().await?;
    let id = users::insert(tx.conn(), tenant.id, &new, &hash, now).await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(tenant.id, Some(id), "user.self_registered", &client)
            .target("user", id)
            .details(serde_json::json!({ "email": new.email.as_str() })),
    )
    .await?;
    let user = users::get_or_404(tx.conn(), tenant.id, id, now).await?;
    tx.commit().await?;
    outbox.notify();
    Ok((StatusCode::CREATED, Json(user)))
}
