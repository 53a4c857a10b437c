//! Startup, the router with its middleware, and graceful shutdown.
//!
//! [`Server::build`] connects and migrates the database and assembles the handles; [`Server::run`]
//! serves on a bound listener (through `listener::run`, with its caps and timeouts) until the shutdown
//! future resolves, gives in-flight requests `shutdown_timeout_secs` to finish, stops the background tasks
//! and closes the pool. Tests run it on `127.0.0.1:0`.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use sqlx::Row;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tower::util::MapRequestLayer;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::{AppParts, AppState},
    audit,
    auth::{
        self, Tokens,
        limiter::{self, LoginLimits},
        random_key_hex,
    },
    bookings::{self, lifecycle as booking, packages, payments::SharedProvider, policy as booking_policy, tutors},
    calendar,
    classes::{self, attendance, courses, enrollments, ledger, lifecycle, unlocks},
    clock::SharedClock,
    config::Config,
    consent,
    db::Db,
    error::{ApiError, ErrorBody, Json},
    gamification::{self, leaderboard},
    idempotency,
    identity::{sessions, tenants, users},
    jobs::{self, Jobs},
    listener,
    mailer::{self, Mailbox, SharedMailer},
    media,
    metrics::{self, Metrics},
    money::{self, stripe::SharedStripe},
    outbox::Outbox,
    realtime::{ClassroomGate, chat, push},
    webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "liveclass", description = "Live-lesson and class orchestration API. Errors are always `{\"error\": {\"code\", \"message\"}}`."),
    modifiers(&BearerAuth),
    paths(openapi_json),
    components(schemas(ErrorBody, crate::csv::Format))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub struct Server {
    state: AppState,
    /// Started by `run`: the chat writer's queue and the live-push subscription (taken before the
    /// dispatcher starts, so no event published from then on is missed).
    chat_rx: Option<mpsc::Receiver<chat::ChatRow>>,
    pushes: Option<mpsc::Receiver<Arc<crate::outbox::EventEnvelope>>>,
    /// Presence from the embedded SFU, consumed by `run` like LiveKit's webhooks.
    sfu_events: Option<mpsc::UnboundedReceiver<rooms::sfu::SfuEvent>>,
}

/// The real-time layer over the in-process bus, or Redis when `redis_url` is set.
async fn build_signaling(config: &Config, gate: Arc<ClassroomGate>) -> anyhow::Result<signaling::Signaling> {
    let window =
        signaling::bus::Window { size: config.history_size, ttl: Duration::from_secs(config.history_ttl_secs) };
    let ws = signaling::Config {
        queue_capacity: config.ws_queue_capacity,
        max_rooms: config.ws_max_rooms,
        messages_per_sec: config.ws_messages_per_sec,
        burst: config.ws_messages_per_sec.saturating_mul(2),
        heartbeat: Duration::from_secs(config.ws_heartbeat_secs),
        join_presence_limit: config.ws_presence_snapshot_limit,
        board: signaling::bus::BoardLimits {
            max_object_bytes: config.board_max_object_bytes,
            max_objects: config.board_max_objects,
            max_bytes: config.board_max_bytes,
        },
        ..signaling::Config::default()
    };
    match &config.redis_url {
        None => Ok(signaling::Signaling::in_process(gate, ws, window)),
        Some(url) => connect_redis(url.expose(), gate, ws, window).await,
    }
}

pub use crate::listener::bind;

impl Server {
    /// Connects to the database, runs migrations and assembles the application.
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let db = Db::connect(config.database_url.expose(), config.db_max_connections)
            .await
            .context("connecting to the database")?;
        db.migrate().await.context("running migrations")?;
        let key = match &config.jwt_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => stored_jwt_key(&db).await.context("loading the token signing key")?,
        };
        let revocations = auth::revocation::Revocations::new(
            db.clone(),
            Duration::from_millis(config.session_check_ms),
            Duration::from_secs(config.access_token_ttl_secs),
        );
        let tokens =
            Arc::new(Tokens::new(key, config.access_token_ttl_secs, clock.clone()).with_revocations(revocations));
        let login_limits = Arc::new(login_limits(&config).await?);
        let outbox = Outbox::default();
        outbox.register(Arc::new(gamification::Awards::new(gamification::XpRules::from_config(&config))));
        let pushes = outbox.subscribe(4096);
        let jobs = Jobs::from_config(&config);
        // SMTP when `smtp_url` is set (mail stored, then sent by `mail.send` jobs); else the embedded mailbox.
        let transport = mailer::smtp::Transport::from_config(&config).context("configuring SMTP")?.map(Arc::new);
        let mailer: SharedMailer =
            if transport.is_some() { Arc::new(mailer::smtp::SmtpMailer) } else { Arc::new(Mailbox) };
        mailer::smtp::register(&jobs, transport);
        let site = mailer::notices::Site::from_config(&config);
        outbox.register(mailer::notices::Notices::new(mailer.clone(), site.clone()));
        // Stripe when configured; else the embedded default, offline (staff record money). No media server yet.
        let stripe: SharedStripe = match &config.stripe_secret_key {
            None => None,
            Some(key) => {
                let cfg = billing::StripeConfig {
                    secret_key: key.expose().to_string(),
                    api_base: config.stripe_api_base.clone(),
                    ..Default::default()
                };
                Some(Arc::new(billing::Stripe::new(cfg).context("building the Stripe client")?))
            }
        };
        let payments: SharedProvider = match &stripe {
            Some(s) => s.clone(),
            None => Arc::new(billing::Offline),
        };
        let (media, sfu, sfu_events) = media_backend(&config, clock.clone())?;
        let deps = bookings::jobs::Deps {
            mailer: mailer.clone(),
            site,
            provider: payments.clone(),
            stripe: stripe.clone(),
            media: media.clone(),
        };
        bookings::jobs::register(&jobs, Arc::new(deps));
        money::stripe::register(&jobs, stripe.clone());
        let config = Arc::new(config);
        let (chat_writer, chat_rx) = chat::ChatWriter::new();
        let gate = Arc::new(ClassroomGate {
            classes: classes::Ctx {
                db: db.clone(),
                clock: clock.clone(),
                outbox: outbox.clone(),
                config: config.clone(),
            },
            tokens: tokens.clone(),
            chat: chat_writer,
        });
        let signaling = build_signaling(&config, gate.clone()).await.context("starting the real-time layer")?;
        Ok(Self {
            state: AppState::new(AppParts {
                db,
                tokens,
                clock,
                outbox,
                jobs,
                mailer,
                payments,
                stripe,
                media,
                sfu,
                signaling,
                config,
                login_limits,
                metrics: Arc::new(Metrics::default()),
            }),
            chat_rx: Some(chat_rx),
            pushes: Some(pushes),
            sfu_events,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves, then drains and stops.
    pub async fn run(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let st = self.state.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let dispatcher = tokio::spawn(st.outbox.clone().run(st.db.clone(), st.clock.clone(), stop_rx.clone()));
        let runner =
            tokio::spawn(st.jobs.clone().run(st.db.clone(), st.clock.clone(), st.outbox.clone(), stop_rx.clone()));
        let mut tasks = vec![dispatcher, runner];
        if let Some(rx) = self.chat_rx.take() {
            tasks.push(tokio::spawn(chat::run_writer(st.db.clone(), rx, stop_rx.clone())));
        }
        if let Some(rx) = self.pushes.take() {
            tasks.push(tokio::spawn(push::run(
                st.signaling.clone(),
                st.db.clone(),
                st.media.clone(),
                rx,
                stop_rx.clone(),
            )));
        }
        if let (Some(sfu), Ok(local)) = (&st.sfu, listener.local_addr()) {
            let host = if local.ip().is_unspecified() { None } else { Some(local) };
            let url = match host {
                Some(a) => format!("ws://{a}"),
                None => st.config.public_url.replacen("http", "ws", 1),
            };
            sfu.set_listen_url(url);
        }
        if let Some(rx) = self.sfu_events.take() {
            let (db, clock, outbox) = (st.db.clone(), st.clock.clone(), st.outbox.clone());
            tasks.push(tokio::spawn(media::embedded_events(db, clock, outbox, rx, stop_rx.clone())));
        }
        if matches!(st.media.name(), "livekit" | "embedded") {
            // A media server may never report a `participant_left` (a crashed client, a lost webhook, a
            // restart): compare open segments with who is really there, every minute.
            let (db, media, clock, stop) = (st.db.clone(), st.media.clone(), st.clock.clone(), stop_rx.clone());
            tasks.push(tokio::spawn(media::reconcile_loop(db, media, clock, Duration::from_secs(60), stop)));
        }
        let sig = st.signaling.clone();
        let shutdown = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            // Upgraded sockets aren't in-flight requests: tell them to go away now.
            sig.shutdown();
        };
        let limits = listener::Limits::from_config(&st.config);
        let grace = Duration::from_secs(st.config.shutdown_timeout_secs);
        listener::run(listener, self.router(), limits, st.metrics.connections.clone(), shutdown, grace).await;
        let _ = stop_tx.send(true);
        for task in tasks {
            let _ = task.await;
        }
        st.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Login limits, counted in Redis when configured (so they hold across nodes), else in this process.
async fn login_limits(config: &Config) -> anyhow::Result<LoginLimits> {
    let counters: Arc<dyn limiter::Counters> = match &config.redis_url {
        Some(url) => Arc::new(limiter::RedisCounters::connect(url.expose()).await.context("login limits on Redis")?),
        None => Arc::new(limiter::MemoryCounters::default()),
    };
    let policy = limiter::LoginPolicy {
        attempts_per_ip: config.login_max_attempts_per_ip.into(),
        failures_per_account_ip: config.login_max_failures_per_account.into(),
        failures_per_account: config.login_max_failures_per_account_any_ip.into(),
        window: Duration::from_secs(config.login_window_secs),
        known_for: Duration::from_secs(30 * 24 * 3600),
    };
    Ok(LoginLimits::new(counters, policy))
}

/// The signing key kept in the database, created on first use, so every node and the CLI agree.
async fn stored_jwt_key(db: &Db) -> Result<Vec<u8>, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ('jwt_secret', $1) ON CONFLICT (key) DO NOTHING")
        .bind(random_key_hex())
        .execute(tx.conn())
        .await?;
    let value: String =
        sqlx::query("SELECT value FROM settings WHERE key = 'jwt_secret'").fetch_one(tx.conn()).await?.try_get(0)?;
    tx.commit().await?;
    Ok(value.into_bytes())
}

/// The whole HTTP surface with its middleware, and the OpenAPI document generated from it.
pub fn router(st: AppState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(client_config))
        .routes(routes!(metrics::scrape))
        .routes(routes!(tenants::create))
        .routes(routes!(tenants::get))
        .routes(routes!(tenants::update_settings))
        .routes(routes!(sessions::login))
        .routes(routes!(sessions::refresh))
        .routes(routes!(sessions::logout))
        .routes(routes!(sessions::register))
        .routes(routes!(users::me, users::update_me))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::get))
        .routes(routes!(users::change_role))
        .routes(routes!(users::link_child, users::list_children))
        .routes(routes!(audit::list))
        .routes(routes!(websocket))
        .routes(routes!(chat::history))
        .routes(routes!(courses::create, courses::list))
        .routes(routes!(courses::get))
        .routes(routes!(lifecycle::create, lifecycle::list))
        .routes(routes!(lifecycle::get))
        .routes(routes!(lifecycle::add_meetings))
        .routes(routes!(lifecycle::change_package))
        .routes(routes!(lifecycle::activate))
        .routes(routes!(lifecycle::complete))
        .routes(routes!(lifecycle::cancel))
        .routes(routes!(enrollments::enroll))
        .routes(routes!(enrollments::roster))
        .routes(routes!(enrollments::of_student))
        .routes(routes!(ledger::get_ledger))
        .routes(routes!(ledger::adjust))
        .routes(routes!(attendance::mark))
        .routes(routes!(attendance::mark_bulk))
        .routes(routes!(attendance::class_report))
        .routes(routes!(attendance::student_report))
        .routes(routes!(unlocks::unlock))
        .routes(routes!(unlocks::list))
        .routes(routes!(unlocks::complete))
        .routes(routes!(unlocks::for_student))
        .routes(routes!(consent::requests::create, consent::requests::list))
        .routes(routes!(consent::requests::get))
        .routes(routes!(consent::requests::decide))
        .routes(routes!(consent::state))
        .routes(routes!(consent::revoke))
        .routes(routes!(mailer::list))
        .routes(routes!(mailer::mine))
        .routes(routes!(calendar::feed::create_token, calendar::feed::revoke_token))
        .routes(routes!(calendar::feed::feed))
        .routes(routes!(tutors::list))
        .routes(routes!(tutors::put_availability, tutors::get_availability))
        .routes(routes!(tutors::slots))
        .routes(routes!(booking_policy::get, booking_policy::put))
        .routes(routes!(booking::create, booking::list))
        .routes(routes!(booking::get))
        .routes(routes!(bookings::checkout::checkout))
        .routes(routes!(booking::cancel))
        .routes(routes!(booking::cancellation_quote))
        .routes(routes!(booking::reschedule))
        .routes(routes!(booking::start))
        .routes(routes!(booking::complete))
        .routes(routes!(booking::no_show))
        .routes(routes!(booking::refund))
        .routes(routes!(bookings::room::join))
        .routes(routes!(media::webhook))
        .routes(routes!(classes::room::join))
        .routes(routes!(classes::room::proposal))
        .routes(routes!(media::segments))
        .routes(routes!(bookings::checkout::received))
        .routes(routes!(bookings::checkout::buy, packages::list))
        .routes(routes!(packages::get))
        .routes(routes!(money::set_commission))
        .routes(routes!(webhooks::webhook))
        .routes(routes!(money::stripe::get_account, money::stripe::onboard))
        .routes(routes!(money::paid_by_hand))
        .routes(routes!(money::reports::earnings))
        .routes(routes!(money::reports::revenue))
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::retry))
        .routes(routes!(gamification::profile::get))
        .routes(routes!(leaderboard::opt_in))
        .routes(routes!(leaderboard::opt_out))
        .routes(routes!(leaderboard::get))
        .split_for_parts();
    let openapi_doc = Arc::new(unique_operation_ids(&openapi.to_json().expect("OpenAPI serializes")));
    let config = st.config.clone();
    let request_id = HeaderName::from_static("x-request-id");

    let mut api = api.route("/api/v1/openapi.json", get(move || async move { serve_openapi(openapi_doc) }));
    if let Some(sfu) = &st.sfu {
        api = api.merge(rooms::sfu::router::<AppState>(sfu.clone()));
    }
    api.merge(crate::webui::router::<AppState>(config.web_dir.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(st.clone(), idempotency::layer))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(middleware::from_fn_with_state(config.request_timeout_secs, timeout))
        .layer(cors(&config))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal().into_response()))
        // Outside catch-panic, so a panicking request is counted as the 500 it becomes.
        .layer(middleware::from_fn_with_state(st.metrics.clone(), metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), route, request_id = id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RequestIds::new()))
        // Outermost: an unfit incoming id is dropped before anything logs, stores or echoes it.
        .layer(MapRequestLayer::new(drop_unfit_request_id))
        .with_state(st)
}

/// Removes an incoming `X-Request-Id` that is not 1-64 characters of `A-Z a-z 0-9 . _ : -` (or is sent
/// twice), so `SetRequestIdLayer` generates one instead. That set fits UUIDs, ULIDs, nginx's hex
/// `$request_id`, W3C `traceparent` and AWS trace ids; a client's free text (spaces, control characters,
/// 300 characters) never reaches logs, spans, audit entries or the response.
fn drop_unfit_request_id(mut req: Request) -> Request {
    let headers = req.headers_mut();
    let mut values = headers.get_all("x-request-id").iter();
    let fit = match (values.next(), values.next()) {
        (Some(v), None) => fit_request_id(v.as_bytes()),
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !fit {
        headers.remove("x-request-id");
    }
    req
}

fn fit_request_id(id: &[u8]) -> bool {
    (1..=64).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b))
}

/// Request ids in UUID v4 form without a system call each: a random key drawn once, and a counter mixed with
/// it (`MakeRequestUuid` asks the kernel for 16 random bytes per request, one `getrandom` per WebSocket connect).
/// The ids are unique within the process and unpredictable enough to tell requests apart, which is all they are
/// for; they are not secrets.
#[derive(Clone)]
struct RequestIds {
    key: (u64, u64),
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).expect("the OS supplies random bytes");
        let half = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        Self { key: (half(&seed[..8]), half(&seed[8..])), next: Default::default() }
    }

    fn id(&self) -> uuid::Uuid {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // splitmix64 is a bijection: distinct counters give distinct low halves.
        let lo = splitmix64(n ^ self.key.1);
        let hi = splitmix64(lo ^ self.key.0);
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id = self.id().hyphenated().to_string();
        Some(RequestId::new(HeaderValue::from_str(&id).expect("a UUID is a valid header value")))
    }
}

/// utoipa names an operation after its handler function, and several modules have a `list` or a `get`: an
/// OpenAPI document needs each `operationId` once (code generators name methods after them). A repeated name
/// gets the path's literal segments after `/api/v1` (`get` on `/api/v1/packages/{id}` → `get_packages`).
fn unique_operation_ids(doc: &str) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(doc).expect("the document is JSON");
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else { return doc.to_string() };
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for item in paths.values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                *seen.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    for (path, item) in paths.iter_mut() {
        let words: Vec<&str> =
            path.trim_start_matches("/api/v1").split('/').filter(|w| !w.is_empty() && !w.starts_with('{')).collect();
        for op in item.as_object_mut().into_iter().flat_map(|o| o.values_mut()) {
            let Some(id) = op.get("operationId").and_then(|v| v.as_str()).map(String::from) else { continue };
            if seen.get(&id).copied().unwrap_or(0) > 1 {
                let name = format!("{id}_{}", words.join("_").replace(['-', '.'], "_"));
                op["operationId"] = serde_json::Value::String(name);
            }
        }
    }
    doc.to_string()
}

fn serve_openapi(doc: Arc<String>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response()
}

/// The real-time WebSocket endpoint (protocol in `docs/protocol.md`): `?token=<access token>` or an
/// `auth` first frame; `?join=<room>` joins a room as the connection opens.
#[utoipa::path(get, path = "/ws", tag = "realtime",
    params(("token" = Option<String>, Query, description = "access token (or send it in an `auth` first frame)"),
        ("join" = Option<String>, Query, description = "a room to join as the connection opens (or `join` in the `auth` frame)")),
    responses((status = 101, description = "switching to the WebSocket protocol"), (status = 400, description = "not a WebSocket upgrade")))]
async fn websocket(
    state: axum::extract::State<signaling::Signaling>,
    query: axum::extract::Query<signaling::WsQuery>,
    ws: axum::extract::WebSocketUpgrade,
) -> Response {
    signaling::upgrade(state, query, ws).await
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document")))]
#[allow(dead_code)] // Only documents the route `router` serves with the generated document.
async fn openapi_json() {}

fn cors(config: &Config) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static(idempotency::HEADER)])
        .expose_headers([HeaderName::from_static("x-request-id")]);
    if config.cors_origins.iter().any(|o| o == "*") {
        base.allow_origin(AllowOrigin::any())
    } else {
        let origins: Vec<HeaderValue> = config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        base.allow_origin(origins)
    }
}

async fn timeout(State(secs): State<u64>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_secs(secs), next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long").into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not accept that method")
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Status {
    status: &'static str,
}

/// What the browser app needs to know of this server before anyone signs in.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct ClientConfig {
    /// `stripe` (pay by card in the page with Stripe.js) or `offline` (staff record the money).
    payments: &'static str,
    /// Stripe.js's key, with `payments` = `stripe`.
    stripe_publishable_key: Option<String>,
    /// `embedded`, `livekit` or `none`.
    media: &'static str,
}

/// The browser app's settings of this server (no sign-in needed; nothing secret).
#[utoipa::path(get, path = "/api/v1/client-config", tag = "ops", responses((status = 200, body = ClientConfig)))]
async fn client_config(
    State(config): State<Arc<Config>>,
    State(payments): State<SharedProvider>,
    State(media): State<Arc<dyn rooms::MediaBackend>>,
) -> Json<ClientConfig> {
    let online = payments.name() != "offline";
    Json(ClientConfig {
        payments: if online { "stripe" } else { "offline" },
        stripe_publishable_key: config.stripe_publishable_key.clone().filter(|_| online),
        media: media.name(),
    })
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Status)))]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The database is reachable (503 otherwise).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = Status), (status = 503, body = ErrorBody)))]
async fn readyz(State(db): State<Db>) -> Result<Json<Status>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => Ok(Json(Status { status: "ready" })),
        _ => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the database is unreachable")),
    }
}

/// Redis-backed bus and presence (several nodes).
async fn connect_redis(
    url: &str,
    gate: Arc<ClassroomGate>,
    ws: signaling::Config,
    window: signaling::bus::Window,
) -> anyhow::Result<signaling::Signaling> {
    use signaling::{
        hub::{Fanout, Hub},
        redis_bus::{RedisBus, RedisPresence},
    };
    let fanout = Arc::new(Fanout::default());
    let bus = RedisBus::connect(url, window, &signaling::bus::new_epoch(), fanout.clone()).await?;
    let presence = Arc::new(RedisPresence::connect(url).await?);
    Ok(signaling::Signaling::new(Hub::new(fanout, bus), presence, gate, ws))
}

type MediaParts =
    (Arc<dyn rooms::MediaBackend>, Option<rooms::sfu::Sfu>, Option<mpsc::UnboundedReceiver<rooms::sfu::SfuEvent>>);

/// LiveKit when `LIVEKIT_URL` is set; else the embedded SFU (unless turned off); else no media.
fn media_backend(config: &Config, clock: SharedClock) -> anyhow::Result<MediaParts> {
    let creds = match (&config.livekit_api_key, &config.livekit_api_secret) {
        (Some(key), Some(secret)) => {
            Some(rooms::Credentials { api_key: key.clone(), api_secret: secret.expose().to_string() })
        }
        _ => None,
    };
    let own = || rooms::Credentials { api_key: "liveclass".into(), api_secret: random_key_hex() };
    if let (Some(url), Some(creds)) = (&config.livekit_url, &creds) {
        return Ok((Arc::new(rooms::LiveKit::new(url.clone(), creds.clone())), None, None));
    }
    if !config.embedded_sfu {
        return Ok((Arc::new(rooms::NoMedia { credentials: creds.unwrap_or_else(own) }), None, None));
    }
    let ip = config.rtc_node_ip;
    let bind_ip = if ip.is_loopback() { ip } else { std::net::IpAddr::from([0, 0, 0, 0]) };
    let sfu_config = rooms::sfu::SfuConfig {
        udp_bind: SocketAddr::new(bind_ip, config.rtc_udp_port),
        advertise_ip: ip,
        credentials: creds.unwrap_or_else(own),
        url: config.rtc_url.clone(),
        ping_interval_secs: 5,
        ping_timeout_secs: 15,
        unix_now: Arc::new(move || clock.now().timestamp()),
    };
    let (sfu, events) = rooms::sfu::Sfu::start(sfu_config)
        .with_context(|| format!("starting the embedded SFU on UDP port {}", config.rtc_udp_port))?;
    tracing::info!(media = %sfu.media_addr, "embedded SFU serving LiveKit's client protocol at /rtc/v1");
    if config.redis_url.is_some() {
        tracing::warn!(
            "several nodes (REDIS_URL) with the embedded SFU: each node's SFU is separate, so a room's participants \
             must reach the same node; set LIVEKIT_URL for media across nodes"
        );
    }
    Ok((Arc::new(rooms::sfu::Embedded { sfu: sfu.clone() }), Some(sfu), Some(events)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_distinct_version_4_uuids_and_differ_between_processes() {
        let ids = RequestIds::new();
        let seen: std::collections::HashSet<uuid::Uuid> = (0..100_000).map(|_| ids.id()).collect();
        assert_eq!(seen.len(), 100_000);
        for id in seen.iter().take(100) {
            assert_eq!(id.get_version_num(), 4, "{id}");
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        // Another key (another node, a restart) starts somewhere else.
        let other = RequestIds::new();
        assert!((0..1000).map(|_| other.id()).all(|id| !seen.contains(&id)));
    }

    #[test]
    fn only_short_ids_of_a_safe_alphabet_are_kept() {
        for ok in ["trace-me-42", "0190f3a2-7c1e-7b3a-9f00-0123456789ab", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "a:b.c_d"] {
            assert!(fit_request_id(ok.as_bytes()), "{ok}");
        }
        let long = "x".repeat(65);
        for bad in ["", "has space", "tab\there", "new\nline", "ünï", "a/b", "<script>", long.as_str()] {
            assert!(!fit_request_id(bad.as_bytes()), "{bad:?}");
        }
        let two = Request::builder()
            .header("x-request-id", "a")
            .header("x-request-id", "b")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(drop_unfit_request_id(two).headers().get("x-request-id").is_none(), "ambiguous");
    }
}
