//! What a request says about where it came from (client address, request id), for audit entries and
//! rate limits. A foundation: every domain's handlers may extract it; it depends only on the config and the error type.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::request::Parts,
};

use crate::{config::Config, error::ApiError};

/// Where a request came from, for audit entries and rate limits.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl<S> FromRequestParts<S> for ClientInfo
where
    S: Send + Sync,
    Arc<Config>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let config = Arc::<Config>::from_ref(state);
        let forwarded = config
            .trust_forwarded_for
            .then(|| parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()))
            .flatten()
            // The last hop is the one our trusted proxy appended; earlier entries are client-supplied.
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_string());
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(ClientInfo {
            ip: forwarded.or(peer),
            request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(String::from),
        })
    }
}
