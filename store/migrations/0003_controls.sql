-- Operator controls of running requests (pause, rate, cancel). The workflow owns them and
-- writes them here; delivery activities read them before each send. Booleans are 0/1 BIGINTs
-- so the SQL stays portable.
CREATE TABLE request_controls (
    request_id       TEXT PRIMARY KEY,
    paused           BIGINT NOT NULL,
    rate_per_second  BIGINT,
    cancelled        BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);
