//! What can go wrong with classes, in the domain's words; an HTTP answer only at the edge
//! (`From<ClassError> for ApiError`).

use axum::http::StatusCode;

use crate::{error::ApiError, identity::IdentityError};

#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    /// The class, meeting, enrollment or lesson doesn't exist in the caller's tenant.
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// The caller's relation to the class doesn't allow it.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The class's state or a rule (capacity, a closed attendance window, credits) refuses it.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The request can't be satisfied as given.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

pub type ClassResult<T> = Result<T, ClassError>;

impl ClassError {
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ClassError::NotFound { code, message: message.into() }
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ClassError::Forbidden { code, message: message.into() }
    }
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        ClassError::Refused { code, message: message.into() }
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ClassError::Invalid { code, message: message.into() }
    }
}

impl From<ClassError> for ApiError {
    fn from(e: ClassError) -> Self {
        let message = e.to_string();
        match e {
            ClassError::NotFound { code, .. } => ApiError::new(StatusCode::NOT_FOUND, code, message),
            ClassError::Forbidden { code, .. } => ApiError::new(StatusCode::FORBIDDEN, code, message),
            ClassError::Refused { code, .. } => ApiError::new(StatusCode::CONFLICT, code, message),
            ClassError::Invalid { code, .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            ClassError::Identity(e) => e.into(),
            ClassError::Storage(e) => e.into(),
        }
    }
}
