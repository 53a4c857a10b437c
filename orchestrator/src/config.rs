//! Layered configuration: built-in defaults, then an optional TOML file, then `DATABASE_URL`, then
//! `LIVECLASS_*` environment variables, then `*_FILE` variables for secrets, then CLI flags.
//! An unknown `LIVECLASS_*` variable is an error, so a misspelt secret never falls back silently.
//!
//! Keys are flat: the TOML key `body_limit_bytes` is the variable `LIVECLASS_BODY_LIMIT_BYTES`.

use std::{fmt, net::SocketAddr, path::Path};

use serde::{Deserialize, Serialize};

/// A value that must not appear in logs. Serializes as `"[redacted]"`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket server listens on.
    pub addr: SocketAddr,
    /// `sqlite://path` (default `sqlite://liveclass.db`) or `postgres://...`.
    pub database_url: Secret,
    pub db_max_connections: u32,
    /// HS256 key for access tokens. When unset, a random key is generated once and kept in the database,
    /// so every node and the CLI sign with the same key.
    pub jwt_secret: Option<Secret>,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    /// Allowed CORS origins; `["*"]` allows any; empty disables CORS.
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directive, e.g. `info,sqlx=warn`.
    pub log_filter: String,
    /// How long in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// A connection must deliver a complete request head within this long of opening, or of the first byte
    /// of a later request; else it is closed (slowloris). Real clients send a head in one round trip; a
    /// browser's unused pre-opened socket is closed too (it opens another when it needs one).
    pub header_read_timeout_secs: u64,
    /// An HTTP keep-alive connection with no request for this long is closed. Longer than the keep-alive of
    /// the load balancers in front (nginx's upstream pool: 60 s; AWS ALB: 60 s): the side that closes first
    /// races the other's next request, and a lost POST becomes a 502. WebSockets are not affected.
    pub idle_timeout_secs: u64,
    /// Open client connections (upgraded WebSockets included) at most; more are answered 503
    /// `too_many_connections` and closed. 0: the process's open-file limit less a reserve for the database
    /// pool, Redis, the SFU's socket and files (256 + 4 per `db_max_connections`): 19,704 under a limit of
    /// 20,000.
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client's /64) at most; 0: no such cap. It counts the
    /// addresses this server sees, so it is off with `trust_forwarded_for` (every peer is then the proxy).
    /// Sized for a school behind one NAT address: each pupil in a lesson holds `/ws`, the media socket and
    /// a few keep-alive connections.
    pub max_connections_per_ip: usize,
    /// Loopback peers (127.0.0.0/8, ::1) are not counted per address: a proxy on the same host, load tests.
    pub max_connections_per_ip_exempt_loopback: bool,
    /// Whether `POST /api/v1/tenants` (public tenant signup) is open.
    pub allow_tenant_signup: bool,
    /// Failed logins allowed per account from one client IP within `login_window_secs`; then that address
    /// waits for the window to end (other addresses, the owner's among them, are not affected).
    pub login_max_failures_per_account: u32,
    /// Failed logins allowed per account from all addresses together within `login_window_secs`; then only
    /// addresses the account signed in from before (in the last 30 days) may still try.
    pub login_max_failures_per_account_any_ip: u32,
    /// Login attempts allowed per client IP within `login_window_secs`; a successful one gives its count back.
    pub login_max_attempts_per_ip: u32,
    pub login_window_secs: u64,
    /// How long this node trusts a cached "session still signed in" answer before asking the database
    /// again: a sign-out on another node stops that session's access tokens here within this time (on the
    /// node that signed it out, at once).
    pub session_check_ms: u64,
    /// Use the last `X-Forwarded-For` address (the hop our proxy appended) as the client IP; only behind a
    /// trusted proxy.
    pub trust_forwarded_for: bool,
    /// How long a stored `Idempotency-Key` response is replayed.
    pub idempotency_ttl_secs: u64,
    /// `redis://host:port`: fan-out, history and presence across nodes. Unset: in-process (one node).
    pub redis_url: Option<Secret>,
    /// Publications kept per room for recovery, and for how long.
    pub history_size: usize,
    pub history_ttl_secs: u64,
    /// WebSocket: server ping interval; a connection silent for more than two intervals (plus 5 s) is
    /// dropped at the next ping, and presence entries expire after three.
    pub ws_heartbeat_secs: u64,
    /// WebSocket: frames queued per connection before it counts as a slow consumer and is closed.
    pub ws_queue_capacity: usize,
    pub ws_max_rooms: usize,
    pub ws_messages_per_sec: u32,
    /// WebSocket: members listed in a join's presence snapshot (the total is always given).
    pub ws_presence_snapshot_limit: usize,
    /// Whiteboard: the largest object (bytes of JSON; a larger `put` gets `object_too_large`), objects per
    /// board and bytes per board (keys plus objects; beyond either a `put` gets `board_full`).
    pub board_max_object_bytes: usize,
    pub board_max_objects: usize,
    pub board_max_bytes: usize,
    /// Attendance opens this long before a meeting starts.
    pub attendance_lead_secs: u64,
    /// The instructor may mark attendance until this long after a meeting ends; staff may correct later.
    pub attendance_grace_secs: u64,
    /// XP for attending a meeting on time.
    pub xp_attendance_present: i64,
    /// XP for attending a meeting late.
    pub xp_attendance_late: i64,
    /// XP for completing a lesson (once per student and lesson).
    pub xp_lesson_completed: i64,
    /// How often the job runner looks for due jobs when nothing wakes it (jobs due later, other nodes).
    pub jobs_poll_interval_ms: u64,
    /// Failed attempts after which a job is given up (`dead`).
    pub jobs_max_attempts: u32,
    /// Retry delay after a job's first failure; it doubles with each further failure...
    pub jobs_backoff_base_secs: u64,
    /// ...up to this.
    pub jobs_backoff_max_secs: u64,
    /// Stripe secret key (`STRIPE_SECRET_KEY`): payments go through Stripe (PaymentIntents, Connect transfers)
    /// instead of the offline provider. Needs `stripe_webhook_secret`.
    pub stripe_secret_key: Option<Secret>,
    /// The webhook endpoint's signing secret (`STRIPE_WEBHOOK_SECRET`, `whsec_…`).
    pub stripe_webhook_secret: Option<Secret>,
    /// Stripe's API address (a local fake in tests).
    pub stripe_api_base: String,
    /// `pk_…`: the publishable key the browser app gives Stripe.js to confirm a PaymentIntent's
    /// `client_secret` (not a secret; `GET /api/v1/client-config` hands it out).
    pub stripe_publishable_key: Option<String>,
    /// This server's public address, for links sent to users (Stripe onboarding return and refresh pages).
    pub public_url: String,
    /// A LiveKit server for lesson media (`LIVEKIT_URL`, `wss://…`); with its API key pair
    /// (`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`). Unset: no media server, tokens are minted but unused.
    pub livekit_url: Option<String>,
    pub livekit_api_key: Option<String>,
    pub livekit_api_secret: Option<Secret>,
    /// Without a LiveKit server, serve lesson media with the embedded SFU (LiveKit's client protocol at
    /// `/rtc/v1` on this listener, media over UDP). Its tokens are signed with `LIVEKIT_API_KEY` /
    /// `LIVEKIT_API_SECRET` when those are set without `LIVEKIT_URL`, else with a key of this process.
    pub embedded_sfu: bool,
    /// The embedded SFU's UDP port (0: any free port).
    pub rtc_udp_port: u16,
    /// The IP the embedded SFU tells clients to send media to (this machine's address as they reach it).
    pub rtc_node_ip: std::net::IpAddr,
    /// The URL clients connect to for media (`ws://…`); default: this server's listening address.
    pub rtc_url: Option<String>,
    /// A build of the browser client on disk (`web/dist`) to serve at `/` instead of the one built into the
    /// binary (unset: the built-in one).
    pub web_dir: Option<std::path::PathBuf>,
    /// The SMTP server mail is sent through: `smtp://host[:port]` (plain, for a local relay),
    /// `smtp://user:password@host[:port]?tls=starttls` (STARTTLS required, port 587) or
    /// `smtps://user:password@host[:port]` (TLS, port 465); see `mailer::smtp`. Unset: mail is only kept in the
    /// embedded mailbox (readable over the API).
    pub smtp_url: Option<Secret>,
    /// The sender of every mail, `Name <address>`; also the organizer of the lessons' calendar invitations.
    pub mail_from: String,
    /// One SMTP read or write may take this long (the whole exchange three times that) before the attempt
    /// fails and is retried.
    pub smtp_timeout_secs: u64,
    /// A PEM certificate to trust, besides Mozilla's roots, for the SMTP server's TLS (a private relay's CA).
    pub smtp_ca_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: Secret::new("sqlite://liveclass.db"),
            db_max_connections: 10,
            jwt_secret: None,
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            log_filter: "info,sqlx=warn".into(),
            shutdown_timeout_secs: 10,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: 0,
            max_connections_per_ip: 1024,
            max_connections_per_ip_exempt_loopback: true,
            allow_tenant_signup: false,
            login_max_failures_per_account: 5,
            login_max_failures_per_account_any_ip: 50,
            login_max_attempts_per_ip: 30,
            login_window_secs: 15 * 60,
            session_check_ms: 1000,
            trust_forwarded_for: false,
            idempotency_ttl_secs: 24 * 3600,
            redis_url: None,
            history_size: 1000,
            history_ttl_secs: 600,
            ws_heartbeat_secs: 25,
            ws_queue_capacity: 1024,
            ws_max_rooms: 16,
            ws_messages_per_sec: 50,
            ws_presence_snapshot_limit: 100,
            // signaling::bus::BoardLimits explains the defaults: 16 KiB, 2,000, 2 MiB.
            board_max_object_bytes: 16 * 1024,
            board_max_objects: 2_000,
            board_max_bytes: 2 * 1024 * 1024,
            attendance_lead_secs: 15 * 60,
            attendance_grace_secs: 24 * 3600,
            xp_attendance_present: 10,
            xp_attendance_late: 5,
            xp_lesson_completed: 20,
            jobs_poll_interval_ms: 1000,
            jobs_max_attempts: 8,
            jobs_backoff_base_secs: 5,
            jobs_backoff_max_secs: 3600,
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: "https://api.stripe.com".into(),
            stripe_publishable_key: None,
            public_url: "http://127.0.0.1:8080".into(),
            livekit_url: None,
            livekit_api_key: None,
            livekit_api_secret: None,
            embedded_sfu: true,
            rtc_udp_port: 7882,
            rtc_node_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            rtc_url: None,
            web_dir: None,
            smtp_url: None,
            mail_from: "liveclass <no-reply@localhost>".into(),
            smtp_timeout_secs: 15,
            smtp_ca_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid config file {path}: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("cannot read {var} ({path}): {source}")]
    SecretFile { var: String, path: String, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

const PREFIX: &str = "LIVECLASS_";

impl Config {
    /// Loads the layers. `file` is the explicit config path; without one, `liveclass.toml` is read if present.
    /// `env` is the process environment (passed in so tests can supply their own).
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = toml::Table::new();
        let default_path = Path::new("liveclass.toml");
        let path = file.or_else(|| default_path.exists().then_some(default_path));
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            table = text
                .parse::<toml::Table>()
                .map_err(|source| ConfigError::Parse { path: path.display().to_string(), source })?;
        }
        // Precedence, whatever the order of the environment: DATABASE_URL < LIVECLASS_<KEY> < *_FILE.
        let known = known_keys();
        let mut vars = Vec::new();
        for (name, value) in env {
            let Some((key, from_file)) = env_key(&name) else { continue };
            if !known.contains(&key.as_str()) {
                if name == "LIVECLASS_CONFIG" || name == "LIVECLASS_SKIP_WEB_BUILD" {
                    continue; // read by the CLI, and by build.rs when the binary is built
                }
                return Err(ConfigError::Invalid(format!("unknown configuration variable {name}")));
            }
            let rank = u8::from(from_file) * 2 + u8::from(name.starts_with(PREFIX));
            vars.push((rank, name, key, from_file, value));
        }
        vars.sort_by_key(|v| v.0);
        for (_, name, key, from_file, value) in &vars {
            let (name, key, from_file) = (name, key.clone(), *from_file);
            let value = if from_file {
                std::fs::read_to_string(value)
                    .map_err(|source| ConfigError::SecretFile { var: name.clone(), path: value.clone(), source })?
                    .trim_end()
                    .to_string()
            } else {
                value.clone()
            };
            let value = if key == "cors_origins" {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.into()))
                        .collect(),
                )
            } else {
                env_value(&value)
            };
            table.insert(key, value);
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(s) = &self.jwt_secret
            && s.expose().len() < 32
        {
            return Err(ConfigError::Invalid("jwt_secret must be at least 32 bytes".into()));
        }
        if self.access_token_ttl_secs == 0 || self.refresh_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid("token lifetimes must be positive".into()));
        }
        let real_time = [
            self.ws_heartbeat_secs,
            self.ws_queue_capacity as u64,
            u64::from(self.ws_messages_per_sec),
            self.history_size as u64,
            self.history_ttl_secs,
        ];
        if real_time.contains(&0) {
            return Err(ConfigError::Invalid(
                "ws_heartbeat_secs, ws_queue_capacity, ws_messages_per_sec, history_size and history_ttl_secs must be positive"
                    .into(),
            ));
        }
        if [self.board_max_object_bytes, self.board_max_objects, self.board_max_bytes].contains(&0) {
            return Err(ConfigError::Invalid(
                "board_max_object_bytes, board_max_objects and board_max_bytes must be positive".into(),
            ));
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Invalid("db_max_connections must be positive".into()));
        }
        if self.header_read_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            return Err(ConfigError::Invalid("header_read_timeout_secs and idle_timeout_secs must be positive".into()));
        }
        if self.xp_attendance_present < 0 || self.xp_attendance_late < 0 || self.xp_lesson_completed < 0 {
            return Err(ConfigError::Invalid("xp_* amounts must not be negative".into()));
        }
        if self.livekit_api_key.is_some() != self.livekit_api_secret.is_some()
            || (self.livekit_url.is_some() && self.livekit_api_key.is_none())
        {
            return Err(ConfigError::Invalid(
                "LIVEKIT_API_KEY and LIVEKIT_API_SECRET go together, and LIVEKIT_URL needs them".into(),
            ));
        }
        if self.stripe_secret_key.is_some() && self.stripe_webhook_secret.is_none() {
            return Err(ConfigError::Invalid(
                "STRIPE_SECRET_KEY needs STRIPE_WEBHOOK_SECRET: bookings confirm from Stripe's signed webhooks".into(),
            ));
        }
        if self.smtp_timeout_secs == 0 {
            return Err(ConfigError::Invalid("smtp_timeout_secs must be positive".into()));
        }
        if self.jobs_poll_interval_ms == 0 || self.jobs_max_attempts == 0 {
            return Err(ConfigError::Invalid("jobs_poll_interval_ms and jobs_max_attempts must be positive".into()));
        }
        Ok(())
    }

    /// The configuration as it is logged at start: secrets and URL passwords redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["database_url"] = serde_json::Value::String(redact_url(self.database_url.expose()));
        if let Some(r) = &self.redis_url {
            v["redis_url"] = serde_json::Value::String(redact_url(r.expose()));
        }
        if let Some(r) = &self.smtp_url {
            v["smtp_url"] = serde_json::Value::String(redact_url(r.expose()));
        }
        v
    }
}

/// Every config key; a test checks it against the struct so env handling never drifts from it.
fn known_keys() -> Vec<&'static str> {
    vec![
        "addr",
        "database_url",
        "db_max_connections",
        "jwt_secret",
        "access_token_ttl_secs",
        "refresh_token_ttl_secs",
        "body_limit_bytes",
        "request_timeout_secs",
        "cors_origins",
        "log_format",
        "log_filter",
        "shutdown_timeout_secs",
        "header_read_timeout_secs",
        "idle_timeout_secs",
        "max_connections",
        "max_connections_per_ip",
        "max_connections_per_ip_exempt_loopback",
        "allow_tenant_signup",
        "login_max_failures_per_account",
        "login_max_failures_per_account_any_ip",
        "login_max_attempts_per_ip",
        "login_window_secs",
        "session_check_ms",
        "trust_forwarded_for",
        "idempotency_ttl_secs",
        "redis_url",
        "history_size",
        "history_ttl_secs",
        "ws_heartbeat_secs",
        "ws_queue_capacity",
        "ws_max_rooms",
        "ws_messages_per_sec",
        "ws_presence_snapshot_limit",
        "board_max_object_bytes",
        "board_max_objects",
        "board_max_bytes",
        "attendance_lead_secs",
        "attendance_grace_secs",
        "xp_attendance_present",
        "xp_attendance_late",
        "xp_lesson_completed",
        "jobs_poll_interval_ms",
        "jobs_max_attempts",
        "jobs_backoff_base_secs",
        "jobs_backoff_max_secs",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "stripe_api_base",
        "stripe_publishable_key",
        "public_url",
        "livekit_url",
        "livekit_api_key",
        "livekit_api_secret",
        "embedded_sfu",
        "rtc_udp_port",
        "rtc_node_ip",
        "rtc_url",
        "web_dir",
        "smtp_url",
        "mail_from",
        "smtp_timeout_secs",
        "smtp_ca_file",
    ]
}

/// Maps an environment variable name to a config key; the bool says the value is a file path (`*_FILE`).
fn env_key(name: &str) -> Option<(String, bool)> {
    let (base, from_file) = match name.strip_suffix("_FILE") {
        Some(b) => (b, true),
        None => (name, false),
    };
    if base == "DATABASE_URL" {
        return Some(("database_url".into(), from_file));
    }
    if base == "REDIS_URL" {
        return Some(("redis_url".into(), from_file));
    }
    if matches!(
        base,
        "STRIPE_SECRET_KEY" | "STRIPE_WEBHOOK_SECRET" | "LIVEKIT_URL" | "LIVEKIT_API_KEY" | "LIVEKIT_API_SECRET"
    ) {
        return Some((base.to_ascii_lowercase(), from_file));
    }
    let key = base.strip_prefix(PREFIX)?;
    Some((key.to_ascii_lowercase(), from_file))
}

/// Environment values are strings; numbers and booleans are recognised so that
/// `LIVECLASS_BODY_LIMIT_BYTES=10` means a number (`LIVECLASS_CORS_ORIGINS=a,b` is split above).
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    toml::Value::String(raw.to_string())
}

fn redact_url(url: &str) -> String {
    // scheme://user:password@host/... → scheme://user:[redacted]@host/...
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:[redacted]@{host}");
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "addr = \"0.0.0.0:9000\"\nbody_limit_bytes = 10\n").unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "x".repeat(40) + "\n").unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("LIVECLASS_BODY_LIMIT_BYTES", "20"),
                ("LIVECLASS_JWT_SECRET_FILE", secret.to_str().unwrap()),
                ("DATABASE_URL", "postgres://u:pw@h/db"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.addr.port(), 9000);
        assert_eq!(c.body_limit_bytes, 20);
        assert_eq!(c.jwt_secret.unwrap().expose(), "x".repeat(40));
        assert_eq!(c.database_url.expose(), "postgres://u:pw@h/db");
    }

    #[test]
    fn stripe_keys_come_from_their_usual_variables_and_need_each_other() {
        let c =
            Config::load(None, env(&[("STRIPE_SECRET_KEY", "sk_test_abc"), ("STRIPE_WEBHOOK_SECRET", "whsec_def")]))
                .unwrap();
        assert_eq!(c.stripe_secret_key.as_ref().map(Secret::expose), Some("sk_test_abc"));
        assert_eq!(c.stripe_webhook_secret.as_ref().map(Secret::expose), Some("whsec_def"));
        let text = c.redacted().to_string();
        assert!(!text.contains("sk_test_abc") && !text.contains("whsec_def"), "{text}");
        let err = Config::load(None, env(&[("STRIPE_SECRET_KEY", "sk_test_abc")])).unwrap_err();
        assert!(err.to_string().contains("STRIPE_WEBHOOK_SECRET"), "{err}");
    }

    #[test]
    fn smtp_settings_load_and_the_password_is_redacted() {
        let c = Config::load(
            None,
            env(&[
                ("LIVECLASS_SMTP_URL", "smtps://mailer:hunter2@smtp.example.com"),
                ("LIVECLASS_MAIL_FROM", "School <no-reply@school.example>"),
            ]),
        )
        .unwrap();
        assert_eq!(c.smtp_url.as_ref().map(Secret::expose), Some("smtps://mailer:hunter2@smtp.example.com"));
        assert_eq!(c.mail_from, "School <no-reply@school.example>");
        let text = c.redacted().to_string();
        assert!(!text.contains("hunter2") && text.contains("smtps://mailer:[redacted]@smtp.example.com"), "{text}");
        let e = Config::load(None, env(&[("LIVECLASS_SMTP_TIMEOUT_SECS", "0")])).unwrap_err();
        assert!(e.to_string().contains("smtp_timeout_secs"), "{e}");
    }

    #[test]
    fn redaction_hides_secrets() {
        let c = Config {
            jwt_secret: Some(Secret::new("s".repeat(40))),
            database_url: Secret::new("postgres://u:topsecret@h/db"),
            ..Config::default()
        };
        let text = c.redacted().to_string();
        assert!(!text.contains("topsecret"), "{text}");
        assert!(!text.contains(&"s".repeat(40)), "{text}");
        assert!(text.contains("postgres://u:[redacted]@h/db"), "{text}");
    }

    #[test]
    fn precedence_does_not_depend_on_variable_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("url");
        std::fs::write(&file, "postgres://from-file/db\n").unwrap();
        let vars = [
            ("LIVECLASS_DATABASE_URL_FILE", file.to_str().unwrap()),
            ("LIVECLASS_DATABASE_URL", "postgres://prefixed/db"),
            ("DATABASE_URL", "postgres://plain/db"),
        ];
        let forward = Config::load(None, env(&vars)).unwrap();
        let mut reversed = vars;
        reversed.reverse();
        let backward = Config::load(None, env(&reversed)).unwrap();
        assert_eq!(forward.database_url.expose(), "postgres://from-file/db");
        assert_eq!(backward.database_url.expose(), "postgres://from-file/db");
        let c =
            Config::load(None, env(&[("LIVECLASS_DATABASE_URL", "sqlite://b.db"), ("DATABASE_URL", "sqlite://a.db")]))
                .unwrap();
        assert_eq!(c.database_url.expose(), "sqlite://b.db");
    }

    #[test]
    fn unknown_variables_are_errors() {
        let e = Config::load(None, env(&[("LIVECLASS_JWT_SECRTE", "x")])).unwrap_err();
        assert!(e.to_string().contains("LIVECLASS_JWT_SECRTE"), "{e}");
        assert!(Config::load(None, env(&[("LIVECLASS_CONFIG", "x.toml")])).is_ok());
    }

    #[test]
    fn bad_values_are_errors() {
        let e = Config::load(None, env(&[("LIVECLASS_BODY_LIMIT_BYTES", "lots")])).unwrap_err();
        assert!(e.to_string().contains("invalid"), "{e}");
        let e = Config::load(None, env(&[("LIVECLASS_JWT_SECRET", "short")])).unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
        let e = Config::load(None, env(&[("LIVECLASS_WS_MESSAGES_PER_SEC", "0")])).unwrap_err();
        assert!(e.to_string().contains("must be positive"), "{e}");
        let e = Config::load(None, env(&[("LIVECLASS_JOBS_MAX_ATTEMPTS", "0")])).unwrap_err();
        assert!(e.to_string().contains("must be positive"), "{e}");
    }

    #[test]
    fn every_key_is_known() {
        let v = serde_json::to_value(Config::default()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut known: Vec<_> = known_keys().into_iter().map(String::from).collect();
        known.sort();
        assert_eq!(keys, known);
    }
}
