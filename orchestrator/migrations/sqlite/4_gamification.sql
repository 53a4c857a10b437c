-- Gamification (SQLite). Keep in step with ../postgres/4_gamification.sql.
-- Fed only by domain events (see src/gamification): no foreign keys to classes or meetings, so an
-- event about a row this node can't see never blocks the outbox.

-- Append-only XP movements. `source` names what earned them (`meeting:<id>`, `lesson:<id>`): the XP a
-- source currently gives is SUM(amount) over its rows, and a correction appends the difference.
CREATE TABLE xp_ledger (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    student_id TEXT NOT NULL,
    class_id   TEXT NOT NULL,
    source     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    event_id   BIGINT NOT NULL,              -- the outbox event that caused it
    created_at TEXT NOT NULL
);
CREATE INDEX xp_ledger_student ON xp_ledger (tenant_id, student_id, source);
CREATE INDEX xp_ledger_class ON xp_ledger (tenant_id, class_id, student_id);

-- The latest attendance mark of each (student, meeting), mirrored from AttendanceMarked, so streaks
-- and perfect attendance are computed from events alone.
CREATE TABLE gamification_attendance (
    tenant_id         TEXT NOT NULL,
    class_id          TEXT NOT NULL,
    student_id        TEXT NOT NULL,
    meeting_id        TEXT NOT NULL,
    meeting_starts_at TEXT NOT NULL,
    status            TEXT NOT NULL,         -- present | late | absent | excused
    PRIMARY KEY (student_id, meeting_id)
);
CREATE INDEX gamification_attendance_class ON gamification_attendance (tenant_id, class_id, student_id, meeting_starts_at);

-- Badges once earned stay. `class_id` is '' for global badges (so the key is unique on both backends).
CREATE TABLE badges (
    tenant_id  TEXT NOT NULL,
    student_id TEXT NOT NULL,
    badge      TEXT NOT NULL,
    class_id   TEXT NOT NULL,
    awarded_at TEXT NOT NULL,
    PRIMARY KEY (student_id, badge, class_id)
);

-- Students who chose to appear on a class's leaderboard.
CREATE TABLE leaderboard_optins (
    tenant_id   TEXT NOT NULL,
    class_id    TEXT NOT NULL REFERENCES classes (id),
    student_id  TEXT NOT NULL REFERENCES users (id),
    opted_in_at TEXT NOT NULL,
    PRIMARY KEY (class_id, student_id)
);
