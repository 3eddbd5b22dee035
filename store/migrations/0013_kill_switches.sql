-- Kill switches. A disabled channel holds every delivery on it (for one tenant, or for all of
-- them with tenant_id '*'); a disabled template refuses new requests. Rows are kept when a
-- switch is turned back on, so the last reason and time stay visible. `paused_requests` is the
-- JSON list of requests a template disable paused, which enabling the template resumes.
CREATE TABLE channel_switches (
    tenant_id       TEXT NOT NULL,
    channel         TEXT NOT NULL,
    disabled        BIGINT NOT NULL,
    reason          TEXT,
    updated_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, channel)
);

CREATE TABLE template_switches (
    tenant_id        TEXT NOT NULL,
    template_id      TEXT NOT NULL,
    disabled         BIGINT NOT NULL,
    running          TEXT,
    reason           TEXT,
    paused_requests  TEXT NOT NULL,
    updated_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);
