-- The double-entry money ledger and tutors' payout accounts (SQLite). Keep in step with ../postgres/8_money.sql.

-- One balanced movement of money: its entries sum to zero. `reference` makes posting idempotent
-- (`payment:<id>`, `refund:<id>`, `earned:<booking>`, `payout:<booking>`).
CREATE TABLE money_transactions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    kind        TEXT NOT NULL,                  -- payment | refund | earned | payout | payout_reversal
    reference   TEXT NOT NULL UNIQUE,
    booking_id  TEXT,
    tutor_id    TEXT,
    currency    TEXT NOT NULL,
    memo        TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX money_transactions_tenant ON money_transactions (tenant_id, created_at);

-- Debits positive, credits negative. Accounts: provider_balance (asset), customer_prepayments (liability
-- until the lesson is given), platform_revenue, tutor_payable:<tutor id>.
CREATE TABLE money_entries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id BIGINT NOT NULL REFERENCES money_transactions (id),
    tenant_id      TEXT NOT NULL,
    account        TEXT NOT NULL,
    amount_minor   BIGINT NOT NULL,
    currency       TEXT NOT NULL
);
CREATE INDEX money_entries_account ON money_entries (tenant_id, account);
CREATE INDEX money_entries_transaction ON money_entries (transaction_id);

-- A tutor's payout side: their connected account (Stripe) and commission override.
CREATE TABLE tutor_billing (
    tutor_id          TEXT PRIMARY KEY REFERENCES users (id),
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    stripe_account    TEXT UNIQUE,
    payouts_enabled   BIGINT NOT NULL DEFAULT 0,
    details_submitted BIGINT NOT NULL DEFAULT 0,
    commission_bps    BIGINT,                   -- NULL: the tenant's rate
    updated_at        TEXT NOT NULL
);

-- Webhook deliveries already handled, by the provider's event id.
CREATE TABLE webhook_events (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

ALTER TABLE tutor_payouts ADD COLUMN transfer_ref TEXT;
ALTER TABLE tutor_payouts ADD COLUMN paid_at TEXT;
-- Taken back from the tutor by refunds after the release (reversed, or not to be transferred).
ALTER TABLE tutor_payouts ADD COLUMN reversed_minor BIGINT NOT NULL DEFAULT 0;
