-- Shared token buckets for delivery rate limits (global, per provider, per tenant, per
-- template), one row per bucket. Every worker leases tokens from these rows in small batches,
-- so all workers together stay within a bucket's rate. Quantities are integers in thousandths
-- of a token so the SQL stays portable (no floating point columns).
--   ceiling_per_second: the configured rate (worker config for global/provider rows, the API
--                       for tenant/template rows)
--   rate_milli:         the rate in force, in thousandths of a token per second; provider
--                       feedback lowers it below the ceiling and sustained success restores it
--   tokens_milli:       tokens left at refilled_at_ms
--   version:            bumped by every write; writers compare-and-set on it
CREATE TABLE rate_limits (
    bucket_key          TEXT PRIMARY KEY,
    tenant_id           TEXT,
    ceiling_per_second  BIGINT NOT NULL,
    rate_milli          BIGINT NOT NULL,
    tokens_milli        BIGINT NOT NULL,
    refilled_at_ms      BIGINT NOT NULL,
    throttled_at_ms     BIGINT NOT NULL,
    raised_at_ms        BIGINT NOT NULL,
    version             BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_tenant ON rate_limits (tenant_id);
