-- Outbound webhooks: a tenant's endpoints, and the outbox of events waiting to reach them.

CREATE TABLE webhook_endpoints (
    tenant_id               TEXT NOT NULL,
    endpoint_id             TEXT NOT NULL,
    url                     TEXT NOT NULL,
    -- The subscribed event types, comma-separated wire names.
    event_types             TEXT NOT NULL,
    -- The signing secret (`whsec_` and base64), and the one it replaced while that still signs.
    secret                  TEXT NOT NULL,
    previous_secret         TEXT,
    previous_until_ms       BIGINT,
    -- 1 while events are written for it and sent.
    enabled                 BIGINT NOT NULL,
    disabled_reason         TEXT,
    -- Failed calls since the last success, when the first of them was, and when to try next.
    failures                BIGINT NOT NULL DEFAULT 0,
    failing_since_ms        BIGINT,
    retry_at_ms             BIGINT NOT NULL DEFAULT 0,
    -- The last errors, newest first, as a JSON array of {"at_ms", "error"}.
    last_errors             TEXT NOT NULL DEFAULT '[]',
    delivered_events        BIGINT NOT NULL DEFAULT 0,
    created_at_ms           BIGINT NOT NULL,
    updated_at_ms           BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, endpoint_id)
);

-- One row per event and endpoint, deleted once the endpoint has taken it.
CREATE TABLE webhook_events (
    tenant_id               TEXT NOT NULL,
    endpoint_id             TEXT NOT NULL,
    event_id                TEXT NOT NULL,
    event_type              TEXT NOT NULL,
    -- The event as sent: {"id", "type", "timestamp", "data"}.
    payload                 TEXT NOT NULL,
    created_at_ms           BIGINT NOT NULL,
    attempts                BIGINT NOT NULL DEFAULT 0,
    -- A dispatcher holds the event until then while its call is in flight.
    claimed_until_ms        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, endpoint_id, event_id)
);

CREATE INDEX webhook_events_by_age ON webhook_events (tenant_id, endpoint_id, created_at_ms);
