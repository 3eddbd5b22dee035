-- Fanout's schema. Portable SQL: it runs unchanged on SQLite and PostgreSQL.
-- Timestamps are BIGINT milliseconds since the Unix epoch; JSON is stored as TEXT.

CREATE TABLE tenants (
    tenant_id      TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_hash       TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    key_prefix     TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT
);

CREATE TABLE users (
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    user_id        TEXT NOT NULL,
    email          TEXT,
    name           TEXT,
    locale         TEXT,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE templates (
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    template_id    TEXT NOT NULL,
    version        BIGINT NOT NULL,
    name           TEXT NOT NULL,
    content        TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);

CREATE TABLE requests (
    request_id     TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (tenant_id),
    dedupe_key     TEXT NOT NULL,
    template_id    TEXT NOT NULL,
    state          TEXT NOT NULL,
    progress       TEXT,
    metadata       TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE UNIQUE INDEX requests_by_dedupe_key ON requests (tenant_id, dedupe_key);

-- The audience snapshot of a request, in pages: the workflow only ever sees page numbers.
CREATE TABLE audience (
    request_id     TEXT NOT NULL,
    page_no        BIGINT NOT NULL,
    user_id        TEXT NOT NULL,
    PRIMARY KEY (request_id, page_no, user_id)
);

CREATE TABLE receipts (
    instance_id          TEXT PRIMARY KEY,
    request_id           TEXT NOT NULL,
    tenant_id            TEXT NOT NULL,
    user_id              TEXT NOT NULL,
    channel              TEXT NOT NULL,
    status               TEXT NOT NULL,
    provider_message_id  TEXT,
    attempts             BIGINT NOT NULL,
    latency_ms           BIGINT,
    error_code           TEXT,
    error_message        TEXT,
    updated_at_ms        BIGINT NOT NULL
);
CREATE INDEX receipts_by_request ON receipts (request_id, instance_id);

CREATE TABLE inbox (
    instance_id    TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    title          TEXT NOT NULL,
    body           TEXT NOT NULL,
    data           TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    read_at_ms     BIGINT
);
CREATE INDEX inbox_by_user ON inbox (tenant_id, user_id, created_at_ms, instance_id);
