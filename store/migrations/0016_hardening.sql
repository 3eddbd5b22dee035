-- The inbox keeps the template's rendered action URL beside title and body (its `data` now
-- holds the template's bounded payload, not the request's whole data).
ALTER TABLE inbox ADD COLUMN action_url TEXT;
-- The operator's per-tenant cap on a notify's `data`, in bytes of JSON. NULL means the
-- platform default (64 KiB).
ALTER TABLE tenant_settings ADD COLUMN max_data_bytes BIGINT;
-- How far retention has pruned, per table (`inbox_events`: the highest event id deleted), so a
-- stream resuming from before it is told to re-list instead of silently missing events.
CREATE TABLE retention_marks (
    name         TEXT PRIMARY KEY,
    through_seq  BIGINT NOT NULL
);
-- Retention finds finished requests by age.
CREATE INDEX requests_by_age ON requests (created_at_ms);
