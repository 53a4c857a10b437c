-- Parental consent and the embedded mailbox (PostgreSQL). Keep in step with ../sqlite/3_consent.sql.

-- A request to a parent to consent, per scope, on behalf of a minor. `scopes` is a comma-separated
-- list of scope names (`chat,live_video`); the answers live in `consents`.
CREATE TABLE consent_requests (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    child_id     TEXT NOT NULL REFERENCES users (id),
    parent_id    TEXT NOT NULL REFERENCES users (id),
    scopes       TEXT NOT NULL,
    status       TEXT NOT NULL,             -- pending | answered
    requested_by TEXT NOT NULL REFERENCES users (id),
    created_at   TEXT NOT NULL,
    answered_at  TEXT
);
CREATE INDEX consent_requests_parent ON consent_requests (tenant_id, parent_id, id);
CREATE INDEX consent_requests_child ON consent_requests (tenant_id, child_id, id);

-- The current answer of one parent for one child and scope; history is in the audit log.
CREATE TABLE consents (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    child_id   TEXT NOT NULL REFERENCES users (id),
    parent_id  TEXT NOT NULL REFERENCES users (id),
    scope      TEXT NOT NULL,               -- live_video | chat | recording
    status     TEXT NOT NULL,               -- granted | denied | revoked
    method     TEXT,                        -- verification method of the decision (see consent::VerificationMethod)
    request_id TEXT REFERENCES consent_requests (id),
    decided_by TEXT NOT NULL REFERENCES users (id),
    decided_at TEXT NOT NULL,
    PRIMARY KEY (child_id, parent_id, scope)
);

-- Mail queued by the embedded mailer, in the transaction of the change that caused it.
CREATE TABLE mailbox (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    to_user_id TEXT NOT NULL REFERENCES users (id),
    to_email   TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX mailbox_tenant ON mailbox (tenant_id, id);
CREATE INDEX mailbox_recipient ON mailbox (to_user_id, id);
