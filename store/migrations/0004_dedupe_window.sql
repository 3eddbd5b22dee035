-- A dedupe key may be reused once its window has passed, so several requests can share one
-- (tenant, dedupe_key): uniqueness moves to the request id (derived from key and generation).
-- `started` marks requests whose workflow Temporal accepted, so a row left behind by a failed
-- start is retried rather than taken for a duplicate.
DROP INDEX requests_by_dedupe_key;
CREATE INDEX requests_by_dedupe_key ON requests (tenant_id, dedupe_key);
ALTER TABLE requests ADD COLUMN started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
