//! Parental consent (COPPA): minors need a linked parent's granted consent, per scope, before
//! enrolling, booking or joining live video.

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::{classes::text_enum, error::ApiResult, identity::users::User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    LiveVideo,
    Chat,
    Recording,
}

text_enum!(ConsentScope { LiveVideo = "live_video", Chat = "chat", Recording = "recording" });

/// Ok when `student` may act under every scope in `scopes`: adults always; minors only with a linked
/// parent's granted, unrevoked consent for each scope. Otherwise a 403 `consent_required` naming the
/// missing scopes.
pub async fn ensure(_conn: &mut AnyConnection, student: &User, scopes: &[ConsentScope]) -> ApiResult<()> {
    if !student.minor || scopes.is_empty() {
        return Ok(());
    }
    Err(crate::error::ApiError::forbidden(
        "consent_required",
        "a parent's consent is required (consent is not implemented yet)",
    ))
}
