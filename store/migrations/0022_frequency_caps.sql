-- Frequency caps: at most `max_per_period` deliveries of a template category per user and
-- channel per fixed, epoch-aligned window of `period_seconds`.
CREATE TABLE frequency_caps (
    tenant_id       TEXT NOT NULL,
    category        TEXT NOT NULL,
    max_per_period  BIGINT NOT NULL,
    period_seconds  BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, category)
);

-- Slots used per user, channel and window. Claims raise `used` only while it is below `cap`
-- (the cap in force when the row was claimed), so two claimers of the last slot cannot both
-- get it. Keyed by the period too: a changed period starts counting afresh.
CREATE TABLE frequency_counters (
    tenant_id        TEXT NOT NULL,
    category         TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    channel          TEXT NOT NULL,
    period_seconds   BIGINT NOT NULL,
    window_start_ms  BIGINT NOT NULL,
    window_end_ms    BIGINT NOT NULL,
    cap              BIGINT NOT NULL,
    used             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, category, user_id, channel, period_seconds, window_start_ms)
);

-- The slot each delivery instance holds: a retried or re-run delivery finds its claim here and
-- does not count twice. Deleted when the slot is released (the send failed for good).
CREATE TABLE frequency_claims (
    instance_id      TEXT NOT NULL PRIMARY KEY,
    tenant_id        TEXT NOT NULL,
    category         TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    channel          TEXT NOT NULL,
    period_seconds   BIGINT NOT NULL,
    window_start_ms  BIGINT NOT NULL,
    window_end_ms    BIGINT NOT NULL,
    claimed_at_ms    BIGINT NOT NULL
);

CREATE INDEX frequency_claims_by_user ON frequency_claims (tenant_id, user_id);
CREATE INDEX frequency_claims_by_end ON frequency_claims (window_end_ms);
CREATE INDEX frequency_counters_by_user ON frequency_counters (tenant_id, user_id);
CREATE INDEX frequency_counters_by_end ON frequency_counters (window_end_ms);
