-- Class orchestration (PostgreSQL). Keep in step with ../sqlite/2_classes.sql.

CREATE TABLE courses (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    title      TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE lessons (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    course_id   TEXT NOT NULL REFERENCES courses (id),
    position    BIGINT NOT NULL,
    title       TEXT NOT NULL,
    UNIQUE (course_id, position)
);

CREATE TABLE classes (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    kind           TEXT NOT NULL,            -- group | private
    title          TEXT NOT NULL,
    course_id      TEXT NOT NULL REFERENCES courses (id),
    instructor_id  TEXT NOT NULL REFERENCES users (id),
    total_meetings BIGINT NOT NULL,
    capacity       BIGINT,                   -- group classes only
    timezone       TEXT NOT NULL,            -- IANA zone for display
    status         TEXT NOT NULL,            -- draft | active | completed | cancelled
    created_at     TEXT NOT NULL,
    activated_at   TEXT,
    ended_at       TEXT
);
CREATE INDEX classes_tenant ON classes (tenant_id, status);
CREATE INDEX classes_instructor ON classes (instructor_id);

CREATE TABLE meetings (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    class_id   TEXT NOT NULL REFERENCES classes (id),
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX meetings_class ON meetings (class_id, starts_at);

CREATE TABLE enrollments (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    class_id   TEXT NOT NULL REFERENCES classes (id),
    student_id TEXT NOT NULL REFERENCES users (id),
    reference  TEXT,                         -- payment or grant reference
    created_at TEXT NOT NULL,
    UNIQUE (class_id, student_id)
);
CREATE INDEX enrollments_student ON enrollments (student_id);

-- Append-only: the balance of an enrollment is SUM(delta).
CREATE TABLE credit_ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    enrollment_id TEXT NOT NULL REFERENCES enrollments (id),
    kind          TEXT NOT NULL,             -- grant | attendance_deduction | attendance_correction | manual_adjustment | refund
    delta         BIGINT NOT NULL,
    meeting_id    TEXT,
    reason        TEXT,
    reference     TEXT,
    actor_id      TEXT,
    balance_after BIGINT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX credit_ledger_enrollment ON credit_ledger (enrollment_id, id);

CREATE TABLE attendance (
    tenant_id     TEXT NOT NULL,
    meeting_id    TEXT NOT NULL REFERENCES meetings (id),
    student_id    TEXT NOT NULL REFERENCES users (id),
    enrollment_id TEXT NOT NULL REFERENCES enrollments (id),
    status        TEXT NOT NULL,             -- present | late | absent | excused
    marked_by     TEXT NOT NULL,
    marked_at     TEXT NOT NULL,
    PRIMARY KEY (meeting_id, student_id)
);
CREATE INDEX attendance_enrollment ON attendance (enrollment_id);

CREATE TABLE lesson_unlocks (
    tenant_id   TEXT NOT NULL,
    class_id    TEXT NOT NULL REFERENCES classes (id),
    lesson_id   TEXT NOT NULL REFERENCES lessons (id),
    unlocked_by TEXT NOT NULL,
    unlocked_at TEXT NOT NULL,
    PRIMARY KEY (class_id, lesson_id)
);

CREATE TABLE lesson_completions (
    tenant_id    TEXT NOT NULL,
    class_id     TEXT NOT NULL REFERENCES classes (id),
    lesson_id    TEXT NOT NULL REFERENCES lessons (id),
    student_id   TEXT NOT NULL REFERENCES users (id),
    completed_at TEXT NOT NULL,
    PRIMARY KEY (class_id, lesson_id, student_id)
);

-- Outbox consumers record what they handled, in the same transaction as the effect (exactly-once effect).
CREATE TABLE processed_events (
    consumer TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
