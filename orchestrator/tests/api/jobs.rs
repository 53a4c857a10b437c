//! The durable job queue against the real server: due times on the manual clock, exactly-once effects
//! (handlers write a `settings` row whose key a second run would collide with), dedupe and cancel,
//! backoff, dead jobs and the admin retry, panics, a crash and a restart, and two runners sharing one
//! database. Waits poll with a deadline; "nothing ran" is checked with a direct `run_due`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::Duration as StdDuration,
};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use orchestrator::{
    clock::{Clock, ManualClock, SharedClock},
    db::{Backend, Db},
    ids::TenantId,
    jobs::{self, BackgroundJob, Job, Jobs, Schedule},
    outbox::Outbox,
};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

use crate::helpers::TestApp;

/// What every test job writes: `settings[key] = value or the job id`, so a second run of the same job fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Effect {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

impl Effect {
    fn key(key: impl Into<String>) -> Self {
        Effect { key: key.into(), value: None }
    }
}

/// Writes its effect (counting its runs); held for `pause` while running, so concurrent runners overlap.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Once(Effect);

struct Counted {
    runs: Arc<AtomicUsize>,
    pause: StdDuration,
}

fn counted(runs: &Arc<AtomicUsize>) -> Arc<Counted> {
    Arc::new(Counted { runs: runs.clone(), pause: StdDuration::ZERO })
}

fn once(key: impl Into<String>) -> Once {
    Once(Effect::key(key))
}

impl BackgroundJob for Once {
    const KIND: &'static str = "test.once";
    type Deps = Counted;

    async fn run(self, deps: &Counted, conn: &mut AnyConnection, job: &Job, _now: DateTime<Utc>) -> anyhow::Result<()> {
        deps.runs.fetch_add(1, SeqCst);
        write_effect(conn, job, &self.0).await?;
        if !deps.pause.is_zero() {
            tokio::time::sleep(deps.pause).await;
        }
        Ok(())
    }
}

async fn write_effect(conn: &mut AnyConnection, job: &Job, effect: &Effect) -> anyhow::Result<()> {
    let value = effect.value.clone().unwrap_or_else(|| job.id.to_string());
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
        .bind(&effect.key)
        .bind(value)
        .execute(conn)
        .await
        .context("writing the effect")?;
    Ok(())
}

/// Fails until `healthy` (its deps), then behaves like [`Once`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Flaky(Effect);

impl BackgroundJob for Flaky {
    const KIND: &'static str = "test.flaky";
    type Deps = AtomicBool;

    async fn run(
        self,
        healthy: &AtomicBool,
        conn: &mut AnyConnection,
        job: &Job,
        _: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if !healthy.load(SeqCst) {
            anyhow::bail!("boom after {} failures", job.attempts);
        }
        write_effect(conn, job, &self.0).await
    }
}

/// Writes its effect, then panics: the effect must not survive.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Panics(Effect);

impl BackgroundJob for Panics {
    const KIND: &'static str = "test.panic";
    type Deps = ();

    async fn run(self, _: &(), conn: &mut AnyConnection, job: &Job, _: DateTime<Utc>) -> anyhow::Result<()> {
        write_effect(conn, job, &self.0).await?;
        panic!("kaboom");
    }
}

/// A kind no runner registers.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Nobody {}

impl BackgroundJob for Nobody {
    const KIND: &'static str = "test.nobody";
    type Deps = ();

    async fn run(self, _: &(), _: &mut AnyConnection, _: &Job, _: DateTime<Utc>) -> anyhow::Result<()> {
        unreachable!("never registered")
    }
}

/// A [`Once`] run that writes its effect, says so, then never finishes: the node "crashes" while it waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct Hangs(Effect);

impl BackgroundJob for Hangs {
    const KIND: &'static str = Once::KIND;
    type Deps = tokio::sync::mpsc::Sender<()>;

    async fn run(
        self,
        wrote: &Self::Deps,
        conn: &mut AnyConnection,
        job: &Job,
        _: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        write_effect(conn, job, &self.0).await?;
        let _ = wrote.send(()).await;
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// A fast poll, and access tokens that outlive the hours the tests move the clock by.
fn quick(c: &mut orchestrator::config::Config) {
    c.jobs_poll_interval_ms = 20;
    c.access_token_ttl_secs = 7 * 24 * 3600;
}

fn tenant(id: &str) -> TenantId {
    id.parse().unwrap()
}

async fn enqueue<J: BackgroundJob>(
    app: &TestApp,
    tenant_id: &str,
    job: J,
    run_at: DateTime<Utc>,
    key: Option<&str>,
) -> Option<i64> {
    let mut tx = app.state.db.begin().await.unwrap();
    let at = Schedule { tenant: tenant(tenant_id), run_at, dedupe_key: key.map(String::from) };
    let id = jobs::enqueue(tx.conn(), app.clock.now(), at, &job).await.unwrap();
    tx.commit().await.unwrap();
    app.state.jobs.notify();
    id
}

/// One round by hand: how many jobs were due (and ran).
async fn run_now(app: &TestApp) -> usize {
    app.state.jobs.run_due(&app.state.db, &app.state.clock, &app.state.outbox).await.unwrap()
}

async fn job(app: &TestApp, token: &str, id: i64) -> Value {
    let res = app.get("/api/v1/admin/jobs?limit=500", token).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    res.body["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("job {id} not listed: {res:?}"))
}

/// Polls the admin listing until `done(job)`, for at most 10 s.
async fn wait_for(app: &TestApp, token: &str, id: i64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        let j = job(app, token, id).await;
        if done(&j) {
            return j;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} never got there: {j}");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

async fn setting(db: &Db, key: &str) -> Option<String> {
    sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(db.pool())
        .await
        .unwrap()
        .map(|r| r.try_get("value").unwrap())
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

/// Equal up to storage precision (microseconds).
fn assert_time(v: &Value, expected: DateTime<Utc>) {
    let got = time(v);
    assert!((got - expected).num_microseconds().unwrap().abs() <= 1, "{got} != {expected}");
}

#[tokio::test]
async fn a_job_waits_for_its_time_then_runs_exactly_once() {
    let app = TestApp::spawn_with(quick).await;
    let t = app.tenant("jobs-due").await;
    let runs = Arc::new(AtomicUsize::new(0));
    app.state.jobs.register::<Once>(counted(&runs));
    let run_at = app.clock.now() + Duration::hours(1);
    let id = enqueue(&app, &t.id, once("due-once"), run_at, None).await.unwrap();

    assert_eq!(run_now(&app).await, 0, "not due yet");
    let j = job(&app, &t.admin.access, id).await;
    assert_eq!((j["status"].as_str(), j["attempts"].as_i64()), (Some("queued"), Some(0)), "{j}");
    assert_time(&j["run_at"], run_at);
    assert_eq!(j["payload"], json!({"key": "due-once"}));

    app.advance(Duration::minutes(61));
    let j = wait_for(&app, &t.admin.access, id, |j| j["status"] != "queued").await;
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!((j["attempts"].as_i64(), &j["last_error"]), (Some(0), &Value::Null));
    assert!(j["finished_at"].is_string(), "{j}");
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(setting(&app.state.db, "due-once").await, Some(id.to_string()));
    assert_eq!(run_now(&app).await, 0, "a done job is not run again");
    assert_eq!(runs.load(SeqCst), 1);
}

#[tokio::test]
async fn dedupe_keys_and_prefix_cancel() {
    let app = TestApp::spawn_with(quick).await;
    let t = app.tenant("jobs-dedupe").await;
    let runs = Arc::new(AtomicUsize::new(0));
    app.state.jobs.register::<Once>(counted(&runs));
    let later = app.clock.now() + Duration::hours(1);

    let first = enqueue(&app, &t.id, once("d1"), later, Some("reminder:1:a")).await;
    assert!(first.is_some());
    let again = enqueue(&app, &t.id, once("d1-again"), later, Some("reminder:1:a")).await;
    assert_eq!(again, None, "same dedupe key: no second job");
    let b = enqueue(&app, &t.id, once("d2"), later, Some("reminder:1:b")).await.unwrap();
    let other = enqueue(&app, &t.id, once("d3"), later, Some("reminder:2:a")).await.unwrap();
    let upper = enqueue(&app, &t.id, once("d4"), later, Some("REMINDER:1:c")).await.unwrap();
    let res = app.get("/api/v1/admin/jobs", &t.admin.access).await;
    assert_eq!(res.body["jobs"].as_array().unwrap().len(), 4, "{res:?}");

    let mut tx = app.state.db.begin().await.unwrap();
    // Neither `_` nor case is a wildcard.
    assert_eq!(jobs::cancel_queued(tx.conn(), app.clock.now(), "reminder_1").await.unwrap(), 0);
    assert_eq!(jobs::cancel_queued(tx.conn(), app.clock.now(), "reminder:1:").await.unwrap(), 2);
    assert_eq!(jobs::cancel_queued(tx.conn(), app.clock.now(), "reminder:1:").await.unwrap(), 0);
    tx.commit().await.unwrap();
    let cancelled = job(&app, &t.admin.access, b).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string());
    assert_eq!(job(&app, &t.admin.access, first.unwrap()).await["status"], "cancelled");
    assert_eq!(job(&app, &t.admin.access, other).await["status"], "queued");
    assert_eq!(job(&app, &t.admin.access, upper).await["status"], "queued");

    // Cancelled jobs never run when their time comes; the others do.
    app.advance(Duration::hours(2));
    wait_for(&app, &t.admin.access, upper, |j| j["status"] == "done").await;
    wait_for(&app, &t.admin.access, other, |j| j["status"] == "done").await;
    assert_eq!(job(&app, &t.admin.access, b).await["status"], "cancelled");
    assert_eq!(setting(&app.state.db, "d2").await, None);
    // A done job is not cancelled.
    let mut tx = app.state.db.begin().await.unwrap();
    assert_eq!(jobs::cancel_queued(tx.conn(), app.clock.now(), "reminder:2:").await.unwrap(), 0);
    tx.commit().await.unwrap();

    // An admin retry brings a cancelled job back, due now.
    let res = app.post(&format!("/api/v1/admin/jobs/{b}/retry"), Some(&t.admin.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!(res.body["status"], "queued");
    wait_for(&app, &t.admin.access, b, |j| j["status"] == "done").await;
    assert_eq!(setting(&app.state.db, "d2").await, Some(b.to_string()));
    assert_eq!(runs.load(SeqCst), 3);
}

#[tokio::test]
async fn failures_back_off_then_die_and_an_admin_retry_requeues() {
    let app = TestApp::spawn_with(|c| {
        quick(c);
        c.jobs_max_attempts = 3;
        c.jobs_backoff_base_secs = 10;
        c.jobs_backoff_max_secs = 15;
    })
    .await;
    let t = app.tenant("jobs-retry").await;
    let healthy = Arc::new(AtomicBool::new(false));
    app.state.jobs.register::<Flaky>(healthy.clone());
    let t0 = app.clock.now();
    let id = enqueue(&app, &t.id, Flaky(Effect::key("flaky")), t0, None).await.unwrap();

    // First failure: retry after the base delay.
    let j = wait_for(&app, &t.admin.access, id, |j| j["attempts"] == 1).await;
    assert_eq!(j["status"], "queued");
    assert_eq!(j["max_attempts"], 3);
    assert!(j["last_error"].as_str().unwrap().contains("boom after 0 failures"), "{j}");
    assert_time(&j["run_at"], t0 + Duration::seconds(10));
    app.advance(Duration::seconds(9));
    assert_eq!(run_now(&app).await, 0, "backing off");

    // Second failure: double the delay, capped at 15 s.
    app.advance(Duration::seconds(1));
    let j = wait_for(&app, &t.admin.access, id, |j| j["attempts"] == 2).await;
    assert_eq!(j["status"], "queued");
    assert!(j["last_error"].as_str().unwrap().contains("boom after 1 failures"), "{j}");
    assert_time(&j["run_at"], t0 + Duration::seconds(25));

    // Third failure: the last one.
    app.advance(Duration::seconds(15));
    let j = wait_for(&app, &t.admin.access, id, |j| j["status"] != "queued").await;
    assert_eq!((j["status"].as_str(), j["attempts"].as_i64()), (Some("dead"), Some(3)), "{j}");
    assert!(j["finished_at"].is_string());
    app.advance(Duration::hours(10));
    assert_eq!(run_now(&app).await, 0, "a dead job stays dead");
    let dead = app.get("/api/v1/admin/jobs?status=dead", &t.admin.access).await;
    assert_eq!(dead.body["jobs"].as_array().unwrap().len(), 1, "{dead:?}");

    // Fixed; an admin puts it back: due now, attempts reset, and it succeeds.
    healthy.store(true, SeqCst);
    let res = app.post(&format!("/api/v1/admin/jobs/{id}/retry"), Some(&t.admin.access), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{res:?}");
    assert_eq!((res.body["status"].as_str(), res.body["attempts"].as_i64()), (Some("queued"), Some(0)));
    assert_time(&res.body["run_at"], app.clock.now());
    let j = wait_for(&app, &t.admin.access, id, |j| j["status"] == "done").await;
    assert_eq!(j["attempts"], 0);
    assert!(j["last_error"].as_str().unwrap().contains("boom"), "the last failure stays visible: {j}");
    assert_eq!(setting(&app.state.db, "flaky").await, Some(id.to_string()));

    let audit = app.get("/api/v1/audit?action=job.retried", &t.admin.access).await;
    let entries = audit.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit:?}");
    assert_eq!(entries[0]["target_id"], id.to_string());
    assert_eq!(entries[0]["details"]["from"], "dead");
}

#[tokio::test]
async fn a_panicking_or_unknown_job_does_not_stop_the_others() {
    let app = TestApp::spawn_with(quick).await;
    let t = app.tenant("jobs-panic").await;
    let runs = Arc::new(AtomicUsize::new(0));
    app.state.jobs.register::<Panics>(Arc::new(()));
    app.state.jobs.register::<Once>(counted(&runs));
    let now = app.clock.now();
    let bad = enqueue(&app, &t.id, Panics(Effect::key("panic-effect")), now, None).await.unwrap();
    let unknown = enqueue(&app, &t.id, Nobody {}, now, None).await.unwrap();
    let good = enqueue(&app, &t.id, once("after-panic"), now, None).await.unwrap();

    wait_for(&app, &t.admin.access, good, |j| j["status"] == "done").await;
    let j = wait_for(&app, &t.admin.access, bad, |j| j["attempts"] == 1).await;
    let error = j["last_error"].as_str().unwrap();
    assert!(error.contains("panicked") && error.contains("kaboom"), "{j}");
    assert_eq!(setting(&app.state.db, "panic-effect").await, None, "the panicking run's effects are rolled back");
    let j = wait_for(&app, &t.admin.access, unknown, |j| j["attempts"] == 1).await;
    assert!(j["last_error"].as_str().unwrap().contains("no handler"), "{j}");

    // The runner is still alive: a later job runs too.
    let later = enqueue(&app, &t.id, once("after-panic-2"), app.clock.now(), None).await.unwrap();
    wait_for(&app, &t.admin.access, later, |j| j["status"] == "done").await;
    assert_eq!(runs.load(SeqCst), 2);
    assert!(!app.server.as_ref().unwrap().is_finished());
}

#[tokio::test]
async fn admin_endpoints_are_staff_only_and_tenant_scoped() {
    let app = TestApp::spawn_with(quick).await;
    let t = app.tenant("jobs-admin").await;
    let other = app.tenant("jobs-other").await;
    let student = app.user(&t, "student", "stu", Some("2000-01-01")).await;
    let staff = app.user(&t, "staff", "sta", None).await;
    let runs = Arc::new(AtomicUsize::new(0));
    app.state.jobs.register::<Once>(counted(&runs));
    let now = app.clock.now();
    let mine = enqueue(&app, &t.id, once("admin-mine"), now, None).await.unwrap();
    let theirs = enqueue(&app, &other.id, once("admin-theirs"), now, None).await.unwrap();
    wait_for(&app, &staff.access, mine, |j| j["status"] == "done").await;

    let res = app.request(Method::GET, "/api/v1/admin/jobs", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:?}");
    let res = app.get("/api/v1/admin/jobs", &student.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::FORBIDDEN, "forbidden_role"));
    let res = app.post(&format!("/api/v1/admin/jobs/{mine}/retry"), Some(&student.access), json!({})).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{res:?}");
    let res = app.post(&format!("/api/v1/admin/jobs/{mine}/retry"), None, json!({})).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res:?}");

    // Staff see their tenant's jobs only.
    let res = app.get("/api/v1/admin/jobs", &staff.access).await;
    let ids: Vec<_> = res.body["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [mine], "{res:?}");
    let res = app.post(&format!("/api/v1/admin/jobs/{theirs}/retry"), Some(&staff.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "job_not_found"));
    let res = app.post("/api/v1/admin/jobs/999999/retry", Some(&staff.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::NOT_FOUND, "job_not_found"));
    let res = app.post(&format!("/api/v1/admin/jobs/{mine}/retry"), Some(&staff.access), json!({})).await;
    assert_eq!((res.status, res.code()), (StatusCode::CONFLICT, "job_not_retryable"), "{res:?}");

    // Filters and paging.
    let second = enqueue(&app, &t.id, once("admin-2"), now + Duration::days(1), None).await.unwrap();
    let res = app.get("/api/v1/admin/jobs?status=done&kind=test.once", &staff.access).await;
    assert_eq!(res.body["jobs"].as_array().unwrap().len(), 1, "{res:?}");
    let res = app.get("/api/v1/admin/jobs?kind=test.other", &staff.access).await;
    assert_eq!(res.body["jobs"], json!([]));
    let res = app.get("/api/v1/admin/jobs?limit=1", &staff.access).await;
    assert_eq!(res.body["jobs"][0]["id"], second, "newest first");
    assert_eq!(res.body["next_before"], second);
    let res = app.get(&format!("/api/v1/admin/jobs?limit=1&before={second}"), &staff.access).await;
    assert_eq!(res.body["jobs"][0]["id"], mine);
    let res = app.get("/api/v1/admin/jobs?status=bogus", &staff.access).await;
    assert_eq!((res.status, res.code()), (StatusCode::BAD_REQUEST, "invalid_query"));
}

#[tokio::test]
async fn a_crash_mid_run_and_a_restart_run_the_job_exactly_once() {
    let app = TestApp::spawn_with(quick).await;
    let t = app.tenant("jobs-restart").await;
    let first_runs = Arc::new(AtomicUsize::new(0));
    app.state.jobs.register::<Once>(counted(&first_runs));
    let run_at = app.clock.now() + Duration::hours(1);
    let id = enqueue(&app, &t.id, Once(Effect { key: "restart".into(), value: Some("effect".into()) }), run_at, None)
        .await
        .unwrap();

    // A node whose clock is past the due time claims the job, writes its effect and dies mid-run.
    let crashing = Db::connect(&app.database_url, 2).await.unwrap();
    let (wrote_tx, mut wrote) = tokio::sync::mpsc::channel(1);
    let doomed = Jobs::new(
        scheduling::RetryPolicy { base: Duration::seconds(5), max_delay: Duration::seconds(5), max_attempts: 3 },
        StdDuration::from_millis(20),
    );
    doomed.register::<Hangs>(Arc::new(wrote_tx));
    let late: SharedClock = Arc::new(ManualClock::new(run_at + Duration::minutes(1)));
    let node = {
        let (db, doomed) = (crashing.clone(), doomed.clone());
        tokio::spawn(async move { doomed.run_due(&db, &late, &Outbox::default()).await })
    };
    tokio::time::timeout(StdDuration::from_secs(10), wrote.recv()).await.expect("the doomed run started");
    node.abort();
    assert!(node.await.unwrap_err().is_cancelled());
    crashing.close().await;
    assert_eq!(setting(&app.state.db, "restart").await, None, "the crashed run left nothing");

    // The first server stops before the job is due; a second one on the same database runs it.
    let mut app = app;
    assert_eq!(run_now(&app).await, 0);
    app.signal_stop();
    app.server.take().unwrap().await.unwrap().unwrap();
    assert_eq!(first_runs.load(SeqCst), 0);

    let second = TestApp::spawn_on(&app.database_url, quick).await;
    let runs = Arc::new(AtomicUsize::new(0));
    second.state.jobs.register::<Once>(counted(&runs));
    assert_eq!(run_now(&second).await, 0, "still not due on the new server's clock");
    second.advance(Duration::hours(2));
    let j = wait_for(&second, &t.admin.access, id, |j| j["status"] != "queued").await;
    assert_eq!((j["status"].as_str(), j["attempts"].as_i64()), (Some("done"), Some(0)), "{j}");
    assert_eq!(runs.load(SeqCst), 1);
    assert_eq!(setting(&second.state.db, "restart").await.as_deref(), Some("effect"));
}

#[tokio::test]
async fn two_runners_share_the_queue_and_run_each_job_once() {
    let a = TestApp::spawn_with(quick).await;
    let b = TestApp::spawn_on(&a.database_url, quick).await;
    let t = a.tenant("jobs-shared").await;
    let (runs_a, runs_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let pause = StdDuration::from_millis(1);
    a.state.jobs.register::<Once>(Arc::new(Counted { runs: runs_a.clone(), pause }));
    b.state.jobs.register::<Once>(Arc::new(Counted { runs: runs_b.clone(), pause }));

    const N: usize = 200;
    let run_at = a.clock.now() + Duration::minutes(1);
    let mut tx = a.state.db.begin().await.unwrap();
    for i in 0..N {
        let at = Schedule { tenant: tenant(&t.id), run_at, dedupe_key: Some(format!("shared:{i}")) };
        jobs::enqueue(tx.conn(), a.clock.now(), at, &once(format!("shared-{i}"))).await.unwrap().unwrap();
    }
    tx.commit().await.unwrap();

    // Both runners see the whole batch fall due at once.
    a.advance(Duration::minutes(2));
    b.advance(Duration::minutes(2));
    a.state.jobs.notify();
    b.state.jobs.notify();
    let count = |sql: &'static str| {
        let db = a.state.db.clone();
        async move { sqlx::query(sql).fetch_one(db.pool()).await.unwrap().try_get::<i64, _>(0).unwrap() }
    };
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(20);
    while count("SELECT COUNT(*) FROM jobs WHERE status = 'done'").await < N as i64 {
        assert!(tokio::time::Instant::now() < deadline, "not all jobs ran in time");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let (ran_a, ran_b) = (runs_a.load(SeqCst), runs_b.load(SeqCst));
    assert_eq!(ran_a + ran_b, N, "each job ran once: {ran_a} on a, {ran_b} on b");
    assert_eq!(count("SELECT COUNT(*) FROM jobs WHERE attempts > 0 OR last_error IS NOT NULL").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM settings WHERE key LIKE 'shared-%'").await, N as i64);
    if a.state.db.backend() == Backend::Postgres {
        // SKIP LOCKED lets both claim side by side (SQLite's single writer may let one take them all).
        assert!(ran_a > 0 && ran_b > 0, "both runners took part: {ran_a} / {ran_b}");
    }
    drop(b);
}
