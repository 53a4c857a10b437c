//! The composition of handles the HTTP layer needs. Handlers extract only the parts they use
//! (`State<Db>`, `State<Arc<Tokens>>`, ...) through `FromRef`, so no handler reaches into the whole.
//! `AppState` is one `Arc` around `AppParts`: axum clones the state for every request (several times
//! through the router's layers), and one reference count is cheaper than one per part.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::{
    auth::{Tokens, limiter::LoginLimits},
    bookings::{self, payments::SharedProvider},
    calendar, classes,
    clock::SharedClock,
    config::Config,
    consent,
    db::Db,
    gamification,
    idempotency::Idempotency,
    identity,
    jobs::Jobs,
    live,
    mailer::{Outgoing, SharedMailer, notices},
    media,
    metrics::Metrics,
    money::{self, stripe::SharedStripe},
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

// The domains' contexts and the other composite handles, each built from the app state here, in one place.

impl FromRef<AppState> for bookings::Ctx {
    fn from_ref(s: &AppState) -> Self {
        bookings::Ctx {
            db: s.db.clone(),
            clock: s.clock.clone(),
            outbox: s.outbox.clone(),
            jobs: s.jobs.clone(),
            provider: s.payments.clone(),
        }
    }
}

impl FromRef<AppState> for Outgoing {
    fn from_ref(s: &AppState) -> Self {
        Outgoing { mailer: s.mailer.clone(), site: notices::Site::from_config(&s.config) }
    }
}

impl FromRef<AppState> for Idempotency {
    fn from_ref(s: &AppState) -> Self {
        Idempotency { db: s.db.clone(), tokens: s.tokens.clone(), clock: s.clock.clone(), config: s.config.clone() }
    }
}

impl FromRef<AppState> for identity::Ctx {
    fn from_ref(s: &AppState) -> Self {
        identity::Ctx {
            db: s.db.clone(),
            clock: s.clock.clone(),
            outbox: s.outbox.clone(),
            config: s.config.clone(),
            tokens: s.tokens.clone(),
            login_limits: s.login_limits.clone(),
            signaling: s.signaling.clone(),
        }
    }
}

impl FromRef<AppState> for money::Ctx {
    fn from_ref(s: &AppState) -> Self {
        money::Ctx { db: s.db.clone(), clock: s.clock.clone(), config: s.config.clone(), stripe: s.stripe.clone() }
    }
}

impl FromRef<AppState> for gamification::Ctx {
    fn from_ref(s: &AppState) -> Self {
        gamification::Ctx { db: s.db.clone(), clock: s.clock.clone() }
    }
}

impl FromRef<AppState> for classes::Ctx {
    fn from_ref(s: &AppState) -> Self {
        classes::Ctx { db: s.db.clone(), clock: s.clock.clone(), outbox: s.outbox.clone(), config: s.config.clone() }
    }
}

impl FromRef<AppState> for consent::Ctx {
    fn from_ref(s: &AppState) -> Self {
        consent::Ctx { db: s.db.clone(), clock: s.clock.clone(), outbox: s.outbox.clone(), mail: Outgoing::from_ref(s) }
    }
}

impl FromRef<AppState> for calendar::Ctx {
    fn from_ref(s: &AppState) -> Self {
        calendar::Ctx { db: s.db.clone(), clock: s.clock.clone(), config: s.config.clone() }
    }
}

impl FromRef<AppState> for media::Ctx {
    fn from_ref(s: &AppState) -> Self {
        media::Ctx { db: s.db.clone(), clock: s.clock.clone(), outbox: s.outbox.clone(), config: s.config.clone() }
    }
}

impl FromRef<AppState> for live::Ctx {
    fn from_ref(s: &AppState) -> Self {
        live::Ctx { db: s.db.clone(), clock: s.clock.clone(), media: s.media.clone() }
    }
}
