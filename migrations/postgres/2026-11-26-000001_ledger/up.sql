-- The settlement ledger: one row per call ticket a provider submitted and
-- central verified. Same shape as the SQLite schema so one set of diesel
-- queries serves both. Timestamps are UTC microseconds since the Unix epoch
-- (BIGINT); money is NUMERIC (exact, never a float), read and written as
-- rust_decimal::Decimal.
--
-- The three tokens are kept verbatim, so both parties' signatures can be
-- checked again at any time. answer_at / end_at / billable_seconds / amount
-- are the claim the call settles on (the agreed receipt; the provider's when
-- the payer sent none; for a dispute the claim with fewer billable seconds);
-- payer_* and provider_* hold each side's own claim (payer_* is NULL when
-- the payer sent no receipt).

CREATE TABLE tickets (
    ticket_id TEXT PRIMARY KEY,
    payer_id BIGINT NOT NULL REFERENCES providers (id),
    provider_id BIGINT NOT NULL REFERENCES providers (id),
    orig TEXT NOT NULL,
    dest TEXT NOT NULL,
    call_id TEXT NOT NULL,
    per_minute NUMERIC NOT NULL,
    connect_fee NUMERIC NOT NULL,
    first_increment INTEGER NOT NULL CHECK (first_increment >= 1),
    next_increment INTEGER NOT NULL CHECK (next_increment >= 1),
    currency TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rate_version BIGINT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('agreed', 'disputed', 'provider_only')),
    answer_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    billable_seconds BIGINT NOT NULL CHECK (billable_seconds >= 0),
    amount NUMERIC NOT NULL,
    payer_answer_at BIGINT,
    payer_end_at BIGINT,
    payer_billable_seconds BIGINT,
    provider_answer_at BIGINT NOT NULL,
    provider_end_at BIGINT NOT NULL,
    provider_billable_seconds BIGINT NOT NULL,
    ticket_token TEXT NOT NULL,
    payer_receipt_token TEXT,
    provider_receipt_token TEXT NOT NULL,
    -- SHA-256 (hex) of the three tokens: an identical resubmission is a
    -- duplicate, anything else for the same ticket id a conflict.
    submission_sha256 TEXT NOT NULL,
    submitted_at BIGINT NOT NULL,
    -- Key id of the client certificate the submission came with.
    submitted_by TEXT NOT NULL,
    CHECK ((status = 'provider_only') = (payer_receipt_token IS NULL)),
    CHECK ((payer_receipt_token IS NULL) = (payer_billable_seconds IS NULL))
);
-- Settlement reports select by answer time, per party.
CREATE INDEX tickets_answer ON tickets (answer_at, ticket_id);
CREATE INDEX tickets_payer_answer ON tickets (payer_id, answer_at);
CREATE INDEX tickets_provider_answer ON tickets (provider_id, answer_at);
