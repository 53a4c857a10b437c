//! The durable job queue: work that must happen later (reminders, hold expiry, auto-end, payouts),
//! stored in the `jobs` table and run by a background runner on every node.
//!
//! Layout:
//! - [`BackgroundJob`]: one struct per kind of job, declared where its domain lives; the struct is the
//!   payload (stored as JSON under the kind's name) and its `run` is the work.
//! - [`enqueue`] / [`cancel_queued`] run inside the caller's transaction, so a job exists exactly when
//!   the change that schedules it commits; a `dedupe_key` makes enqueueing idempotent.
//! - [`Jobs::register`]: each kind with what it needs, on the [`Jobs`] handle (also after the runner
//!   started); the runner decodes a claimed job into its struct and runs it.
//! - [`Jobs::run`], the runner loop, and [`Jobs::run_due`], one round of it.
//! - the admin routes: `GET /api/v1/admin/jobs` and `POST /api/v1/admin/jobs/{id}/retry` (staff).
//!
//! Guarantees:
//! - Each job runs in its own write transaction: the runner claims one due queued job (on PostgreSQL
//!   with `FOR UPDATE SKIP LOCKED`, so several nodes share the queue without waiting on each other; on
//!   SQLite the writer slot makes one claimer), runs its handler on that transaction's connection and
//!   marks the job `done` in it. Effects and completion commit together: a crash mid-run rolls both
//!   back and the job runs again after restart, so no job takes effect twice.
//! - A failure (handler error or panic, no handler for the kind, undecodable row) undoes the handler's
//!   effects (a savepoint) and, in the same transaction, still holding the job, counts the attempt,
//!   keeps the error and reschedules the job by the [`RetryPolicy`], or marks it `dead` once it has
//!   failed `max_attempts` times. Holding the claim while recording means no other node can pick the
//!   job up again before its backoff is stored.
//! - The retry limit in force is the runner's configured policy (`jobs_max_attempts`); [`enqueue`]
//!   cannot see the configuration, so it stores [`DEFAULT_MAX_ATTEMPTS`] and each recorded failure
//!   updates the row's `max_attempts` to the limit applied.
//! - Order is by `run_at`, then id, but not strict: a failing job does not hold back later ones.
//!
//! Statuses: `queued` → `done` | `dead` | `cancelled`; an admin retry puts a `dead` or `cancelled`
//! job back to `queued` with its attempts reset.

use std::{
    collections::HashMap,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::anyhow;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use futures::{FutureExt, future::BoxFuture};
use scheduling::{Retry, RetryPolicy};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::{AnyConnection, Connection, Row, any::AnyRow};
use tokio::sync::{Notify, watch};
use utoipa::{IntoParams, ToSchema};

use crate::{
    audit,
    auth::{Authed, Staff},
    clock::SharedClock,
    config::Config,
    db::{self, Backend, Db},
    error::{ApiError, ApiResult, ErrorBody, Json, Path, Query},
    ids::TenantId,
    outbox::Outbox,
    request::ClientInfo,
};

/// The `max_attempts` stored by [`enqueue`]; the runner's policy overrides it at the first failure.
pub const DEFAULT_MAX_ATTEMPTS: i64 = 8;
/// How many jobs one [`Jobs::run_due`] round runs at most, so a long backlog yields to shutdown checks.
const BATCH: usize = 64;
/// Longest `last_error` kept, in characters.
const MAX_ERROR_CHARS: usize = 2000;

/// A kind of background job. The struct is the job's payload: the runner stores it as JSON with the
/// kind's name, and decodes it again to run it. Each domain declares its own jobs (`bookings::schedule`,
/// `money::stripe`, `mailer::smtp`) and `Server::build` registers them with what they need.
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stored kind. Never rename one that may still be queued somewhere.
    const KIND: &'static str;
    /// What the job uses beyond its transaction (a mailer, a payment provider, ...), given at registration.
    type Deps: Send + Sync + 'static;
    /// Runs inside the transaction that also marks the job done: effects and completion commit together.
    /// Use only `conn` (on SQLite another write transaction would deadlock). May append outbox events.
    fn run(
        self,
        deps: &Self::Deps,
        conn: &mut AnyConnection,
        job: &Job,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// When and under which key a job runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tenant: TenantId,
    /// Not before this time.
    pub run_at: DateTime<Utc>,
    /// At most one job per key, ever (whatever its status): a second enqueue is a no-op.
    pub dedupe_key: Option<String>,
}

/// Inside the caller's transaction. Returns the new id, or None when a job with the same dedupe_key
/// already exists (ON CONFLICT DO NOTHING).
pub async fn enqueue<J: BackgroundJob>(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    at: Schedule,
    job: &J,
) -> Result<Option<i64>, sqlx::Error> {
    let payload = serde_json::to_string(job).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let row = sqlx::query(
        "INSERT INTO jobs (tenant_id, kind, payload, run_at, status, attempts, max_attempts, dedupe_key, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7)
         ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
    )
    .bind(at.tenant.to_string())
    .bind(J::KIND)
    .bind(payload)
    .bind(db::ts(at.run_at))
    .bind(DEFAULT_MAX_ATTEMPTS)
    .bind(at.dedupe_key.as_deref())
    .bind(db::ts(now))
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get::<i64, _>("id")).transpose()
}

/// Cancels still-queued jobs whose dedupe_key starts with `prefix` (status → cancelled). Returns how many.
///
/// A job being run right now is skipped, not waited for: on PostgreSQL its row is locked by the runner, whose
/// handler may in turn be waiting for a row the caller holds (a booking), so waiting could deadlock. Handlers
/// re-check their state when they run, so a job that escapes cancellation this way does nothing. On SQLite
/// the writer slot orders the two.
pub async fn cancel_queued(conn: &mut AnyConnection, now: DateTime<Utc>, key_prefix: &str) -> Result<u64, sqlx::Error> {
    // A prefix compare by `substr` rather than `LIKE`: SQLite's LIKE ignores ASCII case, and `%`/`_`
    // in keys would need escaping. Lengths are in characters on both backends; i32 because
    // PostgreSQL's `substr` takes `integer`.
    let chars = i32::try_from(key_prefix.chars().count()).unwrap_or(i32::MAX);
    let skip_locked = if conn.backend_name() == "PostgreSQL" { " FOR UPDATE SKIP LOCKED" } else { "" };
    let sql = format!(
        "UPDATE jobs SET status = 'cancelled', finished_at = $1, updated_at = $1
         WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND dedupe_key IS NOT NULL
                        AND substr(dedupe_key, 1, $2) = $3{skip_locked})"
    );
    let done =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(db::ts(now)).bind(chars).bind(key_prefix).execute(conn).await?;
    Ok(done.rows_affected())
}

/// A claimed job, as its [`BackgroundJob::run`] sees it (the payload is the job itself).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub tenant_id: TenantId,
    pub run_at: DateTime<Utc>,
    /// Failures before this run.
    pub attempts: i64,
}

/// One registered kind, its type erased: decodes the stored payload into the job and runs it.
trait Handler: Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        job: &'a Job,
        payload: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

struct Registered<J: BackgroundJob> {
    deps: Arc<J::Deps>,
}

impl<J: BackgroundJob> Handler for Registered<J> {
    fn run<'a>(
        &'a self,
        conn: &'a mut AnyConnection,
        job: &'a Job,
        payload: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let typed: J = serde_json::from_str(payload)
                .map_err(|e| anyhow!("the payload of a {:?} job doesn't decode: {e}", J::KIND))?;
            typed.run(&self.deps, conn, job, now).await
        })
    }
}

/// Handle to the queue's runner: register handlers, wake it, or run a round by hand.
#[derive(Clone)]
pub struct Jobs {
    handlers: Arc<Mutex<HashMap<&'static str, Arc<dyn Handler>>>>,
    wake: Arc<Notify>,
    retry: RetryPolicy,
    poll: Duration,
}

/// How a claimed job's run ended.
enum Outcome {
    Done,
    /// The handler's effects are undone; the claim's transaction is still usable.
    Failed(anyhow::Error),
    /// The claim's transaction can't be trusted any more.
    Broken(anyhow::Error),
}

/// A claimed row: the job, or why it can't be decoded (then it fails like a handler error).
struct Claimed {
    id: i64,
    kind: String,
    attempts: i64,
    job: Result<(Job, String), String>,
}

impl Jobs {
    pub fn new(retry: RetryPolicy, poll: Duration) -> Self {
        Self { handlers: Arc::default(), wake: Arc::new(Notify::new()), retry, poll }
    }

    /// The handle the configuration describes (`jobs_*` keys).
    pub fn from_config(config: &Config) -> Self {
        let secs = |s: u64| TimeDelta::try_seconds(i64::try_from(s).unwrap_or(i64::MAX)).unwrap_or(TimeDelta::MAX);
        Self::new(
            RetryPolicy {
                base: secs(config.jobs_backoff_base_secs),
                max_delay: secs(config.jobs_backoff_max_secs),
                max_attempts: config.jobs_max_attempts,
            },
            Duration::from_millis(config.jobs_poll_interval_ms),
        )
    }

    /// Runs jobs of kind `J` with `deps` from now on (replacing an earlier registration of that kind);
    /// may be called after the runner started.
    pub fn register<J: BackgroundJob>(&self, deps: Arc<J::Deps>) {
        let handler: Arc<dyn Handler> = Arc::new(Registered::<J> { deps });
        self.handlers.lock().unwrap_or_else(|e| e.into_inner()).insert(J::KIND, handler);
    }

    /// Wakes the runner (e.g. after enqueueing a job due now). Jobs due later are found by polling.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Runs due jobs until `shutdown` turns true. A job already running is finished first.
    pub async fn run(self, db: Db, clock: SharedClock, outbox: Outbox, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.run_batch(&db, &clock, &outbox, Some(&shutdown)).await {
                Ok(n) if n == BATCH && !*shutdown.borrow() => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = format!("{e:#}"), "job runner round failed; retrying"),
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.poll) => {}
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Runs every job due at clock.now() (up to a batch bound). Returns how many ran (succeeded or failed).
    pub async fn run_due(&self, db: &Db, clock: &SharedClock, outbox: &Outbox) -> anyhow::Result<usize> {
        self.run_batch(db, clock, outbox, None).await
    }

    async fn run_batch(
        &self,
        db: &Db,
        clock: &SharedClock,
        outbox: &Outbox,
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> anyhow::Result<usize> {
        let mut ran = 0;
        while ran < BATCH && !shutdown.is_some_and(|s| *s.borrow()) {
            if !self.run_one(db, clock.now(), outbox).await? {
                break;
            }
            ran += 1;
        }
        Ok(ran)
    }

    /// Claims and runs one due job; false when none is due (or all due ones are claimed elsewhere).
    async fn run_one(&self, db: &Db, now: DateTime<Utc>, outbox: &Outbox) -> anyhow::Result<bool> {
        // A plain read first, so an idle poll doesn't take SQLite's writer slot.
        if sqlx::query("SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $1 LIMIT 1")
            .bind(db::ts(now))
            .fetch_optional(db.pool())
            .await?
            .is_none()
        {
            return Ok(false);
        }
        let mut tx = db.begin().await?;
        let lock = match db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "SELECT id, tenant_id, kind, payload, run_at, attempts FROM jobs
             WHERE status = 'queued' AND run_at <= $1 ORDER BY run_at, id LIMIT 1{lock}"
        );
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(db::ts(now)).fetch_optional(tx.conn()).await? else {
            return Ok(false);
        };
        let claimed = decode(&row)?;
        let handler = self.handlers.lock().unwrap_or_else(|e| e.into_inner()).get(claimed.kind.as_str()).cloned();

        // The handler runs in a savepoint, so a failure undoes its effects but keeps the claim.
        let outcome = match (&claimed.job, handler) {
            (Err(e), _) => Outcome::Failed(anyhow!("undecodable job: {e}")),
            (Ok(_), None) => Outcome::Failed(anyhow!("no handler registered for job kind {:?}", claimed.kind)),
            (Ok((job, payload)), Some(handler)) => {
                let mut sp = tx.conn().begin().await?;
                let res = match AssertUnwindSafe(handler.run(&mut sp, job, payload, now)).catch_unwind().await {
                    Ok(res) => res,
                    Err(panic) => Err(anyhow!("handler panicked: {}", panic_message(&*panic))),
                };
                match res {
                    Ok(()) => match sp.commit().await {
                        Ok(()) => Outcome::Done,
                        Err(e) => Outcome::Broken(anyhow::Error::new(e).context("releasing the job's savepoint")),
                    },
                    Err(e) => match sp.rollback().await {
                        Ok(()) => Outcome::Failed(e),
                        Err(rb) => {
                            tracing::warn!(job_id = claimed.id, error = %rb, "rolling back a failed job's savepoint failed");
                            Outcome::Broken(e)
                        }
                    },
                }
            }
        };

        match outcome {
            Outcome::Done => {
                let finished = async {
                    sqlx::query("UPDATE jobs SET status = 'done', finished_at = $1, updated_at = $1 WHERE id = $2")
                        .bind(db::ts(now))
                        .bind(claimed.id)
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await
                };
                match finished.await {
                    Ok(()) => outbox.notify(),
                    // The effects are gone with the transaction; count it as a failed attempt, or a
                    // job whose commit always fails would be retried forever without backoff.
                    Err(e) => {
                        let e = anyhow::Error::new(e).context("committing the job");
                        self.record_failure_alone(db, now, &claimed, &e).await?;
                    }
                }
            }
            Outcome::Failed(e) => {
                let recorded = async {
                    self.record_failure(tx.conn(), now, &claimed, &e).await?;
                    tx.commit().await
                };
                if let Err(tx_err) = recorded.await {
                    tracing::warn!(job_id = claimed.id, error = %tx_err, "recording a job failure in its transaction failed");
                    self.record_failure_alone(db, now, &claimed, &e).await?;
                }
            }
            // The transaction may hold part of the handler's effects: discard it (dropping rolls
            // back) and record the failure in a fresh one.
            Outcome::Broken(e) => {
                drop(tx);
                self.record_failure_alone(db, now, &claimed, &e).await?;
            }
        }
        Ok(true)
    }

    /// Counts a failed attempt: reschedules by the retry policy, or marks the job dead. The
    /// `attempts` guard makes a second recording of the same failure a no-op.
    async fn record_failure(
        &self,
        conn: &mut AnyConnection,
        now: DateTime<Utc>,
        claimed: &Claimed,
        error: &anyhow::Error,
    ) -> Result<(), sqlx::Error> {
        let attempts = claimed.attempts.saturating_add(1);
        let message = truncate(&format!("{error:#}"), MAX_ERROR_CHARS);
        let max_attempts = i64::from(self.retry.max_attempts.max(1));
        match self.retry.after_failure(u32::try_from(attempts).unwrap_or(u32::MAX)) {
            Retry::At(delay) => {
                let run_at = later(now, delay);
                tracing::warn!(job_id = claimed.id, kind = claimed.kind, attempts, %run_at, error = message, "job failed; will retry");
                sqlx::query(
                    "UPDATE jobs SET attempts = $1, max_attempts = $2, last_error = $3, run_at = $4, updated_at = $5
                     WHERE id = $6 AND status = 'queued' AND attempts = $7",
                )
                .bind(attempts)
                .bind(max_attempts)
                .bind(message)
                .bind(db::ts(run_at))
                .bind(db::ts(now))
                .bind(claimed.id)
                .bind(claimed.attempts)
                .execute(conn)
                .await?;
            }
            Retry::GiveUp => {
                tracing::error!(
                    job_id = claimed.id,
                    kind = claimed.kind,
                    attempts,
                    error = message,
                    "job failed for the last time; dead"
                );
                sqlx::query(
                    "UPDATE jobs SET status = 'dead', attempts = $1, max_attempts = $2, last_error = $3, finished_at = $4, updated_at = $4
                     WHERE id = $5 AND status = 'queued' AND attempts = $6",
                )
                .bind(attempts)
                .bind(max_attempts)
                .bind(message)
                .bind(db::ts(now))
                .bind(claimed.id)
                .bind(claimed.attempts)
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }

    async fn record_failure_alone(
        &self,
        db: &Db,
        now: DateTime<Utc>,
        claimed: &Claimed,
        error: &anyhow::Error,
    ) -> Result<(), sqlx::Error> {
        let mut tx = db.begin().await?;
        self.record_failure(tx.conn(), now, claimed, error).await?;
        tx.commit().await
    }
}

fn decode(row: &AnyRow) -> Result<Claimed, sqlx::Error> {
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let attempts: i64 = row.try_get("attempts")?;
    let job = decode_job(row, id, attempts);
    Ok(Claimed { id, kind, attempts, job })
}

/// The parts a bad write (or a newer build's row) could break; such a job fails instead of jamming the queue.
fn decode_job(row: &AnyRow, id: i64, attempts: i64) -> Result<(Job, String), String> {
    let text = |col: &str| row.try_get::<String, _>(col).map_err(|e| format!("{col}: {e}"));
    let job = Job {
        id,
        tenant_id: TenantId::from_column(&text("tenant_id")?).map_err(|e| e.to_string())?,
        run_at: db::parse_ts(&text("run_at")?).map_err(|e| e.to_string())?,
        attempts,
    };
    Ok((job, text("payload")?))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-text panic payload)".into()
    }
}

/// `now + delay`, no later than the last second of 9999, so it stays fixed-width (see `db`).
fn later(now: DateTime<Utc>, delay: TimeDelta) -> DateTime<Utc> {
    let latest = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(now);
    now.checked_add_signed(delay).filter(|t| *t <= latest).unwrap_or(latest.max(now))
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// --- admin routes ---

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Done,
    Dead,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
            JobStatus::Cancelled => "cancelled",
        }
    }

    fn from_column(s: &str) -> Result<Self, sqlx::Error> {
        Ok(match s {
            "queued" => JobStatus::Queued,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            "cancelled" => JobStatus::Cancelled,
            other => return Err(sqlx::Error::Decode(format!("bad job status {other:?}").into())),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub status: JobStatus,
    pub run_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: i64,
    pub max_attempts: i64,
    /// The last failure, kept after a retry or a later success.
    pub last_error: Option<String>,
    pub payload: serde_json::Value,
    pub dedupe_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it finished as done, dead or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Jobs with an id below this (paging back).
    pub before: Option<i64>,
    /// At most this many (default 50, max 500).
    pub limit: Option<i64>,
}

const JOB_COLUMNS: &str =
    "id, kind, status, run_at, attempts, max_attempts, last_error, payload, dedupe_key, created_at, finished_at";

fn record(r: &AnyRow) -> Result<JobRecord, sqlx::Error> {
    let payload: String = r.try_get("payload")?;
    Ok(JobRecord {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        status: JobStatus::from_column(&r.try_get::<String, _>("status")?)?,
        run_at: db::parse_ts(&r.try_get::<String, _>("run_at")?)?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        last_error: r.try_get("last_error")?,
        // Shown as text when it isn't JSON, rather than failing the whole listing.
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::String(payload)),
        dedupe_key: r.try_get("dedupe_key")?,
        created_at: db::parse_ts(&r.try_get::<String, _>("created_at")?)?,
        finished_at: r.try_get::<Option<String>, _>("finished_at")?.as_deref().map(db::parse_ts).transpose()?,
    })
}

/// The tenant's jobs, newest first (staff only).
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "jobs", params(JobQuery), security(("bearer" = [])),
    responses((status = 200, body = JobPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(State(db): State<Db>, auth: Authed<Staff>, Query(q): Query<JobQuery>) -> ApiResult<Json<JobPage>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs
         WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR kind = $3) AND id < $4
         ORDER BY id DESC LIMIT $5"
    )))
    .bind(auth.tenant_id.to_string())
    .bind(q.status.map(JobStatus::as_str))
    .bind(q.kind)
    .bind(q.before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let jobs = rows.iter().map(record).collect::<Result<Vec<_>, _>>()?;
    let next_before = (jobs.len() as i64 == limit).then(|| jobs.last().map(|j| j.id)).flatten();
    Ok(Json(JobPage { jobs, next_before }))
}

/// Puts a `dead` or `cancelled` job back in the queue, due now, with its attempts reset (staff only;
/// audited). Any other status is `409 job_not_retryable`.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    security(("bearer" = [])),
    responses((status = 200, body = JobRecord), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn retry(
    State(db): State<Db>,
    State(clock): State<SharedClock>,
    State(jobs): State<Jobs>,
    auth: Authed<Staff>,
    client: ClientInfo,
    Path(id): Path<i64>,
) -> ApiResult<Json<JobRecord>> {
    let now = clock.now();
    let mut tx = db.begin().await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2{}",
        db.for_update()
    )))
    .bind(id)
    .bind(auth.tenant_id.to_string())
    .fetch_optional(tx.conn())
    .await?
    .ok_or_else(|| ApiError::not_found("job_not_found", "no such job"))?;
    let job = record(&row)?;
    if !matches!(job.status, JobStatus::Dead | JobStatus::Cancelled) {
        return Err(ApiError::conflict(
            "job_not_retryable",
            format!("only dead or cancelled jobs can be retried; this one is {}", job.status.as_str()),
        ));
    }
    sqlx::query(
        "UPDATE jobs SET status = 'queued', run_at = $1, attempts = 0, finished_at = NULL, updated_at = $1 WHERE id = $2",
    )
    .bind(db::ts(now))
    .bind(id)
    .execute(tx.conn())
    .await?;
    audit::record(
        tx.conn(),
        now,
        audit::Entry::new(auth.tenant_id, Some(auth.user_id), "job.retried", &client)
            .target("job", id)
            .details(serde_json::json!({"kind": job.kind, "from": job.status.as_str(), "attempts": job.attempts})),
    )
    .await?;
    tx.commit().await?;
    jobs.notify();
    Ok(Json(JobRecord { status: JobStatus::Queued, run_at: now, attempts: 0, finished_at: None, ..job }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_stays_fixed_width() {
        let now = Utc::now();
        assert_eq!(later(now, TimeDelta::seconds(5)), now + TimeDelta::seconds(5));
        let far = later(now, TimeDelta::MAX);
        assert_eq!(db::ts(far), "9999-12-31T23:59:59.000000Z");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 2), "hi");
    }

    #[test]
    fn panic_messages_are_text() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("bang")), "bang");
        assert_eq!(panic_message(&42u8), "(non-text panic payload)");
    }
}
