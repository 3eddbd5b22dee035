-- Digests: the triggers of a digest template collected while a window is open, closed by the
-- digest's workflow into one request of their own (see store/src/digests.rs).
CREATE TABLE digests (
    digest_id     TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    template_id   TEXT NOT NULL,
    -- The value of the trigger's data.<key> ('' when the template names no key).
    digest_key    TEXT NOT NULL,
    -- open: takes triggers; closing: its window ended and its workflow has not closed it yet
    -- (takes none); closed: delivered through request_id.
    state         TEXT NOT NULL,
    max_items     BIGINT NOT NULL,
    opened_at_ms  BIGINT NOT NULL,
    closes_at_ms  BIGINT NOT NULL,
    closed_at_ms  BIGINT,
    request_id    TEXT
);
-- At most one open digest per (tenant, template, key): racing opens meet here.
CREATE UNIQUE INDEX digests_open ON digests (tenant_id, template_id, digest_key)
    WHERE state = 'open';
CREATE INDEX digests_by_request ON digests (request_id);

-- One collected trigger: its request id, its data and when it was accepted.
CREATE TABLE digest_items (
    request_id      TEXT PRIMARY KEY,
    digest_id       TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    data            TEXT NOT NULL,
    accepted_at_ms  BIGINT NOT NULL
);
CREATE INDEX digest_items_by_digest ON digest_items (digest_id, seq);

-- The recipients of each collected trigger: a digest's audience is their union, and a
-- recipient's items are the triggers addressed to them.
CREATE TABLE digest_recipients (
    digest_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    PRIMARY KEY (digest_id, user_id, request_id)
);
