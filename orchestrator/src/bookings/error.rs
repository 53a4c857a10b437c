//! What can go wrong with a booking, in the domain's words. Storage, transitions and the lifecycle steps
//! jobs drive return [`BookingError`]; it becomes an HTTP answer only at the edge (`From<BookingError> for
//! ApiError`, used by `?` in the handlers).

use axum::http::StatusCode;

use super::{Action, BookingStatus};
use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("no such booking")]
    NotFound,
    #[error("no such package")]
    PackageNotFound,
    #[error("this tutor has not published availability")]
    TutorNotBookable,
    /// The transition table has no such move.
    #[error("a booking that is {} can't be {}", from.as_str(), action_name(*action))]
    IllegalTransition { from: BookingStatus, action: Action },
    /// A rule of the booking's life (its window, the tenant's policy) refuses the change; `code` is what
    /// clients match on.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// The request can't be satisfied as given (a package for another tutor, ...).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A stored document (the tenant's booking policy, a tutor's availability) doesn't parse.
    #[error("a stored document is unreadable: {0}")]
    BadPolicy(#[from] serde_json::Error),
    #[error(transparent)]
    Money(#[from] crate::money::MoneyError),
    #[error("database: {0}")]
    Storage(#[from] sqlx::Error),
}

pub type BookingResult<T> = Result<T, BookingError>;

impl BookingError {
    pub fn refused(code: &'static str, message: impl Into<String>) -> Self {
        BookingError::Refused { code, message: message.into() }
    }
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        BookingError::Invalid { code, message: message.into() }
    }

    /// The stable code clients match on (the `code` of the API's error body).
    pub fn code(&self) -> &'static str {
        match self {
            BookingError::NotFound => "booking_not_found",
            BookingError::PackageNotFound => "package_not_found",
            BookingError::TutorNotBookable => "tutor_not_bookable",
            BookingError::IllegalTransition { .. } => "illegal_transition",
            BookingError::Refused { code, .. } | BookingError::Invalid { code, .. } => code,
            BookingError::BadPolicy(_) | BookingError::Money(_) | BookingError::Storage(_) => "internal",
        }
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Checkout => "checked out",
        Action::PaymentSucceeded => "confirmed by a payment",
        Action::PayWithPackage => "paid with a package",
        Action::Expire => "expired",
        Action::CancelByStudent | Action::CancelByTutor => "cancelled",
        Action::Start => "started",
        Action::Complete => "completed",
        Action::NoShowStudent | Action::NoShowTutor => "marked a no-show",
        Action::Refund => "refunded",
    }
}

impl From<BookingError> for ApiError {
    fn from(e: BookingError) -> Self {
        let (code, message) = (e.code(), e.to_string());
        match e {
            BookingError::NotFound | BookingError::PackageNotFound | BookingError::TutorNotBookable => {
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            BookingError::IllegalTransition { .. } | BookingError::Refused { .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            BookingError::Invalid { .. } => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message),
            BookingError::BadPolicy(_) => {
                tracing::error!(error = message, "a stored booking document is unreadable");
                ApiError::internal()
            }
            BookingError::Money(e) => e.into(),
            BookingError::Storage(e) => e.into(),
        }
    }
}
