-- Mail that reaches people, and private calendar feeds (PostgreSQL). Keep in step with ../sqlite/10_mail.sql.

-- A message's HTML alternative and calendar attachment (RFC 5545 text, its METHOD inside), and its delivery when
-- an SMTP transport is configured: the job that sends it (attempts and the last error are the job's) and when the
-- server accepted it. Without a transport `job_id` stays NULL: the row is the whole delivery.
ALTER TABLE mailbox ADD COLUMN html TEXT;
ALTER TABLE mailbox ADD COLUMN ics TEXT;
ALTER TABLE mailbox ADD COLUMN job_id BIGINT;
ALTER TABLE mailbox ADD COLUMN sent_at TEXT;

-- The user's own IANA time zone, for times in mail and feeds. NULL: the zone of a tutor's availability, else UTC.
ALTER TABLE users ADD COLUMN timezone TEXT;

-- One private calendar feed per user: the SHA-256 (hex) of its token; the token itself is shown once, at creation.
CREATE TABLE calendar_tokens (
    user_id    TEXT PRIMARY KEY REFERENCES users (id),
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
