//! What can go wrong with tenants and users, in the domain's words; an HTTP answer only at the edge
//! (`From<IdentityError> for ApiError`).

use axum::http::StatusCode;

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no such user")]
    UserNotFound,
    #[error("no such tenant")]
    TenantNotFound,
    /// A value a user gave doesn't pass (an e-mail address, a password, a birth date, ...).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The change collides with what exists (an e-mail or slug taken, the last admin).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller may not see or do this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

pub type IdentityResult<T> = Result<T, IdentityError>;

impl IdentityError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        IdentityError::Invalid { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        IdentityError::Conflict { code, message: message.into() }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        IdentityError::Forbidden { code, message: message.into() }
    }

    /// The stable code clients match on (the `code` of the API's error body).
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::UserNotFound => "user_not_found",
            IdentityError::TenantNotFound => "tenant_not_found",
            IdentityError::Invalid { code, .. }
            | IdentityError::Conflict { code, .. }
            | IdentityError::Forbidden { code, .. } => code,
            IdentityError::Storage(_) => "internal",
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let (code, message) = (e.code(), e.to_string());
        let status = match e {
            IdentityError::UserNotFound | IdentityError::TenantNotFound => StatusCode::NOT_FOUND,
            IdentityError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            IdentityError::Conflict { .. } => StatusCode::CONFLICT,
            IdentityError::Forbidden { .. } => StatusCode::FORBIDDEN,
            IdentityError::Storage(e) => return e.into(),
        };
        ApiError::new(status, code, message)
    }
}
