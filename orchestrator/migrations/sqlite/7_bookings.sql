-- 1:1 bookings (SQLite). Keep in step with ../postgres/7_bookings.sql.

-- A tutor's bookable availability and booking rules. The row is also the lock every booking of the
-- tutor takes first, so two bookings of one tutor never check for conflicts at the same time.
CREATE TABLE tutor_profiles (
    tutor_id          TEXT PRIMARY KEY REFERENCES users (id),
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    timezone          TEXT NOT NULL,            -- IANA zone the weekly rules are in
    currency          TEXT NOT NULL,            -- ISO 4217
    lengths           TEXT NOT NULL,            -- JSON [{"minutes": 60, "price_minor": 3500}]
    weekly            TEXT NOT NULL,            -- JSON weekly windows
    exceptions        TEXT NOT NULL,            -- JSON date exceptions
    buffer_before_min BIGINT NOT NULL,
    buffer_after_min  BIGINT NOT NULL,
    min_notice_min    BIGINT NOT NULL,
    max_per_day       BIGINT,                   -- NULL: no cap
    horizon_days      BIGINT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX tutor_profiles_tenant ON tutor_profiles (tenant_id);

-- The tenant's cancellation, reschedule, reminder and timing rules (defaults in code when absent).
CREATE TABLE booking_policies (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    policy     TEXT NOT NULL,                   -- JSON, see bookings::policy::BookingPolicy
    updated_at TEXT NOT NULL
);

-- A student's prepaid lessons with one tutor, of one length.
CREATE TABLE lesson_packages (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    student_id   TEXT NOT NULL REFERENCES users (id),
    tutor_id     TEXT NOT NULL REFERENCES users (id),
    minutes      BIGINT NOT NULL,
    lessons      BIGINT NOT NULL,
    remaining    BIGINT NOT NULL CHECK (remaining >= 0),
    price_minor  BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,                 -- pending_payment | active | cancelled
    bought_by    TEXT NOT NULL REFERENCES users (id),
    created_at   TEXT NOT NULL,
    activated_at TEXT
);
CREATE INDEX lesson_packages_student ON lesson_packages (tenant_id, student_id);

CREATE TABLE bookings (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    tutor_id        TEXT NOT NULL REFERENCES users (id),
    student_id      TEXT NOT NULL REFERENCES users (id),
    booked_by       TEXT NOT NULL REFERENCES users (id),
    starts_at       TEXT NOT NULL,
    ends_at         TEXT NOT NULL,
    minutes         BIGINT NOT NULL,
    status          TEXT NOT NULL,              -- see bookings::BookingStatus
    price_minor     BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    package_id      TEXT REFERENCES lesson_packages (id),
    expires_at      TEXT,                       -- while hold / pending_payment
    reschedules     BIGINT NOT NULL DEFAULT 0,
    room            TEXT,                       -- the live room, once created
    refund_minor    BIGINT NOT NULL DEFAULT 0,
    credit_returned BIGINT NOT NULL DEFAULT 0,  -- 0/1
    cancel_reason   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX bookings_tutor_time ON bookings (tutor_id, starts_at);
CREATE INDEX bookings_student_time ON bookings (student_id, starts_at);
CREATE INDEX bookings_tenant ON bookings (tenant_id, created_at);

-- Every status change of a booking, in order (the outbox carries the same as events).
CREATE TABLE booking_transitions (
    booking_id  TEXT NOT NULL REFERENCES bookings (id),
    seq         BIGINT NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor_id    TEXT,                           -- NULL: the system (a job)
    reason      TEXT,
    at          TEXT NOT NULL,
    PRIMARY KEY (booking_id, seq)
);

-- Who entered a lesson's live room, first time only: the no-show check reads it.
CREATE TABLE booking_joins (
    booking_id TEXT NOT NULL REFERENCES bookings (id),
    user_id    TEXT NOT NULL REFERENCES users (id),
    joined_at  TEXT NOT NULL,
    PRIMARY KEY (booking_id, user_id)
);

-- Money asked for (a booking or a package) and its state. Provider references are the provider's.
CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    subject      TEXT NOT NULL,                 -- booking:<id> | package:<id>
    provider     TEXT NOT NULL,
    provider_ref TEXT,
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,                 -- pending | succeeded | failed
    instructions TEXT,
    method       TEXT,                          -- how staff received it (offline)
    recorded_by  TEXT REFERENCES users (id),
    created_at   TEXT NOT NULL,
    settled_at   TEXT
);
CREATE INDEX payments_subject ON payments (subject);

CREATE TABLE refunds (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    payment_id   TEXT NOT NULL REFERENCES payments (id),
    amount_minor BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    status       TEXT NOT NULL,                 -- requested | pending | succeeded | failed
    provider_ref TEXT,
    created_at   TEXT NOT NULL,
    settled_at   TEXT
);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- What a completed lesson pays its tutor, released after the dispute window. One row per booking.
CREATE TABLE tutor_payouts (
    booking_id   TEXT PRIMARY KEY REFERENCES bookings (id),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    tutor_id     TEXT NOT NULL REFERENCES users (id),
    gross_minor  BIGINT NOT NULL,
    fee_minor    BIGINT NOT NULL,
    share_minor  BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    released_at  TEXT NOT NULL
);
CREATE INDEX tutor_payouts_tutor ON tutor_payouts (tenant_id, tutor_id);
