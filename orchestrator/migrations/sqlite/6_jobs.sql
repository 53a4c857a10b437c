-- Durable job queue (SQLite). Keep in step with ../postgres/6_jobs.sql.
-- A job is queued until it runs: then done, or dead after its last failed attempt, or cancelled before it ran.
-- `dedupe_key` makes enqueueing idempotent (NULL keys never collide); `payload` is JSON text.

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    run_at       TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    last_error   TEXT,
    dedupe_key   TEXT UNIQUE,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    finished_at  TEXT
);
-- Claiming: the oldest due queued job.
CREATE INDEX jobs_due ON jobs (status, run_at, id);
-- The admin listing: a tenant's jobs, newest first.
CREATE INDEX jobs_tenant ON jobs (tenant_id, id);
