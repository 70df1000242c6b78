-- Forwarder: subscribers, their numbers and forwarding rules, the account
-- ledger, call detail records and credentials.
-- Timestamps are UTC microseconds since the Unix epoch (BIGINT). Money is the
-- NUMERIC (exact), read and written as rust_decimal::Decimal; the SQLite
-- schema stores decimal text. Same shape, so one set of diesel queries serves both.

CREATE TABLE subscribers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'closed')),
    email TEXT NOT NULL,
    time_zone TEXT NOT NULL,
    plan TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    account_kind TEXT NOT NULL CHECK (account_kind IN ('prepaid', 'postpaid')),
    credit_limit NUMERIC,
    daily_spend_cap NUMERIC,
    monthly_spend_cap NUMERIC,
    max_concurrent_calls INTEGER CHECK (max_concurrent_calls >= 0),
    -- Sum of the ledger, kept in the same transaction as every entry.
    balance NUMERIC NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((account_kind = 'postpaid') = (credit_limit IS NOT NULL))
);

CREATE TABLE numbers (
    -- E.164 with the leading '+'.
    number TEXT PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    created_at BIGINT NOT NULL
);
CREATE INDEX numbers_by_subscriber ON numbers (subscriber_id);

CREATE TABLE forwarding_rules (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    position INTEGER NOT NULL,
    -- The rule as JSON (name, targets, windows), validated before it is written.
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (subscriber_id, position)
);

CREATE TABLE ledger_entries (
    id BIGSERIAL PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    kind TEXT NOT NULL CHECK (kind IN ('call_charge', 'payment', 'credit', 'adjustment')),
    -- Signed effect on the balance: charges are negative.
    amount NUMERIC NOT NULL,
    currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason TEXT,
    cdr_id TEXT,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    CHECK (kind <> 'adjustment' OR reason IS NOT NULL)
);
CREATE INDEX ledger_by_subscriber ON ledger_entries (subscriber_id, kind, created_at);

CREATE TABLE cdrs (
    id TEXT PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    called_number TEXT NOT NULL,
    caller_number TEXT,
    caller_name TEXT,
    target TEXT,
    status TEXT NOT NULL CHECK (status IN ('open', 'answered', 'completed', 'failed', 'cancelled')),
    received_at BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at BIGINT,
    last_media_at BIGINT,
    sip_status INTEGER,
    hangup_cause TEXT,
    provider_id BIGINT,
    provider_name TEXT,
    decision TEXT,
    attempts TEXT,
    billable_seconds BIGINT CHECK (billable_seconds >= 0),
    media_stats TEXT,
    price NUMERIC,
    provider_cost NUMERIC,
    margin NUMERIC,
    rating_currency TEXT,
    ticket_id TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cdrs_by_subscriber ON cdrs (subscriber_id, received_at);
CREATE INDEX cdrs_by_status ON cdrs (status);

CREATE TABLE subscriber_tokens (
    -- SHA-256 (hex) of the bearer token; the token itself is never stored.
    token_hash TEXT PRIMARY KEY,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_by_subscriber ON subscriber_tokens (subscriber_id);

CREATE TABLE operator_certificates (
    key_id TEXT PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    subject_cn TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
