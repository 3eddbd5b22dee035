-- The real-time inbox: per-user stream tokens, and an ordered log of inbox changes that every
-- API process tails to feed its SSE and WebSocket clients. Portable SQL, like 0001.

-- Tokens a tenant's backend issues for one of its users; stored as SHA-256 hashes, the
-- plaintext is shown once. `token_id` names a token for revocation without revealing it.
CREATE TABLE inbox_tokens (
    token_hash     TEXT PRIMARY KEY,
    token_id       TEXT NOT NULL UNIQUE,
    tenant_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    revoked_at_ms  BIGINT
);
CREATE INDEX inbox_tokens_by_user ON inbox_tokens (tenant_id, user_id);

-- The one counter every event writer bumps inside its own transaction, as late as it can. On
-- PostgreSQL its row lock serialises those writers until they commit; SQLite has one writer
-- anyway. Either way sequence order is commit order, so a reader that has seen event n can
-- never later find a newly committed event below n.
CREATE TABLE inbox_sequence (
    id        BIGINT PRIMARY KEY,
    last_seq  BIGINT NOT NULL
);
INSERT INTO inbox_sequence (id, last_seq) VALUES (1, 0);

-- One row per change: a new message, a message read, all read, a token revoked. `subject` is
-- the message id or token id (NULL for read_all); message content stays in `inbox`.
CREATE TABLE inbox_events (
    seq        BIGINT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX inbox_events_by_user ON inbox_events (tenant_id, user_id, seq);
