//! Test harness: each test gets its own server on 127.0.0.1:0 and its own database — a fresh SQLite
//! file, or, when `TEST_DATABASE_URL` names a PostgreSQL server, a fresh database created on it and
//! dropped afterwards. Time is a `ManualClock` the test moves.

use std::{net::SocketAddr, sync::Arc};

use chrono::{Duration, Utc};
use orchestrator::{
    clock::ManualClock,
    config::{Config, Secret},
    server::Server,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub http: reqwest::Client,
    pub clock: ManualClock,
    pub state: orchestrator::app::AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The database's URL, for a second server on it (`spawn_on`).
    pub database_url: String,
    _db: TestDb,
}

/// A response: status, headers and JSON body (`Value::Null` when empty or not JSON).
pub struct Res {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Res {
    /// The `error.code` of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl std::fmt::Debug for Res {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

pub enum TestDb {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another `TestApp`'s database: that one removes it.
    Borrowed,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime; use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(db) = orchestrator::db::Db::connect(&admin_url, 1).await {
                        let _ =
                            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                                .execute(db.pool())
                                .await;
                        db.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The backend the suite runs on: `TEST_DATABASE_URL` (PostgreSQL) or SQLite.
pub async fn test_db() -> (TestDb, String) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin_url) if !admin_url.is_empty() => {
            let name = format!("lc_test_{}", uuid::Uuid::new_v4().simple());
            let db = orchestrator::db::Db::connect(&admin_url, 1)
                .await
                .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable: {e}"));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(db.pool())
                .await
                .expect("create test database");
            db.close().await;
            let url = match admin_url.rsplit_once('/') {
                Some((server, _)) => format!("{server}/{name}"),
                None => panic!("TEST_DATABASE_URL must end in /<database>"),
            };
            (TestDb::Postgres { admin_url, name }, url)
        }
        _ => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("test.db").display());
            (TestDb::Sqlite(dir), url)
        }
    }
}

pub fn test_config(database_url: String) -> Config {
    Config {
        database_url: Secret::new(database_url),
        allow_tenant_signup: true,
        shutdown_timeout_secs: 5,
        db_max_connections: 8,
        // The embedded SFU on any free UDP port: tests run side by side.
        rtc_udp_port: 0,
        ..Config::default()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let (db, url) = test_db().await;
        Self::start(db, url, tweak).await
    }

    /// A further server on the database of an existing `TestApp` (a restart, or a second node). It has
    /// its own clock; the database lives as long as the app that created it.
    pub async fn spawn_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start(TestDb::Borrowed, database_url.to_string(), tweak).await
    }

    async fn start(db: TestDb, url: String, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(url.clone());
        tweak(&mut config);
        let clock = ManualClock::new(Utc::now());
        let server = Server::build(config, Arc::new(clock.clone())).await.expect("server builds");
        let state = server.state().clone();
        let listener = orchestrator::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(server.run(listener, async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            clock,
            state,
            shutdown: Some(tx),
            server: Some(handle),
            database_url: url,
            _db: db,
        }
    }

    /// Triggers graceful shutdown without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// The server's current time.
    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        orchestrator::clock::Clock::now(&self.clock)
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Res { status, headers, body, text }
    }

    pub async fn get(&self, path: &str, token: &str) -> Res {
        self.request(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Res {
        self.request(Method::POST, path, token, Some(&body), &[]).await
    }

    /// Creates a tenant through public signup; returns (tenant id, admin session JSON).
    pub async fn tenant(&self, slug: &str) -> Tenant {
        let res = self
            .post(
                "/api/v1/tenants",
                None,
                json!({"slug": slug, "name": format!("{slug} school"),
                       "admin": {"email": format!("admin@{slug}.test"), "display_name": "Admin", "password": PASSWORD}}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
        let admin = self.login(slug, &format!("admin@{slug}.test"), PASSWORD).await;
        Tenant { id: res.body["tenant"]["id"].as_str().unwrap().to_string(), slug: slug.to_string(), admin }
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Session {
        let res = self
            .post("/api/v1/auth/login", None, json!({"tenant": tenant, "email": email, "password": password}))
            .await;
        assert_eq!(res.status, StatusCode::OK, "login {email}: {res:?}");
        Session::from(&res.body)
    }

    /// Staff-creates a user and logs them in.
    pub async fn user(&self, tenant: &Tenant, role: &str, name: &str, birth_date: Option<&str>) -> Session {
        let email = format!("{name}@{}.test", tenant.slug);
        let mut body = json!({"email": email, "display_name": name, "role": role, "password": PASSWORD});
        if let Some(b) = birth_date {
            body["birth_date"] = json!(b);
        }
        let res = self.post("/api/v1/users", Some(&tenant.admin.access), body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
        self.login(&tenant.slug, &email, PASSWORD).await
    }
}

impl TestApp {
    /// A student under the default consent age (13), and a new parent linked to them.
    pub async fn minor_with_parent(&self, tenant: &Tenant, kid: &str, parent: &str) -> (Session, Session) {
        let birth = (Utc::now() - Duration::days(365 * 9)).format("%Y-%m-%d").to_string();
        let child = self.user(tenant, "student", kid, Some(&birth)).await;
        let parent = self.user(tenant, "parent", parent, None).await;
        let res = self
            .post(
                &format!("/api/v1/users/{}/children", parent.user_id),
                Some(&tenant.admin.access),
                json!({"child_id": child.user_id}),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{res:?}");
        (child, parent)
    }

    /// Staff ask for `scopes`; the parent grants them with `method`. Returns the request.
    pub async fn grant_consent(
        &self,
        tenant: &Tenant,
        parent: &Session,
        child: &Session,
        scopes: &[&str],
        method: &str,
    ) -> Value {
        let req = self
            .post(
                "/api/v1/consent-requests",
                Some(&tenant.admin.access),
                json!({"child_id": child.user_id, "scopes": scopes}),
            )
            .await;
        assert_eq!(req.status, StatusCode::CREATED, "{req:?}");
        let decided = self
            .post(
                &format!("/api/v1/consent-requests/{}/decision", req.body["id"].as_str().unwrap()),
                Some(&parent.access),
                json!({"grant": scopes, "method": method}),
            )
            .await;
        assert_eq!(decided.status, StatusCode::OK, "{decided:?}");
        req.body
    }
}

pub const PASSWORD: &str = "password-123";

pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub admin: Session,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
}

impl From<&Value> for Session {
    fn from(v: &Value) -> Self {
        Session {
            access: v["access_token"].as_str().expect("access_token").to_string(),
            refresh: v["refresh_token"].as_str().expect("refresh_token").to_string(),
            user_id: v["user"]["id"].as_str().expect("user.id").to_string(),
        }
    }
}
