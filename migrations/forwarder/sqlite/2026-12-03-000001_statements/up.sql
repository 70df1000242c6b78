-- Billing statements: one per subscriber and period, created with its
-- rendered message (Message-ID fixed at creation) and sent exactly once.
CREATE TABLE statements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    -- [period_start, period_end): UTC microseconds. A call belongs to the
    -- period holding its end time, a ledger entry to the one holding its
    -- creation time (a call charge: its call's end time).
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    currency TEXT NOT NULL CHECK (length(currency) = 3),
    opening_balance TEXT NOT NULL,
    closing_balance TEXT NOT NULL,
    -- Totals, calls, per destination type (JSON, without the call lines).
    summary TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    -- The whole RFC 5322 message as it is (re)sent.
    message TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    UNIQUE (subscriber_id, period_start),
    CHECK (period_end > period_start),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL))
);
CREATE INDEX statements_by_status ON statements (status, next_attempt_at);
-- A subscriber's calls by end time (what a statement period holds).
CREATE INDEX cdrs_by_subscriber_ended ON cdrs (subscriber_id, ended_at);

-- A subscriber's own statement schedule (cron), instead of the deployment's.
CREATE TABLE statement_schedules (
    subscriber_id BIGINT PRIMARY KEY NOT NULL REFERENCES subscribers (id),
    schedule TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A period that could not be issued yet (a call open or unrated): what the
-- operator sees, and whether the operator was e-mailed about it.
CREATE TABLE statement_holds (
    subscriber_id BIGINT NOT NULL REFERENCES subscribers (id),
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    reason TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    notified_at BIGINT,
    PRIMARY KEY (subscriber_id, period_start)
);
