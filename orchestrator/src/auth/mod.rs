//! Authentication and authorisation: roles, access tokens, the `Authed<Policy>` extractor that lets a
//! handler state which roles it needs, and the login rate limiter.
//!
//! Access tokens are short-lived HS256 JWTs carrying user, tenant, role and session; refresh tokens are
//! opaque and live in the database (see `identity::sessions`). A signed-out session's access tokens stop
//! working at once (`revocation`), though they haven't expired.

pub mod jwt;
pub mod limiter;
pub mod password;
pub mod revocation;

use std::{marker::PhantomData, sync::Arc};

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    clock::SharedClock,
    error::ApiError,
    ids::{TenantId, UserId},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Staff,
    Tutor,
    Student,
    Parent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Staff => "staff",
            Role::Tutor => "tutor",
            Role::Student => "student",
            Role::Parent => "parent",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Role::Admin,
            "staff" => Role::Staff,
            "tutor" => Role::Tutor,
            "student" => Role::Student,
            "parent" => Role::Parent,
            _ => return None,
        })
    }

    pub fn from_column(s: &str) -> Result<Self, sqlx::Error> {
        Self::parse(s).ok_or_else(|| sqlx::Error::Decode(format!("bad role {s:?}").into()))
    }

    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Staff)
    }
}

/// Access-token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: UserId,
    pub tid: TenantId,
    pub role: Role,
    /// Display name, for presence and chat (tokens minted before it existed lack it).
    #[serde(default)]
    pub name: String,
    pub iat: i64,
    pub exp: i64,
    /// The session (refresh-token family) the token was issued to; signing it out revokes the token.
    /// Tokens minted outside a session (load-test tokens made with the signing key) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

const ISSUER: &str = "liveclass";

/// Signs and verifies access tokens.
pub struct Tokens {
    key: Vec<u8>,
    access_ttl_secs: i64,
    clock: SharedClock,
    revocations: Option<revocation::Revocations>,
}

impl Tokens {
    pub fn new(key: Vec<u8>, access_ttl_secs: u64, clock: SharedClock) -> Self {
        Self { key, access_ttl_secs: access_ttl_secs as i64, clock, revocations: None }
    }

    /// Refuses the tokens of signed-out sessions (see `revocation`).
    pub fn with_revocations(mut self, revocations: revocation::Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// This node signed `session` out: its tokens are refused from now on.
    pub fn session_revoked(&self, session: &str) {
        if let Some(r) = &self.revocations {
            r.revoked(session);
        }
    }

    pub fn access_ttl_secs(&self) -> i64 {
        self.access_ttl_secs
    }

    pub fn issue(&self, user: UserId, tenant: TenantId, role: Role, name: &str, session: Option<&str>) -> String {
        let iat = self.clock.now().timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: user,
            tid: tenant,
            role,
            name: name.into(),
            iat,
            exp: iat + self.access_ttl_secs,
            sid: session.map(String::from),
        };
        jwt::encode(&self.key, &claims)
    }

    /// Signature, issuer and expiry only: for keying (idempotency), not for admitting a caller.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let claims = self.verify_claims(token)?;
        Ok(AuthUser { user_id: claims.sub, tenant_id: claims.tid, role: claims.role })
    }

    /// A token that may act now: valid, and its session not signed out.
    pub async fn authenticate(&self, token: &str) -> Result<Claims, ApiError> {
        let claims = self.verify_claims(token)?;
        if let (Some(revocations), Some(sid)) = (&self.revocations, &claims.sid)
            && revocations.is_revoked(sid).await?
        {
            return Err(ApiError::unauthorized("session_revoked", "this session was signed out; sign in again"));
        }
        Ok(claims)
    }

    pub fn verify_claims(&self, token: &str) -> Result<Claims, ApiError> {
        let claims: Claims = jwt::decode(&self.key, token, self.clock.now().timestamp(), 0).map_err(|e| match e {
            jwt::JwtError::Expired => ApiError::unauthorized("token_expired", "the access token has expired"),
            _ => ApiError::unauthorized("invalid_token", "the access token is invalid"),
        })?;
        if claims.iss != ISSUER {
            return Err(ApiError::unauthorized("invalid_token", "the access token is invalid"));
        }
        Ok(claims)
    }

    /// The bearer token of a request, verified (signature and expiry only, see `verify`); `None` when the
    /// request carries no `Authorization`.
    pub fn from_parts(&self, parts: &Parts) -> Option<Result<AuthUser, ApiError>> {
        Some(bearer(parts)?.and_then(|t| self.verify(t)))
    }

    /// The bearer token of a request, authenticated (`authenticate`); `None` without `Authorization`.
    pub async fn caller(&self, parts: &Parts) -> Option<Result<AuthUser, ApiError>> {
        Some(match bearer(parts)? {
            Ok(t) => self.authenticate(t).await.map(|c| AuthUser { user_id: c.sub, tenant_id: c.tid, role: c.role }),
            Err(e) => Err(e),
        })
    }
}

fn bearer(parts: &Parts) -> Option<Result<&str, ApiError>> {
    let value = parts.headers.get(header::AUTHORIZATION)?;
    let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    Some(
        token
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "expected `Authorization: Bearer <token>`")),
    )
}

/// Who is calling: from a verified access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub role: Role,
}

impl AuthUser {
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
}

/// Which roles a route admits.
pub trait Policy: Send + Sync + 'static {
    const ROLES: &'static [Role];
    const DESCRIPTION: &'static str;
}

pub struct AnyRole;
impl Policy for AnyRole {
    const ROLES: &'static [Role] = &[Role::Admin, Role::Staff, Role::Tutor, Role::Student, Role::Parent];
    const DESCRIPTION: &'static str = "any signed-in user";
}

/// Admins and staff.
pub struct Staff;
impl Policy for Staff {
    const ROLES: &'static [Role] = &[Role::Admin, Role::Staff];
    const DESCRIPTION: &'static str = "staff or admin";
}

pub struct Admin;
impl Policy for Admin {
    const ROLES: &'static [Role] = &[Role::Admin];
    const DESCRIPTION: &'static str = "admin";
}

/// Extractor: a verified caller whose role `P` admits. Missing or bad token → 401; wrong role → 403.
pub struct Authed<P: Policy = AnyRole> {
    pub user: AuthUser,
    _policy: PhantomData<P>,
}

impl<P: Policy> std::ops::Deref for Authed<P> {
    type Target = AuthUser;
    fn deref(&self) -> &AuthUser {
        &self.user
    }
}

impl<S, P> FromRequestParts<S> for Authed<P>
where
    S: Send + Sync,
    Arc<Tokens>: FromRef<S>,
    P: Policy,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let tokens = Arc::<Tokens>::from_ref(state);
        let user = tokens
            .caller(parts)
            .await
            .unwrap_or_else(|| Err(ApiError::unauthorized("missing_token", "this endpoint needs an access token")))?;
        if !P::ROLES.contains(&user.role) {
            return Err(ApiError::forbidden(
                "forbidden_role",
                format!("this action needs {}; you are {}", P::DESCRIPTION, user.role.as_str()),
            ));
        }
        Ok(Authed { user, _policy: PhantomData })
    }
}

/// Refresh tokens: 32 random bytes, base64url; only their SHA-256 is stored.
pub fn new_refresh_token() -> (String, String) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = refresh_token_hash(&token);
    (token, hash)
}

pub fn refresh_token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A random 32-byte key, hex-encoded (for the generated JWT key).
pub fn random_key_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    hex::encode(bytes)
}
