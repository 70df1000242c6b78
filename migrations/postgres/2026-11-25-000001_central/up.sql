-- Central: providers, certificates, rate versions and rate entries.
-- Same shape as the SQLite schema so one set of diesel queries serves both.
-- Timestamps are UTC microseconds since the Unix epoch (BIGINT). Money is
-- NUMERIC (exact, never a float), read and written as rust_decimal::Decimal.
-- The settlement ledger (tickets, receipts) gets its own migration next to
-- this one.

CREATE TABLE providers (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    sip_addresses TEXT NOT NULL,
    currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    contact TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    enrollment_token_hash TEXT,
    rate_version BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE certificates (
    key_id TEXT PRIMARY KEY,
    serial TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('operator', 'provider', 'server')),
    provider_id BIGINT REFERENCES providers (id),
    subject_cn TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL,
    CHECK ((role = 'provider') = (provider_id IS NOT NULL))
);

CREATE TABLE rate_versions (
    id BIGSERIAL PRIMARY KEY,
    provider_id BIGINT NOT NULL REFERENCES providers (id),
    version BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('full', 'delta')),
    line_count BIGINT NOT NULL,
    UNIQUE (provider_id, version)
);

CREATE TABLE rate_entries (
    id BIGSERIAL PRIMARY KEY,
    provider_id BIGINT NOT NULL REFERENCES providers (id),
    prefix TEXT NOT NULL,
    rate_per_minute NUMERIC NOT NULL,
    connect_fee NUMERIC NOT NULL,
    first_increment INTEGER NOT NULL CHECK (first_increment >= 1),
    next_increment INTEGER NOT NULL CHECK (next_increment >= 1),
    effective_from BIGINT,
    description TEXT
);
CREATE INDEX rate_entries_provider_prefix ON rate_entries (provider_id, prefix);
