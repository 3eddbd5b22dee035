-- Instances that failed for good (a permanent provider rejection, or transient failures through
-- every delivery round), with the last error: the dead-letter list operators query and re-drive.
-- `page_no` lets a re-drive deliver only the pages holding them.
CREATE TABLE dead_letters (
    instance_id     TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    request_id      TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    channel         TEXT NOT NULL,
    page_no         BIGINT NOT NULL,
    error_code      TEXT,
    error_message   TEXT,
    attempts        BIGINT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    redriven_at_ms  BIGINT
);
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant_id, created_at_ms, instance_id);
CREATE INDEX dead_letters_by_request ON dead_letters (request_id, instance_id);

-- The workflow input a request was started with (JSON), so a re-drive renders the same content.
ALTER TABLE requests ADD COLUMN input TEXT;
