//! The composition of handles the HTTP layer needs. Handlers extract only the parts they use
//! (`State<Db>`, `State<Arc<Tokens>>`, ...) through `FromRef`, so no handler reaches into the whole.
//! `AppState` is one `Arc` around `AppParts`: axum clones the state for every request (several times
//! through the router's layers), and one reference count is cheaper than one per part.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRef, FromRequestParts},
    http::request::Parts,
};

use crate::{
    auth::{Tokens, limiter::LoginLimits},
    bookings::payments::SharedProvider,
    clock::SharedClock,
    config::Config,
    db::Db,
    error::ApiError,
    jobs::Jobs,
    mailer::SharedMailer,
    metrics::Metrics,
    money::stripe::SharedStripe,
    outbox::Outbox,
};

/// The application's shared handles; cheap to clone (see the module doc).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub db: Db,
    pub tokens: Arc<Tokens>,
    pub clock: SharedClock,
    pub outbox: Outbox,
    pub jobs: Jobs,
    pub mailer: SharedMailer,
    pub payments: SharedProvider,
    /// Set when Stripe is configured: Connect onboarding and transfers.
    pub stripe: SharedStripe,
    /// The media backend: LiveKit when configured, else the embedded SFU (or none, when turned off).
    pub media: Arc<dyn rooms::MediaBackend>,
    /// The embedded SFU, when it is the media backend (its `/rtc/v1` routes and counters).
    pub sfu: Option<rooms::sfu::Sfu>,
    pub signaling: signaling::Signaling,
    pub config: Arc<Config>,
    pub login_limits: Arc<LoginLimits>,
    pub metrics: Arc<Metrics>,
}

macro_rules! from_ref {
    ($($field:ident: $ty:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $ty {
            fn from_ref(s: &AppState) -> Self {
                s.$field.clone()
            }
        }
    )*};
}

from_ref!(
    db: Db,
    tokens: Arc<Tokens>,
    clock: SharedClock,
    outbox: Outbox,
    jobs: Jobs,
    mailer: SharedMailer,
    payments: SharedProvider,
    stripe: SharedStripe,
    media: Arc<dyn rooms::MediaBackend>,
    sfu: Option<rooms::sfu::Sfu>,
    signaling: signaling::Signaling,
    config: Arc<Config>,
    login_limits: Arc<LoginLimits>,
    metrics: Arc<Metrics>,
);

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
